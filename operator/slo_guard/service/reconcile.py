"""One reconcile pass of one SLO: evaluate, enforce the policy on each target, report through status and Events.

Every decision is derived from the cluster (the target's annotations and spec, the SLO's last status) plus a fresh
evaluation, so a pass can be repeated or interrupted at any point and the next one converges.
"""

from __future__ import annotations

import asyncio
import copy
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, TypeVar

from slo_guard.domain.evaluation_types import Evaluation, State
from slo_guard.domain.model import API_VERSION, KIND, Objective, PolicyAction, PolicyMode, Target
from slo_guard.domain.policy import (
    ActionKind,
    ReassertBackoff,
    TargetDecision,
    TargetState,
    WorkloadState,
    decide,
    release,
)
from slo_guard.resources import SpecError, objective_from_resource
from slo_guard.service.evaluation import EvaluationSettings, evaluate_objective
from slo_guard.service.ports import (
    WRITE_PERMISSION,
    EventSink,
    KubernetesUnavailable,
    MetricsSource,
    ObjectRef,
    OwnershipLost,
    StatusStore,
    WorkloadConflict,
    WorkloadController,
)
from slo_guard.service.status import (
    ActionRecord,
    TargetReport,
    build_status,
    diff_as_merge_patch,
    invalid_spec_status,
    status_changed,
)

logger = logging.getLogger("slo_guard.reconcile")
T = TypeVar("T")

