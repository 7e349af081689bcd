"""The status slo-guard writes about reverted actions: the Contested condition and how it relates to ActionApplied."""

from __future__ import annotations

from datetime import UTC, datetime

from slo_guard.domain.evaluation_types import Evaluation, State
from slo_guard.domain.policy import Contest
from slo_guard.service.status import TargetReport, build_status, contest_condition, invalid_spec_status

NOW = datetime(2026, 11, 1, tzinfo=UTC)
SPENT = Evaluation(State.EXHAUSTED, None, "The error budget is spent", NOW, sli=0.5, budget_remaining=-4.0)


def report(name: str, state: str, reason: str, contest: Contest | None = None) -> TargetReport:
    return TargetReport(
        kind="Deployment", name=name, state=state, reason=reason, message=f"{name}: {reason}", contest=contest
    )


def conditions(targets: list[TargetReport]) -> dict[str, dict[str, str]]:
    status = build_status(previous={}, generation=1, evaluation=SPENT, targets=targets, actions=[], now=NOW)
    return {item["type"]: item for item in status["conditions"]}


def test_without_reverts_the_contested_condition_is_false() -> None:
    contested = conditions([report("web", "Paused", "Paused")])["Contested"]
    assert (contested["status"], contested["reason"]) == ("False", "NotReverted")


def test_a_standing_revert_is_contested_backing_off_and_not_applied() -> None:
    until = datetime(2026, 11, 1, 0, 2, tzinfo=UTC)
    standing = Contest("spec.paused", "argocd-controller", 2, backing_off_until=until)

    found = conditions([report("web", "Contested", "PauseReverted", standing)])

    assert (found["Contested"]["status"], found["Contested"]["reason"]) == ("True", "BackingOff")
    assert found["Contested"]["message"] == (
        "Deployment web: spec.paused reverted by argocd-controller; re-applied 2 times during this hold; "
        "backing off until 2026-11-01T00:02:00Z"
    )
    assert (found["ActionApplied"]["status"], found["ActionApplied"]["reason"]) == ("False", "PauseReverted")


def test_reasserted_targets_are_listed_and_untouched_ones_are_not() -> None:
    condition = contest_condition(
        [
            report("web", "Paused", "PauseReasserted", Contest("spec.paused", None, 1)),
            report("api", "Paused", "Paused"),
            report("db", "Scaled", "Scaled", Contest("spec.replicas", "kubectl-scale", 3)),
        ]
    )
    assert (condition.status, condition.reason) == ("True", "Reasserted")
    assert condition.message == (
        "Deployment web: spec.paused reverted by an unknown client; re-applied 1 time during this hold; "
        "Deployment db: spec.replicas reverted by kubectl-scale; re-applied 3 times during this hold"
    )


def test_an_invalid_spec_leaves_the_contest_unknown() -> None:
    status = invalid_spec_status(previous={}, generation=2, message="spec.window: invalid", now=NOW)
    contested = next(item for item in status["conditions"] if item["type"] == "Contested")
    assert (contested["status"], contested["reason"]) == ("Unknown", "InvalidSpec")
