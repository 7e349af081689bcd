"""A real Prometheus server for tests: started from the binary on a free loopback port, never mocked."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Self

from tests.support.lifecycle import Started

REPO_ROOT = Path(__file__).resolve().parents[2]
BUNDLED_BIN_DIR = REPO_ROOT / ".tools" / "prometheus" / "usr" / "bin"
BIN_DIR_ENV = "SLO_GUARD_PROMETHEUS_BIN"

READY_TIMEOUT = 30.0
"""Seconds a server may take to report ready (about 0.2 s on an idle machine)."""
STOP_TIMEOUT = 10.0
"""Seconds between SIGTERM and SIGKILL."""


class PrometheusNotInstalled(RuntimeError):
    pass


def prometheus_bin(name: str) -> Path:
    """`prometheus` or `promtool`: from $SLO_GUARD_PROMETHEUS_BIN, then .tools/prometheus, then PATH."""
    return find_binary(
        name,
        env=BIN_DIR_ENV,
        bundled=BUNDLED_BIN_DIR,
        installer="scripts/install-prometheus.sh",
        missing=PrometheusNotInstalled,
    )


def find_binary(name: str, *, env: str, bundled: Path, installer: str, missing: type[RuntimeError]) -> Path:
    """A tool's binary from the directory in `env`, then `bundled` (where `make test` puts it), then PATH."""
    env_dir = os.environ.get(env)
    candidates = [Path(env_dir) / name] if env_dir else []
    candidates.append(bundled / name)
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    found = shutil.which(name)
    if found is None:
        searched = ", ".join(str(c.parent) for c in candidates)
        raise missing(f"{name} not found in {searched} or on PATH; run `make test` (or {installer})")
    return Path(found)


def free_port() -> int:
    """A loopback port that was free a moment ago."""
    [port] = free_ports(1)
    return port


def free_ports(count: int) -> tuple[int, ...]:
    """`count` distinct loopback ports that were free a moment ago: all are held open until each is chosen, so two
    calls of free_port() cannot hand out the same one to one process."""
    with contextlib.ExitStack() as held:
        probes = [held.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) for _ in range(count)]
        for probe in probes:
            probe.bind(("127.0.0.1", 0))
        return tuple(int(probe.getsockname()[1]) for probe in probes)


class PrometheusQueryFailed(RuntimeError):
    pass


def terminate(process: subprocess.Popen[bytes] | None, *, timeout: float = STOP_TIMEOUT) -> None:
    """SIGTERM, then SIGKILL if it does not exit within `timeout`. Safe on None or an exited process."""
    if process is None or process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


class PrometheusServer(Started):
    """One Prometheus process over `storage_dir`, configured from the arguments.

    Use as a context manager, or call start()/stop(); start() again reuses the same port and storage, so a
    client keeps its URL across a restart. The config file and `prometheus.log` are written to `workdir`.
    """

    def __init__(
        self,
        workdir: Path,
        *,
        storage_dir: Path | None = None,
        scrape_targets: Sequence[str] = (),
        scrape_interval: str = "1s",
        evaluation_interval: str = "1s",
        rule_files: Sequence[Path] = (),
    ) -> None:
        self.workdir = workdir
        self.storage_dir = storage_dir if storage_dir is not None else workdir / "data"
        self.scrape_targets = list(scrape_targets)
        """`host:port` strings scraped under job `synthetic`; edit, then reload(), to change them."""
        self.scrape_interval = scrape_interval
        self.evaluation_interval = evaluation_interval
        self.rule_files = list(rule_files)
        """Rule files to load; edit the list or the files, then reload()."""
        self.port = free_port()
        self.config_path = workdir / "prometheus.yml"
        self.log_path = workdir / "prometheus.log"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Self:
        if self._process is not None:
            raise RuntimeError("Prometheus is already running")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._write_config()
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(self._command(), stdout=log, stderr=subprocess.STDOUT)
        self._wait_ready()
        return self

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it does not exit in time. Safe to call when stopped."""
        process, self._process = self._process, None
        terminate(process)

    def reload(self) -> None:
        """Rewrite the config from the current attributes and make Prometheus load it (and the rule files)."""
        self._write_config()
        with self._open("/-/reload", method="POST") as response:
            if response.status != 200:
                raise RuntimeError(f"reload answered {response.status}")

    def query(self, expr: str, *, at: datetime | None = None) -> list[tuple[dict[str, str], float]]:
        """Instant query for test assertions: (labels, value) per series; a scalar has empty labels."""
        params = {"query": expr}
        if at is not None:
            params["time"] = f"{at.timestamp():.3f}"
        data = self._api("/api/v1/query", params)
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
        return [
            str(prometheus_bin("prometheus")),
            f"--config.file={self.config_path}",
            f"--storage.tsdb.path={self.storage_dir}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            # The default 15 d would delete backfilled 30-day history.
            "--storage.tsdb.retention.time=60d",
            "--web.enable-lifecycle",
        ]

    def _write_config(self) -> None:
        config = {
            "global": {"scrape_interval": self.scrape_interval, "evaluation_interval": self.evaluation_interval},
            "rule_files": [str(path) for path in self.rule_files],
            "scrape_configs": [{"job_name": "synthetic", "static_configs": [{"targets": self.scrape_targets}]}]
            if self.scrape_targets
            else [],
        }
        # JSON is YAML, so no YAML writer is needed.
        self.config_path.write_text(json.dumps(config, indent=2), encoding="utf-8")

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if self._process is None or self._process.poll() is not None:
                raise RuntimeError(f"Prometheus exited during start-up; log tail:\n{self._log_tail()}")
            if self._is_ready():
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"Prometheus not ready after {READY_TIMEOUT} s; log tail:\n{self._log_tail()}")

    def _is_ready(self) -> bool:
        try:
            with self._open("/-/ready", timeout=1) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    def _api(self, path: str, params: dict[str, str]) -> Any:
        try:
            with self._open(f"{path}?{urllib.parse.urlencode(params)}") as response:
                body = json.load(response)
        except urllib.error.HTTPError as error:
            raise PrometheusQueryFailed(f"{params.get('query')}: {error.code} {error.read().decode()}") from None
        return body["data"]

    def _open(self, path: str, *, method: str = "GET", timeout: float = READY_TIMEOUT) -> Any:
        # Always our own http://127.0.0.1 address, never a user-supplied scheme.
        request = urllib.request.Request(f"{self.url}{path}", method=method)  # noqa: S310
        return urllib.request.urlopen(request, timeout=timeout)  # noqa: S310

    def _log_tail(self, lines: int = 20) -> str:
        if not self.log_path.exists():
            return "(no log)"
        return "\n".join(self.log_path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
