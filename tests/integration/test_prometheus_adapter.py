"""The Prometheus adapter against the real server: known answers, explicit time, and every failure path."""

from __future__ import annotations

import asyncio
import json
import math
import subprocess
import sys
import urllib.request
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from tests.support.datasets import EXPECTED, HOUR, LATENCY_THRESHOLD, NOW, WINDOWS
from tests.support.faults import FaultProxy
from tests.support.prometheus import REPO_ROOT, PrometheusServer, free_port

from slo_guard.adapters.prometheus import PrometheusClient, PrometheusSettings
from slo_guard.adapters.resilience import BreakerState
from slo_guard.service.ports import PrometheusUnavailable, QueryError, QueryRejected, Sample, UnavailableReason
from slo_guard.telemetry import OperatorMetrics, PrometheusOutcome

pytestmark = pytest.mark.prometheus

FAST_RETRY = {"backoff_base": 0.01, "backoff_max": 0.02}
"""Real waits between attempts, kept tiny: the tests are about how many attempts, not how long."""


def settings_for(url: str, **overrides: Any) -> PrometheusSettings:
    return PrometheusSettings(url=url, **{"timeout": 5.0, **FAST_RETRY, **overrides})


def requests_counted(metrics: OperatorMetrics, outcome: PrometheusOutcome) -> float:
    value = metrics.registry.get_sample_value("slo_guard_prometheus_requests_total", {"outcome": outcome.value})
    assert value is not None
    return value


def breaker_gauge(metrics: OperatorMetrics) -> float | None:
    return metrics.registry.get_sample_value("slo_guard_circuit_breaker_state", {"breaker": "prometheus"})


def ratio_queries(job: str, window: int) -> tuple[str, str]:
    """(errors per second, requests per second) for a dataset job, the way an SLI is written."""
    if job == "latency":
        total = f'sum(rate(http_request_duration_seconds_count{{job="{job}"}}[{window}s]))'
        fast = f'sum(rate(http_request_duration_seconds_bucket{{job="{job}",le="{LATENCY_THRESHOLD}"}}[{window}s]))'
        return f"({total} - {fast})", total
    return (
        f'sum(rate(http_requests_total{{job="{job}",code=~"5.."}}[{window}s]))',
        f'sum(rate(http_requests_total{{job="{job}"}}[{window}s]))',
    )


def only_value(samples: list[Sample]) -> float:
    assert len(samples) == 1
    return samples[0].value


@pytest.fixture
def metrics() -> OperatorMetrics:
    return OperatorMetrics()


@pytest.fixture
def proxy(dataset_prometheus: PrometheusServer) -> Iterator[FaultProxy]:
    with FaultProxy(dataset_prometheus.url) as fault_proxy:
        yield fault_proxy


KNOWN = [
    (job, window)
    for job in ("steady", "spike", "exhausted", "latency", "stale")
    for window in WINDOWS
    if EXPECTED[job].error_ratio[window] is not None
]


@pytest.mark.parametrize(("job", "window"), KNOWN)
async def test_query_returns_the_datasets_known_rates(
    dataset_prometheus: PrometheusServer, job: str, window: int
) -> None:
    errors, total = ratio_queries(job, window)
    async with PrometheusClient(settings_for(dataset_prometheus.url)) as client:
        ratio = only_value(await client.query(f"{errors} / {total}", at=NOW))
        rate = only_value(await client.query(total, at=NOW))
    assert ratio == pytest.approx(EXPECTED[job].error_ratio[window], rel=0.005)
    assert rate == pytest.approx(EXPECTED[job].total_rate[window], rel=0.005)


async def test_budget_answers_of_the_dataset(dataset_prometheus: PrometheusServer) -> None:
    month = WINDOWS[-1]
    async with PrometheusClient(settings_for(dataset_prometheus.url)) as client:
        for job, remaining in (("steady", 0.5), ("exhausted", -1.0)):
            errors, total = ratio_queries(job, month)
            burn = only_value(await client.query(f"({errors} / {total}) / 0.001", at=NOW))
            assert 1 - burn == pytest.approx(remaining, rel=0.005)
            assert EXPECTED[job].budget_remaining() == pytest.approx(remaining)


