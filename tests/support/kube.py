"""Small synchronous Kubernetes helpers for tests: a kubeconfig writer, a JSON client, the emulator's control client.

They speak plain HTTP (urllib), so they work the same against the in-process emulator, the emulator in another
process, or a real cluster reached through `kubectl proxy`.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from tests.support.emulator_log import ANY, CallSeen, FaultRule, Match, RequestRecord, only_writes

Body = dict[str, Any]
PATCH_TYPES = {
    "merge": "application/merge-patch+json",
    "json": "application/json-patch+json",
    "strategic": "application/strategic-merge-patch+json",
}
USER_AGENT = "slo-guard-tests"
_TIMEOUT = 30


class ApiStatusError(Exception):
    """An HTTP error answer; `body` is the parsed Status object when the server sent one."""

    def __init__(self, status: int, body: Any) -> None:
        message = body.get("message") if isinstance(body, dict) else body
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.body = body

    @property
    def reason(self) -> str | None:
        """The Status reason (NotFound, Conflict, Invalid, ...)."""
        return self.body.get("reason") if isinstance(self.body, dict) else None


def write_kubeconfig(path: Path, server_url: str, *, namespace: str = "default", context: str = "emulator") -> Path:
    """Write a kubeconfig whose current context points at `server_url` (plain HTTP, a dummy token)."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": context, "cluster": {"server": server_url}}],
        "users": [{"name": context, "user": {"token": "emulator"}}],
        "contexts": [{"name": context, "context": {"cluster": context, "user": context, "namespace": namespace}}],
        "current-context": context,
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def _http(
    method: str,
    url: str,
    *,
    body: Any = None,
    content_type: str = "application/json",
    accept: str = "application/json",
) -> Any:
    data = None if body is None else json.dumps(body).encode()
    headers = {"Accept": accept, "User-Agent": USER_AGENT, **({"Content-Type": content_type} if data else {})}
    request = urllib.request.Request(url, data=data, method=method, headers=headers)  # noqa: S310 (http only)
    try:
        with urllib.request.urlopen(request, timeout=_TIMEOUT) as response:  # noqa: S310 (http only)
            payload = response.read()
    except urllib.error.HTTPError as error:
        raise ApiStatusError(error.code, _decoded(error.read())) from None
    return _decoded(payload)


def _decoded(payload: bytes) -> Any:
    try:
        return json.loads(payload)
    except ValueError:
        return payload.decode(errors="replace")


def _query(params: Mapping[str, Any]) -> str:
    present = {key: value for key, value in params.items() if value is not None}
    return "?" + urllib.parse.urlencode(present) if present else ""


