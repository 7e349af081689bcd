"""Soak: N SLOs for M minutes under random Prometheus faults, API faults and SLI changes; prints what it saw.

`python -m benchmarks.soak [--slos 200] [--minutes 30] [--seed 1]` from the repository root. Every part is a real
process (benchmarks/stack.py): the emulated API server, Prometheus scraping one many-services exporter, and
`slo-guard run` reaching Prometheus through a FaultProxy. Half the SLOs pause their Deployment, half scale it.

Printed figures: operator RSS at start, end and peak, threads (and asyncio tasks once the operator exports
`slo_guard_asyncio_tasks`), CPU, API writes per minute (from the emulator's request log), the faults injected,
the operator's action counters, and wrong actions: at quiet moments (chaos paused, then a settle period) and at the
end, every Deployment's state is compared with what its SLO's status implies; a mismatch counts only when two
snapshots an evaluation interval apart both show it. No figure is asserted: this prints, the reader judges.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.emulator_log import WRITE_VERBS, RequestRecord
from tests.support.faults import FaultProxy
from tests.support.kube import EmulatorClient

from benchmarks.stack import (
    SLO_KIND,
    EmulatorProcess,
    ManyServicesExporter,
    OperatorRunner,
    PrometheusProcess,
    backfill_history,
    slo_manifest,
    target_manifest,
)
from slo_guard.domain.durations import parse_duration
from slo_guard.domain.policy import HELD_LABEL, ORIGINAL_REPLICAS, PAUSED_BY, SCALED_BY, parse_holders

SLOS_PER_NAMESPACE = 50
REPLICAS = 3
"""Every target Deployment starts with this many replicas."""
SCALE_TO = 1
RPS = 20.0
"""Requests per second of every service."""
RESUME_ABOVE = 0.05
TICK = 2.0
"""Seconds between chaos decisions."""
REQUESTS_POLL = 10.0
"""Seconds between reads (and clears) of the emulator's request log."""
SCRAPE_INTERVAL = "5s"
OPERATOR_ARGS = (
    "--min-step", "5s",
    "--max-staleness", "30s",
    "--status-heartbeat", "60s",
    "--prometheus-timeout", "2",
    "--prometheus-retries", "1",
    "--prometheus-breaker-threshold", "3",
    "--prometheus-breaker-reset", "5",
)  # fmt: skip
BREAKER_RESET = 5.0
"""Seconds; must match --prometheus-breaker-reset above."""
INCIDENT_SHARE = 0.1
"""Share of services failing at any moment, on average."""
INCIDENT_SECONDS = (15.0, 90.0)
INCIDENT_RATIO = (0.05, 1.0)
PROMETHEUS_FAULT_CHANCE = 1 / 20
"""Per tick, when no Prometheus fault is active."""
PROMETHEUS_FAULT_SECONDS = (5.0, 30.0)
API_FAULT_CHANCE = 1 / 8
"""Per tick."""
WATCH_DROP_CHANCE = 1 / 60
"""Per tick."""
API_FAULTS: tuple[tuple[str, str, tuple[int, ...]], ...] = (
    ("patch", "deployments", (409, 429, 500)),
    ("get", "deployments", (429, 500)),
    ("patch", "servicelevelobjectives", (409, 429, 500)),
    ("create", "events", (429, 500)),
    ("watch", "servicelevelobjectives", (410, 500)),
)
"""(verb, resource, statuses to pick from) the API faults hit."""


@dataclass(frozen=True, slots=True, order=True)
class Mismatch:
    """A target whose state contradicts its SLO's status or the operator's own bookkeeping."""

    slo: str
    """namespace/name."""
    problem: str


def find_mismatches(objects: Sequence[Mapping[str, Any]]) -> set[Mismatch]:
    """Every SLO (Enforce mode, one Deployment target) whose target is not where its status says it must be."""
    deployments = {_key(obj): obj for obj in objects if obj.get("kind") == "Deployment"}
    found: set[Mismatch] = set()
    for slo in (obj for obj in objects if obj.get("kind") == SLO_KIND):
        namespace, name = _key(slo)
        target = deployments.get((namespace, slo["spec"]["targets"][0]["name"]))
        problems = ["target missing"] if target is None else _problems(slo, target)
        found |= {Mismatch(f"{namespace}/{name}", problem) for problem in problems}
    return found


