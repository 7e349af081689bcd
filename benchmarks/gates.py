"""Gate benchmarks: the gate API and the admission webhook under open-loop load, and one admission decision's cost.

Every figure comes from a board of N SLOs in memory, as the operator serves it: no Prometheus, no API server.

1. Gate API: `GateServer` in its own process; this process sends 90 % GETs of random SLOs and 10 % Flagger POSTs.
2. Admission decision: `AdmissionReviewer.review` in this process, per Deployment UPDATE review, with and without
   the `json.loads` of the body the server does per request.
3. Admission webhook: `AdmissionServer` in its own process, over TLS with a throwaway CA.

Load is open loop: each request starts at its scheduled time whether or not earlier ones have finished, and its
latency counts from that time, so a stalled server shows as latency rather than as fewer requests (no coordinated
omission). A warm-up second before each run opens the keep-alive connections (and TLS sessions) and is not counted.

Run: PYTHONPATH=. .venv/bin/python -m benchmarks.gates [--quick] [--json]; `--help` for the knobs.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import gc
import json
import math
import os
import platform
import random
import select
import signal
import ssl
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import aiohttp
from tests.support.certs import ServingCertificate, serving_certificate
from tests.support.prometheus import free_port, terminate

from benchmarks.stack import REPO, START_TIMEOUT, process_cpu_seconds, process_rss_bytes
from slo_guard.domain.evaluation_types import Evaluation, State, UnknownReason
from slo_guard.domain.policy import OVERRIDE_REASON, OVERRIDE_UNTIL
from slo_guard.domain.timestamps import rfc3339
from slo_guard.handlers.gate_server import FLAGGER_PATH, GATE_PREFIX, AdmissionServer, GateServer
from slo_guard.resources import objective_from_resource
from slo_guard.service.admission import AdmissionReviewer
from slo_guard.service.gate_board import GateBoard, GateEntry, entry_after_pass
from slo_guard.service.ports import ObjectRef
from slo_guard.service.reconcile import Outcome
from slo_guard.telemetry import OperatorMetrics

LOOPBACK = "127.0.0.1"
NAMESPACES = 20
MULTI_TARGET_EVERY = 25
"""Every 25th SLO guards a Deployment, a StatefulSet and a Rollout; the others one Deployment."""
FLAGGER_SHARE = 0.1
TEMPLATE_CHANGE_SHARE = 0.7
"""Of the Deployment UPDATEs; the rest change only the replicas."""
OVERRIDE_SHARE = 0.05
"""Of the template changes: they carry a live `sloguard.io/override-until`."""
REVIEW_POOL = 2000
"""Distinct AdmissionReview bodies, cycled through."""
POOL_CONNECTIONS = 64
REQUEST_TIMEOUT = 10.0
WARMUP_SECONDS = 1.0
EXPECTED = {"GET": {"200"}, "Flagger": {"200", "403"}, "validate": {"200"}}
"""HTTP statuses that are answers, not errors: Flagger's 403 is a closed gate."""
MIB = 1024 * 1024


# --- the board -------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SloPlan:
    """The index-th SLO of the benchmark board."""

    namespace: str
    name: str
    targets: tuple[tuple[str, str], ...]
    """(kind, name); the first is always the Deployment named like the SLO."""
    state: State
    remaining: float | None
    action: str
    mode: str


def slo_plan(index: int) -> SloPlan:
    """10 % Exhausted (closed), 10 % Burning, 5 % Unknown, the rest Healthy; half Deny, a twelfth DryRun."""
    targets: tuple[tuple[str, str], ...] = (("Deployment", f"app-{index:05d}"),)
    if index % MULTI_TARGET_EVERY == 1:
        targets += (("StatefulSet", f"db-{index:05d}"), ("Rollout", f"web-{index:05d}"))
    if index % 10 == 0:
        state, remaining = State.EXHAUSTED, -0.25
    elif index % 20 == 6:
        state, remaining = State.UNKNOWN, None
    elif index % 10 == 3:
        state, remaining = State.BURNING, 0.3
    else:
        state, remaining = State.HEALTHY, 0.8
    return SloPlan(
        namespace=f"team-{index % NAMESPACES:02d}",
        name=f"slo-{index:05d}",
        targets=targets,
        state=state,
        remaining=remaining,
        action="Deny" if index % 2 == 0 else "Pause",
        mode="DryRun" if index % 12 == 4 else "Enforce",
    )


