"""Building blocks of the end-to-end scenarios: manifests, status reads and waits, injected faults, the operator's
metrics, a module's own services and namespaces."""

from __future__ import annotations

import re
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import pytest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample
from tests.conftest import summary_lines
from tests.e2e.conftest import EVALUATION_INTERVAL, REPO, OperatorProcess, World, get_or_none, wait_for
from tests.support.emulator_log import RequestRecord
from tests.support.exporter import SyntheticService, Traffic
from tests.support.kube import USER_AGENT, EmulatorClient, KubeClient, deployment_manifest

from slo_guard.domain.model import TARGET_API_VERSIONS

SLO_API = "sloguard.io/v1alpha1"
SLO_KIND = "ServiceLevelObjective"
ACT_TIMEOUT = 60
RECOVER_TIMEOUT = 150
CONVERGE_TIMEOUT = 90
"""Seconds to converge after an injected fault or a restart; generous, since failed writes may open the Kubernetes
circuit breaker (30 s) on a loaded machine."""
HEALTHY = Traffic(rps=40, error_ratio=0.0)
FAILING = Traffic(rps=40, error_ratio=1.0)
ROLLOUTS_CRD = REPO / "tests" / "support" / "argo-rollouts-crd.yaml"
"""A minimal Rollout CRD, as a cluster with Argo Rollouts installed serves it."""
LATENCIES = summary_lines("slo-guard: budget exhausted in Prometheus -> spec.paused: true")


class Cluster(Protocol):
    """An API server the scenarios talk to: the shared world's, or an emulator of a module's own."""

    @property
    def kube(self) -> KubeClient: ...


def service_labels(service: SyntheticService) -> str:
    """PromQL label matchers that select `service`'s series."""
    return f'job="synthetic",instance="{service.target}"'


def slo(
    name: str,
    namespace: str,
    service: SyntheticService,
    *,
    targets: list[dict[str, Any]],
    policy: dict[str, Any] | None = None,
) -> dict[str, Any]:
    labels = service_labels(service)
    return {
        "apiVersion": SLO_API,
        "kind": SLO_KIND,
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "objective": 90,
            "window": "1m",
            "indicator": {
                "ratio": {
                    "errors": f'http_requests_total{{{labels},code="500"}}',
                    "total": f"http_requests_total{{{labels}}}",
                }
            },
            "evaluationInterval": f"{EVALUATION_INTERVAL:.0f}s",
            "targets": targets,
            "policy": policy or {"mode": "Enforce", "action": "Pause", "resumeAbove": 0.05},
        },
    }


def one_target(name: str) -> list[dict[str, Any]]:
    """`spec.targets` naming one Deployment."""
    return [{"kind": "Deployment", "name": name}]


def deploy(cluster: Cluster, namespace: str, name: str, **kwargs: Any) -> None:
    cluster.kube.ensure_namespace(namespace)
    cluster.kube.create_object(deployment_manifest(name, namespace=namespace, **kwargs))


def guard(
    cluster: Cluster,
    namespace: str,
    name: str,
    service: SyntheticService,
    *,
    policy: dict[str, Any] | None = None,
    **deployment: Any,
) -> None:
    """A Deployment and an SLO on `service` that guards it, both called `name`."""
    deploy(cluster, namespace, name, **deployment)
    cluster.kube.create_object(slo(name, namespace, service, targets=one_target(name), policy=policy))


def switch_source(cluster: Cluster, namespace: str, name: str, service: SyntheticService) -> None:
    """A spec change: the SLO now reads `service`'s series, so its budget is spent or recovered at the next pass."""
    indicator = slo(name, namespace, service, targets=[])["spec"]["indicator"]
    cluster.kube.patch_object(SLO_API, SLO_KIND, name, {"spec": {"indicator": indicator}}, namespace=namespace)


def deployment(cluster: Cluster, namespace: str, name: str) -> dict[str, Any]:
    body = get_or_none(cluster.kube, "apps/v1", "Deployment", name, namespace=namespace)
    assert body is not None
    return body


def workload_manifest(kind: str, name: str, *, namespace: str, replicas: int = 1, **spec: Any) -> dict[str, Any]:
    """A Deployment, StatefulSet or Rollout: the same selector and pod template, plus `spec` fields."""
    body = deployment_manifest(name, namespace=namespace, replicas=replicas)
    body.update(apiVersion=TARGET_API_VERSIONS[kind], kind=kind)
    if kind == "StatefulSet":
        body["spec"]["serviceName"] = name  # required by a real API server
    body["spec"].update(spec)
    return body


