"""`slo-guard gate` as a person sees it: help, argument mistakes, and the progress line on a terminal.

The cluster is an in-memory reader here; tests/e2e/test_gate_cli.py runs the real process against the emulator.
"""

from __future__ import annotations

import io
import os
from collections.abc import Mapping
from typing import Any

import pytest

from slo_guard.adapters import kubernetes_api, slo_reader
from slo_guard.cli import main
from slo_guard.service import gate as gate_service
from slo_guard.service.ports import KubernetesUnavailable

KEY = "shop/checkout-availability"
SPEC = {
    "objective": 99.9,
    "window": "30d",
    "indicator": {"ratio": {"errors": 'http_requests_total{code=~"5.."}', "total": "http_requests_total"}},
    "targets": [{"kind": "Deployment", "name": "checkout"}],
}
CLOSED = {
    "state": "Exhausted",
    "message": "The error budget is spent",
    "errorBudget": {"remaining": -0.506},
    "evaluatedAt": "2026-11-01T00:00:00Z",
    "targets": [{"kind": "Deployment", "name": "checkout", "state": "Paused"}],
}
OPEN = {**CLOSED, "state": "Healthy", "errorBudget": {"remaining": 0.12}, "targets": []}
CLOSED_LINE = (
    f"{KEY}: closed: error budget exhausted, -50.6% left; opens with more than 5% of the budget left and no page tier"
    " firing (sloguard.io/override-until on a target exempts that target, not this gate)\n"
)
CLEAR = "\r\x1b[K"


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class Cluster:
    """Stands in for the API server: each read answers the next status of the script (or raises it), the last one
    for good."""

    def __init__(self, *statuses: Mapping[str, Any] | Exception) -> None:
        self.statuses = list(statuses)

    async def read(self, *, namespace: str, name: str) -> Mapping[str, Any] | None:
        status = self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]
        if isinstance(status, Exception):
            raise status
        return {
            "apiVersion": "sloguard.io/v1alpha1",
            "kind": "ServiceLevelObjective",
            "metadata": {"namespace": namespace, "name": name},
            "spec": SPEC,
            "status": status,
        }


@pytest.fixture
def cluster(monkeypatch: pytest.MonkeyPatch) -> Cluster:
    """Every read goes to a Cluster, and waiting polls at once instead of every five seconds."""
    found = Cluster(CLOSED)
    monkeypatch.setattr(kubernetes_api, "load_api_client", _NoClient)
    monkeypatch.setattr(slo_reader, "SLOObjects", lambda api: found)
    monkeypatch.setattr(gate_service, "POLL_SECONDS", 0.001)
    return found


class _NoClient:
    def close(self) -> None:
        pass