def gate_entry(plan: SloPlan, *, at: datetime) -> GateEntry:
    """The entry a pass concluding `plan.state` puts on the board."""
    resource = {
        "apiVersion": "sloguard.io/v1alpha1",
        "kind": "ServiceLevelObjective",
        "metadata": {"name": plan.name, "namespace": plan.namespace},
        "spec": {
            "objective": 99.9,
            "window": "30d",
            "indicator": {"ratio": {"errors": 'http_requests_total{code="500"}', "total": "http_requests_total"}},
            "targets": [{"kind": kind, "name": name} for kind, name in plan.targets],
            "policy": {"action": plan.action, "mode": plan.mode},
        },
    }
    objective = objective_from_resource(resource, min_step=30)
    if plan.state is State.UNKNOWN:
        evaluation = Evaluation(State.UNKNOWN, UnknownReason.NO_DATA, "no samples in the last 10m", at)
    else:
        evaluation = Evaluation(plan.state, None, "benchmark", at, budget_remaining=plan.remaining)
    ref = ObjectRef("sloguard.io/v1alpha1", "ServiceLevelObjective", plan.namespace, plan.name)
    entry = entry_after_pass(ref, Outcome(evaluation, (), objective))
    assert entry is not None
    return entry


def build_board(plans: Sequence[SloPlan]) -> GateBoard:
    board, at = GateBoard(), datetime.now(UTC)
    for plan in plans:
        board.put(gate_entry(plan, at=at))
    return board


def describe_board(plans: Sequence[SloPlan]) -> str:
    states = Counter(plan.state.value for plan in plans)
    deny = sum(plan.action == "Deny" for plan in plans)
    several = sum(len(plan.targets) > 1 for plan in plans)
    shown = ", ".join(f"{count} {state}" for state, count in sorted(states.items()))
    return (
        f"{len(plans)} SLOs in {len({plan.namespace for plan in plans})} namespaces ({shown}; "
        f"{deny} Deny policies; {several} with 3 targets)"
    )


# --- requests --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Request:
    kind: str
    """A key of EXPECTED."""
    method: str
    path: str
    body: bytes | None = None


def gate_requests(plans: Sequence[SloPlan], count: int, *, rng: random.Random) -> list[Request]:
    """GETs of random SLOs, and FLAGGER_SHARE of Flagger webhooks: half naming the SLO, half by canary name."""
    requests = []
    for _ in range(count):
        plan = rng.choice(plans)
        if rng.random() >= FLAGGER_SHARE:
            path = f"{GATE_PREFIX}/namespaces/{plan.namespace}/servicelevelobjectives/{plan.name}"
            requests.append(Request("GET", "GET", path))
            continue
        payload = {
            "name": plan.targets[0][1],
            "namespace": plan.namespace,
            "phase": "Progressing",
            "checksum": f"{rng.getrandbits(32):08x}",
            "metadata": {"slos": plan.name} if rng.random() < 0.5 else {},
        }
        requests.append(Request("Flagger", "POST", FLAGGER_PATH, json.dumps(payload).encode()))
    return requests


