"""`slo-guard run` at start-up: fail fast with one line, and /readyz only once the SLOs are really watched.

Each scenario starts its own operator (and, where it needs one, its own emulator on a port chosen in advance), so an
API server can be missing at first and appear later, as in a cluster whose control plane restarts.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.e2e.conftest import REPO, OperatorProcess, answers, emulator_on, wait_for
from tests.support.kube import KubeClient, write_kubeconfig
from tests.support.prometheus import free_port

pytestmark = pytest.mark.e2e

UNREACHABLE_PROMETHEUS = "http://127.0.0.1:9"
"""These scenarios are about the API server; evaluations may fail."""


def run_once(args: list[str], *, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "slo_guard", "run", "--prometheus", UNREACHABLE_PROMETHEUS, *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout, check=False)


def base_env(kubeconfig: Path) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key != "KUBERNETES_SERVICE_HOST"}
    return {**env, "KUBECONFIG": str(kubeconfig), "PYTHONPATH": str(REPO)}


def lines(output: str) -> list[dict[str, str]]:
    return [json.loads(line) for line in output.splitlines() if line.strip()]


def test_without_credentials_run_says_where_it_looked_in_one_line_and_exits_2(tmp_path: Path) -> None:
    result = run_once(["--standalone"], env=base_env(tmp_path / "no-such-kubeconfig"))
    assert result.returncode == 2
    [entry] = lines(result.stderr)
    assert entry["level"] == "ERROR"
    assert str(tmp_path / "no-such-kubeconfig") in entry["message"], "the kubeconfig it looked for"
    assert "not in a cluster" in entry["message"], "the in-cluster service account it looked for"
    assert "exception" not in entry


def test_an_unreachable_api_server_gets_one_warning_per_attempt_then_a_final_line_and_exit_1(tmp_path: Path) -> None:
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", f"http://127.0.0.1:{free_port()}")
    result = run_once(["--standalone", "--kube-startup-wait", "4s"], env=base_env(kubeconfig))
    assert result.returncode == 1
    entries = lines(result.stderr)
    *attempts, final = entries
    assert attempts, "at least one retry is announced"
    assert all(e["level"] == "WARNING" and "waiting for the Kubernetes API" in e["message"] for e in attempts)
    assert final["level"] == "ERROR"
    assert final["message"].startswith("giving up: Kubernetes API at http://127.0.0.1:")
    assert "Traceback" not in result.stderr
    assert not any("exception" in e for e in entries)


@contextlib.contextmanager
def running(*processes: OperatorProcess) -> Iterator[None]:
    try:
        yield
    finally:
        for process in processes:
            process.stop()


def operator_for(tmp_path: Path, kubeconfig: Path) -> OperatorProcess:
    args = ["--prometheus", UNREACHABLE_PROMETHEUS, "--standalone", "--kube-startup-wait", "2m"]
    return OperatorProcess(workdir=tmp_path, env=base_env(kubeconfig), args=args)


def test_readyz_is_not_ok_while_the_api_server_is_down_and_turns_ok_once_it_answers(tmp_path: Path) -> None:
    port = free_port()
    operator = operator_for(tmp_path, write_kubeconfig(tmp_path / "kubeconfig", f"http://127.0.0.1:{port}"))
    operator.start()
    emulator: subprocess.Popen[bytes] | None = None
    with running(operator):
        try:
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                assert not operator.is_ready(), "ready while the API server is down"
                time.sleep(0.2)
            emulator = emulator_on(port, tmp_path / "emulator.log")
            wait_for(operator.is_ready, timeout=60, what="/readyz 200 once the API server answers")
        finally:
            if emulator is not None:
                emulator.terminate()
                emulator.wait(timeout=20)


def test_readyz_turns_ok_only_once_every_listed_slo_is_watched(tmp_path: Path) -> None:
    port = free_port()
    emulator = emulator_on(port, tmp_path / "emulator.log")
    try:
        kube = KubeClient(f"http://127.0.0.1:{port}")
        wait_for(lambda: answers(kube), timeout=30, what="the emulator")
        kube.ensure_namespace("shop")
        for name in SLOS:
            kube.create_object(_slo(name))
        operator = operator_for(tmp_path, write_kubeconfig(tmp_path / "kubeconfig", f"http://127.0.0.1:{port}"))
        operator.start()
        with running(operator):
            wait_for(operator.is_ready, timeout=60, what="/readyz 200", every=0.05)
            with urllib.request.urlopen(operator.health_url + "/healthz", timeout=5) as response:  # noqa: S310
                liveness = response.read().decode()
            assert liveness.startswith(f"ok: {len(SLOS)} SLOs evaluating"), "ready before every SLO was picked up"
    finally:
        emulator.terminate()
        emulator.wait(timeout=20)


SLOS = ("checkout", "search", "cart")


def _slo(name: str) -> dict[str, object]:
    return {
        "apiVersion": "sloguard.io/v1alpha1",
        "kind": "ServiceLevelObjective",
        "metadata": {"name": name, "namespace": "shop"},
        "spec": {
            "objective": 99,
            "window": "1h",
            "indicator": {"ratio": {"errors": 'http_requests_total{code="500"}', "total": "http_requests_total"}},
            "targets": [{"kind": "Deployment", "name": name}],
        },
    }
