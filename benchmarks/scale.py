"""Scale benchmark: N SLOs at a 30 s cadence, with managed recording rules and without (the naive baseline).

Every part is a real process: Prometheus holding 30 days of backfilled history (then scraping live), the emulated
API server holding N SLOs and their Deployments, and `slo-guard run`. For each N it prints one row per mode and
the naive/ours ratios. Run it with `make bench` (`python -m benchmarks.scale --help` for the knobs).

- naive: `slo-guard run` without `--rules-file`: each pass sends 1 + 2 queries per window (17 for a 30-day SLO),
  as analysis tools that query per object per window do.
- ours: `slo-guard run --rules-file`: Prometheus evaluates the managed recording rules; each cycle reads them back
  with two queries.

Per-cycle figures are normalised by the passes the operator really completed (a saturated run falls behind, and
its raw per-30-s figures would flatter it): "per cycle" means per N passes.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import shutil
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from tests.support.kube import KubeClient

from benchmarks.stack import (
    EmulatorProcess,
    ManyServicesExporter,
    MetricsSnapshot,
    OperatorRunner,
    PrometheusProcess,
    backfill_history,
    service_name,
    slo_manifest,
    target_manifest,
    wait_until,
)
from slo_guard.adapters.prometheus import PrometheusClient, PrometheusSettings
from slo_guard.domain.durations import format_duration
from slo_guard.domain.evaluation_types import Evaluation
from slo_guard.domain.model import Objective
from slo_guard.resources import objective_from_resource
from slo_guard.service.evaluation import EvaluationSettings, evaluate_objective

NAMESPACE = "bench"
WINDOW = "30d"
OBJECTIVE = 99.9
MIN_STEP = "30s"
RPS = 10.0
HEALTHY_RATIO = 0.0005
"""Half the 99.9 % budget: healthy, and no burn tier fires."""
EXHAUSTED_RATIO = 0.002
"""Twice the budget: these SLOs pause their Deployment once, at cold start."""
EXHAUSTED_EVERY = 10
"""Every tenth service fails, so steady state holds paused and unpaused targets."""
ACCURACY_SAMPLE = 20
"""SLOs whose operator figures are compared with an exact, direct evaluation."""
WRITE_VERBS = {"create", "update", "patch", "delete", "deletecollection"}


@dataclass(frozen=True, slots=True)
class Row:
    size: int
    mode: str
    cold_start: float
    """Seconds from starting the operator until every SLO has a status."""
    spacing_p50: float
    spacing_p99: float
    """Seconds between the starts of one SLO's consecutive passes."""
    pass_p50: float
    pass_p99: float
    """Seconds one SLO's pass takes."""
    passes_per_slo_per_interval: float
    queries_per_cycle: float
    prometheus_cpu_per_cycle: float
    kube_writes_per_cycle: float
    operator_rss_mib: float
    operator_peak_rss_mib: float
    operator_cpu_per_cycle: float
    accuracy: float | None
    """Largest relative difference of any window's burn rate from an exact evaluation, over a sample of SLOs."""
    recorded_share: float | None
    """Share of the evaluations' queries answered from recorded values (the rest: direct or reused answers)."""


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    sizes = [int(size) for size in args.sizes.split(",")]
    workdir = Path(tempfile.mkdtemp(prefix="slo-guard-scale-"))
    rows: list[Row] = []
    try:
        with _Backend(workdir, services=args.services, step=args.step, days=args.history_days) as backend:
            for size in sizes:
                for mode in args.modes.split(","):
                    rows.append(_run(backend, size=size, mode=mode, args=args, workdir=workdir / f"{mode}-{size}"))
                    _print_rows(rows)
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    _print_rows(rows, final=True)
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="100,1000", help="comma-separated SLO counts (e.g. 100,1000,5000)")
    parser.add_argument("--modes", default="ours,naive", help="ours, naive or both")
    parser.add_argument("--services", type=int, default=40, help="synthetic services the SLOs are spread over")
    parser.add_argument("--history-days", type=float, default=31.0, help="days of backfilled history")
    parser.add_argument("--step", type=float, default=30.0, help="seconds between samples (history and scrapes)")
    parser.add_argument("--interval", type=int, default=30, help="each SLO's evaluation interval in seconds")
    parser.add_argument("--cycles", type=int, default=6, help="steady-state cycles measured per run")
    parser.add_argument("--warmup-cycles", type=int, default=2, help="cycles after cold start before measuring")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs, rule files)")
    return parser


