"""The end-to-end world: an API server, a real Prometheus scraping synthetic services, and `slo-guard run`.

By default the API server is the kmock-based emulator in its own process. With `--real-cluster` the same scenarios run
against the cluster in KUBECONFIG, reached through `kubectl proxy`; scenarios that need the emulator's fault injection
or request log are skipped there.

Scenarios the shared operator must not see (several replicas, a namespaced run, an operator reading Prometheus through
a fault proxy) get an emulator of their own from `private_clusters`, with the shared Prometheus. test_rbac.py runs
last: it checks the RBAC manifests against every request the operators sent during the session.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.support.emulator_log import CallSeen
from tests.support.exporter import SyntheticService, Traffic
from tests.support.kube import ApiStatusError, EmulatorClient, KubeClient, write_kubeconfig
from tests.support.prometheus import PrometheusServer, free_port, free_ports

REPO = Path(__file__).resolve().parents[2]
CRD = REPO / "crds" / "servicelevelobjectives.yaml"
SHIPPED_CRDS = (
    REPO / "manifests" / "crds" / "servicelevelobjectives.yaml",
    REPO / "manifests" / "kopf-peering" / "kopfpeerings.yaml",
)
"""The CRDs as `kubectl apply -k manifests/crds` and `-k manifests/kopf-peering` install them."""
RBAC_MODULE = "test_rbac.py"
"""Reads what every other scenario made the operators send, so it runs last."""
SERVICE_POOL = 32
"""Synthetic services the shared Prometheus scrapes; every scenario takes its own (world.take_service). The suite
takes 25 today: raise this when a new scenario runs out."""
EVALUATION_INTERVAL = 1.0
"""Seconds; every e2e SLO is evaluated this often."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Move the RBAC checks after every other test (stable sort: the rest keep their order)."""
    items.sort(key=lambda item: item.path.name == RBAC_MODULE)


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
        self.health_port, self.gate_port, self.ui_port = free_ports(3)
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def health_url(self) -> str:
        return f"http://127.0.0.1:{self.health_port}"

    @property
    def gate_url(self) -> str:
        return f"http://127.0.0.1:{self.gate_port}/gate/v1"

    @property
    def ui_url(self) -> str:
        return f"http://127.0.0.1:{self.ui_port}"

    def start(self) -> None:
        command = [
            *(sys.executable, "-m", "slo_guard", "run", *self.args),
            *("--health-port", str(self.health_port), "--gate-port", str(self.gate_port)),
            *("--ui-port", str(self.ui_port)),
        ]
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

    def exit_code(self) -> int | None:
        """The process's exit code once it has ended by itself; None while it runs."""
        return None if self._process is None else self._process.poll()

    def readiness(self) -> tuple[int, str]:
        """/readyz's status code and text."""
        try:
            with urllib.request.urlopen(self.health_url + "/readyz", timeout=2) as response:  # noqa: S310
                return int(response.status), response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()

    def is_ready(self) -> bool:
        """Whether /readyz answers 200 now."""
        try:
            with urllib.request.urlopen(self.health_url + "/readyz", timeout=2) as response:  # noqa: S310
                return bool(response.status == 200)
        except OSError:
            return False

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
        if not self.services:
            pytest.fail(f"all {SERVICE_POOL} synthetic services are taken: raise SERVICE_POOL in tests/e2e/conftest.py")
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
        return get_or_none(self.kube, api_version, kind, name, namespace=namespace)


def get_or_none(
    kube: KubeClient, api_version: str, kind: str, name: str, *, namespace: str | None
) -> dict[str, Any] | None:
    """The object, or None when the server answers 404."""
    try:
        return kube.get_object(api_version, kind, name, namespace=namespace)
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
        operator = OperatorProcess(workdir=workdir, env=env, args=[*operator_args(prometheus), "--standalone"])
        operator.start()
        try:
            world = World(KubeClient(api_url), emulator, prometheus, operator, services)
            wait_for(operator.is_ready, timeout=60, what="the operator's /readyz")
            yield world
        finally:
            operator.stop()  # also when it never got ready: no operator outlives its session
    finally:
        for helper in helpers:
            helper.terminate()
            helper.wait(timeout=20)
        prometheus.stop()
        for service in services:
            service.stop()


def operator_args(prometheus: PrometheusServer) -> list[str]:
    """`slo-guard run` flags every e2e operator shares: quick evaluations, a quickly tripped Prometheus breaker."""
    return [
        "--prometheus", prometheus.url,
        "--min-step", "1s",
        "--max-staleness", "15s",
        "--status-heartbeat", "30s",
        "--prometheus-timeout", "2",
        "--prometheus-retries", "1",
        "--prometheus-breaker-threshold", "3",
        "--prometheus-breaker-reset", "3",
    ]  # fmt: skip


