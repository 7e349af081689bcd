"""The operator end to end: `slo-guard run` against the API server, a real Prometheus, and synthetic services.

SLOs here use a 1-minute window with a 90 % objective, so 100 % errors spend the budget in about 6 s and recovery
takes about one window after the errors stop.
"""

from __future__ import annotations

import time

import pytest
from tests.e2e.conftest import EVALUATION_INTERVAL, World, wait_for
from tests.e2e.scenario import (
    ACT_TIMEOUT,
    FAILING,
    HEALTHY,
    RECOVER_TIMEOUT,
    SLO_API,
    SLO_KIND,
    annotations_of,
    condition,
    deploy,
    deployment,
    event_reasons,
    exhaust_and_wait_paused,
    fail_status_patches,
    guard,
    is_paused,
    one_target,
    restart_operator,
    slo,
    slo_status,
    target_state,
    wait_healthy,
    wait_target_state,
)
from tests.support.exporter import Traffic

pytestmark = [pytest.mark.e2e, pytest.mark.prometheus]


def test_exhausted_budget_pauses_and_recovery_resumes(world: World) -> None:
    namespace = "e2e-pause"
    service = world.take_service(HEALTHY)
    guard(world, namespace, "checkout", service)
    status = wait_healthy(world, namespace, "checkout")
    assert condition(status, "Ready")["status"] == "True"
    assert condition(status, "DataAvailable")["status"] == "True"

    exhaust_and_wait_paused(world, service, namespace, "checkout", "pause")
    paused = deployment(world, namespace, "checkout")
    assert annotations_of(paused)["sloguard.io/paused-by"] == "checkout"
    assert "sloguard.io/paused-at" in annotations_of(paused)
    service.set(error_ratio=0.0)
    wait_for(lambda: not is_paused(world, namespace, "checkout"), timeout=RECOVER_TIMEOUT, what="resume")
    resumed = deployment(world, namespace, "checkout")
    assert "sloguard.io/paused-by" not in annotations_of(resumed)
    assert "sloguard.io/held" not in (resumed["metadata"].get("labels") or {})
    # The target is patched before the status of the same pass is written: wait for that status.
    status = wait_target_state(world, namespace, "checkout", "Untouched")
    assert status["errorBudget"]["remaining"] > 0.05
    assert [a["action"] for a in status["actions"]] == ["Pause", "Resume"]
    reasons = event_reasons(world, namespace, "Deployment")
    assert "Paused" in reasons
    assert "Resumed" in reasons
    # Recovery can be quick, so the Exhausted status is checked through the Events it left behind.
    assert "StateExhausted" in event_reasons(world, namespace, SLO_KIND)
    if world.emulator is not None:
        patches = world.emulator.requests(verb="patch", resource="deployments", namespace=namespace, name="checkout")
        assert len(patches) == 2, "exactly one pause and one resume"


def test_scale_action_restores_original_replicas(world: World) -> None:
    namespace = "e2e-scale"
    service = world.take_service(HEALTHY)
    policy = {"mode": "Enforce", "action": "Scale", "scaleTo": 2, "resumeAbove": 0.05}
    guard(world, namespace, "search", service, policy=policy, replicas=5)
    wait_healthy(world, namespace, "search")
    service.set(error_ratio=1.0)
    wait_for(
        lambda: deployment(world, namespace, "search")["spec"]["replicas"] == 2, timeout=ACT_TIMEOUT, what="scaled to 2"
    )
    assert annotations_of(deployment(world, namespace, "search"))["sloguard.io/original-replicas"] == "5"
    service.set(error_ratio=0.0)
    wait_for(
        lambda: deployment(world, namespace, "search")["spec"]["replicas"] == 5,
        timeout=RECOVER_TIMEOUT,
        what="restored",
    )
    assert "sloguard.io/original-replicas" not in annotations_of(deployment(world, namespace, "search"))


def test_dry_run_reports_but_never_writes_to_the_target(world: World) -> None:
    namespace = "e2e-dryrun"
    service = world.take_service(HEALTHY)
    deploy(world, namespace, "cart")
    before = deployment(world, namespace, "cart")["metadata"]["resourceVersion"]
    policy = {"mode": "DryRun", "action": "Pause"}
    world.kube.create_object(slo("cart", namespace, service, targets=one_target("cart"), policy=policy))
    wait_healthy(world, namespace, "cart")
    service.set(error_ratio=1.0)
    status = wait_target_state(world, namespace, "cart", "WouldPause")
    assert status["actions"][-1]["result"] == "DryRun"
    time.sleep(3 * EVALUATION_INTERVAL)
    service.set(error_ratio=0.0)
    assert deployment(world, namespace, "cart")["metadata"]["resourceVersion"] == before
    assert not is_paused(world, namespace, "cart")
    if world.emulator is not None:
        assert world.emulator.requests(verb="patch", resource="deployments", namespace=namespace) == []
    assert "DryRun" in event_reasons(world, namespace, SLO_KIND)


