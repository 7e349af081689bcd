"""The error-budget policy as a pure function: every case decided from the target's state plus the evaluation."""

from __future__ import annotations

import itertools
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from slo_guard.domain.evaluation_types import AlertStatus, Evaluation, State, UnknownReason
from slo_guard.domain.model import Policy, PolicyAction, PolicyMode, PolicyTrigger, Severity, Target
from slo_guard.domain.policy import (
    HELD_LABEL,
    ORIGINAL_REPLICAS,
    PAUSED_AT,
    PAUSED_BY,
    REASSERTED_AT,
    REASSERTIONS,
    REVERTED_BY,
    SCALED_BY,
    SCALED_TO,
    ActionKind,
    Change,
    ReassertBackoff,
    TargetDecision,
    TargetState,
    WorkloadState,
    decide,
    parse_holders,
    release,
)

NOW = datetime(2026, 11, 1, tzinfo=UTC)
TARGET = Target("Deployment", "checkout")
PAUSE = Policy(mode=PolicyMode.ENFORCE, action=PolicyAction.PAUSE, resume_above=0.05)
SCALE = Policy(mode=PolicyMode.ENFORCE, action=PolicyAction.SCALE, scale_to=2, resume_above=0.05)
PAGE_1H = AlertStatus(Severity.PAGE, 3600, 300, 14.4, firing=True)
BACKOFF = ReassertBackoff(base=30, cap=600)
NO_CONTEST = dict.fromkeys((REASSERTIONS, REASSERTED_AT, REVERTED_BY))
"""What a release writes besides the holder annotations: the contest of the hold is forgotten with it."""


def evaluation(remaining: float, *, page_firing: bool = False) -> Evaluation:
    if remaining <= 0:
        state = State.EXHAUSTED
    elif page_firing:
        state = State.BURNING
    else:
        state = State.HEALTHY
    alerts = (replace(PAGE_1H, firing=page_firing),)
    return Evaluation(state, None, "test", NOW, sli=0.99, budget_remaining=remaining, alerts=alerts)


UNKNOWN = Evaluation(State.UNKNOWN, UnknownReason.PROMETHEUS_UNAVAILABLE, "down", NOW)
FRESH = WorkloadState(TARGET, exists=True, paused=False, replicas=5)


def apply(workload: WorkloadState, change: Change | None) -> WorkloadState:
    """What the API server would store after the change."""
    if change is None:
        return workload
    annotations = {
        PAUSED_BY: ",".join(sorted(workload.paused_by)) or None,
        SCALED_BY: ",".join(sorted(workload.scaled_by)) or None,
        ORIGINAL_REPLICAS: None if workload.original_replicas is None else str(workload.original_replicas),
        SCALED_TO: None if workload.scaled_to is None else str(workload.scaled_to),
        REASSERTIONS: str(workload.reassertions) if workload.reassertions else None,
        REASSERTED_AT: workload.reasserted_at.isoformat() if workload.reasserted_at else None,
        REVERTED_BY: workload.reverted_by,
    }
    annotations.update(change.annotations)
    original = annotations.get(ORIGINAL_REPLICAS)
    scaled_to = annotations.get(SCALED_TO)
    reasserted_at = annotations.get(REASSERTED_AT)
    return replace(
        workload,
        paused=workload.paused if change.paused is None else change.paused,
        replicas=workload.replicas if change.replicas is None else change.replicas,
        paused_by=parse_holders(annotations.get(PAUSED_BY)),
        scaled_by=parse_holders(annotations.get(SCALED_BY)),
        original_replicas=None if original is None else int(original),
        scaled_to=None if scaled_to is None else int(scaled_to),
        reassertions=int(annotations.get(REASSERTIONS) or 0),
        reasserted_at=None if reasserted_at is None else datetime.fromisoformat(reasserted_at),
        reverted_by=annotations.get(REVERTED_BY),
    )


