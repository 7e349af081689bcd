"""The reconciler's enforcement half against an in-memory Deployment that behaves like the API server stores it.

Each pass is `Reconciler.enforce` with an evaluation given directly (no metrics source is involved), so these tests
pin down what reaches the cluster: target writes, Events and status, across reverts, failed writes and restarts.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from tests.support.emulator_store import merge_patch

from slo_guard.adapters.managed_fields import FIELD_MANAGER
from slo_guard.adapters.workloads import deployment_snapshot, workload_patch
from slo_guard.domain.evaluation_types import Evaluation, State
from slo_guard.domain.model import Target
from slo_guard.domain.policy import HELD_LABEL, Change, WorkloadState
from slo_guard.resources import objective_from_resource
from slo_guard.service.evaluation import EvaluationSettings
from slo_guard.service.ports import (
    KubernetesUnavailable,
    ObjectRef,
    OwnershipLost,
    Sample,
    WorkloadConflict,
    WorkloadSnapshot,
)
from slo_guard.service.reconcile import Reconciler, ReconcilerSettings, SLOSnapshot

NOW = datetime(2026, 11, 1, tzinfo=UTC)
NAMESPACE = "shop"
TARGET = Target("Deployment", "checkout")


class FakeDeployment:
    """One Deployment: merge patches with a resourceVersion precondition, and managedFields ownership of spec fields."""

    def __init__(self, *, replicas: int = 5) -> None:
        self.body: dict[str, Any] = {
            "metadata": {"name": TARGET.name, "namespace": NAMESPACE, "resourceVersion": "1", "labels": {}},
            "spec": {"replicas": replicas},
        }
        self.owners: dict[str, str] = {"replicas": "kubectl-client-side-apply"}
        self.writes: list[dict[str, Any]] = []
        self.failing_writes = 0
        self.write_gate: asyncio.Event | None = None
        self.write_in_flight = asyncio.Event()
        self._clock = NOW

    @property
    def spec(self) -> dict[str, Any]:
        return dict(self.body["spec"])

    @property
    def annotations(self) -> dict[str, str]:
        return dict(self.body["metadata"].get("annotations") or {})

    @property
    def labels(self) -> dict[str, str]:
        return dict(self.body["metadata"].get("labels") or {})

    def write_spec(self, manager: str, **fields: Any) -> None:
        """Another client changes spec fields; the API server gives their ownership to its manager."""
        self._store({"spec": fields}, manager=manager)

    def _store(self, patch: Mapping[str, Any], *, manager: str) -> None:
        self.body = merge_patch(self.body, patch)
        for field in patch.get("spec") or {}:
            self.owners[field] = manager
        metadata = self.body["metadata"]
        metadata["resourceVersion"] = str(int(metadata["resourceVersion"]) + 1)
        metadata["managedFields"] = [
            {
                "manager": owner,
                "operation": "Update",
                "time": self._clock.isoformat(),
                "fieldsType": "FieldsV1",
                "fieldsV1": {"f:spec": {f"f:{field}": {}}},
            }
            for field, owner in self.owners.items()
        ]

    async def read(self, *, namespace: str, target: Target, check_autoscaler: bool) -> WorkloadSnapshot:
        if target != TARGET:
            return WorkloadSnapshot(WorkloadState(target, exists=False), resource_version=None)
        return deployment_snapshot(copy.deepcopy(self.body), target=target, autoscaler=None)

    async def apply(self, *, namespace: str, snapshot: WorkloadSnapshot, change: Change) -> None:
        if self.write_gate is not None:
            # Like the bulkhead's shielded thread: a PATCH that was sent lands even if its caller is cancelled.
            self.write_in_flight.set()
            await asyncio.shield(self._land_after_gate(snapshot, change))
            return
        await self._land(snapshot, change)

    async def _land_after_gate(self, snapshot: WorkloadSnapshot, change: Change) -> None:
        assert self.write_gate is not None
        await self.write_gate.wait()
        await self._land(snapshot, change)

    async def _land(self, snapshot: WorkloadSnapshot, change: Change) -> None:
        if self.failing_writes:
            self.failing_writes -= 1
            raise KubernetesUnavailable("Kubernetes API answered 500: injected")
        assert snapshot.resource_version is not None
        patch = workload_patch(resource_version=snapshot.resource_version, change=change)
        if patch["metadata"].pop("resourceVersion") != self.body["metadata"]["resourceVersion"]:
            raise WorkloadConflict("the object has been modified")
        self.writes.append(patch)
        self._store(patch, manager=FIELD_MANAGER)

    async def held(self, *, namespace: str) -> Sequence[WorkloadSnapshot]:
        if self.labels.get(HELD_LABEL) != "true":
            return []
        return [await self.read(namespace=namespace, target=TARGET, check_autoscaler=False)]


@dataclass(frozen=True)
class PostedEvent:
    kind: str
    type_: str
    reason: str
    message: str


class RecordedEvents:
    def __init__(self) -> None:
        self.posted: list[PostedEvent] = []

    async def post(self, *, regarding: ObjectRef, type_: str, reason: str, message: str) -> None:
        self.posted.append(PostedEvent(regarding.kind, type_, reason, message))

    def reasons(self, kind: str) -> list[str]:
        return [event.reason for event in self.posted if event.kind == kind]


class StoredSLO:
    """The SLO as the API server keeps it; status merge patches land in it unless the store is failing."""

    def __init__(self, policy: Mapping[str, Any]) -> None:
        self.body: dict[str, Any] = {
            "apiVersion": "sloguard.io/v1alpha1",
            "kind": "ServiceLevelObjective",
            "metadata": {"name": "checkout", "namespace": NAMESPACE, "generation": 1, "uid": "slo-uid"},
            "spec": {
                "objective": 90,
                "window": "1m",
                "evaluationInterval": "1s",
                "indicator": {"ratio": {"errors": 'http_requests_total{code="500"}', "total": "http_requests_total"}},
                "targets": [{"kind": "Deployment", "name": TARGET.name}],
                "policy": dict(policy),
            },
        }
        self.failing = False
        self.writes = 0

    @property
    def status(self) -> dict[str, Any]:
        return dict(self.body.get("status") or {})

    async def patch_status(self, *, namespace: str, name: str, status: Mapping[str, object]) -> None:
        if self.failing:
            raise KubernetesUnavailable("Kubernetes API answered 500: injected")
        self.body = merge_patch(self.body, {"status": status})
        self.writes += 1


class NoMetrics:
    """`enforce` is given its evaluation; a query would mean the test is not testing what it says."""

    async def query(self, expr: str, *, at: datetime) -> Sequence[Sample]:
        raise AssertionError(f"unexpected query {expr}")


PAUSE = {"mode": "Enforce", "action": "Pause", "resumeAbove": 0.05}
SCALE = {"mode": "Enforce", "action": "Scale", "scaleTo": 2, "resumeAbove": 0.05}


def spent(now: datetime) -> Evaluation:
    return Evaluation(State.EXHAUSTED, None, "The error budget is spent", now, sli=0.5, budget_remaining=-4.0)


def recovered(now: datetime) -> Evaluation:
    return Evaluation(State.HEALTHY, None, "Within budget", now, sli=1.0, budget_remaining=1.0)


@dataclass
class Cluster:
    """What survives an operator restart: the Deployment and the SLO. Events and the reconciler do not matter."""

    deployment: FakeDeployment
    slo: StoredSLO
    events: RecordedEvents

    def operator(self) -> Reconciler:
        """A freshly started operator: nothing in memory but its settings."""
        return Reconciler(
            metrics=NoMetrics(),
            workloads=self.deployment,
            events=self.events,
            statuses=self.slo,
            settings=ReconcilerSettings(min_step=1, evaluation=EvaluationSettings(max_staleness=15)),
        )

    async def run_pass(self, reconciler: Reconciler, evaluation: Evaluation) -> None:
        resource = copy.deepcopy(self.slo.body)
        objective = objective_from_resource(resource, min_step=1)
        # The runtime logs a failed pass and tries again at the next slot.
        with contextlib.suppress(KubernetesUnavailable):
            await reconciler.enforce(
                SLOSnapshot.of(resource), objective=objective, evaluation=evaluation, now=evaluation.evaluated_at
            )


def cluster(policy: Mapping[str, Any]) -> Cluster:
    return Cluster(FakeDeployment(), StoredSLO(policy), RecordedEvents())


def target_row(world: Cluster) -> dict[str, Any]:
    [row] = world.slo.status["targets"]
    return dict(row)


def condition(world: Cluster, kind: str) -> dict[str, Any]:
    return next(item for item in world.slo.status["conditions"] if item["type"] == kind)


# Reverts by GitOps tools and humans.


async def test_a_revert_is_undone_once_and_who_reverted_it_is_reported() -> None:
    world = cluster(PAUSE)
    reconciler = world.operator()
    await world.run_pass(reconciler, spent(NOW))
    world.deployment.write_spec("argocd-controller", paused=False)

    await world.run_pass(reconciler, spent(NOW + timedelta(seconds=1)))

    assert world.deployment.spec["paused"] is True
    assert [write["spec"] for write in world.deployment.writes] == [{"paused": True}, {"paused": True}]
    assert world.deployment.annotations["sloguard.io/reverted-by"] == "argocd-controller"
    [reasserted] = [e for e in world.events.posted if e.kind == "Deployment" and e.reason == "PauseReasserted"]
    assert reasserted.type_ == "Warning"
    assert "reverted by argocd-controller" in reasserted.message
    assert "PauseReasserted" in world.events.reasons("ServiceLevelObjective")
    contested = condition(world, "Contested")
    assert (contested["status"], contested["reason"]) == ("True", "Reasserted")
    assert "Deployment checkout: spec.paused reverted by argocd-controller; re-applied 1 time" in contested["message"]
    assert target_row(world)["state"] == "Paused"
    assert [(a["action"], a["reason"]) for a in world.slo.status["actions"]] == [
        ("Pause", "Paused"),
        ("Pause", "PauseReasserted"),
    ]


async def test_a_controller_reverting_after_every_pass_meets_an_exponential_backoff() -> None:
    world = cluster(PAUSE)
    reconciler = world.operator()
    await world.run_pass(reconciler, spent(NOW))
    world.events.posted.clear()
    for second in range(1, 61):
        world.deployment.write_spec("argocd-controller", paused=False)
        await world.run_pass(reconciler, spent(NOW + timedelta(seconds=second)))

    # Reverts at every pass (1 s interval): re-assertions at 1, 3, 7, 15, 31 s, then 63 s.
    assert len(world.deployment.writes) == 1 + 5
    assert world.deployment.annotations["sloguard.io/reassertions"] == "5"
    deployment_events = world.events.reasons("Deployment")
    assert deployment_events.count("PauseReasserted") == 5
    assert deployment_events.count("PauseReverted") == 5, "one Warning each time a revert is left standing"
    assert len(world.events.posted) == 2 * 10, "each Event goes to the SLO and to the Deployment"
    contested = condition(world, "Contested")
    assert (contested["status"], contested["reason"]) == ("True", "BackingOff")
    assert "backing off until 2026-11-01T00:01:03Z" in contested["message"]
    assert target_row(world)["state"] == "Contested"
    assert condition(world, "ActionApplied")["status"] == "False"


async def test_recovery_resumes_a_contested_target_and_clears_the_contest() -> None:
    world = cluster(PAUSE)
    reconciler = world.operator()
    await world.run_pass(reconciler, spent(NOW))
    world.deployment.write_spec("flux", paused=False)
    await world.run_pass(reconciler, spent(NOW + timedelta(seconds=1)))

    await world.run_pass(reconciler, recovered(NOW + timedelta(seconds=2)))

    assert world.deployment.spec["paused"] is False
    assert not any(key.startswith("sloguard.io/") for key in world.deployment.annotations)
    assert HELD_LABEL not in world.deployment.labels
    assert condition(world, "Contested")["status"] == "False"


async def test_replicas_changed_by_someone_else_are_scaled_back_naming_them() -> None:
    world = cluster(SCALE)
    reconciler = world.operator()
    await world.run_pass(reconciler, spent(NOW))
    world.deployment.write_spec("kubectl-scale", replicas=7)

    await world.run_pass(reconciler, spent(NOW + timedelta(seconds=1)))

    assert world.deployment.spec["replicas"] == 2
    assert world.deployment.annotations["sloguard.io/original-replicas"] == "5"
    assert "spec.replicas reverted by kubectl-scale" in condition(world, "Contested")["message"]


# Crash consistency: the operator dies between the steps of an action, and a new one takes over.


@dataclass(frozen=True)
class Direction:
    policy: Mapping[str, Any]
    held: dict[str, Any]
    """The spec fields while the action holds."""
    released: dict[str, Any]


PAUSING = Direction(PAUSE, held={"paused": True, "replicas": 5}, released={"paused": False, "replicas": 5})
SCALING = Direction(SCALE, held={"replicas": 2}, released={"replicas": 5})


def assert_released(world: Cluster, direction: Direction) -> None:
    assert world.deployment.spec == direction.released
    assert not any(key.startswith("sloguard.io/") for key in world.deployment.annotations), "no orphaned annotation"
    assert HELD_LABEL not in world.deployment.labels


@pytest.mark.parametrize("direction", [PAUSING, SCALING], ids=["pause", "scale"])
async def test_a_restart_after_a_failed_target_write_acts_exactly_once(direction: Direction) -> None:
    world = cluster(direction.policy)
    world.deployment.failing_writes = 1
    await world.run_pass(world.operator(), spent(NOW))
    assert target_row(world)["reason"] == "ActionFailed"

    await world.run_pass(world.operator(), spent(NOW + timedelta(seconds=1)))
    await world.run_pass(world.operator(), spent(NOW + timedelta(seconds=2)))

    assert world.deployment.spec == direction.held
    assert len(world.deployment.writes) == 1
    world.deployment.failing_writes = 1
    await world.run_pass(world.operator(), recovered(NOW + timedelta(seconds=3)))
    await world.run_pass(world.operator(), recovered(NOW + timedelta(seconds=4)))
    await world.run_pass(world.operator(), recovered(NOW + timedelta(seconds=5)))
    assert_released(world, direction)
    assert len(world.deployment.writes) == 2


@pytest.mark.parametrize("direction", [PAUSING, SCALING], ids=["pause", "scale"])
async def test_a_restart_after_a_lost_status_write_neither_repeats_nor_loses_the_action(direction: Direction) -> None:
    world = cluster(direction.policy)
    await world.run_pass(world.operator(), recovered(NOW))
    world.slo.failing = True
    await world.run_pass(world.operator(), spent(NOW + timedelta(seconds=1)))
    assert world.deployment.spec == direction.held
    assert target_row(world)["state"] == "Untouched", "the status still shows the pass before"

    world.slo.failing = False
    await world.run_pass(world.operator(), spent(NOW + timedelta(seconds=2)))

    assert len(world.deployment.writes) == 1
    assert target_row(world)["state"] in {"Paused", "Scaled"}
    world.slo.failing = True
    await world.run_pass(world.operator(), recovered(NOW + timedelta(seconds=3)))
    world.slo.failing = False
    await world.run_pass(world.operator(), recovered(NOW + timedelta(seconds=4)))
    assert_released(world, direction)
    assert len(world.deployment.writes) == 2
    assert target_row(world)["state"] == "Untouched"


# Interleavings with kopf: the body changes under a pass, and deletion races a pass's write.


class GatedPrometheus:
    """Answers every query of an evaluation: all requests failing (or none), a sample just now; can be held."""

    def __init__(self) -> None:
        self.error_ratio = 1.0
        self.gate: asyncio.Event | None = None
        self.waiting = asyncio.Event()

    async def query(self, expr: str, *, at: datetime) -> Sequence[Sample]:
        if self.gate is not None:
            self.waiting.set()
            await self.gate.wait()
        if expr.startswith("max(timestamp("):
            return [Sample({}, at.timestamp(), at.timestamp())]
        return [Sample({}, self.error_ratio if 'code="500"' in expr else 1.0, at.timestamp())]


def live_operator(world: Cluster, prometheus: GatedPrometheus) -> Reconciler:
    return Reconciler(
        metrics=prometheus,
        workloads=world.deployment,
        events=world.events,
        statuses=world.slo,
        settings=ReconcilerSettings(min_step=1, evaluation=EvaluationSettings(max_staleness=15)),
        clock=lambda: NOW,
    )


def watch_event(live: dict[str, Any], world: Cluster) -> None:
    """kopf swaps the body it handed out in place when a watch event arrives."""
    live.clear()
    live.update(copy.deepcopy(world.slo.body))


async def test_a_target_dropped_from_the_spec_during_a_pass_is_released_by_the_next_pass() -> None:
    world = cluster(PAUSE)
    prometheus = GatedPrometheus()
    reconciler = live_operator(world, prometheus)
    live = copy.deepcopy(world.slo.body)
    await reconciler.reconcile(live)
    assert world.deployment.spec.get("paused") is True
    watch_event(live, world)

    prometheus.gate = asyncio.Event()
    in_flight = asyncio.ensure_future(reconciler.reconcile(live))
    await prometheus.waiting.wait()
    world.slo.body["spec"]["targets"] = [{"kind": "Deployment", "name": "cart"}]
    world.slo.body["metadata"]["generation"] = 2
    watch_event(live, world)
    prometheus.gate.set()
    await in_flight
    assert world.slo.status["observedGeneration"] == 1, "the status speaks for the spec that was evaluated"

    prometheus.gate = None
    watch_event(live, world)
    await reconciler.reconcile(live)
    assert world.deployment.spec.get("paused") is False
    assert HELD_LABEL not in world.deployment.labels
    assert world.slo.status["observedGeneration"] == 2


async def test_deleting_an_slo_while_its_pause_is_in_flight_leaves_no_orphan_hold() -> None:
    world = cluster(PAUSE)
    reconciler = live_operator(world, GatedPrometheus())
    live = copy.deepcopy(world.slo.body)
    world.deployment.write_gate = asyncio.Event()
    daemon = asyncio.ensure_future(reconciler.reconcile(live))
    await world.deployment.write_in_flight.wait()

    live["metadata"]["deletionTimestamp"] = "2026-11-01T00:00:00Z"
    daemon.cancel()
    finalizer = asyncio.ensure_future(reconciler.finalize(live))
    for _ in range(5):
        await asyncio.sleep(0)
    world.deployment.write_gate.set()
    await finalizer

    assert world.deployment.spec.get("paused") is False
    assert HELD_LABEL not in world.deployment.labels
    assert "sloguard.io/paused-by" not in world.deployment.annotations


# Deny: the hold lives in the SLO's status alone; the target is never written.

DENY = {"mode": "Enforce", "action": "Deny", "resumeAbove": 0.05}


async def test_a_deny_policy_holds_through_status_alone_and_lets_go_on_recovery() -> None:
    world = cluster(DENY)
    operator = world.operator()
    for minute in range(2):
        await world.run_pass(operator, spent(NOW + timedelta(minutes=minute)))
    assert (target_row(world)["state"], target_row(world)["reason"]) == ("Denying", "Denying")
    assert [(item["action"], item["result"]) for item in world.slo.status["actions"]] == [("Deny", "Applied")]
    assert world.events.reasons("Deployment") == ["Denying"]
    # A restarted operator reads the hold back from the status: still held just above zero budget.
    restarted = world.operator()
    await world.run_pass(restarted, replace(recovered(NOW + timedelta(minutes=3)), budget_remaining=0.03))
    assert target_row(world)["state"] == "Denying"
    await world.run_pass(restarted, recovered(NOW + timedelta(minutes=4)))
    assert target_row(world)["state"] == "Untouched"
    assert [item["action"] for item in world.slo.status["actions"]] == ["Deny", "Allow"]
    assert world.deployment.writes == []


async def test_a_new_slo_found_healthy_posts_no_event_but_one_found_exhausted_does() -> None:
    healthy, exhausted = cluster(PAUSE), cluster(PAUSE)
    await healthy.run_pass(healthy.operator(), recovered(NOW))
    await exhausted.run_pass(exhausted.operator(), spent(NOW))
    assert healthy.slo.status["state"] == "Healthy"
    assert healthy.events.posted == [], "the status shows a healthy start; 5,000 such Events would flood a cold start"
    assert "StateExhausted" in exhausted.events.reasons("ServiceLevelObjective")
    await healthy.run_pass(healthy.operator(), spent(NOW + timedelta(minutes=1)))
    await healthy.run_pass(healthy.operator(), recovered(NOW + timedelta(minutes=2)))
    transitions = [event.message.split(":")[0] for event in healthy.events.posted if event.reason.startswith("State")]
    assert transitions == ["Healthy -> Exhausted", "Exhausted -> Healthy"], "later changes are all announced"


def burning(now: datetime, *, short_burn: float) -> Evaluation:
    burns = {300: short_burn, 3600: 0.5}
    return Evaluation(State.HEALTHY, None, "Within budget", now, sli=0.99, budget_remaining=0.5, burn_rates=burns)


async def test_burn_rates_moving_alone_are_refreshed_with_the_heartbeat_not_written_at_every_pass() -> None:
    """A 5-minute burn rate follows every scrape's jitter; 5,000 SLOs would each write their status every cycle."""
    world = cluster(PAUSE)
    operator = world.operator()
    await world.run_pass(operator, burning(NOW, short_burn=0.5))
    await world.run_pass(operator, burning(NOW + timedelta(minutes=1), short_burn=0.506))
    assert world.slo.writes == 1
    await world.run_pass(operator, burning(NOW + timedelta(minutes=5), short_burn=0.51))
    assert world.slo.writes == 2, "the heartbeat brings the burn rates up to date"
    assert world.slo.status["burnRates"]["5m"] == 0.51
    await world.run_pass(operator, spent(NOW + timedelta(minutes=6)))
    assert world.slo.writes == 3, "a new state is written at once"


