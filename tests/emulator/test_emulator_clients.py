"""Real clients against the emulator: kopf (its own aiohttp client), the official kubernetes client, kubectl."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import kopf
import kubernetes
import pytest
from tests.support.emulator import KubeEmulator
from tests.support.kube import KubeClient, deployment_manifest

PROJECT_CRD = Path(__file__).parents[2] / "crds" / "servicelevelobjectives.yaml"


def wait_until(condition: Callable[[], Any], *, timeout: float = 20.0) -> Any:
    """Poll until the condition is truthy (a correctness wait, not a speed check)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := condition():
            return result
        time.sleep(0.05)
    raise AssertionError(f"condition not met within {timeout}s")


def widget(name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "example.test/v1", "kind": "Widget", "metadata": {"name": name}, "spec": spec}


@pytest.fixture
def kopf_operator(emulator: KubeEmulator) -> Iterator[list[str]]:
    """A tiny kopf operator (finalizer via a deletion handler, a status patch) in its own thread and loop."""
    registry = kopf.OperatorRegistry()
    deleted: list[str] = []

    @kopf.on.login(registry=registry)
    def login(**_: Any) -> kopf.ConnectionInfo:
        return kopf.ConnectionInfo(server=str(emulator.url))

    @kopf.on.startup(registry=registry)
    def tune(settings: kopf.OperatorSettings, **_: Any) -> None:
        settings.watching.server_timeout = 30

    @kopf.on.create("example.test", "widgets", registry=registry)
    def create(patch: kopf.Patch, spec: kopf.Spec, **_: Any) -> None:
        patch.status["phase"] = "Ready"
        patch.status["observedSize"] = spec.get("size")

    @kopf.on.delete("example.test", "widgets", registry=registry)
    def delete(name: str | None, **_: Any) -> None:
        deleted.append(name or "")

    ready, stop = threading.Event(), threading.Event()
    operator = threading.Thread(
        target=lambda: asyncio.run(
            kopf.operator(registry=registry, clusterwide=True, standalone=True, ready_flag=ready, stop_flag=stop)
        ),
        daemon=True,
    )
    operator.start()
    assert ready.wait(30)
    yield deleted
    stop.set()
    operator.join(30)


def test_kopf_operator_with_finalizer_and_status(
    emulator: KubeEmulator, kube: KubeClient, kopf_operator: list[str]
) -> None:
    kube.create_object(widget("gizmo", size=3))

    def ready() -> dict[str, Any] | None:
        obj = emulator.read_object("widgets", "default", "gizmo")
        return obj if obj and obj.get("status", {}).get("phase") == "Ready" else None

    obj = wait_until(ready)
    assert obj["status"]["observedSize"] == 3
    assert obj["metadata"]["finalizers"] == ["kopf.zalando.org/KopfFinalizerMarker"]
    assert emulator.writes_to("widgets", name="gizmo", subresource="status"), "kopf must write status via /status"

    kube.delete_object("example.test/v1", "Widget", "gizmo", namespace="default")
    wait_until(lambda: emulator.read_object("widgets", "default", "gizmo") is None)
    assert kopf_operator == ["gizmo"]


def test_kopf_peering_writes_presence_to_the_peering_object(emulator: KubeEmulator) -> None:
    peering = {"apiVersion": "kopf.dev/v1", "kind": "KopfPeering", "metadata": {"name": "example"}}
    emulator.create_object(peering)
    registry = kopf.OperatorRegistry()

    @kopf.on.login(registry=registry)
    def login(**_: Any) -> kopf.ConnectionInfo:
        return kopf.ConnectionInfo(server=str(emulator.url))

    ready, stop = threading.Event(), threading.Event()
    operator = threading.Thread(
        target=lambda: asyncio.run(
            kopf.operator(
                registry=registry, namespaces=["default"], peering_name="example", ready_flag=ready, stop_flag=stop
            )
        ),
        daemon=True,
    )
    operator.start()
    try:
        assert ready.wait(30)
        present = wait_until(lambda: (emulator.read_object("kopfpeerings", "default", "example") or {}).get("status"))
    finally:
        stop.set()
        operator.join(30)
    [(_, presence)] = present.items()
    assert presence["lifetime"] == 60


