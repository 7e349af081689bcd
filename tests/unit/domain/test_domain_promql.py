import math
import re
from collections.abc import Callable
from decimal import Decimal

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
LE_0_3 = r'le=~"0?\\.30*|3(?:\\.0*)?[eE]-0*1"'
"""The bucket matcher for 0.3, as PromQL text: `0.3`, `.3`, `0.30`, `3e-01`, `3.0E-1`, ..."""


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
    good = f'sum(rate(http_request_duration_seconds_bucket{{job="api",{LE_0_3}}}[30d]))'
    assert total_query(LATENCY, 2_592_000) == count
    assert errors_query(LATENCY, 2_592_000) == f"{count} - {good}"
    assert error_ratio_query(LATENCY, 2_592_000) == f"({count} - {good}) / {count}"
    assert freshness_query(LATENCY) == 'max(timestamp(http_request_duration_seconds_count{job="api"}))'


def test_forced_tenant_matcher_comes_after_the_users_and_before_le() -> None:
    assert errors_query(LATENCY, 3_600, extra=TENANT) == (
        'sum(rate(http_request_duration_seconds_count{job="api",namespace="shop"}[1h]))'
        f' - sum(rate(http_request_duration_seconds_bucket{{job="api",namespace="shop",{LE_0_3}}}[1h]))'
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


def bucket_selected(threshold: float, le: str) -> bool:
    """Whether Prometheus selects the bucket series labelled `le` for `threshold` (`=~` is fully anchored)."""
    indicator = LatencyIndicator(histogram=parse_selector("h"), threshold=threshold)
    [bucket] = [s for s in vector_selectors(errors_query(indicator, 300)) if s.name == "h_bucket"]
    [matcher] = [m for m in bucket.matchers.matchers if m.name == "le"]
    if str(matcher.op) == "MatchOp.Equal":
        return bool(matcher.value == le)
    assert str(matcher.op) == "MatchOp.Re"
    return re.fullmatch(matcher.value, le) is not None


def prometheus3_spelling(value: float) -> str:
    """How Prometheus 3 rewrites every classic-histogram `le`: Go's spelling, plus `.0` when it has no `.` or `e`."""
    go = floatToGoString(value).removesuffix(".0")
    return go if "." in go or "e" in go else f"{go}.0"


def java_spelling(value: float) -> str:
    """Java's `Double.toString`, which the Java client writes: `0.25`, `1.0`, `1.0E-5`, `1.0E7`."""
    number = Decimal(repr(value)).normalize()
    if 1e-3 <= value < 1e7:
        plain = f"{number:f}"
        return plain if "." in plain else f"{plain}.0"
    mantissa, exponent = f"{number:E}".split("E")
    return f"{mantissa if '.' in mantissa else mantissa + '.0'}E{int(exponent)}"


CLIENT_SPELLINGS: list[Callable[[float], str]] = [
    format_bucket_bound,
    floatToGoString,
    prometheus3_spelling,
    java_spelling,
]
"""Go, the Python client, Prometheus 3's normalised form, the Java client."""


@pytest.mark.parametrize(
    ("threshold", "spellings"),
    [
        (1.0, ["1", "1.0", "1.00", "1.", "1e+00", "1e0", "1e-0", "1E0", "1.0e+00", "1.0E0"]),
        (0.25, ["0.25", ".25", "0.250", "2.5e-01", "2.5e-1", "2.50E-01", "2.5E-1"]),
        (10.0, ["10", "10.0", "1e+01", "1e1", "1.0E1", "1.00e+001"]),
        (1e-05, ["1e-05", "1.0E-5", "1e-5", "0.00001", "0.000010"]),
        (1e6, ["1e+06", "1000000", "1000000.0", "1.0E6"]),
        (1.5e-07, ["1.5e-07", "1.5E-7", "1.50e-07", "0.00000015"]),
    ],
)
def test_the_threshold_bucket_is_selected_in_every_spelling(threshold: float, spellings: list[str]) -> None:
    assert [le for le in spellings if not bucket_selected(threshold, le)] == []


@pytest.mark.parametrize(
    ("threshold", "neighbours"),
    [
        (1.0, ["10", "10.0", "1.5", "0.1", "11", "1.01", "0.01", "1e1", "1e-1", "1e+10", "+Inf", "", "-1"]),
        (0.25, ["0.025", "2.5", "0.2", "0.251", "0.255", "25", "2.5e-02", "2.5e-10", "2.5e+01"]),
        (10.0, ["1", "100", "1.0", "10.5", "1e+00", "1e+10", "1e+011"]),
        (1e-05, ["1e-06", "1e-50", "0.0001", "1.5e-05", "1e-055"]),
    ],
)
def test_no_other_bucket_is_selected(threshold: float, neighbours: list[str]) -> None:
    assert [le for le in neighbours if bucket_selected(threshold, le)] == []


@settings(deadline=None)
@given(
    threshold=st.floats(min_value=0, exclude_min=True, allow_infinity=False),
    other=st.floats(min_value=0, exclude_min=True, allow_infinity=False),
)
def test_every_clients_spelling_selects_its_own_bound_and_no_other(threshold: float, other: float) -> None:
    bounds = (threshold, other, math.nextafter(threshold, math.inf), math.nextafter(threshold, 0), threshold * 10)
    for bound in filter(math.isfinite, bounds):
        for spelling in CLIENT_SPELLINGS:
            le = spelling(bound)
            assert bucket_selected(threshold, le) is (bound == threshold), (spelling.__name__, le)


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
