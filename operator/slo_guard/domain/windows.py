"""Multi-window, multi-burn-rate alert tiers (Google SRE Workbook, "Alerting on SLOs"), scaled to any window."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

from slo_guard.domain.model import BurnRateTier, Objective, Severity

GOOGLE_30D_WINDOW = 30 * 86_400
"""The SLO window the workbook's table is written for, in seconds."""


@dataclass(frozen=True, slots=True)
class TierSpec:
    """One row of the workbook's table; the burn factor is derived from it, never written down."""

    budget_consumed: Fraction
    """Share of the SLO window's error budget spent by the time the tier fires."""
    long_window: int
    """Seconds, for a 30-day SLO window."""
    short_window: int
    """Seconds, for a 30-day SLO window (1/12 of the long one)."""
    severity: Severity


GOOGLE_30D_TIERS = (
    TierSpec(budget_consumed=Fraction("0.02"), long_window=3_600, short_window=300, severity=Severity.PAGE),
    TierSpec(budget_consumed=Fraction("0.05"), long_window=21_600, short_window=1_800, severity=Severity.PAGE),
    TierSpec(budget_consumed=Fraction("0.10"), long_window=86_400, short_window=7_200, severity=Severity.TICKET),
    TierSpec(budget_consumed=Fraction("0.10"), long_window=259_200, short_window=21_600, severity=Severity.TICKET),
)
"""Page 1h/5m x14.4, page 6h/30m x6, ticket 1d/2h x3, ticket 3d/6h x1."""


def default_tiers(window: int, *, min_step: int) -> tuple[BurnRateTier, ...]:
    """The workbook's tiers for an SLO `window` (seconds), each keeping its budget-consumed meaning.

    Windows scale linearly with `window / 30d`, rounded to whole seconds (halves up) and never shorter than
    `2 * min_step`, so a `rate()` always spans at least two samples. The factor is
    `budget_consumed * window / long_window`, computed exactly, raised to 1 when the clamped or rounded long
    window makes it smaller, and rounded once to a float.
    """
    if window <= 0 or min_step <= 0:
        raise ValueError(f"window and min_step must be positive seconds, got {window} and {min_step}")
    return tuple(_scaled_tier(spec, window=window, min_step=min_step) for spec in GOOGLE_30D_TIERS)


def required_windows(objective: Objective) -> tuple[int, ...]:
    """Every window an evaluation needs rates for: the SLO window and each tier's two, ascending, once each."""
    windows = {objective.window}
    for tier in objective.tiers:
        windows.update((tier.long_window, tier.short_window))
    return tuple(sorted(windows))


def _scaled_tier(spec: TierSpec, *, window: int, min_step: int) -> BurnRateTier:
    long_window = _scale(spec.long_window, window=window, floor=2 * min_step)
    short_window = _scale(spec.short_window, window=window, floor=2 * min_step)
    # A tier fires when both burn rates are strictly above its factor; below 1 it would fire on an SLO that
    # ends its window with budget left (a 10m window's 1m page tier would at 0.2x).
    factor = max(spec.budget_consumed * window / long_window, Fraction(1))
    return BurnRateTier(
        severity=spec.severity,
        long_window=long_window,
        short_window=short_window,
        factor=float(factor),
    )


def _scale(seconds: int, *, window: int, floor: int) -> int:
    scaled = Fraction(seconds * window, GOOGLE_30D_WINDOW)
    return max(int(scaled + Fraction(1, 2)), floor)
