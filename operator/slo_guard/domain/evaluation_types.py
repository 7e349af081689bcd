"""What the metrics source measures and what an evaluation concludes."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from slo_guard.domain.model import Severity


@dataclass(frozen=True, slots=True)
class WindowRates:
    """Per-second event rates over one window; None means the series was absent."""

    errors: float | None
    total: float | None


@dataclass(frozen=True, slots=True)
class Measurements:
    """Everything one evaluation read from Prometheus, at one evaluation time."""

    windows: Mapping[int, WindowRates]
    """Keyed by window length in seconds."""
    newest_sample_age: float | None
    """Seconds between the evaluation time and the newest `total` sample; None when no sample is recent."""


class State(enum.StrEnum):
    HEALTHY = "Healthy"
    BURNING = "Burning"
    EXHAUSTED = "Exhausted"
    UNKNOWN = "Unknown"


class UnknownReason(enum.StrEnum):
    """Why an evaluation has no usable data. None of these is ever read as 0 % or 100 % errors."""

    NO_TRAFFIC = "NoTraffic"
    NO_DATA = "NoData"
    STALE_DATA = "StaleData"
    PROMETHEUS_UNAVAILABLE = "PrometheusUnavailable"
    QUERY_REJECTED = "QueryRejected"
    """Prometheus refused to run one of the SLO's queries (e.g. over its sample limit): asking again cannot help."""


@dataclass(frozen=True, slots=True)
class AlertStatus:
    severity: Severity
    long_window: int
    short_window: int
    factor: float
    firing: bool


@dataclass(frozen=True, slots=True)
class Evaluation:
    """The verdict on one SLO at one time."""

    state: State
    reason: UnknownReason | None
    message: str
    """One human sentence explaining the state."""
    evaluated_at: datetime
    sli: float | None = None
    budget_remaining: float | None = None
    burn_rates: Mapping[int, float | None] | None = None
    """Keyed by window seconds; None per window when that window had no traffic."""
    alerts: tuple[AlertStatus, ...] = ()
    time_to_exhaustion: float | None = None
    """Seconds until the budget is gone at the current burn; None when not burning."""

    @property
    def budget_consumed(self) -> float | None:
        return None if self.budget_remaining is None else 1.0 - self.budget_remaining

    @property
    def page_firing(self) -> bool:
        return any(alert.firing and alert.severity is Severity.PAGE for alert in self.alerts)
