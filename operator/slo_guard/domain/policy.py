"""The error-budget policy as a pure function of the evaluation and the target's current state.

Nothing here remembers anything: who holds a target, and how often its action was reverted, is read from its
annotations every time, so a restart at any point converges to the same decision.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from slo_guard.domain.evaluation_types import Evaluation, State
from slo_guard.domain.model import Policy, PolicyAction, PolicyTrigger, Target
from slo_guard.domain.timestamps import rfc3339

PAUSED_BY = "sloguard.io/paused-by"
PAUSED_AT = "sloguard.io/paused-at"
SCALED_BY = "sloguard.io/scaled-by"
ORIGINAL_REPLICAS = "sloguard.io/original-replicas"
SCALED_TO = "sloguard.io/scaled-to"
"""The replica count slo-guard set when the hold began; any other count means someone else changed it."""
OVERRIDE_UNTIL = "sloguard.io/override-until"
OVERRIDE_REASON = "sloguard.io/override-reason"
REASSERTIONS = "sloguard.io/reassertions"
"""How many times slo-guard re-applied its action after someone reverted it, during the current hold."""
REASSERTED_AT = "sloguard.io/reasserted-at"
"""When slo-guard last re-applied its action; with REASSERTIONS it spaces out the next re-assertion."""
REVERTED_BY = "sloguard.io/reverted-by"
"""The field manager whose revert slo-guard last undid; absent when the API server did not say."""
CONTEST_ANNOTATIONS = (REASSERTIONS, REASSERTED_AT, REVERTED_BY)
HELD_LABEL = "sloguard.io/held"
"""Label on every workload slo-guard holds, so holds can be found with a label selector."""
PAUSED_FIELD = "spec.paused"
REPLICAS_FIELD = "spec.replicas"
_MAX_DOUBLINGS = 32
"""Caps the exponent, so a garbled re-assertion count cannot overflow the back-off."""


class ActionKind(enum.StrEnum):
    PAUSE = "Pause"
    RESUME = "Resume"
    SCALE = "Scale"
    RESTORE = "Restore"
    DENY = "Deny"
    """Admission starts refusing changes to the target's pod template; nothing is written to the target."""
    ALLOW = "Allow"
    """Admission lets those changes through again."""


class TargetState(enum.StrEnum):
    """What slo-guard is doing to one target, as shown in `status.targets[].state`."""

    UNTOUCHED = "Untouched"
    PAUSED = "Paused"
    SCALED = "Scaled"
    PAUSED_BY_OTHER = "PausedByOther"
    CONTESTED = "Contested"
    """slo-guard holds the target, someone reverted its action, and slo-guard is backing off before re-applying it."""
    OVERRIDDEN = "Overridden"
    MISSING = "Missing"
    REFUSED = "Refused"
    DENYING = "Denying"
    """A Deny policy holds the target: admission refuses changes to its pod template."""


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
    scaled_to: int | None = None
    """The count slo-guard scaled the target to; None when the annotation is absent or garbled."""
    override_until: datetime | None = None
    override_reason: str | None = None
    override_problem: str | None = None
    """Why an `override-until` annotation present on the target could not be read; None when it could."""
    autoscaler: str | None = None
    """Name of a HorizontalPodAutoscaler that targets this workload."""
    paused_set_by: str | None = None
    """Field manager that last set `spec.paused`, other than slo-guard (from managedFields); None when unknown."""
    replicas_set_by: str | None = None
    """Field manager that last set `spec.replicas`, other than slo-guard (from managedFields); None when unknown."""
    reassertions: int = 0
    """Times slo-guard re-applied its action after a revert during the current hold."""
    reasserted_at: datetime | None = None
    """When slo-guard last re-applied its action after a revert."""
    reverted_by: str | None = None
    """Field manager whose revert slo-guard last undid."""
    pause_field: str = PAUSED_FIELD
    """The spec field a pause of this kind sets, as contests and re-assertions name it."""
    pause_unsupported: str | None = None
    pause_record_lost: str | None = None
    """The annotation that records what undoing this kind's pause restores, when it is gone; None otherwise."""
    """Why this workload cannot be paused (e.g. a StatefulSet updated OnDelete); None when it can."""
    not_served: str | None = None
    """Set with `exists=False` when the API server does not serve the target's kind at all: says so."""