def _key(obj: Mapping[str, Any]) -> tuple[str, str]:
    return obj["metadata"].get("namespace", ""), obj["metadata"]["name"]


def _problems(slo: Mapping[str, Any], target: Mapping[str, Any]) -> list[str]:
    name = slo["metadata"]["name"]
    policy = slo["spec"]["policy"]
    metadata = target["metadata"]
    annotations = metadata.get("annotations") or {}
    pausing = policy["action"] == "Pause"
    holders = parse_holders(annotations.get(PAUSED_BY if pausing else SCALED_BY))
    problems = _bookkeeping_problems(policy, target["spec"], annotations, holders)
    if (metadata.get("labels") or {}).get(HELD_LABEL) != ("true" if holders else None):
        problems.append(f"label {HELD_LABEL} disagrees with holders {sorted(holders)}")
    status = slo.get("status") or {}
    state = status.get("state")
    remaining = (status.get("errorBudget") or {}).get("remaining")
    if state == "Exhausted" and name not in holders:
        problems.append("status Exhausted but the target is not held")
    if state == "Healthy" and remaining is not None and remaining > policy["resumeAbove"] and name in holders:
        problems.append(f"status Healthy with {remaining:.3g} of the budget left but the target is still held")
    return problems


def _bookkeeping_problems(
    policy: Mapping[str, Any], spec: Mapping[str, Any], annotations: Mapping[str, str], holders: frozenset[str]
) -> list[str]:
    """Spec and annotations must agree (nobody but slo-guard touches these Deployments here)."""
    if policy["action"] == "Pause":
        paused = bool(spec.get("paused"))
        return [] if paused == bool(holders) else [f"spec.paused={paused} but {PAUSED_BY}={sorted(holders)}"]
    replicas = spec.get("replicas")
    if holders:
        wanted, original = policy["scaleTo"], str(REPLICAS)
        if replicas != wanted or annotations.get(ORIGINAL_REPLICAS) != original:
            return [f"scaled but replicas={replicas}, {ORIGINAL_REPLICAS}={annotations.get(ORIGINAL_REPLICAS)}"]
        return []
    if replicas != REPLICAS or ORIGINAL_REPLICAS in annotations:
        return [f"released but replicas={replicas}, {ORIGINAL_REPLICAS}={annotations.get(ORIGINAL_REPLICAS)}"]
    return []