WOULD_DENY = f"Would{ActionKind.DENY.value}"
_DENY_HOLDS = frozenset({TargetState.DENYING.value, WOULD_DENY})
"""`status.targets[].state` of a target a Deny policy holds: its only record, as nothing is written to the target."""
NO_ADMISSION = "this operator serves no admission webhook (--webhook-cert-file is not set), so nothing is denied"

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
    admission_served: bool = True
    """Whether this operator serves the admission webhook that carries out Deny policies."""


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one pass concluded; the caller feeds metrics, logs and the gates from it."""

    evaluation: Evaluation | None
    """None when the spec was invalid or the SLO is being deleted, and nothing was evaluated."""
    actions: Sequence[ActionRecord]
    objective: Objective | None = None
    targets: Sequence[TargetReport] = ()
    invalid: str | None = None
    """Why the spec is invalid; None when it is valid."""


@dataclass(frozen=True, slots=True)
class SLOSnapshot:
    """The SLO as one pass sees it, read once at its start.

    kopf swaps the body it hands out in place on every watch event, so anything read from it after an `await`
    may belong to a later spec than the one evaluated; a later spec is the next pass's business.
    """

    ref: ObjectRef
    resource: Mapping[str, Any]
    """A private deep copy of the body."""
    generation: int | None
    previous: Mapping[str, Any]
    """The status the last pass wrote."""
    deleting: bool

    @classmethod
    def of(cls, body: Mapping[str, Any]) -> SLOSnapshot:
        resource = copy.deepcopy(dict(body))
        metadata = resource.get("metadata") or {}
        return cls(
            ref=slo_ref(resource),
            resource=resource,
            generation=metadata.get("generation"),
            previous=resource.get("status") or {},
            deleting=metadata.get("deletionTimestamp") is not None,
        )


class _WriteFailed(Exception):
    def __init__(self, decision: TargetDecision, error: KubernetesUnavailable) -> None:
        super().__init__(str(error))
        self.decision = decision


class _KeptChanging(Exception):
    """Every conditional write met a newer resourceVersion."""


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
        owns: Callable[[str], bool] = lambda key: True,
    ) -> None:
        """`owns(key)` says whether this replica may still write for the SLO `namespace/name`: asked right before
        every target and status write, so a pass whose shard moved mid-way writes nothing more."""
        self._metrics = metrics
        self._owns = owns
        self._workloads = workloads
        self._events = events
        self._statuses = statuses
        self._settings = settings
        self._clock = clock
        self._serials: dict[str, asyncio.Lock] = {}
        """One lock per SLO: its passes and its finalizer never overlap."""

    async def reconcile(self, resource: Mapping[str, Any]) -> Outcome:
        snapshot = SLOSnapshot.of(resource)
        return await self._serialised(snapshot.ref.key, lambda: self._pass(snapshot))

    async def enforce(
        self, snapshot: SLOSnapshot, *, objective: Objective, evaluation: Evaluation, now: datetime
    ) -> Outcome:
        """The second half of a pass: act on the targets for `evaluation`, then post Events and write the status."""
        previous = snapshot.previous
        actions: list[ActionRecord] = []
        if previous.get("observedGeneration") != snapshot.generation:
            actions += await self._release_stale_holds(objective, now=now)
        reports: list[TargetReport] = []
        for target in objective.targets:
            report, records = await self._reconcile_target(objective, evaluation, target, previous=previous, now=now)
            reports.append(report)
            actions += records
        status = build_status(
            previous=previous,
            generation=snapshot.generation,
            evaluation=evaluation,
            targets=reports,
            actions=actions,
            now=now,
        )
        await self._announce_transition(snapshot.ref, previous=previous, evaluation=evaluation)
        await self._write(snapshot.ref, previous=previous, status=status, now=now)
        return Outcome(evaluation, actions, objective, reports)

    async def finalize(self, resource: Mapping[str, Any]) -> list[ActionRecord]:
        """Undo everything this SLO holds, on any workload in its namespace, before it is deleted.

        Waits for a pass in flight to finish first, so a target write it already sent is listed and undone.
        """
        snapshot = SLOSnapshot.of(resource)
        records = await self._serialised(snapshot.ref.key, lambda: self._release_all(snapshot))
        self._serials.pop(snapshot.ref.key, None)
        return records

    async def _serialised(self, key: str, work: Callable[[], Awaitable[T]]) -> T:
        lock = self._serials.setdefault(key, asyncio.Lock())

        async def locked() -> T:
            # Every write of this pass or finalizer, down to the adapter, is allowed only while this replica
            # owns the SLO (see WRITE_PERMISSION); the task runs in a context of its own.
            WRITE_PERMISSION.set(lambda: None if self._owns(key) else key)
            async with lock:
                return await work()

        # kopf cancels an SLO's daemon when the SLO is deleted, while the delete handler already runs. The pass
        # goes on to its end (every call in it is bounded by a timeout) and keeps the lock until then.
        task = asyncio.ensure_future(locked())
        task.add_done_callback(_retrieve)
        return await asyncio.shield(task)

    async def _pass(self, snapshot: SLOSnapshot) -> Outcome:
        if snapshot.deleting:
            # The finalizer owns a deleted SLO's targets; a pass now could re-take a hold it just released.
            return Outcome(None, ())
        now = self._clock()
        try:
            objective = objective_from_resource(snapshot.resource, min_step=self._settings.min_step)
        except SpecError as err:
            return await self._reject(
                snapshot.ref, previous=snapshot.previous, generation=snapshot.generation, error=err, now=now
            )
        evaluation = await evaluate_objective(objective, self._metrics, at=now, settings=self._settings.evaluation)
        return await self.enforce(snapshot, objective=objective, evaluation=evaluation, now=now)

    async def _release_all(self, snapshot: SLOSnapshot) -> list[ActionRecord]:
        namespace, holder = snapshot.ref.namespace, snapshot.ref.name
        now = self._clock()
        records = []
        for held in await self._workloads.held(namespace=namespace):
            if holder in held.state.paused_by | held.state.scaled_by:
                record = await self._release(namespace, holder, held.state.target, now=now, reason="SLODeleted")
                if record is not None:
                    records.append(record)
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
            logger.warning("invalid spec", extra={"slo": ref.key, "field": error.field})
            await self._events.post(regarding=ref, type_="Warning", reason="InvalidSpec", message=str(error))
        await self._write(ref, previous=previous, status=status, now=now)
        return Outcome(None, (), invalid=str(error))

    async def _reconcile_target(
        self,
        objective: Objective,
        evaluation: Evaluation,
        target: Target,
        *,
        previous: Mapping[str, Any],
        now: datetime,
    ) -> tuple[TargetReport, list[ActionRecord]]:
        previous_row = _previous_target_row(previous, target)
        previous_state = previous_row.get("state")
        backoff = ReassertBackoff(base=objective.evaluation_interval, cap=self._settings.reassert_backoff_max)

        denying = previous_state in _DENY_HOLDS

        def choose(workload: WorkloadState) -> TargetDecision:
            return decide(
                holder=objective.name,
                policy=objective.policy,
                evaluation=evaluation,
                workload=workload,
                now=now,
                backoff=backoff,
                denying=denying,
            )

        dry_run = objective.policy.mode is PolicyMode.DRY_RUN
        try:
            workload, decision, _ = await self._converge(
                objective.namespace,
                target,
                holder_key=objective.key,
                choose=choose,
                check_autoscaler=objective.policy.action is PolicyAction.SCALE,
                write=not dry_run,
            )
        except KubernetesUnavailable as err:
            message = f"Could not read {target.kind} {target.name}: {err}"
            return _report(target, "Unknown", "KubernetesApiError", message), []
        except _WriteFailed as failed:
            record = _record(now, target, failed.decision, result="Failed")
            message = f"Could not {record.action.lower()} {target.kind} {target.name}: {failed}"
            await self._events.post(
                regarding=_slo_ref(objective), type_="Warning", reason="ActionFailed", message=message
            )
            return _report(target, "Unknown", "ActionFailed", message), [record]
        except _KeptChanging:
            message = f"{target.kind} {target.name} kept changing under slo-guard; will retry next evaluation"
            return _report(target, "Unknown", "Conflict", message), []
        if workload.override_problem and workload.override_problem not in str(previous_row.get("message", "")):
            problem = f"{target.kind} {target.name}: ignored {workload.override_problem}"
            await self._post_on_slo_and_target(
                objective, target, reason="InvalidOverride", message=problem, type_="Warning"
            )
        if decision.state is TargetState.DENYING or decision.admission is not None:
            return await self._deny(
                objective, target, decision, dry_run=dry_run, previous_state=previous_state, now=now
            )
        if decision.change is None:
            if decision.state in _NOTABLE_STATES and previous_state != decision.state.value:
                await self._post_on_slo_and_target(
                    objective, target, reason=decision.reason, message=decision.message, type_="Warning"
                )
            return _report_decision(decision), []
        if dry_run:
            return await self._dry_run(objective, target, decision, previous_state=previous_state, now=now)
        # A re-assertion answers someone who undid the action: worth a Warning.
        contested = decision.contest is not None
        await self._post_on_slo_and_target(
            objective,
            target,
            reason=decision.reason,
            message=decision.message,
            type_="Warning" if contested else "Normal",
        )
        logger.log(
            logging.WARNING if contested else logging.INFO,
            decision.message,
            extra={"slo": objective.key, "target": f"{target.kind}/{target.name}", "reason": decision.reason},
        )
        return _report_decision(decision), [_record(now, target, decision, result="Applied")]

    async def _converge(
        self,
        namespace: str,
        target: Target,
        *,
        holder_key: str,
        choose: Callable[[WorkloadState], TargetDecision],
        check_autoscaler: bool,
        write: bool,
    ) -> tuple[WorkloadState, TargetDecision, bool]:
        """Read the target, decide, and write the change conditionally on the resourceVersion read.

        A conflict means someone wrote in between: read and decide again, a bounded number of times. Returns the
        state read, the decision and whether it was written. A failed read raises KubernetesUnavailable, a failed
        write _WriteFailed, and conflicts on every attempt _KeptChanging.
        """
        for _attempt in range(self._settings.conflict_retries):
            snapshot = await self._workloads.read(namespace=namespace, target=target, check_autoscaler=check_autoscaler)
            decision = choose(snapshot.state)
            if decision.change is None or not write:
                return snapshot.state, decision, False
            if not self._owns(holder_key):
                raise OwnershipLost(holder_key)
            try:
                await self._workloads.apply(namespace=namespace, snapshot=snapshot, change=decision.change)
            except WorkloadConflict:
                continue
            except KubernetesUnavailable as error:
                raise _WriteFailed(decision, error) from error
            return snapshot.state, decision, True
        raise _KeptChanging

    async def _deny(
        self,
        objective: Objective,
        target: Target,
        decision: TargetDecision,
        *,
        dry_run: bool,
        previous_state: str | None,
        now: datetime,
    ) -> tuple[TargetReport, list[ActionRecord]]:
        """A Deny policy holding or letting go of a target: no write, only the status, an Event and a record."""
        report = _report_decision(decision)
        if dry_run and decision.state is TargetState.DENYING:
            report = replace(report, state=WOULD_DENY)
        if not self._settings.admission_served and decision.state is TargetState.DENYING:
            report = replace(report, message=f"{report.message}; {NO_ADMISSION}")
        if decision.admission is None:
            return report, []
        if dry_run:
            message = f"DryRun: {decision.message[0].lower()}{decision.message[1:]}"
            await self._events.post(regarding=_slo_ref(objective), type_="Normal", reason="DryRun", message=message)
            return report, [_record(now, target, replace(decision, message=message), result="DryRun")]
        await self._post_on_slo_and_target(
            objective, target, reason=decision.reason, message=decision.message, type_="Normal"
        )
        logger.info(decision.message, extra={"slo": objective.key, "target": f"{target.kind}/{target.name}"})
        return report, [_record(now, target, decision, result="Applied")]

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
                record = await self._release(
                    objective.namespace, objective.name, state.target, now=now, reason="SpecChanged"
                )
                if record is not None:
                    records.append(record)
        return records

    async def _release(
        self, namespace: str, holder: str, target: Target, *, now: datetime, reason: str
    ) -> ActionRecord | None:
        """Let go of `holder`'s hold on one target; None when it held nothing there any more."""
        try:
            _, decision, written = await self._converge(
                namespace,
                target,
                holder_key=f"{namespace}/{holder}",
                choose=lambda workload: release(holder=holder, workload=workload),
                check_autoscaler=False,
                write=True,
            )
        except (_WriteFailed, _KeptChanging) as error:
            raise KubernetesUnavailable(f"could not release {target.kind} {target.name}: {error}") from error
        regarding = _target_ref(namespace, target)
        if decision.state is TargetState.REFUSED:
            await self._events.post(
                regarding=regarding, type_="Warning", reason=decision.reason, message=decision.message
            )
            return _record(now, target, decision, result="Refused")
        if not written:
            return None
        await self._events.post(regarding=regarding, type_="Normal", reason=reason, message=decision.message)
        logger.info(
            decision.message,
            extra={"slo": f"{namespace}/{holder}", "target": f"{target.kind}/{target.name}", "reason": reason},
        )
        return _record(now, target, decision, result="Applied", reason=reason)

    async def _post_on_slo_and_target(
        self, objective: Objective, target: Target, *, reason: str, message: str, type_: str
    ) -> None:
        await self._events.post(regarding=_slo_ref(objective), type_=type_, reason=reason, message=message)
        target_message = f"{message} (ServiceLevelObjective {objective.name})"
        await self._events.post(
            regarding=_target_ref(objective.namespace, target), type_=type_, reason=reason, message=target_message
        )

    async def _announce_transition(
        self, ref: ObjectRef, *, previous: Mapping[str, Any], evaluation: Evaluation
    ) -> None:
        before = previous.get("state")
        after = evaluation.state.value
        if before == after and (after != State.UNKNOWN.value or previous.get("reason") == _reason(evaluation)):
            return
        if before is None and evaluation.state is State.HEALTHY:
            # Nothing to notice, and the status says it: at scale these Events would be half of a cold start's writes.
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
            if not self._owns(ref.key):
                raise OwnershipLost(ref.key)
            patch = diff_as_merge_patch(previous, status)
            await self._statuses.patch_status(namespace=ref.namespace, name=ref.name, status=patch)


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


