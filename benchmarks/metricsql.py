"""MetricsQL against PromQL on slo-guard's evaluate fixtures: the same history in Prometheus and VictoriaMetrics.

Both servers hold tests/support/datasets.py's 30 days and the short-window hour the evaluate tests use. For each
fixture, evaluated on a sample (NOW) and between samples (37 s earlier), it prints what each backend gives for the
SLI and budget and their difference, with the largest burn-rate difference over the SLO's windows; then the
request rates where a series starts or stops inside a window, where the two engines' `rate` differ most.

    PYTHONPATH=. .venv/bin/python -m benchmarks.metricsql      # after `make test` installed both under .tools/

docs/backends.md quotes its output.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from tests.integration.test_backend_evaluate import SHORT_WINDOW_ERRORS, latency_slo, short_window_history
from tests.support.datasets import LATENCY_THRESHOLD, NOW, SERVICES, build_storage, ratio_slo
from tests.support.openmetrics import backfill
from tests.support.prometheus import PrometheusServer
from tests.support.victoriametrics import VictoriaMetricsServer, dataset_victoriametrics_server

from slo_guard.adapters.prometheus import PrometheusClient, PrometheusSettings
from slo_guard.domain.durations import format_duration
from slo_guard.domain.evaluation import error_ratio, evaluate
from slo_guard.domain.evaluation_types import Measurements
from slo_guard.domain.model import Objective
from slo_guard.resources import objective_from_resource
from slo_guard.service.evaluation import EvaluationSettings, measure

MIN_STEP = 30
"""`slo-guard evaluate`'s default --min-step."""
SETTINGS = EvaluationSettings(max_staleness=180)
MOMENTS = {"on a sample": NOW, "between samples": NOW - timedelta(seconds=37)}


@dataclass(frozen=True, slots=True)
class Fixture:
    name: str
    slo: Objective
    history: str
    """Which servers hold its series: `dataset` or `short`."""


@dataclass(frozen=True, slots=True)
class Answer:
    state: str
    ratios: dict[int, float | None]
    """Error ratio per window."""
    totals: dict[int, float | None]
    """Requests per second per window."""


def fixtures() -> list[Fixture]:
    documents: list[tuple[dict[str, Any], str]] = [(ratio_slo(job), "dataset") for job in SERVICES if job != "latency"]
    documents.append((latency_slo(LATENCY_THRESHOLD), "dataset"))
    for job in SHORT_WINDOW_ERRORS:
        document = ratio_slo(job)
        document["spec"].update(objective=93.75, window="10m")
        documents.append((document, "short"))
    return [
        Fixture(document["metadata"]["name"], objective_from_resource(document, min_step=MIN_STEP), history)
        for document, history in documents
    ]


async def answer(url: str, slo: Objective, at: datetime) -> Answer:
    async with PrometheusClient(PrometheusSettings(url=url, timeout=60)) as client:
        measured: Measurements = await measure(slo, client, at=at, settings=SETTINGS)
    evaluation = evaluate(slo, measured, now=at, max_staleness=SETTINGS.max_staleness)
    return Answer(
        state=evaluation.state.value + (f"/{evaluation.reason.value}" if evaluation.reason else ""),
        ratios={window: error_ratio(slo.indicator, rates) for window, rates in measured.windows.items()},
        totals={window: rates.total for window, rates in measured.windows.items()},
    )


def relative(a: float, b: float) -> float:
    return abs(a - b) / abs(a) if a else abs(b)


def number(value: float | None, digits: int = 7) -> str:
    return "none" if value is None else f"{value:.{digits}g}"


