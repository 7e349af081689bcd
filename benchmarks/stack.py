"""The benchmark stack: every part a real process (or a real HTTP server), shared by soak.py and scale.py.

- `EmulatorProcess`: the kmock-based API-server emulator as a process, with a kubeconfig and a fast bulk create.
- `ManyServicesExporter`: one HTTP server exposing `http_requests_total{service, code}` for thousands of services,
  as an exact function of wall time, so backfilled history (`backfill_history`) continues seamlessly into scraping.
- `PrometheusProcess`: the real Prometheus with a rule-file directory, its own CPU and request counters.
- `OperatorRunner`: `slo-guard run` as a process, with RSS, CPU, parsed /metrics and its JSON log; `OperatorFleet`
  starts several replicas at once.
- `slo_manifest` / `target_manifest`: the N-th SLO and the Deployment it guards.

Series labels are the same live and backfilled: `job="services"`, `instance="many-services"` (Prometheus relabels
the scraped target to that instance), `service="svc-00042"`, `code="200"|"500"`.
"""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self, TypeVar

from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample
from tests.support.kube import ApiStatusError, Body, EmulatorClient, KubeClient, deployment_manifest, write_kubeconfig
from tests.support.lifecycle import Started
from tests.support.openmetrics import PiecewiseRate, Resolution, backfill_file, sample_times
from tests.support.prometheus import PrometheusServer, free_ports, terminate

REPO = Path(__file__).resolve().parents[1]
CRD = REPO / "crds" / "servicelevelobjectives.yaml"
JOB = "services"
"""Prometheus job of the many-services exporter."""
INSTANCE = "many-services"
"""The instance label Prometheus gives the exporter, fixed so backfilled and scraped series are one series."""
METRIC = "http_requests_total"
SLO_API = "sloguard.io/v1alpha1"
SLO_KIND = "ServiceLevelObjective"
START_TIMEOUT = 60.0
"""Seconds a process may take to come up on a busy 2-core machine."""
STOP_TIMEOUT = 20.0
"""Seconds between SIGTERM and SIGKILL."""
METRICS_TIMEOUT = 120.0
"""Seconds a /metrics page may take (see fetch_metrics)."""
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
_PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"
T = TypeVar("T")


