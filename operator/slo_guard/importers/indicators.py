"""Turn an imported SLI's queries or selectors into slo-guard's ratio or latency indicator, exactly or not at all.

slo-guard counts bad events. A source's bad events map directly; its good events map only when the bad ones are
their exact complement: the total's selector with one more matcher (negated, it selects exactly the other series),
or one bucket of the total's histogram (slo-guard's latency indicator).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from slo_guard.domain.model import LabelMatcher, MatchOp, Selector
from slo_guard.domain.promql import BUCKET_LABEL
from slo_guard.domain.selectors import render_selector
from slo_guard.importers.common import Draft, Refusal
from slo_guard.importers.queries import Difference, Query, SumRate, terms

_NEGATED = {
    MatchOp.EQUAL: MatchOp.NOT_EQUAL,
    MatchOp.NOT_EQUAL: MatchOp.EQUAL,
    MatchOp.REGEX: MatchOp.NOT_REGEX,
    MatchOp.NOT_REGEX: MatchOp.REGEX,
}


def from_bad(bad: Query, total: Query, *, bad_field: str, total_field: str, draft: Draft) -> dict[str, Any]:
    """bad / total: a ratio, or (count - bucket) / count: a latency SLI."""
    _check_consistent([(bad_field, bad), (total_field, total)], draft)
    if not isinstance(total, SumRate):
        raise Refusal(total_field, "the total must be one sum(rate(...)), not a difference")
    if isinstance(bad, SumRate):
        return ratio(bad.selector, total.selector)
    count, bucket = bad.minuend.selector, bad.subtrahend.selector
    if not _same(count, total.selector):
        raise Refusal(
            bad_field,
            "a difference maps only as a histogram's _count minus one of its buckets, the _count being the total "
            f"({render_selector(count)} is not {render_selector(total.selector)})",
        )
    return latency(bucket, count, bucket_field=bad_field, count_field=total_field)


def from_good(good: Query, total: Query, *, good_field: str, total_field: str, draft: Draft) -> dict[str, Any]:
    """good / total, through the exact complement of good."""
    _check_consistent([(good_field, good), (total_field, total)], draft)
    for field, query in ((good_field, good), (total_field, total)):
        if isinstance(query, Difference):
            raise Refusal(field, "must be one sum(rate(...)) when the good events are given")
    assert isinstance(good, SumRate)
    assert isinstance(total, SumRate)
    if any(matcher.name == BUCKET_LABEL for matcher in good.selector.matchers):
        return latency(good.selector, total.selector, bucket_field=good_field, count_field=total_field)
    return ratio(complement(good.selector, total.selector, good_field=good_field), total.selector)


def ratio(errors: Selector, total: Selector) -> dict[str, Any]:
    return {"ratio": {"errors": render_selector(errors), "total": render_selector(total)}}


def latency(bucket: Selector, count: Selector, *, bucket_field: str, count_field: str) -> dict[str, Any]:
    """`H_bucket{m, le="b"}` over `H_count{m}`: slo-guard's latency indicator on `H{m}` at threshold b."""
    if not bucket.metric.endswith("_bucket"):
        raise Refusal(bucket_field, f"a latency SLI needs a histogram's _bucket series (got {bucket.metric})")
    base = bucket.metric.removesuffix("_bucket")
    if count.metric != f"{base}_count":
        raise Refusal(count_field, f"must count the same histogram, {base}_count (got {count.metric})")
    bounds = [matcher for matcher in bucket.matchers if matcher.name == BUCKET_LABEL]
    if len(bounds) != 1 or bounds[0].op is not MatchOp.EQUAL:
        raise Refusal(bucket_field, f'needs exactly one {BUCKET_LABEL}="BOUND" matcher, the latency threshold')
    threshold = _bound(bounds[0].value, bucket_field)
    others = [matcher for matcher in bucket.matchers if matcher.name != BUCKET_LABEL]
    if set(others) != set(count.matchers):
        raise Refusal(
            bucket_field,
            f"its matchers besides {BUCKET_LABEL} must be the count's, so both read the same requests "
            f"({render_selector(Selector(base, tuple(others)))} against {render_selector(count)})",
        )
    return {"latency": {"histogram": render_selector(Selector(base, count.matchers)), "threshold": threshold}}


def complement(good: Selector, total: Selector, *, good_field: str) -> Selector:
    """The errors selector: total's matchers plus the negation of the one matcher good adds."""
    extra = [matcher for matcher in good.matchers if matcher not in total.matchers]
    if good.metric != total.metric or not set(total.matchers) <= set(good.matchers) or len(extra) != 1:
        raise Refusal(
            good_field,
            "good events map only as the total's selector with one more matcher (its negation selects the errors) "
            f"or as a bucket of the total's histogram ({render_selector(good)} against {render_selector(total)})",
        )
    [added] = extra
    return Selector(total.metric, (*total.matchers, LabelMatcher(added.name, _NEGATED[added.op], added.value)))


def _bound(value: str, field: str) -> float:
    try:
        threshold = float(value)
    except ValueError:
        raise Refusal(field, f"{BUCKET_LABEL}={value!r} is not a number") from None
    if not math.isfinite(threshold) or threshold <= 0:
        raise Refusal(field, f"{BUCKET_LABEL}={value!r} is no latency threshold (every request is at or under it)")
    return threshold


def _same(first: Selector, second: Selector) -> bool:
    return first.metric == second.metric and set(first.matchers) == set(second.matchers)


def _check_consistent(queries: Sequence[tuple[str, Query]], draft: Draft) -> None:
    """One function across every term, and one grouping, which is then dropped with a warning.

    Grouping every term alike only splits the same events into groups: the source tracks one SLI per group where
    slo-guard tracks their sum. Grouping the terms differently makes the division match groups, which one SLI
    cannot express, so it is refused.
    """
    every = [(field, term) for field, query in queries for term in terms(query)]
    first_field, first = every[0]
    for field, term in every[1:]:
        if term.function != first.function:
            raise Refusal(field, f"uses {term.function} where {first_field} uses {first.function}")
        if term.grouping != first.grouping:
            raise Refusal(
                field,
                f"has {_grouped(term)} where {first_field} has {_grouped(first)}: the division would match series "
                "group by group, which one SLI cannot express",
            )
    if first.grouping is not None:
        dropped_grouping(draft, first_field, str(first.grouping))


def _grouped(term: SumRate) -> str:
    return "no grouping" if term.grouping is None else f"grouping {term.grouping}"


def dropped_grouping(draft: Draft, field: str, grouping: str) -> None:
    draft.warn(
        field, f"grouping {grouping} dropped: slo-guard tracks one SLI over all the series, the source one per group"
    )
