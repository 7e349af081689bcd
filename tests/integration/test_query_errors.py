"""Queries a real Prometheus rejects, and evaluations that fail part-way: each reported for what it is.

`limited_prometheus` serves the backfilled dataset with `--query.max-samples` low enough that the 3-day and
30-day windows load too many samples: Prometheus answers them 422 `execution`, as one protecting its memory does.
"""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml
from tests.support.datasets import NOW, ratio_slo
from tests.support.faults import FaultProxy
from tests.support.prometheus import PrometheusServer, free_port

from slo_guard.adapters.prometheus import PrometheusClient, PrometheusSettings
from slo_guard.adapters.resilience import BreakerState
from slo_guard.cli import main
from slo_guard.domain.evaluation_types import Evaluation, State, UnknownReason
from slo_guard.resources import objective_from_resource
from slo_guard.service.evaluation import EvaluationSettings, evaluate_objective
from slo_guard.service.status import build_status
from slo_guard.telemetry import OperatorMetrics, PrometheusOutcome

pytestmark = pytest.mark.prometheus

MAX_SAMPLES = 3000
"""`--query.max-samples` of `limited_prometheus`: a `steady` series holds about 5,000 samples in 3 or 30 days."""
TOO_MANY_SAMPLES = "query processing would load too many samples into memory in query execution"
"""Prometheus's own `error` text for a query over the limit."""
SETTINGS = EvaluationSettings(max_staleness=180)
MIN_STEP = 30


class LimitedPrometheus(PrometheusServer):
    def _command(self) -> list[str]:
        return [*super()._command(), f"--query.max-samples={MAX_SAMPLES}"]


@pytest.fixture(scope="module")
def limited_prometheus(dataset_storage: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusServer]:
    workdir = tmp_path_factory.mktemp("limited-prometheus")
    storage = shutil.copytree(dataset_storage, workdir / "data")
    with LimitedPrometheus(workdir, storage_dir=storage) as server:
        yield server


@pytest.fixture
def limited_proxy(limited_prometheus: PrometheusServer) -> Iterator[FaultProxy]:
    with FaultProxy(limited_prometheus.url) as proxy:
        yield proxy


@pytest.fixture
def proxy(dataset_prometheus: PrometheusServer) -> Iterator[FaultProxy]:
    with FaultProxy(dataset_prometheus.url) as fault_proxy:
        yield fault_proxy


def client_settings(url: str, **overrides: Any) -> PrometheusSettings:
    return PrometheusSettings(url=url, **{"timeout": 5.0, "backoff_base": 0.01, "backoff_max": 0.02, **overrides})


def sent_queries(proxy: FaultProxy) -> list[str]:
    """The PromQL of every query request; a stray request (a Prometheus of an earlier test scraping a target port
    this proxy now has) is not one."""
    sent = [urlsplit(request.path) for request in proxy.requests]
    return [parse_qs(url.query)["query"][0] for url in sent if url.path.startswith("/api/v1/query")]


def requests_counted(metrics: OperatorMetrics, outcome: PrometheusOutcome) -> float:
    value = metrics.registry.get_sample_value("slo_guard_prometheus_requests_total", {"outcome": outcome.value})
    return value or 0.0


def conditions_of(evaluation: Evaluation) -> dict[str, dict[str, Any]]:
    status = build_status(previous={}, generation=1, evaluation=evaluation, targets=[], actions=[], now=NOW)
    return {condition["type"]: condition for condition in status["conditions"]}


