"""Reaction benchmark: from exhaustion visible in Prometheus to the paused Deployment, with managed rules and without.

Every part is a real process or server: the many-services exporter (one service per SLO, scraped every second),
Prometheus, the emulated API server holding N SLOs (5-minute window, 99 %, Pause on Exhausted) and their
Deployments, and `slo-guard run`. Once every SLO is evaluated, a sample of services starts failing every
request, at moments spread over two intervals. For each of them:

- exhaustion visible: the first scrape timestamp at which a direct evaluation in Prometheus (the operator's own
  queries, sent as `slo-guard evaluate` sends them) says the budget is spent;
- paused: when a watch on the Deployments sees `spec.paused: true`.

It prints the reaction (paused minus visible) p50 and max per mode, plus the steady-state Prometheus queries and
CPU per cycle. `python -m benchmarks.reaction --sizes 50` is a quick check; the default is 1,000 SLOs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import random
import shutil
import statistics
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from tests.support.kube import Body, KubeClient

from benchmarks.stack import (
    EmulatorProcess,
    ManyServicesExporter,
    MetricsSnapshot,
    OperatorRunner,
    PrometheusProcess,
    slo_manifest,
    target_manifest,
    target_name,
    wait_until,
)
from slo_guard.adapters.prometheus import PrometheusClient, PrometheusSettings
from slo_guard.domain.evaluation_types import State
from slo_guard.domain.model import Objective
from slo_guard.resources import objective_from_resource
from slo_guard.service.evaluation import EvaluationSettings, evaluate_objective

NAMESPACE = "reaction"
WINDOW = "5m"
OBJECTIVE = 99.0
MIN_STEP = 2
RPS = 10.0
SCRAPE = "1s"
MODES = {"rules": True, "naive": False}
"""Mode name -> whether the operator manages recording rules."""
SPACING = "slo_guard_evaluation_spacing_seconds"
EVALUATION_DURATION = "slo_guard_evaluation_duration_seconds"
QUERY_DURATION = "slo_guard_prometheus_request_duration_seconds"


@dataclass(frozen=True, slots=True)
class Result:
    size: int
    mode: str
    interval: int
    reactions: list[float]
    """Seconds from exhaustion visible in Prometheus to the paused Deployment, one per exhausted SLO."""
    missed: int
    """Exhausted SLOs whose Deployment was not paused before the deadline."""
    visible_after: list[float]
    """Seconds from a service failing to Prometheus showing its budget spent: a check on the benchmark itself."""
    queries_per_cycle: float
    prometheus_cpu_per_cycle: float
    spacing_p99: float
    """Seconds between the starts of one SLO's consecutive passes, 99th percentile (a bucket bound), from steady
    state to the end."""
    pass_p99: float
    """Seconds one pass takes (a coalesced read waits up to a second), 99th percentile bucket bound, same span."""
    query_p99: float
    """Seconds one Prometheus request of the operator takes, 99th percentile bucket bound, same span."""


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    results: list[Result] = []
    for size in (int(size) for size in args.sizes.split(",")):
        for mode in args.modes.split(","):
            workdir = Path(tempfile.mkdtemp(prefix=f"slo-guard-reaction-{mode}-{size}-"))
            try:
                results.append(_run(workdir, size=size, mode=mode, args=args))
            finally:
                if not args.keep:
                    shutil.rmtree(workdir, ignore_errors=True)
            _print(results)
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000", help="comma-separated SLO counts")
    parser.add_argument("--modes", default="rules,naive", help="rules, naive or both")
    parser.add_argument("--interval", type=int, default=10, help="each SLO's evaluation interval in seconds")
    parser.add_argument("--exhausted", type=int, default=100, help="SLOs whose service starts failing (at most N)")
    parser.add_argument("--seed", type=int, default=15, help="seed of the moments the services start failing")
    parser.add_argument(
        "--keep",
        action="store_true",
        help="keep the work directories (logs, rule files, moments.json: per service, "
        "when it started failing, when Prometheus showed its budget spent, when its Deployment was paused)",
    )
    return parser


def _run(workdir: Path, *, size: int, mode: str, args: argparse.Namespace) -> Result:
    print(f"\n== N={size} mode={mode} interval={args.interval}s ==", flush=True)
    interval = args.interval
    manifests = [
        slo_manifest(index, namespace=NAMESPACE, window=WINDOW, objective=OBJECTIVE, interval=f"{interval}s")
        for index in range(size)
    ]
    with (
        ManyServicesExporter(size, rps=RPS, start=time.time() - 3600) as exporter,
        PrometheusProcess(
            workdir / "prometheus", scrape_targets=[exporter.target], scrape_interval=SCRAPE, evaluation_interval=SCRAPE
        ) as prometheus,
        EmulatorProcess(workdir / "emulator", request_log_limit=10_000) as emulator,
    ):
        prometheus.wait_scraped()
        created = emulator.create_many(
            [*(target_manifest(index, namespace=NAMESPACE) for index in range(size)), *manifests]
        )
        print(f"created {created.created} objects at {created.per_second:.0f}/s", flush=True)
        # Writes are not what is measured: a bucket wide enough for every pause keeps throttling out of it.
        operator_args = ["--min-step", f"{MIN_STEP}s", "--status-heartbeat", "24h"]
        operator_args += ["--kube-writes-per-second", "200", "--kube-write-burst", "400"]
        if MODES[mode]:
            operator_args += ["--rules-file", str(prometheus.rules_dir / "slo-guard.yaml")]
        started = time.monotonic()
        with OperatorRunner(
            workdir / "operator", kubeconfig=emulator.kubeconfig, prometheus_url=prometheus.url, args=operator_args
        ) as operator:
            wait_until(
                lambda: _healthy(emulator.kube, size),
                timeout=max(300.0, size * 0.5),
                what=f"all {size} SLOs Healthy",
                every=2.0,
            )
            print(f"all Healthy after {time.monotonic() - started:.0f} s", flush=True)
            # Rules written, loaded and run at least twice before anything is measured.
            time.sleep(3 * interval)
            steady = operator.metrics()
            queries, cpu = _steady_cost(prometheus, cycles=3, interval=interval)
            pauses = _PauseWatch(emulator.kube).start()
            chosen = _exhausted_indices(size, args.exhausted)
            flips = _flip(exporter, chosen, spread=2 * interval, seed=args.seed)
            print(
                f"{len(chosen)} services failing from {min(flips.values()):.0f} to {max(flips.values()):.0f}",
                flush=True,
            )
            deadline = time.monotonic() + 8 * interval + 30
            wanted = {target_name(index) for index in chosen}
            while time.monotonic() < deadline and not wanted <= pauses.paused.keys():
                time.sleep(1)
            paused = dict(pauses.paused)
            spans = {
                name: _p99(steady, operator.metrics(), name) for name in (SPACING, EVALUATION_DURATION, QUERY_DURATION)
            }
        visible = asyncio.run(_visible(prometheus, manifests, flips))
    moments = {index: (flips[index], visible.get(index), paused.get(target_name(index))) for index in chosen}
    (workdir / "moments.json").write_text(json.dumps(moments, indent=1))
    reactions = [
        paused[target_name(index)] - moment for index, moment in visible.items() if target_name(index) in paused
    ]
    return Result(
        size=size,
        mode=mode,
        interval=interval,
        reactions=reactions,
        missed=len(chosen) - len(reactions),
        visible_after=[moment - flips[index] for index, moment in visible.items()],
        queries_per_cycle=queries,
        prometheus_cpu_per_cycle=cpu,
        spacing_p99=spans[SPACING],
        pass_p99=spans[EVALUATION_DURATION],
        query_p99=spans[QUERY_DURATION],
    )


def _healthy(kube: KubeClient, size: int) -> bool:
    listed = kube.list_objects("sloguard.io/v1alpha1", "ServiceLevelObjective", namespace=NAMESPACE)
    return sum(1 for item in listed["items"] if (item.get("status") or {}).get("state") == "Healthy") >= size


def _steady_cost(prometheus: PrometheusProcess, *, cycles: int, interval: int) -> tuple[float, float]:
    """Instant queries and Prometheus CPU seconds per interval, before anything fails."""
    queries, cpu = prometheus.http_requests("/api/v1/query"), prometheus.cpu_seconds()
    time.sleep(cycles * interval)
    return (
        (prometheus.http_requests("/api/v1/query") - queries) / cycles,
        (prometheus.cpu_seconds() - cpu) / cycles,
    )


def _p99(before: MetricsSnapshot, after: MetricsSnapshot, histogram: str) -> float:
    """The upper bound of the bucket holding the 99th percentile of what was observed between the snapshots."""
    earlier = before.labelled(f"{histogram}_bucket", "le")
    buckets = sorted(
        (float(le), count - earlier.get(le, 0.0)) for le, count in after.labelled(f"{histogram}_bucket", "le").items()
    )
    total = buckets[-1][1] if buckets else 0.0
    return next((bound for bound, count in buckets if total and count >= 0.99 * total), math.nan)


def _exhausted_indices(size: int, count: int) -> list[int]:
    count = max(1, min(size, count))
    return [index * size // count for index in range(count)]


class _PauseWatch:
    """When each Deployment is first seen paused, from a watch (the wall clock of this process)."""

    def __init__(self, kube: KubeClient) -> None:
        self._kube = kube
        self.paused: dict[str, float] = {}
        self._opened = threading.Event()

    def start(self) -> _PauseWatch:
        threading.Thread(target=self._watch, name="pause-watch", daemon=True).start()
        if not self._opened.wait(30):
            raise TimeoutError("the Deployment watch did not open")
        return self

    def _watch(self) -> None:
        stream = self._kube.watch("apps/v1", "Deployment", namespace=NAMESPACE, read_timeout=3600)
        self._opened.set()
        while (event := stream.next_event()) is not None:
            body = event.get("object") or {}
            name = (body.get("metadata") or {}).get("name")
            if name and (body.get("spec") or {}).get("paused") is True:
                self.paused.setdefault(name, time.time())


def _flip(exporter: ManyServicesExporter, chosen: Sequence[int], *, spread: float, seed: int) -> dict[int, float]:
    """Make each chosen service fail every request from a random moment within `spread` seconds; when, by index."""
    rng = random.Random(seed)
    begin = time.time() + 1
    moments = sorted((begin + rng.uniform(0, spread), index) for index in chosen)
    for moment, index in moments:
        time.sleep(max(0.0, moment - time.time()))
        exporter.set_error_ratio(index, 1.0, at=moment)
    return {index: moment for moment, index in moments}


async def _visible(
    prometheus: PrometheusProcess, manifests: Sequence[Body], flips: dict[int, float]
) -> dict[int, float]:
    """Per failing service, the first scrape timestamp at which a direct evaluation of its SLO says Exhausted."""
    scrapes = _scrape_times(prometheus.url, since=min(flips.values()) - 5, until=time.time())
    settings = EvaluationSettings(max_staleness=180)

    async def first_exhausted(client: PrometheusClient, objective: Objective, flipped: float) -> float | None:
        for moment in (moment for moment in scrapes if moment >= flipped):
            evaluation = await evaluate_objective(
                objective, client, at=datetime.fromtimestamp(moment, UTC), settings=settings
            )
            if evaluation.state is State.UNKNOWN:
                raise RuntimeError(
                    f"the direct evaluation of {objective.key} at {moment} is Unknown: {evaluation.message}"
                )
            if evaluation.state is State.EXHAUSTED:
                return moment
        return None

    async with PrometheusClient(PrometheusSettings(url=prometheus.url, timeout=30)) as client:
        found = await asyncio.gather(
            *(
                first_exhausted(client, objective_from_resource(manifests[index], min_step=MIN_STEP), flipped)
                for index, flipped in flips.items()
            )
        )
    return {index: moment for index, moment in zip(flips, found, strict=True) if moment is not None}


def _scrape_times(url: str, *, since: float, until: float) -> list[float]:
    """Timestamps of the exporter's successful scrapes from `since` to `until`, oldest first (a failed one leaves
    no sample: every series is stale at it)."""
    query = urllib.parse.urlencode({"query": f'up{{job="services"}}[{math.ceil(until - since)}s]', "time": until})
    with urllib.request.urlopen(f"{url}/api/v1/query?{query}", timeout=30) as response:  # noqa: S310 (loopback)
        [series] = json.load(response)["data"]["result"]
    return [float(moment) for moment, up in series["values"] if up == "1"]


def _print(results: Sequence[Result]) -> None:
    print(
        "\n| N | mode | interval s | exhausted | reaction p50 s | reaction max s | missed "
        "| visible after failing p50 / max s | Prometheus queries/interval | Prometheus CPU s/interval "
        "| pass spacing p99 ≤ s | pass p99 ≤ s | Prometheus request p99 ≤ s |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for row in results:
        p50 = statistics.median(row.reactions) if row.reactions else float("nan")
        worst = max(row.reactions, default=float("nan"))
        print(
            f"| {row.size} | {row.mode} | {row.interval} | {len(row.reactions) + row.missed} | {p50:.1f} "
            f"| {worst:.1f} | {row.missed} | {statistics.median(row.visible_after or [math.nan]):.1f} / "
            f"{max(row.visible_after, default=math.nan):.1f} | {row.queries_per_cycle:.1f} "
            f"| {row.prometheus_cpu_per_cycle:.2f} | {row.spacing_p99:.1f} | {row.pass_p99:.2f} | {row.query_p99:.2f} |"
        )
    sys.stdout.flush()


if __name__ == "__main__":
    sys.exit(main())