def deployment(
    namespace: str, name: str, *, version: int, replicas: int, annotations: dict[str, str]
) -> dict[str, Any]:
    """A Deployment as the API server sends it: two containers with env, probes and resources."""
    labels = {"app.kubernetes.io/name": name}
    app_env = {"LOG_LEVEL": "info", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://otel-collector.observability:4317"}

    def container(container_name: str, image: str, port: int, env: dict[str, str]) -> dict[str, Any]:
        probe = {"httpGet": {"path": "/healthz", "port": port}, "periodSeconds": 10}
        return {
            "name": container_name,
            "image": image,
            "ports": [{"containerPort": port, "protocol": "TCP"}],
            "env": [{"name": key, "value": value} for key, value in env.items()],
            "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}},
            "livenessProbe": probe,
            "readinessProbe": probe,
        }

    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "uid": str(uuid.uuid5(uuid.NAMESPACE_DNS, f"{namespace}.{name}")),
            "resourceVersion": str(100_000 + version),
            "generation": version,
            "labels": labels,
            "annotations": {"deployment.kubernetes.io/revision": str(version), **annotations},
        },
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app.kubernetes.io/name": name}},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "serviceAccountName": name,
                    "containers": [
                        container(name, f"registry.example.com/shop/{name}:1.{version}.0", 8080, app_env),
                        container("proxy", "registry.example.com/mesh/proxy:2.4.1", 15090, {"LOG_LEVEL": "warn"}),
                    ],
                },
            },
        },
    }


def review_bodies(plans: Sequence[SloPlan], count: int, *, rng: random.Random) -> list[bytes]:
    """Encoded Deployment UPDATE AdmissionReviews of SLO targets: TEMPLATE_CHANGE_SHARE new images, the rest scaling."""
    until = {OVERRIDE_UNTIL: rfc3339(datetime.now(UTC) + timedelta(days=1)), OVERRIDE_REASON: "hotfix"}
    bodies = []
    for _ in range(count):
        plan = rng.choice(plans)
        name, version = plan.targets[0][1], rng.randrange(1, 500)
        old = deployment(plan.namespace, name, version=version, replicas=3, annotations={})
        if rng.random() < TEMPLATE_CHANGE_SHARE:
            annotations = until if rng.random() < OVERRIDE_SHARE else {}
            new = deployment(plan.namespace, name, version=version + 1, replicas=3, annotations=annotations)
        else:
            new = deployment(plan.namespace, name, version=version, replicas=6, annotations={})
        review = {
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {
                "uid": str(uuid.UUID(int=rng.getrandbits(128))),
                "kind": {"group": "apps", "version": "v1", "kind": "Deployment"},
                "resource": {"group": "apps", "version": "v1", "resource": "deployments"},
                "name": name,
                "namespace": plan.namespace,
                "operation": "UPDATE",
                "userInfo": {"username": "system:serviceaccount:ci:deployer", "groups": ["system:serviceaccounts"]},
                "object": new,
                "oldObject": old,
                "dryRun": False,
            },
        }
        bodies.append(json.dumps(review, separators=(",", ":")).encode())
    return bodies


# --- statistics ------------------------------------------------------------------------------------------------------


def percentile(ordered: Sequence[float], q: float) -> float:
    """Nearest rank: the smallest value with at least q of the values at or below it; nan for no values."""
    if not ordered:
        return math.nan
    return ordered[max(1, math.ceil(q * len(ordered))) - 1]


@dataclass(frozen=True, slots=True)
class Spread:
    p50: float
    p90: float
    p99: float
    max: float
    mean: float

    @classmethod
    def of(cls, values: Sequence[float], *, scale: float = 1.0) -> Spread:
        ordered = sorted(value * scale for value in values)
        mean = sum(ordered) / len(ordered) if ordered else math.nan
        p50, p90, p99, top = (percentile(ordered, q) for q in (0.5, 0.9, 0.99, 1.0))
        return cls(p50, p90, p99, top, mean)


# --- servers in their own processes ----------------------------------------------------------------------------------


class _NoEvents:
    """The Event sink: a real one posts to the API server in the background, off the request path."""

    async def post(self, *, regarding: ObjectRef, type_: str, reason: str, message: str) -> None:
        return None