async def test_a_dry_run_deny_reports_would_deny_once() -> None:
    world = cluster({**DENY, "mode": "DryRun"})
    operator = world.operator()
    for minute in range(2):
        await world.run_pass(operator, spent(NOW + timedelta(minutes=minute)))
    assert target_row(world)["state"] == "WouldDeny"
    assert [(item["action"], item["result"]) for item in world.slo.status["actions"]] == [("Deny", "DryRun")]
    assert world.events.reasons("ServiceLevelObjective").count("DryRun") == 1
    assert world.deployment.writes == []


async def test_a_deny_policy_on_an_operator_without_the_webhook_says_nothing_is_denied() -> None:
    world = cluster(DENY)
    operator = Reconciler(
        metrics=NoMetrics(),
        workloads=world.deployment,
        events=world.events,
        statuses=world.slo,
        settings=ReconcilerSettings(
            min_step=1, evaluation=EvaluationSettings(max_staleness=15), admission_served=False
        ),
    )
    await world.run_pass(operator, spent(NOW))
    assert target_row(world)["message"].endswith(
        "this operator serves no admission webhook (--webhook-cert-file is not set), so nothing is denied"
    )


# Sharding: a pass whose shard moved away mid-way writes nothing more.


async def test_a_pass_that_lost_its_shard_writes_neither_the_target_nor_the_status() -> None:
    world = cluster(PAUSE)
    owned = {"value": False}
    reconciler = Reconciler(
        metrics=NoMetrics(),
        workloads=world.deployment,
        events=world.events,
        statuses=world.slo,
        settings=ReconcilerSettings(min_step=1, evaluation=EvaluationSettings(max_staleness=15)),
        owns=lambda key: owned["value"],
    )
    resource = copy.deepcopy(world.slo.body)
    objective = objective_from_resource(resource, min_step=1)

    with pytest.raises(OwnershipLost, match="shop/checkout"):
        await reconciler.enforce(SLOSnapshot.of(resource), objective=objective, evaluation=spent(NOW), now=NOW)

    assert world.deployment.writes == []
    assert world.slo.status == {}
    owned["value"] = True
    await world.run_pass(reconciler, spent(NOW))
    assert world.deployment.spec["paused"] is True, "the owner acts as before"
