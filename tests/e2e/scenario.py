"""Building blocks of the end-to-end scenarios: SLO and Deployment manifests, status reads and waits."""

from __future__ import annotations

import time
from typing import Any

from tests.e2e.conftest import EVALUATION_INTERVAL, LATENCIES, World, wait_for
from tests.support.exporter import SyntheticService, Traffic
from tests.support.kube import deployment_manifest

SLO_API = "sloguard.io/v1alpha1"
SLO_KIND = "ServiceLevelObjective"
ACT_TIMEOUT = 60
RECOVER_TIMEOUT = 150
HEALTHY = Traffic(rps=40, error_ratio=0.0)
FAILING = Traffic(rps=40, error_ratio=1.0)


def slo(
    name: str,
    namespace: str,
    service: SyntheticService,
    *,
    targets: list[dict[str, Any]],
    policy: dict[str, Any] | None = None,
) -> dict[str, Any]:
    instance = f'job="synthetic",instance="{service.target}"'
    return {
        "apiVersion": SLO_API,
        "kind": SLO_KIND,
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "objective": 90,
            "window": "1m",
            "indicator": {
                "ratio": {
                    "errors": f'http_requests_total{{{instance},code="500"}}',
                    "total": f"http_requests_total{{{instance}}}",
                }
            },
            "evaluationInterval": f"{EVALUATION_INTERVAL:.0f}s",
            "targets": targets,
            "policy": policy or {"mode": "Enforce", "action": "Pause", "resumeAbove": 0.05},
        },
    }


def deploy(world: World, namespace: str, name: str, **kwargs: Any) -> None:
    world.kube.ensure_namespace(namespace)
    world.kube.create_object(deployment_manifest(name, namespace=namespace, **kwargs))


def deployment(world: World, namespace: str, name: str) -> dict[str, Any]:
    body = world.get("apps/v1", "Deployment", name, namespace)
    assert body is not None
    return body


def annotations(body: dict[str, Any]) -> dict[str, str]:
    return dict(body["metadata"].get("annotations") or {})


def slo_status(world: World, namespace: str, name: str) -> dict[str, Any]:
    body = world.get(SLO_API, SLO_KIND, name, namespace)
    return dict((body or {}).get("status") or {})


def condition(status: dict[str, Any], kind: str) -> dict[str, Any]:
    return next((item for item in status.get("conditions") or [] if item["type"] == kind), {})


def event_reasons(world: World, namespace: str, kind: str | None = None) -> list[str]:
    events = world.objects("v1", "Event", namespace)
    return [e["reason"] for e in events if kind is None or e["involvedObject"]["kind"] == kind]


def is_paused(world: World, namespace: str, name: str) -> bool:
    return bool(deployment(world, namespace, name)["spec"].get("paused"))


def wait_healthy(world: World, namespace: str, name: str) -> dict[str, Any]:
    return wait_for(
        lambda: (s := slo_status(world, namespace, name)).get("state") == "Healthy" and s,
        timeout=ACT_TIMEOUT,
        what=f"{name} Healthy",
    )


def prometheus_shows_exhausted(world: World, service: SyntheticService) -> bool:
    instance = f'job="synthetic",instance="{service.target}"'
    errors = f'sum(rate(http_requests_total{{{instance},code="500"}}[1m]))'
    rows = world.prometheus.query(f"{errors} / sum(rate(http_requests_total{{{instance}}}[1m]))")
    return bool(rows) and rows[0][1] >= 0.1


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
    LATENCIES.append((scenario, time.monotonic() - shown))