def test_exhausted_budget_pauses_and_records_ownership() -> None:
    decision = decide(
        holder="slo-a", policy=PAUSE, evaluation=evaluation(-0.2), workload=FRESH, now=NOW, backoff=BACKOFF
    )
    assert decision.state is TargetState.PAUSED
    assert decision.change is not None
    assert decision.change.action is ActionKind.PAUSE
    assert decision.change.paused is True
    assert decision.change.annotations[PAUSED_BY] == "slo-a"
    assert decision.change.annotations[PAUSED_AT] == "2026-11-01T00:00:00Z"
    assert decision.change.labels == {HELD_LABEL: "true"}


def test_healthy_budget_leaves_untouched_target_alone() -> None:
    decision = decide(
        holder="slo-a", policy=PAUSE, evaluation=evaluation(0.5), workload=FRESH, now=NOW, backoff=BACKOFF
    )
    assert decision.state is TargetState.UNTOUCHED
    assert decision.change is None


def test_hysteresis_keeps_pause_until_budget_is_above_resume_threshold() -> None:
    held = replace(FRESH, paused=True, paused_by=frozenset({"slo-a"}))
    for remaining in (0.0, 0.01, 0.05):
        decision = decide(
            holder="slo-a", policy=PAUSE, evaluation=evaluation(remaining), workload=held, now=NOW, backoff=BACKOFF
        )
        assert decision.change is None, remaining
        assert decision.state is TargetState.PAUSED
    decision = decide(
        holder="slo-a", policy=PAUSE, evaluation=evaluation(0.051), workload=held, now=NOW, backoff=BACKOFF
    )
    assert decision.change is not None
    assert decision.change.action is ActionKind.RESUME
    assert decision.change.paused is False
    assert decision.change.annotations == {PAUSED_BY: None, PAUSED_AT: None, **NO_CONTEST}
    assert decision.change.labels == {HELD_LABEL: None}


def test_page_tier_firing_blocks_resume_even_with_budget_left() -> None:
    held = replace(FRESH, paused=True, paused_by=frozenset({"slo-a"}))
    decision = decide(
        holder="slo-a",
        policy=PAUSE,
        evaluation=evaluation(0.5, page_firing=True),
        workload=held,
        now=NOW,
        backoff=BACKOFF,
    )
    assert decision.change is None
    assert decision.state is TargetState.PAUSED


def test_human_pause_is_never_claimed_or_resumed() -> None:
    human = replace(FRESH, paused=True)
    exhausted = decide(
        holder="slo-a", policy=PAUSE, evaluation=evaluation(-1), workload=human, now=NOW, backoff=BACKOFF
    )
    assert exhausted.state is TargetState.PAUSED_BY_OTHER
    assert exhausted.change is None
    recovered = decide(
        holder="slo-a", policy=PAUSE, evaluation=evaluation(0.9), workload=human, now=NOW, backoff=BACKOFF
    )
    assert recovered.change is None


def test_two_slos_share_a_pause_and_only_the_last_one_resumes() -> None:
    workload = FRESH
    for holder in ("slo-a", "slo-b"):
        decision = decide(
            holder=holder, policy=PAUSE, evaluation=evaluation(-1), workload=workload, now=NOW, backoff=BACKOFF
        )
        workload = apply(workload, decision.change)
    assert workload.paused
    assert workload.paused_by == {"slo-a", "slo-b"}
    first = decide(
        holder="slo-a", policy=PAUSE, evaluation=evaluation(0.9), workload=workload, now=NOW, backoff=BACKOFF
    )
    assert first.change is not None
    assert first.change.paused is None, "slo-b still holds the pause"
    assert first.change.annotations == {PAUSED_BY: "slo-b"}
    workload = apply(workload, first.change)
    last = decide(holder="slo-b", policy=PAUSE, evaluation=evaluation(0.9), workload=workload, now=NOW, backoff=BACKOFF)
    assert last.change is not None
    assert last.change.paused is False


