"""The emulator's request log (in Kubernetes RBAC verbs) and its fault-injection rules."""

from __future__ import annotations

import dataclasses
import enum
import itertools
from collections import deque
from collections.abc import Mapping
from typing import Any

from tests.support.emulator_store import ApiError

WRITE_VERBS = frozenset({"create", "update", "patch", "delete", "deletecollection"})


class AnyValue(enum.Enum):
    """Sentinel for "do not filter on this", distinct from None (which means "absent")."""

    ANY = "any"


ANY = AnyValue.ANY
Match = str | None | AnyValue
"""A filter value: a string, None for "absent" (e.g. no subresource), or ANY."""


def _fits(value: str | None, wanted: Match) -> bool:
    return wanted is ANY or value == wanted


@dataclasses.dataclass(kw_only=True)
class RequestRecord:
    """One request the emulator received, described the way RBAC describes it."""

    seq: int
    """Arrival order, from 0."""
    method: str
    """HTTP method."""
    path: str
    """URL path without the query."""
    query: dict[str, str]
    """Query parameters."""
    verb: str | None
    """RBAC verb: get, list, watch, create, update, patch, delete, deletecollection; None for other paths."""
    group: str | None
    """API group ("" for core); None for non-resource paths."""
    version: str | None
    """API version; None for non-resource paths."""
    resource: str | None
    """Plural resource name; None for discovery and other non-resource paths."""
    subresource: str | None
    """status, scale, ... or None."""
    namespace: str | None
    """Namespace in the URL, if any."""
    name: str | None
    """Object name in the URL (for a create, the name in the body, as audit logs show it), if any."""
    body: Any
    """Parsed JSON body, or None."""
    content_type: str | None
    """Content-Type of the request, without parameters."""
    user_agent: str | None
    """User-Agent header, to tell the operator's requests from a test's own."""
    status: int | None = None
    """HTTP status answered (a watch records 200 when its stream starts); None while in progress."""

    def names_resource(self, spec: str) -> bool:
        """Whether `spec` (plural, or plural.group to tell core events from events.k8s.io) is this resource."""
        qualified = f"{self.resource}.{self.group}" if self.group else self.resource
        return spec in (self.resource, qualified)

    def matches(
        self,
        *,
        verb: str | None = None,
        resource: str | None = None,
        namespace: Match = ANY,
        name: Match = ANY,
        subresource: Match = ANY,
    ) -> bool:
        """Whether the record fits every given filter (None for verb/resource means any)."""
        return (
            (verb is None or self.verb == verb)
            and (resource is None or self.names_resource(resource))
            and _fits(self.namespace, namespace)
            and _fits(self.name, name)
            and _fits(self.subresource, subresource)
        )

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (used by the HTTP control API)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RequestRecord:
        """The inverse of to_json()."""
        return cls(**data)


