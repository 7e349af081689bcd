"""The web UI's view model: what each SLO's row and detail say, from the gate board and the SLO's body alone."""

from __future__ import annotations

import copy
import math
from datetime import UTC, datetime
from typing import Any

import promql_parser
import pytest

from slo_guard.domain.model import LabelMatcher, MatchOp
from slo_guard.domain.promql import errors_query, total_query
from slo_guard.domain.recording import VALUE_RECORD, query_key
from slo_guard.domain.rules import recorded_error_ratio_query
from slo_guard.resources import objective_from_resource
from slo_guard.service.gate_board import GateBoard, entry_from_resource
from slo_guard.service.ports import ObjectRef
from slo_guard.service.ui import (
    MAX_POINTS,
    RangeQuery,
    Stretch,
    chart_plan,
    column,
    detail,
    duration_text,
    error_ratio_expr,
    fired_text,
    firing_stretches,
    overview,
    range_query,
    sparkline_query,
)

EVALUATED_AT = "2026-11-01T12:00:00Z"
TIERS = [
    {"severity": "page", "longWindow": "1h", "shortWindow": "5m", "factor": 14.4},
    {"severity": "page", "longWindow": "6h", "shortWindow": "30m", "factor": 6},
    {"severity": "ticket", "longWindow": "1d", "shortWindow": "2h", "factor": 3},
    {"severity": "ticket", "longWindow": "3d", "shortWindow": "6h", "factor": 1},
]


def slo(
    name: str,
    *,
    namespace: str = "shop",
    state: str = "Healthy",
    remaining: float | None = 0.512,
    firing: tuple[int, ...] = (),
    targets: tuple[tuple[str, str], ...] = (("web", "Untouched"),),
    policy: dict[str, Any] | None = None,
    **status: Any,
) -> dict[str, Any]:
    """A ServiceLevelObjective as kopf hands it over: spec, and the status the operator last wrote."""
    body: dict[str, Any] = {
        "apiVersion": "sloguard.io/v1alpha1",
        "kind": "ServiceLevelObjective",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "objective": 99.9,
            "window": "30d",
            "indicator": {
                "ratio": {
                    "errors": 'http_requests_total{job="web",code=~"5.."}',
                    "total": 'http_requests_total{job="web"}',
                }
            },
            "targets": [{"kind": "Deployment", "name": target} for target, _ in targets],
            "policy": policy or {},
        },
        "status": {
            "state": state,
            "reason": None if state != "Unknown" else "NoData",
            "message": f"{state} now",
            "errorBudget": {"remaining": remaining},
            "burnRates": {"1h": 20.0, "5m": 25.0, "6h": 3.0, "30m": 7.0, "1d": 1.5, "2h": 2.0, "3d": 0.5},
            "alerts": [{**tier, "firing": index in firing} for index, tier in enumerate(TIERS)],
            "evaluatedAt": EVALUATED_AT,
            "targets": [
                {"kind": "Deployment", "name": target, "state": target_state, "since": EVALUATED_AT}
                for target, target_state in targets
            ],
            **status,
        },
    }
    return body


def world(*bodies: dict[str, Any]) -> tuple[GateBoard, dict[str, dict[str, Any]]]:
    """The board and bodies as the runtime keeps them after each SLO's first look at its stored status."""
    board = GateBoard()
    by_key = {}
    for body in bodies:
        metadata = body["metadata"]
        board.put(entry_from_resource(ObjectRef("v", "k", metadata["namespace"], metadata["name"]), body))
        by_key[f"{metadata['namespace']}/{metadata['name']}"] = body
    return board, by_key


