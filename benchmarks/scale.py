"""Scale benchmark: N SLOs, with managed recording rules and without (the naive baseline), on one or more replicas.

Every part is a real process: Prometheus holding 30 days of backfilled history (then scraping live), the emulated
API server holding N SLOs and their Deployments, and `slo-guard run` (one process per replica). For each N and
replica count it prints one row per mode, the naive/ours ratios and, for ours, the targets below (PASS/MISS).

Commands (`python -m benchmarks.scale --help` for the knobs):

- `make bench`: `python -m benchmarks.scale` = `--sizes 100,1000 --modes ours,naive --shards 1 --interval 30`, the
  README's Scale table.
- `make bench-scale-out` runs, one after the other:
  `python -m benchmarks.scale --sizes 5000 --modes ours --interval 60 --cycles 3 --warmup-cycles 1` and
  `python -m benchmarks.scale --sizes 1000,3000 --modes ours --shards 2,3`.

- naive: `slo-guard run` without `--rules-file`: each pass sends 1 + 2 queries per window (17 for a 30-day SLO),
  as analysis tools that query per object per window do.
- ours: `slo-guard run --rules-file`: Prometheus evaluates the managed recording rules; each cycle reads them back
  with two queries.

Per-cycle figures are normalised by the passes the operator really completed (a saturated run falls behind, and
its raw per-30-s figures would flatter it): "per cycle" means per N passes, over all replicas.

With `--shards K` (K > 1) K replicas run against the same emulator and Prometheus, each with
`--shards K --identity replica-<i> --shard-lease-namespace slo-guard`, its own ports, log and rule file, and no
`--standalone` (a sharded operator runs kopf standalone itself). Operator RSS and CPU are shown as the total and
each replica's share (the peak is the highest replica's); spacing and pass quantiles are over every replica's
histogram; "SLOs on >1 / 0 replicas" counts the SLOs whose `slo_guard_state` series several replicas, or none,
export at the end of the measured cycles. K8s writes exclude Lease writes, shown apart.

RSS above idle: the operator's RSS minus an idle operator's (same flags, one replica, no SLOs, measured once per
mode after it is ready and its RSS has settled), per SLO. Targets, judged at the printed precision:

- RSS of each replica <= 250 MiB, and <= 40 KiB per SLO above idle;
- Prometheus queries per cycle <= 2 per replica; 0 Kubernetes writes per steady cycle (Leases aside);
- pass spacing p99 <= interval x 1.1;
- cold start <= N / (replicas x --kube-writes-per-second) x 2 + 30 s (issue 15's budget of two writes per
  new SLO; kopf's finalizer patch does not count against the operator's token bucket);
- every SLO exported by exactly one replica.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from tests.support.kube import KubeClient
from tests.support.prometheus import free_ports

from benchmarks.stack import (
    EmulatorProcess,
    ManyServicesExporter,
    MetricsSnapshot,
    OperatorFleet,
    OperatorRunner,
    PrometheusProcess,
    backfill_history,
    service_name,
    slo_manifest,
    slo_name,
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
LEASE_NAMESPACE = "slo-guard"
IDLE_SETTLE_SAMPLES = 5
IDLE_SETTLE_TOLERANCE = 0.01
"""The idle operator has settled once its last 5 RSS samples, 2 s apart, are within 1 % of each other."""
IDLE_SETTLE_TIMEOUT = 120.0
RSS_LIMIT_MIB = 250.0
RSS_PER_SLO_LIMIT_KIB = 40.0
QUERIES_PER_REPLICA = 2.0
SPACING_SLACK = 1.1
COLD_START_WRITES_PER_SLO = 2
COLD_START_SLACK = 30.0


@dataclass(frozen=True, slots=True)
class Ownership:
    """Which replicas export an SLO's per-SLO series: each SLO must be exported by exactly one."""

    duplicated: frozenset[str]
    """SLOs ("namespace/name") exported by more than one replica."""
    missing: frozenset[str]
    """Expected SLOs exported by none."""


