"""The error-budget policy as a pure function of the evaluation and the target's current state.

Nothing here remembers anything: who holds a target is read from its annotations every time, so a restart at any
point converges to the same decision.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from slo_guard.domain.evaluation_types import Evaluation, State
from slo_guard.domain.model import Policy, PolicyAction, PolicyTrigger, Target

PAUSED_BY = "sloguard.io/paused-by"
PAUSED_AT = "sloguard.io/paused-at"
SCALED_BY = "sloguard.io/scaled-by"
ORIGINAL_REPLICAS = "sloguard.io/original-replicas"
OVERRIDE_UNTIL = "sloguard.io/override-until"
HELD_LABEL = "sloguard.io/held"
"""Label on every workload slo-guard holds, so holds can be found with a label selector."""


class ActionKind(enum.StrEnum):
    PAUSE = "Pause"
    RESUME = "Resume"
    SCALE = "Scale"
    RESTORE = "Restore"


class TargetState(enum.StrEnum):
    """What slo-guard is doing to one target, as shown in `status.targets[].state`."""

    UNTOUCHED = "Untouched"
    PAUSED = "Paused"
    SCALED = "Scaled"
    PAUSED_BY_OTHER = "PausedByOther"
    OVERRIDDEN = "Overridden"
    MISSING = "Missing"
    REFUSED = "Refused"


@dataclass(frozen=True, slots=True)
class WorkloadState:
    """A target as the cluster shows it right now."""

    target: Target
    exists: bool
    paused: bool = False
    replicas: int | None = None
    paused_by: frozenset[str] = frozenset()
    scaled_by: frozenset[str] = frozenset()
    original_replicas: int | None = None
    override_until: datetime | None = None
    autoscaler: str | None = None
    """Name of a HorizontalPodAutoscaler that targets this workload."""


@dataclass(frozen=True, slots=True)
class Change:
    """The writes that carry out one action; None values in the mappings mean "remove"."""

    action: ActionKind
    paused: bool | None = None
    replicas: int | None = None
    annotations: Mapping[str, str | None] = field(default_factory=dict)
    labels: Mapping[str, str | None] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class TargetDecision:
    target: Target
    state: TargetState
    reason: str
    """CamelCase, for conditions and Events."""
    message: str
    change: Change | None = None


def decide(
    *, holder: str, policy: Policy, evaluation: Evaluation, workload: WorkloadState, now: datetime
) -> TargetDecision:
    """What `holder` (an SLO name) should do to one target now."""
    target = workload.target
    if not workload.exists:
        return TargetDecision(target, TargetState.MISSING, "TargetMissing", f"{_describe(target)} not found")
    held = _holds(holder, policy.action, workload)
    if evaluation.state is State.UNKNOWN:
        return TargetDecision(
            target,
            _held_state(policy.action) if held else TargetState.UNTOUCHED,
            "HoldingOnMissingData",
            f"No usable data ({evaluation.reason}); holding {_describe(target)} as it is",
        )
    if workload.override_until is not None and now < workload.override_until:
        message = f"Override until {workload.override_until.isoformat()} lets rollouts through"
        change = release(holder=holder, workload=workload).change if held else None
        return TargetDecision(target, TargetState.OVERRIDDEN, "OverrideActive", message, change)
    if held:
        if _may_undo(policy, evaluation):
            return release(holder=holder, workload=workload)
        return _keep_holding(policy, workload)
    if not _triggered(policy, evaluation):
        return TargetDecision(target, TargetState.UNTOUCHED, "WithinBudget", "No action needed")
    if policy.action is PolicyAction.PAUSE:
        return _pause(holder=holder, workload=workload, now=now)
    return _scale(holder=holder, policy=policy, workload=workload)


def release(*, holder: str, workload: WorkloadState) -> TargetDecision:
    """Let go of every hold `holder` has on the target; undo the action once no other SLO holds it."""
    target = workload.target
    annotations: dict[str, str | None] = {}
    paused: bool | None = None
    replicas: int | None = None
    action: ActionKind | None = None
    if holder in workload.paused_by:
        remaining = workload.paused_by - {holder}
        action = ActionKind.RESUME
        if remaining:
            annotations[PAUSED_BY] = _join(remaining)
        else:
            annotations |= {PAUSED_BY: None, PAUSED_AT: None}
            paused = False
    if holder in workload.scaled_by:
        remaining = workload.scaled_by - {holder}
        action = action or ActionKind.RESTORE
        if remaining:
            annotations[SCALED_BY] = _join(remaining)
        else:
            annotations |= {SCALED_BY: None, ORIGINAL_REPLICAS: None}
            replicas = workload.original_replicas
    if action is None:
        return TargetDecision(target, TargetState.UNTOUCHED, "NotHeld", f"{_describe(target)} is not held")
    still_held = (workload.paused_by | workload.scaled_by) - {holder}
    change = Change(
        action=action,
        paused=paused,
        replicas=replicas,
        annotations=annotations,
        labels={} if still_held else {HELD_LABEL: None},
    )
    undone = paused is False or replicas is not None
    message = (
        f"Budget recovered; {action.value.lower()}d {_describe(target)}"
        if undone
        else f"Released {_describe(target)}; other SLOs still hold it"
    )
    return TargetDecision(target, TargetState.UNTOUCHED, f"{action.value}d", message, change)


def _pause(*, holder: str, workload: WorkloadState, now: datetime) -> TargetDecision:
    target = workload.target
    if workload.paused and not workload.paused_by:
        return TargetDecision(
            target,
            TargetState.PAUSED_BY_OTHER,
            "PausedByOther",
            f"{_describe(target)} was paused by someone else; slo-guard leaves that pause alone",
        )
    annotations: dict[str, str | None] = {PAUSED_BY: _join(workload.paused_by | {holder})}
    if not workload.paused_by:
        annotations[PAUSED_AT] = now.isoformat().replace("+00:00", "Z")
    change = Change(ActionKind.PAUSE, paused=True, annotations=annotations, labels={HELD_LABEL: "true"})
    return TargetDecision(
        target, TargetState.PAUSED, "Paused", f"Error budget policy: paused {_describe(target)}", change
    )


def _scale(*, holder: str, policy: Policy, workload: WorkloadState) -> TargetDecision:
    target = workload.target
    if workload.autoscaler is not None:
        return TargetDecision(
            target,
            TargetState.REFUSED,
            "AutoscalerPresent",
            f"HorizontalPodAutoscaler {workload.autoscaler} manages replicas of {_describe(target)}; not scaling",
        )
    annotations: dict[str, str | None] = {SCALED_BY: _join(workload.scaled_by | {holder})}
    replicas: int | None = None
    if not workload.scaled_by:
        # The first holder records the count to restore; later holders must not overwrite it.
        annotations[ORIGINAL_REPLICAS] = str(workload.replicas if workload.replicas is not None else 1)
        replicas = policy.scale_to
    change = Change(ActionKind.SCALE, replicas=replicas, annotations=annotations, labels={HELD_LABEL: "true"})
    return TargetDecision(
        target,
        TargetState.SCALED,
        "Scaled",
        f"Error budget policy: scaled {_describe(target)} to {policy.scale_to}",
        change,
    )


def _keep_holding(policy: Policy, workload: WorkloadState) -> TargetDecision:
    target = workload.target
    if policy.action is PolicyAction.PAUSE:
        if not workload.paused:
            change = Change(ActionKind.PAUSE, paused=True)
            message = f"{_describe(target)} was resumed while the budget is still spent; pausing it again"
            return TargetDecision(target, TargetState.PAUSED, "PauseReasserted", message, change)
        return TargetDecision(target, TargetState.PAUSED, "Paused", f"Holding {_describe(target)} paused")
    is_first_holder = len(workload.scaled_by) == 1
    if is_first_holder and workload.autoscaler is None and workload.replicas != policy.scale_to:
        change = Change(ActionKind.SCALE, replicas=policy.scale_to)
        message = f"{_describe(target)} replicas changed while the budget is still spent; scaling to {policy.scale_to}"
        return TargetDecision(target, TargetState.SCALED, "ScaleReasserted", message, change)
    return TargetDecision(target, TargetState.SCALED, "Scaled", f"Holding {_describe(target)} scaled")


def _holds(holder: str, action: PolicyAction, workload: WorkloadState) -> bool:
    holders = workload.paused_by if action is PolicyAction.PAUSE else workload.scaled_by
    return holder in holders


def _triggered(policy: Policy, evaluation: Evaluation) -> bool:
    if evaluation.state is State.EXHAUSTED:
        return True
    return policy.trigger is PolicyTrigger.FAST_BURN and evaluation.page_firing


def _may_undo(policy: Policy, evaluation: Evaluation) -> bool:
    """Hysteresis: undo only with more than `resumeAbove` of the budget left and no page tier firing."""
    remaining = evaluation.budget_remaining
    return remaining is not None and remaining > policy.resume_above and not evaluation.page_firing


def _held_state(action: PolicyAction) -> TargetState:
    return TargetState.PAUSED if action is PolicyAction.PAUSE else TargetState.SCALED


def parse_holders(value: str | None) -> frozenset[str]:
    return frozenset(name for name in (value or "").split(",") if name)


def _join(holders: frozenset[str]) -> str:
    return ",".join(sorted(holders))


def _describe(target: Target) -> str:
    return f"{target.kind} {target.name}"