def test_unknown_state_never_writes_whatever_the_target_looks_like() -> None:
    held = replace(FRESH, paused=False, paused_by=frozenset({"slo-a"}))
    for workload in (FRESH, held, replace(FRESH, paused=True)):
        for policy in (PAUSE, SCALE):
            decision = decide(
                holder="slo-a", policy=policy, evaluation=UNKNOWN, workload=workload, now=NOW, backoff=BACKOFF
            )
            assert decision.change is None
            assert decision.reason == "HoldingOnMissingData"


def test_override_lets_rollouts_through_and_releases_a_held_pause() -> None:
    until = NOW + timedelta(hours=1)
    fresh = replace(FRESH, override_until=until)
    decision = decide(holder="slo-a", policy=PAUSE, evaluation=evaluation(-1), workload=fresh, now=NOW, backoff=BACKOFF)
    assert decision.state is TargetState.OVERRIDDEN
    assert decision.change is None
    held = replace(fresh, paused=True, paused_by=frozenset({"slo-a"}))
    decision = decide(holder="slo-a", policy=PAUSE, evaluation=evaluation(-1), workload=held, now=NOW, backoff=BACKOFF)
    assert decision.state is TargetState.OVERRIDDEN
    assert decision.change is not None
    assert decision.change.paused is False


def test_expired_override_is_ignored() -> None:
    expired = replace(FRESH, override_until=NOW - timedelta(seconds=1))
    decision = decide(
        holder="slo-a", policy=PAUSE, evaluation=evaluation(-1), workload=expired, now=NOW, backoff=BACKOFF
    )
    assert decision.state is TargetState.PAUSED


def test_scale_remembers_original_replicas_and_restores_them() -> None:
    decision = decide(holder="slo-a", policy=SCALE, evaluation=evaluation(-1), workload=FRESH, now=NOW, backoff=BACKOFF)
    assert decision.change is not None
    assert decision.change.replicas == 2
    assert decision.change.annotations == {SCALED_BY: "slo-a", ORIGINAL_REPLICAS: "5", SCALED_TO: "2"}
    scaled = apply(FRESH, decision.change)
    restore = decide(
        holder="slo-a", policy=SCALE, evaluation=evaluation(0.6), workload=scaled, now=NOW, backoff=BACKOFF
    )
    assert restore.change is not None
    assert restore.change.action is ActionKind.RESTORE
    assert restore.change.replicas == 5
    assert restore.change.annotations == {SCALED_BY: None, ORIGINAL_REPLICAS: None, SCALED_TO: None, **NO_CONTEST}


def test_second_scale_holder_does_not_overwrite_original_replicas() -> None:
    scaled = replace(FRESH, replicas=2, scaled_by=frozenset({"slo-a"}), original_replicas=5)
    decision = decide(
        holder="slo-b", policy=SCALE, evaluation=evaluation(-1), workload=scaled, now=NOW, backoff=BACKOFF
    )
    assert decision.change is not None
    assert ORIGINAL_REPLICAS not in decision.change.annotations
    assert decision.change.replicas is None


def test_autoscaled_target_is_not_scaled() -> None:
    autoscaled = replace(FRESH, autoscaler="checkout-hpa")
    decision = decide(
        holder="slo-a", policy=SCALE, evaluation=evaluation(-1), workload=autoscaled, now=NOW, backoff=BACKOFF
    )
    assert decision.state is TargetState.REFUSED
    assert decision.reason == "AutoscalerPresent"
    assert decision.change is None


def test_fast_burn_trigger_acts_on_a_page_tier_before_the_budget_is_gone() -> None:
    fast = replace(PAUSE, trigger=PolicyTrigger.FAST_BURN)
    burning = evaluation(0.6, page_firing=True)
    assert (
        decide(holder="a", policy=fast, evaluation=burning, workload=FRESH, now=NOW, backoff=BACKOFF).state
        is TargetState.PAUSED
    )
    assert decide(holder="a", policy=PAUSE, evaluation=burning, workload=FRESH, now=NOW, backoff=BACKOFF).change is None


def test_missing_target_is_reported_not_raised() -> None:
    missing = WorkloadState(TARGET, exists=False)
    decision = decide(
        holder="slo-a", policy=PAUSE, evaluation=evaluation(-1), workload=missing, now=NOW, backoff=BACKOFF
    )
    assert decision.state is TargetState.MISSING
    assert decision.change is None


