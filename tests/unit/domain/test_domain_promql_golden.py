"""The exact PromQL sent to Prometheus, pinned by files under tests/golden/.

After an intended change, rewrite them with `UPDATE_GOLDEN=1 pytest tests/unit/domain` and review the diff.
"""

from collections.abc import Callable, Sequence

import promql_parser
import pytest
from tests.support.golden import GOLDEN_DIR, assert_matches_golden

from slo_guard.domain.durations import format_duration
from slo_guard.domain.model import LabelMatcher, LatencyIndicator, MatchOp, Objective, RatioIndicator
from slo_guard.domain.promql import error_ratio_query, errors_query, freshness_query, total_query
from slo_guard.domain.selectors import parse_selector
from slo_guard.domain.windows import default_tiers, required_windows

TENANT = (LabelMatcher("namespace", MatchOp.EQUAL, "shop"),)
DAY = 86_400

RATIO = RatioIndicator(
    errors=parse_selector('http_requests_total{job="checkout", code=~"5.."}'),
    total=parse_selector('http_requests_total{job="checkout"}'),
)
LATENCY = LatencyIndicator(
    histogram=parse_selector('http_request_duration_seconds{job="checkout", route!="/healthz"}'), threshold=0.3
)


def objective(*, indicator: RatioIndicator | LatencyIndicator, window: int, min_step: int) -> Objective:
    return Objective(
        name="checkout",
        namespace="shop",
        objective=0.999,
        window=window,
        indicator=indicator,
        tiers=default_tiers(window, min_step=min_step),
    )


GOLDEN = {
    "ratio-30d.promql": objective(indicator=RATIO, window=30 * DAY, min_step=30),
    "latency-30d.promql": objective(indicator=LATENCY, window=30 * DAY, min_step=30),
    "ratio-1h.promql": objective(indicator=RATIO, window=3_600, min_step=5),
}


def golden_queries(slo: Objective) -> list[tuple[str, str]]:
    """(label, query) for every query one evaluation of `slo` sends, in a stable order."""
    queries = []
    for window in required_windows(slo):
        key = format_duration(window)
        queries.append((f"errors {key}", errors_query(slo.indicator, window, extra=TENANT)))
        queries.append((f"total {key}", total_query(slo.indicator, window, extra=TENANT)))
        queries.append((f"error_ratio {key}", error_ratio_query(slo.indicator, window, extra=TENANT)))
    queries.append(("freshness", freshness_query(slo.indicator, extra=TENANT)))
    return queries


def render(slo: Objective) -> str:
    header = f"# Queries for a {format_duration(slo.window)} SLO; regenerate with UPDATE_GOLDEN=1.\n"
    return header + "".join(f"# {label}\n{query}\n" for label, query in golden_queries(slo))


def queries_in(text: str) -> list[str]:
    return [line for line in text.splitlines() if line and not line.startswith("#")]


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_queries_match_the_golden_file(name: str) -> None:
    assert_matches_golden(name, render(GOLDEN[name]))


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_every_golden_query_parses_with_promql_parser(name: str) -> None:
    queries = queries_in((GOLDEN_DIR / name).read_text(encoding="utf-8"))
    assert len(queries) == 3 * len(required_windows(GOLDEN[name])) + 1
    for query in queries:
        promql_parser.parse(query)


@pytest.mark.prometheus
def test_every_golden_query_parses_with_prometheus_itself(prometheus_parses: Callable[[Sequence[str]], None]) -> None:
    prometheus_parses(
        [query for name in sorted(GOLDEN) for query in queries_in((GOLDEN_DIR / name).read_text(encoding="utf-8"))]
    )