def test_human_pause_stays_after_recovery(world: World) -> None:
    namespace = "e2e-human"
    service = world.take_service(FAILING)
    deploy(world, namespace, "payments")
    world.kube.patch_object("apps/v1", "Deployment", "payments", {"spec": {"paused": True}}, namespace=namespace)
    world.kube.create_object(slo("payments", namespace, service, targets=one_target("payments")))
    status = wait_target_state(world, namespace, "payments", "PausedByOther")
    assert status["state"] == "Exhausted"
    service.set(error_ratio=0.0)
    wait_healthy(world, namespace, "payments")
    time.sleep(3 * EVALUATION_INTERVAL)
    assert is_paused(world, namespace, "payments"), "a human's pause is never undone"
    assert "sloguard.io/paused-by" not in annotations_of(deployment(world, namespace, "payments"))
    assert "PausedByOther" in event_reasons(world, namespace, SLO_KIND)


def test_two_slos_share_a_deployment_and_the_last_one_resumes(world: World) -> None:
    namespace = "e2e-shared"
    first, second = world.take_service(HEALTHY), world.take_service(HEALTHY)
    deploy(world, namespace, "frontend")
    target = one_target("frontend")
    world.kube.create_object(slo("frontend-errors", namespace, first, targets=target))
    world.kube.create_object(slo("frontend-backend", namespace, second, targets=target))
    wait_healthy(world, namespace, "frontend-errors")
    first.set(error_ratio=1.0)
    second.set(error_ratio=1.0)
    wait_for(
        lambda: (
            annotations_of(deployment(world, namespace, "frontend")).get("sloguard.io/paused-by")
            == "frontend-backend,frontend-errors"
        ),
        timeout=ACT_TIMEOUT,
        what="both SLOs holding the pause",
    )
    first.set(error_ratio=0.0)
    wait_for(
        lambda: (
            annotations_of(deployment(world, namespace, "frontend")).get("sloguard.io/paused-by") == "frontend-backend"
        ),
        timeout=RECOVER_TIMEOUT,
        what="first SLO releasing",
    )
    assert is_paused(world, namespace, "frontend"), "the other SLO still holds it"
    second.set(error_ratio=0.0)
    wait_for(lambda: not is_paused(world, namespace, "frontend"), timeout=RECOVER_TIMEOUT, what="resume after both")


def test_override_annotation_lets_rollouts_through(world: World) -> None:
    namespace = "e2e-override"
    service = world.take_service(FAILING)
    until = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 3600))
    guard(world, namespace, "hotfix", service, annotations={"sloguard.io/override-until": until})
    # The override holds from the first pass, while the data is still Unknown; what matters is the spent budget.
    wait_for(
        lambda: (
            (s := slo_status(world, namespace, "hotfix")).get("state") == "Exhausted"
            and target_state(s) == "Overridden"
        ),
        timeout=ACT_TIMEOUT,
        what="hotfix Exhausted with its target Overridden",
    )
    assert not is_paused(world, namespace, "hotfix")
    assert "OverrideActive" in event_reasons(world, namespace, "Deployment")
    service.set(error_ratio=0.0)


def test_zero_traffic_takes_no_action(world: World) -> None:
    namespace = "e2e-idle"
    service = world.take_service(Traffic(rps=0))
    guard(world, namespace, "batch", service)
    status = wait_for(
        lambda: (s := slo_status(world, namespace, "batch")).get("reason") == "NoTraffic" and s,
        timeout=ACT_TIMEOUT,
        what="NoTraffic",
    )
    assert status["state"] == "Unknown"
    assert condition(status, "DataAvailable")["status"] == "False"
    assert condition(status, "DataAvailable")["reason"] == "NoTraffic"
    time.sleep(3 * EVALUATION_INTERVAL)
    assert not is_paused(world, namespace, "batch")
    if world.emulator is not None:
        assert world.emulator.requests(verb="patch", resource="deployments", namespace=namespace) == []


def test_deleting_an_slo_releases_its_pause(world: World) -> None:
    namespace = "e2e-delete"
    service = world.take_service(HEALTHY)
    guard(world, namespace, "orders", service)
    wait_healthy(world, namespace, "orders")
    exhaust_and_wait_paused(world, service, namespace, "orders", "delete")
    world.kube.delete_object(SLO_API, SLO_KIND, "orders", namespace=namespace)
    wait_for(lambda: world.get(SLO_API, SLO_KIND, "orders", namespace) is None, timeout=ACT_TIMEOUT, what="SLO gone")
    assert not is_paused(world, namespace, "orders"), "the finalizer undid the pause"
    assert "sloguard.io/paused-by" not in annotations_of(deployment(world, namespace, "orders"))
    service.set(error_ratio=0.0)