class RequestCounter:
    """The operator's API requests, from the emulator's request log: read it all, then clear it, every poll.

    A request served between the read and the clear is lost; its sequence number leaves a gap, counted in `lost`.
    """

    def __init__(self, client: EmulatorClient) -> None:
        self._client = client
        self._last_seq: int | None = None
        self.started = time.monotonic()
        self.writes_by_minute: Counter[int] = Counter()
        self.reads = 0
        self.writes_by_request: Counter[str] = Counter()
        self.lost = 0
        self._drain()

    def poll(self) -> None:
        minute = int((time.monotonic() - self.started) // 60)
        for record in self._drain():
            if record.verb in WRITE_VERBS:
                self.writes_by_minute[minute] += 1
                subresource = f"/{record.subresource}" if record.subresource else ""
                self.writes_by_request[f"{record.verb} {record.resource}{subresource}"] += 1
            else:
                self.reads += 1

    def _drain(self) -> list[RequestRecord]:
        records = self._client.requests()
        self._client.clear_requests()
        if records and self._last_seq is not None:
            self.lost += records[0].seq - self._last_seq - 1
        if records:
            self._last_seq = records[-1].seq
        return records


@dataclass(slots=True)
class Incident:
    service: int
    ends: float
    """time.monotonic() at which the service recovers."""


@dataclass(slots=True)
class Chaos:
    """The random disturbances, driven by one seeded generator so a run can be repeated."""

    rng: random.Random
    exporter: ManyServicesExporter
    proxy: FaultProxy
    emulator: EmulatorClient
    incidents: dict[int, Incident] = field(default_factory=dict)
    prometheus_fault_ends: float | None = None
    injected: Counter[str] = field(default_factory=Counter)

    def step(self, now: float) -> None:
        """One tick: start and end incidents and faults."""
        self._sli(now)
        self._prometheus(now)
        self._api()

    def calm(self) -> None:
        """End every fault (incidents stay as they are, so SLO states hold still)."""
        self._end_prometheus_fault()
        self.emulator.clear_faults()

    def _sli(self, now: float) -> None:
        for index in [index for index, incident in self.incidents.items() if incident.ends <= now]:
            self.exporter.set_error_ratio(index, 0.0)
            del self.incidents[index]
        mean_seconds = sum(INCIDENT_SECONDS) / 2
        expected = self.exporter.count * INCIDENT_SHARE * TICK / mean_seconds
        starts = int(expected) + (self.rng.random() < expected % 1)
        healthy = [index for index in range(self.exporter.count) if index not in self.incidents]
        for index in self.rng.sample(healthy, min(starts, len(healthy))):
            self.exporter.set_error_ratio(index, self.rng.uniform(*INCIDENT_RATIO))
            self.incidents[index] = Incident(index, now + self.rng.uniform(*INCIDENT_SECONDS))
            self.injected["sli incident"] += 1

    def _prometheus(self, now: float) -> None:
        if self.prometheus_fault_ends is not None:
            if now >= self.prometheus_fault_ends:
                self._end_prometheus_fault()
            return
        if self.rng.random() >= PROMETHEUS_FAULT_CHANCE:
            return
        kind = self.rng.choice(("outage", "5xx", "slow"))
        if kind == "outage":
            self.proxy.hold()
        elif kind == "5xx":
            self.proxy.fail_with = self.rng.choice((500, 502, 503))
        else:
            self.proxy.delay = self.rng.uniform(0.5, 3.0)
        self.prometheus_fault_ends = now + self.rng.uniform(*PROMETHEUS_FAULT_SECONDS)
        self.injected[f"prometheus {kind}"] += 1

    def _end_prometheus_fault(self) -> None:
        self.proxy.fail_with = None
        self.proxy.delay = 0.0
        self.proxy.release()
        self.prometheus_fault_ends = None

    def _api(self) -> None:
        if self.rng.random() < API_FAULT_CHANCE:
            verb, resource, statuses = self.rng.choice(API_FAULTS)
            status = self.rng.choice(statuses)
            retry_after = 1 if status == 429 else None
            count = self.rng.randint(1, 5)
            self.emulator.fail_next(status=status, verb=verb, resource=resource, count=count, retry_after=retry_after)
            self.injected[f"api {status} on {verb} {resource}"] += count
        if self.rng.random() < WATCH_DROP_CHANCE:
            self.emulator.drop_watches()
            self.injected["api dropped watches"] += 1


@dataclass(frozen=True, slots=True)
class Options:
    slos: int
    minutes: float
    seed: int
    window: str
    interval: str
    quiet_every: float
    """Minutes between quiet checks."""
    settle: float
    """Seconds after faults stop before a check."""
    workdir: Path


def _parse(argv: Sequence[str] | None) -> Options:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.soak", description=__doc__.splitlines()[0])
    parser.add_argument("--slos", type=int, default=200)
    parser.add_argument("--minutes", type=float, default=30.0, help="minutes of chaos (settling comes after)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--window", default="5m", help="SLO window (short, so budgets move during the run)")
    parser.add_argument("--interval", default="10s", help="SLO evaluation interval")
    parser.add_argument("--quiet-every", type=float, default=5.0, help="minutes between quiet-moment checks")
    parser.add_argument("--settle", type=float, default=40.0, help="seconds of calm before each check")
    parser.add_argument("--workdir", type=Path, help="keep logs here (default: a new temporary directory)")
    args = parser.parse_args(argv)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="slo-guard-soak-"))
    return Options(
        slos=args.slos,
        minutes=args.minutes,
        seed=args.seed,
        window=args.window,
        interval=args.interval,
        quiet_every=args.quiet_every,
        settle=args.settle,
        workdir=workdir,
    )


