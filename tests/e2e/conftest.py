"""The end-to-end world: an API server, a real Prometheus scraping synthetic services, and `slo-guard run`.

By default the API server is the kmock-based emulator in its own process. With `--real-cluster` the same scenarios run
against the cluster in KUBECONFIG, reached through `kubectl proxy`; scenarios that need the emulator's fault injection
or request log are skipped there.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from tests.support.exporter import SyntheticService, Traffic
from tests.support.kube import ApiStatusError, EmulatorClient, KubeClient, write_kubeconfig
from tests.support.prometheus import PrometheusServer, free_port

REPO = Path(__file__).resolve().parents[2]
CRD = REPO / "crds" / "servicelevelobjectives.yaml"
SERVICE_POOL = 16
EVALUATION_INTERVAL = 1.0
"""Seconds; every e2e SLO is evaluated this often."""
LATENCIES: list[tuple[str, float]] = []
"""(scenario, seconds from Prometheus showing the budget exhausted to spec.paused: true), printed at the end."""


def wait_for(predicate: Callable[[], Any], *, timeout: float, what: str, every: float = 0.2) -> Any:
    """Poll until `predicate` returns something truthy; fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(every)


class OperatorProcess:
    """`slo-guard run` as a real process, restartable, with its JSON log kept in a file."""

    def __init__(self, *, workdir: Path, env: dict[str, str], args: list[str]) -> None:
        self.workdir = workdir
        self.env = env
        self.args = args
        self.log_path = workdir / "operator.log"
        self.health_port = free_port()
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def health_url(self) -> str:
        return f"http://127.0.0.1:{self.health_port}"

    def start(self) -> None:
        command = [sys.executable, "-m", "slo_guard", "run", *self.args, "--health-port", str(self.health_port)]
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(command, env=self.env, stdout=log, stderr=subprocess.STDOUT)

    def kill(self) -> None:
        """SIGKILL: no cleanup, exactly like a crashed pod."""
        if self._process is not None:
            self._process.kill()
            self._process.wait()
            self._process = None

    def stop(self) -> None:
        if self._process is None:
            return
        self._process.send_signal(signal.SIGTERM)
        try:
            self._process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._process = None

    def log_entries(self) -> list[dict[str, Any]]:
        entries = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            try:
                entries.append(json.loads(line))
            except ValueError:
                continue
        return entries


@dataclass
class World:
    kube: KubeClient
    emulator: EmulatorClient | None
    """None on a real cluster."""
    prometheus: PrometheusServer
    operator: OperatorProcess
    services: list[SyntheticService] = field(default_factory=list)

    def take_service(self, traffic: Traffic) -> SyntheticService:
        service = self.services.pop()
        service.set(rps=traffic.rps, error_ratio=traffic.error_ratio, slow_ratio=traffic.slow_ratio)
        return service

    def need_emulator(self) -> EmulatorClient:
        if self.emulator is None:
            pytest.skip("needs the emulator's request log or fault injection")
        return self.emulator

    def objects(self, api_version: str, kind: str, namespace: str) -> list[dict[str, Any]]:
        return list(self.kube.list_objects(api_version, kind, namespace=namespace).get("items", []))

    def get(self, api_version: str, kind: str, name: str, namespace: str) -> dict[str, Any] | None:
        try:
            return self.kube.get_object(api_version, kind, name, namespace=namespace)
        except ApiStatusError as error:
            if error.status == 404:
                return None
            raise


@pytest.fixture(scope="session")
def world(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    workdir = tmp_path_factory.mktemp("e2e")
    services = [SyntheticService(Traffic(rps=0)).start() for _ in range(SERVICE_POOL)]
    prometheus = PrometheusServer(workdir / "prometheus", scrape_targets=[s.target for s in services]).start()
    helpers: list[subprocess.Popen[bytes]] = []
    try:
        if request.config.getoption("--real-cluster"):
            api_url, kubeconfig, emulator = _real_cluster(workdir, helpers)
        else:
            api_url, kubeconfig, emulator = _emulator(workdir, helpers)
        env = {**os.environ, "KUBECONFIG": str(kubeconfig), "PYTHONPATH": str(REPO)}
        operator = OperatorProcess(
            workdir=workdir,
            env=env,
            args=[
                "--prometheus", prometheus.url,
                "--min-step", "1s",
                "--max-staleness", "15s",
                "--standalone",
                "--status-heartbeat", "30s",
                "--prometheus-timeout", "2",
                "--prometheus-retries", "1",
                "--prometheus-breaker-threshold", "3",
                "--prometheus-breaker-reset", "3",
            ],
        )  # fmt: skip
        operator.start()
        world = World(KubeClient(api_url), emulator, prometheus, operator, services)
        wait_for(lambda: _ready(operator), timeout=60, what="the operator's /readyz")
        yield world
        operator.stop()
    finally:
        for helper in helpers:
            helper.terminate()
            helper.wait(timeout=20)
        prometheus.stop()
        for service in services:
            service.stop()


def _ready(operator: OperatorProcess) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(operator.health_url + "/readyz", timeout=2) as response:  # noqa: S310
            return bool(response.status == 200)
    except OSError:
        return False


def _emulator(workdir: Path, helpers: list[subprocess.Popen[bytes]]) -> tuple[str, Path, EmulatorClient]:
    url_file = workdir / "emulator.url"
    with (workdir / "emulator.log").open("ab") as log:
        helpers.append(
            subprocess.Popen(
                [sys.executable, "-m", "tests.support.emulator", "--crd", str(CRD), "--url-file", str(url_file)],
                cwd=REPO,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )
    url = wait_for(lambda: url_file.exists() and url_file.read_text().strip(), timeout=30, what="the emulator")
    return url, write_kubeconfig(workdir / "kubeconfig", url), EmulatorClient(url)


def _real_cluster(workdir: Path, helpers: list[subprocess.Popen[bytes]]) -> tuple[str, Path, None]:
    kubeconfig = Path(os.environ.get("KUBECONFIG", Path.home() / ".kube" / "config"))
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("--real-cluster needs kubectl")
    subprocess.run([kubectl, "apply", "-f", str(CRD)], check=True)
    port = free_port()
    helpers.append(subprocess.Popen([kubectl, "proxy", f"--port={port}"], stdout=subprocess.DEVNULL))
    url = f"http://127.0.0.1:{port}"
    wait_for(lambda: _reachable(url), timeout=30, what="kubectl proxy")
    return url, kubeconfig, None


def _reachable(url: str) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(url + "/version", timeout=2):  # noqa: S310
            return True
    except OSError:
        return False
