"""A real single-node VictoriaMetrics and a real vmalert for tests: Debian's binaries on free loopback ports.

VictoriaMetrics answers the Prometheus query API with MetricsQL; history is imported over HTTP (no backfill tool),
and it can scrape targets itself. vmalert evaluates Prometheus rule files against it and writes the recorded
series back to it, which is how a VictoriaMetrics installation runs slo-guard's managed recording rules.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Self

import pytest
from tests.support.datasets import openmetrics_text
from tests.support.lifecycle import Started
from tests.support.prometheus import PrometheusQueryFailed, find_binary, free_port, terminate

REPO_ROOT = Path(__file__).resolve().parents[2]
BUNDLED_BIN_DIR = REPO_ROOT / ".tools" / "victoria-metrics" / "usr" / "bin"
BIN_DIR_ENV = "SLO_GUARD_VICTORIA_METRICS_BIN"
READY_TIMEOUT = 30.0
"""Seconds a process may take to answer /health (well under a second on an idle machine)."""


class VictoriaMetricsNotInstalled(RuntimeError):
    pass


def victoria_metrics_bin(name: str) -> Path:
    """`victoria-metrics` or `vmalert`: from $SLO_GUARD_VICTORIA_METRICS_BIN, .tools/victoria-metrics, then PATH."""
    return find_binary(
        name,
        env=BIN_DIR_ENV,
        bundled=BUNDLED_BIN_DIR,
        installer="scripts/install-victoria-metrics.sh",
        missing=VictoriaMetricsNotInstalled,
    )


def prometheus_text(openmetrics: str) -> str:
    """OpenMetrics samples as Prometheus text exposition: the same lines, timestamps in milliseconds, no comments.

    That is the format /api/v1/import/prometheus reads with each sample's own timestamp.
    """
    lines = []
    for line in openmetrics.splitlines():
        if not line or line.startswith("#"):
            continue
        series, value, stamp = line.rsplit(" ", 2)
        lines.append(f"{series} {value} {round(float(stamp) * 1000)}")
    return "\n".join(lines) + "\n"


class _Process(Started):
    """A Go binary of the VictoriaMetrics family on a free loopback port, ready once /health answers."""

    name = ""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.log_path = workdir / f"{self.name}.log"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Self:
        if self._process is not None:
            raise RuntimeError(f"{self.name} is already running")
        self.workdir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(self._command(), stdout=log, stderr=subprocess.STDOUT)
        self._wait_ready()
        return self

    def stop(self) -> None:
        process, self._process = self._process, None
        terminate(process)

    def _command(self) -> list[str]:
        raise NotImplementedError

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if self._process is None or self._process.poll() is not None:
                raise RuntimeError(f"{self.name} exited during start-up; log tail:\n{self.log_tail()}")
            try:
                with self._open("/health", timeout=1) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"{self.name} not ready after {READY_TIMEOUT} s; log tail:\n{self.log_tail()}")

    def _open(self, path: str, *, method: str = "GET", data: bytes | None = None, timeout: float = 60) -> Any:
        # Always our own http://127.0.0.1 address, never a user-supplied scheme.
        request = urllib.request.Request(f"{self.url}{path}", data=data, method=method)  # noqa: S310
        return urllib.request.urlopen(request, timeout=timeout)  # noqa: S310

    def log_tail(self, lines: int = 20) -> str:
        if not self.log_path.exists():
            return "(no log)"
        return "\n".join(self.log_path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])


class VictoriaMetricsServer(_Process):
    """Single-node VictoriaMetrics over `workdir/data`, optionally scraping `scrape_targets` under job `synthetic`."""

    name = "victoria-metrics"

    def __init__(self, workdir: Path, *, scrape_targets: Sequence[str] = (), scrape_interval: str = "1s") -> None:
        super().__init__(workdir)
        self.scrape_targets = list(scrape_targets)
        self.scrape_interval = scrape_interval
        self.storage_dir = workdir / "data"
        self.scrape_config_path = workdir / "scrape.yml"

    def import_openmetrics(self, text: str) -> None:
        """Store OpenMetrics samples with their own timestamps, queryable when this returns."""
        with self._open("/api/v1/import/prometheus", method="POST", data=prometheus_text(text).encode()) as response:
            if response.status != 204:
                raise RuntimeError(f"import answered {response.status}")
        # New series and rows are buffered in memory (new series for about 10 s): flushing makes them searchable now.
        with self._open("/internal/force_flush"):
            pass

    def query(self, expr: str, *, at: datetime | None = None) -> list[tuple[dict[str, str], float]]:
        """Instant query for test assertions: (labels, value) per series; a scalar has empty labels."""
        params = {"query": expr}
        if at is not None:
            params["time"] = f"{at.timestamp():.3f}"
        try:
            with self._open(f"/api/v1/query?{urllib.parse.urlencode(params)}") as response:
                data = json.load(response)["data"]
        except urllib.error.HTTPError as error:
            raise PrometheusQueryFailed(f"{expr}: {error.code} {error.read().decode()}") from None
        if data["resultType"] == "scalar":
            return [({}, float(data["result"][1]))]
        return [(dict(item["metric"]), float(item["value"][1])) for item in data["result"]]

    def query_value(self, expr: str, *, at: datetime | None = None) -> float | None:
        """The one value of an aggregated query; None when it returned no series."""
        results = self.query(expr, at=at)
        if len(results) > 1:
            raise PrometheusQueryFailed(f"{expr} returned {len(results)} series, expected at most one")
        return results[0][1] if results else None

    def _command(self) -> list[str]:
        command = [
            str(victoria_metrics_bin("victoria-metrics")),
            f"-storageDataPath={self.storage_dir}",
            f"-httpListenAddr=127.0.0.1:{self.port}",
            # The default (1 month) drops imported history older than a month.
            "-retentionPeriod=100y",
            # By default samples younger than 30 s are hidden from queries; a scraped service's must show at once.
            "-search.latencyOffset=0s",
            # Imported history arrives after the server started: no answer may come from a cache filled before it.
            "-search.disableCache",
            # Deduplication is off unless this is above 0: every sample is kept, as Prometheus keeps it.
            "-dedup.minScrapeInterval=0s",
        ]
        if self.scrape_targets:
            self._write_scrape_config()
            command.append(f"-promscrape.config={self.scrape_config_path}")
        return command

    def _write_scrape_config(self) -> None:
        job = {
            "job_name": "synthetic",
            "scrape_interval": self.scrape_interval,
            "static_configs": [{"targets": self.scrape_targets}],
        }
        # JSON is YAML, so no YAML writer is needed.
        self.scrape_config_path.write_text(json.dumps({"scrape_configs": [job]}, indent=2), encoding="utf-8")


class VMAlert(_Process):
    """vmalert evaluating `rule_files` against `datasource` and writing what it records to `remote_write`."""

    name = "vmalert"

    def __init__(
        self,
        workdir: Path,
        *,
        datasource: str,
        remote_write: str,
        rule_files: Sequence[Path],
        evaluation_interval: str = "1s",
    ) -> None:
        super().__init__(workdir)
        self.datasource = datasource
        self.remote_write = remote_write
        self.rule_files = list(rule_files)
        self.evaluation_interval = evaluation_interval

    @property
    def reload_url(self) -> str:
        """What slo-guard's --rules-reload-url must be: vmalert rereads its rule files on /-/reload."""
        return f"{self.url}/-/reload"

    def groups(self) -> list[dict[str, Any]]:
        """The rule groups vmalert runs now, as its Prometheus-style /api/v1/rules lists them."""
        with self._open("/api/v1/rules") as response:
            groups: list[dict[str, Any]] | None = json.load(response)["data"]["groups"]
            return groups or []

    def _command(self) -> list[str]:
        return [
            str(victoria_metrics_bin("vmalert")),
            f"-httpListenAddr=127.0.0.1:{self.port}",
            f"-datasource.url={self.datasource}",
            f"-remoteWrite.url={self.remote_write}",
            *(f"-rule={path}" for path in self.rule_files),
            f"-evaluationInterval={self.evaluation_interval}",
            # The default 5 s would leave a rule evaluated every second unreadable for several of its periods.
            "-remoteWrite.flushInterval=100ms",
        ]


def dataset_victoriametrics_server(workdir: Path) -> VictoriaMetricsServer:
    """A started VictoriaMetrics holding tests/support/datasets.py's history."""
    server = VictoriaMetricsServer(workdir).start()
    server.import_openmetrics(openmetrics_text())
    return server


@pytest.fixture(scope="session")
def dataset_victoriametrics(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VictoriaMetricsServer]:
    """One VictoriaMetrics holding the dataset for the whole session. Do not stop it; start your own."""
    server = dataset_victoriametrics_server(tmp_path_factory.mktemp("dataset-victoriametrics"))
    try:
        yield server
    finally:
        server.stop()