class ServerProcess:
    """`python -m benchmarks.gates serve ...` as a child process; stopped on exit whatever happened."""

    def __init__(self, *args: str) -> None:
        self._args = args
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self._process is not None
        return self._process.pid

    def __enter__(self) -> Self:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
        # Its own process group keeps Ctrl-C from it: this process stops it after reading its figures. stdin stays
        # open and unused: the child stops at its EOF, when this process is gone however it ended.
        self._process = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.gates", "serve", *self._args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            process_group=0,
        )
        try:
            assert self._process.stdout is not None
            readable, _, _ = select.select([self._process.stdout], [], [], START_TIMEOUT)
            line = self._process.stdout.readline() if readable else b""
            if line.strip() != b"ready":
                raise RuntimeError(f"server {' '.join(self._args)} did not start (exit code {self._process.poll()})")
        except BaseException:
            terminate(self._process)
            raise
        return self

    def check(self) -> None:
        """Raises when the server exited before its figures were read."""
        assert self._process is not None
        if self._process.poll() is not None:
            raise RuntimeError(f"server {' '.join(self._args)} exited with code {self._process.returncode}")

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        terminate(self._process)


def serve(argv: Sequence[str]) -> None:
    parser = argparse.ArgumentParser(prog="benchmarks.gates serve")
    parser.add_argument("server", choices=["gate", "admission"])
    parser.add_argument("--slos", type=int, required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--cert", type=Path)
    parser.add_argument("--key", type=Path)
    args = parser.parse_args(argv)
    asyncio.run(_serve(args))


async def _serve(args: argparse.Namespace) -> None:
    board, metrics = build_board([slo_plan(index) for index in range(args.slos)]), OperatorMetrics()
    server: GateServer | AdmissionServer
    if args.server == "gate":
        server = GateServer(board, port=args.port, metrics=metrics, host=LOOPBACK)
    else:
        reviewer = AdmissionReviewer(board, events=_NoEvents(), metrics=metrics)
        server = AdmissionServer(reviewer, port=args.port, cert_file=args.cert, key_file=args.key, host=LOOPBACK)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)

    def parent_gone() -> None:
        loop.remove_reader(sys.stdin.fileno())
        stop.set()

    # stdin reads EOF only when the parent is gone: stop with it rather than linger as an orphan.
    loop.add_reader(sys.stdin.fileno(), parent_gone)
    await server.start()
    try:
        print("ready", flush=True)
        await stop.wait()
    finally:
        await server.stop()


# --- open-loop load --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Answer:
    kind: str
    status: str
    """The HTTP status, or the name of the exception that stood for one."""
    latency: float
    """Seconds from the scheduled start."""


@dataclass(frozen=True, slots=True)
class LoadRun:
    answers: list[Answer]
    seconds: float
    """From the first scheduled start to the last answer."""
    max_lag: float
    """Seconds the load generator started a request late at worst: large means the client, not the server, lagged."""
    server_cpu: float
    client_cpu: float


async def open_loop(
    session: aiohttp.ClientSession, base: str, requests: Sequence[Request], *, rate: float, pid: int
) -> LoadRun:
    loop = asyncio.get_running_loop()
    server_cpu, client_cpu = process_cpu_seconds(pid), process_cpu_seconds(os.getpid())
    start = loop.time()
    tasks, max_lag = [], 0.0
    for index, request in enumerate(requests):
        due = start + index / rate
        if (delay := due - loop.time()) > 0:
            await asyncio.sleep(delay)
        max_lag = max(max_lag, loop.time() - due)
        tasks.append(asyncio.create_task(_send(session, base, request, due)))
    answers = await asyncio.gather(*tasks)
    return LoadRun(
        answers,
        loop.time() - start,
        max_lag,
        process_cpu_seconds(pid) - server_cpu,
        process_cpu_seconds(os.getpid()) - client_cpu,
    )