class _Backend:
    """The exporter and Prometheus, shared by every run: history is backfilled once."""

    def __init__(self, workdir: Path, *, services: int, step: float, days: float) -> None:
        self.workdir = workdir
        self.services = services
        self.step = step
        self.days = days
        ratios = [EXHAUSTED_RATIO if index % EXHAUSTED_EVERY == 0 else HEALTHY_RATIO for index in range(services)]
        self.ratios = ratios
        self.exporter = ManyServicesExporter(services, error_ratios=ratios, rps=RPS, start=time.time() - days * 86400)
        self.prometheus: PrometheusProcess | None = None

    def __enter__(self) -> _Backend:
        started = time.monotonic()
        storage = self.workdir / "prometheus" / "data"
        stats = backfill_history(
            storage,
            count=self.services,
            rps=RPS,
            error_ratios=self.ratios,
            start=self.exporter.start_time,
            end=time.time(),
            step=self.step,
            scratch_dir=self.workdir,
        )
        print(
            f"history: {self.services} services x 2 series, {self.days:g} days at {self.step:g} s: "
            f"{stats.samples:,} samples in {time.monotonic() - started:.1f} s",
            flush=True,
        )
        self.exporter.start()
        step = f"{self.step:g}s"
        self.prometheus = PrometheusProcess(
            self.workdir / "prometheus",
            storage_dir=storage,
            scrape_targets=[self.exporter.target],
            scrape_interval=step,
            evaluation_interval=step,
        ).start()
        self.prometheus.wait_scraped()
        return self

    def __exit__(self, *_: object) -> None:
        if self.prometheus is not None:
            self.prometheus.stop()
        self.exporter.stop()

    @property
    def server(self) -> PrometheusProcess:
        assert self.prometheus is not None
        return self.prometheus

    def clear_rules(self) -> None:
        for path in self.server.rules_dir.glob("*.yaml"):
            path.unlink()
        self.server.reload()


def _run(backend: _Backend, *, size: int, mode: str, args: argparse.Namespace, workdir: Path) -> Row:
    print(f"\n== N={size} mode={mode} ==", flush=True)
    backend.clear_rules()
    manifests = [
        slo_manifest(
            index,
            namespace=NAMESPACE,
            service=service_name(index % backend.services),
            window=WINDOW,
            objective=OBJECTIVE,
            interval=f"{args.interval}s",
        )
        for index in range(size)
    ]
    with EmulatorProcess(workdir / "emulator", request_log_limit=1_000_000) as emulator:
        created = emulator.create_many(
            [*(target_manifest(index, namespace=NAMESPACE) for index in range(size)), *manifests]
        )
        print(f"created {created.created} objects at {created.per_second:.0f}/s", flush=True)
        # The status heartbeat is the one write a steady SLO makes (N per heartbeat); a day keeps it out of the
        # measured cycles, which then count only writes caused by evaluation.
        operator_args = ["--min-step", MIN_STEP, "--status-heartbeat", "24h"]
        if mode == "ours":
            operator_args += ["--rules-file", str(backend.server.rules_dir / "slo-guard.yaml")]
        started = time.monotonic()
        with OperatorRunner(
            workdir / "operator", kubeconfig=emulator.kubeconfig, prometheus_url=backend.server.url, args=operator_args
        ) as operator:
            wait_until(
                lambda: _all_have_status(emulator.kube, size),
                timeout=max(600.0, size * 0.5),
                what=f"a status on all {size} SLOs",
                every=2.0,
            )
            cold_start = time.monotonic() - started
            print(f"cold start: {cold_start:.1f} s", flush=True)
            time.sleep(args.warmup_cycles * args.interval)
            return _measure(
                backend, emulator, operator, manifests, size=size, mode=mode, cold_start=cold_start, args=args
            )