def sli_row(fixture: Fixture, moment: str, promql: Answer, metricsql: Answer) -> str:
    budget = 1 - fixture.slo.objective
    p, m = promql.ratios[fixture.slo.window], metricsql.ratios[fixture.slo.window]
    if p is None or m is None:
        sli = f"{number(p)} | {number(m)} | - | - | -"
    else:
        budget_points = abs(p - m) / budget * 100
        sli = f"{1 - p:.7f} | {1 - m:.7f} | {abs(p - m):.1e} | {relative(p, m):.3%} | {budget_points:.4f} pp"
    burn = []
    for window, promql_ratio in promql.ratios.items():
        metricsql_ratio = metricsql.ratios[window]
        if promql_ratio is not None and metricsql_ratio is not None:
            burn.append((relative(promql_ratio, metricsql_ratio), window))
    largest = max(burn, default=None)
    worst = "-" if largest is None else f"{largest[0]:.3%} ({format_duration(largest[1])})"
    states = promql.state if promql.state == metricsql.state else f"{promql.state} / {metricsql.state}"
    return f"| {fixture.name} | {moment} | {states} | {sli} | {worst} |"


RATE_CASES: Sequence[tuple[str, int, timedelta, str]] = (
    ("stale", 2 * 3600, timedelta(0), "stopped 1 h before the end of a 2 h window"),
    ("stale", 86400, timedelta(0), "stopped 1 h before the end of a 1 d window"),
    ("stale", 3600, timedelta(seconds=7), "one sample inside a 1 h window"),
    ("steady", 30 * 86400, timedelta(days=2, seconds=7), "29 d of history in a 30 d window"),
)


async def main(argv: Sequence[str] | None = None) -> None:
    argparse.ArgumentParser(prog="benchmarks.metricsql", description=__doc__).parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="metricsql-") as scratch:
        root = Path(scratch)
        short = short_window_history()
        backfill(short, root / "short-prometheus" / "data")
        with (
            PrometheusServer(root / "prometheus", storage_dir=build_storage(root / "prometheus" / "data")) as prom,
            PrometheusServer(root / "short-prometheus") as short_prom,
            VictoriaMetricsServer(root / "short-victoriametrics") as short_vm,
        ):
            short_vm.import_openmetrics(short)
            vm = dataset_victoriametrics_server(root / "victoriametrics")
            try:
                urls = {"dataset": (prom.url, vm.url), "short": (short_prom.url, short_vm.url)}
                await report(urls)
            finally:
                vm.stop()


async def report(urls: dict[str, tuple[str, str]]) -> None:
    print("SLI (30 d window; 10 m for the short-window SLOs), PromQL against MetricsQL on the same samples")
    print()
    print(
        "| fixture | evaluated | state | PromQL SLI | MetricsQL SLI | SLI difference | error-ratio difference"
        " | budget difference | largest burn-rate difference (window) |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for fixture in fixtures():
        promql_url, metricsql_url = urls[fixture.history]
        for moment, at in MOMENTS.items():
            promql = await answer(promql_url, fixture.slo, at)
            metricsql = await answer(metricsql_url, fixture.slo, at)
            print(sli_row(fixture, moment, promql, metricsql))
    print()
    print("Request rate (req/s) where a series starts or stops inside the window")
    print()
    print("| fixture | window | evaluated | PromQL | MetricsQL | while it ran | error ratio PromQL / MetricsQL |")
    print("|---|---|---|---|---|---|---|")
    promql_url, metricsql_url = urls["dataset"]
    for job, window, before, case in RATE_CASES:
        slo = next(f.slo for f in fixtures() if f.name == f"{job}-availability")
        at = NOW - before
        promql, metricsql = await answer(promql_url, slo, at), await answer(metricsql_url, slo, at)
        service = SERVICES[job]
        running = service.requests(service.ok.start, service.last_sample) / (service.last_sample - service.ok.start)
        ratios = f"{number(promql.ratios[window], 4)} / {number(metricsql.ratios[window], 4)}"
        evaluated = f"NOW - {format_duration(int(before.total_seconds()))}" if before else "NOW"
        print(
            f"| {job}: {case} | {format_duration(window)} | {evaluated} | {number(promql.totals[window], 5)}"
            f" | {number(metricsql.totals[window], 5)} | {running:g} | {ratios} |"
        )


if __name__ == "__main__":
    asyncio.run(main())