@dataclass(frozen=True, slots=True)
class ReassertBackoff:
    """How soon slo-guard re-applies an action someone reverted: per target, doubling, capped.

    The first revert during a hold is undone at the next evaluation; after the n-th re-assertion the next one waits
    `base * 2**n` seconds, at most `cap`. A GitOps tool that reverts on every sync meets a re-assertion less and less
    often instead of a fight every interval, while a one-off revert by a human is undone at once.
    """

    base: float
    """Seconds; the SLO's evaluation interval."""
    cap: float
    """Seconds; the longest wait between two re-assertions."""

    def delay(self, reassertions: int) -> float:
        """Seconds to wait after the last re-assertion, given how many there were."""
        if reassertions <= 0:
            return 0.0
        return min(self.base * 2.0 ** min(reassertions, _MAX_DOUBLINGS), self.cap)

    def due(self, *, reassertions: int, last: datetime | None) -> datetime | None:
        """The earliest time of the next re-assertion; None when it may happen now."""
        if last is None or reassertions <= 0:
            return None
        return last + timedelta(seconds=self.delay(reassertions))


@dataclass(frozen=True, slots=True)
class Contest:
    """Someone reverted slo-guard's action on a target it holds, during the current hold."""

    path: str
    """The reverted field: the pause field (e.g. `spec.paused`) or `spec.replicas`."""
    reverted_by: str | None
    """Field manager of the revert (from managedFields); None when the API server did not say."""
    reassertions: int
    """Times slo-guard has re-applied its action during this hold."""
    backing_off_until: datetime | None = None
    """Set while the target stays reverted: the earliest time slo-guard re-applies its action."""

    def summary(self) -> str:
        """One clause for conditions and Events."""
        text = f"{self.path} reverted by {self.reverted_by or 'an unknown client'}"
        text += f"; re-applied {self.reassertions} time{'s' if self.reassertions != 1 else ''} during this hold"
        if self.backing_off_until is not None:
            text += f"; backing off until {rfc3339(self.backing_off_until)}"
        return text


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
    contest: Contest | None = None
    """Set when someone reverted slo-guard's action on this target during the current hold."""
    refused: ActionKind | None = None
    """The undo this decision refuses because its record is gone; None otherwise."""
    admission: ActionKind | None = None
    """Deny or Allow when a Deny policy starts or stops holding the target, which takes no write; None otherwise."""


def decide(
    *,
    holder: str,
    policy: Policy,
    evaluation: Evaluation,
    workload: WorkloadState,
    now: datetime,
    backoff: ReassertBackoff,
    denying: bool = False,
) -> TargetDecision:
    """What `holder` (an SLO name) should do to one target now.

    `denying`: the SLO's last status shows its Deny policy holding the target. A Deny hold writes nothing to the
    target, so the SLO's status is its only record.
    """
    target = workload.target
    if not workload.exists:
        if workload.not_served is not None:
            return TargetDecision(target, TargetState.MISSING, "KindNotServed", workload.not_served)
        return TargetDecision(target, TargetState.MISSING, "TargetMissing", f"{target} not found")
    if policy.action is PolicyAction.DENY:
        decision = _decide_deny(policy=policy, evaluation=evaluation, workload=workload, now=now, denying=denying)
    else:
        decision = _decide_present(
            holder=holder, policy=policy, evaluation=evaluation, workload=workload, now=now, backoff=backoff
        )
    if workload.override_problem is None:
        return decision
    return replace(decision, message=f"{decision.message}; ignored {workload.override_problem}")


def _decide_present(
    *,
    holder: str,
    policy: Policy,
    evaluation: Evaluation,
    workload: WorkloadState,
    now: datetime,
    backoff: ReassertBackoff,
) -> TargetDecision:
    target = workload.target
    # An override is a human's explicit instruction, so it wins even over missing data; it only ever releases.
    if workload.override_until is not None and now < workload.override_until:
        return _overridden(holder=holder, workload=workload, until=workload.override_until)
    held = _holds(holder, policy.action, workload)
    if evaluation.state is State.UNKNOWN:
        return TargetDecision(
            target,
            _held_state(policy.action) if held else TargetState.UNTOUCHED,
            "HoldingOnMissingData",
            f"No usable data ({evaluation.reason}); holding {target} as it is",
        )
    if held:
        if may_undo(policy, evaluation):
            return release(holder=holder, workload=workload)
        return _keep_holding(holder=holder, policy=policy, workload=workload, now=now, backoff=backoff)
    if not triggered(policy, evaluation):
        return TargetDecision(target, TargetState.UNTOUCHED, "WithinBudget", "No action needed")
    if policy.action is PolicyAction.PAUSE:
        return _pause(holder=holder, workload=workload, now=now)
    return _scale(holder=holder, policy=policy, workload=workload)