def wait_until(predicate: Callable[[], T | None], *, timeout: float, what: str, every: float = 0.2) -> T:
    """Poll until `predicate` returns something truthy and return it; TimeoutError naming `what` otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


def service_name(index: int) -> str:
    """The `service` label of the index-th service (0-based): svc-00000, svc-00001, ..."""
    return f"svc-{index:05d}"


def slo_name(index: int) -> str:
    return f"slo-{index:05d}"


def target_name(index: int) -> str:
    """The Deployment the index-th SLO guards."""
    return f"app-{index:05d}"


# --- /proc readings -----------------------------------------------------------------------------------------------


def rss_bytes_from_status(text: str, *, peak: bool = False) -> int:
    """Resident set size from the text of /proc/<pid>/status: now (`VmRSS`) or the peak so far (`VmHWM`)."""
    value, unit = _status_field(text, "VmHWM" if peak else "VmRSS").split()
    if unit != "kB":
        raise ValueError(f"unexpected memory unit {unit!r}")
    return int(value) * 1024


def threads_from_status(text: str) -> int:
    """Number of threads from the text of /proc/<pid>/status."""
    return int(_status_field(text, "Threads"))


def _status_field(text: str, name: str) -> str:
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key == name:
            return value.strip()
    raise ValueError(f"no {name} line (a zombie or kernel thread?)")


def cpu_seconds_from_stat(text: str, *, clock_ticks: int) -> float:
    """User + system CPU seconds from the text of /proc/<pid>/stat.

    The command name (field 2) is in parentheses and may itself hold spaces and parentheses, so fields are
    counted from the last `)`: utime and stime are fields 14 and 15 of the whole line.
    """
    fields = text[text.rindex(")") + 2 :].split()
    utime, stime = int(fields[11]), int(fields[12])
    return (utime + stime) / clock_ticks


def process_rss_bytes(pid: int, *, peak: bool = False) -> int:
    return rss_bytes_from_status(Path(f"/proc/{pid}/status").read_text(), peak=peak)


def process_threads(pid: int) -> int:
    return threads_from_status(Path(f"/proc/{pid}/status").read_text())


def process_cpu_seconds(pid: int) -> float:
    return cpu_seconds_from_stat(Path(f"/proc/{pid}/stat").read_text(), clock_ticks=_CLOCK_TICKS)


# --- Prometheus text parsing ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MetricsSnapshot:
    """One scrape of a /metrics page, parsed."""

    samples: tuple[Sample, ...]
    """Every sample of every family, with full names (`..._total`, `..._bucket`)."""

    @classmethod
    def parse(cls, text: str) -> MetricsSnapshot:
        return cls(tuple(sample for family in text_string_to_metric_families(text) for sample in family.samples))

    def value(self, name: str, **labels: str) -> float | None:
        """Sum of the samples named exactly `name` (e.g. `slo_guard_actions_total`) whose labels include
        `labels`; None when there is no such sample."""
        values = [
            sample.value
            for sample in self.samples
            if sample.name == name and all(sample.labels.get(key) == wanted for key, wanted in labels.items())
        ]
        return sum(values) if values else None

    def labelled(self, name: str, label: str) -> dict[str, float]:
        """Values of the samples named `name`, summed by the value of one label."""
        totals: dict[str, float] = {}
        for sample in self.samples:
            if sample.name == name and label in sample.labels:
                totals[sample.labels[label]] = totals.get(sample.labels[label], 0.0) + sample.value
        return totals


def fetch_metrics(url: str) -> MetricsSnapshot:
    """GET a /metrics URL (always our own loopback server) and parse it.

    The timeout is generous: Prometheus answers only after a rule reload in progress (tens of seconds for thousands
    of managed groups), and an operator renders thousands of per-SLO series.
    """
    with urllib.request.urlopen(url, timeout=METRICS_TIMEOUT) as response:  # noqa: S310 (loopback http)
        return MetricsSnapshot.parse(response.read().decode())


# --- the API server emulator ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CreateStats:
    """How a bulk create went."""

    created: int
    """Objects created."""
    seconds: float
    """Wall time of the creates, namespaces excluded."""

    @property
    def per_second(self) -> float:
        return self.created / self.seconds if self.seconds > 0 else float("inf")


class EmulatorProcess(Started):
    """`python -m tests.support.emulator` with the project's CRD, in its own process, plus a kubeconfig for it.

    `client` is its control API (request log, faults, watch disturbances), `kube` a plain JSON client.
    """

    def __init__(self, workdir: Path, *, request_log_limit: int | None = None) -> None:
        self.workdir = workdir
        self.request_log_limit = request_log_limit
        """Requests the emulator remembers; None for all (a long run should bound it)."""
        self.kubeconfig = workdir / "kubeconfig"
        self.log_path = workdir / "emulator.log"
        self._url_file = workdir / "emulator.url"
        self._process: subprocess.Popen[bytes] | None = None
        self._url = ""

    def start(self) -> Self:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._url_file.unlink(missing_ok=True)
        command = [sys.executable, "-m", "tests.support.emulator", "--crd", str(CRD), "--url-file", str(self._url_file)]
        if self.request_log_limit is not None:
            command += ["--request-log-limit", str(self.request_log_limit)]
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
        self._url = wait_until(self._read_url, timeout=START_TIMEOUT, what="the emulator's URL file")
        write_kubeconfig(self.kubeconfig, self._url)
        return self

    def _read_url(self) -> str | None:
        if self._process is not None and self._process.poll() is not None:
            raise RuntimeError(f"the emulator exited with {self._process.returncode}; see {self.log_path}")
        return self._url_file.read_text().strip() if self._url_file.exists() else None

    @property
    def url(self) -> str:
        if not self._url:
            raise RuntimeError("the emulator is not started")
        return self._url

    @property
    def pid(self) -> int:
        if self._process is None:
            raise RuntimeError("the emulator is not running")
        return self._process.pid

    @property
    def client(self) -> EmulatorClient:
        return EmulatorClient(self.url)

    @property
    def kube(self) -> KubeClient:
        return KubeClient(self.url)

    def rss_bytes(self) -> int:
        return process_rss_bytes(self.pid)

    def cpu_seconds(self) -> float:
        return process_cpu_seconds(self.pid)

    def create_many(self, bodies: Iterable[Mapping[str, Any]], *, workers: int = 4) -> CreateStats:
        """POST every object over `workers` keep-alive connections; namespaces are created first as needed.

        The emulator has no bulk-load path (only `--state-dump` on exit), so this is the fast way in.
        """
        kube = self.kube
        items = [dict(body) for body in bodies]
        for namespace in sorted({body["metadata"]["namespace"] for body in items if body["metadata"].get("namespace")}):
            kube.ensure_namespace(namespace)
        posts = [
            (kube.path(body["apiVersion"], body["kind"], namespace=body["metadata"].get("namespace")), body)
            for body in items
        ]
        connections = _ConnectionPerThread(self.url)
        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="bulk-create") as pool:
            list(pool.map(lambda post: connections.post(*post), posts))
        return CreateStats(created=len(posts), seconds=time.monotonic() - started)

    def stop(self) -> None:
        terminate(self._process, timeout=STOP_TIMEOUT)
        self._process = None


class _ConnectionPerThread:
    """One keep-alive HTTP connection per thread (urllib would open one per request)."""

    def __init__(self, url: str) -> None:
        host, _, port = url.removeprefix("http://").rstrip("/").partition(":")
        self._host, self._port = host, int(port)
        self._local = threading.local()

    def post(self, path: str, body: Body) -> None:
        connection: http.client.HTTPConnection | None = getattr(self._local, "connection", None)
        if connection is None:
            connection = http.client.HTTPConnection(self._host, self._port, timeout=60)
            self._local.connection = connection
        connection.request("POST", path, body=json.dumps(body), headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        payload = response.read()
        if response.status >= 400:
            raise ApiStatusError(response.status, json.loads(payload) if payload else None)


# --- many services, live and backfilled ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ServiceRates:
    """One service's traffic as exact counters: the `code="500"` and the `code="200"` request rates."""

    errors: PiecewiseRate
    """Requests per second answered 500."""
    ok: PiecewiseRate
    """Requests per second answered 200."""

    @classmethod
    def constant(cls, *, rps: float, error_ratio: float, since: float) -> ServiceRates:
        _check_ratio(error_ratio)
        return cls(
            errors=PiecewiseRate.constant(rps * error_ratio, since=since),
            ok=PiecewiseRate.constant(rps * (1 - error_ratio), since=since),
        )

    def with_error_ratio(self, ratio: float, *, since: float) -> ServiceRates:
        """The same total rate from `since` on, `ratio` of it errors; counters stay monotonic."""
        _check_ratio(ratio)
        rps = self.errors.segments[-1][1] + self.ok.segments[-1][1]
        since = max(since, self.errors.segments[-1][0])
        return ServiceRates(
            errors=self.errors.then(rps * ratio, since=since), ok=self.ok.then(rps * (1 - ratio), since=since)
        )

    @property
    def error_ratio(self) -> float:
        """The current share of errors (0 when there is no traffic)."""
        errors, ok = self.errors.segments[-1][1], self.ok.segments[-1][1]
        return errors / (errors + ok) if errors + ok else 0.0


