"""Each target kind read into the policy's WorkloadState and the policy's changes written back, per kind.

The policy stays kind-agnostic: these tests drive `decide`/`release` on what the adapter read, then look at the
merge patch the adapter would send, as the API server would receive it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from slo_guard.adapters.workloads import (
    ORIGINAL_PARTITION,
    PARTITION_FIELD,
    scales,
    workload_patch,
    workload_snapshot,
)
from slo_guard.domain.evaluation_types import Evaluation, State
from slo_guard.domain.model import Policy, PolicyAction, Target
from slo_guard.domain.policy import (
    HELD_LABEL,
    PAUSED_BY,
    ReassertBackoff,
    TargetDecision,
    TargetState,
    WorkloadState,
    decide,
    release,
)
from slo_guard.service.ports import WorkloadSnapshot

NOW = datetime(2026, 11, 1, tzinfo=UTC)
EXHAUSTED = Evaluation(State.EXHAUSTED, None, "spent", NOW, sli=0.5, budget_remaining=-1.0)
DB = Target("StatefulSet", "db")
WEB = Target("Rollout", "web")


def statefulset(
    *, replicas: int | None = 3, strategy: dict[str, Any] | None = None, annotations: dict[str, str] | None = None
) -> dict[str, Any]:
    spec: dict[str, Any] = {"selector": {"matchLabels": {"app": "db"}}, "template": {}}
    if replicas is not None:
        spec["replicas"] = replicas
    if strategy is not None:
        spec["updateStrategy"] = strategy
    metadata = {"name": "db", "resourceVersion": "5", "annotations": annotations or {}}
    return {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": metadata, "spec": spec}


def rolling(partition: int) -> dict[str, Any]:
    return {"type": "RollingUpdate", "rollingUpdate": {"partition": partition}}


def read(body: dict[str, Any], target: Target = DB) -> WorkloadSnapshot:
    return workload_snapshot(body, target=target, autoscaler=None)


def pause(snapshot: WorkloadSnapshot, holder: str = "db-availability") -> TargetDecision:
    return decide(
        holder=holder,
        policy=Policy(action=PolicyAction.PAUSE),
        evaluation=EXHAUSTED,
        workload=snapshot.state,
        now=NOW,
        backoff=ReassertBackoff(base=30, cap=600),
    )


def patch_for(snapshot: WorkloadSnapshot, decision: TargetDecision, body: dict[str, Any]) -> dict[str, Any]:
    assert decision.change is not None, decision.message
    assert snapshot.resource_version is not None
    statefulset_body = body if snapshot.state.target.kind == "StatefulSet" else None
    return workload_patch(
        resource_version=snapshot.resource_version, change=decision.change, statefulset=statefulset_body
    )


def test_a_statefulset_is_paused_by_raising_its_partition_to_the_replica_count_and_recording_the_old_one() -> None:
    body = statefulset(replicas=3, strategy=rolling(1))
    snapshot = read(body)
    assert not snapshot.state.paused

    patch = patch_for(snapshot, pause(snapshot), body)

    assert patch["spec"] == {"updateStrategy": {"rollingUpdate": {"partition": 3}}}, "never spec.paused"
    assert patch["metadata"]["annotations"][ORIGINAL_PARTITION] == "1"
    assert patch["metadata"]["annotations"][PAUSED_BY] == "db-availability"
    assert patch["metadata"]["labels"] == {HELD_LABEL: "true"}
    assert patch["metadata"]["resourceVersion"] == "5", "conditional on what was read"


def test_an_unset_partition_is_recorded_as_zero() -> None:
    body = statefulset(replicas=2, strategy={"type": "RollingUpdate"})
    snapshot = read(body)
    patch = patch_for(snapshot, pause(snapshot), body)
    assert patch["metadata"]["annotations"][ORIGINAL_PARTITION] == "0"
    assert patch["spec"]["updateStrategy"]["rollingUpdate"]["partition"] == 2


def test_a_held_statefulset_reads_as_paused_and_undo_restores_the_partition_and_drops_the_record() -> None:
    held = statefulset(
        replicas=3, strategy=rolling(3), annotations={PAUSED_BY: "db-availability", ORIGINAL_PARTITION: "1"}
    )
    snapshot = read(held)
    assert snapshot.state.paused

    patch = patch_for(snapshot, release(holder="db-availability", workload=snapshot.state), held)

    assert patch["spec"] == {"updateStrategy": {"rollingUpdate": {"partition": 1}}}
    assert patch["metadata"]["annotations"][ORIGINAL_PARTITION] is None, "null removes it"
    assert patch["metadata"]["annotations"][PAUSED_BY] is None


def test_a_reverted_partition_is_raised_again_and_the_first_record_is_kept() -> None:
    # Someone set the partition back to 0 while the hold stands: the original from the start of the hold stays.
    body = statefulset(
        replicas=3, strategy=rolling(0), annotations={PAUSED_BY: "db-availability", ORIGINAL_PARTITION: "2"}
    )
    body["metadata"]["managedFields"] = [
        {
            "manager": "argocd-controller",
            "operation": "Update",
            "time": "2026-11-01T00:00:00Z",
            "fieldsV1": {"f:spec": {"f:updateStrategy": {"f:rollingUpdate": {"f:partition": {}}}}},
        }
    ]
    snapshot = read(body)
    decision = pause(snapshot)

    assert decision.reason == "PauseReasserted"
    assert decision.contest is not None
    assert (decision.contest.path, decision.contest.reverted_by) == (PARTITION_FIELD, "argocd-controller")
    assert f"{PARTITION_FIELD} was reverted by argocd-controller" in decision.message
    patch = patch_for(snapshot, decision, body)
    assert patch["spec"]["updateStrategy"]["rollingUpdate"]["partition"] == 3
    assert ORIGINAL_PARTITION not in patch["metadata"]["annotations"]


def test_a_partition_already_holding_every_pod_is_someone_elses_pause() -> None:
    decision = pause(read(statefulset(replicas=3, strategy=rolling(5))))
    assert (decision.state, decision.change) == (TargetState.PAUSED_BY_OTHER, None)


def test_an_on_delete_statefulset_is_refused_with_the_reason() -> None:
    decision = pause(read(statefulset(strategy={"type": "OnDelete"})))
    assert (decision.state, decision.reason, decision.change) == (TargetState.REFUSED, "PauseUnsupported", None)
    assert "OnDelete" in decision.message


def test_a_statefulset_scaled_to_zero_is_not_read_as_paused() -> None:
    body = statefulset(replicas=0, strategy=rolling(0))
    snapshot = read(body)
    assert not snapshot.state.paused
    patch = patch_for(snapshot, pause(snapshot), body)
    assert patch["spec"]["updateStrategy"]["rollingUpdate"]["partition"] == 1, "a partition that holds later pods"


def test_scaling_a_statefulset_writes_only_spec_replicas() -> None:
    body = statefulset(replicas=4, strategy=rolling(0))
    snapshot = read(body)
    decision = decide(
        holder="db-availability",
        policy=Policy(action=PolicyAction.SCALE, scale_to=1),
        evaluation=EXHAUSTED,
        workload=snapshot.state,
        now=NOW,
        backoff=ReassertBackoff(base=30, cap=600),
    )
    assert patch_for(snapshot, decision, body)["spec"] == {"replicas": 1}


def test_a_rollout_pauses_through_spec_paused_and_leaves_its_own_pause_steps_alone() -> None:
    body = {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Rollout",
        "metadata": {"name": "web", "resourceVersion": "9"},
        "spec": {"replicas": 2, "strategy": {"canary": {"steps": [{"pause": {}}]}}},
        "status": {"pauseConditions": [{"reason": "CanaryPauseStep"}], "controllerPause": True},
    }
    snapshot = read(body, WEB)
    assert not snapshot.state.paused, "a strategy's pause step is not spec.paused"

    patch = patch_for(snapshot, pause(snapshot), body)

    assert patch["spec"] == {"paused": True}, "the same patch as `kubectl argo rollouts pause`"
    assert "status" not in patch


def test_a_rollout_paused_by_hand_is_left_alone() -> None:
    body = {"metadata": {"name": "web", "resourceVersion": "9"}, "spec": {"paused": True}}
    assert pause(read(body, WEB)).state is TargetState.PAUSED_BY_OTHER


def test_an_autoscaler_is_matched_by_kind_name_and_api_group() -> None:
    def hpa(kind: str, api_version: str, name: str = "web") -> dict[str, Any]:
        return {"spec": {"scaleTargetRef": {"kind": kind, "apiVersion": api_version, "name": name}}}

    assert scales(hpa("Rollout", "argoproj.io/v1alpha1"), WEB)
    assert not scales(hpa("Rollout", "example.com/v1"), WEB)
    assert not scales(hpa("Deployment", "apps/v1"), WEB)
    assert scales(hpa("StatefulSet", "apps/v1", "db"), DB)
    assert not scales(hpa("StatefulSet", "apps/v1", "web"), DB)


def test_a_kind_the_cluster_does_not_serve_is_missing_with_that_message() -> None:
    message = "Rollout web: the cluster does not serve rollouts.argoproj.io/v1alpha1; is Argo Rollouts installed?"
    decision = pause(WorkloadSnapshot(WorkloadState(WEB, exists=False, not_served=message), resource_version=None))
    assert (decision.state, decision.reason, decision.message) == (TargetState.MISSING, "KindNotServed", message)


def test_a_lost_original_partition_is_refused_and_keeps_the_hold() -> None:
    held = statefulset(replicas=3, strategy=rolling(3), annotations={PAUSED_BY: "db-availability"})
    decision = release(holder="db-availability", workload=read(held).state)
    assert decision.state is TargetState.REFUSED
    assert decision.reason == "PauseUndoUnknown"
    assert decision.change is None, "the hold label and annotations stay as evidence"
    assert ORIGINAL_PARTITION in decision.message
    assert PARTITION_FIELD in decision.message


def test_once_a_human_sets_the_partition_a_hold_without_its_record_is_released_leaving_it() -> None:
    fixed = statefulset(replicas=3, strategy=rolling(2), annotations={PAUSED_BY: "db-availability"})
    snapshot = read(fixed)
    patch = patch_for(snapshot, release(holder="db-availability", workload=snapshot.state), fixed)
    assert "spec" not in patch, "the human's partition stands"
    assert patch["metadata"]["annotations"][PAUSED_BY] is None
    assert patch["metadata"]["labels"] == {HELD_LABEL: None}


def test_a_held_statefulset_switched_to_on_delete_is_refused_not_repaused_and_released_on_recovery() -> None:
    held = {PAUSED_BY: "db-availability", ORIGINAL_PARTITION: "1"}
    body = statefulset(strategy={"type": "OnDelete"}, annotations=held)
    snapshot = read(body)
    decision = pause(snapshot)
    # A partition next to OnDelete is invalid: the API server would refuse that write on every pass.
    assert (decision.state, decision.reason, decision.change) == (TargetState.REFUSED, "PauseUnsupported", None)
    assert "rollouts are not held" in decision.message

    released = release(holder="db-availability", workload=snapshot.state)
    patch = patch_for(snapshot, released, body)
    assert "spec" not in patch, "nothing to restore: OnDelete holds no partition"
    assert patch["metadata"]["annotations"][PAUSED_BY] is None
    assert patch["metadata"]["annotations"][ORIGINAL_PARTITION] is None
