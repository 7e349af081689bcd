"""A stateful Kubernetes API server emulator for tests and the demo, built on kmock 0.8.

`KubeEmulator` subclasses kmock's `KubernetesScaffold` and replaces its request handling with API machinery that
behaves like a real API server (see docs/emulator.md for the rules and the differences). kmock's DSL reactions
(`emulator["patch", "deployments"] << 500`) still take precedence over the emulated behaviour.

Run it in-process with `running_emulator()` (a thread with its own event loop), or as a process:
`python -m tests.support.emulator --port 0 --crd crds/servicelevelobjectives.yaml`.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import copy
import dataclasses
import datetime
import functools
import itertools
import json
import os
import signal
import sys
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import aiohttp.web
import attrs
import kmock
import yaml
import yarl
from kmock._internal.rendering import ReactionMismatchError  # raised by depleted reactions; kmock omits it from __all__
from tests.support.emulator_admission import AdmissionPending, WebhookAdmission, webhook_configuration_strategy
from tests.support.emulator_leases import decode_lease, lease_strategy
from tests.support.emulator_log import (
    ANY,
    WRITE_VERBS,
    CallSeen,
    CallTally,
    FaultBook,
    FaultRule,
    Match,
    RequestLog,
    RequestRecord,
    only_writes,
)
from tests.support.emulator_resources import (
    CRD_RESOURCE,
    KOPF_PEERING_CRDS,
    LEASE_RESOURCE,
    WEBHOOK_CONFIGURATION_RESOURCE,
    Body,
    ResourceRegistry,
    ResourceType,
    api_group,
    api_group_list,
    api_resource_list,
    api_versions,
)
from tests.support.emulator_selectors import (
    FieldRequirement,
    LabelRequirement,
    parse_field_selector,
    parse_label_selector,
)
from tests.support.emulator_store import MERGE_PATCH, ApiError, ObjectStore, Watcher
from tests.support.emulator_tables import to_table, wants_table

T = TypeVar("T")
CONTROL_PREFIX = "/_emulator/"
INITIAL_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
SERVER_VERSION = {
    "major": "1",
    "minor": "32",
    "gitVersion": "v1.32.0-emulated",
    "gitCommit": "0000000000000000000000000000000000000000",
    "gitTreeState": "clean",
    "buildDate": "2024-12-11T00:00:00Z",
    "goVersion": "go1.23.3",
    "compiler": "gc",
    "platform": "linux/amd64",
}
_HEALTH_PATHS = ("/healthz", "/livez", "/readyz")
_ACTIONS = {
    "list": kmock.action.LIST,
    "watch": kmock.action.WATCH,
    "get": kmock.action.FETCH,
    "create": kmock.action.CREATE,
    "patch": kmock.action.UPDATE,
    "delete": kmock.action.DELETE,
}
_VERBS = {"POST": "create", "PUT": "update", "PATCH": "patch"}


def _utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


@dataclasses.dataclass(frozen=True, kw_only=True)
class ApiCall:
    """A request URL understood the way the API server routes it."""

    method: str
    """HTTP method."""
    path: str
    """URL path."""
    params: Mapping[str, str]
    """Query parameters."""
    group: str | None = None
    """API group ("" for core); None for non-resource paths such as /version or /apis/{group}."""
    version: str | None = None
    """API version."""
    plural: str | None = None
    """Resource; None for group-version discovery."""
    namespace: str | None = None
    """Namespace in the URL."""
    name: str | None = None
    """Object name in the URL."""
    subresource: str | None = None
    """status, scale, ..."""

    @property
    def verb(self) -> str | None:
        """The RBAC verb, or None for non-resource requests."""
        if self.plural is None:
            return None
        if self.method == "GET":
            watching = self.params.get("watch") in ("true", "1")
            return "watch" if watching else ("get" if self.name else "list")
        if self.method == "DELETE":
            return "delete" if self.name else "deletecollection"
        return _VERBS.get(self.method)


def _is_namespace_subresource(group: str, rest: Sequence[str]) -> bool:
    return group == "" and len(rest) == 3 and rest[2] in ("status", "finalize")


def parse_call(method: str, path: str, params: Mapping[str, str]) -> ApiCall:
    """Route a URL: /api/v1/..., /apis/{group}/{version}/..., [namespaces/{ns}/]{plural}[/{name}[/{sub}]]."""
    parts = [part for part in path.split("/") if part]
    call = ApiCall(method=method, path=path, params=params)
    if parts[:1] == ["api"] and len(parts) >= 2:
        group, version, rest = "", parts[1], parts[2:]
    elif parts[:1] == ["apis"] and len(parts) >= 3:
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return call
    namespace = None
    if rest[:1] == ["namespaces"] and len(rest) >= 3 and not _is_namespace_subresource(group, rest):
        namespace, rest = rest[1], rest[2:]
    return dataclasses.replace(
        call,
        group=group,
        version=version,
        namespace=namespace,
        plural=rest[0] if rest else None,
        name=rest[1] if len(rest) > 1 else None,
        subresource="/".join(rest[2:]) or None,
    )


def _content_type(request: kmock.Request) -> str | None:
    value = request.headers.get("Content-Type")
    return value.split(";")[0].strip().lower() if value else None


def _sees(view: kmock.View, request: kmock.Request) -> bool:
    """kmock's `request in view`, without replaying the whole request log for plain criteria chains."""
    while not isinstance(view, kmock.Root):
        if type(view) is kmock.Filter:
            if not view.criteria(request):
                return False
        elif type(view) is not kmock.Priority:
            return request in view  # slices, groups, exclusions and streams need the history: kmock's exact check
        view = view._source
    return True