def _check_ratio(ratio: float) -> None:
    if not 0 <= ratio <= 1:
        raise ValueError(f"error ratio must be within [0, 1], got {ratio}")


def _ratios(error_ratios: Sequence[float] | float, count: int) -> list[float]:
    if isinstance(error_ratios, int | float):
        return [float(error_ratios)] * count
    if len(error_ratios) != count:
        raise ValueError(f"{len(error_ratios)} error ratios for {count} services")
    return list(error_ratios)


def initial_rates(*, count: int, rps: float, error_ratios: Sequence[float] | float, start: float) -> list[ServiceRates]:
    """The rates every service starts with: the one formula both the exporter and the backfill use."""
    return [ServiceRates.constant(rps=rps, error_ratio=ratio, since=start) for ratio in _ratios(error_ratios, count)]


def _series_prefixes(index: int) -> tuple[str, str]:
    """The exposition text before the value, for the errors and the ok series of one service."""
    service = service_name(index)
    return (f'{METRIC}{{service="{service}",code="500"}} ', f'{METRIC}{{service="{service}",code="200"}} ')


def exposition(rates: Sequence[ServiceRates], *, at: float) -> str:
    """Prometheus text format (0.0.4) of every service's counters at unix time `at`."""
    lines = [f"# HELP {METRIC} Requests served.", f"# TYPE {METRIC} counter"]
    for index, service in enumerate(rates):
        errors_prefix, ok_prefix = _series_prefixes(index)
        lines.append(errors_prefix + repr(service.errors.counter(at)))
        lines.append(ok_prefix + repr(service.ok.counter(at)))
    lines.append("")
    return "\n".join(lines)