def test_overview_lists_every_slo_worst_first_with_counts_per_state() -> None:
    board, bodies = world(
        slo("a-healthy"),
        slo("b-exhausted", state="Exhausted", remaining=-0.506),
        slo("c-unknown", state="Unknown", remaining=None),
        slo("d-burning", state="Burning", remaining=0.3, firing=(0,)),
        slo("e-elsewhere", namespace="pay"),
    )
    view = overview(board, bodies)
    assert [row.key for row in view.rows] == [
        "shop/b-exhausted",
        "shop/d-burning",
        "shop/c-unknown",
        "pay/e-elsewhere",
        "shop/a-healthy",
    ]
    assert dict(view.counts) == {"Exhausted": 1, "Burning": 1, "Unknown": 1, "Healthy": 2}
    assert view.namespaces == ("pay", "shop")
    assert view.total == 5


def test_filters_by_namespace_and_state_count_within_the_namespace() -> None:
    board, bodies = world(slo("a"), slo("b", state="Exhausted", remaining=-1), slo("c", namespace="pay"))
    shop = overview(board, bodies, namespace="shop")
    assert [row.key for row in shop.rows] == ["shop/b", "shop/a"]
    assert dict(shop.counts) == {"Exhausted": 1, "Burning": 0, "Unknown": 0, "Healthy": 1}
    assert [row.key for row in overview(board, bodies, namespace="shop", state="Healthy").rows] == ["shop/a"]
    assert overview(board, bodies, namespace="nowhere").rows == ()
    assert overview(board, bodies, namespace="nowhere").namespaces == ("pay", "shop")


def test_a_row_says_what_a_person_reads() -> None:
    board, bodies = world(
        slo(
            "web",
            state="Burning",
            remaining=0.512,
            firing=(0, 2),
            targets=(("web", "Paused"), ("api", "Untouched"), ("db", "WouldScale")),
            timeToExhaustion=93_780,
        )
    )
    (row,) = overview(board, bodies).rows
    assert (row.state, row.reason, row.objective, row.window) == ("Burning", None, "99.9%", "30d")
    assert (row.budget_text, row.budget_meter) == ("+51.2%", 51.2)
    assert row.fastest_tier is not None
    assert row.fastest_tier.label == "page 1h/5m x14.4"
    assert duration_text(row.time_to_exhaustion or 0) == "1d 2h"
    assert (row.held, row.targets) == (2, 3)
    # Holding its targets with a page tier firing: the hysteresis keeps the gate closed.
    assert (row.gate_open, row.gate_reason) == (False, "HeldUntilRecovered")
    assert row.evaluated_at == datetime(2026, 11, 1, 12, tzinfo=UTC)


@pytest.mark.parametrize(
    ("remaining", "meter", "text"),
    [(-0.506, 0.0, "-50.6%"), (0.0, 0.0, "0.0%"), (1.0, 100.0, "+100.0%"), (None, None, "n/a")],
)
def test_the_budget_bar_stops_at_its_ends_and_the_text_says_the_rest(
    remaining: float | None, meter: float | None, text: str
) -> None:
    state = "Unknown" if remaining is None else "Exhausted" if remaining <= 0 else "Healthy"
    board, bodies = world(slo("web", state=state, remaining=remaining))
    (row,) = overview(board, bodies).rows
    assert (row.budget_meter, row.budget_text) == (meter, text)


def test_the_board_s_entry_wins_over_the_older_status() -> None:
    stored = slo("web", state="Healthy", remaining=0.5)
    board, bodies = world(stored)
    newer = slo("web", state="Exhausted", remaining=-0.2)
    board.put(entry_from_resource(ObjectRef("v", "k", "shop", "web"), newer))
    (row,) = overview(board, bodies).rows
    assert (row.state, row.budget_text, row.gate_open) == ("Exhausted", "-20.0%", False)


def test_an_slo_not_on_the_board_yet_reads_from_its_status() -> None:
    _, bodies = world(slo("web", state="Exhausted", remaining=-0.2, targets=(("web", "Paused"),)))
    (row,) = overview(GateBoard(), bodies).rows
    assert (row.state, row.gate_open, row.gate_reason, row.held) == ("Exhausted", False, "BudgetExhausted", 1)