def workload(cluster: Cluster, kind: str, namespace: str, name: str) -> dict[str, Any]:
    body = get_or_none(cluster.kube, TARGET_API_VERSIONS[kind], kind, name, namespace=namespace)
    assert body is not None, f"{kind} {name} exists"
    return body


def annotations_of(body: dict[str, Any]) -> dict[str, str]:
    return dict(body["metadata"].get("annotations") or {})


def slo_status(cluster: Cluster, namespace: str, name: str) -> dict[str, Any]:
    body = get_or_none(cluster.kube, SLO_API, SLO_KIND, name, namespace=namespace)
    return dict((body or {}).get("status") or {})


def condition(status: dict[str, Any], kind: str) -> dict[str, Any]:
    return next((item for item in status.get("conditions") or [] if item["type"] == kind), {})


def target_state(status: dict[str, Any]) -> str | None:
    """The state of the SLO's first target; None until a pass reported it."""
    targets: list[dict[str, str]] = status.get("targets") or [{}]
    return targets[0].get("state")


def event_reasons(world: World, namespace: str, kind: str | None = None) -> list[str]:
    events = world.objects("v1", "Event", namespace)
    return [e["reason"] for e in events if kind is None or e["involvedObject"]["kind"] == kind]


def is_paused(cluster: Cluster, namespace: str, name: str) -> bool:
    return bool(deployment(cluster, namespace, name)["spec"].get("paused"))


def wait_healthy(cluster: Cluster, namespace: str, name: str) -> dict[str, Any]:
    status: dict[str, Any] = wait_for(
        lambda: (s := slo_status(cluster, namespace, name)).get("state") == "Healthy" and s,
        timeout=ACT_TIMEOUT,
        what=f"{name} Healthy",
    )
    return status


def wait_target_state(
    cluster: Cluster, namespace: str, name: str, state: str, *, timeout: float = ACT_TIMEOUT
) -> dict[str, Any]:
    """The SLO's status once it reports its first target in `state`."""
    status: dict[str, Any] = wait_for(
        lambda: target_state(s := slo_status(cluster, namespace, name)) == state and s,
        timeout=timeout,
        what=f"{name}: target {state} in status",
    )
    return status


def prometheus_shows_exhausted(world: World, service: SyntheticService) -> bool:
    labels = service_labels(service)
    errors = f'sum(rate(http_requests_total{{{labels},code="500"}}[1m]))'
    rows = world.prometheus.query(f"{errors} / sum(rate(http_requests_total{{{labels}}}[1m]))")
    return bool(rows) and rows[0][1] >= 0.1


def has_traffic(world: World, service: SyntheticService) -> bool:
    return bool(world.prometheus.query(f"sum(rate(http_requests_total{{{service_labels(service)}}}[1m])) > 0"))


def exhaust_and_wait_paused(world: World, service: SyntheticService, namespace: str, name: str, scenario: str) -> None:
    service.set(error_ratio=1.0)
    wait_for(
        lambda: prometheus_shows_exhausted(world, service),
        timeout=ACT_TIMEOUT,
        what="Prometheus to show exhaustion",
        every=0.1,
    )
    shown = time.monotonic()
    wait_for(lambda: is_paused(world, namespace, name), timeout=ACT_TIMEOUT, what=f"{name} paused", every=0.1)
    seconds = time.monotonic() - shown
    LATENCIES.append(f"{scenario}: {seconds:.2f} s (evaluation interval {EVALUATION_INTERVAL:.0f} s)")


def restart_operator(world: World) -> None:
    """SIGKILL, disarm every fault, start again: the new process knows only what the cluster shows."""
    world.operator.kill()
    try:
        world.need_emulator().clear_faults()
    finally:
        world.operator.start()


def fail_target_patches(
    emulator: EmulatorClient, namespace: str, name: str, *, status: int, count: int, retry_after: int | None = None
) -> None:
    """Answer the next `count` PATCHes of the Deployment `name` with `status`."""
    emulator.fail_next(
        status=status,
        verb="patch",
        resource="deployments",
        namespace=namespace,
        name=name,
        count=count,
        retry_after=retry_after,
    )