async def test_spike_burns_past_the_page_threshold_only_in_the_short_windows(
    dataset_prometheus: PrometheusServer,
) -> None:
    async with PrometheusClient(settings_for(dataset_prometheus.url)) as client:
        burns = {}
        for window in (5 * 60, HOUR, 6 * HOUR):
            errors, total = ratio_queries("spike", window)
            burns[window] = only_value(await client.query(f"({errors} / {total}) / 0.001", at=NOW))
    assert burns[5 * 60] == pytest.approx(20.0, rel=0.005)
    assert burns[HOUR] == pytest.approx(20.0, rel=0.005)
    assert burns[6 * HOUR] == pytest.approx(3.75, rel=0.005)


async def test_missing_data_comes_back_as_no_samples_and_no_traffic_as_nan(
    dataset_prometheus: PrometheusServer,
) -> None:
    async with PrometheusClient(settings_for(dataset_prometheus.url)) as client:
        for job in ("absent", "stale"):
            errors, total = ratio_queries(job, 5 * 60)
            assert await client.query(total, at=NOW) == []
        errors, total = ratio_queries("idle", HOUR)
        assert only_value(await client.query(total, at=NOW)) == 0.0
        assert math.isnan(only_value(await client.query(f"{errors} / {total}", at=NOW)))
        assert only_value(await client.query("vector(+Inf)", at=NOW)) == math.inf


async def test_queries_are_evaluated_at_the_explicit_time(dataset_prometheus: PrometheusServer) -> None:
    errors, total = ratio_queries("spike", 5 * 60)
    before_spike = NOW - timedelta(hours=2)
    async with PrometheusClient(settings_for(dataset_prometheus.url)) as client:
        clock = await client.query("time()", at=before_spike)
        earlier = only_value(await client.query(f"{errors} / {total}", at=before_spike))
        latest = await client.query(f"{errors} / {total}", at=NOW)
    assert clock == [Sample(labels={}, value=before_spike.timestamp(), timestamp=before_spike.timestamp())]
    assert earlier == pytest.approx(0.0005)
    assert latest[0].value == pytest.approx(0.02)
    assert latest[0].timestamp == NOW.timestamp()


async def test_series_labels_come_back_per_sample(dataset_prometheus: PrometheusServer) -> None:
    async with PrometheusClient(settings_for(dataset_prometheus.url)) as client:
        samples = await client.query('sum by (code) (rate(http_requests_total{job="steady"}[1h]))', at=NOW)
    by_code = {sample.labels["code"]: sample.value for sample in samples}
    assert by_code == pytest.approx({"200": 9.995, "500": 0.005})


async def test_a_bad_query_is_rejected_at_once_with_prometheuss_own_error(
    proxy: FaultProxy, metrics: OperatorMetrics
) -> None:
    bad = "sum(rate(http_requests_total[5m]"
    async with PrometheusClient(settings_for(proxy.url, retries=3), metrics=metrics) as client:
        with pytest.raises(QueryRejected) as raised:
            await client.query(bad, at=NOW)
        assert client.breaker_state is BreakerState.CLOSED
    assert raised.value.status == 400
    assert raised.value.error.endswith("parse error: unclosed left parenthesis"), "the `error` field of the answer"
    assert "parse error" in str(raised.value)
    assert "\n" not in str(raised.value)
    assert len(proxy.requests) == 1
    assert requests_counted(metrics, PrometheusOutcome.BAD_QUERY) == 1


async def test_query_sends_the_time_and_a_server_side_timeout(proxy: FaultProxy) -> None:
    async with PrometheusClient(settings_for(proxy.url, timeout=7.5)) as client:
        await client.query("up", at=NOW)
    [request] = proxy.requests
    assert f"time={NOW.timestamp():.3f}" in request.path
    assert "timeout=7.5" in request.path


async def test_an_unreachable_prometheus_is_retried_a_bounded_number_of_times(metrics: OperatorMetrics) -> None:
    closed_port = f"http://127.0.0.1:{free_port()}"
    async with PrometheusClient(settings_for(closed_port, retries=2), metrics=metrics) as client:
        with pytest.raises(PrometheusUnavailable) as raised:
            await client.query("up", at=NOW)
        assert not await client.ready()
    assert raised.value.reason is UnavailableReason.UNREACHABLE
    assert str(raised.value) == f"cannot reach Prometheus at {closed_port}: connection refused"
    assert requests_counted(metrics, PrometheusOutcome.UNAVAILABLE) == 3