def test_release_of_a_target_not_held_writes_nothing() -> None:
    assert release(holder="slo-a", workload=replace(FRESH, paused=True)).change is None


@settings(max_examples=300, deadline=None)
@given(st.lists(st.floats(min_value=-0.5, max_value=0.5, allow_nan=False), min_size=1, max_size=200))
def test_flapping_budget_gives_at_most_one_cycle_per_band_crossing(budgets: list[float]) -> None:
    """A budget oscillating around zero pauses and resumes at most once per trip across the hysteresis band."""
    workload = FRESH
    pauses = resumes = 0
    crossings = 0
    side = "above"
    for remaining in budgets:
        if remaining <= 0 and side == "above":
            side, crossings = "below", crossings + 1
        elif remaining > PAUSE.resume_above and side == "below":
            side = "above"
        decision = decide(
            holder="slo-a", policy=PAUSE, evaluation=evaluation(remaining), workload=workload, now=NOW, backoff=BACKOFF
        )
        if decision.change is not None:
            pauses += decision.change.action is ActionKind.PAUSE
            resumes += decision.change.action is ActionKind.RESUME
        workload = apply(workload, decision.change)
    assert pauses <= crossings
    assert resumes <= pauses


# Reverts: a GitOps tool or a human undoes slo-guard's action while the budget is still spent.

HELD_PAUSE = replace(FRESH, paused=True, paused_by=frozenset({"slo-a"}))
SPENT = evaluation(-0.1)


def revert_pause(workload: WorkloadState, *, by: str | None) -> WorkloadState:
    """`spec.paused: false` from another client; the API server hands the field's ownership to it."""
    return replace(workload, paused=False, paused_set_by=by)


def test_a_first_revert_is_undone_at_once_and_names_who_reverted() -> None:
    reverted = revert_pause(HELD_PAUSE, by="argocd-controller")

    decision = decide(holder="slo-a", policy=PAUSE, evaluation=SPENT, workload=reverted, now=NOW, backoff=BACKOFF)

    assert decision.state is TargetState.PAUSED
    assert decision.reason == "PauseReasserted"
    assert decision.change == Change(
        ActionKind.PAUSE,
        paused=True,
        annotations={REASSERTIONS: "1", REASSERTED_AT: "2026-11-01T00:00:00Z", REVERTED_BY: "argocd-controller"},
    )
    assert "spec.paused was reverted by argocd-controller" in decision.message
    assert decision.contest is not None
    assert (decision.contest.reverted_by, decision.contest.reassertions) == ("argocd-controller", 1)


def test_a_revert_by_an_unknown_client_is_undone_and_said_so() -> None:
    decision = decide(
        holder="slo-a",
        policy=PAUSE,
        evaluation=SPENT,
        workload=revert_pause(HELD_PAUSE, by=None),
        now=NOW,
        backoff=BACKOFF,
    )
    assert decision.change is not None
    assert decision.change.annotations[REVERTED_BY] is None
    assert "reverted by an unknown client" in decision.message


def test_a_revert_within_the_backoff_stands_and_is_reported_without_a_write() -> None:
    once = apply(revert_pause(HELD_PAUSE, by="flux"), Change(ActionKind.PAUSE, paused=True))
    once = replace(once, reassertions=1, reasserted_at=NOW, reverted_by="flux")
    again = revert_pause(once, by="flux")

    early = decide(
        holder="slo-a", policy=PAUSE, evaluation=SPENT, workload=again, now=NOW + timedelta(seconds=59), backoff=BACKOFF
    )
    due = decide(
        holder="slo-a", policy=PAUSE, evaluation=SPENT, workload=again, now=NOW + timedelta(seconds=60), backoff=BACKOFF
    )

    assert early.state is TargetState.CONTESTED
    assert early.reason == "PauseReverted"
    assert early.change is None
    assert early.contest is not None
    assert early.contest.backing_off_until == NOW + timedelta(seconds=60)
    assert "2026-11-01T00:01:00Z" in early.message
    assert due.change is not None
    assert due.change.annotations[REASSERTIONS] == "2"