@dataclass(slots=True)
class Stack:
    emulator: EmulatorProcess
    exporter: ManyServicesExporter
    prometheus: PrometheusProcess
    proxy: FaultProxy
    operator: OperatorRunner


@contextmanager
def running_stack(options: Options) -> Iterator[Stack]:
    """Emulator with every SLO and Deployment, backfilled and live metrics, Prometheus, proxy, operator."""
    with ExitStack() as stack:
        emulator = stack.enter_context(EmulatorProcess(options.workdir / "emulator", request_log_limit=200_000))
        created = emulator.create_many(_manifests(options))
        print(f"created {created.created} objects in {created.seconds:.1f} s ({created.per_second:.0f}/s)")
        history = parse_duration(options.window) + 60
        now = time.time()
        storage = options.workdir / "prometheus" / "data"
        filled = backfill_history(
            storage, count=options.slos, rps=RPS, error_ratios=0.0, start=now - history, end=now, step=5
        )
        print(
            f"backfilled {history} s of history: {filled.samples} samples in "
            f"{filled.generate_seconds + filled.promtool_seconds:.1f} s"
        )
        exporter = stack.enter_context(ManyServicesExporter(options.slos, rps=RPS, start=now - history))
        prometheus = PrometheusProcess(
            options.workdir / "prometheus",
            storage_dir=storage,
            scrape_targets=[exporter.target],
            scrape_interval=SCRAPE_INTERVAL,
            evaluation_interval=SCRAPE_INTERVAL,
        )
        stack.enter_context(prometheus)
        prometheus.wait_scraped()
        proxy = stack.enter_context(FaultProxy(prometheus.url))
        operator = OperatorRunner(
            options.workdir / "operator", kubeconfig=emulator.kubeconfig, prometheus_url=proxy.url, args=OPERATOR_ARGS
        )
        stack.enter_context(operator)
        yield Stack(emulator, exporter, prometheus, proxy, operator)


def _manifests(options: Options) -> Iterator[dict[str, Any]]:
    for index in range(options.slos):
        namespace = f"soak-{index // SLOS_PER_NAMESPACE}"
        yield target_manifest(index, namespace=namespace, replicas=REPLICAS)
        yield slo_manifest(
            index,
            namespace=namespace,
            window=options.window,
            interval=options.interval,
            action="Pause" if index % 2 == 0 else "Scale",
            scale_to=SCALE_TO,
            resume_above=RESUME_ABOVE,
        )


@dataclass(frozen=True, slots=True)
class Check:
    """One comparison of every target with its SLO's status."""

    slos: int
    """SLOs compared."""
    held: int
    """Targets slo-guard held at the time (shows that budgets moved)."""
    mismatches: set[Mismatch]
    """Seen in both snapshots."""


def persistent_mismatches(client: EmulatorClient, *, gap: float) -> Check:
    """Compare two whole-state snapshots `gap` seconds apart; a pass caught midway shows in one only."""
    first = find_mismatches(client.state()["items"])
    time.sleep(gap)
    items = client.state()["items"]
    held = [obj for obj in items if (obj["metadata"].get("labels") or {}).get(HELD_LABEL) == "true"]
    slos = [obj for obj in items if obj.get("kind") == SLO_KIND]
    return Check(slos=len(slos), held=len(held), mismatches=first & find_mismatches(items))


@dataclass(slots=True)
class Report:
    rss_start: int = 0
    cpu_start: float = 0.0
    checks: list[tuple[str, Check]] = field(default_factory=list)


