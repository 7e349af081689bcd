"""Numbers as people read them. API fields keep fractions; whatever a person reads uses these."""

from __future__ import annotations

import math

NOT_AVAILABLE = "n/a"
"""Shown where there is no number (an Unknown SLO): never 0 % or 100 %."""


def budget_percent(fraction: float | None) -> str:
    """The error budget remaining as a signed percent of the whole budget, one decimal: `+3.0%`, `-50.6%`.

    `fraction` is budget remaining as the API carries it (`status.errorBudget.remaining`): 1 is untouched, 0 is
    spent, below 0 is overspent, so -0.506 (150.6 % consumed) reads `-50.6%`. The sign is always shown so an
    overspent budget cannot be mistaken for a remaining one; a value that rounds to zero keeps its sign (`-0.0%`
    is just spent), and exactly zero has none (`0.0%`). Thousands are separated with commas (`-14,950.0%`).
    None, NaN and infinities read `n/a`.

    Use it for every budget a person reads (the `slo-guard evaluate` table, Events, status messages, the demo),
    so one unit is used everywhere.
    """
    if fraction is None or not math.isfinite(fraction):
        return NOT_AVAILABLE
    if fraction == 0:
        return "0.0%"
    return f"{fraction * 100:+,.1f}%"
