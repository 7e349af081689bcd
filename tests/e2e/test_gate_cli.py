"""`slo-guard gate` as a pipeline runs it: the real process, reading SLO statuses from an emulated API server.

The statuses are the ones the operator writes (built with its own `build_status`), PATCHed to the status
subresource, so no operator or Prometheus has to run: the gate only reads.
"""

from __future__ import annotations

import os
import pty
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from tests.e2e.conftest import answers, emulator_on, wait_for
from tests.support.kube import KubeClient, write_kubeconfig
from tests.support.prometheus import free_port

from slo_guard.domain.evaluation_types import AlertStatus, Evaluation, State, UnknownReason
from slo_guard.domain.model import Severity
from slo_guard.service.status import TargetReport, build_status

pytestmark = pytest.mark.e2e

API_VERSION = "sloguard.io/v1alpha1"
KIND = "ServiceLevelObjective"
NOW = datetime(2026, 11, 1, tzinfo=UTC)
QUIET_PAGE = AlertStatus(Severity.PAGE, 3600, 300, 14.4, firing=False)
OPENS = (
    "opens with more than 5% of the budget left and no page tier firing"
    " (sloguard.io/override-until on a target exempts that target, not this gate)"
)


def status(state: State, remaining: float | None, target_state: str, *, unknown: UnknownReason | None = None) -> Any:
    message = "no samples for http_requests_total" if unknown else f"{state.value} in test"
    evaluation = Evaluation(state, unknown, message, NOW, sli=0.999, budget_remaining=remaining, alerts=(QUIET_PAGE,))
    target = TargetReport(kind="Deployment", name="checkout", state=target_state, reason=target_state, message="")
    return build_status(previous={}, generation=1, evaluation=evaluation, targets=[target], actions=[], now=NOW)


HEALTHY = status(State.HEALTHY, 0.512, "Untouched")
EXHAUSTED = status(State.EXHAUSTED, -0.506, "Paused")
RECOVERING = status(State.HEALTHY, 0.031, "Paused")
"""Back above zero, not yet above resumeAbove: the hold stands (hysteresis)."""
RECOVERED = status(State.HEALTHY, 0.2, "Untouched")
NO_DATA = status(State.UNKNOWN, None, "Paused", unknown=UnknownReason.NO_DATA)
SLOS = {"healthy": HEALTHY, "exhausted": EXHAUSTED, "recovering": RECOVERING, "no-data": NO_DATA, "fresh": None}
"""Name -> the status written to it; `fresh` was never evaluated."""


@dataclass
class Cluster:
    kube: KubeClient
    env: dict[str, str]

    def gate(self, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            gate_command(*args), env=env or self.env, capture_output=True, text=True, timeout=60, check=False
        )

    def write_status(self, name: str, value: Any) -> None:
        self.kube.patch_object(API_VERSION, KIND, name, {"status": value}, namespace="shop", subresource="status")


def gate_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "slo_guard", "gate", *args]


def slo(name: str) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": name, "namespace": "shop"},
        "spec": {
            "objective": 99.9,
            "window": "30d",
            "indicator": {"ratio": {"errors": 'http_requests_total{code=~"5.."}', "total": "http_requests_total"}},
            "targets": [{"kind": "Deployment", "name": "checkout"}],
            "policy": {"mode": "Enforce", "action": "Pause", "resumeAbove": 0.05},
        },
    }


def base_env() -> dict[str, str]:
    # Not in a pod: without a kubeconfig there must be no credentials at all.
    return {key: value for key, value in os.environ.items() if key not in {"KUBERNETES_SERVICE_HOST", "KUBECONFIG"}}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    workdir = tmp_path_factory.mktemp("gate")
    port = free_port()
    emulator = emulator_on(port, workdir / "emulator.log")
    try:
        kube = KubeClient(f"http://127.0.0.1:{port}")
        wait_for(lambda: answers(kube), timeout=30, what="the emulator")
        kube.ensure_namespace("shop")
        found = Cluster(
            kube, {**base_env(), "KUBECONFIG": str(write_kubeconfig(workdir / "kubeconfig", kube.base_url))}
        )
        for name, value in SLOS.items():
            kube.create_object(slo(name))
            if value is not None:
                found.write_status(name, value)
        yield found
    finally:
        emulator.terminate()
        emulator.wait(timeout=20)


def test_an_open_gate_exits_0_with_one_line(cluster: Cluster) -> None:
    result = cluster.gate("shop/healthy")
    assert (result.returncode, result.stdout, result.stderr) == (0, "shop/healthy: open: healthy, +51.2% left\n", "")


def test_an_exhausted_slo_holding_its_target_exits_1_naming_the_budget_and_what_opens_it(cluster: Cluster) -> None:
    result = cluster.gate("shop/exhausted")
    assert result.returncode == 1
    assert result.stdout == f"shop/exhausted: closed: error budget exhausted, -50.6% left; {OPENS}\n"
    assert result.stderr == ""


def test_a_budget_back_above_zero_but_within_the_hysteresis_band_keeps_the_gate_closed(cluster: Cluster) -> None:
    result = cluster.gate("shop/recovering")
    assert result.returncode == 1
    assert result.stdout == f"shop/recovering: closed: still held while the budget recovers, +3.1% left; {OPENS}\n"