def _decide_deny(
    *, policy: Policy, evaluation: Evaluation, workload: WorkloadState, now: datetime, denying: bool
) -> TargetDecision:
    """A Deny policy: the same trigger and hysteresis as a pause, carried out by admission instead of a write."""
    target = workload.target
    if workload.override_until is not None and now < workload.override_until:
        override = f"Override until {rfc3339(workload.override_until)}"
        if workload.override_reason:
            override += f" ({workload.override_reason})"
        return TargetDecision(
            target, TargetState.OVERRIDDEN, "OverrideActive", f"{override} lets changes to {target} through admission"
        )
    if evaluation.state is State.UNKNOWN:
        return TargetDecision(
            target,
            TargetState.DENYING if denying else TargetState.UNTOUCHED,
            "HoldingOnMissingData",
            f"No usable data ({evaluation.reason}); admission lets changes to {target} through, with a warning",
        )
    if denying:
        if may_undo(policy, evaluation):
            message = f"Budget recovered; admission lets changes to {target} through again"
            return TargetDecision(target, TargetState.UNTOUCHED, "Allowed", message, admission=ActionKind.ALLOW)
        message = f"Holding {target}: admission denies changes to its pod template"
        return TargetDecision(target, TargetState.DENYING, "Denying", message)
    if not triggered(policy, evaluation):
        return TargetDecision(target, TargetState.UNTOUCHED, "WithinBudget", "No action needed")
    message = f"Error budget policy: admission denies changes to the pod template of {target}"
    return TargetDecision(target, TargetState.DENYING, "Denying", message, admission=ActionKind.DENY)


def _overridden(*, holder: str, workload: WorkloadState, until: datetime) -> TargetDecision:
    target = workload.target
    override = f"Override until {rfc3339(until)}"
    if workload.override_reason:
        override += f" ({workload.override_reason})"
    if holder not in workload.paused_by | workload.scaled_by:
        return TargetDecision(target, TargetState.OVERRIDDEN, "OverrideActive", f"{override} lets rollouts through")
    released = release(holder=holder, workload=workload)
    if released.change is None:
        return released
    message = f"{override}: {released.message[0].lower()}{released.message[1:]}"
    return TargetDecision(target, TargetState.OVERRIDDEN, "OverrideActive", message, released.change)


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
        elif workload.pause_record_lost is None:
            annotations |= {PAUSED_BY: None, PAUSED_AT: None}
            paused = False
        elif not workload.paused:
            # A human already chose the value to go back to: release the hold and leave it.
            annotations |= {PAUSED_BY: None, PAUSED_AT: None}
        else:
            return _pause_undo_unknown(workload, record=workload.pause_record_lost)
    if holder in workload.scaled_by:
        remaining = workload.scaled_by - {holder}
        action = action or ActionKind.RESTORE
        if remaining:
            annotations[SCALED_BY] = _join(remaining)
        elif workload.original_replicas is not None:
            annotations |= {SCALED_BY: None, ORIGINAL_REPLICAS: None, SCALED_TO: None}
            replicas = workload.original_replicas
        elif _replicas_set_by_someone_else(workload):
            # A human already chose the count to go back to: release the hold and leave the count alone.
            annotations |= {SCALED_BY: None, ORIGINAL_REPLICAS: None, SCALED_TO: None}
        else:
            return _original_replicas_unknown(workload)
    if action is None:
        return TargetDecision(target, TargetState.UNTOUCHED, "NotHeld", f"{target} is not held")
    still_held = (workload.paused_by | workload.scaled_by) - {holder}
    if not still_held:
        annotations |= dict.fromkeys(CONTEST_ANNOTATIONS)
    change = Change(
        action=action,
        paused=paused,
        replicas=replicas,
        annotations=annotations,
        labels={} if still_held else {HELD_LABEL: None},
    )
    undone = paused is False or replicas is not None
    message = (
        f"Budget recovered; {action.value.lower()}d {target}"
        if undone
        else f"Released {target}; other SLOs still hold it"
    )
    return TargetDecision(target, TargetState.UNTOUCHED, f"{action.value}d", message, change)