async def test_breaker_opens_on_an_outage_probes_after_the_cool_down_and_closes_on_recovery(
    tmp_path: Path, metrics: OperatorMetrics
) -> None:
    with PrometheusServer(tmp_path) as server:
        settings = settings_for(server.url, retries=1, breaker_failure_threshold=3, breaker_reset_timeout=0.3)
        async with PrometheusClient(settings, metrics=metrics) as client:
            assert await client.ready()
            assert only_value(await client.query("vector(1)", at=NOW)) == 1.0
            server.stop()
            with pytest.raises(PrometheusUnavailable) as first:
                await client.query("vector(1)", at=NOW)
            assert first.value.reason is UnavailableReason.UNREACHABLE
            assert client.breaker_state is BreakerState.CLOSED
            # The third failure opens the breaker: that query is not retried into it and tells what failed.
            with pytest.raises(PrometheusUnavailable) as second:
                await client.query("vector(1)", at=NOW)
            assert second.value.reason is UnavailableReason.UNREACHABLE
            assert client.breaker_state is BreakerState.OPEN
            # The next query fails fast, naming the cause and the breaker.
            with pytest.raises(PrometheusUnavailable) as third:
                await client.query("vector(1)", at=NOW)
            assert third.value.reason is UnavailableReason.CIRCUIT_OPEN
            assert str(third.value).startswith(f"{second.value} (circuit breaker open")
            assert breaker_gauge(metrics) == BreakerState.OPEN
            assert requests_counted(metrics, PrometheusOutcome.UNAVAILABLE) == 3
            assert requests_counted(metrics, PrometheusOutcome.CIRCUIT_OPEN) == 1

            server.start()
            await asyncio.sleep(0.35)
            assert client.breaker_state is BreakerState.HALF_OPEN
            assert breaker_gauge(metrics) == BreakerState.HALF_OPEN
            assert only_value(await client.query("vector(1)", at=NOW)) == 1.0
            assert client.breaker_state is BreakerState.CLOSED
            assert breaker_gauge(metrics) == BreakerState.CLOSED
    # Only requests actually sent are timed: 2 successes and 3 refused connections, no fast failures.
    assert metrics.registry.get_sample_value("slo_guard_prometheus_request_duration_seconds_count") == 5


async def test_a_slow_upstream_times_out(proxy: FaultProxy, metrics: OperatorMetrics) -> None:
    proxy.delay = 5.0
    async with PrometheusClient(settings_for(proxy.url, timeout=0.3, retries=1), metrics=metrics) as client:
        with pytest.raises(PrometheusUnavailable) as raised:
            await client.query("up", at=NOW)
    assert raised.value.reason is UnavailableReason.TIMEOUT
    assert str(raised.value).endswith("did not answer within 0.3 s")
    assert len(proxy.requests) == 2
    assert requests_counted(metrics, PrometheusOutcome.TIMEOUT) == 2


async def test_5xx_is_retried_then_unavailable_and_recovers(proxy: FaultProxy, metrics: OperatorMetrics) -> None:
    proxy.fail_with = 503
    async with PrometheusClient(settings_for(proxy.url, retries=2), metrics=metrics) as client:
        with pytest.raises(PrometheusUnavailable) as raised:
            await client.query("up", at=NOW)
        assert raised.value.reason is UnavailableReason.SERVER_ERROR
        assert "503" in str(raised.value)
        assert len(proxy.requests) == 3
        assert requests_counted(metrics, PrometheusOutcome.ERROR) == 3

        proxy.fail_with = None
        assert await client.query("vector(2)", at=NOW) == [Sample({}, 2.0, NOW.timestamp())]
    assert requests_counted(metrics, PrometheusOutcome.SUCCESS) == 1


async def test_other_4xx_answers_are_not_retried(proxy: FaultProxy) -> None:
    proxy.fail_with = 403
    async with PrometheusClient(settings_for(proxy.url, retries=3)) as client:
        with pytest.raises(QueryError) as raised:
            await client.query("up", at=NOW)
    assert raised.value.status == 403
    assert len(proxy.requests) == 1


