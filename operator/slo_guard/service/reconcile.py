"""One reconcile pass of one SLO: evaluate, enforce the policy on each target, report through status and Events.

Every decision is derived from the cluster (the target's annotations and spec, the SLO's last status) plus a fresh
evaluation, so a pass can be repeated or interrupted at any point and the next one converges.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from slo_guard.adapters.kubernetes import KubernetesUnavailable, ObjectRef, WorkloadConflict
from slo_guard.domain.evaluation_types import Evaluation, State
from slo_guard.domain.model import API_VERSION, KIND, Objective, PolicyAction, PolicyMode, Target
from slo_guard.domain.policy import ReassertBackoff, TargetDecision, TargetState, decide, release
from slo_guard.resources import SpecError, objective_from_resource
from slo_guard.service.evaluation import EvaluationSettings, evaluate_objective
from slo_guard.service.ports import (
    EventSink,
    MetricsSource,
    StatusStore,
    WorkloadController,
)
from slo_guard.service.status import (
    ActionRecord,
    TargetReport,
    build_status,
    invalid_spec_status,
    merge_patch,
    status_changed,
)

logger = logging.getLogger("slo_guard.reconcile")

_NOTABLE_STATES = {
    TargetState.PAUSED_BY_OTHER,
    TargetState.OVERRIDDEN,
    TargetState.MISSING,
    TargetState.REFUSED,
    TargetState.CONTESTED,
}


@dataclass(frozen=True, slots=True)
class ReconcilerSettings:
    min_step: int
    """Seconds; scaled burn-rate windows never go below twice this."""
    evaluation: EvaluationSettings
    heartbeat: float = 300.0
    """Seconds between status writes when nothing but evaluatedAt changed."""
    conflict_retries: int = 3
    """Re-reads after a 409/422 before giving up for this pass."""
    reassert_backoff_max: float = 600.0
    """Seconds; the longest wait before slo-guard undoes another revert of its action on one target."""


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one pass concluded; the caller feeds metrics and logs from it."""

    evaluation: Evaluation | None
    """None when the spec was invalid and nothing was evaluated."""
    actions: Sequence[ActionRecord]