class KubeClient:
    """A thin JSON client: objects addressed by apiVersion + kind, paths found through discovery (cached)."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url.rstrip("/")
        self._kinds: dict[tuple[str, str], tuple[str, bool]] = {}

    def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: Mapping[str, Any] | None = None,
        content_type: str = "application/json",
        accept: str = "application/json",
    ) -> Any:
        """One HTTP call; returns the parsed JSON answer, raises ApiStatusError on 4xx/5xx."""
        url = self.base_url + path + _query(params or {})
        return _http(method, url, body=body, content_type=content_type, accept=accept)

    def _discover(self, api_version: str, kind: str) -> tuple[str, bool]:
        if (api_version, kind) not in self._kinds:
            prefix = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
            for resource in self.request("GET", prefix)["resources"]:
                if "/" not in resource["name"]:
                    self._kinds[(api_version, resource["kind"])] = (resource["name"], resource["namespaced"])
        if (api_version, kind) not in self._kinds:
            raise KeyError(f"the server does not serve {kind} in {api_version}")
        return self._kinds[(api_version, kind)]

    def path(
        self,
        api_version: str,
        kind: str,
        *,
        namespace: str | None = None,
        name: str | None = None,
        subresource: str | None = None,
    ) -> str:
        """The URL path of a collection, an object or a subresource."""
        plural, namespaced = self._discover(api_version, kind)
        parts = ["/api/v1" if api_version == "v1" else f"/apis/{api_version}"]
        if namespaced and namespace is not None:
            parts += ["namespaces", namespace]
        parts += [plural, *(part for part in (name, subresource) if part is not None)]
        return "/".join(parts)

    def create_object(self, body: Mapping[str, Any]) -> Body:
        """POST the object to its collection (namespace from its metadata, default "default")."""
        namespace = (body.get("metadata") or {}).get("namespace") or "default"
        path = self.path(body["apiVersion"], body["kind"], namespace=namespace)
        created: Body = self.request("POST", path, body=dict(body))
        return created

    def get_object(self, api_version: str, kind: str, name: str, *, namespace: str | None = None) -> Body:
        """GET one object."""
        obj: Body = self.request("GET", self.path(api_version, kind, namespace=namespace, name=name))
        return obj

    def list_objects(
        self,
        api_version: str,
        kind: str,
        *,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> Body:
        """GET a collection (the whole List object, with metadata.resourceVersion)."""
        params = {"labelSelector": label_selector, "fieldSelector": field_selector}
        listed: Body = self.request("GET", self.path(api_version, kind, namespace=namespace), params=params)
        return listed

    def patch_object(
        self,
        api_version: str,
        kind: str,
        name: str,
        patch: Any,
        *,
        namespace: str | None = None,
        patch_type: str = "merge",
        subresource: str | None = None,
    ) -> Body:
        """PATCH with a merge (default), json or strategic patch."""
        path = self.path(api_version, kind, namespace=namespace, name=name, subresource=subresource)
        patched: Body = self.request("PATCH", path, body=patch, content_type=PATCH_TYPES[patch_type])
        return patched

    def replace_object(self, body: Mapping[str, Any], *, subresource: str | None = None) -> Body:
        """PUT the object (metadata.resourceVersion in the body makes it conditional)."""
        metadata = body["metadata"]
        path = self.path(
            body["apiVersion"],
            body["kind"],
            namespace=metadata.get("namespace"),
            name=metadata["name"],
            subresource=subresource,
        )
        replaced: Body = self.request("PUT", path, body=dict(body))
        return replaced

    def delete_object(self, api_version: str, kind: str, name: str, *, namespace: str | None = None) -> Body:
        """DELETE one object."""
        deleted: Body = self.request("DELETE", self.path(api_version, kind, namespace=namespace, name=name))
        return deleted

    def watch(
        self,
        api_version: str,
        kind: str,
        *,
        namespace: str | None = None,
        params: Mapping[str, Any] | None = None,
        read_timeout: float = 10.0,
        accept: str = "application/json",
    ) -> WatchStream:
        """Open a watch (`params` adds resourceVersion, labelSelector, timeoutSeconds, ...)."""
        query = _query({"watch": "true", **(params or {})})
        url = self.base_url + self.path(api_version, kind, namespace=namespace) + query
        return WatchStream(url, read_timeout=read_timeout, accept=accept)

    def ensure_namespace(self, name: str) -> None:
        """Create the namespace unless it exists."""
        try:
            self.create_object({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
        except ApiStatusError as error:
            if error.status != 409:
                raise


class WatchStream:
    """An open watch: read its events one at a time (blocking, bounded by a socket read timeout)."""

    def __init__(self, url: str, *, read_timeout: float, accept: str = "application/json") -> None:
        headers = {"Accept": accept, "User-Agent": USER_AGENT}
        request = urllib.request.Request(url, headers=headers)  # noqa: S310 (http only)
        self._response = urllib.request.urlopen(request, timeout=read_timeout)  # noqa: S310 (http only)

    def next_event(self) -> Body | None:
        """The next event, or None when the server ended the stream."""
        line = self._response.readline()
        if not line:
            return None
        event: Body = json.loads(line)
        return event

    def close(self) -> None:
        """Disconnect."""
        self._response.close()

    def __enter__(self) -> WatchStream:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def deployment_manifest(
    name: str,
    *,
    namespace: str = "default",
    replicas: int = 1,
    labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
) -> Body:
    """A minimal valid apps/v1 Deployment (with the selector and template strict clients require)."""
    pod_labels = {"app": name, **(labels or {})}
    metadata: Body = {"name": name, "namespace": namespace, "labels": dict(pod_labels)}
    if annotations:
        metadata["annotations"] = dict(annotations)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata,
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": pod_labels},
                "spec": {"containers": [{"name": "app", "image": "registry.example/app:1"}]},
            },
        },
    }


def kustomize(path: Path) -> list[Body]:
    """`kubectl kustomize PATH`, parsed: the objects a kustomization sends to a cluster (rendered offline)."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        raise RuntimeError("kubectl is not on PATH; it renders kustomizations offline")
    result = subprocess.run([kubectl, "kustomize", str(path)], capture_output=True, text=True, timeout=60, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"kubectl kustomize {path} failed:\n{result.stderr}")
    return [document for document in yaml.safe_load_all(result.stdout) if document]


def _match_param(value: Match) -> str | None:
    if value is ANY:
        return None
    return value or ""


class EmulatorClient:
    """The emulator's private control API (`/_emulator/...`), for an emulator running in another process."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url.rstrip("/")

    def _call(self, method: str, path: str, *, params: Mapping[str, Any] | None = None, body: Any = None) -> Any:
        url = f"{self.base_url}/_emulator/{path}{_query(params or {})}"
        return _http(method, url, body=body)

    def requests(
        self,
        *,
        verb: str | None = None,
        resource: str | None = None,
        namespace: Match = ANY,
        name: Match = ANY,
        subresource: Match = ANY,
    ) -> list[RequestRecord]:
        """Same filters as KubeEmulator.requests()."""
        params = {
            "verb": verb,
            "resource": resource,
            "namespace": _match_param(namespace),
            "name": _match_param(name),
            "subresource": _match_param(subresource),
        }
        answer = self._call("GET", "requests", params=params)
        return [RequestRecord.from_json(item) for item in answer["items"]]

    def writes_to(
        self, resource: str, *, namespace: Match = ANY, name: Match = ANY, subresource: Match = ANY
    ) -> list[RequestRecord]:
        """Same as KubeEmulator.writes_to()."""
        records = self.requests(resource=resource, namespace=namespace, name=name, subresource=subresource)
        return only_writes(records)

    def clear_requests(self) -> None:
        """Empty the request log (calls_seen() keeps counting)."""
        self._call("DELETE", "requests")

    def calls_seen(self) -> list[CallSeen]:
        """Same as KubeEmulator.calls_seen(): what every client sent since the emulator started, never cleared."""
        return [CallSeen.from_json(item) for item in self._call("GET", "calls")["items"]]

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
        """Same as KubeEmulator.fail_next()."""
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
        self._call("POST", "faults", body=rule.to_json())

    def clear_faults(self) -> None:
        """Disarm every fault rule."""
        self._call("DELETE", "faults")

    def drop_watches(self, resource: str | None = None) -> int:
        """End open watch streams; returns how many."""
        count: int = self._call("POST", "watches/drop", params={"resource": resource})["watches"]
        return count

    def stall_watches(self, resource: str | None = None) -> int:
        """Silence open watch streams; returns how many."""
        count: int = self._call("POST", "watches/stall", params={"resource": resource})["watches"]
        return count

    def state(self) -> Body:
        """Every stored object and the current resourceVersion."""
        state: Body = self._call("GET", "state")
        return state
