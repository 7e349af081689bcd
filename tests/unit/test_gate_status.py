"""The pipeline gate read from `.status`: the same verdict the operator's in-memory evaluation gives, and the wait."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import pytest

from slo_guard.domain.evaluation_types import AlertStatus, Evaluation, State, UnknownReason
from slo_guard.domain.gate import GateVerdict, gate
from slo_guard.domain.model import Policy, PolicyMode, PolicyTrigger, Severity
from slo_guard.service.gate import Poll, SLOGate, SLOsMissing, gate_of, read_gates, wait_for_gates
from slo_guard.service.ports import KubernetesUnavailable
from slo_guard.service.status import TargetReport, build_status, invalid_spec_status

NOW = datetime(2026, 11, 1, tzinfo=UTC)
KEY = "shop/checkout-availability"
PAGE = AlertStatus(Severity.PAGE, 3600, 300, 14.4, firing=True)
QUIET_PAGE = AlertStatus(Severity.PAGE, 3600, 300, 14.4, firing=False)


def slo(*, policy: Mapping[str, object] | None = None, status: Mapping[str, Any] | None = None) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "apiVersion": "sloguard.io/v1alpha1",
        "kind": "ServiceLevelObjective",
        "metadata": {"name": "checkout-availability", "namespace": "shop", "generation": 1, "uid": "u-1"},
        "spec": {
            "objective": 99.9,
            "window": "30d",
            "indicator": {"ratio": {"errors": 'http_requests_total{code=~"5.."}', "total": "http_requests_total"}},
            "targets": [{"kind": "Deployment", "name": "checkout"}],
            "policy": {"mode": "Enforce", "action": "Pause", "resumeAbove": 0.05, **(policy or {})},
        },
    }
    if status is not None:
        resource["status"] = dict(status)
    return resource


def written(evaluation: Evaluation, *target_states: str) -> dict[str, Any]:
    """The status the operator writes for this evaluation and these target states."""
    targets = [
        TargetReport(kind="Deployment", name=f"web-{index}", state=state, reason=state, message=state)
        for index, state in enumerate(target_states)
    ]
    return build_status(previous={}, generation=1, evaluation=evaluation, targets=targets, actions=[], now=NOW)


def evaluation(state: State, remaining: float, *alerts: AlertStatus) -> Evaluation:
    return Evaluation(state, None, "test", NOW, sli=0.999, budget_remaining=remaining, alerts=alerts)


CASES = [
    (evaluation(State.EXHAUSTED, -0.506, QUIET_PAGE), ("Paused",), True),
    (evaluation(State.EXHAUSTED, -0.506), ("Untouched",), False),
    (evaluation(State.HEALTHY, 0.0312), ("Paused",), True),
    (evaluation(State.HEALTHY, 0.0312), ("Scaled", "Untouched"), True),
    (evaluation(State.HEALTHY, 0.0312), ("Contested",), True),
    (evaluation(State.HEALTHY, 0.0312), ("WouldPause",), True),
    (evaluation(State.HEALTHY, 0.0312), ("WouldScale",), True),
    (evaluation(State.HEALTHY, 0.0312), ("Overridden", "PausedByOther", "Missing", "Refused"), False),
    (evaluation(State.BURNING, 0.4, PAGE), ("Paused",), True),
    (evaluation(State.BURNING, 0.4, PAGE), ("Untouched",), False),
    (evaluation(State.HEALTHY, 0.512, QUIET_PAGE), ("Paused",), True),
    (evaluation(State.HEALTHY, 0.512), (), False),
]


@pytest.mark.parametrize("trigger", ["Exhausted", "FastBurn"])
@pytest.mark.parametrize(("case", "target_states", "holding"), CASES)
def test_the_status_gives_the_verdict_the_operator_holds_in_memory(
    trigger: str, case: Evaluation, target_states: tuple[str, ...], holding: bool
) -> None:
    resource = slo(policy={"trigger": trigger}, status=written(case, *target_states))
    policy = Policy(mode=PolicyMode.ENFORCE, trigger=PolicyTrigger(trigger), resume_above=0.05)
    assert gate_of(KEY, resource) == SLOGate(KEY, gate(policy, case, holding=holding))


def test_an_exhausted_slo_holding_its_target_reads_closed() -> None:
    resource = slo(status=written(evaluation(State.EXHAUSTED, -0.506), "Paused"))
    assert gate_of(KEY, resource).verdict == GateVerdict(
        False,
        "BudgetExhausted",
        "error budget exhausted, -50.6% left; opens with more than 5% of the budget left and no page tier firing"
        " (sloguard.io/override-until on a target exempts that target, not this gate)",
    )


def test_resume_above_comes_from_the_spec() -> None:
    resource = slo(policy={"resumeAbove": 0.5}, status=written(evaluation(State.HEALTHY, 0.3), "Paused"))
    verdict = gate_of(KEY, resource).verdict
    assert (verdict.open, verdict.reason) == (False, "HeldUntilRecovered")
    assert "more than 50% of the budget left" in verdict.message


def test_a_never_written_status_is_unknown_not_evaluated_yet() -> None:
    for resource in (slo(), slo(status={}), slo(status={"state": "Healthy"})):
        assert gate_of(KEY, resource) == SLOGate(
            KEY,
            GateVerdict(True, "UnknownOpen", "no usable data (not evaluated yet); missing data never blocks"),
            unknown="not evaluated yet",
        )


def test_an_unknown_status_is_open_and_keeps_its_reason_and_message() -> None:
    unknown = Evaluation(State.UNKNOWN, UnknownReason.STALE_DATA, "newest sample is 5m old", NOW)
    found = gate_of(KEY, slo(status=written(unknown, "Paused")))
    assert found.unknown == "StaleData: newest sample is 5m old"
    assert found.verdict == GateVerdict(
        True, "UnknownOpen", "no usable data (StaleData: newest sample is 5m old); missing data never blocks"
    )


def test_the_operators_invalid_spec_status_is_unknown() -> None:
    status = invalid_spec_status(previous={}, generation=1, message="spec.window: too short", now=NOW)
    assert gate_of(KEY, slo(status=status)).unknown == "InvalidSpec: spec.window: too short"


def test_a_spec_that_does_not_validate_is_unknown_invalid_spec_whatever_the_status_says() -> None:
    resource = slo(status=written(evaluation(State.EXHAUSTED, -0.5), "Paused"))
    resource["spec"]["policy"]["mode"] = "enforce"
    found = gate_of(KEY, resource)
    assert found.verdict.open
    assert found.unknown == "InvalidSpec: spec.policy.mode: must be 'Enforce' or 'DryRun' (got 'enforce')"


def test_a_dry_run_slo_gates_like_an_enforcing_one() -> None:
    spent = written(evaluation(State.EXHAUSTED, -0.2), "WouldPause")
    dry_run = gate_of(KEY, slo(policy={"mode": "DryRun"}, status=spent))
    enforce = gate_of(KEY, slo(status=spent))
    assert dry_run == enforce
    assert not dry_run.verdict.open


class Objects:
    """An in-memory SLOReader: a dict of objects, or an exception to raise, per read."""

    def __init__(self, objects: dict[str, dict[str, Any]]) -> None:
        self.objects = objects
        self.failures: dict[int, Exception] = {}
        """Read number (from 1) -> what that read raises."""
        self.reads = 0

    async def read(self, *, namespace: str, name: str) -> Mapping[str, Any] | None:
        self.reads += 1
        if self.reads in self.failures:
            raise self.failures[self.reads]
        found = self.objects.get(f"{namespace}/{name}")
        return copy.deepcopy(found) if found is not None else None


async def test_missing_slos_are_all_named() -> None:
    reader = Objects({KEY: slo()})
    with pytest.raises(SLOsMissing) as missing:
        await read_gates(reader, ["shop/a", KEY, "shop/b"])
    assert missing.value.keys == ("shop/a", "shop/b")


class Clock:
    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


async def test_waiting_polls_every_five_seconds_until_the_gate_opens() -> None:
    closed = slo(status=written(evaluation(State.EXHAUSTED, -0.5), "Paused"))
    reader = Objects({KEY: closed})
    clock = Clock()
    polls: list[Poll] = []

    def report(poll: Poll) -> None:
        polls.append(poll)
        if len(polls) == 3:
            reader.objects[KEY] = slo(status=written(evaluation(State.HEALTHY, 0.2), "Untouched"))

    last = await wait_for_gates(
        reader, [KEY], passes=lambda item: item.verdict.open, within=600, report=report, clock=clock, sleep=clock.sleep
    )

    assert [poll.gates[0].verdict.open for poll in polls] == [False, False, False, True]
    assert [poll.elapsed for poll in polls] == [0, 5, 10, 15]
    assert clock.sleeps == [5, 5, 5]
    assert last is polls[-1]


async def test_waiting_gives_up_at_the_deadline_without_oversleeping() -> None:
    reader = Objects({KEY: slo(status=written(evaluation(State.EXHAUSTED, -0.5), "Paused"))})
    clock = Clock()
    last = await wait_for_gates(
        reader,
        [KEY],
        passes=lambda item: item.verdict.open,
        within=12,
        report=lambda _: None,
        clock=clock,
        sleep=clock.sleep,
    )
    assert clock.sleeps == [5, 5, 2]
    assert (last.elapsed, last.gates[0].verdict.open) == (12, False)


async def test_without_a_wait_it_reads_once() -> None:
    reader = Objects({KEY: slo(status=written(evaluation(State.EXHAUSTED, -0.5), "Paused"))})
    clock = Clock()
    await wait_for_gates(
        reader,
        [KEY],
        passes=lambda item: item.verdict.open,
        within=0,
        report=lambda _: None,
        clock=clock,
        sleep=clock.sleep,
    )
    assert (reader.reads, clock.sleeps) == (1, [])


async def test_an_api_outage_while_waiting_is_a_poll_with_a_problem_and_is_tried_again() -> None:
    reader = Objects({KEY: slo(status=written(evaluation(State.EXHAUSTED, -0.5), "Paused"))})
    reader.failures[2] = KubernetesUnavailable("Kubernetes API is unreachable")
    clock = Clock()
    polls: list[Poll] = []

    def report(poll: Poll) -> None:
        polls.append(poll)
        if len(polls) == 2:
            reader.objects[KEY] = slo(status=written(evaluation(State.HEALTHY, 0.5), "Untouched"))

    await wait_for_gates(
        reader, [KEY], passes=lambda item: item.verdict.open, within=60, report=report, clock=clock, sleep=clock.sleep
    )
    assert [(poll.problem, [item.verdict.open for item in poll.gates]) for poll in polls] == [
        (None, [False]),
        ("Kubernetes API is unreachable", []),
        (None, [True]),
    ]


async def test_a_failing_first_read_ends_the_wait_at_once() -> None:
    reader = Objects({KEY: slo()})
    reader.failures[1] = KubernetesUnavailable("Kubernetes API answered 403: forbidden")
    clock = Clock()
    with pytest.raises(KubernetesUnavailable, match="403"):
        await wait_for_gates(
            reader,
            [KEY],
            passes=lambda item: item.verdict.open,
            within=60,
            report=lambda _: None,
            clock=clock,
            sleep=clock.sleep,
        )
    assert clock.sleeps == []


async def test_an_slo_deleted_while_waiting_ends_the_wait() -> None:
    reader = Objects({KEY: slo(status=written(evaluation(State.EXHAUSTED, -0.5), "Paused"))})
    clock = Clock()

    def report(poll: Poll) -> None:
        reader.objects.clear()

    with pytest.raises(SLOsMissing):
        await wait_for_gates(
            reader,
            [KEY],
            passes=lambda item: item.verdict.open,
            within=60,
            report=report,
            clock=clock,
            sleep=clock.sleep,
        )
    assert reader.reads == 2