class Reconciler:
    def __init__(
        self,
        *,
        metrics: MetricsSource,
        workloads: WorkloadController,
        events: EventSink,
        statuses: StatusStore,
        settings: ReconcilerSettings,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._metrics = metrics
        self._workloads = workloads
        self._events = events
        self._statuses = statuses
        self._settings = settings
        self._clock = clock

    async def reconcile(self, resource: Mapping[str, Any]) -> Outcome:
        ref, previous, generation = _identity(resource)
        now = self._clock()
        try:
            objective = objective_from_resource(resource, min_step=self._settings.min_step)
        except SpecError as err:
            return await self._reject(ref, previous=previous, generation=generation, error=err, now=now)

        evaluation = await evaluate_objective(objective, self._metrics, at=now, settings=self._settings.evaluation)
        return await self.enforce(resource, objective=objective, evaluation=evaluation, now=now)

    async def enforce(
        self, resource: Mapping[str, Any], *, objective: Objective, evaluation: Evaluation, now: datetime
    ) -> Outcome:
        """The second half of a pass: act on the targets for `evaluation`, then post Events and write the status."""
        ref, previous, generation = _identity(resource)
        actions: list[ActionRecord] = []
        if previous.get("observedGeneration") != generation:
            actions += await self._release_stale_holds(objective, now=now)
        reports: list[TargetReport] = []
        for target in objective.targets:
            report, records = await self._reconcile_target(objective, evaluation, target, previous=previous, now=now)
            reports.append(report)
            actions += records
        status = build_status(
            previous=previous,
            generation=generation,
            evaluation=evaluation,
            targets=reports,
            actions=actions,
            now=now,
        )
        await self._announce_transition(ref, previous=previous, evaluation=evaluation)
        await self._write(ref, previous=previous, status=status, now=now)
        return Outcome(evaluation, actions)

    async def finalize(self, resource: Mapping[str, Any]) -> list[ActionRecord]:
        """Undo everything this SLO holds, on any workload in its namespace, before it is deleted."""
        metadata = resource.get("metadata") or {}
        namespace = str(metadata.get("namespace") or "default")
        holder = str(metadata.get("name"))
        now = self._clock()
        records = []
        for snapshot in await self._workloads.held(namespace=namespace):
            if holder in snapshot.state.paused_by | snapshot.state.scaled_by:
                records.append(
                    await self._release(namespace, holder, snapshot.state.target, now=now, reason="SLODeleted")
                )
        return records

    async def _reject(
        self,
        ref: ObjectRef,
        *,
        previous: Mapping[str, Any],
        generation: int | None,
        error: SpecError,
        now: datetime,
    ) -> Outcome:
        status = invalid_spec_status(previous=previous, generation=generation, message=str(error), now=now)
        is_new_problem = (
            previous.get("message") != status["message"] or previous.get("observedGeneration") != generation
        )
        if is_new_problem:
            logger.warning("invalid spec", extra={"slo": f"{ref.namespace}/{ref.name}", "field": error.field})
            await self._events.post(regarding=ref, type_="Warning", reason="InvalidSpec", message=str(error))
        await self._write(ref, previous=previous, status=status, now=now)
        return Outcome(None, ())

    async def _reconcile_target(
        self,
        objective: Objective,
        evaluation: Evaluation,
        target: Target,
        *,
        previous: Mapping[str, Any],
        now: datetime,
    ) -> tuple[TargetReport, list[ActionRecord]]:
        previous_state = _previous_target_state(previous, target)
        backoff = ReassertBackoff(base=objective.evaluation_interval, cap=self._settings.reassert_backoff_max)
        for _attempt in range(self._settings.conflict_retries):
            try:
                snapshot = await self._workloads.read(
                    namespace=objective.namespace,
                    target=target,
                    check_autoscaler=objective.policy.action is PolicyAction.SCALE,
                )
            except KubernetesUnavailable as err:
                return _report(
                    target,
                    "Unknown",
                    "KubernetesApiError",
                    f"Could not read {target.kind} {target.name}: {err}",
                ), []
            decision = decide(
                holder=objective.name,
                policy=objective.policy,
                evaluation=evaluation,
                workload=snapshot.state,
                now=now,
                backoff=backoff,
            )
            if decision.change is None:
                if decision.state in _NOTABLE_STATES and previous_state != decision.state.value:
                    await self._post_both(objective, target, decision, type_="Warning")
                return _report_decision(decision), []
            if objective.policy.mode is PolicyMode.DRY_RUN:
                return await self._dry_run(objective, target, decision, previous_state=previous_state, now=now)
            try:
                await self._workloads.apply(namespace=objective.namespace, snapshot=snapshot, change=decision.change)
            except WorkloadConflict:
                continue
            except KubernetesUnavailable as err:
                record = _record(now, target, decision, result="Failed")
                message = f"Could not {decision.change.action.value.lower()} {target.kind} {target.name}: {err}"
                await self._events.post(
                    regarding=_slo_ref(objective), type_="Warning", reason="ActionFailed", message=message
                )
                return _report(target, "Unknown", "ActionFailed", message), [record]
            # A re-assertion answers someone who undid the action: worth a Warning.
            contested = decision.contest is not None
            await self._post_both(objective, target, decision, type_="Warning" if contested else "Normal")
            logger.log(
                logging.WARNING if contested else logging.INFO,
                decision.message,
                extra={
                    "slo": objective.key,
                    "target": f"{target.kind}/{target.name}",
                    "reason": decision.reason,
                },
            )
            return _report_decision(decision), [_record(now, target, decision, result="Applied")]
        message = f"{target.kind} {target.name} kept changing under slo-guard; will retry next evaluation"
        return _report(target, "Unknown", "Conflict", message), []

    async def _dry_run(
        self,
        objective: Objective,
        target: Target,
        decision: TargetDecision,
        *,
        previous_state: str | None,
        now: datetime,
    ) -> tuple[TargetReport, list[ActionRecord]]:
        assert decision.change is not None
        state = f"Would{decision.change.action.value}"
        message = (
            f"DryRun: would {decision.change.action.value.lower()} {target.kind} {target.name} ({decision.reason})"
        )
        if previous_state == state:
            return _report(target, state, "DryRun", message), []
        await self._events.post(regarding=_slo_ref(objective), type_="Normal", reason="DryRun", message=message)
        return _report(target, state, "DryRun", message), [_record(now, target, decision, result="DryRun")]

    async def _release_stale_holds(self, objective: Objective, *, now: datetime) -> list[ActionRecord]:
        """After a spec change, let go of targets the SLO no longer names or holds for another action."""
        records = []
        wanted = set(objective.targets)
        for snapshot in await self._workloads.held(namespace=objective.namespace):
            state = snapshot.state
            holds_pause = objective.name in state.paused_by
            holds_scale = objective.name in state.scaled_by
            still_right = (
                state.target in wanted
                and objective.policy.mode is PolicyMode.ENFORCE
                and not (holds_pause and objective.policy.action is not PolicyAction.PAUSE)
                and not (holds_scale and objective.policy.action is not PolicyAction.SCALE)
            )
            if (holds_pause or holds_scale) and not still_right:
                records.append(
                    await self._release(
                        objective.namespace, objective.name, state.target, now=now, reason="SpecChanged"
                    )
                )
        return records

    async def _release(
        self, namespace: str, holder: str, target: Target, *, now: datetime, reason: str
    ) -> ActionRecord:
        for _attempt in range(self._settings.conflict_retries):
            snapshot = await self._workloads.read(namespace=namespace, target=target, check_autoscaler=False)
            decision = release(holder=holder, workload=snapshot.state)
            if decision.change is None:
                return _record_plain(now, target, action="Release", result="Applied", reason=reason)
            try:
                await self._workloads.apply(namespace=namespace, snapshot=snapshot, change=decision.change)
            except WorkloadConflict:
                continue
            regarding = ObjectRef("apps/v1", target.kind, namespace, target.name)
            await self._events.post(regarding=regarding, type_="Normal", reason=reason, message=decision.message)
            logger.info(
                decision.message,
                extra={
                    "slo": f"{namespace}/{holder}",
                    "target": f"{target.kind}/{target.name}",
                    "reason": reason,
                },
            )
            return _record(now, target, decision, result="Applied", reason=reason)
        raise KubernetesUnavailable(f"{target.kind} {target.name} kept changing; release will be retried")

    async def _post_both(self, objective: Objective, target: Target, decision: TargetDecision, *, type_: str) -> None:
        await self._events.post(
            regarding=_slo_ref(objective), type_=type_, reason=decision.reason, message=decision.message
        )
        target_ref = ObjectRef("apps/v1", target.kind, objective.namespace, target.name)
        message = f"{decision.message} (ServiceLevelObjective {objective.name})"
        await self._events.post(regarding=target_ref, type_=type_, reason=decision.reason, message=message)

    async def _announce_transition(
        self, ref: ObjectRef, *, previous: Mapping[str, Any], evaluation: Evaluation
    ) -> None:
        before = previous.get("state")
        after = evaluation.state.value
        if before == after and (after != State.UNKNOWN.value or previous.get("reason") == _reason(evaluation)):
            return
        type_ = "Warning" if evaluation.state in {State.EXHAUSTED, State.UNKNOWN} else "Normal"
        transition = f"{before or 'New'} -> {after}"
        await self._events.post(
            regarding=ref, type_=type_, reason=f"State{after}", message=f"{transition}: {evaluation.message}"
        )

    async def _write(
        self, ref: ObjectRef, *, previous: Mapping[str, Any], status: Mapping[str, Any], now: datetime
    ) -> None:
        if status_changed(previous, status, heartbeat_due=_heartbeat_due(previous, now, self._settings.heartbeat)):
            patch = merge_patch(previous, status)
            await self._statuses.patch_status(namespace=ref.namespace, name=ref.name, status=patch)


def _identity(resource: Mapping[str, Any]) -> tuple[ObjectRef, Mapping[str, Any], int | None]:
    """The SLO's reference for Events and status writes, its last status, and its generation."""
    metadata = resource.get("metadata") or {}
    namespace = str(metadata.get("namespace") or "default")
    ref = ObjectRef(API_VERSION, KIND, namespace, str(metadata.get("name")), metadata.get("uid"))
    return ref, resource.get("status") or {}, metadata.get("generation")


def _reason(evaluation: Evaluation) -> str | None:
    return evaluation.reason.value if evaluation.reason else None


def _heartbeat_due(previous: Mapping[str, Any], now: datetime, heartbeat: float) -> bool:
    stamp = previous.get("evaluatedAt")
    if not isinstance(stamp, str):
        return True
    try:
        written = datetime.fromisoformat(stamp)
    except ValueError:
        return True
    return (now - written).total_seconds() >= heartbeat


def _previous_target_state(previous: Mapping[str, Any], target: Target) -> str | None:
    for item in previous.get("targets") or []:
        if item.get("kind") == target.kind and item.get("name") == target.name:
            return str(item.get("state"))
    return None


def _slo_ref(objective: Objective) -> ObjectRef:
    return ObjectRef(API_VERSION, KIND, objective.namespace, objective.name)


def _report(target: Target, state: str, reason: str, message: str) -> TargetReport:
    return TargetReport(kind=target.kind, name=target.name, state=state, reason=reason, message=message)


def _report_decision(decision: TargetDecision) -> TargetReport:
    target = decision.target
    return TargetReport(
        kind=target.kind,
        name=target.name,
        state=decision.state.value,
        reason=decision.reason,
        message=decision.message,
        contest=decision.contest,
    )


def _record(
    now: datetime, target: Target, decision: TargetDecision, *, result: str, reason: str | None = None
) -> ActionRecord:
    action = decision.change.action.value if decision.change else "None"
    return _record_plain(now, target, action=action, result=result, reason=reason or decision.reason)


def _record_plain(now: datetime, target: Target, *, action: str, result: str, reason: str) -> ActionRecord:
    return ActionRecord(time=now, kind=target.kind, name=target.name, action=action, result=result, reason=reason)