def test_a_held_pause_put_back_still_reports_the_contest_of_this_hold() -> None:
    paused_again = replace(HELD_PAUSE, reassertions=3, reasserted_at=NOW, reverted_by="argocd-controller")
    decision = decide(holder="slo-a", policy=PAUSE, evaluation=SPENT, workload=paused_again, now=NOW, backoff=BACKOFF)
    assert decision.change is None
    assert decision.state is TargetState.PAUSED
    assert decision.contest is not None
    assert (
        decision.contest.summary() == "spec.paused reverted by argocd-controller; re-applied 3 times during this hold"
    )


def test_a_reverted_scale_is_scaled_again_naming_who_changed_the_replicas() -> None:
    scaled = replace(FRESH, replicas=2, scaled_by=frozenset({"slo-a"}), original_replicas=5)
    reverted = replace(scaled, replicas=5, replicas_set_by="kubectl-scale")

    decision = decide(holder="slo-a", policy=SCALE, evaluation=SPENT, workload=reverted, now=NOW, backoff=BACKOFF)

    assert decision.reason == "ScaleReasserted"
    assert decision.change is not None
    assert decision.change.replicas == 2
    assert decision.change.annotations[REVERTED_BY] == "kubectl-scale"
    assert "spec.replicas was reverted by kubectl-scale" in decision.message


def test_recovery_releases_the_hold_and_forgets_its_contest() -> None:
    contested = replace(HELD_PAUSE, reassertions=4, reasserted_at=NOW, reverted_by="argocd-controller")
    decision = decide(
        holder="slo-a", policy=PAUSE, evaluation=evaluation(0.9), workload=contested, now=NOW, backoff=BACKOFF
    )
    assert decision.change is not None
    assert decision.change.paused is False
    assert apply(contested, decision.change) == replace(FRESH, paused=False)


def test_backoff_doubles_from_the_interval_up_to_the_cap() -> None:
    backoff = ReassertBackoff(base=30, cap=600)
    assert [backoff.delay(n) for n in range(7)] == [0, 60, 120, 240, 480, 600, 600]
    assert backoff.delay(10**9) == 600, "a garbled count must not overflow"
    assert backoff.due(reassertions=2, last=NOW) == NOW + timedelta(seconds=120)
    assert backoff.due(reassertions=0, last=NOW) is None


def gitops_fight(*, reverts_at: set[int], passes: int, backoff: ReassertBackoff) -> list[int]:
    """Seconds of the re-assertions, with one pass a second and a revert right after each listed pass."""
    workload = HELD_PAUSE
    reasserted = []
    for second in range(passes):
        now = NOW + timedelta(seconds=second)
        decision = decide(holder="slo-a", policy=PAUSE, evaluation=SPENT, workload=workload, now=now, backoff=backoff)
        if decision.change is not None:
            reasserted.append(second)
        workload = apply(workload, decision.change)
        if second in reverts_at:
            workload = revert_pause(workload, by="argocd-controller")
    return reasserted


def test_a_controller_reverting_after_every_pass_meets_fewer_and_fewer_reassertions() -> None:
    reasserted = gitops_fight(reverts_at=set(range(200)), passes=200, backoff=ReassertBackoff(base=1, cap=32))
    assert reasserted == [1, 3, 7, 15, 31, 63, 95, 127, 159, 191]


@settings(max_examples=200, deadline=None)
@given(st.sets(st.integers(min_value=0, max_value=120)))
def test_reassertions_are_spaced_by_the_backoff_and_a_standing_revert_is_never_abandoned(reverts: set[int]) -> None:
    backoff = ReassertBackoff(base=1, cap=16)
    reasserted = gitops_fight(reverts_at=reverts, passes=160, backoff=backoff)
    for count, (before, after) in enumerate(itertools.pairwise(reasserted), start=1):
        assert after - before >= backoff.delay(count)
    assert len(reasserted) <= len(reverts)
    if reverts:
        assert reasserted, "a revert while the budget is spent is always undone eventually"
        assert reasserted[-1] > max(reverts), "the last revert does not stand"


