"""The webhook's AdmissionReview handling: what the API server sends in, what it gets back, what is counted and told."""

from __future__ import annotations

import asyncio
import copy
from datetime import UTC, datetime
from typing import Any

import pytest
from tests.unit.service.test_gate_board import after_pass, board

from slo_guard.service.admission import AdmissionReviewer, NotAReview
from slo_guard.service.ports import ObjectRef
from slo_guard.telemetry import OperatorMetrics

NOW = datetime(2026, 11, 1, 12, tzinfo=UTC)


def deployment(image: str, **annotations: str) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "shop", "annotations": annotations},
        "spec": {"replicas": 3, "template": {"spec": {"containers": [{"name": "web", "image": image}]}}},
    }


def review(new: dict[str, Any], old: dict[str, Any] | None, *, operation: str = "UPDATE") -> dict[str, Any]:
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
            "kind": {"group": "apps", "version": "v1", "kind": "Deployment"},
            "resource": {"group": "apps", "version": "v1", "resource": "deployments"},
            "name": "web",
            "namespace": "shop",
            "operation": operation,
            "userInfo": {"username": "alice"},
            "object": new,
            "oldObject": old,
        },
    }


class Events:
    def __init__(self) -> None:
        self.posted: list[tuple[str, str, str]] = []

    async def post(self, *, regarding: ObjectRef, type_: str, reason: str, message: str) -> None:
        self.posted.append((regarding.key, reason, message))


def reviewer(
    *, deny_mode: str = "Enforce", remaining: float = -0.2
) -> tuple[AdmissionReviewer, Events, OperatorMetrics]:
    entry = after_pass(
        "web-availability", "Deployment/web", remaining=remaining, policy={"action": "Deny", "mode": deny_mode}
    )
    events, metrics = Events(), OperatorMetrics()
    return AdmissionReviewer(board(entry), events=events, metrics=metrics, clock=lambda: NOW), events, metrics


def decisions(metrics: OperatorMetrics) -> dict[str, float]:
    return {
        sample.labels["decision"]: sample.value
        for sample in metrics.admission_decisions.collect()[0].samples
        if sample.name.endswith("_total")
    }


async def test_a_new_image_for_a_frozen_deployment_is_refused_with_403_counted_and_told_on_the_slo() -> None:
    gate, events, metrics = reviewer()
    answer = gate.review(review(deployment("web:2"), deployment("web:1")))
    response = answer["response"]
    assert (answer["apiVersion"], answer["kind"]) == ("admission.k8s.io/v1", "AdmissionReview")
    assert (response["uid"], response["allowed"], response["status"]["code"]) == (
        "705ab4f5-6393-11e8-b7cc-42010a800002",
        False,
        403,
    )
    assert (
        "ServiceLevelObjective shop/web-availability: error budget exhausted, -20.0% left"
        in response["status"]["message"]
    )
    await asyncio.sleep(0)
    assert events.posted == [
        ("shop/web-availability", "RolloutDenied", "Denied alice's change to the pod template of Deployment shop/web")
    ]
    assert decisions(metrics)["denied"] == 1


async def test_scaling_a_frozen_deployment_and_creating_one_are_allowed() -> None:
    gate, events, metrics = reviewer()
    scaled = copy.deepcopy(deployment("web:1"))
    scaled["spec"]["replicas"] = 10
    assert gate.review(review(scaled, deployment("web:1")))["response"]["allowed"] is True
    assert gate.review(review(deployment("web:2"), None, operation="CREATE"))["response"]["allowed"] is True
    assert decisions(metrics) == {"allowed": 2, "warned": 0, "overridden": 0, "denied": 0}
    assert events.posted == []


async def test_an_override_in_the_new_object_passes_with_a_warning_and_an_event() -> None:
    gate, events, metrics = reviewer()
    new = deployment("web:2", **{"sloguard.io/override-until": "2026-11-01T13:00:00Z"})
    response = gate.review(review(new, deployment("web:1")))["response"]
    assert response["allowed"] is True
    assert response["warnings"][0].startswith("slo-guard: override until 2026-11-01T13:00:00Z lets this rollout")
    await asyncio.sleep(0)
    assert [reason for _, reason, _ in events.posted] == ["RolloutOverridden"]
    assert decisions(metrics)["overridden"] == 1


async def test_a_dry_run_freeze_allows_with_a_warning_and_no_event() -> None:
    gate, events, metrics = reviewer(deny_mode="DryRun")
    response = gate.review(review(deployment("web:2"), deployment("web:1")))["response"]
    assert response["allowed"] is True
    assert response["warnings"][0].startswith(
        "slo-guard DryRun: ServiceLevelObjective shop/web-availability would deny"
    )
    assert decisions(metrics)["warned"] == 1
    assert events.posted == []


async def test_a_pause_policy_never_denies_at_admission() -> None:
    entry = after_pass("web-availability", "Deployment/web", remaining=-0.2)
    gate = AdmissionReviewer(board(entry), events=Events(), metrics=OperatorMetrics(), clock=lambda: NOW)
    assert gate.review(review(deployment("web:2"), deployment("web:1")))["response"]["allowed"] is True


@pytest.mark.parametrize(
    "body",
    [None, {"apiVersion": "admission.k8s.io/v1beta1", "request": {"uid": "x"}}, {"apiVersion": "admission.k8s.io/v1"}],
)
def test_anything_but_a_v1_admission_review_is_refused(body: object) -> None:
    gate, _, _ = reviewer()
    with pytest.raises(NotAReview):
        gate.review(body)