@dataclass
class PrivateCluster:
    """An emulator of one scenario's own, for operators the shared one must not meet."""

    workdir: Path
    kube: KubeClient
    emulator: EmulatorClient
    kubeconfig: Path
    prometheus: PrometheusServer
    watched_namespace: str | None
    """`--namespace` of every operator started here; None for cluster-wide operators."""
    operators: list[OperatorProcess] = field(default_factory=list)

    def operator(self, identity: str, *args: str) -> OperatorProcess:
        """A `slo-guard run` (not started) whose kopf peer identity is `identity`.

        `args` follow the flags every e2e operator shares, so they override them (argparse keeps the last value).
        """
        workdir = self.workdir / identity
        workdir.mkdir()
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig), "PYTHONPATH": str(REPO), "POD_ID": identity}
        scope = ["--namespace", self.watched_namespace] if self.watched_namespace else []
        operator = OperatorProcess(workdir=workdir, env=env, args=[*operator_args(self.prometheus), *scope, *args])
        self.operators.append(operator)
        return operator

    def get(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        return get_or_none(self.kube, api_version, kind, name, namespace=namespace)


@dataclass
class PrivateClusters:
    """Hands out private clusters and keeps, after each closes, every distinct request its operators sent."""

    workdir: Path
    prometheus: PrometheusServer
    calls: list[tuple[str | None, list[CallSeen]]] = field(default_factory=list)
    """(watched namespace or None, the cluster's calls_seen()) per closed cluster."""

    @contextlib.contextmanager
    def cluster(
        self,
        name: str,
        *,
        watched_namespace: str | None,
        manifests: Sequence[Path],
        kopf_peering: bool = True,
        rbac_checked: bool = True,
    ) -> Iterator[PrivateCluster]:
        """An emulator with those CRDs and the objects in the `manifests` YAML files.

        Without `kopf_peering` the cluster has only slo-guard's CRD: it was never prepared for kopf.
        """
        workdir = self.workdir / name
        workdir.mkdir()
        helpers: list[subprocess.Popen[bytes]] = []
        try:
            crds = SHIPPED_CRDS if kopf_peering else (CRD,)
            url, kubeconfig, emulator = _emulator(workdir, helpers, crds=crds, kopf_peering=kopf_peering)
            cluster = PrivateCluster(workdir, KubeClient(url), emulator, kubeconfig, self.prometheus, watched_namespace)
            for path in manifests:
                for body in _documents(path):
                    if namespace := body["metadata"].get("namespace"):
                        cluster.kube.ensure_namespace(namespace)
                    cluster.kube.create_object(body)
            try:
                yield cluster
            finally:
                for operator in cluster.operators:
                    operator.stop()
                if rbac_checked:
                    self.calls.append((watched_namespace, emulator.calls_seen()))
        finally:
            for helper in helpers:
                helper.terminate()
                helper.wait(timeout=20)


def _documents(path: Path) -> list[dict[str, Any]]:
    return [document for document in yaml.safe_load_all(path.read_text()) if document]


@pytest.fixture(scope="session")
def private_clusters(world: World, tmp_path_factory: pytest.TempPathFactory) -> PrivateClusters:
    return PrivateClusters(tmp_path_factory.mktemp("private"), world.prometheus)


def emulator_on(port: int, log: Path) -> subprocess.Popen[bytes]:
    """An emulator process serving slo-guard's CRD on a port chosen in advance, so clients may start before it."""
    with log.open("ab") as out:
        command = [sys.executable, "-m", "tests.support.emulator", "--port", str(port), "--crd", str(CRD)]
        return subprocess.Popen(command, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)


def answers(kube: KubeClient) -> bool:
    """Whether an API server answers behind `kube` at all."""
    try:
        kube.request("GET", "/version")
    except OSError:
        return False
    return True


def _emulator(
    workdir: Path, helpers: list[subprocess.Popen[bytes]], *, crds: Sequence[Path] = (CRD,), kopf_peering: bool = True
) -> tuple[str, Path, EmulatorClient]:
    url_file = workdir / "emulator.url"
    crd_args = [arg for crd in crds for arg in ("--crd", str(crd))]
    if not kopf_peering:
        crd_args.append("--no-kopf-peering")
    with (workdir / "emulator.log").open("ab") as log:
        helpers.append(
            subprocess.Popen(
                [sys.executable, "-m", "tests.support.emulator", *crd_args, "--url-file", str(url_file)],
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
    try:
        with urllib.request.urlopen(url + "/version", timeout=2):  # noqa: S310
            return True
    except OSError:
        return False