@dataclass(frozen=True, slots=True)
class Row:
    size: int
    mode: str
    replicas: int
    interval: int
    writes_per_second: float
    """The operator's --kube-writes-per-second (each replica's)."""
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
    """Writes other than to Leases."""
    lease_writes_per_cycle: float
    operator_rss_mib: tuple[float, ...]
    """One per replica, as the peak and CPU figures."""
    operator_peak_rss_mib: tuple[float, ...]
    operator_cpu_per_cycle: tuple[float, ...]
    idle_rss_mib: float
    """One idle replica (same flags, no SLOs)."""
    ownership: Ownership
    accuracy: float | None
    """Largest relative difference of any window's burn rate from an exact evaluation, over a sample of SLOs."""
    recorded_share: float | None
    """Share of the evaluations' queries answered from recorded values (the rest: direct or reused answers)."""

    @property
    def rss_above_idle_kib_per_slo(self) -> float:
        return (math.fsum(self.operator_rss_mib) - self.replicas * self.idle_rss_mib) * 1024 / self.size


@dataclass(frozen=True, slots=True)
class Target:
    """One figure against its limit (at most), judged at the precision it is printed with."""

    what: str
    value: float
    limit: float
    unit: str = ""
    digits: int = 1

    @property
    def met(self) -> bool:
        # NaN (nothing measured) never meets a target.
        return round(self.value, self.digits) <= self.limit

    def __str__(self) -> str:
        verdict = "PASS" if self.met else "MISS"
        value, limit = (f"{number:,.{self.digits}f}{self.unit}" for number in (self.value, self.limit))
        return f"{self.what} {value} {verdict} (<= {limit})"


def targets(row: Row) -> list[Target]:
    """The scale targets (module docstring) for one run."""
    cold_start_limit = row.size / (row.replicas * row.writes_per_second) * COLD_START_WRITES_PER_SLO + COLD_START_SLACK
    return [
        Target("RSS per replica", max(row.operator_rss_mib), RSS_LIMIT_MIB, " MiB", 0),
        Target("above idle", row.rss_above_idle_kib_per_slo, RSS_PER_SLO_LIMIT_KIB, " KiB/SLO"),
        Target("queries/cycle", row.queries_per_cycle, QUERIES_PER_REPLICA * row.replicas),
        Target("k8s writes/cycle", row.kube_writes_per_cycle, 0.0),
        Target("spacing p99", row.spacing_p99, row.interval * SPACING_SLACK, " s"),
        Target("cold start", row.cold_start, cold_start_limit, " s", 0),
        Target("SLOs on >1 replica", len(row.ownership.duplicated), 0.0, digits=0),
        Target("SLOs on none", len(row.ownership.missing), 0.0, digits=0),
    ]


def exported_slos(metrics: MetricsSnapshot) -> frozenset[str]:
    """The SLOs ("namespace/name") with a `slo_guard_state` series on one replica's /metrics."""
    return frozenset(
        f"{sample.labels['namespace']}/{sample.labels['slo']}"
        for sample in metrics.samples
        if sample.name == "slo_guard_state"
    )


def ownership(exported: Sequence[Iterable[str]], expected: Iterable[str]) -> Ownership:
    """Which of the SLOs the replicas export (one collection per replica) are on several replicas, or none."""
    replicas_per_slo = Counter(slo for per_replica in exported for slo in set(per_replica))
    return Ownership(
        duplicated=frozenset(slo for slo, count in replicas_per_slo.items() if count > 1),
        missing=frozenset(expected) - replicas_per_slo.keys(),
    )


def merge_histograms(histograms: Iterable[Sequence[tuple[float, float]]]) -> list[tuple[float, float]]:
    """(upper bound, cumulative count) buckets of several replicas' histograms, summed bound by bound."""
    totals: dict[float, float] = {}
    for buckets in histograms:
        for bound, count in buckets:
            totals[bound] = totals.get(bound, 0.0) + count
    return sorted(totals.items())


