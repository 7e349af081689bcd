"""Build an SLO's `.status` from an evaluation and the target decisions, and tell whether it changed."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from slo_guard.domain.evaluation_types import Evaluation, State, UnknownReason
from slo_guard.domain.policy import Contest, TargetState
from slo_guard.domain.timestamps import rfc3339
from slo_guard.resources import status_from_evaluation

STATUS_DIGITS = 3
"""Three significant digits keep status from changing every cycle on noise."""
MAX_ACTIONS = 20
ACTION_MESSAGE_LIMIT = 512
"""Keeps twenty history entries well inside an object's size limit."""
VOLATILE_FIELDS = ("evaluatedAt", "burnRates", "timeToExhaustion")
"""Fields that move with every cycle (the short windows' burn rates follow every scrape's jitter): alone they are
refreshed with the heartbeat, not written at each pass, which at 5,000 SLOs was 700 status writes per cycle. A
firing alert, a new state or budget still write at once, and /metrics has the burn rates live."""


@dataclass(frozen=True, slots=True)
class TargetReport:
    """One row of `status.targets`."""

    kind: str
    name: str
    state: str
    reason: str
    message: str
    contest: Contest | None = None
    """Set when someone reverted slo-guard's action on this target during the current hold."""


@dataclass(frozen=True, slots=True)
class ActionRecord:
    """One entry of the bounded `status.actions` history."""

    time: datetime
    kind: str
    name: str
    action: str
    result: str
    """Applied, DryRun, Refused or Failed."""
    reason: str
    message: str = ""
    """What happened, as the Event said it (an override names itself and its expiry)."""

    def as_status(self) -> dict[str, str]:
        return {
            "time": rfc3339(self.time),
            "kind": self.kind,
            "name": self.name,
            "action": self.action,
            "result": self.result,
            "reason": self.reason,
            "message": self.message[:ACTION_MESSAGE_LIMIT],
        }


@dataclass(frozen=True, slots=True)
class Condition:
    type: str
    status: str
    reason: str
    message: str


def build_status(
    *,
    previous: Mapping[str, Any],
    generation: int | None,
    evaluation: Evaluation,
    targets: Sequence[TargetReport],
    actions: Sequence[ActionRecord],
    now: datetime,
) -> dict[str, Any]:
    status = status_from_evaluation(evaluation, digits=STATUS_DIGITS)
    status["observedGeneration"] = generation
    status["targets"] = [
        {
            "kind": report.kind,
            "name": report.name,
            "state": report.state,
            "reason": report.reason,
            "message": report.message,
            "since": _since(previous, report, now),
        }
        for report in targets
    ]
    status["actions"] = _history(previous, actions)
    status["conditions"] = merge_conditions(
        previous.get("conditions") or [],
        _conditions(evaluation, targets),
        generation=generation,
        now=now,
    )
    return status


def invalid_spec_status(
    *, previous: Mapping[str, Any], generation: int | None, message: str, now: datetime
) -> dict[str, Any]:
    """Status for a spec that failed validation: Ready=False naming the field; nothing is evaluated."""
    conditions = [
        Condition("Ready", "False", "InvalidSpec", message),
        Condition("DataAvailable", "Unknown", "InvalidSpec", "Not evaluated: the spec is invalid"),
        Condition("BudgetExhausted", "Unknown", "InvalidSpec", "Not evaluated: the spec is invalid"),
        Condition("ActionApplied", "False", "InvalidSpec", "No action on an invalid spec"),
        Condition("Contested", "Unknown", "InvalidSpec", "Not evaluated: the spec is invalid"),
    ]
    return {
        "state": State.UNKNOWN.value,
        "reason": "InvalidSpec",
        "message": message,
        "evaluatedAt": rfc3339(now),
        "observedGeneration": generation,
        "targets": previous.get("targets") or [],
        "actions": list(previous.get("actions") or []),
        "conditions": merge_conditions(previous.get("conditions") or [], conditions, generation=generation, now=now),
    }


def _conditions(evaluation: Evaluation, targets: Sequence[TargetReport]) -> list[Condition]:
    state = evaluation.state
    if state is State.UNKNOWN:
        data = Condition(
            "DataAvailable",
            "False",
            evaluation.reason.value if evaluation.reason else "NoData",
            evaluation.message,
        )
        exhausted = Condition("BudgetExhausted", "Unknown", "NoUsableData", "Budget unknown without data")
    else:
        data = Condition("DataAvailable", "True", "Evaluated", "Prometheus returned usable data")
        is_exhausted = state is State.EXHAUSTED
        exhausted = Condition(
            "BudgetExhausted",
            "True" if is_exhausted else "False",
            "BudgetSpent" if is_exhausted else "BudgetLeft",
            evaluation.message,
        )
    return [
        _ready_condition(evaluation),
        data,
        exhausted,
        _action_condition(targets),
        contest_condition(targets),
    ]