async def test_the_bearer_token_file_is_read_on_every_request(proxy: FaultProxy, tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("first-token\n")
    async with PrometheusClient(settings_for(proxy.url, bearer_token_file=token)) as client:
        await client.query("up", at=NOW)
        token.write_text("rotated-token")
        await client.query("up", at=NOW)
        token.unlink()
        with pytest.raises(PrometheusUnavailable) as raised:
            await client.query("up", at=NOW)
    sent = [request.headers.get("Authorization") for request in proxy.requests]
    assert sent == ["Bearer first-token", "Bearer rotated-token"]
    assert raised.value.reason is UnavailableReason.CREDENTIALS
    assert str(token) in str(raised.value)


async def test_concurrent_queries_stay_within_the_global_bound(proxy: FaultProxy) -> None:
    proxy.hold()
    async with PrometheusClient(settings_for(proxy.url, max_concurrency=2)) as client:
        queries = [asyncio.create_task(client.query(f"vector({n})", at=NOW)) for n in range(6)]
        await _until(lambda: proxy.in_flight == 2)
        assert len(proxy.requests) == 2
        proxy.release()
        results = await asyncio.gather(*queries)
    assert [only_value(samples) for samples in results] == [0, 1, 2, 3, 4, 5]
    assert proxy.max_in_flight == 2
    assert len(proxy.requests) == 6


async def test_reload_loads_new_rule_files(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yml"
    rules.write_text(
        json.dumps({"groups": [{"name": "test", "rules": [{"record": "test:answer", "expr": "vector(42)"}]}]})
    )
    with PrometheusServer(tmp_path, evaluation_interval="200ms") as server:
        assert server.query_value("test:answer") is None
        server.rule_files.append(rules)
        server.reload()
        async with PrometheusClient(settings_for(server.url)) as client:
            await _until_async(lambda: _has_samples(client, "test:answer"))
        assert server.query_value("test:answer") == 42.0


async def _has_samples(client: PrometheusClient, expr: str) -> bool:
    return bool(await client.query(expr, at=datetime.now(UTC)))


async def test_live_scraped_error_ratio_follows_the_exporter(tmp_path: Path) -> None:
    with exporter_process(rps=100) as exporter_url:
        target = exporter_url.removeprefix("http://")
        with PrometheusServer(tmp_path, scrape_targets=[target], scrape_interval="200ms") as server:
            async with PrometheusClient(settings_for(server.url)) as client:
                ratio = 'sum(rate(http_requests_total{code="500"}[2s])) / sum(rate(http_requests_total[2s]))'
                await _until_async(lambda: _ratio_is(client, ratio, 0.0))
                _control(exporter_url, {"error_ratio": 0.5})
                await _until_async(lambda: _ratio_is(client, ratio, 0.5))


async def _ratio_is(client: PrometheusClient, expr: str, expected: float) -> bool:
    samples = await client.query(expr, at=datetime.now(UTC))
    return bool(samples) and samples[0].value == pytest.approx(expected, abs=0.02)


def _control(exporter_url: str, changes: dict[str, float]) -> None:
    body = json.dumps(changes).encode()
    request = urllib.request.Request(f"{exporter_url}/control", data=body, method="POST")  # noqa: S310
    with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310 (loopback http)
        assert json.load(response)["error_ratio"] == changes["error_ratio"]


@contextmanager
def exporter_process(*, rps: float) -> Iterator[str]:
    """The exporter as the demo runs it (`python -m tests.support.exporter`); yields its URL."""
    port = free_port()
    command = [sys.executable, "-m", "tests.support.exporter", "--port", str(port), "--rps", str(rps)]
    process = subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == f"listening on 127.0.0.1:{port}"
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)


async def _until(condition: Callable[[], bool], *, within: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition never became true"
        await asyncio.sleep(0.01)


async def _until_async(condition: Callable[[], Awaitable[bool]], *, within: float = 60.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not await condition():
        assert asyncio.get_running_loop().time() < deadline, "condition never became true"
        await asyncio.sleep(0.2)
