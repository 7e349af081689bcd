"""The PromQL shapes `slo-guard import` accepts, and the first thing named in each one it refuses."""

from __future__ import annotations

import promql_parser
import pytest

from slo_guard.domain.model import LabelMatcher, MatchOp, Selector
from slo_guard.importers.queries import Difference, Grouping, QueryFormError, SumRate, parse_query

REQUESTS = Selector("http_requests_total", (LabelMatcher("job", MatchOp.EQUAL, "web"),))
ERRORS = Selector("http_requests_total", (*REQUESTS.matchers, LabelMatcher("code", MatchOp.REGEX, "5..")))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('sum(rate(http_requests_total{job="web"}[5m]))', SumRate("rate", REQUESTS, "5m", None)),
        (
            'sum(rate(http_requests_total{job="web",code=~"5.."}[{{.window}}]))',
            SumRate("rate", ERRORS, "{{.window}}", None),
        ),
        (
            '  sum ( increase ( http_requests_total{ job = "web" } [ 1h ] ) )\n',
            SumRate("increase", REQUESTS, "1h", None),
        ),
        (
            'SUM(rate(http_requests_total{job="web"}[1h])) BY (job)',
            SumRate("rate", REQUESTS, "1h", Grouping("by", frozenset({"job"}))),
        ),
        ('(sum(rate(http_requests_total{job="web"}[1h])))', SumRate("rate", REQUESTS, "1h", None)),
        (
            'sum by (code, job) (rate(http_requests_total{job="web"}[1h]))',
            SumRate("rate", REQUESTS, "1h", Grouping("by", frozenset({"job", "code"}))),
        ),
        (
            'sum(rate(http_requests_total{job="web"}[1h])) without (instance,)',
            SumRate("rate", REQUESTS, "1h", Grouping("without", frozenset({"instance"}))),
        ),
        (
            'sum(rate(http_requests_total{job="web",path="/a]b}"}[1h]))',
            SumRate(
                "rate",
                Selector("http_requests_total", (*REQUESTS.matchers, LabelMatcher("path", MatchOp.EQUAL, "/a]b}"))),
                "1h",
                None,
            ),
        ),
        ("sum(rate(up[1h]))", SumRate("rate", Selector("up"), "1h", None)),
    ],
    ids=[
        "plain",
        "sloth-template",
        "spaces",
        "upper-case",
        "parenthesized",
        "by-before",
        "without-after",
        "brackets-in-a-value",
        "bare-metric",
    ],
)
def test_one_sum_of_a_rate_is_read_with_its_selector_range_and_grouping(text: str, expected: SumRate) -> None:
    assert parse_query(text) == expected
    promql_parser.parse(text.replace("{{.window}}", "30d"))  # and it is PromQL


def test_a_histogram_count_minus_a_bucket_is_a_difference_of_two_sums() -> None:
    text = """(
      sum(rate(h_count{job="web"}[{{.window}}]))
      -
      sum(rate(h_bucket{job="web",le="0.3"}[{{.window}}]))
    )"""
    assert parse_query(text) == Difference(
        SumRate("rate", Selector("h_count", REQUESTS.matchers), "{{.window}}", None),
        SumRate(
            "rate",
            Selector("h_bucket", (*REQUESTS.matchers, LabelMatcher("le", MatchOp.EQUAL, "0.3"))),
            "{{.window}}",
            None,
        ),
    )


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("rate(x[5m])", "expected sum(...)"),
        ("avg(rate(x[5m]))", "expected sum(...)"),
        ("sum(irate(x[5m]))", "expected rate(...) or increase(...)"),
        ("sum(RATE(x[5m]))", "expected rate(...) or increase(...)"),
        ("sum(rate(x[5m])) / 2", "expected the end of the query"),
        ("sum(rate(x[5m])) - sum(rate(y[5m])) - sum(rate(z[5m]))", "expected the end of the query"),
        ("(sum(rate(x[5m])) - sum(rate(y[5m]))) - sum(rate(z[5m]))", "only one subtraction"),
        ("sum(rate(x[5m] offset 1h))", "expected ')'"),
        ("sum(rate(x{a='b'}[5m]) or vector(0))", "expected ')'"),
        ("sum by (a) (rate(x[5m])) by (a)", "two grouping clauses"),
        ("sum(rate({__name__='x'}[5m]))", "expected a metric name"),
        ('sum(rate(x{a="b"[5m]))', "unterminated label matchers"),
        ("sum(rate(x{a=b}[5m]))", "expected a quoted string"),
        ("sum(rate(x[5m]", "expected ')'"),
        ("sum(rate(x[5m", "unterminated range"),
        ("sum by (a b) (rate(x[5m]))", "expected ',' or ')'"),
    ],
)
def test_anything_else_is_refused_with_the_place_it_stops_making_sense(text: str, problem: str) -> None:
    with pytest.raises(QueryFormError, match=problem.replace("(", r"\(").replace(")", r"\)")) as raised:
        parse_query(text)
    assert "offset" in str(raised.value) or "invalid selector" in str(raised.value)
