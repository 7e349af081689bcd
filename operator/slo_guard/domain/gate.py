"""Is an SLO's gate open? One decision behind every gate, made by the policy's own trigger and hysteresis.

The gate is closed exactly when the SLO's policy would hold its targets now: its trigger fired, or it holds them
and undo's hysteresis has not released them yet. An Unknown SLO is open: missing data never blocks.
"""

from __future__ import annotations

from dataclasses import dataclass

from slo_guard.domain.display import budget_percent
from slo_guard.domain.evaluation_types import Evaluation, State
from slo_guard.domain.model import Policy
from slo_guard.domain.policy import OVERRIDE_UNTIL, may_undo, triggered

UNKNOWN_OPEN = "UnknownOpen"
BUDGET_EXHAUSTED = "BudgetExhausted"
FAST_BURN = "FastBurn"
HELD_UNTIL_RECOVERED = "HeldUntilRecovered"
RECOVERED = "Recovered"
WITHIN_BUDGET = "WithinBudget"


@dataclass(frozen=True, slots=True)
class GateVerdict:
    """Whether rollouts gated on one SLO may go ahead now, and why."""

    open: bool
    reason: str
    """CamelCase, for API answers and conditions."""
    message: str
    """For people: why, and for a closed gate what opens it."""


def gate(policy: Policy, evaluation: Evaluation, *, holding: bool) -> GateVerdict:
    """The gate of an SLO with this policy and evaluation; `holding` when it holds (or in DryRun would hold) a target.

    DryRun policies gate exactly like Enforce ones: the mode decides whether slo-guard writes, not what it decides.
    """
    if evaluation.state is State.UNKNOWN:
        why = evaluation.message if evaluation.reason is None else f"{evaluation.reason.value}: {evaluation.message}"
        return unknown_open(why)
    left = f"{budget_percent(evaluation.budget_remaining)} left"
    if triggered(policy, evaluation):
        if evaluation.state is State.EXHAUSTED:
            return _closed(BUDGET_EXHAUSTED, f"error budget exhausted, {left}", policy)
        return _closed(FAST_BURN, f"a page tier is firing (trigger FastBurn), {left}", policy)
    if holding and not may_undo(policy, evaluation):
        firing = ", a page tier firing" if evaluation.page_firing else ""
        return _closed(HELD_UNTIL_RECOVERED, f"still held while the budget recovers, {left}{firing}", policy)
    if holding:
        return GateVerdict(open=True, reason=RECOVERED, message=f"budget recovered, {left}")
    return GateVerdict(open=True, reason=WITHIN_BUDGET, message=f"{evaluation.state.value.lower()}, {left}")


def unknown_open(why: str) -> GateVerdict:
    """The gate of an SLO without usable data (no data, not evaluated yet, an invalid spec): open, saying why."""
    return GateVerdict(open=True, reason=UNKNOWN_OPEN, message=f"no usable data ({why}); missing data never blocks")


def _closed(reason: str, what: str, policy: Policy) -> GateVerdict:
    # An override releases one target (and lets its changes through admission); the SLO's gate stays closed.
    opens = (
        f"opens with more than {policy.resume_above * 100:g}% of the budget left and no page tier firing"
        f" ({OVERRIDE_UNTIL} on a target exempts that target, not this gate)"
    )
    return GateVerdict(open=False, reason=reason, message=f"{what}; {opens}")