def _measure(
    backend: _Backend,
    emulator: EmulatorProcess,
    operator: OperatorRunner,
    manifests: Sequence[Mapping[str, object]],
    *,
    size: int,
    mode: str,
    cold_start: float,
    args: argparse.Namespace,
) -> Row:
    prometheus = backend.server
    emulator.client.clear_requests()
    before_metrics = operator.metrics()
    queries_before = prometheus.http_requests("/api/v1/query")
    prometheus_cpu_before = prometheus.cpu_seconds()
    operator_cpu_before = operator.cpu_seconds()
    time.sleep(args.cycles * args.interval)
    after_metrics = operator.metrics()
    queries = prometheus.http_requests("/api/v1/query") - queries_before
    prometheus_cpu = prometheus.cpu_seconds() - prometheus_cpu_before
    operator_cpu = operator.cpu_seconds() - operator_cpu_before
    writes = sum(1 for record in emulator.client.requests() if record.verb in WRITE_VERBS)
    passes = _count(after_metrics, "slo_guard_evaluation_duration_seconds") - _count(
        before_metrics, "slo_guard_evaluation_duration_seconds"
    )
    cycles_done = passes / size if passes else math.nan
    spacing = _histogram_delta(before_metrics, after_metrics, "slo_guard_evaluation_spacing_seconds")
    durations = _histogram_delta(before_metrics, after_metrics, "slo_guard_evaluation_duration_seconds")
    accuracy = _accuracy(after_metrics, manifests, prometheus.url) if mode == "ours" else None
    reads = {
        source: (after_metrics.value("slo_guard_recorded_reads_total", source=source) or 0.0)
        - (before_metrics.value("slo_guard_recorded_reads_total", source=source) or 0.0)
        for source in ("recorded", "direct", "reused")
    }
    answered = math.fsum(reads.values())
    recorded_share = reads["recorded"] / answered if mode == "ours" and answered else None
    return Row(
        size=size,
        mode=mode,
        cold_start=cold_start,
        spacing_p50=_quantile(spacing, 0.5),
        spacing_p99=_quantile(spacing, 0.99),
        pass_p50=_quantile(durations, 0.5),
        pass_p99=_quantile(durations, 0.99),
        passes_per_slo_per_interval=cycles_done / args.cycles,
        queries_per_cycle=queries / cycles_done,
        prometheus_cpu_per_cycle=prometheus_cpu / cycles_done,
        kube_writes_per_cycle=writes / cycles_done,
        operator_rss_mib=operator.rss_bytes() / 2**20,
        operator_peak_rss_mib=operator.rss_bytes(peak=True) / 2**20,
        operator_cpu_per_cycle=operator_cpu / cycles_done,
        accuracy=accuracy,
        recorded_share=recorded_share,
    )


def _all_have_status(kube: KubeClient, size: int) -> bool:
    listed = kube.list_objects("sloguard.io/v1alpha1", "ServiceLevelObjective", namespace=NAMESPACE)
    return sum(1 for item in listed["items"] if (item.get("status") or {}).get("state")) >= size


def _count(metrics: MetricsSnapshot, histogram: str) -> float:
    return metrics.value(f"{histogram}_count") or 0.0


def _histogram_delta(before: MetricsSnapshot, after: MetricsSnapshot, histogram: str) -> list[tuple[float, float]]:
    """(upper bound, cumulative count) of the observations made between the two snapshots."""
    earlier = before.labelled(f"{histogram}_bucket", "le")
    later = after.labelled(f"{histogram}_bucket", "le")
    return sorted((float(le), count - earlier.get(le, 0.0)) for le, count in later.items())