# Overrides are a human's explicit instruction: they release slo-guard's holds whatever the evaluation says.


def test_an_override_releases_a_held_pause_while_the_data_is_unknown() -> None:
    until = NOW + timedelta(hours=2)
    crash_looping = replace(HELD_PAUSE, override_until=until, override_reason="P0 fix for checkout")
    decision = decide(
        holder="slo-a", policy=PAUSE, evaluation=UNKNOWN, workload=crash_looping, now=NOW, backoff=BACKOFF
    )
    assert decision.state is TargetState.OVERRIDDEN
    assert decision.change is not None
    assert decision.change.paused is False
    assert "2026-11-01T02:00:00Z" in decision.message
    assert "P0 fix for checkout" in decision.message


def test_an_override_never_starts_an_action_while_the_data_is_unknown() -> None:
    overridden = replace(FRESH, override_until=NOW + timedelta(hours=2))
    for policy in (PAUSE, SCALE):
        decision = decide(
            holder="slo-a", policy=policy, evaluation=UNKNOWN, workload=overridden, now=NOW, backoff=BACKOFF
        )
        assert decision.change is None


def test_a_malformed_override_is_reported_on_the_target_and_ignored() -> None:
    garbled = replace(HELD_PAUSE, override_problem="sloguard.io/override-until='tomorrow' is not an RFC 3339 time")
    decision = decide(holder="slo-a", policy=PAUSE, evaluation=SPENT, workload=garbled, now=NOW, backoff=BACKOFF)
    assert decision.state is TargetState.PAUSED
    assert decision.change is None
    assert "override-until='tomorrow' is not an RFC 3339 time" in decision.message


# Several SLOs scaling one target.

SCALE_TO_3 = replace(SCALE, scale_to=3)


def scaled_by_two() -> WorkloadState:
    """slo-a scaled the target to 2 first; slo-b (scaleTo 3) joined the hold without changing the count."""
    workload = FRESH
    for holder, policy in (("slo-a", SCALE), ("slo-b", SCALE_TO_3)):
        decision = decide(holder=holder, policy=policy, evaluation=SPENT, workload=workload, now=NOW, backoff=BACKOFF)
        workload = apply(workload, decision.change)
    assert workload.replicas == 2
    return workload


def test_with_two_scale_holders_a_revert_of_replicas_is_scaled_back_to_the_first_holders_count() -> None:
    reverted = replace(scaled_by_two(), replicas=5, replicas_set_by="kubectl-edit")
    decision = decide(holder="slo-b", policy=SCALE_TO_3, evaluation=SPENT, workload=reverted, now=NOW, backoff=BACKOFF)
    assert decision.change is not None
    assert decision.change.replicas == 2
    assert decision.contest is not None
    assert decision.contest.reverted_by == "kubectl-edit"


def test_the_last_other_holder_leaving_is_not_a_contest() -> None:
    workload = scaled_by_two()
    workload = apply(workload, release(holder="slo-a", workload=workload).change)
    assert workload.scaled_by == {"slo-b"}
    before = replace(workload, replicas_set_by="kubectl-client-side-apply")
    decision = decide(holder="slo-b", policy=SCALE_TO_3, evaluation=SPENT, workload=before, now=NOW, backoff=BACKOFF)
    assert decision.contest is None
    assert decision.state is TargetState.SCALED
    assert decision.change is not None
    assert decision.change.replicas == 3, "the only holder left scales to its own scaleTo"
    assert REASSERTIONS not in decision.change.annotations