@dataclasses.dataclass(kw_only=True)
class FaultRule:
    """Answer the next `remaining` requests that match with an error instead of serving them."""

    status: int
    """HTTP status to answer: 409, 422, 429, 500, 503, ... ; 410 on a watch sends an ERROR event (Expired)."""
    verb: str | None = None
    """RBAC verb to match; None matches any."""
    resource: str | None = None
    """Resource (plural or plural.group) to match; None matches any."""
    namespace: Match = ANY
    """Namespace to match."""
    name: Match = ANY
    """Object name to match."""
    subresource: Match = ANY
    """Subresource to match (None = the main resource only)."""
    remaining: int = 1
    """How many more requests fail."""
    retry_after: int | None = None
    """Seconds for the Retry-After header and details.retryAfterSeconds (typically with 429)."""
    message: str = "injected fault"
    """Message of the Status object."""

    def applies_to(self, record: RequestRecord) -> bool:
        """Whether this rule fails that request."""
        return self.remaining > 0 and record.matches(
            verb=self.verb,
            resource=self.resource,
            namespace=self.namespace,
            name=self.name,
            subresource=self.subresource,
        )

    def error(self) -> ApiError:
        """The error to answer with."""
        return ApiError(self.status, self.message, retry_after=self.retry_after)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict; a filter that matches anything is left out."""
        data: dict[str, Any] = {
            "status": self.status,
            "verb": self.verb,
            "resource": self.resource,
            "remaining": self.remaining,
            "retry_after": self.retry_after,
            "message": self.message,
        }
        for key in ("namespace", "name", "subresource"):
            if (value := getattr(self, key)) is not ANY:
                data[key] = value
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> FaultRule:
        """The inverse of to_json()."""
        return cls(
            status=data["status"],
            verb=data.get("verb"),
            resource=data.get("resource"),
            namespace=data.get("namespace", ANY),
            name=data.get("name", ANY),
            subresource=data.get("subresource", ANY),
            remaining=data.get("remaining", 1),
            retry_after=data.get("retry_after"),
            message=data.get("message", "injected fault"),
        )


class RequestLog:
    """Every request received, optionally only the most recent `limit` ones."""

    def __init__(self, *, limit: int | None) -> None:
        self._records: deque[RequestRecord] = deque(maxlen=limit)
        self._counter = itertools.count()

    def add(self, **fields: Any) -> RequestRecord:
        """Record a request that just arrived."""
        record = RequestRecord(seq=next(self._counter), **fields)
        self._records.append(record)
        return record

    def select(
        self,
        *,
        verb: str | None = None,
        resource: str | None = None,
        namespace: Match = ANY,
        name: Match = ANY,
        subresource: Match = ANY,
    ) -> list[RequestRecord]:
        """The records that fit every filter, oldest first."""
        return [
            record
            for record in self._records
            if record.matches(verb=verb, resource=resource, namespace=namespace, name=name, subresource=subresource)
        ]

    def clear(self) -> None:
        """Forget every record (the sequence numbers keep counting)."""
        self._records.clear()


@dataclasses.dataclass(frozen=True, kw_only=True)
class CallSeen:
    """One distinct kind of request, as RBAC authorizes it, with the client that sent it."""

    verb: str | None
    """RBAC verb; for a non-resource request (discovery, /version) the lower-case HTTP method."""
    group: str | None
    """API group ("" for core); None for non-resource requests."""
    resource: str | None
    """Plural resource name; None for non-resource requests."""
    subresource: str | None
    """status, scale, ... or None."""
    namespace: str | None
    """Namespace in the URL (RBAC: a Role only covers its own namespace)."""
    name: str | None
    """Object name in the URL, which RBAC `resourceNames` match (None for list, watch and create)."""
    path: str | None
    """URL path of a non-resource request (RBAC `nonResourceURLs`); None for resource requests."""
    user_agent: str | None
    """User-Agent header: tells the operator (kopf, the kubernetes client) from the tests."""
    count: int = 0
    """How many such requests arrived."""

    def key(self) -> tuple[str | None, ...]:
        """Every field but the count."""
        return tuple(getattr(self, field.name) for field in dataclasses.fields(self) if field.name != "count")

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (used by the HTTP control API)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CallSeen:
        """The inverse of to_json()."""
        return cls(**data)


class CallTally:
    """Every distinct request kind received since start: never cleared, so RBAC checks see a whole session."""

    def __init__(self) -> None:
        self._counts: dict[tuple[str | None, ...], CallSeen] = {}

    def add(self, record: RequestRecord) -> None:
        """Count a request (its name only where RBAC looks at it: a create is named in its body, not its URL)."""
        resource_request = record.resource is not None
        call = CallSeen(
            verb=record.verb if resource_request else record.method.lower(),
            group=record.group if resource_request else None,
            resource=record.resource,
            subresource=record.subresource,
            namespace=record.namespace,
            name=None if record.verb == "create" else record.name,
            path=None if resource_request else record.path,
            user_agent=record.user_agent,
        )
        seen = self._counts.get(call.key(), call)
        self._counts[call.key()] = dataclasses.replace(seen, count=seen.count + 1)

    def calls(self) -> list[CallSeen]:
        """The distinct calls, in a stable order."""
        return sorted(self._counts.values(), key=lambda call: tuple(value or "" for value in call.key()))


def only_writes(records: list[RequestRecord]) -> list[RequestRecord]:
    """The records of requests that write (including ones that failed)."""
    return [record for record in records if record.verb in WRITE_VERBS]


class FaultBook:
    """The fault rules in force, consumed in the order they were added."""

    def __init__(self) -> None:
        self._rules: list[FaultRule] = []

    def add(self, rule: FaultRule) -> None:
        """Arm a rule."""
        self._rules.append(rule)

    def take(self, record: RequestRecord) -> FaultRule | None:
        """The first rule that fails this request (consuming one use of it), if any."""
        for rule in self._rules:
            if rule.applies_to(record):
                rule.remaining -= 1
                self._rules = [r for r in self._rules if r.remaining > 0]
                return rule
        return None

    def clear(self) -> None:
        """Disarm every rule."""
        self._rules.clear()

    def pending(self) -> list[FaultRule]:
        """Rules not used up yet."""
        return list(self._rules)
