"""The recording rules the operator manages: which queries, how often, and under which labels."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from slo_guard.domain.durations import parse_duration
from slo_guard.domain.model import LabelMatcher, MatchOp, Objective, RatioIndicator
from slo_guard.domain.recording import (
    EVALUATED_RECORD,
    PERIOD_LABEL,
    QUERY_LABEL,
    SHARD_LABEL,
    VALUE_RECORD,
    managed_rule_groups,
    measurement_queries,
    query_key,
    refresh_period,
)
from slo_guard.domain.selectors import parse_selector
from slo_guard.domain.windows import default_tiers

MINUTE = 60
DAY = 86_400


def slo(*, window: int = 30 * DAY, interval: int = 30, name: str = "checkout") -> Objective:
    return Objective(
        name=name,
        namespace="shop",
        objective=0.999,
        window=window,
        indicator=RatioIndicator(
            errors=parse_selector('http_requests_total{job="checkout",code=~"5.."}'),
            total=parse_selector('http_requests_total{job="checkout"}'),
        ),
        tiers=default_tiers(window, min_step=30),
        evaluation_interval=interval,
    )


@pytest.mark.parametrize(
    ("window", "period"),
    [(30 * DAY, 60 * MINUTE), (3 * DAY, 6 * MINUTE), (DAY, 2 * MINUTE), (6 * 3600, 30), (5 * MINUTE, 30)],
)
def test_a_window_is_recomputed_every_720th_of_its_length_but_never_faster_than_the_interval(
    window: int, period: int
) -> None:
    assert refresh_period(window, interval=30) == period


def test_refresh_periods_are_whole_intervals() -> None:
    assert refresh_period(7 * DAY, interval=45) == 810  # 7 d / 720 = 840 s, rounded down to 18 intervals


def test_every_query_an_evaluation_sends_is_recorded_once_at_its_windows_period() -> None:
    objective = slo()
    groups = managed_rule_groups(objective)
    recorded = {
        rule["labels"][QUERY_LABEL]: parse_duration(group["interval"])
        for group in groups
        for rule in group["rules"]
        if rule["record"] == VALUE_RECORD
    }
    plan = measurement_queries(objective)
    expected = {query_key(plan.freshness): 30}
    for window in plan.windows:
        expected[query_key(window.errors)] = refresh_period(window.window, interval=30)
        expected[query_key(window.total)] = refresh_period(window.window, interval=30)
    assert recorded == expected
    assert [group["interval"] for group in groups] == ["30s", "2m", "6m", "1h"]


def test_each_group_records_when_it_ran_last_and_answers_even_without_data() -> None:
    """Last, so that a group's time readable means every value of that evaluation is readable too."""
    for group in managed_rule_groups(slo()):
        *values, heartbeat = group["rules"]
        assert heartbeat == {
            "record": EVALUATED_RECORD,
            "expr": "vector(time())",
            "labels": {"sloguard_namespace": "shop", "sloguard_slo": "checkout", PERIOD_LABEL: group["interval"]},
        }
        assert all(rule["expr"].endswith(" or on() vector(-Inf)") for rule in values)


def test_a_sharded_slos_series_all_carry_its_shard_and_an_unsharded_ones_none() -> None:
    """With --shards N each replica reads back only its shards' series, and a shard's new holder finds them."""
    sharded = managed_rule_groups(slo(), shard=3)
    assert all(rule["labels"][SHARD_LABEL] == "3" for group in sharded for rule in group["rules"])
    plain = managed_rule_groups(slo())
    assert not any(SHARD_LABEL in rule["labels"] for group in plain for rule in group["rules"])


def test_the_tenant_label_is_part_of_every_recorded_query() -> None:
    tenant = (LabelMatcher("namespace", MatchOp.EQUAL, "shop"),)
    plan = measurement_queries(slo(), extra=tenant)
    assert all('namespace="shop"' in query for w in plan.windows for query in (w.errors, w.total))
    tenant_keys = {query_key(w.total) for w in plan.windows}
    plain_keys = {query_key(w.total) for w in measurement_queries(slo()).windows}
    assert tenant_keys.isdisjoint(plain_keys)


def test_promtool_accepts_the_managed_rules(tmp_path: Path) -> None:
    from tests.support.prometheus import prometheus_bin

    groups = [*managed_rule_groups(slo()), *managed_rule_groups(slo(window=MINUTE * 60, interval=1, name="api"))]
    path = tmp_path / "managed.yaml"
    path.write_text(yaml.safe_dump({"groups": groups}), encoding="utf-8")
    result = subprocess.run(
        [str(prometheus_bin("promtool")), "check", "rules", str(path)], capture_output=True, text=True, check=False
    )
    rules = sum(len(group["rules"]) for group in groups)
    assert f"SUCCESS: {rules} rules found" in result.stdout + result.stderr
