"""Object storage with the API server's rules: metadata, status isolation, patches, deletion, watches."""

from __future__ import annotations

import asyncio
import collections
import copy
import dataclasses
import datetime
import functools
import json
import random
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jsonpatch
from tests.support.emulator_resources import (
    CRD_RESOURCE,
    NAMESPACE_RESOURCE,
    Body,
    ResourceRegistry,
    ResourceType,
    StorageKey,
    resource_types_from_crd,
)
from tests.support.emulator_selectors import (
    FieldRequirement,
    LabelRequirement,
    format_label_selector,
    selector_matches,
)

MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"
_SYSTEM_METADATA = (
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
)
_NAME_SUFFIX_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
SCALE_KIND = ("autoscaling", "v1", "Scale")
_REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    409: "Conflict",
    410: "Expired",
    415: "UnsupportedMediaType",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}


class ApiError(Exception):
    """An API failure, rendered as a `Status` object with its HTTP code."""

    def __init__(
        self,
        code: int,
        message: str,
        *,
        reason: str | None = None,
        details: Mapping[str, Any] | None = None,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.reason = reason or _REASONS.get(code, "Unknown")
        self.details = dict(details or {})
        self.retry_after = retry_after

    def status(self) -> Body:
        """The `Status` object the API server sends with this error."""
        details = dict(self.details)
        if self.retry_after is not None:
            details["retryAfterSeconds"] = self.retry_after
        body: Body = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if details:
            body["details"] = details
        return body


def _details(resource_type: ResourceType, name: str) -> Body:
    return {"name": name, "group": resource_type.group, "kind": resource_type.plural}


def not_found(resource_type: ResourceType, name: str) -> ApiError:
    """404 for a missing object."""
    message = f'{resource_type.qualified_name} "{name}" not found'
    return ApiError(404, message, details=_details(resource_type, name))


def conflict(resource_type: ResourceType, name: str) -> ApiError:
    """409 for a stale metadata.resourceVersion (optimistic concurrency)."""
    message = (
        f'Operation cannot be fulfilled on {resource_type.qualified_name} "{name}": the object has been '
        "modified; please apply your changes to the latest version and try again"
    )
    return ApiError(409, message, details=_details(resource_type, name))


def invalid(
    resource_type: ResourceType, name: str, *causes: tuple[str, str], group_kind: str | None = None
) -> ApiError:
    """422 for an object the server refuses to store; causes are (field, message) pairs."""
    if group_kind is None:
        group_kind = f"{resource_type.kind}.{resource_type.group}" if resource_type.group else resource_type.kind
    text = ", ".join(f"{field}: {message}" for field, message in causes)
    details = {
        **_details(resource_type, name),
        "causes": [{"reason": "FieldValueInvalid", "message": message, "field": field} for field, message in causes],
    }
    return ApiError(422, f'{group_kind} "{name}" is invalid: {text}', details=details)


class DecodeError(Exception):
    """A body that does not decode into the resource's Go type; the text is the Go decoder's."""


def expired(message: str) -> ApiError:
    """410 for a resourceVersion older than the retained watch history."""
    return ApiError(410, message, reason="Expired")


def _timestamp(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: objects merge recursively, null deletes, everything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _without_directives(patch: Any) -> Any:
    """Drop strategic-merge directives ($patch, $setElementOrder/..., $retainKeys, ...)."""
    if isinstance(patch, dict):
        return {key: _without_directives(value) for key, value in patch.items() if not key.startswith("$")}
    if isinstance(patch, list):
        return [_without_directives(item) for item in patch]
    return patch


def _json_patch(target: Body, patch: Any) -> Body:
    if not isinstance(patch, list):
        raise ApiError(400, "json: cannot unmarshal object into Go value of type jsonpatch.Patch")
    try:
        result: Body = jsonpatch.apply_patch(target, patch)
    except jsonpatch.InvalidJsonPatch as exc:
        raise ApiError(400, str(exc)) from exc
    except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as exc:
        raise ApiError(422, f"the server rejected our request due to an error in our request: {exc}") from exc
    return result


def apply_patch(target: Body, *, content_type: str, patch: Any, strategic: bool) -> Body:
    """Apply a PATCH body of the given media type; `strategic` says whether the type accepts SMP."""
    if content_type == JSON_PATCH:
        return _json_patch(target, patch)
    if content_type == MERGE_PATCH or (content_type == STRATEGIC_MERGE_PATCH and strategic):
        if not isinstance(patch, dict):
            raise ApiError(400, "the body of the request was in an unknown format: expected a JSON object")
        merged: Body = merge_patch(target, _without_directives(patch))
        return merged
    accepted = [JSON_PATCH, MERGE_PATCH, *([STRATEGIC_MERGE_PATCH] if strategic else [])]
    message = f"the body of the request was in an unknown format - accepted media types include: {accepted}"
    raise ApiError(415, message)


def _get_path(obj: Mapping[str, Any], path: str) -> Any:
    value: Any = obj
    for part in path.strip(".").split("."):
        value = value.get(part) if isinstance(value, Mapping) else None
    return value


def _set_path(obj: Body, path: str, value: Any) -> None:
    *parents, last = path.strip(".").split(".")
    for part in parents:
        obj = obj.setdefault(part, {})
    obj[last] = value


def _check_body(resource_type: ResourceType, body: Any) -> None:
    """A POST/PUT body must be an object of this resource's kind and apiVersion (when it names them)."""
    if not isinstance(body, dict) or not isinstance(body.get("metadata", {}), dict):
        raise ApiError(400, "the body of the request was in an unknown format")
    for field, expected in (("kind", resource_type.kind), ("apiVersion", resource_type.api_version)):
        if body.get(field) and body[field] != expected:
            raise ApiError(400, f"the {field} in the body ({body[field]}) does not match the URL ({expected})")


def _crd_storage_key(crd: Body) -> StorageKey:
    return (crd["spec"]["group"], crd["spec"]["names"]["plural"])


def _present(obj: Body, resource_type: ResourceType) -> Body:
    """The object as served through this version of its resource (conversion strategy None)."""
    if obj.get("apiVersion") == resource_type.api_version:
        return obj
    return {**obj, "apiVersion": resource_type.api_version}


def _with_version(obj: Body, resource_version: int) -> Body:
    return {**obj, "metadata": {**obj["metadata"], "resourceVersion": str(resource_version)}}


@dataclasses.dataclass(kw_only=True)
class AdmissionAttributes:
    """A write of the request being served, as admission sees it just before it is stored."""

    operation: str
    """CREATE, UPDATE (PUT and every PATCH) or DELETE."""
    resource_type: ResourceType
    """The resource addressed by the URL."""
    subresource: str | None
    """status, scale, or None for the main resource."""
    namespace: str | None
    """The object's namespace (None for cluster-scoped objects)."""
    name: str
    """The name the request gave ("" for a create with generateName, as on a real server)."""
    kind: tuple[str, str, str]
    """Group, version and kind of `object` and `old_object` (autoscaling/v1 Scale for `/scale`)."""
    object: Body | None
    """The object as it would be stored (defaults set, validated); None for DELETE."""
    old_object: Body | None
    """The stored object; None for CREATE."""


AdmissionGate = Callable[[AdmissionAttributes], Body | None]
"""Asked before a write is stored; raises to stop it. On a CREATE it may return an equal object to store instead
(one it already admitted, so the stored uid and creationTimestamp are the ones the webhooks saw)."""
Strategy = Callable[[ResourceType, Body], Body]
"""A built-in resource's own defaulting and validation (raises ApiError), applied to every write."""
Decoder = Callable[[Body], tuple[Body, list[str]]]
"""A built-in resource's typed decoding of a body: the object as decoded and the unknown fields it dropped; raises
DecodeError. Applied to POST and PUT bodies and to patched objects, before anything else looks at them."""


class WatchEvent:
    """A committed change, kept in the per-resource history for watches that resume from a version."""

    __slots__ = ("event_type", "new", "old", "resource_version")

    def __init__(self, *, resource_version: int, event_type: str, new: Body, old: Body | None) -> None:
        self.resource_version = resource_version
        self.event_type = event_type
        self.new = new
        self.old = old


class Watcher:
    """One open watch stream: its filters and the queue of events waiting to be written."""

    def __init__(
        self,
        *,
        resource_type: ResourceType,
        namespace: str | None,
        labels: Sequence[LabelRequirement],
        fields: Sequence[FieldRequirement],
    ) -> None:
        self.resource_type = resource_type
        self.namespace = namespace
        self.labels = tuple(labels)
        self.fields = tuple(fields)
        self.queue: asyncio.Queue[Body | None] = asyncio.Queue()
        self.stalled = False

    def sees(self, obj: Body) -> bool:
        """Whether the object is inside this watch's namespace and selectors."""
        in_namespace = self.namespace is None or obj["metadata"].get("namespace") == self.namespace
        return in_namespace and selector_matches(obj, labels=self.labels, fields=self.fields)

    def translate(self, event: WatchEvent) -> Body | None:
        """The event as this watcher sees it: leaving the selection is DELETED, entering it is ADDED."""
        was = event.old is not None and event.event_type != "DELETED" and self.sees(event.old)
        now = self.sees(event.new)
        if event.event_type == "DELETED" or not was:
            kind = "DELETED" if event.event_type == "DELETED" else "ADDED"
            return {"type": kind, "object": _present(event.new, self.resource_type)} if now else None
        if not now:
            assert event.old is not None  # for type checkers: `was` implies an old state
            gone = _with_version(event.old, event.resource_version)
            return {"type": "DELETED", "object": _present(gone, self.resource_type)}
        return {"type": "MODIFIED", "object": _present(event.new, self.resource_type)}

    def offer(self, event: WatchEvent) -> None:
        """Queue the event unless it is outside the selection or the stream is stalled."""
        translated = self.translate(event)
        if translated is not None and not self.stalled:
            self.queue.put_nowait(translated)

    def close(self) -> None:
        """End the stream after the events already queued."""
        self.queue.put_nowait(None)


class ObjectStore:
    """All objects, one global resourceVersion counter (as etcd's revision), and the watch fan-out."""

    def __init__(
        self, *, registry: ResourceRegistry, clock: Callable[[], datetime.datetime], watch_window: int
    ) -> None:
        self.registry = registry
        self._clock = clock
        self._watch_window = watch_window
        self._revision = 0
        self._objects: dict[StorageKey, dict[tuple[str, str], Body]] = collections.defaultdict(dict)
        self._history: dict[StorageKey, collections.deque[WatchEvent]] = collections.defaultdict(collections.deque)
        self._compacted: dict[StorageKey, int] = collections.defaultdict(int)
        self._watchers: dict[StorageKey, set[Watcher]] = collections.defaultdict(set)
        self.strict_fields = False
        """fieldValidation=Strict for the request being served: unknown fields are 400 instead of a warning."""
        self.warnings: list[str] = []
        """Warnings for the request being served (unknown fields pruned), sent as `Warning` headers."""
        self.admission: AdmissionGate | None = None
        """Admission for the request being served; None for the in-process API and internal writes."""
        self.strategies: dict[StorageKey, Strategy] = {}
        """Built-in defaulting and validation per resource (e.g. webhook configurations)."""
        self.decoders: dict[StorageKey, Decoder] = {}
        """Built-in typed decoding per resource (Leases); resources without one keep their bodies as sent."""

    @property
    def resource_version(self) -> str:
        """The latest committed resourceVersion (what a list reports)."""
        return str(self._revision)

    # Reading.

    def find(self, resource_type: ResourceType, namespace: str | None, name: str) -> Body | None:
        """The stored object, or None."""
        obj = self._objects[resource_type.storage_key].get((namespace or "", name))
        return None if obj is None else _present(obj, resource_type)

    def get(self, resource_type: ResourceType, namespace: str | None, name: str) -> Body:
        """The stored object; 404 when absent."""
        obj = self.find(resource_type, namespace, name)
        if obj is None:
            raise not_found(resource_type, name)
        return obj

    def list_objects(
        self,
        resource_type: ResourceType,
        namespace: str | None,
        *,
        labels: Sequence[LabelRequirement] = (),
        fields: Sequence[FieldRequirement] = (),
    ) -> list[Body]:
        """Objects sorted by namespace and name (as etcd keys sort), filtered by namespace and selectors."""
        stored = self._objects[resource_type.storage_key]
        return [
            _present(stored[key], resource_type)
            for key in sorted(stored)
            if namespace is None or key[0] == namespace
            if selector_matches(stored[key], labels=labels, fields=fields)
        ]

    def dump(self) -> list[Body]:
        """Every stored object, for state dumps."""
        return [obj for objects in self._objects.values() for _, obj in sorted(objects.items())]

    # Creating.

    def create(self, resource_type: ResourceType, namespace: str | None, body: Any) -> Body:
        """POST: stamp uid, creationTimestamp, generation and resourceVersion; ADDED event."""
        _check_body(resource_type, body)
        body = self._decode(resource_type, body, patched=False)
        metadata = body.get("metadata") or {}
        if metadata.get("resourceVersion"):
            raise ApiError(500, "resourceVersion should not be set on objects to be created")
        namespace = self._object_namespace(resource_type, namespace, metadata)
        name = metadata.get("name") or self._generated_name(resource_type, namespace, metadata)
        if resource_type.storage_key == CRD_RESOURCE.storage_key:
            self._validate_crd(body, name)
        obj = self._new_object(resource_type, namespace=namespace, name=name, body=body)
        kind = (resource_type.group, resource_type.version, resource_type.kind)
        attributes = AdmissionAttributes(
            operation="CREATE",
            resource_type=resource_type,
            subresource=None,
            namespace=namespace,
            name=metadata.get("name") or "",
            kind=kind,
            object=obj,
            old_object=None,
        )
        obj = self._admit(attributes) or obj
        name = obj["metadata"]["name"]
        if self.find(resource_type, namespace, name) is not None:
            message = f'{resource_type.qualified_name} "{name}" already exists'
            raise ApiError(409, message, reason="AlreadyExists", details=_details(resource_type, name))
        self._commit(resource_type, obj, event_type="ADDED", old=None)
        if resource_type.storage_key == CRD_RESOURCE.storage_key:
            self._establish_crd(obj)  # a second write, as the apiextensions controller's; the answer predates it
        return _present(obj, resource_type)

    def _object_namespace(
        self, resource_type: ResourceType, namespace: str | None, metadata: Mapping[str, Any]
    ) -> str | None:
        if not resource_type.namespaced:
            return None
        body_namespace = metadata.get("namespace")
        if body_namespace and namespace and body_namespace != namespace:
            message = "the namespace of the provided object does not match the namespace sent on the request"
            raise ApiError(400, message)
        namespace = namespace or body_namespace
        if not namespace or self.find(NAMESPACE_RESOURCE, None, namespace) is None:
            raise not_found(NAMESPACE_RESOURCE, namespace or "")
        return namespace

    def _generated_name(self, resource_type: ResourceType, namespace: str | None, metadata: Mapping[str, Any]) -> str:
        prefix = metadata.get("generateName")
        if not isinstance(prefix, str) or not prefix:
            raise invalid(resource_type, "", ("metadata.name", "Required value: name or generateName is required"))
        while True:
            name = prefix + "".join(random.choices(_NAME_SUFFIX_ALPHABET, k=5))
            if self.find(resource_type, namespace, name) is None:
                return name

    def _new_object(self, resource_type: ResourceType, *, namespace: str | None, name: str, body: Body) -> Body:
        obj = copy.deepcopy(body)
        user_metadata = {k: v for k, v in (obj.get("metadata") or {}).items() if k not in _SYSTEM_METADATA}
        metadata: Body = {"name": name, **({"namespace": namespace} if namespace else {}), **user_metadata}
        metadata["uid"] = str(uuid.uuid4())
        metadata["creationTimestamp"] = _timestamp(self._clock())
        if resource_type.tracks_generation:
            metadata["generation"] = 1
        content = {key: value for key, value in obj.items() if key not in ("apiVersion", "kind", "metadata")}
        obj = {"apiVersion": resource_type.api_version, "kind": resource_type.kind, "metadata": metadata, **content}
        if resource_type.status_subresource:
            obj.pop("status", None)
        for key, value in resource_type.spec_defaults.items():
            obj.setdefault("spec", {}).setdefault(key, copy.deepcopy(value))
        return self._conform(resource_type, obj)

    def _decode(self, resource_type: ResourceType, body: Body, *, patched: bool) -> Body:
        """Typed decoding: 400 for a body, and 422 naming `patch` for a patched object, as the real handlers do."""
        decoder = self.decoders.get(resource_type.storage_key)
        if decoder is None:
            return body
        try:
            decoded, unknown = decoder(body)
            if unknown and self.strict_fields:
                raise DecodeError("strict decoding error: " + ", ".join(f'unknown field "{path}"' for path in unknown))
        except DecodeError as exc:
            if patched:
                value = json.dumps(json.dumps(body, separators=(",", ":"), sort_keys=True))
                cause = {"reason": "FieldValueInvalid", "message": f"Invalid value: {value}: {exc}", "field": "patch"}
                message = f' "" is invalid: patch: Invalid value: {value}: {exc}'
                raise ApiError(422, message, details={"causes": [cause]}) from None
            kind, version = resource_type.kind, resource_type.version
            raise ApiError(400, f'{kind} in version "{version}" cannot be handled as a {kind}: {exc}') from None
        self.warnings += [f'unknown field "{path}"' for path in unknown]
        return decoded

    def _admit(self, attributes: AdmissionAttributes) -> Body | None:
        return None if self.admission is None else self.admission(attributes)

    def _conform(self, resource_type: ResourceType, obj: Body) -> Body:
        """Apply a built-in strategy or a CRD's structural schema: prune (warn, or 400 if strict), default, validate."""
        if strategy := self.strategies.get(resource_type.storage_key):
            obj = strategy(resource_type, obj)
        if resource_type.schema is None:
            return obj
        obj, dropped = resource_type.schema.normalize(obj)
        unknown = [f'unknown field "{path}"' for path in dropped]
        if unknown and self.strict_fields:
            kind, version = resource_type.kind, resource_type.version
            prefix = f'{kind} in version "{version}" cannot be handled as a {kind}: strict decoding error: '
            raise ApiError(400, prefix + ", ".join(unknown))
        self.warnings += unknown
        errors = resource_type.schema.errors(obj)
        if errors:
            raise invalid(resource_type, obj["metadata"]["name"], *errors)
        return obj

    # Updating.

    def replace(
        self, resource_type: ResourceType, namespace: str | None, name: str, body: Any, *, subresource: str | None
    ) -> Body:
        """PUT: the body replaces the object (or only its status through `/status`); creates it where allowed."""
        _check_body(resource_type, body)
        body = self._decode(resource_type, body, patched=False)
        creating = self.creates_on_update(resource_type, namespace, name, subresource)
        current = None if creating else self.get(resource_type, namespace, name)
        body_name = (body.get("metadata") or {}).get("name")
        if body_name != name:
            raise ApiError(400, f"the name of the object ({body_name}) does not match the name on the URL ({name})")
        if current is None:  # no stored version to compare with: the body's resourceVersion is not looked at
            metadata = {key: value for key, value in body["metadata"].items() if key != "resourceVersion"}
            return self.create(resource_type, namespace, {**body, "metadata": metadata})
        required = resource_type.custom or not resource_type.unconditional_update
        self._check_version(resource_type, current, body, required=required)
        admit = functools.partial(self._admit_update, resource_type, subresource, current)
        return self._update(resource_type, current, body, subresource=subresource, admit=admit)

    def creates_on_update(
        self, resource_type: ResourceType, namespace: str | None, name: str, subresource: str | None
    ) -> bool:
        """Whether a PUT there creates the object (its strategy allows create on update, and it does not exist)."""
        if not resource_type.create_on_update or subresource is not None:
            return False
        return self.find(resource_type, namespace, name) is None

    def patch(
        self,
        resource_type: ResourceType,
        namespace: str | None,
        name: str,
        *,
        content_type: str,
        patch: Any,
        subresource: str | None,
    ) -> Body:
        """PATCH with a merge, JSON or strategic merge patch; a resourceVersion in the patch is a precondition."""
        current = self.get(resource_type, namespace, name)
        strategic = not resource_type.custom
        candidate = apply_patch(current, content_type=content_type, patch=patch, strategic=strategic)
        candidate = self._decode(resource_type, candidate, patched=True)
        self._check_version(resource_type, current, candidate, required=False)
        admit = functools.partial(self._admit_update, resource_type, subresource, current)
        return self._update(resource_type, current, candidate, subresource=subresource, admit=admit)

    def _check_version(self, resource_type: ResourceType, current: Body, candidate: Body, *, required: bool) -> None:
        wanted = (candidate.get("metadata") or {}).get("resourceVersion")
        name = current["metadata"]["name"]
        if not wanted and required:
            cause = ("metadata.resourceVersion", "Invalid value: 0x0: must be specified for an update")
            raise invalid(resource_type, name, cause, group_kind=resource_type.qualified_name)
        if wanted and str(wanted) != current["metadata"]["resourceVersion"]:
            raise conflict(resource_type, name)

    def _update(
        self,
        resource_type: ResourceType,
        current: Body,
        candidate: Body,
        *,
        subresource: str | None,
        admit: Callable[[Body], None] | None = None,
    ) -> Body:
        if subresource == "status":
            new = self._status_update(current, candidate)
        else:
            new = self._main_update(resource_type, current, candidate)
        new = self._conform(resource_type, new)
        if admit is not None:
            admit(new)  # a real server admits no-op writes too: it compares only when storing
        if new == current:
            return current  # a no-op write is not stored: no new resourceVersion, no event
        metadata = new["metadata"]
        if metadata.get("deletionTimestamp") and not metadata.get("finalizers"):
            return self._remove(resource_type, new)
        self._commit(resource_type, new, event_type="MODIFIED", old=current)
        if resource_type.storage_key == CRD_RESOURCE.storage_key and subresource != "status":
            self._serve_crd(new)
        return new

    def _admit_update(self, resource_type: ResourceType, subresource: str | None, current: Body, new: Body) -> None:
        if self.admission is None:
            return
        kind = (resource_type.group, resource_type.version, resource_type.kind)
        objects = (new, current)
        if subresource == "scale":
            kind, objects = SCALE_KIND, (self._scale_of(resource_type, new), self._scale_of(resource_type, current))
        metadata = current["metadata"]
        attributes = AdmissionAttributes(
            operation="UPDATE",
            resource_type=resource_type,
            subresource=subresource,
            namespace=metadata.get("namespace"),
            name=metadata["name"],
            kind=kind,
            object=objects[0],
            old_object=objects[1],
        )
        self._admit(attributes)

    def _status_update(self, current: Body, candidate: Body) -> Body:
        new = copy.deepcopy(current)
        if "status" in candidate:
            new["status"] = copy.deepcopy(candidate["status"])
        else:
            new.pop("status", None)
        return new

    def _main_update(self, resource_type: ResourceType, current: Body, candidate: Body) -> Body:
        new = copy.deepcopy(candidate)
        new.update(apiVersion=current["apiVersion"], kind=current["kind"])
        metadata = new["metadata"] if isinstance(new.get("metadata"), dict) else {}
        kept = {key: current["metadata"][key] for key in _SYSTEM_METADATA if key in current["metadata"]}
        new["metadata"] = {**{k: v for k, v in metadata.items() if k not in _SYSTEM_METADATA}, **kept}
        if resource_type.status_subresource:
            new.pop("status", None)
            if "status" in current:
                new["status"] = copy.deepcopy(current["status"])
        self._check_finalizers(resource_type, current, new)
        if resource_type.tracks_generation and self._generation_changes(resource_type, current, new):
            new["metadata"]["generation"] = current["metadata"].get("generation", 0) + 1
        return new

    def _check_finalizers(self, resource_type: ResourceType, current: Body, new: Body) -> None:
        if not current["metadata"].get("deletionTimestamp"):
            return
        added = set(new["metadata"].get("finalizers") or []) - set(current["metadata"].get("finalizers") or [])
        if added:
            cause = "Forbidden: no new finalizers can be added if the object is being deleted"
            raise invalid(resource_type, current["metadata"]["name"], ("metadata.finalizers", cause))

    def _generation_changes(self, resource_type: ResourceType, current: Body, new: Body) -> bool:
        ignored = {"metadata", "status"} if resource_type.status_subresource else {"metadata"}
        old_content = {key: value for key, value in current.items() if key not in ignored}
        new_content = {key: value for key, value in new.items() if key not in ignored}
        if old_content != new_content:
            return True
        annotations = [obj["metadata"].get("annotations") or {} for obj in (current, new)]
        return resource_type.generation_tracks_annotations and annotations[0] != annotations[1]

    # Deleting.

    def delete(
        self, resource_type: ResourceType, namespace: str | None, name: str, *, options: Mapping[str, Any]
    ) -> Body:
        """DELETE: with finalizers, only mark deletionTimestamp (and bump generation); else remove at once."""
        current = self.get(resource_type, namespace, name)
        self._check_preconditions(resource_type, current, options.get("preconditions") or {})
        attributes = AdmissionAttributes(
            operation="DELETE",
            resource_type=resource_type,
            subresource=None,
            namespace=namespace,
            name=name,
            kind=(resource_type.group, resource_type.version, resource_type.kind),
            object=None,
            old_object=current,
        )
        self._admit(attributes)
        return self._delete(resource_type, current)

    def _delete(self, resource_type: ResourceType, current: Body) -> Body:
        metadata = current["metadata"]
        if metadata.get("deletionTimestamp"):
            return current
        if metadata.get("finalizers"):
            return self._mark_deleting(resource_type, current)
        return self._remove(resource_type, current)

    def _check_preconditions(
        self, resource_type: ResourceType, current: Body, preconditions: Mapping[str, Any]
    ) -> None:
        metadata = current["metadata"]
        for field in ("uid", "resourceVersion"):
            if preconditions.get(field) and preconditions[field] != metadata[field]:
                raise conflict(resource_type, metadata["name"])

    def _mark_deleting(self, resource_type: ResourceType, current: Body) -> Body:
        new = copy.deepcopy(current)
        metadata = new["metadata"]
        metadata.update(deletionTimestamp=_timestamp(self._clock()), deletionGracePeriodSeconds=0)
        if "generation" in metadata:
            metadata["generation"] += 1
        self._commit(resource_type, new, event_type="MODIFIED", old=current)
        return new

    def _remove(self, resource_type: ResourceType, last: Body) -> Body:
        self._revision += 1
        gone = _with_version(last, self._revision)
        metadata = gone["metadata"]
        del self._objects[resource_type.storage_key][(metadata.get("namespace", ""), metadata["name"])]
        self._record(
            resource_type, WatchEvent(resource_version=self._revision, event_type="DELETED", new=gone, old=None)
        )
        if resource_type.storage_key == NAMESPACE_RESOURCE.storage_key:
            self._delete_namespace_contents(metadata["name"])
        if resource_type.storage_key == CRD_RESOURCE.storage_key:
            self._forget_crd(gone)
        return gone

    def _delete_namespace_contents(self, namespace: str) -> None:
        for objects in list(self._objects.values()):
            for key, obj in list(objects.items()):
                resource_type = self.registry.find_kind(obj["apiVersion"], obj["kind"])
                if key[0] == namespace and resource_type is not None:  # the namespace controller's work: not admitted
                    self._delete(resource_type, _present(obj, resource_type))

    # Committing and watching.

    def _commit(self, resource_type: ResourceType, obj: Body, *, event_type: str, old: Body | None) -> None:
        self._revision += 1
        obj["metadata"]["resourceVersion"] = str(self._revision)
        key = (obj["metadata"].get("namespace", ""), obj["metadata"]["name"])
        self._objects[resource_type.storage_key][key] = obj
        self._record(
            resource_type, WatchEvent(resource_version=self._revision, event_type=event_type, new=obj, old=old)
        )

    def _record(self, resource_type: ResourceType, event: WatchEvent) -> None:
        history = self._history[resource_type.storage_key]
        history.append(event)
        if len(history) > self._watch_window:
            self._compacted[resource_type.storage_key] = history.popleft().resource_version
        for watcher in list(self._watchers[resource_type.storage_key]):
            watcher.offer(event)

    def watch(
        self,
        resource_type: ResourceType,
        namespace: str | None,
        *,
        labels: Sequence[LabelRequirement],
        fields: Sequence[FieldRequirement],
        since: int | None,
    ) -> tuple[Watcher, list[Body]]:
        """Open a watch: the initial events (current objects, or history after `since`) and a live Watcher."""
        watcher = Watcher(resource_type=resource_type, namespace=namespace, labels=labels, fields=fields)
        if since is None:
            objects = self.list_objects(resource_type, namespace, labels=labels, fields=fields)
            initial = [{"type": "ADDED", "object": obj} for obj in objects]
        else:
            initial = self._replay(watcher, since)
        self._watchers[resource_type.storage_key].add(watcher)
        return watcher, initial

    def _replay(self, watcher: Watcher, since: int) -> list[Body]:
        storage_key = watcher.resource_type.storage_key
        if since < self._compacted[storage_key]:
            raise expired(f"too old resource version: {since} ({self._compacted[storage_key] + 1})")
        events = (watcher.translate(event) for event in self._history[storage_key] if event.resource_version > since)
        return [event for event in events if event is not None]

    def unwatch(self, watcher: Watcher) -> None:
        """Forget a watcher whose stream has ended."""
        self._watchers[watcher.resource_type.storage_key].discard(watcher)

    def watchers(self, resource: str | None = None) -> list[Watcher]:
        """Open watchers, optionally only those of one resource (plural or plural.group)."""
        every = (watcher for watchers in self._watchers.values() for watcher in watchers)
        return [w for w in every if resource is None or w.resource_type.matches(resource)]

    # Scale subresource.

    def get_scale(self, resource_type: ResourceType, namespace: str | None, name: str) -> Body:
        """GET `/scale`: an autoscaling/v1 Scale built from the object."""
        return self._scale_of(resource_type, self.get(resource_type, namespace, name))

    def write_scale(
        self,
        resource_type: ResourceType,
        namespace: str | None,
        name: str,
        *,
        content_type: str | None,
        body: Any,
    ) -> Body:
        """PUT (content_type None) or PATCH `/scale`: sets the replicas path, bumping generation like a spec edit."""
        current = self.get(resource_type, namespace, name)
        scale = self._scale_of(resource_type, current)
        if content_type is not None:
            body = apply_patch(scale, content_type=content_type, patch=body, strategic=True)
        if not isinstance(body, dict):
            raise ApiError(400, "the body of the request was in an unknown format")
        self._check_version(resource_type, current, body, required=False)
        replicas = (body.get("spec") or {}).get("replicas", 0)
        if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
            raise invalid(resource_type, name, ("spec.replicas", f"Invalid value: {replicas!r}: must be >= 0"))
        assert resource_type.scale is not None  # for type checkers: the router checks it
        candidate = copy.deepcopy(current)
        _set_path(candidate, resource_type.scale.spec_replicas_path, replicas)
        admit = functools.partial(self._admit_update, resource_type, "scale", current)
        updated = self._update(resource_type, current, candidate, subresource=None, admit=admit)
        return self._scale_of(resource_type, updated)

    def _scale_of(self, resource_type: ResourceType, obj: Body) -> Body:
        spec = resource_type.scale
        assert spec is not None  # for type checkers: the router checks it
        if spec.label_selector_path:
            selector = _get_path(obj, spec.label_selector_path) or ""
        else:
            selector = format_label_selector((obj.get("spec") or {}).get("selector") or {})
        metadata = obj["metadata"]
        keys = ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
        status: Body = {"replicas": _get_path(obj, spec.status_replicas_path) or 0}
        if selector:
            status["selector"] = selector
        return {
            "kind": "Scale",
            "apiVersion": "autoscaling/v1",
            "metadata": {key: metadata[key] for key in keys if key in metadata},
            "spec": {"replicas": _get_path(obj, spec.spec_replicas_path) or 0},
            "status": status,
        }

    # CustomResourceDefinitions become served resources, as the apiextensions controllers make them.

    def _validate_crd(self, crd: Body, name: str) -> None:
        spec = crd.get("spec") or {}
        expected = f"{(spec.get('names') or {}).get('plural')}.{spec.get('group')}"
        if name != expected:
            cause = f'Invalid value: "{name}": must be spec.names.plural+"."+spec.group'
            raise invalid(CRD_RESOURCE, name, ("metadata.name", cause))

    def _establish_crd(self, crd: Body) -> None:
        self._serve_crd(crd)
        spec = crd["spec"]
        now = _timestamp(self._clock())
        conditions = [
            {"type": kind, "status": "True", "reason": reason, "message": message, "lastTransitionTime": now}
            for kind, reason, message in (
                ("NamesAccepted", "NoConflicts", "no conflicts found"),
                ("Established", "InitialNamesAccepted", "the initial names have been accepted"),
            )
        ]
        stored = [version["name"] for version in spec["versions"] if version.get("storage")]
        status = {"acceptedNames": spec["names"], "storedVersions": stored, "conditions": conditions}
        self._update(CRD_RESOURCE, crd, {**crd, "status": status}, subresource="status")

    def _serve_crd(self, crd: Body) -> None:
        self.registry.remove(_crd_storage_key(crd))
        for resource_type in resource_types_from_crd(crd):
            self.registry.add(resource_type)

    def _forget_crd(self, crd: Body) -> None:
        storage_key = _crd_storage_key(crd)
        self.registry.remove(storage_key)
        self._objects.pop(storage_key, None)
        for watcher in self._watchers.pop(storage_key, set()):
            watcher.close()
