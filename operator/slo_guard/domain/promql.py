"""The PromQL slo-guard sends to Prometheus, built only from parsed selectors (see selectors.py).

Every query is a plain `sum(...)` with no grouping, so each answers with one sample or none: none means the
series are absent, which the evaluation keeps apart from a rate of zero.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

from slo_guard.domain.durations import format_duration
from slo_guard.domain.model import Indicator, LabelMatcher, LatencyIndicator, MatchOp, RatioIndicator, Selector
from slo_guard.domain.selectors import SelectorError, render_selector

BUCKET_LABEL = "le"


def errors_query(indicator: Indicator, window: int, *, extra: Sequence[LabelMatcher] = ()) -> str:
    """Per-second rate of bad events over `window` seconds."""
    if isinstance(indicator, RatioIndicator):
        return _sum_rate(indicator.errors, window=window, extra=extra)
    return f"{total_query(indicator, window, extra=extra)} - {_latency_good(indicator, window=window, extra=extra)}"


def total_query(indicator: Indicator, window: int, *, extra: Sequence[LabelMatcher] = ()) -> str:
    """Per-second rate of all events over `window` seconds."""
    selector, suffix = _total_selector(indicator)
    return _sum_rate(selector, window=window, extra=extra, suffix=suffix)


def error_ratio_query(indicator: Indicator, window: int, *, extra: Sequence[LabelMatcher] = ()) -> str:
    """Fraction of events over `window` seconds that were bad."""
    errors = errors_query(indicator, window, extra=extra)
    if isinstance(indicator, LatencyIndicator):
        errors = f"({errors})"
    return f"{errors} / {total_query(indicator, window, extra=extra)}"


def freshness_query(indicator: Indicator, *, extra: Sequence[LabelMatcher] = ()) -> str:
    """Timestamp of the newest `total` sample within Prometheus's lookback; compare it with the evaluation time."""
    selector, suffix = _total_selector(indicator)
    return f"max(timestamp({render_selector(selector, suffix=suffix, extra=extra)}))"


def format_bucket_bound(value: float) -> str:
    """A histogram bucket boundary as Go client libraries write the `le` label (`0.3`, `1`, `1e-05`).

    That is Go's `strconv.FormatFloat(v, 'g', -1, 64)`: the shortest digits that read back as `value` (the
    same digits Python's `repr` picks), in exponent form when the decimal exponent is below -4 or above 5.
    Messages name the bound this way; queries match every spelling (`bucket_bound_pattern`).
    """
    negative, mantissa, point = _shortest_digits(value)
    text = _plain_form(mantissa, point) if -4 < point <= 6 else _exponent_form(mantissa, point)
    return ("-" if negative else "") + text


def bucket_bound_pattern(value: float) -> str:
    """A regular expression for the `le` label that matches `value` however a client wrote it, and no other number.

    Go writes `1` and `1e-05`, the Python and Java clients `1.0` and `1.0E-5`, and Prometheus 3 stores every
    classic-histogram bound as `1.0` or `1e-05`. So both the plain and the exponent form of the shortest digits
    match, with any zeros after the last digit of the fraction, `e` or `E`, and a `+` or leading zeros in the
    exponent. PromQL anchors the pattern at both ends.
    """
    negative, mantissa, point = _shortest_digits(value)
    sign = "-" if negative else ""
    return f"{sign}{_plain_pattern(mantissa, point)}|{sign}{_exponent_pattern(mantissa, point)}"


def _shortest_digits(value: float) -> tuple[bool, str, int]:
    """(negative, digits, point): `value` is `0.<digits> * 10**point`, with the shortest digits that read back."""
    sign, digits, exponent = Decimal(repr(value)).normalize().as_tuple()
    if not isinstance(exponent, int):  # Decimal's marker for NaN and infinities
        raise ValueError(f"a latency threshold must be a finite number of seconds, got {value!r}")
    mantissa = "".join(map(str, digits))
    return bool(sign), mantissa, len(mantissa) + exponent


def _plain_form(mantissa: str, point: int) -> str:
    if point <= 0:
        return "0." + "0" * -point + mantissa
    if point >= len(mantissa):
        return mantissa + "0" * (point - len(mantissa))
    return f"{mantissa[:point]}.{mantissa[point:]}"


def _exponent_form(mantissa: str, point: int) -> str:
    fraction = f".{mantissa[1:]}" if len(mantissa) > 1 else ""
    exponent = point - 1
    return f"{mantissa[0]}{fraction}e{'-' if exponent < 0 else '+'}{abs(exponent):02d}"


def _plain_pattern(mantissa: str, point: int) -> str:
    if point <= 0:
        return r"0?\." + "0" * -point + mantissa + "0*"
    if point >= len(mantissa):
        return mantissa + "0" * (point - len(mantissa)) + r"(?:\.0*)?"
    return rf"{mantissa[:point]}\.{mantissa[point:]}0*"


def _exponent_pattern(mantissa: str, point: int) -> str:
    fraction = rf"\.{mantissa[1:]}0*" if len(mantissa) > 1 else r"(?:\.0*)?"
    exponent = point - 1
    if exponent > 0:
        digits = rf"\+?0*{exponent}"
    elif exponent < 0:
        digits = f"-0*{-exponent}"
    else:
        digits = "[+-]?0+"
    return f"{mantissa[0]}{fraction}[eE]{digits}"


def _sum_rate(selector: Selector, *, window: int, extra: Sequence[LabelMatcher], suffix: str = "") -> str:
    rendered = render_selector(selector, suffix=suffix, extra=extra)
    return f"sum(rate({rendered}[{format_duration(window)}]))"


def _latency_good(indicator: LatencyIndicator, *, window: int, extra: Sequence[LabelMatcher]) -> str:
    bucket = LabelMatcher(name=BUCKET_LABEL, op=MatchOp.REGEX, value=bucket_bound_pattern(indicator.threshold))
    return _sum_rate(indicator.histogram, window=window, extra=(*extra, bucket), suffix="_bucket")


def _total_selector(indicator: Indicator) -> tuple[Selector, str]:
    """The selector whose samples count all events, and the suffix that names its series."""
    if isinstance(indicator, RatioIndicator):
        return indicator.total, ""
    _check_no_bucket_matcher(indicator.histogram)
    return indicator.histogram, "_count"


def _check_no_bucket_matcher(histogram: Selector) -> None:
    if any(matcher.name == BUCKET_LABEL for matcher in histogram.matchers):
        raise SelectorError(
            f"histogram selector for {histogram.metric!r} must not match on {BUCKET_LABEL!r}: "
            "slo-guard adds the bucket matcher from the threshold"
        )