def _pause(*, holder: str, workload: WorkloadState, now: datetime) -> TargetDecision:
    target = workload.target
    if workload.pause_unsupported is not None:
        message = f"{target} cannot be paused: {workload.pause_unsupported}; not pausing"
        return TargetDecision(target, TargetState.REFUSED, "PauseUnsupported", message)
    if workload.paused and not workload.paused_by:
        return TargetDecision(
            target,
            TargetState.PAUSED_BY_OTHER,
            "PausedByOther",
            f"{target} was paused by someone else; slo-guard leaves that pause alone",
        )
    annotations: dict[str, str | None] = {PAUSED_BY: _join(workload.paused_by | {holder})}
    if not workload.paused_by:
        annotations[PAUSED_AT] = rfc3339(now)
    change = Change(ActionKind.PAUSE, paused=True, annotations=annotations, labels={HELD_LABEL: "true"})
    return TargetDecision(target, TargetState.PAUSED, "Paused", f"Error budget policy: paused {target}", change)


def _scale(*, holder: str, policy: Policy, workload: WorkloadState) -> TargetDecision:
    target = workload.target
    if workload.autoscaler is not None:
        return TargetDecision(
            target,
            TargetState.REFUSED,
            "AutoscalerPresent",
            f"HorizontalPodAutoscaler {workload.autoscaler} manages replicas of {target}; not scaling",
        )
    annotations: dict[str, str | None] = {SCALED_BY: _join(workload.scaled_by | {holder})}
    replicas: int | None = None
    if not workload.scaled_by:
        # The first holder records the count to restore and the count it set; later holders keep both.
        annotations[ORIGINAL_REPLICAS] = str(workload.replicas if workload.replicas is not None else 1)
        annotations[SCALED_TO] = str(policy.scale_to)
        replicas = policy.scale_to
    change = Change(ActionKind.SCALE, replicas=replicas, annotations=annotations, labels={HELD_LABEL: "true"})
    return TargetDecision(
        target,
        TargetState.SCALED,
        "Scaled",
        f"Error budget policy: scaled {target} to {policy.scale_to}",
        change,
    )


def _keep_holding(
    *, holder: str, policy: Policy, workload: WorkloadState, now: datetime, backoff: ReassertBackoff
) -> TargetDecision:
    target = workload.target
    if policy.action is PolicyAction.PAUSE:
        if workload.pause_unsupported is not None:
            # Someone made the held target unpausable (a StatefulSet switched to OnDelete): re-pausing would be
            # refused by the API server on every pass. Keep the hold recorded and say what to do.
            message = (
                f"{target} is held by slo-guard's pause but {workload.pause_unsupported}; rollouts are not held. "
                "slo-guard lets go of it once the budget recovers"
            )
            return TargetDecision(target, TargetState.REFUSED, "PauseUnsupported", message)
        if not workload.paused:
            change = Change(ActionKind.PAUSE, paused=True)
            return _reassert(change, path=workload.pause_field, workload=workload, now=now, backoff=backoff)
        message = f"Holding {target} paused"
        return TargetDecision(
            target, TargetState.PAUSED, "Paused", message, contest=_contest_of_this_hold(workload.pause_field, workload)
        )
    if workload.autoscaler is None:
        held_count = _held_count(holder=holder, policy=policy, workload=workload)
        if workload.replicas != held_count:
            change = Change(ActionKind.SCALE, replicas=held_count)
            return _reassert(change, path=REPLICAS_FIELD, workload=workload, now=now, backoff=backoff)
        if workload.scaled_by == {holder} and held_count != policy.scale_to:
            change = Change(ActionKind.SCALE, replicas=policy.scale_to, annotations={SCALED_TO: str(policy.scale_to)})
            message = f"scaleTo is now {policy.scale_to}: scaled {target} from {held_count}"
            return TargetDecision(target, TargetState.SCALED, "ScaleAdjusted", message, change)
    message = f"Holding {target} scaled"
    return TargetDecision(
        target, TargetState.SCALED, "Scaled", message, contest=_contest_of_this_hold(REPLICAS_FIELD, workload)
    )


def _held_count(*, holder: str, policy: Policy, workload: WorkloadState) -> int | None:
    """The count this hold keeps: the one recorded when it began, as long as the annotation survives."""
    if workload.scaled_to is not None:
        return workload.scaled_to
    # Without the record, only a sole holder knows the count it wants; with several, the current one stands.
    return policy.scale_to if workload.scaled_by == {holder} else workload.replicas