def test_unknown_says_why_and_never_shows_a_number() -> None:
    board, bodies = world(slo("web", state="Unknown", remaining=None, timeToExhaustion=100))
    (row,) = overview(board, bodies).rows
    assert (row.state, row.reason, row.budget_text, row.time_to_exhaustion) == ("Unknown", "NoData", "n/a", None)


def test_an_invalid_spec_is_unknown_with_reason_invalid_spec() -> None:
    body = slo("web")
    body["spec"]["window"] = "30x"
    board, bodies = world(body)
    (row,) = overview(board, bodies).rows
    assert (row.state, row.reason, row.gate_open) == ("Unknown", "InvalidSpec", True)
    found = detail(board, bodies, "shop", "web")
    assert found is not None
    assert "InvalidSpec" in found[0].message
    assert found[0].policy == ()


def test_detail_has_tiers_targets_actions_newest_first_and_the_manifest() -> None:
    body = slo(
        "web",
        state="Exhausted",
        remaining=-0.1,
        firing=(3,),
        targets=(("web", "Paused"),),
        policy={"trigger": "FastBurn", "resumeAbove": 0.1},
        actions=[
            {"time": "2026-11-01T10:00:00Z", "kind": "Deployment", "name": "web", "action": "Pause",
             "result": "Applied", "reason": "BudgetExhausted", "message": "paused"},
            {"time": "2026-11-01T11:00:00Z", "kind": "Deployment", "name": "web", "action": "Resume",
             "result": "Applied", "reason": "OverrideActive", "message": "override until noon"},
        ],
        conditions=[{"type": "Ready", "status": "True", "reason": "Evaluated", "message": "ok",
                     "lastTransitionTime": "2026-11-01T09:00:00Z"}],
    )  # fmt: skip
    body["metadata"]["annotations"] = {
        "kubectl.kubernetes.io/last-applied-configuration": "{...}",
        "team": "checkout",
    }
    board, bodies = world(body)
    found = detail(board, bodies, "shop", "web")
    assert found is not None
    view, stored = found
    assert stored is body
    assert [(tier.long_burn, tier.short_burn, tier.firing) for tier in view.tiers[:2]] == [
        (20.0, 25.0, False),
        (3.0, 7.0, False),
    ]
    assert view.tiers[3].firing
    assert [(action.action, action.reason) for action in view.actions] == [
        ("Resume", "OverrideActive"),
        ("Pause", "BudgetExhausted"),
    ]
    assert [(target.name, target.state, target.held) for target in view.targets] == [("web", "Paused", True)]
    assert [(item.type, item.status) for item in view.conditions] == [("Ready", "True")]
    assert view.policy == (
        ("mode", "Enforce"),
        ("action", "Pause"),
        ("trigger", "FastBurn"),
        ("resumeAbove", "0.1"),
    )
    assert view.resume_above == 0.1
    assert view.interval == 30
    assert view.indicator == (
        ("errors", 'http_requests_total{job="web",code=~"5.."}'),
        ("total", 'http_requests_total{job="web"}'),
    )
    assert view.manifest["metadata"] == {"name": "web", "namespace": "shop", "annotations": {"team": "checkout"}}
    assert view.manifest["spec"] == body["spec"]
    assert detail(board, bodies, "shop", "nope") is None


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(5, "under 1m"), (60, "1m"), (3_599, "59m"), (3_600, "1h"), (7_500, "2h 5m"), (86_400 * 3 + 3_600 * 4, "3d 4h")],
)
def test_durations_read_in_their_two_largest_units(seconds: float, text: str) -> None:
    assert duration_text(seconds) == text


# --- Chart queries ---


def objective(**spec: Any) -> Any:
    body = slo("web")
    body["spec"].update(spec)
    return objective_from_resource(body, min_step=30)