def rss_settled(samples: Sequence[int]) -> bool:
    """Whether the last IDLE_SETTLE_SAMPLES readings are within IDLE_SETTLE_TOLERANCE of each other."""
    recent = samples[-IDLE_SETTLE_SAMPLES:]
    return len(recent) == IDLE_SETTLE_SAMPLES and max(recent) - min(recent) <= IDLE_SETTLE_TOLERANCE * max(recent)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    sizes = [int(size) for size in args.sizes.split(",")]
    replica_counts = [int(count) for count in args.shards.split(",")]
    workdir = Path(tempfile.mkdtemp(prefix="slo-guard-scale-"))
    rows: list[Row] = []
    idle_rss: dict[str, int] = {}
    try:
        with _Backend(workdir, services=args.services, step=args.step, days=args.history_days) as backend:
            for size in sizes:
                for replicas in replica_counts:
                    for mode in args.modes.split(","):
                        rows.append(
                            _run(
                                backend,
                                size=size,
                                mode=mode,
                                replicas=replicas,
                                args=args,
                                workdir=workdir / f"{mode}-{size}-x{replicas}",
                                idle_rss=idle_rss,
                            )
                        )
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
    parser.add_argument(
        "--shards", default="1", help="comma-separated replica counts, each replica running --shards K (e.g. 2,3)"
    )
    parser.add_argument("--services", type=int, default=40, help="synthetic services the SLOs are spread over")
    parser.add_argument("--history-days", type=float, default=31.0, help="days of backfilled history")
    parser.add_argument("--step", type=float, default=30.0, help="seconds between samples (history and scrapes)")
    parser.add_argument("--interval", type=int, default=30, help="each SLO's evaluation interval in seconds")
    parser.add_argument(
        "--kube-writes-per-second", type=float, default=20.0, help="the operator's write rate (each replica's)"
    )
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


def _run(
    backend: _Backend,
    *,
    size: int,
    mode: str,
    replicas: int,
    args: argparse.Namespace,
    workdir: Path,
    idle_rss: dict[str, int],
) -> Row:
    print(f"\n== N={size} mode={mode} replicas={replicas} ==", flush=True)
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
    # The status heartbeat is the one write a steady SLO makes (N per heartbeat); a day keeps it out of the
    # measured cycles, which then count only writes caused by evaluation.
    common = ["--min-step", MIN_STEP, "--status-heartbeat", "24h"]
    common += ["--kube-writes-per-second", f"{args.kube_writes_per_second:g}"]
    with EmulatorProcess(workdir / "emulator", request_log_limit=1_000_000) as emulator:
        if mode not in idle_rss:
            idle_rss[mode] = _idle_rss(
                backend, emulator, [*common, *_mode_args(backend, mode, "idle")], workdir / "idle"
            )
            backend.clear_rules()
            print(f"idle operator RSS ({mode}): {idle_rss[mode] / 2**20:.1f} MiB", flush=True)
        created = emulator.create_many(
            [*(target_manifest(index, namespace=NAMESPACE) for index in range(size)), *manifests]
        )
        print(f"created {created.created} objects at {created.per_second:.0f}/s", flush=True)
        if replicas > 1:
            emulator.kube.ensure_namespace(LEASE_NAMESPACE)
        ports = free_ports(3 * replicas)
        # Readiness waits for kopf to pick up every SLO: minutes for thousands on a busy machine.
        timeout = max(600.0, size * 0.5)
        fleet = OperatorFleet(
            [
                OperatorRunner(
                    workdir / f"operator-{index}",
                    kubeconfig=emulator.kubeconfig,
                    prometheus_url=backend.server.url,
                    args=[*common, *_mode_args(backend, mode, str(index)), *_shard_args(index, replicas)],
                    standalone=replicas == 1,
                    ports=(ports[3 * index], ports[3 * index + 1], ports[3 * index + 2]),
                )
                for index in range(replicas)
            ],
            ready_timeout=timeout,
        )
        started = time.monotonic()
        with fleet:
            wait_until(
                lambda: _all_have_status(emulator.kube, size),
                timeout=timeout,
                what=f"a status on all {size} SLOs",
                # Listing thousands of SLOs costs the shared CPU too.
                every=max(2.0, size / 1000),
            )
            cold_start = time.monotonic() - started
            print(f"cold start: {cold_start:.1f} s", flush=True)
            time.sleep(args.warmup_cycles * args.interval)
            return _measure(
                backend,
                emulator,
                fleet,
                manifests,
                size=size,
                mode=mode,
                cold_start=cold_start,
                idle_rss=idle_rss[mode],
                args=args,
            )


def _mode_args(backend: _Backend, mode: str, replica: str) -> list[str]:
    # One rule file per replica: each writes only the groups of the SLOs it evaluates.
    return ["--rules-file", str(backend.server.rules_dir / f"slo-guard-{replica}.yaml")] if mode == "ours" else []


