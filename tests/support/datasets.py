"""One backfilled 30-day dataset of synthetic services whose answers are known in closed form.

Every service is a `job` label on the same metrics a real HTTP service exports:
`http_requests_total{job, code="200"|"500"}` and, for `latency`, the histogram
`http_request_duration_seconds{job, le}`. The history ends at `NOW`; query it with an explicit time.

| job         | traffic                                      | what it exercises                             |
|-------------|----------------------------------------------|-----------------------------------------------|
| `steady`    | 10 req/s, 0.05 % errors                      | burn 0.5 in every window; budget left 0.5     |
| `spike`     | 20 req/s, 0.05 % errors; 2 % in the last 1 h | burn 20 on 5m/30m/1h, see below               |
| `exhausted` | 5 req/s, 0.2 % errors                        | burn 2; budget remaining -1.0                 |
| `idle`      | series present, counters flat at 0           | zero traffic: rate 0, ratio NaN               |
| `absent`    | no series at all                             | series absent: empty results                  |
| `latency`   | 8 req/s, 1 % slower than 0.3 s (histogram)   | latency SLI at `LATENCY_THRESHOLD`; burn 10   |
| `stale`     | 4 req/s, 0.05 % errors, last sample NOW - 1h | stale: no result in windows up to 1 h         |

`spike` against the SRE-workbook tiers (objective 99.9 %): page 1h/5m fires (20 and 20 > 14.4); page 6h/30m
does not (6h burns 3.75 < 6, 30m burns 20); ticket 1d/2h does not (1.3125 < 3, 2h 10.25); ticket 3d/6h does not
(0.7708 < 1). Its 30 d burn is 0.5271, so 0.4729 of the budget remains.

`EXPECTED[job]` holds the answers; burn rates and budgets follow from them and `OBJECTIVE`.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from tests.support.openmetrics import (
    CounterSeries,
    Document,
    HistogramSeries,
    PiecewiseRate,
    Resolution,
    backfill,
    sample_times,
)
from tests.support.prometheus import PrometheusServer

NOW = datetime(2026, 11, 1, tzinfo=UTC)
"""The instant the history ends; the last sample of every live series is exactly here."""
MINUTE = 60
HOUR = 3600
DAY = 86400
SLO_WINDOW = 30 * DAY
OBJECTIVE = 0.999
"""The objective the expected burn rates and budgets refer to."""
LATENCY_THRESHOLD = 0.3
"""Seconds; `latency` requests slower than this are the errors of its SLI."""
WINDOWS = (5 * MINUTE, 30 * MINUTE, HOUR, 2 * HOUR, 6 * HOUR, DAY, 3 * DAY, SLO_WINDOW)
"""The SRE-workbook windows (seconds) that `EXPECTED` covers."""

REQUESTS = "http_requests"
"""Counter family; the series are `http_requests_total`."""
DURATION = "http_request_duration_seconds"

_END = NOW.timestamp()
_START = _END - 31 * DAY
# Hourly samples for old history, 1 m for the last 3 days, 15 s for the last 2 hours (so [5m] is exact).
RESOLUTIONS = (
    Resolution(since=_START, step=HOUR),
    Resolution(since=_END - 3 * DAY, step=MINUTE),
    Resolution(since=_END - 2 * HOUR, step=15),
)
_LATENCY_BUCKETS = {0.1: 0.9, LATENCY_THRESHOLD: 0.99, 1.0: 0.999}


@dataclass(frozen=True, slots=True)
class Service:
    """How a synthetic service's traffic was generated."""

    job: str
    ok: PiecewiseRate
    """Good requests per second (`code="200"`, or for `latency` at most LATENCY_THRESHOLD)."""
    errors: PiecewiseRate
    """Bad requests per second (`code="500"`, or for `latency` slower than LATENCY_THRESHOLD)."""
    last_sample: float = _END
    """Unix seconds of the last scraped sample."""

    def requests(self, start: float, end: float) -> float:
        return self.ok.events(start, end) + self.errors.events(start, end)


def _rate(per_second: float) -> PiecewiseRate:
    return PiecewiseRate.constant(per_second, since=_START)


_LATENCY_RPS = 8.0
_SLOW = 1 - _LATENCY_BUCKETS[LATENCY_THRESHOLD]
SERVICES: Mapping[str, Service] = {
    service.job: service
    for service in (
        Service("steady", _rate(10 * 0.9995), _rate(10 * 0.0005)),
        Service(
            "spike",
            _rate(20 * 0.9995).then(20 * 0.98, since=_END - HOUR),
            _rate(20 * 0.0005).then(20 * 0.02, since=_END - HOUR),
        ),
        Service("exhausted", _rate(5 * 0.998), _rate(5 * 0.002)),
        Service("idle", _rate(0), _rate(0)),
        Service("latency", _rate(_LATENCY_RPS * (1 - _SLOW)), _rate(_LATENCY_RPS * _SLOW)),
        Service("stale", _rate(4 * 0.9995), _rate(4 * 0.0005), last_sample=_END - HOUR),
    )
}
ABSENT_JOB = "absent"
"""A job with no series at all."""