def test_official_client_lists_patches_and_scales_deployments(emulator: KubeEmulator) -> None:
    created = emulator.create_object(deployment_manifest("web", namespace="shop", replicas=2))
    configuration = kubernetes.client.Configuration(host=str(emulator.url))
    with kubernetes.client.ApiClient(configuration) as api_client:
        apps = kubernetes.client.AppsV1Api(api_client)
        listed = apps.list_namespaced_deployment("shop").to_dict(serialize=True)
        paused = apps.patch_namespaced_deployment("web", "shop", {"spec": {"paused": True}}).to_dict(serialize=True)
        scale = apps.patch_namespaced_deployment_scale("web", "shop", {"spec": {"replicas": 0}}).to_dict(serialize=True)
        stored = apps.read_namespaced_deployment("web", "shop").to_dict(serialize=True)
    assert [item["metadata"]["name"] for item in listed["items"]] == ["web"]
    assert listed["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]
    assert (paused["spec"]["paused"], paused["metadata"]["generation"]) == (True, 2)
    assert (scale["spec"]["replicas"], scale["status"]["selector"]) == (0, "app=web")
    assert stored["spec"]["replicas"] == 0


def test_official_client_custom_objects_status(emulator: KubeEmulator) -> None:
    emulator.create_object(widget("gizmo", size=1))
    configuration = kubernetes.client.Configuration(host=str(emulator.url))
    with kubernetes.client.ApiClient(configuration) as api_client:
        custom = kubernetes.client.CustomObjectsApi(api_client)
        custom.patch_namespaced_custom_object_status(
            "example.test", "v1", "default", "widgets", "gizmo", {"status": {"phase": "Ready"}, "spec": {"size": 9}}
        )
        listed = cast(dict[str, Any], custom.list_namespaced_custom_object("example.test", "v1", "default", "widgets"))
    assert [(w["spec"]["size"], w["status"]["phase"]) for w in listed["items"]] == [(1, "Ready")]


@pytest.fixture
def kubectl(kubeconfig: Path, tmp_path: Path) -> Callable[..., str]:
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl is not installed")
    env = {**os.environ, "KUBECONFIG": str(kubeconfig)}

    def run(*args: str) -> str:
        command = ["kubectl", "--cache-dir", str(tmp_path / "cache"), *args]
        result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, check=False)
        assert result.returncode == 0, result.stderr
        return result.stdout

    return run


def test_kubectl_get_apply_patch_scale_delete(
    emulator: KubeEmulator, kubectl: Callable[..., str], tmp_path: Path
) -> None:
    emulator.create_object(deployment_manifest("web", replicas=2))
    manifest = tmp_path / "widget.yaml"
    manifest.write_text("apiVersion: example.test/v1\nkind: Widget\nmetadata: {name: w1}\nspec: {size: 3}\n")

    assert "widget.example.test/w1 created" in kubectl("apply", "--validate=false", "-f", str(manifest))
    assert kubectl("get", "wd").split("\n")[:2][0].split() == ["NAME", "SIZE", "READY", "AGE"]
    kubectl("patch", "wd", "w1", "--type=json", "-p", '[{"op": "replace", "path": "/spec/size", "value": 5}]')
    kubectl("patch", "deploy", "web", "--type=merge", "-p", '{"spec": {"paused": true}}')
    kubectl("scale", "deploy", "web", "--replicas=4")
    assert kubectl("get", "deploy", "-l", "app=web", "-o", "name").split() == ["deployment.apps/web"]
    assert kubectl("get", "deploy", "-l", "app!=web", "-o", "name").split() == []

    deployment = emulator.read_object("deployments", "default", "web")
    assert deployment is not None
    assert (deployment["spec"]["paused"], deployment["spec"]["replicas"]) == (True, 4)
    assert emulator.read_object("widgets", "default", "w1") is not None
    manifest.write_text("apiVersion: example.test/v1\nkind: Widget\nmetadata: {name: w1}\nspec: {size: 8}\n")
    kubectl("replace", "--validate=false", "-f", str(manifest))
    assert kubectl("get", "wd", "w1", "-o", "jsonpath={.spec.size}") == "8"
    assert "Size:  8" in kubectl("describe", "wd", "w1")
    kubectl("delete", "wd", "w1")
    assert emulator.read_object("widgets", "default", "w1") is None
    resources = {line.split()[0] for line in kubectl("api-resources", "--no-headers").splitlines()}
    assert {"deployments", "widgets", "kopfpeerings", "customresourcedefinitions"} <= resources


def test_kubectl_shows_the_project_crd_printer_columns(emulator: KubeEmulator, kubectl: Callable[..., str]) -> None:
    emulator.load_crd(PROJECT_CRD)
    slo = {"apiVersion": "sloguard.io/v1alpha1", "kind": "ServiceLevelObjective", "metadata": {"name": "checkout"}}
    indicator = {"ratio": {"errors": 'http_requests_total{code=~"5.."}', "total": "http_requests_total"}}
    emulator.create_object({**slo, "spec": {"objective": 99.9, "window": "30d", "indicator": indicator}})
    emulator.patch_object("slo", "default", "checkout", {"status": {"state": "Healthy"}}, subresource="status")

    header, row = kubectl("get", "slo").splitlines()
    assert header.split() == ["NAME", "OBJECTIVE", "WINDOW", "SLI", "BUDGET", "STATE", "AGE"]
    assert row.split()[:4] == ["checkout", "99.9", "30d", "Healthy"]  # absent SLI and BUDGET print as blanks