def _json_line(event: Body) -> bytes:
    return json.dumps(event, separators=(",", ":")).encode() + b"\n"


def _unchanged(event: Body) -> Body:
    return event


class NotServed(ApiError):
    """A path no API is installed at: the real server's fallback handler answers a plain-text 404, no Status.

    Clients tell it from an object's 404 (a Status with reason NotFound and details) only by that body.
    """

    def __init__(self) -> None:
        super().__init__(404, "the server could not find the requested resource")


def _with_warnings(response: aiohttp.web.Response, warnings: Sequence[str]) -> aiohttp.web.Response:
    """One `Warning: 299 - "text"` header per distinct warning (kubectl prints each as `Warning: text`)."""
    for warning in dict.fromkeys(warnings):
        response.headers.add("Warning", '299 - "{}"'.format(warning.replace('"', '\\"')))
    return response


def _error_response(error: ApiError) -> aiohttp.web.Response:
    if isinstance(error, NotServed):
        return aiohttp.web.Response(status=404, text="404 page not found\n", content_type="text/plain")
    headers = {"Retry-After": str(error.retry_after)} if error.retry_after is not None else None
    return aiohttp.web.json_response(error.status(), status=error.code, headers=headers)


def _page_token(items: Sequence[Body], index: int) -> str:
    metadata = items[index]["metadata"]
    key = json.dumps([metadata.get("namespace", ""), metadata["name"]])
    return base64.urlsafe_b64encode(key.encode()).decode()


def _after_token(items: list[Body], token: str) -> list[Body]:
    try:
        namespace, name = json.loads(base64.urlsafe_b64decode(token.encode()))
    except ValueError as exc:
        raise ApiError(400, f"continue key is not valid: {exc}") from exc
    return [obj for obj in items if (obj["metadata"].get("namespace", ""), obj["metadata"]["name"]) > (namespace, name)]


def _paginate(items: list[Body], params: Mapping[str, str]) -> tuple[list[Body], Body]:
    """Apply `limit` and `continue`; the token is the last key served (no snapshot, see docs/emulator.md)."""
    if params.get("continue"):
        items = _after_token(items, params["continue"])
    limit = int(params.get("limit") or 0)
    if not limit or len(items) <= limit:
        return items, {}
    metadata = {"continue": _page_token(items, limit - 1), "remainingItemCount": len(items) - limit}
    return items[:limit], metadata


def _int_param(params: Mapping[str, str], key: str) -> int | None:
    value = params.get(key)
    if value in (None, "", "0") and key == "resourceVersion":
        return None
    try:
        return None if value is None else int(value)
    except ValueError as exc:
        raise ApiError(400, f"invalid {key}: {value!r}") from exc


async def _run_in_loop(function: Callable[[], T]) -> T:
    return function()