def test_hpa_managed_deployment_is_not_scaled(world: World) -> None:
    namespace = "e2e-hpa"
    service = world.take_service(FAILING)
    deploy(world, namespace, "api", replicas=3)
    world.kube.create_object(
        {
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "api", "namespace": namespace},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "api"},
                "minReplicas": 2,
                "maxReplicas": 10,
            },
        }
    )
    policy = {"mode": "Enforce", "action": "Scale", "scaleTo": 1}
    world.kube.create_object(slo("api", namespace, service, targets=one_target("api"), policy=policy))
    status = wait_target_state(world, namespace, "api", "Refused")
    assert condition(status, "ActionApplied")["reason"] == "AutoscalerPresent"
    assert deployment(world, namespace, "api")["spec"]["replicas"] == 3
    service.set(error_ratio=0.0)


def test_a_target_in_another_namespace_cannot_be_named(world: World) -> None:
    namespace, other = "e2e-tenant", "e2e-victim"
    service = world.take_service(FAILING)
    deploy(world, other, "bank")
    world.kube.ensure_namespace(namespace)
    bad = slo("escape", namespace, service, targets=[{"kind": "Deployment", "name": "bank", "namespace": other}])
    world.kube.create_object(bad)
    # The API server prunes the unknown field (or the operator rejects it): either way `bank` is never touched.
    status = wait_for(
        lambda: (s := slo_status(world, namespace, "escape")).get("observedGeneration") and s,
        timeout=ACT_TIMEOUT,
        what="a status for the escape attempt",
    )
    if status.get("reason") == "InvalidSpec":
        assert condition(status, "Ready")["status"] == "False"
        assert "spec.targets[0].namespace" in condition(status, "Ready")["message"]
    else:
        assert status["targets"][0]["state"] == "Missing", "the name resolves only in the SLO's own namespace"
    time.sleep(3 * EVALUATION_INTERVAL)
    assert not is_paused(world, other, "bank")
    if world.emulator is not None:
        assert world.emulator.requests(verb="patch", resource="deployments", namespace=other) == []
    service.set(error_ratio=0.0)


def test_prometheus_outage_holds_everything_then_service_resumes(world: World) -> None:
    namespace = "e2e-outage"
    service = world.take_service(HEALTHY)
    guard(world, namespace, "ledger", service)
    wait_healthy(world, namespace, "ledger")
    exhaust_and_wait_paused(world, service, namespace, "ledger", "outage")
    service.set(error_ratio=0.0)
    emulator = world.emulator
    if emulator is not None:
        emulator.clear_requests()
    world.prometheus.stop()
    try:
        status = wait_for(
            lambda: (s := slo_status(world, namespace, "ledger")).get("reason") == "PrometheusUnavailable" and s,
            timeout=ACT_TIMEOUT,
            what="PrometheusUnavailable",
        )
        assert condition(status, "DataAvailable")["status"] == "False"
        time.sleep(5 * EVALUATION_INTERVAL)
        assert is_paused(world, namespace, "ledger"), "Unknown holds the current state"
        if emulator is not None:
            assert emulator.writes_to("deployments") == [], "no target writes while Prometheus is down"
    finally:
        world.prometheus.start()
    wait_for(
        lambda: condition(slo_status(world, namespace, "ledger"), "DataAvailable").get("status") == "True",
        timeout=ACT_TIMEOUT,
        what="DataAvailable again",
    )


def test_restart_between_acting_and_writing_status_converges_with_one_action(world: World) -> None:
    emulator = world.need_emulator()
    namespace = "e2e-restart"
    service = world.take_service(HEALTHY)
    guard(world, namespace, "inventory", service)
    wait_healthy(world, namespace, "inventory")
    fail_status_patches(emulator, namespace, "inventory", status=500, count=1000)
    service.set(error_ratio=1.0)
    wait_for(lambda: is_paused(world, namespace, "inventory"), timeout=ACT_TIMEOUT, what="paused")
    restart_operator(world)
    wait_for(
        lambda: (
            (s := slo_status(world, namespace, "inventory")).get("state") == "Exhausted"
            and s["targets"][0]["state"] == "Paused"
        ),
        timeout=ACT_TIMEOUT,
        what="status after restart",
    )
    pauses = emulator.requests(verb="patch", resource="deployments", namespace=namespace, name="inventory")
    assert len(pauses) == 1, "the restarted operator read the pause from the Deployment and did not pause again"
    service.set(error_ratio=0.0)