def _quantile(buckets: list[tuple[float, float]], q: float) -> float:
    """histogram_quantile(): linear interpolation inside the bucket holding the q-th observation."""
    total = buckets[-1][1] if buckets else 0.0
    if total <= 0:
        return math.nan
    rank = q * total
    lower_bound, lower_count = 0.0, 0.0
    for upper_bound, count in buckets:
        if count >= rank:
            if math.isinf(upper_bound):
                return lower_bound
            share = (rank - lower_count) / (count - lower_count) if count > lower_count else 1.0
            return lower_bound + (upper_bound - lower_bound) * share
        lower_bound, lower_count = upper_bound, count
    return lower_bound


def _accuracy(metrics: MetricsSnapshot, manifests: Sequence[Mapping[str, object]], prometheus_url: str) -> float:
    """Largest relative difference between the operator's burn rates (every window) and a direct evaluation's."""
    sample = manifests[:: max(1, len(manifests) // ACCURACY_SAMPLE)][:ACCURACY_SAMPLE]
    objectives = [objective_from_resource(manifest, min_step=30) for manifest in sample]
    exact = asyncio.run(_evaluate_directly(objectives, prometheus_url))
    worst = 0.0
    for objective, evaluation in zip(objectives, exact, strict=True):
        for window, expected in (evaluation.burn_rates or {}).items():
            labels = {"namespace": NAMESPACE, "slo": objective.name, "window": format_duration(window)}
            reported = metrics.value("slo_guard_burn_rate", **labels)
            if reported is None or not expected:
                return math.nan
            worst = max(worst, abs(reported - expected) / abs(expected))
    return worst


async def _evaluate_directly(objectives: Sequence[Objective], prometheus_url: str) -> list[Evaluation]:
    settings = EvaluationSettings(max_staleness=180)
    async with PrometheusClient(PrometheusSettings(url=prometheus_url, timeout=60)) as client:
        at = datetime.now(UTC)
        return list(
            await asyncio.gather(
                *(evaluate_objective(objective, client, at=at, settings=settings) for objective in objectives)
            )
        )


def _print_rows(rows: Sequence[Row], *, final: bool = False) -> None:
    if final:
        print("\n== slo-guard scale benchmark ==")
    header = (
        "| N | mode | cold start s | pass spacing p50 / p99 s | pass p50 / p99 ms | passes/SLO/interval "
        "| Prometheus queries/cycle | Prometheus CPU s/cycle | k8s writes/cycle | operator RSS (peak) MiB "
        "| operator CPU s/cycle | burn rate max rel. error | answers from recorded values |"
    )
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for row in rows:
        accuracy = "n/a" if row.accuracy is None else f"{row.accuracy * 100:.3f} %"
        recorded = "n/a" if row.recorded_share is None else f"{row.recorded_share * 100:.1f} %"
        print(
            f"| {row.size} | {row.mode} | {row.cold_start:.1f} | {row.spacing_p50:.1f} / {row.spacing_p99:.1f} "
            f"| {row.pass_p50 * 1000:.0f} / {row.pass_p99 * 1000:.0f} | {row.passes_per_slo_per_interval:.2f} "
            f"| {row.queries_per_cycle:.1f} | {row.prometheus_cpu_per_cycle:.2f} | {row.kube_writes_per_cycle:.1f} "
            f"| {row.operator_rss_mib:.0f} ({row.operator_peak_rss_mib:.0f}) | {row.operator_cpu_per_cycle:.2f} "
            f"| {accuracy} | {recorded} |"
        )
    for size in sorted({row.size for row in rows}):
        by_mode = {row.mode: row for row in rows if row.size == size}
        if {"ours", "naive"} <= by_mode.keys():
            ours, naive = by_mode["ours"], by_mode["naive"]
            print(
                f"N={size}: naive/ours Prometheus queries per cycle "
                f"{naive.queries_per_cycle / ours.queries_per_cycle:.0f}x, "
                f"Prometheus CPU per cycle {naive.prometheus_cpu_per_cycle / ours.prometheus_cpu_per_cycle:.1f}x"
            )
    sys.stdout.flush()


if __name__ == "__main__":
    sys.exit(main())
