"""The gate decision: closed exactly when the policy would hold its targets now; Unknown is open and says why."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from slo_guard.domain.evaluation_types import AlertStatus, Evaluation, State, UnknownReason
from slo_guard.domain.gate import GateVerdict, gate, unknown_open
from slo_guard.domain.model import Policy, PolicyMode, PolicyTrigger, Severity

NOW = datetime(2026, 11, 1, tzinfo=UTC)
ENFORCE = Policy(mode=PolicyMode.ENFORCE, resume_above=0.05)
DRY_RUN = Policy(mode=PolicyMode.DRY_RUN, resume_above=0.05)
FAST_BURN = Policy(trigger=PolicyTrigger.FAST_BURN, resume_above=0.05)
PAGE = AlertStatus(Severity.PAGE, 3600, 300, 14.4, firing=True)
TICKET = AlertStatus(Severity.TICKET, 86400, 7200, 3.0, firing=True)
OPENS = (
    "opens with more than 5% of the budget left and no page tier firing"
    " (sloguard.io/override-until on a target exempts that target, not this gate)"
)


def evaluation(state: State, remaining: float | None, *alerts: AlertStatus) -> Evaluation:
    return Evaluation(state, None, "test", NOW, budget_remaining=remaining, alerts=alerts)


@pytest.mark.parametrize("policy", [ENFORCE, DRY_RUN], ids=["Enforce", "DryRun"])
@pytest.mark.parametrize(
    ("case", "holding", "expected"),
    [
        (
            evaluation(State.EXHAUSTED, -0.506),
            True,
            GateVerdict(False, "BudgetExhausted", f"error budget exhausted, -50.6% left; {OPENS}"),
        ),
        (
            evaluation(State.EXHAUSTED, 0.0),
            False,
            GateVerdict(False, "BudgetExhausted", f"error budget exhausted, 0.0% left; {OPENS}"),
        ),
        (
            evaluation(State.HEALTHY, 0.03),
            True,
            GateVerdict(False, "HeldUntilRecovered", f"still held while the budget recovers, +3.0% left; {OPENS}"),
        ),
        (
            evaluation(State.BURNING, 0.4, PAGE),
            True,
            GateVerdict(
                False,
                "HeldUntilRecovered",
                f"still held while the budget recovers, +40.0% left, a page tier firing; {OPENS}",
            ),
        ),
        (evaluation(State.HEALTHY, 0.2), True, GateVerdict(True, "Recovered", "budget recovered, +20.0% left")),
        (evaluation(State.HEALTHY, 0.512), False, GateVerdict(True, "WithinBudget", "healthy, +51.2% left")),
        (evaluation(State.HEALTHY, 0.03), False, GateVerdict(True, "WithinBudget", "healthy, +3.0% left")),
        (evaluation(State.BURNING, 0.4, PAGE), False, GateVerdict(True, "WithinBudget", "burning, +40.0% left")),
    ],
    ids=[
        "exhausted-holding",
        "exhausted-at-zero-not-holding-yet",
        "holding-inside-the-band",
        "holding-with-a-page-tier-firing",
        "holding-recovered",
        "healthy",
        "inside-the-band-but-never-held",
        "burning-under-trigger-exhausted",
    ],
)
def test_the_gate_is_closed_exactly_while_the_policy_holds(
    policy: Policy, case: Evaluation, holding: bool, expected: GateVerdict
) -> None:
    assert gate(policy, case, holding=holding) == expected


@pytest.mark.parametrize("holding", [False, True])
def test_fast_burn_closes_the_gate_as_soon_as_a_page_tier_fires(holding: bool) -> None:
    verdict = gate(FAST_BURN, evaluation(State.BURNING, 0.4, PAGE), holding=holding)
    assert verdict == GateVerdict(False, "FastBurn", f"a page tier is firing (trigger FastBurn), +40.0% left; {OPENS}")


def test_fast_burn_with_the_budget_gone_says_exhausted() -> None:
    verdict = gate(FAST_BURN, evaluation(State.EXHAUSTED, -0.1, PAGE), holding=True)
    assert verdict.reason == "BudgetExhausted"
    assert not verdict.open


def test_a_ticket_tier_firing_neither_triggers_fast_burn_nor_holds_back_recovery() -> None:
    assert gate(FAST_BURN, evaluation(State.BURNING, 0.4, TICKET), holding=False).open
    assert gate(FAST_BURN, evaluation(State.BURNING, 0.4, TICKET), holding=True) == GateVerdict(
        True, "Recovered", "budget recovered, +40.0% left"
    )


@pytest.mark.parametrize(
    ("remaining", "open_"),
    [(0.0001, False), (0.0499, False), (0.05, False), (0.0501, True), (0.06, True)],
)
def test_hysteresis_releases_only_above_resume_above(remaining: float, open_: bool) -> None:
    assert gate(ENFORCE, evaluation(State.HEALTHY, remaining), holding=True).open is open_


def test_resume_above_is_named_in_percent_of_the_budget() -> None:
    verdict = gate(Policy(resume_above=0.25), evaluation(State.EXHAUSTED, -0.5), holding=True)
    assert "opens with more than 25% of the budget left" in verdict.message


def test_holding_without_a_known_budget_stays_closed() -> None:
    verdict = gate(ENFORCE, evaluation(State.HEALTHY, None), holding=True)
    assert verdict == GateVerdict(
        False, "HeldUntilRecovered", f"still held while the budget recovers, n/a left; {OPENS}"
    )


@pytest.mark.parametrize("policy", [ENFORCE, DRY_RUN, FAST_BURN], ids=["Enforce", "DryRun", "FastBurn"])
@pytest.mark.parametrize("holding", [False, True])
def test_unknown_is_open_and_says_why(policy: Policy, holding: bool) -> None:
    unknown = Evaluation(State.UNKNOWN, UnknownReason.NO_DATA, "no samples for http_requests_total", NOW)
    assert gate(policy, unknown, holding=holding) == GateVerdict(
        True, "UnknownOpen", "no usable data (NoData: no samples for http_requests_total); missing data never blocks"
    )


def test_unknown_without_a_reason_keeps_its_message() -> None:
    unknown = Evaluation(State.UNKNOWN, None, "not evaluated yet", NOW)
    assert gate(ENFORCE, unknown, holding=False) == unknown_open("not evaluated yet")
    assert unknown_open("not evaluated yet") == GateVerdict(
        True, "UnknownOpen", "no usable data (not evaluated yet); missing data never blocks"
    )