@dataclass(frozen=True, slots=True)
class Expected:
    """What Prometheus must answer for one job at NOW, derived from the generating rates."""

    total_rate: Mapping[int, float | None]
    """Requests per second averaged over each window; None when the window holds under two samples.

    At a stale edge Prometheus extrapolates half a sample interval, up to 0.2 % above this.
    """
    error_ratio: Mapping[int, float | None]
    """Errors over total in each window; None when there was no traffic or no data."""
    newest_sample_age: float | None
    """Seconds from the newest sample to NOW; None when there is no series. Seeing past 5 m takes a range
    lookup such as `max_over_time(timestamp(x)[2h:1m])`: an instant selector ignores older samples."""

    def burn_rate(self, window: int, *, objective: float = OBJECTIVE) -> float | None:
        ratio = self.error_ratio[window]
        return None if ratio is None else ratio / (1 - objective)

    def budget_remaining(self, *, objective: float = OBJECTIVE) -> float | None:
        burn = self.burn_rate(SLO_WINDOW, objective=objective)
        return None if burn is None else 1 - burn


def _expected(service: Service) -> Expected:
    total_rate: dict[int, float | None] = {}
    error_ratio: dict[int, float | None] = {}
    for window in WINDOWS:
        start = _END - window
        if service.last_sample <= start:
            total_rate[window] = error_ratio[window] = None
            continue
        total = service.requests(start, service.last_sample)
        total_rate[window] = total / window
        error_ratio[window] = service.errors.events(start, service.last_sample) / total if total else None
    return Expected(total_rate, error_ratio, newest_sample_age=_END - service.last_sample)


EXPECTED: Mapping[str, Expected] = {
    **{job: _expected(service) for job, service in SERVICES.items()},
    ABSENT_JOB: Expected(total_rate=dict.fromkeys(WINDOWS), error_ratio=dict.fromkeys(WINDOWS), newest_sample_age=None),
}


def openmetrics_text() -> str:
    """The whole dataset as one OpenMetrics document."""
    times = sample_times(start=_START, end=_END, resolutions=RESOLUTIONS)
    document = Document()
    ratio_services = [service for service in SERVICES.values() if service.job != "latency"]
    document.counter(REQUESTS, _request_series(ratio_services), times=times)
    latency = SERVICES["latency"]
    histogram = HistogramSeries({"job": latency.job}, _rate(_LATENCY_RPS), _LATENCY_BUCKETS, mean=0.06)
    document.histogram(DURATION, [histogram], times=times)
    return document.text()


def _request_series(services: list[Service]) -> Iterator[CounterSeries]:
    for service in services:
        for code, rate in (("200", service.ok), ("500", service.errors)):
            yield CounterSeries({"job": service.job, "code": code}, rate, last_sample=service.last_sample)


def build_storage(storage_dir: Path) -> Path:
    """Backfill the dataset into `storage_dir` and return it."""
    backfill(openmetrics_text(), storage_dir)
    return storage_dir


@pytest.fixture(scope="session")
def dataset_storage(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """TSDB blocks of the dataset, built once per session. Read-only: copy it to run another server on it."""
    return build_storage(tmp_path_factory.mktemp("dataset") / "blocks")


@pytest.fixture(scope="session")
def dataset_prometheus(dataset_storage: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusServer]:
    """One Prometheus over a copy of the dataset for the whole session. Do not stop it; start your own."""
    workdir = tmp_path_factory.mktemp("dataset-prometheus")
    storage = shutil.copytree(dataset_storage, workdir / "data")
    with PrometheusServer(workdir, storage_dir=storage) as server:
        yield server


def ratio_slo(job: str, *, name: str | None = None) -> dict[str, Any]:
    """A 99.9 %, 30-day ServiceLevelObjective on one of the dataset's jobs (a 5xx is an error)."""
    return {
        "apiVersion": "sloguard.io/v1alpha1",
        "kind": "ServiceLevelObjective",
        "metadata": {"name": name or f"{job}-availability", "namespace": "shop"},
        "spec": {
            "objective": 99.9,
            "window": "30d",
            "indicator": {
                "ratio": {
                    "errors": f'http_requests_total{{job="{job}",code=~"5.."}}',
                    "total": f'http_requests_total{{job="{job}"}}',
                }
            },
            "targets": [{"kind": "Deployment", "name": job}],
        },
    }