def _shard_args(index: int, replicas: int) -> list[str]:
    if replicas == 1:
        return []
    return ["--shards", str(replicas), "--identity", f"replica-{index}", "--shard-lease-namespace", LEASE_NAMESPACE]


def _idle_rss(backend: _Backend, emulator: EmulatorProcess, operator_args: Sequence[str], workdir: Path) -> int:
    """RSS of one replica with no SLOs, once it is ready and its RSS has settled."""
    samples: list[int] = []
    with OperatorRunner(
        workdir, kubeconfig=emulator.kubeconfig, prometheus_url=backend.server.url, args=operator_args
    ) as operator:

        def settled() -> bool:
            samples.append(operator.rss_bytes())
            return rss_settled(samples)

        wait_until(settled, timeout=IDLE_SETTLE_TIMEOUT, what="the idle operator's RSS to settle", every=2.0)
    return samples[-1]


def _measure(
    backend: _Backend,
    emulator: EmulatorProcess,
    fleet: OperatorFleet,
    manifests: Sequence[Mapping[str, object]],
    *,
    size: int,
    mode: str,
    cold_start: float,
    idle_rss: int,
    args: argparse.Namespace,
) -> Row:
    prometheus = backend.server
    operators = fleet.runners
    emulator.client.clear_requests()
    before = [operator.metrics() for operator in operators]
    queries_before = prometheus.http_requests("/api/v1/query")
    prometheus_cpu_before = prometheus.cpu_seconds()
    operator_cpu_before = [operator.cpu_seconds() for operator in operators]
    time.sleep(args.cycles * args.interval)
    # CPU before /metrics: rendering thousands of per-SLO series is the scrape's cost, not the cycle's.
    operator_cpu = [operator.cpu_seconds() - cpu for operator, cpu in zip(operators, operator_cpu_before, strict=True)]
    after = [operator.metrics() for operator in operators]
    queries = prometheus.http_requests("/api/v1/query") - queries_before
    prometheus_cpu = prometheus.cpu_seconds() - prometheus_cpu_before
    writes = [record for record in emulator.client.requests() if record.verb in WRITE_VERBS]
    lease_writes = sum(1 for record in writes if record.resource == "leases")
    passes = math.fsum(
        _count(later, "slo_guard_evaluation_duration_seconds")
        - _count(earlier, "slo_guard_evaluation_duration_seconds")
        for earlier, later in zip(before, after, strict=True)
    )
    cycles_done = passes / size if passes else math.nan
    spacing = merge_histograms(
        _histogram_delta(earlier, later, "slo_guard_evaluation_spacing_seconds")
        for earlier, later in zip(before, after, strict=True)
    )
    durations = merge_histograms(
        _histogram_delta(earlier, later, "slo_guard_evaluation_duration_seconds")
        for earlier, later in zip(before, after, strict=True)
    )
    exported = [exported_slos(metrics) for metrics in after]
    print("SLOs exported per replica: " + " / ".join(str(len(slos)) for slos in exported), flush=True)
    all_before, all_after = _merged(before), _merged(after)
    accuracy = _accuracy(all_after, manifests, prometheus.url) if mode == "ours" else None
    reads = {
        source: (all_after.value("slo_guard_recorded_reads_total", source=source) or 0.0)
        - (all_before.value("slo_guard_recorded_reads_total", source=source) or 0.0)
        for source in ("recorded", "direct", "reused")
    }
    answered = math.fsum(reads.values())
    if mode == "ours":
        late = (all_after.value("slo_guard_recorded_late_evaluations_total") or 0.0) - (
            all_before.value("slo_guard_recorded_late_evaluations_total") or 0.0
        )
        print(f"rule group evaluations read over a second late: {late / args.cycles:.1f} per cycle", flush=True)
    recorded_share = reads["recorded"] / answered if mode == "ours" and answered else None
    return Row(
        size=size,
        mode=mode,
        replicas=len(operators),
        interval=args.interval,
        writes_per_second=args.kube_writes_per_second,
        cold_start=cold_start,
        spacing_p50=quantile(spacing, 0.5),
        spacing_p99=quantile(spacing, 0.99),
        pass_p50=quantile(durations, 0.5),
        pass_p99=quantile(durations, 0.99),
        passes_per_slo_per_interval=cycles_done / args.cycles,
        queries_per_cycle=queries / cycles_done,
        prometheus_cpu_per_cycle=prometheus_cpu / cycles_done,
        kube_writes_per_cycle=(len(writes) - lease_writes) / cycles_done,
        lease_writes_per_cycle=lease_writes / cycles_done,
        operator_rss_mib=tuple(operator.rss_bytes() / 2**20 for operator in operators),
        operator_peak_rss_mib=tuple(operator.rss_bytes(peak=True) / 2**20 for operator in operators),
        operator_cpu_per_cycle=tuple(cpu / cycles_done for cpu in operator_cpu),
        idle_rss_mib=idle_rss / 2**20,
        ownership=ownership(exported, (f"{NAMESPACE}/{slo_name(index)}" for index in range(size))),
        accuracy=accuracy,
        recorded_share=recorded_share,
    )


