"""Admission for Deny policies: only a change to the pod template of a held workload is refused, and the refusal
says which SLO, how much budget is left and how to ship a fix anyway."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from slo_guard.domain.admission import AdmissionDecision, AdmissionVerdict, Freeze, admit
from slo_guard.domain.evaluation_types import Evaluation, State
from slo_guard.domain.gate import gate, unknown_open
from slo_guard.domain.model import Policy, PolicyAction, PolicyMode

NOW = datetime(2026, 11, 1, 12, tzinfo=UTC)
WORKLOAD = "Deployment shop/checkout"
DENY = Policy(action=PolicyAction.DENY)
SPENT = gate(DENY, Evaluation(State.EXHAUSTED, None, "spent", NOW, budget_remaining=-0.25), holding=True)
HEALTHY = gate(DENY, Evaluation(State.HEALTHY, None, "ok", NOW, budget_remaining=0.6), holding=False)
CLOSED = Freeze("shop/checkout-availability", PolicyMode.ENFORCE, SPENT, unknown=False)
OPEN = Freeze("shop/checkout-latency", PolicyMode.ENFORCE, HEALTHY, unknown=False)
WOULD = Freeze("shop/checkout-dryrun", PolicyMode.DRY_RUN, SPENT, unknown=False)
UNKNOWN = Freeze("shop/checkout-nodata", PolicyMode.ENFORCE, unknown_open("NoData: no series"), unknown=True)


def review(*freezes: Freeze, changed: bool = True, **annotations: str) -> AdmissionVerdict:
    return admit(workload=WORKLOAD, template_changed=changed, annotations=annotations, now=NOW, freezes=freezes)


def test_a_template_change_of_a_frozen_workload_is_denied_naming_the_slo_the_budget_and_the_override() -> None:
    verdict = review(CLOSED, OPEN)
    assert (verdict.allowed, verdict.decision, verdict.frozen_by) == (
        False,
        AdmissionDecision.DENIED,
        ("shop/checkout-availability",),
    )
    assert verdict.message.startswith(
        "slo-guard: rollouts of Deployment shop/checkout are frozen by the error-budget policy of "
        "ServiceLevelObjective shop/checkout-availability: error budget exhausted, -25.0% left;"
    )
    assert "set the annotation sloguard.io/override-until to an RFC 3339 time in the future" in verdict.message
    assert "checkout-latency" not in verdict.message


def test_scaling_labels_and_annotations_pass_a_freeze() -> None:
    assert review(CLOSED, changed=False).decision is AdmissionDecision.ALLOWED


def test_no_freeze_in_force_allows_without_warnings() -> None:
    assert review(OPEN) == AdmissionVerdict(AdmissionDecision.ALLOWED, "no freeze in force")
    assert review().decision is AdmissionDecision.ALLOWED


def test_an_override_in_the_same_change_lets_a_hotfix_through_with_a_warning() -> None:
    verdict = review(
        CLOSED, **{"sloguard.io/override-until": "2026-11-01T14:00:00Z", "sloguard.io/override-reason": "INC-7"}
    )
    assert (verdict.allowed, verdict.decision, verdict.frozen_by) == (
        True,
        AdmissionDecision.OVERRIDDEN,
        ("shop/checkout-availability",),
    )
    assert verdict.warnings == (
        "slo-guard: override until 2026-11-01T14:00:00Z (INC-7) lets this rollout of Deployment shop/checkout "
        "past ServiceLevelObjective shop/checkout-availability",
    )


@pytest.mark.parametrize(
    ("until", "why"),
    [
        ("2026-11-01T11:00:00Z", "sloguard.io/override-until='2026-11-01T11:00:00Z' has passed"),
        ("tomorrow", "sloguard.io/override-until='tomorrow' is not an RFC 3339 time with an offset"),
    ],
)
def test_an_expired_or_unreadable_override_is_denied_saying_why(until: str, why: str) -> None:
    verdict = review(CLOSED, **{"sloguard.io/override-until": until})
    assert verdict.decision is AdmissionDecision.DENIED
    assert why in verdict.message


def test_dry_run_and_unknown_slos_allow_with_a_warning_each() -> None:
    verdict = review(WOULD, UNKNOWN)
    assert (verdict.allowed, verdict.decision, verdict.frozen_by) == (True, AdmissionDecision.WARNED, ())
    assert verdict.warnings == (
        "slo-guard: ServiceLevelObjective shop/checkout-nodata has no usable data, so this rollout is not held; "
        "no usable data (NoData: no series); missing data never blocks",
        f"slo-guard DryRun: ServiceLevelObjective shop/checkout-dryrun would deny this rollout: {SPENT.message}",
    )


def test_a_freeze_in_force_denies_even_next_to_a_dry_run_one() -> None:
    verdict = review(WOULD, CLOSED)
    assert verdict.decision is AdmissionDecision.DENIED
    assert len(verdict.warnings) == 1