async def _send(session: aiohttp.ClientSession, base: str, request: Request, due: float) -> Answer:
    loop = asyncio.get_running_loop()
    headers = {"Content-Type": "application/json"} if request.body is not None else None
    try:
        async with session.request(request.method, base + request.path, data=request.body, headers=headers) as answer:
            await answer.read()
            status = str(answer.status)
    except (aiohttp.ClientError, TimeoutError) as error:
        status = type(error).__name__
    return Answer(request.kind, status, loop.time() - due)


async def load(base: str, requests: Sequence[Request], *, rate: float, pid: int, tls: ssl.SSLContext | None) -> LoadRun:
    connector = aiohttp.TCPConnector(limit=POOL_CONNECTIONS, ssl=tls or True)
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT)
    # A full collection over everything this process imported and built stalls dispatch ~100 ms: the servers' pauses
    # are theirs to show, not the load generator's.
    gc.freeze()
    try:
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            warmup = int(rate * WARMUP_SECONDS)
            await open_loop(session, base, requests[:warmup], rate=rate, pid=pid)
            return await open_loop(session, base, requests[warmup:], rate=rate, pid=pid)
    finally:
        gc.unfreeze()


@dataclass(frozen=True, slots=True)
class LoadReport:
    server_pid: int
    sent: int
    completed: int
    """Requests that got an HTTP answer, of any status."""
    statuses: dict[str, dict[str, int]]
    """Per request kind, per status (or exception name)."""
    errors: dict[str, int]
    """`kind status` of the answers outside EXPECTED, and of the requests that got none."""
    achieved_rate: float
    latency_ms: Spread
    max_dispatch_lag_ms: float
    seconds: float
    server_cpu_seconds: float
    server_cpu_percent: float
    server_rss_mib: float
    server_peak_rss_mib: float
    client_cpu_percent: float

    @classmethod
    def of(cls, run: LoadRun, *, pid: int) -> LoadReport:
        answered = [answer for answer in run.answers if answer.status.isdigit()]
        statuses: dict[str, dict[str, int]] = {}
        for (kind, status), count in sorted(Counter((a.kind, a.status) for a in run.answers).items()):
            statuses.setdefault(kind, {})[status] = count
        return cls(
            server_pid=pid,
            sent=len(run.answers),
            completed=len(answered),
            statuses=statuses,
            errors=dict(Counter(f"{a.kind} {a.status}" for a in run.answers if a.status not in EXPECTED[a.kind])),
            achieved_rate=len(answered) / run.seconds,
            latency_ms=Spread.of([answer.latency for answer in answered], scale=1000),
            max_dispatch_lag_ms=run.max_lag * 1000,
            seconds=run.seconds,
            server_cpu_seconds=run.server_cpu,
            server_cpu_percent=100 * run.server_cpu / run.seconds,
            server_rss_mib=process_rss_bytes(pid) / MIB,
            server_peak_rss_mib=process_rss_bytes(pid, peak=True) / MIB,
            client_cpu_percent=100 * run.client_cpu / run.seconds,
        )

    def print(self) -> None:
        shown = "; ".join(
            f"{kind} " + ", ".join(f"{status} x{count}" for status, count in counts.items())
            for kind, counts in self.statuses.items()
        )
        lat = self.latency_ms
        errors = ", ".join(f"{what} x{count}" for what, count in sorted(self.errors.items())) or "none"
        print(f"requests: {self.sent} sent, {self.completed} completed; errors: {errors}")
        print(f"answers by status: {shown}")
        print(f"achieved rate: {self.achieved_rate:.1f} req/s over {self.seconds:.1f} s")
        print(
            f"latency from scheduled start: p50 {lat.p50:.2f} ms, p90 {lat.p90:.2f} ms, p99 {lat.p99:.2f} ms, "
            f"max {lat.max:.2f} ms (load generator started requests at most {self.max_dispatch_lag_ms:.2f} ms late)"
        )
        print(
            f"server (PID {self.server_pid}): {self.server_cpu_seconds:.2f} CPU s = {self.server_cpu_percent:.1f} % "
            f"of one CPU; RSS {self.server_rss_mib:.1f} MiB (peak {self.server_peak_rss_mib:.1f} MiB); "
            f"load generator {self.client_cpu_percent:.1f} % of one CPU"
        )