def test_evaluate_reports_a_query_prometheus_rejects_as_query_rejected_with_its_error(
    limited_proxy: FaultProxy, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "slo.yaml"
    path.write_text(yaml.safe_dump(ratio_slo("steady")))
    code = main(["evaluate", str(path), "--prometheus", limited_proxy.url, "--at", NOW.isoformat(), "-o", "json"])
    [row] = json.loads(capsys.readouterr().out)
    status = row["status"]
    assert code == 2
    assert (status["state"], status["reason"]) == ("Unknown", "QueryRejected")
    assert status["message"] == f"Prometheus rejected one of this SLO's queries: {TOO_MANY_SAMPLES}"
    assert max(Counter(sent_queries(limited_proxy)).values()) == 1, "a rejected query is never retried"


async def test_an_slo_whose_query_prometheus_rejects_is_not_ready(limited_proxy: FaultProxy) -> None:
    objective = objective_from_resource(ratio_slo("steady"), min_step=MIN_STEP)
    async with PrometheusClient(client_settings(limited_proxy.url)) as client:
        evaluation = await evaluate_objective(objective, client, at=NOW, settings=SETTINGS)
    assert (evaluation.state, evaluation.reason) == (State.UNKNOWN, UnknownReason.QUERY_REJECTED)
    conditions = conditions_of(evaluation)
    ready = conditions["Ready"]
    assert (ready["status"], ready["reason"]) == ("False", "QueryRejected")
    assert TOO_MANY_SAMPLES in ready["message"]
    assert (conditions["DataAvailable"]["status"], conditions["DataAvailable"]["reason"]) == ("False", "QueryRejected")


async def test_rejected_queries_are_not_retried_never_open_the_breaker_and_read_the_same(
    limited_proxy: FaultProxy,
) -> None:
    objective = objective_from_resource(ratio_slo("steady"), min_step=MIN_STEP)
    metrics = OperatorMetrics()
    settings = client_settings(limited_proxy.url, retries=3, breaker_failure_threshold=2)
    evaluations = 8
    messages = set()
    async with PrometheusClient(settings, metrics=metrics) as client:
        for _ in range(evaluations):
            evaluation = await evaluate_objective(objective, client, at=NOW, settings=SETTINGS)
            assert evaluation.reason is UnknownReason.QUERY_REJECTED
            messages.add(evaluation.message)
        assert client.breaker_state is BreakerState.CLOSED
        assert [sample.value for sample in await client.query("vector(1)", at=NOW)] == [1.0]
    assert max(Counter(sent_queries(limited_proxy)).values()) <= evaluations, "each query at most once per evaluation"
    assert requests_counted(metrics, PrometheusOutcome.BAD_QUERY) >= evaluations
    assert requests_counted(metrics, PrometheusOutcome.UNAVAILABLE) == 0
    assert len(messages) == 1, "whichever rejected query fails first, the status reads the same"


async def test_a_failed_evaluation_leaves_no_query_running(proxy: FaultProxy) -> None:
    objective = objective_from_resource(ratio_slo("steady"), min_step=MIN_STEP)
    # One request at a time: when the first one fails, every other query still waits for its turn.
    settings = client_settings(f"{proxy.url}/not-prometheus", max_concurrency=1)
    async with PrometheusClient(settings) as client:
        before = asyncio.all_tasks()
        evaluation = await evaluate_objective(objective, client, at=NOW, settings=SETTINGS)
        left = {task for task in asyncio.all_tasks() - before if not task.done()}
    assert evaluation.state is State.UNKNOWN
    assert "404" in evaluation.message
    assert left == set(), "no query of the failed evaluation is still running"
    # The query handed the slot the failed one freed may have gone out before the failure was known; no other.
    assert len(proxy.requests) <= 2, "the queries queued behind the failed one were never sent"


def test_evaluate_with_a_wrong_path_prints_one_line_and_leaves_no_request_in_flight(
    proxy: FaultProxy, tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    """An answer arriving while `evaluate` shuts its event loop down was logged as an unretrieved exception."""
    path = tmp_path / "slo.yaml"
    path.write_text(yaml.safe_dump(ratio_slo("steady")))
    # The first query fails at once; the others are still in flight for a second.
    proxy.delay, proxy.undelayed = 1.0, 1
    with caplog.at_level(logging.DEBUG, logger="asyncio"):
        code = main(["evaluate", str(path), "--prometheus", f"{proxy.url}/not-prometheus", "--at", NOW.isoformat()])
    assert proxy.in_flight == 0, "evaluate waited for every request it sent"
    assert code == 2
    [line] = capsys.readouterr().err.splitlines()
    assert "404" in line
    assert not [record for record in caplog.records if "never retrieved" in record.getMessage()]


def test_evaluate_against_an_unreachable_prometheus_says_what_failed_and_where(tmp_path: Path) -> None:
    path = tmp_path / "slo.yaml"
    path.write_text(yaml.safe_dump(ratio_slo("steady")))
    url = f"http://127.0.0.1:{free_port()}"
    command = [sys.executable, "-c", "import sys; from slo_guard.cli import main; sys.exit(main())"]
    result = subprocess.run(
        [*command, "evaluate", str(path), "--prometheus", url], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 2
    [line] = result.stderr.splitlines()
    assert f"cannot reach Prometheus at {url}: connection refused" in line
    assert "circuit breaker" not in line


async def test_an_evaluation_that_gives_up_on_a_probe_still_lets_it_close_the_breaker(proxy: FaultProxy) -> None:
    """The probe's answer decides the breaker for everyone, even when the evaluation that sent it has failed."""
    objective = objective_from_resource(ratio_slo("steady"), min_step=MIN_STEP)
    settings = client_settings(proxy.url, retries=0, breaker_failure_threshold=1, breaker_reset_timeout=0.2)
    async with PrometheusClient(settings) as client:
        proxy.fail_with = 503
        await evaluate_objective(objective, client, at=NOW, settings=SETTINGS)
        assert client.breaker_state is BreakerState.OPEN
        proxy.fail_with = None
        proxy.delay = 0.5
        await asyncio.sleep(0.3)
        # One query is the probe; the others fail fast while it is in flight, failing the evaluation.
        evaluation = await evaluate_objective(objective, client, at=NOW, settings=SETTINGS)
        assert evaluation.reason is UnknownReason.PROMETHEUS_UNAVAILABLE
        deadline = asyncio.get_running_loop().time() + 10
        while client.breaker_state is not BreakerState.CLOSED:
            assert asyncio.get_running_loop().time() < deadline, "the probe never closed the breaker"
            await asyncio.sleep(0.05)
