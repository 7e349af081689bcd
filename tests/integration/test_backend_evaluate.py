"""`slo-guard evaluate` on the same history in Prometheus and in VictoriaMetrics: the same states and numbers.

Each backend holds tests/support/datasets.py's 30 days (Prometheus from promtool blocks, VictoriaMetrics imported
over HTTP), so every SLO fixture is asked of both and must give its known answer on both. Where MetricsQL's answer
differs from PromQL's, the difference is asserted within the bound docs/backends.md states: MetricsQL's range
window starts at the last sample before it, PromQL's at the first sample inside it, so when a window's edge falls
between samples the two cover intervals one sample apart.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.support.datasets import (
    ABSENT_JOB,
    EXPECTED,
    LATENCY_THRESHOLD,
    NOW,
    OBJECTIVE,
    REQUESTS,
    RESOLUTIONS,
    WINDOWS,
    ratio_slo,
)
from tests.support.openmetrics import CounterSeries, Document, PiecewiseRate, Resolution, backfill, sample_times
from tests.support.prometheus import PrometheusServer
from tests.support.victoriametrics import VictoriaMetricsServer

from slo_guard.cli import main
from slo_guard.domain.durations import format_duration

pytestmark = pytest.mark.prometheus

REL = 0.005
"""The same bar as test_evaluate_cli.py: 0.5 % relative error against the generating formulas."""
TIERS = (("1h", "5m", 14.4), ("6h", "30m", 6.0), ("1d", "2h", 3.0), ("3d", "6h", 1.0))
STATES = {"steady": "Healthy", "spike": "Burning", "exhausted": "Exhausted", "latency": "Exhausted"}
EXIT_CODES = {"Healthy": 0, "Burning": 0, "Exhausted": 1}
MISALIGNED = NOW - timedelta(seconds=37)
"""Between two 15 s samples (and two 1 m samples): every window's edges fall between samples."""


def latency_slo(threshold: float) -> dict[str, Any]:
    slo = ratio_slo("latency", name="latency-speed")
    slo["spec"]["indicator"] = {
        "latency": {"histogram": 'http_request_duration_seconds{job="latency"}', "threshold": threshold}
    }
    return slo


def slo_for(job: str) -> dict[str, Any]:
    return latency_slo(LATENCY_THRESHOLD) if job == "latency" else ratio_slo(job)


@pytest.fixture
def evaluate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Callable[..., tuple[int, dict[str, Any]]]:
    """`slo-guard evaluate --output json` of one SLO document: (exit code, its status)."""

    def run(url: str, document: dict[str, Any], *, at: datetime = NOW) -> tuple[int, dict[str, Any]]:
        path = tmp_path / "slo.yaml"
        path.write_text(yaml.safe_dump(document))
        code = main(["evaluate", str(path), "--prometheus", url, "--at", at.isoformat(), "--output", "json"])
        [row] = json.loads(capsys.readouterr().out)
        return code, row["status"]

    return run


@pytest.mark.parametrize("job", list(STATES))
def test_each_service_gets_its_known_state_budget_burn_rates_and_alerts(
    job: str,
    backend: str,
    dataset_backend: PrometheusServer | VictoriaMetricsServer,
    evaluate: Callable[..., tuple[int, dict[str, Any]]],
) -> None:
    code, status = evaluate(dataset_backend.url, slo_for(job))
    expected = EXPECTED[job]
    burn = {format_duration(window): expected.burn_rate(window) or 0.0 for window in WINDOWS}
    assert (status["state"], code) == (STATES[job], EXIT_CODES[STATES[job]]), status["message"]
    assert status["sli"] == pytest.approx(1 - burn["30d"] * (1 - OBJECTIVE), rel=REL)
    assert status["errorBudget"]["remaining"] == pytest.approx(expected.budget_remaining(), rel=REL)
    for window, rate in burn.items():
        assert status["burnRates"][window] == pytest.approx(rate, rel=REL), (backend, window)
    firing = {(a["longWindow"], a["shortWindow"]) for a in status["alerts"] if a["firing"]}
    assert firing == {(long, short) for long, short, factor in TIERS if min(burn[long], burn[short]) > factor}


def test_the_spike_pages_with_the_same_time_to_exhaustion(
    dataset_backend: PrometheusServer | VictoriaMetricsServer, evaluate: Callable[..., tuple[int, dict[str, Any]]]
) -> None:
    _, status = evaluate(dataset_backend.url, ratio_slo("spike"))
    remaining, one_hour = EXPECTED["spike"].budget_remaining(), EXPECTED["spike"].burn_rate(3600)
    assert remaining is not None
    assert one_hour is not None
    assert status["timeToExhaustion"] == pytest.approx(remaining * 30 * 86400 / one_hour, rel=REL)


@pytest.mark.parametrize(
    ("slo", "reason"),
    [
        (ratio_slo("idle"), "NoTraffic"),
        (ratio_slo(ABSENT_JOB), "NoData"),
        (ratio_slo("stale"), "StaleData"),
        (latency_slo(0.25), "NoData"),
    ],
    ids=["zero-traffic", "absent-series", "stale-samples", "threshold-not-a-bucket"],
)
def test_missing_data_is_unknown_with_the_same_reason(
    slo: dict[str, Any],
    reason: str,
    dataset_backend: PrometheusServer | VictoriaMetricsServer,
    evaluate: Callable[..., tuple[int, dict[str, Any]]],
) -> None:
    code, status = evaluate(dataset_backend.url, slo)
    assert (code, status["state"], status["reason"]) == (2, "Unknown", reason)
    assert status["sli"] is None


