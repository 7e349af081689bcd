"""The SRE-workbook math: from measured rates to SLI, error budget, burn rates and a verdict.

Missing data is never read as 0 % or 100 % errors: an absent, stale or trafficless SLO window gives an Unknown
evaluation without numbers, and a window without traffic has an unknown burn rate (None).
Assumes a validated objective: 0 < objective < 1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

from slo_guard.domain.display import budget_percent
from slo_guard.domain.durations import format_duration
from slo_guard.domain.evaluation_types import (
    AlertStatus,
    Evaluation,
    Measurements,
    State,
    UnknownReason,
    WindowRates,
)
from slo_guard.domain.model import BurnRateTier, Indicator, LatencyIndicator, Objective
from slo_guard.domain.promql import format_bucket_bound
from slo_guard.domain.windows import required_windows

_ABSENT = WindowRates(errors=None, total=None)


@dataclass(frozen=True, slots=True)
class _Unknown:
    reason: UnknownReason
    message: str


def evaluate(objective: Objective, measurements: Measurements, *, now: datetime, max_staleness: float) -> Evaluation:
    """Judge `objective` from the rates read at `now`; `max_staleness` is the oldest usable newest sample (s)."""
    slo_ratio = _slo_error_ratio(objective, measurements, max_staleness=max_staleness)
    if isinstance(slo_ratio, _Unknown):
        return Evaluation(state=State.UNKNOWN, reason=slo_ratio.reason, message=slo_ratio.message, evaluated_at=now)
    burn_rates = {
        window: _burn_rate(objective, measurements.windows.get(window, _ABSENT))
        for window in required_windows(objective)
    }
    remaining = 1.0 - slo_ratio / objective.error_budget
    alerts = tuple(_alert(tier, burn_rates) for tier in objective.tiers)
    state, message = _verdict(objective, remaining=remaining, alerts=alerts, burn_rates=burn_rates)
    return Evaluation(
        state=state,
        reason=None,
        message=message,
        evaluated_at=now,
        sli=1.0 - slo_ratio,
        budget_remaining=remaining,
        burn_rates=burn_rates,
        alerts=alerts,
        time_to_exhaustion=_time_to_exhaustion(objective, remaining=remaining, burn_rates=burn_rates),
    )


def unavailable(*, now: datetime, message: str) -> Evaluation:
    """The verdict when Prometheus could not be asked at all."""
    return Evaluation(
        state=State.UNKNOWN, reason=UnknownReason.PROMETHEUS_UNAVAILABLE, message=message, evaluated_at=now
    )


def error_ratio(indicator: Indicator, rates: WindowRates) -> float | None:
    """errors / total in [0, 1]; None when the window had no traffic or the errors cannot be known.

    For a ratio SLI an absent errors series means no errors happened (nothing ever created it). For a latency
    SLI it means the `le` bucket does not exist, which says nothing about how many requests were fast.
    """
    total = rates.total
    if total is None or not math.isfinite(total) or total <= 0:
        return None
    errors = rates.errors
    if errors is None and not isinstance(indicator, LatencyIndicator):
        errors = 0.0
    if errors is None or not math.isfinite(errors):
        return None
    # Scrape skew and counter resets can briefly put errors above total, or good above count.
    return min(max(errors / total, 0.0), 1.0)


def _slo_error_ratio(objective: Objective, measurements: Measurements, *, max_staleness: float) -> float | _Unknown:
    """The SLO window's error ratio, or why there is none (checked in this order)."""
    span = format_duration(objective.window)
    rates = measurements.windows.get(objective.window, _ABSENT)
    if rates.total is None or not math.isfinite(rates.total):
        return _Unknown(UnknownReason.NO_DATA, f"No samples for the total series over {span}")
    age = measurements.newest_sample_age
    if age is None or age > max_staleness:
        return _Unknown(UnknownReason.STALE_DATA, _stale_message(age, max_staleness=max_staleness))
    if rates.total <= 0:
        return _Unknown(UnknownReason.NO_TRAFFIC, f"No traffic over {span}: the total rate is 0")
    ratio = error_ratio(objective.indicator, rates)
    if ratio is None:
        return _Unknown(UnknownReason.NO_DATA, _unknown_errors_message(objective.indicator, span=span))
    return ratio


def _stale_message(age: float | None, *, max_staleness: float) -> str:
    if age is None:
        return f"No recent sample of the total series (the newest must be at most {max_staleness:g}s old)"
    return f"The newest sample of the total series is {age:.0f}s old (at most {max_staleness:g}s allowed)"


def _unknown_errors_message(indicator: Indicator, *, span: str) -> str:
    if isinstance(indicator, LatencyIndicator):
        bucket = format_bucket_bound(indicator.threshold)
        return (
            f"No bucket with le equal to {bucket} in histogram {indicator.histogram.metric}: "
            "the threshold must be one of its bucket boundaries"
        )
    return f"The errors rate over {span} is not a number"


def _burn_rate(objective: Objective, rates: WindowRates) -> float | None:
    ratio = error_ratio(objective.indicator, rates)
    return None if ratio is None else ratio / objective.error_budget


BURN_RATE_ROUNDING = 1e-9
"""Relative float error a burn rate may carry (0.1 / (1 - 0.9) is 1.0000000000000002): within it, a burn rate is on
its factor, not above it, so an SLO spending its budget exactly on schedule never fires."""


def _alert(tier: BurnRateTier, burn_rates: dict[int, float | None]) -> AlertStatus:
    long_burn = burn_rates.get(tier.long_window)
    short_burn = burn_rates.get(tier.short_window)
    firing = (
        long_burn is not None
        and short_burn is not None
        and min(long_burn, short_burn) > tier.factor * (1 + BURN_RATE_ROUNDING)
    )
    return AlertStatus(
        severity=tier.severity,
        long_window=tier.long_window,
        short_window=tier.short_window,
        factor=tier.factor,
        firing=firing,
    )


def _verdict(
    objective: Objective,
    *,
    remaining: float,
    alerts: tuple[AlertStatus, ...],
    burn_rates: dict[int, float | None],
) -> tuple[State, str]:
    span = format_duration(objective.window)
    left = f"{budget_percent(remaining)} of the error budget left over {span}"
    if remaining <= 0:
        return State.EXHAUSTED, f"Error budget exhausted: {left}"
    firing = next((alert for alert in alerts if alert.firing), None)
    if firing is None:
        return State.HEALTHY, f"Healthy: {left}"
    windows = f"{format_duration(firing.long_window)}/{format_duration(firing.short_window)}"
    burn = burn_rates[firing.long_window]
    return State.BURNING, f"Burning: {firing.severity} tier {windows} at {burn:.1f}x (> {firing.factor:g}x)"


def _time_to_exhaustion(objective: Objective, *, remaining: float, burn_rates: dict[int, float | None]) -> float | None:
    """Seconds left at the burn rate over the shortest long window (the fastest page tier's)."""
    if remaining <= 0:
        return 0.0
    if not objective.tiers:
        return None
    burn = burn_rates[min(tier.long_window for tier in objective.tiers)]
    if burn is None or burn <= 0:
        return None
    return remaining * objective.window / burn
