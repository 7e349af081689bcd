"""The pure parts of the gate benchmark (gates.py): percentiles, the board it serves and the requests it sends."""

from __future__ import annotations

import json
import math
import random
from collections import Counter

import pytest
from benchmarks.gates import (
    FLAGGER_SHARE,
    Spread,
    build_board,
    gate_requests,
    percentile,
    review_bodies,
    slo_plan,
)

from slo_guard.domain.evaluation_types import State
from slo_guard.handlers.gate_server import FLAGGER_PATH, GATE_PREFIX
from slo_guard.service.admission import AdmissionReviewer
from slo_guard.service.gate_board import flagger_gate
from slo_guard.telemetry import OperatorMetrics

PLANS = [slo_plan(index) for index in range(1000)]


@pytest.mark.parametrize(("q", "expected"), [(0.01, 1), (0.5, 50), (0.9, 90), (0.99, 99), (1.0, 100)])
def test_percentiles_are_nearest_rank(q: float, expected: int) -> None:
    assert percentile(list(range(1, 101)), q) == expected


def test_percentiles_of_one_value_and_of_none() -> None:
    assert percentile([7.0], 0.01) == percentile([7.0], 0.99) == 7.0
    assert math.isnan(percentile([], 0.5))


def test_a_spread_scales_before_it_summarises() -> None:
    spread = Spread.of([3_000, 1_000, 2_000, 4_000], scale=1e-3)

    assert (spread.p50, spread.p90, spread.p99, spread.max, spread.mean) == (2.0, 4.0, 4.0, 4.0, 2.5)


def test_the_board_mixes_states_policies_namespaces_and_target_counts() -> None:
    states = Counter(plan.state for plan in PLANS)

    assert (states[State.EXHAUSTED], states[State.UNKNOWN], states[State.BURNING]) == (100, 50, 100)
    assert sum(plan.action == "Deny" for plan in PLANS) == 500
    assert len({plan.namespace for plan in PLANS}) == 20
    assert sum(len(plan.targets) == 3 for plan in PLANS) == 40
    board = build_board(PLANS)
    entries = [board.get(plan.namespace, plan.name) for plan in PLANS]
    assert sum(entry is not None and not entry.verdict.open for entry in entries) == 100


def test_gate_requests_name_slos_on_the_board_and_a_tenth_are_flagger_webhooks() -> None:
    board = build_board(PLANS)
    requests = gate_requests(PLANS, 2000, rng=random.Random(3))

    kinds = Counter(request.kind for request in requests)
    assert abs(kinds["Flagger"] / len(requests) - FLAGGER_SHARE) < 0.03
    for request in requests:
        if request.kind == "GET":
            namespace, _, name = request.path.removeprefix(f"{GATE_PREFIX}/namespaces/").partition("/")
            assert board.get(namespace, name.removeprefix("servicelevelobjectives/")) is not None
        else:
            assert (request.method, request.path) == ("POST", FLAGGER_PATH)
            assert request.body is not None
            assert flagger_gate(board, json.loads(request.body)).status in {200, 403}


async def test_review_bodies_are_about_3_kb_and_reach_every_decision() -> None:
    bodies = review_bodies(PLANS, 400, rng=random.Random(5))
    metrics = OperatorMetrics()
    reviewer = AdmissionReviewer(build_board(PLANS), events=_NoEvents(), metrics=metrics)

    answers = [reviewer.review(json.loads(body)) for body in bodies]
    await reviewer.close()

    assert 2_500 < sum(map(len, bodies)) / len(bodies) < 4_000
    assert all(answer["response"]["uid"] for answer in answers)
    decisions = {
        sample.labels["decision"]: sample.value
        for family in metrics.admission_decisions.collect()
        for sample in family.samples
        if sample.name.endswith("_total")
    }
    assert all(decisions[decision] > 0 for decision in ("allowed", "warned", "overridden", "denied"))


class _NoEvents:
    async def post(self, **_: object) -> None:
        return None