def fail_status_patches(emulator: EmulatorClient, namespace: str, name: str, *, status: int, count: int) -> None:
    """Answer the next `count` status writes of the SLO `name` with `status`."""
    emulator.fail_next(
        status=status,
        verb="patch",
        resource="servicelevelobjectives",
        namespace=namespace,
        name=name,
        subresource="status",
        count=count,
    )


def target_calls(emulator: EmulatorClient, namespace: str, name: str) -> list[RequestRecord]:
    """What the operator sent about the Deployment itself (not its /scale), oldest first."""
    records = emulator.requests(resource="deployments", namespace=namespace, name=name, subresource=None)
    return [record for record in records if record.user_agent != USER_AGENT]


def accepted_patches(records: list[RequestRecord]) -> list[RequestRecord]:
    return [record for record in records if record.verb == "patch" and record.status == 200]


def metric_families(operator: OperatorProcess, *, timeout: float = 5) -> list[Metric]:
    """The operator's /metrics, parsed."""
    with urllib.request.urlopen(operator.health_url + "/metrics", timeout=timeout) as response:  # noqa: S310
        return list(text_string_to_metric_families(response.read().decode()))


def matching_samples(families: list[Metric], name: str, **labels: str) -> list[Sample]:
    """The samples named `name` whose labels include `labels`."""
    return [
        sample
        for family in families
        for sample in family.samples
        if sample.name == name and all(sample.labels.get(key) == value for key, value in labels.items())
    ]


@contextmanager
def repeating(action: Callable[[], None], *, every: float, name: str) -> Iterator[None]:
    """Call `action` every `every` seconds in a background thread until the block ends."""
    stop = threading.Event()

    def run() -> None:
        while not stop.wait(every):
            action()

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=30)


@dataclass(frozen=True)
class Sources:
    """Two synthetic services a module scrapes for itself."""

    healthy: SyntheticService
    """Never fails: SLOs on it are Healthy."""
    failing: SyntheticService
    """Always fails: SLOs on it are Exhausted from their first pass."""


@contextmanager
def own_sources(world: World) -> Iterator[Sources]:
    """Two services the shared Prometheus scrapes while the block runs, from when it shows both."""
    with SyntheticService(HEALTHY) as healthy, SyntheticService(FAILING) as failing, _scraped(world, healthy, failing):
        wait_for(
            lambda: has_traffic(world, healthy) and prometheus_shows_exhausted(world, failing),
            timeout=ACT_TIMEOUT,
            what="Prometheus scraping this module's services",
        )
        yield Sources(healthy=healthy, failing=failing)


@contextmanager
def _scraped(world: World, *services: SyntheticService) -> Iterator[None]:
    targets = [service.target for service in services]
    world.prometheus.scrape_targets.extend(targets)
    world.prometheus.reload()
    try:
        yield
    finally:
        for target in targets:
            world.prometheus.scrape_targets.remove(target)
        world.prometheus.reload()


def namespace_for(request: pytest.FixtureRequest, prefix: str) -> str:
    """A namespace of the test's own: `prefix`, the test's name (cut to 40) and its parameters' id."""
    callspec = getattr(request.node, "callspec", None)
    parts = (prefix, request.node.originalname.removeprefix("test_")[:40], callspec and callspec.id)
    return "-".join(re.sub(r"[^a-z0-9]+", "-", part.lower()).strip("-") for part in parts if part)


def delete_slos(world: World, namespace: str, *, timeout: float = ACT_TIMEOUT) -> None:
    """Delete the namespace's SLOs and wait until the operator released what they held and dropped its finalizers."""
    for item in world.objects(SLO_API, SLO_KIND, namespace):
        world.kube.delete_object(SLO_API, SLO_KIND, item["metadata"]["name"], namespace=namespace)
    wait_for(lambda: not world.objects(SLO_API, SLO_KIND, namespace), timeout=timeout, what="SLOs deleted")


def delete_namespace(world: World, namespace: str, *, timeout: float = ACT_TIMEOUT) -> None:
    """The SLOs first (see delete_slos), then the namespace."""
    delete_slos(world, namespace, timeout=timeout)
    world.kube.delete_object("v1", "Namespace", namespace)