def _merged(snapshots: Sequence[MetricsSnapshot]) -> MetricsSnapshot:
    """Every replica's samples as one page: values() then sum over replicas."""
    return MetricsSnapshot(tuple(sample for snapshot in snapshots for sample in snapshot.samples))


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


def quantile(buckets: Sequence[tuple[float, float]], q: float) -> float:
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
        "| N | mode | replicas | cold start s | pass spacing p50 / p99 s | pass p50 / p99 ms | passes/SLO/interval "
        "| Prometheus queries/cycle | Prometheus CPU s/cycle | k8s writes/cycle | operator RSS (peak) MiB "
        "| RSS above idle KiB/SLO | operator CPU s/cycle | SLOs on >1 / 0 replicas | burn rate max rel. error "
        "| answers from recorded values |"
    )
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for row in rows:
        accuracy = "n/a" if row.accuracy is None else f"{row.accuracy * 100:.3f} %"
        recorded = "n/a" if row.recorded_share is None else f"{row.recorded_share * 100:.1f} %"
        writes = f"{row.kube_writes_per_cycle:.1f}"
        if row.lease_writes_per_cycle:
            writes += f" (+{row.lease_writes_per_cycle:.1f} Lease)"
        print(
            f"| {row.size} | {row.mode} | {row.replicas} | {row.cold_start:.1f} "
            f"| {row.spacing_p50:.1f} / {row.spacing_p99:.1f} "
            f"| {row.pass_p50 * 1000:.0f} / {row.pass_p99 * 1000:.0f} | {row.passes_per_slo_per_interval:.2f} "
            f"| {row.queries_per_cycle:.1f} | {row.prometheus_cpu_per_cycle:.2f} | {writes} "
            f"| {per_replica(row.operator_rss_mib, 0)} ({max(row.operator_peak_rss_mib):.0f}) "
            f"| {row.rss_above_idle_kib_per_slo:.1f} | {per_replica(row.operator_cpu_per_cycle, 2)} "
            f"| {len(row.ownership.duplicated)} / {len(row.ownership.missing)} | {accuracy} | {recorded} |"
        )
    for size, replicas in sorted({(row.size, row.replicas) for row in rows}):
        by_mode = {row.mode: row for row in rows if (row.size, row.replicas) == (size, replicas)}
        if {"ours", "naive"} <= by_mode.keys():
            ours, naive = by_mode["ours"], by_mode["naive"]
            print(
                f"N={size}, {replicas} replica(s): naive/ours Prometheus queries per cycle "
                f"{naive.queries_per_cycle / ours.queries_per_cycle:.0f}x, "
                f"Prometheus CPU per cycle {naive.prometheus_cpu_per_cycle / ours.prometheus_cpu_per_cycle:.1f}x"
            )
    for row in rows:
        if row.mode == "ours":
            checks = targets(row)
            verdict = "all targets met" if all(check.met for check in checks) else "targets MISSED"
            print(f"N={row.size} x{row.replicas} ({verdict}): " + "; ".join(str(check) for check in checks))
    sys.stdout.flush()


def per_replica(values: Sequence[float], digits: int) -> str:
    """One replica's figure, or the total and each replica's: `290 = 97 + 96 + 97`."""
    total = f"{math.fsum(values):.{digits}f}"
    if len(values) == 1:
        return total
    return f"{total} = " + " + ".join(f"{value:.{digits}f}" for value in values)


if __name__ == "__main__":
    sys.exit(main())
