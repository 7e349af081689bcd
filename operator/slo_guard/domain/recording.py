"""Recording rules the operator manages so that Prometheus, not the operator, computes every SLO's queries.

Each query an evaluation sends (see `measurement_queries`) is recorded under one series name, keyed by a hash of
its text. The operator then reads every SLO's numbers with a constant number of queries per cycle, and a
query whose recorded value is missing or old is sent directly instead.

A window of W seconds is recomputed every `refresh_period` (W/720, never faster than the SLO's interval): a
30-day budget is refreshed hourly, the 1-day ticket window every 2 minutes, while the page tiers' windows (6 h
and shorter) keep the SLO's own cadence. Scanning 30 days of samples every cycle is what makes naive SLO
evaluation expensive; a value at most W/720 old moves the budget it reports by at most factor/720 of it.

Every rule answers on every evaluation: an absent result is recorded as -Inf (no rate, ratio or timestamp is
ever -Inf), so a value read back always comes from the group's latest evaluation.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from slo_guard.domain.durations import format_duration, parse_duration
from slo_guard.domain.model import LabelMatcher, Objective
from slo_guard.domain.promql import errors_query, freshness_query, total_query
from slo_guard.domain.rules import NAMESPACE_LABEL, SLO_LABEL, RuleGroup
from slo_guard.domain.windows import required_windows

VALUE_RECORD = "sloguard_operator:query:value"
"""The recorded result of one query; `query` holds the hash of its text."""
EVALUATED_RECORD = "sloguard_operator:rule_group:evaluated_timestamp"
"""`time()` at each evaluation of a managed group: the age of every value recorded with it."""
QUERY_LABEL = "query"
PERIOD_LABEL = "period"
SHARD_LABEL = "sloguard_shard"
"""With `--shards N`, the SLO's shard: each replica reads back only the series of the shards it holds."""
ABSENT = -math.inf
"""Recorded when the query has no result."""
REFRESH_DIVISOR = 720
"""A window is recomputed every window/720 seconds: 30 d hourly, 1 d every 2 minutes."""
GROUP_PREFIX = "sloguard-operator"


@dataclass(frozen=True, slots=True)
class WindowQueries:
    window: int
    errors: str
    total: str


@dataclass(frozen=True, slots=True)
class MeasurementQueries:
    """Every query one evaluation of an SLO needs, as the text sent to Prometheus."""

    freshness: str
    windows: tuple[WindowQueries, ...]


def measurement_queries(objective: Objective, *, extra: Sequence[LabelMatcher] = ()) -> MeasurementQueries:
    indicator = objective.indicator
    return MeasurementQueries(
        freshness=freshness_query(indicator, extra=extra),
        windows=tuple(
            WindowQueries(
                window=window,
                errors=errors_query(indicator, window, extra=extra),
                total=total_query(indicator, window, extra=extra),
            )
            for window in required_windows(objective)
        ),
    )


def query_key(expr: str) -> str:
    """A short, stable name for a query's text, used as a label value."""
    return hashlib.sha256(expr.encode()).hexdigest()[:20]


def refresh_period(window: int, *, interval: int) -> int:
    """Seconds between recomputations of a `window`-second query: a multiple of `interval`, at least one."""
    steps = window // REFRESH_DIVISOR // interval
    return max(1, steps) * interval


def managed_rule_groups(
    objective: Objective, *, extra: Sequence[LabelMatcher] = (), shard: int | None = None
) -> list[RuleGroup]:
    """One group per refresh period; the freshness query runs at the SLO's interval. `shard` labels every series."""
    interval = objective.evaluation_interval
    queries = measurement_queries(objective, extra=extra)
    by_period: dict[int, list[str]] = {interval: [queries.freshness]}
    for window in queries.windows:
        period = refresh_period(window.window, interval=interval)
        by_period.setdefault(period, []).extend((window.errors, window.total))
    return [_group(objective, period=period, exprs=exprs, shard=shard) for period, exprs in sorted(by_period.items())]


def query_periods(groups: Sequence[RuleGroup]) -> dict[str, int]:
    """Query key -> seconds between its recomputations, for the groups of one SLO."""
    return {
        rule["labels"][QUERY_LABEL]: parse_duration(group["interval"])
        for group in groups
        for rule in group["rules"]
        if QUERY_LABEL in rule["labels"]
    }


def _group(objective: Objective, *, period: int, exprs: Sequence[str], shard: int | None) -> RuleGroup:
    span = format_duration(period)
    labels = {NAMESPACE_LABEL: objective.namespace, SLO_LABEL: objective.name, PERIOD_LABEL: span}
    if shard is not None:
        labels[SHARD_LABEL] = str(shard)
    rules: list[dict[str, Any]] = [
        {
            "record": VALUE_RECORD,
            "expr": f"({expr}) or on() vector(-Inf)",
            "labels": {**labels, QUERY_LABEL: query_key(expr)},
        }
        for expr in dict.fromkeys(exprs)
    ]
    # Last: a group's rules run in order, so once its time is readable every value it recorded with it is too.
    rules.append({"record": EVALUATED_RECORD, "expr": "vector(time())", "labels": labels})
    return {"name": f"{GROUP_PREFIX}-{objective.namespace}-{objective.name}-{span}", "interval": span, "rules": rules}