# --- the three benchmarks --------------------------------------------------------------------------------------------


def bench_gate_api(plans: Sequence[SloPlan], options: argparse.Namespace, rng: random.Random) -> LoadReport:
    port = free_port()
    with ServerProcess("gate", "--slos", str(len(plans)), "--port", str(port)) as server:
        print(f"\n-- gate API: server PID {server.pid} on {LOOPBACK}:{port}, {describe_board(plans)}")
        print(
            f"open loop: {options.rate:g} req/s for {options.seconds:g} s, {100 - FLAGGER_SHARE * 100:.0f} % GET "
            f"of random SLOs, {FLAGGER_SHARE * 100:.0f} % Flagger POST, keep-alive pool of {POOL_CONNECTIONS}"
        )
        count = int(options.rate * (WARMUP_SECONDS + options.seconds))
        requests = gate_requests(plans, count, rng=rng)
        run = asyncio.run(load(f"http://{LOOPBACK}:{port}", requests, rate=options.rate, pid=server.pid, tls=None))
        server.check()
        report = LoadReport.of(run, pid=server.pid)
    report.print()
    return report


@dataclass(frozen=True, slots=True)
class DecisionReport:
    reviews: int
    mean_body_bytes: float
    review_us: Spread
    parse_and_review_us: Spread
    decisions: dict[str, int]

    def print(self) -> None:
        for what, spread in (("review()", self.review_us), ("json.loads + review()", self.parse_and_review_us)):
            print(
                f"{what}: p50 {spread.p50:.1f} us, p99 {spread.p99:.1f} us, max {spread.max:.1f} us, "
                f"mean {spread.mean:.1f} us (~{1e6 / spread.mean:,.0f} per second on one core)"
            )
        print("decisions: " + ", ".join(f"{name} {count}" for name, count in self.decisions.items()))


async def _decide(board: GateBoard, bodies: Sequence[bytes], reviews: int) -> DecisionReport:
    metrics = OperatorMetrics()
    reviewer = AdmissionReviewer(board, events=_NoEvents(), metrics=metrics)
    clock = time.perf_counter_ns
    review_ns, total_ns = [], []
    for index in range(reviews):
        raw = bodies[index % len(bodies)]
        parsing = clock()
        body = json.loads(raw)
        reviewing = clock()
        reviewer.review(body)
        done = clock()
        review_ns.append(done - reviewing)
        total_ns.append(done - parsing)
        # Runs the Event tasks denials start, as the server's loop does between requests.
        await asyncio.sleep(0)
    await reviewer.close()
    decisions = {
        sample.labels["decision"]: int(sample.value)
        for family in metrics.admission_decisions.collect()
        for sample in family.samples
        if sample.name.endswith("_total")
    }
    return DecisionReport(
        reviews,
        sum(map(len, bodies)) / len(bodies),
        Spread.of(review_ns, scale=1e-3),
        Spread.of(total_ns, scale=1e-3),
        decisions,
    )


def bench_decisions(plans: Sequence[SloPlan], bodies: Sequence[bytes], reviews: int) -> DecisionReport:
    print(
        f"\n-- admission decision in process: {reviews:,} reviews of {len(bodies)} distinct Deployment UPDATEs "
        f"(mean {sum(map(len, bodies)) / len(bodies):,.0f} bytes; {TEMPLATE_CHANGE_SHARE * 100:.0f} % new image, "
        f"the rest scaling only), board of {len(plans)} SLOs"
    )
    report = asyncio.run(_decide(build_board(plans), bodies, reviews))
    report.print()
    return report