SHORT_WINDOW_ERRORS = {"half-budget": (1, 0.5), "on-budget": (2, 1.0), "over-budget": (3, 1.5)}
"""Job -> (errors per second out of 32 requests/s over the last 2 minutes, 1 before; the 1m burn rate for a 93.75 %
objective). The same history as test_evaluate_cli.py's short-window SLOs: an hour at 15 s resolution."""


def short_window_history() -> str:
    end = NOW.timestamp()
    start, change = end - 3600, end - 120
    times = sample_times(start=start, end=end, resolutions=[Resolution(since=start, step=15)])
    series = [
        CounterSeries({"job": job, "code": code}, PiecewiseRate.constant(before, since=start).then(after, since=change))
        for job, (errors, _) in SHORT_WINDOW_ERRORS.items()
        for code, before, after in (("500", 1, errors), ("200", 31, 32 - errors))
    ]
    document = Document()
    document.counter(REQUESTS, series, times=times)
    return document.text()


@pytest.fixture(scope="module")
def short_window_servers(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, PrometheusServer | VictoriaMetricsServer]]:
    history = short_window_history()
    prometheus_dir = tmp_path_factory.mktemp("short-window-prometheus")
    backfill(history, prometheus_dir / "data")
    with (
        PrometheusServer(prometheus_dir) as prometheus,
        VictoriaMetricsServer(tmp_path_factory.mktemp("short-window-victoriametrics")) as victoriametrics,
    ):
        victoriametrics.import_openmetrics(history)
        yield {"prometheus": prometheus, "victoriametrics": victoriametrics}


@pytest.mark.parametrize("job", list(SHORT_WINDOW_ERRORS))
def test_a_short_window_slo_reads_the_same_one_minute_burn_rate(
    job: str,
    backend: str,
    short_window_servers: dict[str, PrometheusServer | VictoriaMetricsServer],
    evaluate: Callable[..., tuple[int, dict[str, Any]]],
) -> None:
    slo = ratio_slo(job)
    slo["spec"].update(objective=93.75, window="10m")
    code, status = evaluate(short_window_servers[backend].url, slo)
    burn = SHORT_WINDOW_ERRORS[job][1]
    assert status["burnRates"]["1m"] == burn
    assert [alert["firing"] for alert in status["alerts"]] == [burn > 1] * 4
    assert (status["state"], code) == ("Burning" if burn > 1 else "Healthy", 0)


def sample_step_at(moment: float) -> float:
    """Seconds between the dataset's samples at `moment`."""
    return [r.step for r in RESOLUTIONS if r.since <= moment][-1]


@pytest.mark.parametrize("job", list(STATES))
def test_between_samples_metricsql_differs_by_at_most_one_sample_interval_of_each_window(
    job: str,
    dataset_prometheus: PrometheusServer,
    dataset_victoriametrics: VictoriaMetricsServer,
    evaluate: Callable[..., tuple[int, dict[str, Any]]],
) -> None:
    """The documented tolerance: |MetricsQL - PromQL| <= step / window of the burn rate, when the extra interval
    MetricsQL covers has no higher error ratio than the window (every fixture here: steady traffic, and the spike
    starts exactly 1 h before NOW). The state is the same."""
    _, promql = evaluate(dataset_prometheus.url, slo_for(job), at=MISALIGNED)
    _, metricsql = evaluate(dataset_victoriametrics.url, slo_for(job), at=MISALIGNED)
    assert metricsql["state"] == promql["state"]
    for window in WINDOWS:
        span = format_duration(window)
        step = sample_step_at(MISALIGNED.timestamp() - window)
        bound = step / window * promql["burnRates"][span]
        difference = abs(metricsql["burnRates"][span] - promql["burnRates"][span])
        assert difference <= bound, (job, span, promql["burnRates"][span], metricsql["burnRates"][span])


def test_the_spike_shows_the_difference_on_its_one_hour_window(
    dataset_prometheus: PrometheusServer,
    dataset_victoriametrics: VictoriaMetricsServer,
    evaluate: Callable[..., tuple[int, dict[str, Any]]],
) -> None:
    """37 s before NOW, MetricsQL's 1 h window reaches back to the sample before it: 15 s more of the quiet
    traffic before the spike than PromQL's, which starts at the first sample inside it. docs/backends.md quotes
    these numbers."""
    _, promql = evaluate(dataset_prometheus.url, ratio_slo("spike"), at=MISALIGNED)
    _, metricsql = evaluate(dataset_victoriametrics.url, ratio_slo("spike"), at=MISALIGNED)
    assert promql["burnRates"]["1h"] == pytest.approx(19.8368, rel=1e-5)
    assert metricsql["burnRates"]["1h"] == pytest.approx(19.7562, rel=1e-5)
    assert metricsql["errorBudget"]["remaining"] == pytest.approx(promql["errorBudget"]["remaining"], rel=1e-6)