def _ready_condition(evaluation: Evaluation) -> Condition:
    # Prometheus refuses to run one of the SLO's queries: unlike an outage, it will not pass by itself.
    if evaluation.reason is UnknownReason.QUERY_REJECTED:
        return Condition("Ready", "False", UnknownReason.QUERY_REJECTED.value, evaluation.message)
    return Condition("Ready", "True", "Evaluated", "The spec is valid and is being evaluated")


_HELD_STATES = {TargetState.PAUSED.value, TargetState.SCALED.value}
_ATTENTION_STATES = {
    TargetState.REFUSED.value,
    TargetState.MISSING.value,
    TargetState.PAUSED_BY_OTHER.value,
    TargetState.OVERRIDDEN.value,
    TargetState.CONTESTED.value,
}


def _action_condition(targets: Sequence[TargetReport]) -> Condition:
    held = [report for report in targets if report.state in _HELD_STATES]
    if held:
        return Condition("ActionApplied", "True", held[0].reason, "; ".join(report.message for report in held))
    notable = [report for report in targets if report.state in _ATTENTION_STATES or report.state.startswith("Would")]
    if notable:
        return Condition("ActionApplied", "False", notable[0].reason, "; ".join(report.message for report in notable))
    return Condition("ActionApplied", "False", "NoActionNeeded", "slo-guard holds no target")


def contest_condition(targets: Sequence[TargetReport]) -> Condition:
    """`Contested`: someone reverted an action slo-guard holds; the reason tells whether the revert still stands."""
    contested = [report for report in targets if report.contest is not None]
    if not contested:
        return Condition("Contested", "False", "NotReverted", "Nobody reverted an action slo-guard holds")
    standing = any(report.state == TargetState.CONTESTED.value for report in contested)
    message = "; ".join(
        f"{report.kind} {report.name}: {report.contest.summary()}" for report in contested if report.contest
    )
    return Condition("Contested", "True", "BackingOff" if standing else "Reasserted", message)


def merge_conditions(
    previous: Sequence[Mapping[str, Any]],
    current: Sequence[Condition],
    *,
    generation: int | None,
    now: datetime,
) -> list[dict[str, Any]]:
    """Kubernetes condition semantics: lastTransitionTime moves only when the status value changes."""
    before = {item.get("type"): item for item in previous}
    merged = []
    for condition in current:
        old = before.get(condition.type)
        changed = old is None or old.get("status") != condition.status
        merged.append(
            {
                "type": condition.type,
                "status": condition.status,
                "reason": condition.reason,
                "message": condition.message,
                "lastTransitionTime": rfc3339(now) if changed or old is None else old.get("lastTransitionTime"),
                "observedGeneration": generation,
            }
        )
    return merged


def _since(previous: Mapping[str, Any], report: TargetReport, now: datetime) -> str:
    for old in previous.get("targets") or []:
        if old.get("kind") == report.kind and old.get("name") == report.name and old.get("state") == report.state:
            return str(old.get("since") or rfc3339(now))
    return rfc3339(now)


def _history(previous: Mapping[str, Any], actions: Sequence[ActionRecord]) -> list[dict[str, str]]:
    history = [dict(item) for item in previous.get("actions") or []]
    history.extend(record.as_status() for record in actions)
    return history[-MAX_ACTIONS:]


def status_changed(previous: Mapping[str, Any], current: Mapping[str, Any], *, heartbeat_due: bool) -> bool:
    """Compare as the API server stores it (merge patch drops nulls), ignoring fields that move every cycle."""
    if heartbeat_due:
        return True
    return bool(_stable(previous) != _stable(current))


def _stable(status: Mapping[str, Any]) -> Any:
    return _without_nulls({key: value for key, value in status.items() if key not in VOLATILE_FIELDS})


def _without_nulls(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {key: _without_nulls(item) for key, item in value.items() if item is not None}
    return value


def diff_as_merge_patch(previous: Mapping[str, Any], current: Mapping[str, Any]) -> dict[str, Any]:
    """An RFC 7386 merge patch turning `previous` into `current`: keys that disappeared are set to null."""
    patch: dict[str, Any] = {key: None for key in previous if key not in current}
    for key, value in current.items():
        old = previous.get(key)
        if isinstance(value, Mapping) and isinstance(old, Mapping):
            patch[key] = diff_as_merge_patch(old, value)
        else:
            patch[key] = value
    return patch