def _replicas_set_by_someone_else(workload: WorkloadState) -> bool:
    if workload.scaled_to is not None:
        return workload.replicas != workload.scaled_to
    return workload.replicas_set_by is not None


def _pause_undo_unknown(workload: WorkloadState, *, record: str) -> TargetDecision:
    target = workload.target
    message = (
        f"{target} is held by slo-guard's pause but its {record} annotation is gone, so the value to restore is "
        f"unknown; set {workload.pause_field} by hand and slo-guard releases its hold"
    )
    return TargetDecision(target, TargetState.REFUSED, "PauseUndoUnknown", message, refused=ActionKind.RESUME)


def _original_replicas_unknown(workload: WorkloadState) -> TargetDecision:
    target = workload.target
    message = (
        f"{target} is held at {workload.replicas} replicas but its {ORIGINAL_REPLICAS} annotation is gone, "
        "so the count to restore is unknown; set spec.replicas by hand "
        f"(kubectl scale {target.kind.lower()}/{target.name} --replicas=N) and slo-guard releases its hold"
    )
    return TargetDecision(target, TargetState.REFUSED, "OriginalReplicasUnknown", message, refused=ActionKind.RESTORE)


def _reassert(
    change: Change, *, path: str, workload: WorkloadState, now: datetime, backoff: ReassertBackoff
) -> TargetDecision:
    """Undo a revert of the action in `change`, unless the back-off says to wait."""
    target = workload.target
    who = workload.paused_set_by if change.action is ActionKind.PAUSE else workload.replicas_set_by
    verb = change.action.value
    again = "pauses it again" if change.action is ActionKind.PAUSE else f"scales it to {change.replicas} again"
    reverted = f"{target}: {path} was reverted by {who or 'an unknown client'} while the budget is spent"
    due = backoff.due(reassertions=workload.reassertions, last=workload.reasserted_at)
    if due is not None and now < due:
        contest = Contest(path, who, workload.reassertions, backing_off_until=due)
        message = f"{reverted}; slo-guard backs off and {again} at {rfc3339(due)} at the earliest"
        return TargetDecision(target, TargetState.CONTESTED, f"{verb}Reverted", message, contest=contest)
    count = workload.reassertions + 1
    annotations = {**change.annotations, REASSERTIONS: str(count), REASSERTED_AT: rfc3339(now), REVERTED_BY: who}
    wait = backoff.delay(count)
    message = f"{reverted}; slo-guard {again} (re-assertion {count}; after another revert it waits {wait:g}s)"
    state = TargetState.PAUSED if change.action is ActionKind.PAUSE else TargetState.SCALED
    change = replace(change, annotations=annotations)
    return TargetDecision(target, state, f"{verb}Reasserted", message, change, Contest(path, who, count))


def _contest_of_this_hold(path: str, workload: WorkloadState) -> Contest | None:
    """The contest of this hold, from the target's annotations, once the action is back in place."""
    if workload.reassertions <= 0:
        return None
    return Contest(path, workload.reverted_by, workload.reassertions)


def _holds(holder: str, action: PolicyAction, workload: WorkloadState) -> bool:
    holders = workload.paused_by if action is PolicyAction.PAUSE else workload.scaled_by
    return holder in holders


def triggered(policy: Policy, evaluation: Evaluation) -> bool:
    """The policy's trigger fired: the budget is spent, or with trigger FastBurn a page tier fires."""
    if evaluation.state is State.EXHAUSTED:
        return True
    return policy.trigger is PolicyTrigger.FAST_BURN and evaluation.page_firing


def may_undo(policy: Policy, evaluation: Evaluation) -> bool:
    """Hysteresis: undo only with more than `resumeAbove` of the budget left and no page tier firing."""
    remaining = evaluation.budget_remaining
    return remaining is not None and remaining > policy.resume_above and not evaluation.page_firing


def _held_state(action: PolicyAction) -> TargetState:
    return TargetState.PAUSED if action is PolicyAction.PAUSE else TargetState.SCALED


def parse_holders(value: str | None) -> frozenset[str]:
    return frozenset(name for name in (value or "").split(",") if name)


def _join(holders: frozenset[str]) -> str:
    return ",".join(sorted(holders))