def soak(options: Options) -> None:
    gap = parse_duration(options.interval) * 1.5
    with running_stack(options) as stack:
        operator = stack.operator
        report = Report(rss_start=operator.rss_bytes(), cpu_start=operator.cpu_seconds())
        requests = RequestCounter(stack.emulator.client)
        chaos = Chaos(random.Random(options.seed), stack.exporter, stack.proxy, stack.emulator.client)
        started = time.monotonic()
        next_quiet = started + options.quiet_every * 60
        last_poll = started
        while (now := time.monotonic()) < started + options.minutes * 60:
            chaos.step(now)
            if now - last_poll >= REQUESTS_POLL:
                requests.poll()
                last_poll = now
            if now >= next_quiet:
                when = f"quiet moment at {(now - started) / 60:.1f} min"
                chaos.calm()
                report.checks.append((when, _settled_check(stack, requests, options=options, gap=gap)))
                next_quiet = time.monotonic() + options.quiet_every * 60
            time.sleep(TICK)
        chaos.calm()
        report.checks.append(("end", _settled_check(stack, requests, options=options, gap=gap)))
        _print_report(stack, report, requests, chaos, minutes=(time.monotonic() - started) / 60)


def _settled_check(stack: Stack, requests: RequestCounter, *, options: Options, gap: float) -> Check:
    """Let the operator catch up for `options.settle` seconds, then compare targets with statuses."""
    deadline = time.monotonic() + options.settle
    while (left := deadline - time.monotonic()) > 0:
        time.sleep(min(REQUESTS_POLL, left))
        requests.poll()
    return persistent_mismatches(stack.emulator.client, gap=gap)


def _print_report(stack: Stack, report: Report, requests: RequestCounter, chaos: Chaos, *, minutes: float) -> None:
    requests.poll()
    operator = stack.operator
    metrics = operator.metrics()
    mib = 1024 * 1024
    print(f"\n== soak: {minutes:.1f} min (chaos, quiet checks and settling) ==")
    print(
        f"operator RSS MiB: start {report.rss_start / mib:.0f}, end {operator.rss_bytes() / mib:.0f}, "
        f"peak {operator.rss_bytes(peak=True) / mib:.0f}"
    )
    tasks = metrics.value("slo_guard_asyncio_tasks")
    print(
        f"operator asyncio tasks: {'n/a (no slo_guard_asyncio_tasks gauge)' if tasks is None else int(tasks)}; "
        f"threads: {operator.threads()}"
    )
    cpu = operator.cpu_seconds() - report.cpu_start
    print(f"operator CPU: {cpu:.1f} s ({cpu / minutes:.1f} s per minute)")
    print(
        f"emulator CPU {stack.emulator.cpu_seconds():.1f} s, RSS {stack.emulator.rss_bytes() / mib:.0f} MiB; "
        f"Prometheus CPU {stack.prometheus.cpu_seconds():.1f} s"
    )
    per_minute = [requests.writes_by_minute[minute] for minute in range(int(minutes) + 1)]
    print(
        f"API writes per minute: median {statistics.median(per_minute):.0f}, max {max(per_minute)}, "
        f"total {sum(per_minute)}; reads total {requests.reads}; unattributed (lost) {requests.lost}"
    )
    print(f"writes by request: {dict(requests.writes_by_request.most_common())}")
    print(f"faults injected: {dict(sorted(chaos.injected.items()))}")
    print(f"operator actions: {_labelled(metrics.samples, 'slo_guard_actions_total', ('action', 'result'))}")
    print(f"Prometheus requests: {metrics.labelled('slo_guard_prometheus_requests_total', 'outcome')}")
    errors = [entry for entry in operator.log_entries() if entry.get("level") in ("ERROR", "CRITICAL")]
    print(f"operator log: {len(errors)} ERROR lines" + (f", first: {errors[0].get('message')}" if errors else ""))
    for when, check in report.checks:
        print(f"wrong actions ({when}): {len(check.mismatches)} of {check.slos} SLOs ({check.held} targets held)")
        for mismatch in sorted(check.mismatches)[:5]:
            print(f"  {mismatch.slo}: {mismatch.problem}")


def _labelled(samples: Sequence[Any], name: str, labels: tuple[str, str]) -> dict[str, float]:
    return {
        "/".join(sample.labels[label] for label in labels): sample.value
        for sample in samples
        if sample.name == name and sample.value
    }


def main(argv: Sequence[str] | None = None) -> None:
    options = _parse(argv)
    print(f"soak: {options.slos} SLOs, {options.minutes:g} min, seed {options.seed}, logs in {options.workdir}")
    soak(options)


if __name__ == "__main__":
    main()