def test_one_closed_slo_among_open_ones_exits_1_with_a_line_each_in_order(cluster: Cluster) -> None:
    result = cluster.gate("shop/healthy", "shop/exhausted", "shop/healthy")
    assert result.returncode == 1
    assert [line.split(":")[:2] for line in result.stdout.splitlines()] == [
        ["shop/healthy", " open"],
        ["shop/exhausted", " closed"],
    ]


def test_unknown_is_open_with_a_warning_saying_why(cluster: Cluster) -> None:
    result = cluster.gate("shop/no-data", "shop/healthy")
    assert result.returncode == 0
    assert result.stdout.splitlines()[0] == (
        "shop/no-data: open: no usable data (NoData: no samples for http_requests_total); missing data never blocks"
    )
    assert result.stderr == (
        "slo-guard: warning: shop/no-data is Unknown (NoData: no samples for http_requests_total); its gate is open"
        " because missing data never blocks (--strict refuses it)\n"
    )


def test_an_slo_never_evaluated_is_unknown_not_evaluated_yet(cluster: Cluster) -> None:
    result = cluster.gate("shop/fresh")
    assert result.returncode == 0
    assert result.stdout == "shop/fresh: open: no usable data (not evaluated yet); missing data never blocks\n"
    assert "shop/fresh is Unknown (not evaluated yet)" in result.stderr


def test_strict_makes_unknown_exit_2_even_beside_a_closed_gate(cluster: Cluster) -> None:
    result = cluster.gate("--strict", "shop/exhausted", "shop/no-data")
    assert result.returncode == 2
    assert (
        result.stdout.splitlines()[1]
        == "shop/no-data: unknown: no usable data (NoData: no samples for http_requests_total)"
    )
    assert result.stderr == (
        "slo-guard: error: shop/no-data is Unknown (NoData: no samples for http_requests_total) and --strict"
        " requires data\n"
    )


def test_strict_lets_evaluated_open_gates_through(cluster: Cluster) -> None:
    assert cluster.gate("--strict", "shop/healthy").returncode == 0


def test_a_missing_slo_exits_2_with_one_line(cluster: Cluster) -> None:
    result = cluster.gate("shop/healthy", "shop/no-such-slo")
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == "slo-guard: error: ServiceLevelObjective shop/no-such-slo not found\n"


def test_an_argument_that_is_not_namespace_slash_name_exits_2_with_one_line(cluster: Cluster) -> None:
    result = cluster.gate("checkout-availability")
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == (
        "slo-guard: error: 'checkout-availability' is not NAMESPACE/NAME (e.g. shop/checkout-availability)\n"
    )


def test_without_credentials_it_exits_2_with_one_line(cluster: Cluster, tmp_path: Path) -> None:
    result = cluster.gate("shop/healthy", env={**base_env(), "KUBECONFIG": str(tmp_path / "none")})
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr.startswith(f"slo-guard: error: no Kubernetes credentials: no kubeconfig at {tmp_path}/none")
    assert result.stderr.count("\n") == 1


def test_wait_turns_from_closed_to_open_printing_one_line_per_change(cluster: Cluster) -> None:
    cluster.write_status("exhausted", EXHAUSTED)
    started = time.monotonic()
    process = subprocess.Popen(
        gate_command("shop/exhausted", "shop/healthy", "--wait", "1m"),
        env=cluster.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        first = [process.stdout.readline(), process.stdout.readline()]
        assert first == [
            f"shop/exhausted: closed: error budget exhausted, -50.6% left; {OPENS}\n",
            "shop/healthy: open: healthy, +51.2% left\n",
        ]
        time.sleep(6)  # more than one poll sees it still closed: polls without a change print nothing
        cluster.write_status("exhausted", RECOVERED)
        rest, errors = process.communicate(timeout=30)
    finally:
        process.kill()
        process.wait()
        cluster.write_status("exhausted", EXHAUSTED)
    assert process.returncode == 0
    assert rest == "shop/exhausted: open: healthy, +20.0% left\n"
    assert errors == ""
    assert time.monotonic() - started < 20


def test_wait_gives_up_at_the_deadline_with_a_final_line_and_exits_1(cluster: Cluster) -> None:
    started = time.monotonic()
    result = cluster.gate("shop/exhausted", "--wait", "2s")
    assert result.returncode == 1
    assert result.stdout.splitlines() == [
        f"shop/exhausted: closed: error budget exhausted, -50.6% left; {OPENS}",
        "timed out after 2s: shop/exhausted closed",
    ]
    assert 2 <= time.monotonic() - started < 15


def test_on_a_terminal_wait_shows_progress_on_one_line(cluster: Cluster) -> None:
    controller, terminal = pty.openpty()
    try:
        process = subprocess.Popen(
            gate_command("shop/exhausted", "--wait", "1s"), env=cluster.env, stdout=terminal, stderr=subprocess.PIPE
        )
        os.close(terminal)
        assert process.wait(timeout=30) == 1
        shown = _read_all(controller)
    finally:
        os.close(controller)
    assert shown.startswith(f"shop/exhausted: closed: error budget exhausted, -50.6% left; {OPENS}\r\n")
    assert "\r\x1b[Kwaiting for shop/exhausted: 0s of 1s" in shown
    assert shown.endswith("\r\x1b[Ktimed out after 1s: shop/exhausted closed\r\n")


def _read_all(fd: int) -> str:
    chunks = []
    while True:
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # EIO: the writer closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks).decode()