@pytest.mark.parametrize("window", ["30d", "28d", "7d", "1h", "10m"])
@pytest.mark.parametrize("recorded", [False, True])
def test_every_chart_query_is_valid_promql_and_bounded_in_points(window: str, recorded: bool) -> None:
    plan = chart_plan(objective(window=window), recorded=recorded)
    for query in (*plan.queries(), sparkline_query(plan.objective, recorded=recorded)):
        promql_parser.parse(query.expr)
        assert 2 <= query.points <= MAX_POINTS
        assert query.start(1_000_000) <= 1_000_000 - query.span
    assert plan.budget.span == plan.objective.window
    assert plan.sli_window >= plan.budget.step


def test_without_rules_the_charts_send_the_ratio_the_rules_command_records() -> None:
    slo_objective = objective()
    tenant = (LabelMatcher("tenant", MatchOp.EQUAL, "shop"),)
    assert error_ratio_expr(slo_objective, 3600, recorded=False, extra=tenant) == recorded_error_ratio_query(
        slo_objective, window=3600, extra=tenant
    )


def test_with_rules_the_charts_read_the_values_recorded_for_the_evaluation_s_own_queries() -> None:
    slo_objective = objective()
    tenant = (LabelMatcher("tenant", MatchOp.EQUAL, "shop"),)
    expr = error_ratio_expr(slo_objective, 2_592_000, recorded=True, extra=tenant)
    indicator = slo_objective.indicator
    assert VALUE_RECORD in expr
    for query in (errors_query(indicator, 2_592_000, extra=tenant), total_query(indicator, 2_592_000, extra=tenant)):
        assert f'query="{query_key(query)}"' in expr
    # Recorded hourly for a 30-day window: two periods of look-back.
    assert "[2h])" in expr
    assert "or vector(0)" in expr
    latency = objective(indicator={"latency": {"histogram": 'h{job="web"}', "threshold": 0.3}})
    assert "or vector(0)" not in error_ratio_expr(latency, 3600, recorded=True)


def test_a_range_query_s_grid_ends_at_its_moment_and_drops_what_is_not_a_number() -> None:
    query = range_query("x", 1000)
    assert (query.step, query.points) == (3, 335)
    end = 10_000
    start = query.start(end)
    answer = column([(start, 1.0), (start + 3, math.nan), (end, 2.0), (end + 3, 9.0)], query, end=end)
    assert (answer.start, answer.step, len(answer.values)) == (start, 3, 335)
    assert (answer.values[0], answer.values[1], answer.values[-1]) == (1.0, None, 2.0)
    assert answer.times[-1] == end


def test_a_tier_fires_while_both_windows_burn_above_its_factor() -> None:
    times = [0, 60, 120, 180, 240, 300]
    long = [1.0, 20.0, 20.0, 20.0, 20.0, 20.0]
    short = [1.0, 20.0, None, 20.0, 1.0, 20.0]
    assert firing_stretches(times, long, short, 14.4) == [Stretch(60, 120), Stretch(180, 240), Stretch(300, None)]
    assert fired_text([Stretch(300, None)], 3600) == "since 1970-01-01 00:05:00 UTC"
    assert fired_text([Stretch(60, 120)], 3600) == "1970-01-01 00:01:00 UTC to 1970-01-01 00:02:00 UTC"
    assert fired_text([], 14_400) == "not in the last 4h"


def test_the_sparkline_covers_24_hours_hourly() -> None:
    query = sparkline_query(objective(), recorded=False)
    assert (query.span, query.step, query.points) == (86_400, 3_600, 25)
    assert query == RangeQuery(query.expr, 86_400, 3_600)


def test_view_building_never_changes_the_body() -> None:
    body = slo("web", state="Exhausted", remaining=-0.1)
    before = copy.deepcopy(body)
    board, bodies = world(body)
    overview(board, bodies)
    detail(board, bodies, "shop", "web")
    assert body == before