class ManyServicesExporter(Started):
    """One loopback HTTP server whose `/metrics` holds two counters per service, computed at request time.

    The counters are `rate x (now - start)` (piecewise, see ServiceRates), so they need no ticking thread and a
    history backfilled with the same `start`, `rps` and `error_ratios` continues exactly into live scrapes.
    """

    def __init__(
        self,
        count: int,
        *,
        error_ratios: Sequence[float] | float = 0.0,
        rps: float = 10.0,
        start: float | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.start_time = clock() if start is None else start
        """Unix seconds at which every counter is 0."""
        self._clock = clock
        self._rates = initial_rates(count=count, rps=rps, error_ratios=error_ratios, start=self.start_time)
        self._lock = threading.Lock()
        self._server = _QuietHTTPServer(("127.0.0.1", 0), _exporter_handler(self))
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="many-services", daemon=True
        )

    @property
    def count(self) -> int:
        return len(self._rates)

    @property
    def target(self) -> str:
        """`host:port` for a Prometheus scrape config."""
        host, port = self._server.server_address[:2]
        return f"{host!s}:{port}"

    def rates(self, index: int) -> ServiceRates:
        with self._lock:
            return self._rates[index]

    def error_ratio(self, index: int) -> float:
        return self.rates(index).error_ratio

    def set_error_ratio(self, index: int, ratio: float, *, at: float | None = None) -> None:
        """From `at` (default now) on, `ratio` of the index-th service's requests fail."""
        since = self._clock() if at is None else at
        with self._lock:
            self._rates[index] = self._rates[index].with_error_ratio(ratio, since=since)

    def metrics_text(self) -> str:
        with self._lock:
            rates = list(self._rates)
        return exposition(rates, at=self._clock())

    def start(self) -> Self:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and free the port (also when never started)."""
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join()
        self._server.server_close()


class _QuietHTTPServer(ThreadingHTTPServer):
    daemon_threads = True


def _exporter_handler(exporter: ManyServicesExporter) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if not self.path.startswith("/metrics"):
                self.send_error(404)
                return
            body = exporter.metrics_text().encode()
            self.send_response(200)
            self.send_header("Content-Type", _PROMETHEUS_TEXT)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            """Silence the per-request stderr line."""

    return Handler


@dataclass(frozen=True, slots=True)
class BackfillStats:
    """What one backfill cost."""

    samples: int
    text_bytes: int
    generate_seconds: float
    """Writing the OpenMetrics file."""
    promtool_seconds: float
    """promtool tsdb create-blocks-from openmetrics."""


def write_history(
    path: Path,
    *,
    rates: Sequence[ServiceRates],
    start: float,
    end: float,
    step: float | Sequence[Resolution],
) -> int:
    """Stream the services' counters from `start` to `end` to `path` as OpenMetrics; returns the sample count.

    `step` is the seconds between samples, or Resolutions for coarse old and fine recent history. Samples are
    written series by series (each in time order), as promtool needs, and never held as one string.
    """
    resolutions = [Resolution(since=start, step=step)] if isinstance(step, int | float) else list(step)
    times = sample_times(start=start, end=end, resolutions=resolutions)
    stamps = [_om_number(t) for t in times]
    labels = f'instance="{INSTANCE}",job="{JOB}"'
    samples = 0
    with path.open("w", encoding="utf-8") as out:
        out.write("# HELP http_requests Requests served.\n# TYPE http_requests counter\n")
        for index, service in enumerate(rates):
            for code, rate in (("500", service.errors), ("200", service.ok)):
                prefix = f'{METRIC}{{code="{code}",{labels},service="{service_name(index)}"}} '
                values = (_om_number(rate.counter(t)) for t in times)
                out.write("".join(f"{prefix}{value} {stamp}\n" for value, stamp in zip(values, stamps, strict=True)))
                samples += len(times)
        out.write("# EOF\n")
    return samples


def _om_number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def backfill_history(
    storage_dir: Path,
    *,
    count: int,
    rps: float,
    error_ratios: Sequence[float] | float,
    start: float,
    end: float,
    step: float | Sequence[Resolution],
    scratch_dir: Path | None = None,
) -> BackfillStats:
    """The exporter's series from `start` to `end` as TSDB blocks in `storage_dir` (start Prometheus after).

    Start the ManyServicesExporter with the same `count`, `rps`, `error_ratios` and `start` to continue the
    history live. The OpenMetrics file goes to `scratch_dir` (default: `storage_dir`'s parent) and is removed.
    """
    rates = initial_rates(count=count, rps=rps, error_ratios=error_ratios, start=start)
    storage_dir.mkdir(parents=True, exist_ok=True)
    source = (scratch_dir or storage_dir.parent) / "history.om"
    began = time.monotonic()
    samples = write_history(source, rates=rates, start=start, end=end, step=step)
    written = time.monotonic()
    text_bytes = source.stat().st_size
    try:
        backfill_file(source, storage_dir)
    finally:
        source.unlink()
    return BackfillStats(
        samples=samples,
        text_bytes=text_bytes,
        generate_seconds=written - began,
        promtool_seconds=time.monotonic() - written,
    )


# --- Prometheus -----------------------------------------------------------------------------------------------------


class PrometheusProcess(PrometheusServer):
    """The real Prometheus (tests.support.prometheus.PrometheusServer) configured for benchmarks.

    Scrapes `scrape_targets` under job `services`, relabelling their instance to `many-services`; loads every
    `rules_dir/*.yaml` (write a rule file there, then reload()); reports its own CPU, memory and API use.
    """

    def __init__(
        self,
        workdir: Path,
        *,
        storage_dir: Path | None = None,
        scrape_targets: Sequence[str] = (),
        scrape_interval: str = "5s",
        evaluation_interval: str = "5s",
    ) -> None:
        super().__init__(
            workdir,
            storage_dir=storage_dir,
            scrape_targets=scrape_targets,
            scrape_interval=scrape_interval,
            evaluation_interval=evaluation_interval,
        )
        self.rules_dir = workdir / "rules"
        """Rule files matching `*.yaml` here are loaded at start and on every reload()."""

    @property
    def pid(self) -> int:
        if self._process is None:
            raise RuntimeError("Prometheus is not running")
        return self._process.pid

    def own_metrics(self) -> MetricsSnapshot:
        """Prometheus's own /metrics."""
        return fetch_metrics(f"{self.url}/metrics")

    def cpu_seconds(self) -> float:
        """`process_cpu_seconds_total` of the server."""
        return self._own("process_cpu_seconds_total")

    def rss_bytes(self) -> int:
        return int(self._own("process_resident_memory_bytes"))

    def http_requests(self, handler: str) -> float:
        """Requests served by one HTTP handler, e.g. `/api/v1/query` (all status codes)."""
        return self.own_metrics().value("prometheus_http_requests_total", handler=handler) or 0.0

    def wait_scraped(self, *, timeout: float = START_TIMEOUT) -> None:
        """Wait until every scrape target is up (the first scrape comes a few seconds after start)."""
        expected = len(self.scrape_targets)
        wait_until(
            lambda: len([v for _, v in self.query(f'up{{job="{JOB}"}}') if v == 1]) == expected,
            timeout=timeout,
            what=f"{expected} scrape targets up",
            every=0.5,
        )

    def _own(self, name: str) -> float:
        value = self.own_metrics().value(name)
        if value is None:
            raise RuntimeError(f"Prometheus does not export {name}")
        return value

    def _write_config(self) -> None:
        self.rules_dir.mkdir(parents=True, exist_ok=True)
        scrape = {
            "job_name": JOB,
            "static_configs": [{"targets": self.scrape_targets}],
            "relabel_configs": [{"target_label": "instance", "replacement": INSTANCE}],
        }
        config = {
            "global": {"scrape_interval": self.scrape_interval, "evaluation_interval": self.evaluation_interval},
            "rule_files": [str(self.rules_dir / "*.yaml"), *(str(path) for path in self.rule_files)],
            "scrape_configs": [scrape] if self.scrape_targets else [],
        }
        # JSON is YAML.
        self.config_path.write_text(json.dumps(config, indent=2), encoding="utf-8")


# --- the operator ---------------------------------------------------------------------------------------------------


class OperatorRunner(Started):
    """`python -m slo_guard run` against `kubeconfig` and `prometheus_url`, logging JSON to `workdir/operator.log`.

    The runner passes `--prometheus`, `--standalone` (unless `standalone=False`), `--log-format json`,
    `--health-port`, `--gate-port` and `--ui-port`; `args` come after them, so they add flags or override those.
    `ports` (health, gate, UI) default to free ones. start() again after kill() restarts it on the same ports.
    """

    def __init__(
        self,
        workdir: Path,
        *,
        kubeconfig: Path,
        prometheus_url: str,
        args: Sequence[str] = (),
        standalone: bool = True,
        ports: tuple[int, int, int] | None = None,
    ) -> None:
        self.workdir = workdir
        self.log_path = workdir / "operator.log"
        self.health_port, self.gate_port, self.ui_port = ports or free_ports(3)
        self._command = [
            sys.executable, "-m", "slo_guard", "run",
            "--prometheus", prometheus_url,
            *(["--standalone"] if standalone else []),
            "--log-format", "json",
            "--health-port", str(self.health_port),
            "--gate-port", str(self.gate_port),
            "--ui-port", str(self.ui_port),
            *args,
        ]  # fmt: skip
        # MALLOC_ARENA_MAX as the image sets it (Dockerfile), so memory figures are the shipped ones.
        self._env = {**os.environ, "KUBECONFIG": str(kubeconfig), "PYTHONPATH": str(REPO), "MALLOC_ARENA_MAX": "2"}
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def health_url(self) -> str:
        return f"http://127.0.0.1:{self.health_port}"

    @property
    def pid(self) -> int:
        if self._process is None:
            raise RuntimeError("the operator is not running")
        return self._process.pid

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self, *, timeout: float = START_TIMEOUT) -> Self:
        """Start it and wait for /readyz."""
        self.launch()
        self.wait_ready(timeout=timeout)
        return self

    def launch(self) -> None:
        """Start the process without waiting for it (several replicas then start at once)."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(self._command, env=self._env, stdout=log, stderr=subprocess.STDOUT)

    def wait_ready(self, *, timeout: float = START_TIMEOUT) -> None:
        wait_until(self._ready, timeout=timeout, what=f"the operator's /readyz ({self.log_path})")

    def _ready(self) -> bool:
        if not self.running:
            raise RuntimeError(f"the operator exited during start-up; see {self.log_path}")
        try:
            with urllib.request.urlopen(self.health_url + "/readyz", timeout=2) as response:  # noqa: S310
                return bool(response.status == 200)
        except OSError:
            return False

    def rss_bytes(self, *, peak: bool = False) -> int:
        """Resident memory now, or its peak since start (the kernel's high-water mark, no sampling needed)."""
        return process_rss_bytes(self.pid, peak=peak)

    def cpu_seconds(self) -> float:
        return process_cpu_seconds(self.pid)

    def threads(self) -> int:
        return process_threads(self.pid)

    def metrics(self) -> MetricsSnapshot:
        return fetch_metrics(self.health_url + "/metrics")

    def log_entries(self) -> list[dict[str, Any]]:
        """Every JSON line of the log (other lines, e.g. a crash traceback, are skipped)."""
        entries = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if isinstance(entry, dict):
                entries.append(entry)
        return entries

    def kill(self) -> None:
        """SIGKILL, like a crashed pod."""
        if self._process is not None:
            self._process.kill()
            self._process.wait()
            self._process = None

    def stop(self) -> None:
        terminate(self._process, timeout=STOP_TIMEOUT)
        self._process = None


class OperatorFleet(Started):
    """Several OperatorRunners started together (all launched, then each awaited) and stopped together.

    `ready_timeout` bounds the wait for each replica's /readyz, which comes only once kopf has picked up every SLO.
    """

    def __init__(self, runners: Sequence[OperatorRunner], *, ready_timeout: float = START_TIMEOUT) -> None:
        self.runners = tuple(runners)
        self.ready_timeout = ready_timeout

    def start(self) -> Self:
        try:
            for runner in self.runners:
                runner.launch()
            for runner in self.runners:
                runner.wait_ready(timeout=self.ready_timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for runner in self.runners:
            runner.stop()


# --- manifests ------------------------------------------------------------------------------------------------------


def slo_manifest(
    index: int,
    *,
    namespace: str,
    service: str | None = None,
    window: str = "5m",
    objective: float = 99.0,
    interval: str = "10s",
    action: str = "Pause",
    scale_to: int = 1,
    mode: str = "Enforce",
    resume_above: float = 0.05,
) -> Body:
    """The index-th SLO: errors of `service` (default service_name(index)) guarding Deployment target_name(index).

    `objective` is a percentage as in the CRD; `scale_to` is used only with action Scale.
    """
    selector = f'job="{JOB}",service="{service or service_name(index)}"'
    policy: Body = {"mode": mode, "action": action, "resumeAbove": resume_above}
    if action == "Scale":
        policy["scaleTo"] = scale_to
    return {
        "apiVersion": SLO_API,
        "kind": SLO_KIND,
        "metadata": {"name": slo_name(index), "namespace": namespace},
        "spec": {
            "objective": objective,
            "window": window,
            "indicator": {
                "ratio": {"errors": f'{METRIC}{{{selector},code="500"}}', "total": f"{METRIC}{{{selector}}}"}
            },
            "evaluationInterval": interval,
            "targets": [{"kind": "Deployment", "name": target_name(index)}],
            "policy": policy,
        },
    }


def target_manifest(index: int, *, namespace: str, replicas: int = 3) -> Body:
    """The Deployment the index-th SLO guards."""
    return deployment_manifest(target_name(index), namespace=namespace, replicas=replicas)