def _previous_target_row(previous: Mapping[str, Any], target: Target) -> Mapping[str, Any]:
    for item in previous.get("targets") or []:
        if item.get("kind") == target.kind and item.get("name") == target.name:
            return dict(item)
    return {}


def slo_ref(body: Mapping[str, Any]) -> ObjectRef:
    """The SLO a body describes, for Events, status writes and per-SLO bookkeeping."""
    metadata = body.get("metadata") or {}
    namespace = str(metadata.get("namespace") or "default")
    return ObjectRef(API_VERSION, KIND, namespace, str(metadata.get("name")), metadata.get("uid"))


def _slo_ref(objective: Objective) -> ObjectRef:
    return ObjectRef(API_VERSION, KIND, objective.namespace, objective.name)


def _target_ref(namespace: str, target: Target) -> ObjectRef:
    return ObjectRef(target.api_version, target.kind, namespace, target.name)


def _retrieve(task: asyncio.Future[Any]) -> None:
    """Mark a pass's outcome as seen: its caller may have been cancelled while it ran on."""
    if not task.cancelled():
        task.exception()


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
    action = decision.change.action if decision.change else decision.refused or decision.admission
    if action is None:
        raise ValueError(f"{decision.reason}: a decision that neither acts nor refuses has no action to record")
    return ActionRecord(
        time=now,
        kind=target.kind,
        name=target.name,
        action=action.value,
        result=result,
        reason=reason or decision.reason,
        message=decision.message,
    )