@pytest.fixture
def wide_help(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [name for name in os.environ if name.startswith("SLO_GUARD_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("COLUMNS", "1000")


def test_help_shows_the_arguments_and_no_missing_default(wide_help: None, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["gate", "--help"])
    assert exited.value.code == 0
    text = capsys.readouterr().out
    assert "usage: slo-guard gate [-h] [--wait DURATION] [--strict] NAMESPACE/NAME [NAMESPACE/NAME ...]" in text
    assert "needs only `get` on servicelevelobjectives, and no Prometheus" in text
    assert "default None" not in text


def test_the_command_list_names_gate_with_its_exit_codes(wide_help: None, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    listed = " ".join(capsys.readouterr().out.split())
    assert "gate read SLOs' gates from the cluster (exit 0 all open, 1 any closed, 2 missing SLO/bad input)" in listed


def test_every_argument_that_is_not_namespace_slash_name_is_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["gate", "checkout", "shop/ok", "Shop/Checkout", "shop/a/b"]) == 2
    assert capsys.readouterr().err == (
        "slo-guard: error: 'checkout' is not NAMESPACE/NAME (e.g. shop/checkout-availability)\n"
        "slo-guard: error: 'Shop/Checkout' is not NAMESPACE/NAME (e.g. shop/checkout-availability)\n"
        "slo-guard: error: 'shop/a/b' is not NAMESPACE/NAME (e.g. shop/checkout-availability)\n"
    )


def test_a_bad_wait_duration_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["gate", KEY, "--wait", "10 minutes"])
    assert exited.value.code == 2
    error = capsys.readouterr().err
    assert error.startswith("slo-guard gate: error: argument --wait: invalid duration '10 minutes'")
    assert error.count("\n") == 1


def test_on_a_terminal_waiting_updates_one_progress_line_and_clears_it(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    cluster.statuses = [CLOSED, CLOSED, CLOSED, OPEN]
    terminal = Terminal()
    monkeypatch.setattr("sys.stdout", terminal)
    assert main(["gate", KEY, "--wait", "10m"]) == 0
    progress = f"{CLEAR}waiting for {KEY}: 0s of 10m"
    assert terminal.getvalue() == (
        f"{CLOSED_LINE}{progress}{progress}{progress}{CLEAR}{KEY}: open: healthy, +12.0% left\n"
    )


def test_on_a_terminal_a_timeout_clears_the_progress_line_before_the_final_line(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    terminal = Terminal()
    monkeypatch.setattr("sys.stdout", terminal)
    assert main(["gate", KEY, "--wait", "1s"]) == 1
    *_, last_progress, final = terminal.getvalue().split(CLEAR)
    assert last_progress.startswith(f"waiting for {KEY}: ")
    assert final == f"timed out after 1s: {KEY} closed\n"


def test_without_a_terminal_only_changes_are_printed(cluster: Cluster, capsys: pytest.CaptureFixture[str]) -> None:
    cluster.statuses = [CLOSED, CLOSED, CLOSED, OPEN]
    assert main(["gate", KEY, "--wait", "10m"]) == 0
    assert capsys.readouterr().out == f"{CLOSED_LINE}{KEY}: open: healthy, +12.0% left\n"


def test_strict_waits_for_data_and_refuses_an_slo_that_never_gets_any(
    cluster: Cluster, capsys: pytest.CaptureFixture[str]
) -> None:
    cluster.statuses = [{}]
    assert main(["gate", KEY, "--strict", "--wait", "1s"]) == 2
    seen = capsys.readouterr()
    assert seen.out == (f"{KEY}: unknown: no usable data (not evaluated yet)\ntimed out after 1s: {KEY} unknown\n")
    assert seen.err == f"slo-guard: error: {KEY} is Unknown (not evaluated yet) and --strict requires data\n"


def test_a_refused_first_read_exits_2_at_once_with_the_api_servers_answer(
    cluster: Cluster, capsys: pytest.CaptureFixture[str]
) -> None:
    forbidden = 'Kubernetes API answered 403: servicelevelobjectives.sloguard.io "checkout-availability" is forbidden'
    cluster.statuses = [KubernetesUnavailable(forbidden)]
    assert main(["gate", KEY, "--wait", "10m"]) == 2
    assert capsys.readouterr() == ("", f"slo-guard: error: {forbidden}\n")


def test_an_outage_while_waiting_is_one_warning_and_the_wait_goes_on(
    cluster: Cluster, capsys: pytest.CaptureFixture[str]
) -> None:
    down = KubernetesUnavailable("Kubernetes API is unreachable")
    cluster.statuses = [CLOSED, down, down, down, OPEN]
    assert main(["gate", KEY, "--wait", "10m"]) == 0
    seen = capsys.readouterr()
    assert seen.out == f"{CLOSED_LINE}{KEY}: open: healthy, +12.0% left\n"
    assert seen.err == "slo-guard: warning: Kubernetes API is unreachable; trying again\n"


def test_on_a_terminal_without_wait_there_is_no_progress_line(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    terminal = Terminal()
    monkeypatch.setattr("sys.stdout", terminal)
    assert main(["gate", KEY]) == 1
    assert terminal.getvalue() == CLOSED_LINE