def test_an_edited_scale_to_rescales_without_a_contest() -> None:
    scaled = apply(
        FRESH, decide(holder="a", policy=SCALE, evaluation=SPENT, workload=FRESH, now=NOW, backoff=BACKOFF).change
    )
    decision = decide(holder="a", policy=SCALE_TO_3, evaluation=SPENT, workload=scaled, now=NOW, backoff=BACKOFF)
    assert decision.contest is None
    assert decision.change is not None
    assert decision.change.replicas == 3
    rescaled = apply(scaled, decision.change)
    assert rescaled.original_replicas == 5, "the count to restore is still the one before the hold"


# A hold whose evidence was tampered with is never guessed at.


def scaled_without_original() -> WorkloadState:
    scaled = apply(
        FRESH, decide(holder="a", policy=SCALE, evaluation=SPENT, workload=FRESH, now=NOW, backoff=BACKOFF).change
    )
    return replace(scaled, original_replicas=None)


def test_a_lost_original_replicas_is_refused_and_keeps_the_hold() -> None:
    decision = decide(
        holder="a",
        policy=SCALE,
        evaluation=evaluation(0.9),
        workload=scaled_without_original(),
        now=NOW,
        backoff=BACKOFF,
    )
    assert decision.state is TargetState.REFUSED
    assert decision.reason == "OriginalReplicasUnknown"
    assert decision.change is None, "the hold label and annotations stay as evidence"
    assert "spec.replicas" in decision.message


def test_once_a_human_sets_the_replicas_a_refused_hold_is_released_without_touching_them() -> None:
    fixed = replace(scaled_without_original(), replicas=4, replicas_set_by="kubectl-edit")
    decision = decide(holder="a", policy=SCALE, evaluation=evaluation(0.9), workload=fixed, now=NOW, backoff=BACKOFF)
    assert decision.change is not None
    assert decision.change.replicas is None
    assert decision.change.labels == {HELD_LABEL: None}
    assert decision.change.annotations[SCALED_BY] is None


# Deny: the same trigger and hysteresis as a pause, carried out at admission, so nothing is ever written.

DENY = Policy(mode=PolicyMode.ENFORCE, action=PolicyAction.DENY, resume_above=0.05)


def deny(case: Evaluation, *, denying: bool, workload: WorkloadState = FRESH) -> TargetDecision:
    return decide(
        holder="checkout", policy=DENY, evaluation=case, workload=workload, now=NOW, backoff=BACKOFF, denying=denying
    )


def test_deny_starts_holding_when_the_budget_is_spent_without_writing_to_the_target() -> None:
    decision = deny(evaluation(-0.1), denying=False)
    assert (decision.state, decision.admission, decision.change) == (TargetState.DENYING, ActionKind.DENY, None)
    assert (
        decision.message == "Error budget policy: admission denies changes to the pod template of Deployment checkout"
    )


def test_deny_keeps_holding_below_resume_above_and_lets_go_above_it() -> None:
    held = deny(evaluation(0.03), denying=True)
    assert (held.state, held.admission, held.change) == (TargetState.DENYING, None, None)
    released = deny(evaluation(0.2), denying=True)
    assert (released.state, released.admission, released.change) == (TargetState.UNTOUCHED, ActionKind.ALLOW, None)
    assert deny(evaluation(0.03), denying=False).state is TargetState.UNTOUCHED


def test_deny_keeps_its_hold_on_missing_data_but_says_admission_lets_changes_through() -> None:
    held = deny(UNKNOWN, denying=True)
    assert (held.state, held.admission, held.reason) == (TargetState.DENYING, None, "HoldingOnMissingData")
    assert "admission lets changes to Deployment checkout through, with a warning" in held.message
    assert deny(UNKNOWN, denying=False).state is TargetState.UNTOUCHED


def test_an_override_lets_changes_through_a_deny_and_names_its_reason() -> None:
    overridden = replace(FRESH, override_until=NOW + timedelta(hours=1), override_reason="hotfix INC-42")
    decision = deny(evaluation(-0.1), denying=True, workload=overridden)
    assert (decision.state, decision.admission, decision.change) == (TargetState.OVERRIDDEN, None, None)
    assert decision.message == (
        "Override until 2026-11-01T01:00:00Z (hotfix INC-42) lets changes to Deployment checkout through admission"
    )