@attrs.define(kw_only=True, eq=False, repr=False)
class KubeEmulator(kmock.KubernetesScaffold):
    """kmock's Kubernetes scaffold with real API machinery: metadata, status, patches, watches, faults, a log."""

    watch_window: int = 10_000
    """Changes kept per resource for watches that resume from a resourceVersion; older ones get 410 Gone."""
    request_log_limit: int | None = None
    """Keep only this many recent requests in the log (None keeps all; long demo runs may want a limit)."""
    clock: Callable[[], datetime.datetime] = _utc_now
    """Source of creationTimestamp, deletionTimestamp and Table ages."""
    kopf_peering: bool = True
    """Install kopf's KopfPeering and ClusterKopfPeering CRDs at start, like a cluster prepared for kopf."""
    webhook_services: Mapping[str, str] = attrs.field(factory=dict)
    """Where webhooks' `clientConfig.service` live: "namespace/name" -> host (no cluster DNS here); port from it."""

    registry: ResourceRegistry = attrs.field(init=False, factory=ResourceRegistry)
    """The resource types served (built-ins plus CRDs)."""
    store: ObjectStore = attrs.field(init=False)
    """The objects and watches."""
    admission: WebhookAdmission = attrs.field(init=False)
    """Validating admission webhooks, called before a write is stored."""
    _log: RequestLog = attrs.field(init=False)
    _faults: FaultBook = attrs.field(init=False, factory=FaultBook)
    _calls: CallTally = attrs.field(init=False, factory=CallTally)
    _loop: asyncio.AbstractEventLoop | None = attrs.field(init=False, default=None)
    _base_url: str | None = attrs.field(init=False, default=None)
    _scratch_namespaces: Iterator[int] = attrs.field(init=False, factory=itertools.count)

    def __attrs_post_init__(self) -> None:
        # kmock's scaffold would register its stateless fallbacks here; this class serves those paths itself.
        self.store = ObjectStore(registry=self.registry, clock=self.clock, watch_window=self.watch_window)
        self.store.strategies[WEBHOOK_CONFIGURATION_RESOURCE.storage_key] = webhook_configuration_strategy
        self.store.strategies[LEASE_RESOURCE.storage_key] = lease_strategy
        self.store.decoders[LEASE_RESOURCE.storage_key] = decode_lease
        self.admission = WebhookAdmission(store=self.store, registry=self.registry, services=self.webhook_services)
        self._log = RequestLog(limit=self.request_log_limit)
        namespaces = self.registry.resolve("namespaces")
        for namespace in INITIAL_NAMESPACES:
            self.store.create(namespaces, None, {"metadata": {"name": namespace}})
        for crd in KOPF_PEERING_CRDS if self.kopf_peering else ():
            self.store.create(CRD_RESOURCE, None, crd)

    def __repr__(self) -> str:
        return f"KubeEmulator(url={self._base_url!r}, resourceVersion={self.store.resource_version})"

    # Serving HTTP.

    @property
    def url(self) -> yarl.URL:
        """Where the emulator listens (while it is being served)."""
        if self._base_url is None:
            raise RuntimeError("The emulator is not being served.")
        return yarl.URL(self._base_url)

    def attach(self, loop: asyncio.AbstractEventLoop, base_url: str) -> None:
        """Called by serving(): remember the loop that owns the state, so other threads can reach it."""
        self._loop, self._base_url = loop, base_url

    def detach(self) -> None:
        """Called by serving() on shutdown: end every open watch stream."""
        for watcher in self.store.watchers():
            watcher.close()
        self._loop = self._base_url = None

    async def __call__(self, raw_request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        """Entry point for aiohttp; replaces kmock's URL parsing, which fails on /api/v1/namespaces."""
        request = await self._parse_request(raw_request)
        self._requests.append(request)
        try:
            return await self._handle(request)
        except Exception as exc:  # an emulator bug: answer 500 as kmock does and keep it for `errors`
            if self._errors:
                self._errors[-1].append(exc)
            return await self._render_error(exc)

    async def _parse_request(self, raw_request: aiohttp.web.BaseRequest) -> kmock.Request:
        body = await raw_request.read()
        try:
            data = json.loads(body) if body else None
        except ValueError:
            data = None
        call = parse_call(raw_request.method, raw_request.path, dict(raw_request.query))
        resource = None
        if call.group is not None:
            resource = kmock.resource(group=call.group, version=call.version, plural=call.plural)
        return kmock.Request(
            id=len(self._requests),
            method=raw_request.method,
            url=raw_request.url,
            params=dict(raw_request.query),
            headers=dict(raw_request.headers),
            cookies=dict(raw_request.cookies),
            body=body,
            text=body.decode(errors="replace"),
            data=data,
            action=_ACTIONS.get(call.verb or ""),
            resource=resource,
            namespace=call.namespace,
            name=call.name,
            subresource=call.subresource,
            raw_request=raw_request,
        )

    async def _handle(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        call = parse_call(request.method.value, request.url.path, request.params)
        if call.path.startswith(CONTROL_PREFIX):
            return self._control(request, call)
        record = self._log.add(
            method=call.method,
            path=call.path,
            query=dict(call.params),
            verb=call.verb,
            group=call.group,
            version=call.version,
            resource=call.plural,
            subresource=call.subresource,
            namespace=call.namespace,
            name=call.name or self._created_name(call, request.data),
            body=request.data,
            content_type=_content_type(request),
            user_agent=request.headers.get("User-Agent"),
        )
        self._calls.add(record)
        response = await self._serve(request, call, record)
        record.status = response.status
        return response

    @staticmethod
    def _created_name(call: ApiCall, body: Any) -> str | None:
        """A create names its object in the body; the log shows it, as audit logs' objectRef does."""
        if call.verb != "create" or not isinstance(body, dict):
            return None
        name = (body.get("metadata") or {}).get("name")
        return name if isinstance(name, str) else None

    async def _serve(self, request: kmock.Request, call: ApiCall, record: RequestRecord) -> aiohttp.web.StreamResponse:
        rule = self._faults.take(record)
        if rule is not None:
            return await self._fail(request, call, rule, record)
        if self._payloads and (reaction := await self._react(request)) is not None:
            return reaction
        try:
            if call.plural is None:
                return self._discovery(call)
            resource_type = self._resource_type(call)
            if call.verb == "watch":
                return await self._watch(request, call, resource_type, record)
            return await self._serve_resource(request, call, resource_type)
        except ApiError as error:
            return _error_response(error)

    async def _serve_resource(
        self, request: kmock.Request, call: ApiCall, resource_type: ResourceType
    ) -> aiohttp.web.Response:
        """Serve a request in one synchronous run of the store (atomic in this loop), or, when webhooks must admit
        a write, in runs around awaiting them: nothing is stored until a run computes the write they allowed."""
        admitted: AdmissionPending | None = None
        hook_warnings: list[str] = []
        while True:
            self.store.strict_fields = call.params.get("fieldValidation") == "Strict"
            self.store.warnings = []
            self.store.admission = self.admission.gate(admitted) if call.verb in WRITE_VERBS else None
            try:
                status, body = self._resource(request, call, resource_type)
                response = aiohttp.web.json_response(body, status=status)
                return _with_warnings(response, [*self.store.warnings, *hook_warnings])
            except ApiError as error:
                return _with_warnings(_error_response(error), [*self.store.warnings, *hook_warnings])
            except AdmissionPending as pending:
                admitted = pending
            finally:
                self.store.admission = None
            warnings, refusal = await self.admission.review(admitted, params=call.params, body=request.data)
            hook_warnings += warnings
            if refusal is not None:
                return _with_warnings(_error_response(refusal), [*self.store.warnings, *hook_warnings])

    async def _react(self, request: kmock.Request) -> aiohttp.web.StreamResponse | None:
        """Serve with the first matching kmock DSL reaction, by priority (kmock's own order)."""
        for reaction in self._reactions_by_priority():
            if reaction._disabled.is_set() or not _sees(reaction._source, request):
                continue
            try:
                return await reaction(request)
            except ReactionMismatchError:
                reaction._disabled.set()
            except NotImplementedError:
                continue
        return None

    def _reactions_by_priority(self) -> list[kmock.Reaction]:
        priorities = [reaction.priorities for reaction in self._payloads]
        width = max((len(priority) for priority in priorities), default=0)
        keys = [tuple(-p for p in priority) + (0,) * (width - len(priority)) for priority in priorities]
        return [self._payloads[index] for index in sorted(range(len(keys)), key=keys.__getitem__)]

    async def _fail(
        self, request: kmock.Request, call: ApiCall, rule: FaultRule, record: RequestRecord
    ) -> aiohttp.web.StreamResponse:
        error = rule.error()
        if call.verb != "watch" or error.code != 410:
            return _error_response(error)
        response = await self._open_stream(request, record)
        expired = ApiError(410, f"too old resource version: {call.params.get('resourceVersion', '')}")
        await response.write(_json_line({"type": "ERROR", "object": expired.status()}))
        return response

    # Discovery and other non-resource paths.

    def _discovery(self, call: ApiCall) -> aiohttp.web.Response:
        path = call.path.rstrip("/") or "/"
        if path in _HEALTH_PATHS:
            return aiohttp.web.Response(text="ok")
        document = self._discovery_document(path, call)
        if document is None:
            raise NotServed
        return aiohttp.web.json_response(document)

    def _discovery_document(self, path: str, call: ApiCall) -> Body | None:
        if path == "/version":
            return SERVER_VERSION
        if path == "/api":
            return api_versions(f"{self.url.host}:{self.url.port}")
        if path == "/apis":
            return api_group_list(self.registry)
        if path == "/":
            return {"paths": self._paths()}
        if path.startswith("/apis/") and path.count("/") == 2:
            return api_group(self.registry, path.split("/")[2])
        if call.group is not None and call.version is not None:
            return api_resource_list(self.registry, call.group, call.version)
        return None

    def _paths(self) -> list[str]:
        paths = {"/api", "/api/v1", "/apis", "/version", *_HEALTH_PATHS}
        for group, versions in self.registry.group_versions().items():
            if group:
                paths |= {f"/apis/{group}", *(f"/apis/{group}/{version}" for version in versions)}
        return sorted(paths)

    # Resources.

    def _resource_type(self, call: ApiCall) -> ResourceType:
        assert call.group is not None  # routed here only with a group, version and plural
        assert call.version is not None
        assert call.plural is not None
        resource_type = self.registry.find(call.group, call.version, call.plural)
        not_served = NotServed()
        if resource_type is None or (call.namespace is not None and not resource_type.namespaced):
            raise not_served
        allowed = {None} | ({"status"} if resource_type.status_subresource else set())
        allowed |= {"scale"} if resource_type.scale is not None else set()
        if call.subresource not in allowed:
            raise not_served
        single = call.verb in ("get", "update", "patch", "delete", "create")
        if resource_type.namespaced and single and call.namespace is None:
            raise not_served
        if "dryRun" in call.params:
            raise ApiError(400, "dryRun is not supported by the emulator")
        return resource_type

    def _resource(self, request: kmock.Request, call: ApiCall, resource_type: ResourceType) -> tuple[int, Body]:
        if call.verb == "list":
            return 200, self._list(request, call, resource_type)
        if call.verb == "create" and call.name is None:
            return 201, self.store.create(resource_type, call.namespace, request.data)
        if call.name is None:
            raise ApiError(405, f"{call.method} is not supported on {resource_type.qualified_name} collections")
        store, namespace, subresource = self.store, call.namespace, call.subresource
        created = call.verb == "update" and store.creates_on_update(resource_type, namespace, call.name, subresource)
        return (201 if created else 200), self._object_call(request, call, resource_type, call.name)

    def _object_call(self, request: kmock.Request, call: ApiCall, resource_type: ResourceType, name: str) -> Body:
        store, namespace, subresource = self.store, call.namespace, call.subresource
        if subresource == "scale":
            return self._scale_call(request, call, resource_type, name)
        if call.verb == "get":
            obj = store.get(resource_type, namespace, name)
            return self._maybe_table(request, resource_type, [obj]) or obj
        if call.verb == "update":
            return store.replace(resource_type, namespace, name, request.data, subresource=subresource)
        if call.verb == "patch":
            content_type = _content_type(request) or ""
            return store.patch(
                resource_type, namespace, name, content_type=content_type, patch=request.data, subresource=subresource
            )
        if call.verb == "delete":
            return store.delete(resource_type, namespace, name, options=request.data or {})
        raise ApiError(405, f"{call.method} is not supported here")

    def _scale_call(self, request: kmock.Request, call: ApiCall, resource_type: ResourceType, name: str) -> Body:
        if call.verb == "get":
            return self.store.get_scale(resource_type, call.namespace, name)
        if call.verb not in ("update", "patch"):
            raise ApiError(405, f"{call.method} is not supported on the scale subresource")
        content_type = (_content_type(request) or "") if call.verb == "patch" else None
        return self.store.write_scale(resource_type, call.namespace, name, content_type=content_type, body=request.data)

    def _selectors(
        self, call: ApiCall, resource_type: ResourceType
    ) -> tuple[tuple[LabelRequirement, ...], tuple[FieldRequirement, ...]]:
        try:
            labels = parse_label_selector(call.params.get("labelSelector", ""))
            fields = parse_field_selector(call.params.get("fieldSelector", ""), supported=resource_type.field_labels)
        except ValueError as exc:
            raise ApiError(400, str(exc)) from exc
        if call.name is not None:  # the legacy watch of a single object by URL
            fields += (FieldRequirement("metadata.name", call.name, negated=False),)
        return labels, fields

    def _list(self, request: kmock.Request, call: ApiCall, resource_type: ResourceType) -> Body:
        labels, fields = self._selectors(call, resource_type)
        items = self.store.list_objects(resource_type, call.namespace, labels=labels, fields=fields)
        items, page = _paginate(items, call.params)
        table = self._maybe_table(request, resource_type, items)
        if table is not None:
            table["metadata"].update(page)
            return table
        return {
            "kind": f"{resource_type.kind}List",
            "apiVersion": resource_type.api_version,
            "metadata": {"resourceVersion": self.store.resource_version, **page},
            "items": items,
        }

    def _maybe_table(self, request: kmock.Request, resource_type: ResourceType, objects: list[Body]) -> Body | None:
        if not wants_table(request.headers.get("Accept", "")):
            return None
        version = self.store.resource_version
        return to_table(resource_type, objects, now=self.clock(), resource_version=version)

    # Watches.

    async def _open_stream(self, request: kmock.Request, record: RequestRecord) -> aiohttp.web.StreamResponse:
        response = aiohttp.web.StreamResponse(headers={"Content-Type": "application/json"})
        assert request._raw_request is not None  # always set by _parse_request()
        await response.prepare(request._raw_request)
        record.status = response.status
        return response

    def _bookmark(self, resource_type: ResourceType) -> Body:
        metadata = {
            "resourceVersion": self.store.resource_version,
            "annotations": {"k8s.io/initial-events-end": "true"},
        }
        body = {"kind": resource_type.kind, "apiVersion": resource_type.api_version, "metadata": metadata}
        return {"type": "BOOKMARK", "object": body}

    async def _watch(
        self, request: kmock.Request, call: ApiCall, resource_type: ResourceType, record: RequestRecord
    ) -> aiohttp.web.StreamResponse:
        labels, fields = self._selectors(call, resource_type)
        initial_events = call.params.get("sendInitialEvents") == "true"
        since = None if initial_events else _int_param(call.params, "resourceVersion")
        timeout = _int_param(call.params, "timeoutSeconds")
        response = await self._open_stream(request, record)
        try:
            watcher, initial = self.store.watch(
                resource_type, call.namespace, labels=labels, fields=fields, since=since
            )
        except ApiError as error:  # too old a resourceVersion: the server says so inside the stream
            await response.write(_json_line({"type": "ERROR", "object": error.status()}))
            return response
        if initial_events and call.params.get("allowWatchBookmarks") == "true":
            initial.append(self._bookmark(resource_type))
        render: Callable[[Body], Body] = _unchanged
        if wants_table(request.headers.get("Accept", "")):
            render = functools.partial(self._table_event, resource_type)
        try:
            for event in initial:
                await response.write(_json_line(render(event)))
            await self._pump(response, watcher, timeout, render)
        except ConnectionError:
            pass  # the client went away
        finally:
            self.store.unwatch(watcher)
        return response

    def _table_event(self, resource_type: ResourceType, event: Body) -> Body:
        """`kubectl get -w` asks for Table events: one row per changed object."""
        if event["type"] not in ("ADDED", "MODIFIED", "DELETED"):
            return event
        version = event["object"]["metadata"]["resourceVersion"]
        table = to_table(resource_type, [event["object"]], now=self.clock(), resource_version=version)
        return {"type": event["type"], "object": table}

    async def _pump(
        self,
        response: aiohttp.web.StreamResponse,
        watcher: Watcher,
        lifetime: int | None,
        render: Callable[[Body], Body],
    ) -> None:
        loop = asyncio.get_running_loop()
        deadline = None if not lifetime else loop.time() + lifetime
        while True:
            remaining = None if deadline is None else max(0.0, deadline - loop.time())
            try:
                event = await asyncio.wait_for(watcher.queue.get(), remaining)
            except TimeoutError:
                return
            if event is None:
                return
            await response.write(_json_line(render(event)))

    # The private control API for tests that run the emulator in another process (see kube.EmulatorClient).

    def _control(self, request: kmock.Request, call: ApiCall) -> aiohttp.web.Response:
        route = (call.method, call.path.removeprefix(CONTROL_PREFIX).rstrip("/"))
        params, data = call.params, request.data or {}
        if route == ("GET", "requests"):
            filters = {key: params[key] or None for key in ("namespace", "name", "subresource") if key in params}
            records = self._log.select(verb=params.get("verb"), resource=params.get("resource"), **filters)
            return aiohttp.web.json_response({"items": [record.to_json() for record in records]})
        if route == ("GET", "calls"):
            return aiohttp.web.json_response({"items": [call.to_json() for call in self._calls.calls()]})
        if route == ("DELETE", "requests"):
            self._log.clear()
        elif route == ("POST", "faults"):
            self._faults.add(FaultRule.from_json(data))
        elif route == ("DELETE", "faults"):
            self._faults.clear()
        elif route in (("POST", "watches/drop"), ("POST", "watches/stall")):
            count = self._disturb_watches(params.get("resource"), stall=route[1].endswith("stall"))
            return aiohttp.web.json_response({"watches": count})
        elif route == ("GET", "state"):
            return aiohttp.web.json_response(self._state())
        else:
            return _error_response(ApiError(404, f"no control endpoint {call.method} {call.path}"))
        return aiohttp.web.json_response({})

    def _disturb_watches(self, resource: str | None, *, stall: bool) -> int:
        watchers = self.store.watchers(resource)
        for watcher in watchers:
            if stall:
                watcher.stalled = True
            else:
                watcher.close()
        return len(watchers)

    def _state(self) -> Body:
        return {"resourceVersion": self.store.resource_version, "items": self.store.dump()}

    # The in-process API for tests: thread-safe, it runs each call in the emulator's event loop.

    def _call(self, function: Callable[[], T]) -> T:
        loop = self._loop
        try:
            current = asyncio.get_running_loop()
        except RuntimeError:
            current = None
        if loop is None or current is loop:
            return function()
        return asyncio.run_coroutine_threadsafe(_run_in_loop(function), loop).result(timeout=30)

    def load_crd(self, source: str | os.PathLike[str] | Mapping[str, Any]) -> list[str]:
        """Install every CustomResourceDefinition in a YAML file (or a parsed CRD); returns their names."""
        if isinstance(source, Mapping):
            documents = [dict(source)]
        else:
            documents = [doc for doc in yaml.safe_load_all(Path(source).read_text()) if doc]
        crds = [doc for doc in documents if doc.get("kind") == "CustomResourceDefinition"]
        if not crds:
            raise ValueError(f"no CustomResourceDefinition in {source!r}")
        return [self._call(functools.partial(self._install_crd, crd))["metadata"]["name"] for crd in crds]

    def _install_crd(self, crd: Body) -> Body:
        existing = self.store.find(CRD_RESOURCE, None, crd["metadata"]["name"])
        if existing is None:
            return self.store.create(CRD_RESOURCE, None, crd)
        version = existing["metadata"]["resourceVersion"]
        body = {**crd, "metadata": {**crd["metadata"], "resourceVersion": version}}
        return self.store.replace(CRD_RESOURCE, None, crd["metadata"]["name"], body, subresource=None)

    def create_object(self, body: Mapping[str, Any]) -> Body:
        """Create an object as a client would (kind from apiVersion/kind); its namespace is created if missing."""
        return self._call(lambda: copy.deepcopy(self._create_object(dict(body))))

    def _create_object(self, body: Body) -> Body:
        resource_type = self.registry.find_kind(body.get("apiVersion", ""), body.get("kind", ""))
        if resource_type is None:
            raise KeyError(f"no resource serves {body.get('apiVersion')} {body.get('kind')}")
        namespace = (body.get("metadata") or {}).get("namespace") or "default"
        namespaces = self.registry.resolve("namespaces")
        if resource_type.namespaced and self.store.find(namespaces, None, namespace) is None:
            self.store.create(namespaces, None, {"metadata": {"name": namespace}})
        return self.store.create(resource_type, namespace if resource_type.namespaced else None, body)

    def read_object(self, resource: str, namespace: str | None, name: str) -> Body | None:
        """The stored object (resource as plural, plural.group or apiVersion/plural), or None."""
        return self._call(lambda: copy.deepcopy(self.store.find(self.registry.resolve(resource), namespace, name)))

    def list_objects(self, resource: str, namespace: str | None = None) -> list[Body]:
        """Stored objects of a resource, sorted by namespace and name."""
        return self._call(lambda: copy.deepcopy(self.store.list_objects(self.registry.resolve(resource), namespace)))

    def patch_object(
        self,
        resource: str,
        namespace: str | None,
        name: str,
        patch: Mapping[str, Any],
        *,
        subresource: str | None = None,
    ) -> Body:
        """Merge-patch an object (or its status), bypassing the request log and faults."""

        def run() -> Body:
            resource_type = self.registry.resolve(resource)
            patched = self.store.patch(
                resource_type, namespace, name, content_type=MERGE_PATCH, patch=dict(patch), subresource=subresource
            )
            return copy.deepcopy(patched)

        return self._call(run)

    def delete_object(self, resource: str, namespace: str | None, name: str) -> Body:
        """Delete an object (only marked for deletion while it has finalizers)."""

        def run() -> Body:
            deleted = self.store.delete(self.registry.resolve(resource), namespace, name, options={})
            return copy.deepcopy(deleted)

        return self._call(run)

    def requests(
        self,
        *,
        verb: str | None = None,
        resource: str | None = None,
        namespace: Match = ANY,
        name: Match = ANY,
        subresource: Match = ANY,
    ) -> list[RequestRecord]:
        """Logged requests, oldest first; `subresource=None` keeps only requests to the main resource."""
        return self._call(
            lambda: self._log.select(
                verb=verb, resource=resource, namespace=namespace, name=name, subresource=subresource
            )
        )

    def writes_to(
        self, resource: str, *, namespace: Match = ANY, name: Match = ANY, subresource: Match = ANY
    ) -> list[RequestRecord]:
        """Logged create/update/patch/delete requests to a resource (including ones that failed)."""
        records = self.requests(resource=resource, namespace=namespace, name=name, subresource=subresource)
        return only_writes(records)

    def clear_requests(self) -> None:
        """Empty the request log (calls_seen() keeps counting)."""
        self._call(self._log.clear)

    def calls_seen(self) -> list[CallSeen]:
        """Every distinct (verb, group, resource, subresource, namespace, name, path, User-Agent) since start."""
        return self._call(self._calls.calls)

    def fail_next(
        self,
        *,
        status: int,
        verb: str | None = None,
        resource: str | None = None,
        namespace: Match = ANY,
        name: Match = ANY,
        subresource: Match = ANY,
        count: int = 1,
        retry_after: int | None = None,
        message: str = "injected fault",
    ) -> None:
        """Answer the next `count` matching requests with `status` (410 on a watch: an ERROR event)."""
        rule = FaultRule(
            status=status,
            verb=verb,
            resource=resource,
            namespace=namespace,
            name=name,
            subresource=subresource,
            remaining=count,
            retry_after=retry_after,
            message=message,
        )
        self._call(lambda: self._faults.add(rule))

    def clear_faults(self) -> None:
        """Disarm every fault rule."""
        self._call(self._faults.clear)

    @contextlib.contextmanager
    def scratch_namespace(self, prefix: str) -> Iterator[str]:
        """A namespace no other test uses, so request logs and objects never mix; faults are disarmed after."""
        name = f"{prefix}-{next(self._scratch_namespaces)}"
        self.create_object({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
        try:
            yield name
        finally:
            self.clear_faults()

    def drop_watches(self, resource: str | None = None) -> int:
        """End the open watch streams (of one resource, or all) as a broken connection would; returns how many."""
        return self._call(lambda: self._disturb_watches(resource, stall=False))

    def stall_watches(self, resource: str | None = None) -> int:
        """Keep the open watch streams connected but silent from now on; new watches are unaffected."""
        return self._call(lambda: self._disturb_watches(resource, stall=True))

    def open_watches(self, resource: str | None = None) -> int:
        """How many watch streams are open (of one resource, or all)."""
        return self._call(lambda: len(self.store.watchers(resource)))

    def state(self) -> Body:
        """Every stored object and the current resourceVersion (what --state-dump writes)."""
        return self._call(lambda: copy.deepcopy(self._state()))


@contextlib.asynccontextmanager
async def serving(emulator: KubeEmulator, *, host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[str]:
    """Serve the emulator over HTTP in the running loop; yields its base URL."""
    server = aiohttp.web.Server(emulator, handler_cancellation=True)
    runner = aiohttp.web.ServerRunner(server, shutdown_timeout=1.0)
    await runner.setup()
    try:
        site = aiohttp.web.TCPSite(runner, host, port)
        await site.start()
        bound_host, bound_port = runner.addresses[0][:2]
        async with emulator:
            emulator.attach(asyncio.get_running_loop(), f"http://{bound_host}:{bound_port}")
            try:
                yield f"http://{bound_host}:{bound_port}"
            finally:
                emulator.detach()
    finally:
        await runner.cleanup()


class EmulatorThread:
    """Serve an emulator from a daemon thread with its own event loop, so kopf and pytest keep their loops."""

    def __init__(self, emulator: KubeEmulator, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.emulator = emulator
        self._address = (host, port)
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="kube-emulator", daemon=True)

    def start(self) -> str:
        """Start serving; returns the base URL."""
        self._thread.start()
        if not self._ready.wait(timeout=30) or self._failure is not None:
            raise RuntimeError("the emulator did not start") from self._failure
        return str(self.emulator.url)

    def stop(self) -> None:
        """Stop serving (open watch streams end) and wait for the thread."""
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=30)

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # reported by start(), which is waiting for it
            self._failure = exc
            self._ready.set()

    async def _serve(self) -> None:
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        host, port = self._address
        async with serving(self.emulator, host=host, port=port):
            self._ready.set()
            await self._stop.wait()


@contextlib.contextmanager
def running_emulator(
    *, crds: Sequence[str | os.PathLike[str]] = (), host: str = "127.0.0.1", port: int = 0, **options: Any
) -> Iterator[KubeEmulator]:
    """An emulator served from its own thread for the duration of the block (`emulator.url` is set)."""
    emulator = KubeEmulator(**options)
    for crd in crds:
        emulator.load_crd(crd)
    thread = EmulatorThread(emulator, host=host, port=port)
    thread.start()
    try:
        yield emulator
    finally:
        thread.stop()


async def _serve_until_signalled(emulator: KubeEmulator, args: argparse.Namespace) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with serving(emulator, host=args.host, port=args.port) as url:
        if args.url_file is not None:
            args.url_file.write_text(url + "\n")
        print(url, flush=True)  # last: whoever reads this line may rely on the URL file
        await stop.wait()
        if args.state_dump is not None:
            args.state_dump.write_text(json.dumps(emulator.state(), indent=2) + "\n")


def _webhook_service(text: str) -> tuple[str, str]:
    service, _, host = text.partition("=")
    namespace, _, name = service.partition("/")
    if not (namespace and name and host) or "/" in name:
        raise argparse.ArgumentTypeError(f"expected NS/NAME=HOST, got {text!r}")
    return service, host


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m tests.support.emulator`: serve until SIGINT/SIGTERM, printing the URL first."""
    parser = argparse.ArgumentParser(prog="python -m tests.support.emulator", description=main.__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=0, help="port to listen on (0 = any free port)")
    parser.add_argument("--crd", type=Path, action="append", default=[], help="CRD YAML file to install")
    parser.add_argument("--state-dump", type=Path, help="write every object here as JSON on exit")
    parser.add_argument("--url-file", type=Path, help="also write the URL to this file")
    parser.add_argument("--request-log-limit", type=int, help="keep only this many recent requests in the log")
    parser.add_argument(
        "--no-kopf-peering", action="store_true", help="a cluster never prepared for kopf: no peering CRDs"
    )
    parser.add_argument(
        "--webhook-service",
        type=_webhook_service,
        action="append",
        default=[],
        metavar="NS/NAME=HOST",
        help="serve webhooks' clientConfig.service NS/NAME at HOST (the port comes from the configuration)",
    )
    args = parser.parse_args(argv)
    emulator = KubeEmulator(
        request_log_limit=args.request_log_limit,
        kopf_peering=not args.no_kopf_peering,
        webhook_services=dict(args.webhook_service),
    )
    for crd in args.crd:
        emulator.load_crd(crd)
    asyncio.run(_serve_until_signalled(emulator, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