def bench_webhook(
    plans: Sequence[SloPlan], bodies: Sequence[bytes], options: argparse.Namespace, certificate: ServingCertificate
) -> LoadReport:
    port = free_port()
    tls_args = ("--cert", str(certificate.cert_file), "--key", str(certificate.key_file))
    with ServerProcess("admission", "--slos", str(len(plans)), "--port", str(port), *tls_args) as server:
        print(f"\n-- admission webhook: server PID {server.pid} on https://{LOOPBACK}:{port}/validate")
        print(
            f"open loop: {options.admission_rate:g} reviews/s for {options.admission_seconds:g} s over TLS, "
            f"keep-alive pool of {POOL_CONNECTIONS}"
        )
        count = int(options.admission_rate * (WARMUP_SECONDS + options.admission_seconds))
        requests = [Request("validate", "POST", "/validate", bodies[index % len(bodies)]) for index in range(count)]
        tls = ssl.create_default_context(cafile=str(certificate.ca_file))
        base = f"https://{LOOPBACK}:{port}"
        run = asyncio.run(load(base, requests, rate=options.admission_rate, pid=server.pid, tls=tls))
        server.check()
        report = LoadReport.of(run, pid=server.pid)
    report.print()
    return report


# --- main ------------------------------------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    cpuinfo = Path("/proc/cpuinfo").read_text(encoding="utf-8")
    models = [line.partition(":")[2].strip() for line in cpuinfo.splitlines() if line.startswith("model name")]
    return {
        "cpus": os.cpu_count(),
        "cpu_model": models[0] if models else "unknown",
        "python": platform.python_version(),
        "load_average": os.getloadavg(),
    }


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--slos", type=int, default=1000, help="SLOs on the board")
    parser.add_argument("--rate", type=float, default=200.0, help="gate API requests per second")
    parser.add_argument("--seconds", type=float, default=30.0, help="gate API run length")
    parser.add_argument("--admission-rate", type=float, default=50.0, help="webhook reviews per second")
    parser.add_argument("--admission-seconds", type=float, default=20.0, help="webhook run length")
    parser.add_argument("--reviews", type=int, default=100_000, help="in-process admission reviews timed")
    parser.add_argument("--seed", type=int, default=1, help="seed of the request mix")
    parser.add_argument("--quick", action="store_true", help="smoke run: 3 s per load run, 10,000 reviews")
    parser.add_argument("--json", action="store_true", help="also print a JSON summary as the last line")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] == ["serve"]:
        serve(arguments[1:])
        return 0
    options = _parser().parse_args(arguments)
    try:
        run(options)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0


def run(options: argparse.Namespace) -> None:
    if options.quick:
        options.seconds = options.admission_seconds = 3.0
        options.reviews = min(options.reviews, 10_000)
    host = machine()
    print("== slo-guard gates benchmark ==")
    print(
        f"machine: {host['cpus']} CPUs, {host['cpu_model']}, Python {host['python']}, "
        f"load average {' '.join(f'{value:.2f}' for value in host['load_average'])} at start"
    )
    print("note: the servers answer from the gate board in memory; no Prometheus and no API server are involved")
    rng = random.Random(options.seed)
    plans = [slo_plan(index) for index in range(options.slos)]
    bodies = review_bodies(plans, REVIEW_POOL, rng=rng)
    summary: dict[str, Any] = {"machine": host, "options": vars(options)}
    summary["gate_api"] = bench_gate_api(plans, options, rng)
    summary["admission_decision"] = bench_decisions(plans, bodies, options.reviews)
    with tempfile.TemporaryDirectory(prefix="slo-guard-gates-") as workdir:
        certificate = serving_certificate(Path(workdir))
        summary["admission_webhook"] = bench_webhook(plans, bodies, options, certificate)
    if options.json:
        print(json.dumps(summary, default=dataclasses.asdict))


if __name__ == "__main__":
    sys.exit(main())
