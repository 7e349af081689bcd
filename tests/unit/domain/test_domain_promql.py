import math
from collections.abc import Callable

import promql_parser
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client.utils import floatToGoString

from slo_guard.domain.model import Indicator, LabelMatcher, LatencyIndicator, MatchOp, RatioIndicator
from slo_guard.domain.promql import (
    error_ratio_query,
    errors_query,
    format_bucket_bound,
    freshness_query,
    total_query,
)
from slo_guard.domain.selectors import SelectorError, parse_selector

RATIO = RatioIndicator(
    errors=parse_selector('http_requests_total{job="api",code=~"5.."}'),
    total=parse_selector('http_requests_total{job="api"}'),
)
LATENCY = LatencyIndicator(histogram=parse_selector('http_request_duration_seconds{job="api"}'), threshold=0.3)
TENANT = (LabelMatcher("namespace", MatchOp.EQUAL, "shop"),)


def test_ratio_queries() -> None:
    assert errors_query(RATIO, 300) == 'sum(rate(http_requests_total{job="api",code=~"5.."}[5m]))'
    assert total_query(RATIO, 300) == 'sum(rate(http_requests_total{job="api"}[5m]))'
    assert error_ratio_query(RATIO, 5_400) == (
        'sum(rate(http_requests_total{job="api",code=~"5.."}[1h30m]))'
        ' / sum(rate(http_requests_total{job="api"}[1h30m]))'
    )
    assert freshness_query(RATIO) == 'max(timestamp(http_requests_total{job="api"}))'


def test_latency_queries_count_requests_above_the_threshold_bucket_as_errors() -> None:
    count = 'sum(rate(http_request_duration_seconds_count{job="api"}[30d]))'
    good = 'sum(rate(http_request_duration_seconds_bucket{job="api",le="0.3"}[30d]))'
    assert total_query(LATENCY, 2_592_000) == count
    assert errors_query(LATENCY, 2_592_000) == f"{count} - {good}"
    assert error_ratio_query(LATENCY, 2_592_000) == f"({count} - {good}) / {count}"
    assert freshness_query(LATENCY) == 'max(timestamp(http_request_duration_seconds_count{job="api"}))'


def test_forced_tenant_matcher_comes_after_the_users_and_before_le() -> None:
    assert errors_query(LATENCY, 3_600, extra=TENANT) == (
        'sum(rate(http_request_duration_seconds_count{job="api",namespace="shop"}[1h]))'
        ' - sum(rate(http_request_duration_seconds_bucket{job="api",namespace="shop",le="0.3"}[1h]))'
    )


def vector_selectors(query: str) -> list[promql_parser.VectorSelector]:
    found: list[promql_parser.VectorSelector] = []

    def visit(node: object) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            found.append(node)

    promql_parser.walk(promql_parser.parse(query), visit)
    return found


def all_queries(indicator: Indicator) -> list[str]:
    return [
        errors_query(indicator, 300, extra=TENANT),
        total_query(indicator, 300, extra=TENANT),
        error_ratio_query(indicator, 300, extra=TENANT),
        freshness_query(indicator, extra=TENANT),
    ]


@pytest.mark.parametrize("indicator", [RATIO, LATENCY], ids=["ratio", "latency"])
def test_every_selector_in_every_query_carries_the_tenant_matcher(indicator: Indicator) -> None:
    for query in all_queries(indicator):
        selectors = vector_selectors(query)
        assert selectors, query
        for selector in selectors:
            assert ("namespace", "shop") in [(m.name, m.value) for m in selector.matchers.matchers], query


def test_a_hostile_value_stays_inside_its_label_value() -> None:
    hostile = RatioIndicator(
        errors=parse_selector(r'errors_total{job="x\"}) or vector(1) #"}'),
        total=parse_selector("requests_total{job='x\\'} or vector(1)'}"),
    )
    expr = promql_parser.parse(error_ratio_query(hostile, 300))
    assert isinstance(expr, promql_parser.BinaryExpr)
    assert [selector.name for selector in vector_selectors(error_ratio_query(hostile, 300))] == [
        "errors_total",
        "requests_total",
    ]
    assert [selector.matchers.matchers[0].value for selector in vector_selectors(error_ratio_query(hostile, 300))] == [
        'x"}) or vector(1) #',
        "x'} or vector(1)",
    ]


@pytest.mark.parametrize(
    ("threshold", "label"),
    [
        (0.3, "0.3"),
        (1.0, "1"),
        (0.25, "0.25"),
        (10.0, "10"),
        (2.5, "2.5"),
        (0.005, "0.005"),
        (0.0001, "0.0001"),
        (1e-05, "1e-05"),
        (2.5e-07, "2.5e-07"),
        (100_000.0, "100000"),
        (1e6, "1e+06"),
        (1_234_567.0, "1.234567e+06"),
        (1e100, "1e+100"),
        (0.1 + 0.2, "0.30000000000000004"),
    ],
)
def test_bucket_bounds_are_written_like_go_client_libraries(threshold: float, label: str) -> None:
    assert format_bucket_bound(threshold) == label


@settings(deadline=None)
@given(st.floats(min_value=0, exclude_min=True, allow_infinity=False))
def test_bucket_bounds_match_the_python_client_go_emulation(threshold: float) -> None:
    # prometheus_client mimics Go's formatting, except that it keeps Python's ".0" on whole numbers below 1e6.
    assert format_bucket_bound(threshold) == floatToGoString(threshold).removesuffix(".0")


@pytest.mark.parametrize("threshold", [math.inf, -math.inf, math.nan])
def test_non_finite_thresholds_are_refused(threshold: float) -> None:
    indicator = LatencyIndicator(histogram=parse_selector("h"), threshold=threshold)
    with pytest.raises(ValueError, match="finite"):
        errors_query(indicator, 300)


LE_ALREADY_MATCHED = LatencyIndicator(histogram=parse_selector('h{job="api",le="0.5"}'), threshold=0.3)


@pytest.mark.parametrize(
    "build",
    [
        lambda: errors_query(LE_ALREADY_MATCHED, 300),
        lambda: total_query(LE_ALREADY_MATCHED, 300),
        lambda: error_ratio_query(LE_ALREADY_MATCHED, 300),
        lambda: freshness_query(LE_ALREADY_MATCHED),
    ],
    ids=["errors", "total", "error_ratio", "freshness"],
)
def test_a_histogram_selector_with_its_own_le_matcher_is_refused(build: Callable[[], str]) -> None:
    with pytest.raises(SelectorError, match="must not match on 'le'"):
        build()
