"""`kubectl slo` as people run it: the real `kubectl-slo` console script (and once through kubectl itself) against an
emulated API server, reached through KUBECONFIG.

The statuses are the ones the operator writes (built with its own `build_status`), PATCHed to the status
subresource, so no operator or Prometheus has to run: every command but `override` only reads.
"""

from __future__ import annotations

import json
import os
import pty
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.e2e.conftest import answers, emulator_on, wait_for
from tests.support.kube import EmulatorClient, KubeClient, deployment_manifest
from tests.support.prometheus import free_port

from slo_guard.domain.evaluation_types import AlertStatus, Evaluation, State, UnknownReason
from slo_guard.domain.model import Severity
from slo_guard.domain.policy import OVERRIDE_REASON, OVERRIDE_UNTIL
from slo_guard.service.status import ActionRecord, TargetReport, build_status

pytestmark = pytest.mark.e2e

API_VERSION = "sloguard.io/v1alpha1"
KIND = "ServiceLevelObjective"
SCRIPT = Path(sys.executable).with_name("kubectl-slo")
NOW = datetime(2026, 11, 1, tzinfo=UTC)
ANSI = re.compile(r"\x1b\[[0-9;]*m")
TIERS = (
    AlertStatus(Severity.PAGE, 3600, 300, 14.4, firing=True),
    AlertStatus(Severity.PAGE, 21600, 1800, 6.0, firing=True),
    AlertStatus(Severity.TICKET, 86400, 7200, 3.0, firing=False),
    AlertStatus(Severity.TICKET, 259200, 21600, 1.0, firing=False),
)
RATES = {300: 16.1, 3600: 15.2, 1800: 8.0, 21600: 7.3, 7200: 3.5, 86400: 3.1, 259200: 1.2}
OPENS = (
    "opens with more than 5% of the budget left and no page tier firing"
    " (sloguard.io/override-until on a target exempts that target, not this gate)"
)


def status(
    state: State,
    remaining: float | None,
    target_state: str,
    *,
    alerts: tuple[AlertStatus, ...] = (),
    time_to_exhaustion: float | None = None,
    actions: tuple[ActionRecord, ...] = (),
) -> Any:
    unknown = UnknownReason.NO_DATA if state is State.UNKNOWN else None
    message = "no samples for http_requests_total" if unknown else f"{state.value} in test"
    evaluation = Evaluation(
        state,
        unknown,
        message,
        NOW,
        sli=None if unknown else 0.99849,
        budget_remaining=remaining,
        burn_rates=None if unknown else RATES,
        alerts=alerts,
        time_to_exhaustion=time_to_exhaustion,
    )
    target = TargetReport(kind="Deployment", name="checkout", state=target_state, reason=target_state, message="")
    return build_status(previous={}, generation=1, evaluation=evaluation, targets=[target], actions=actions, now=NOW)


TIMELINE = (
    ActionRecord(NOW - timedelta(hours=3), "Deployment", "checkout", "Pause", "Applied", "BudgetExhausted", "paused"),
    ActionRecord(NOW - timedelta(hours=2), "Deployment", "checkout", "Resume", "Applied", "OverrideActive", "released"),
    ActionRecord(NOW - timedelta(hours=1), "Deployment", "checkout", "Pause", "Applied", "BudgetExhausted", "again"),
)
EXHAUSTED = status(State.EXHAUSTED, -0.506, "Paused", alerts=TIERS, time_to_exhaustion=0.0, actions=TIMELINE)
HEALTHY = status(State.HEALTHY, 0.512, "Untouched", time_to_exhaustion=3_570_000.0)
NO_DATA = status(State.UNKNOWN, None, "Paused")
BURNING = status(
    State.BURNING, 0.21, "Untouched", alerts=(replace(TIERS[2], firing=True),), time_to_exhaustion=99_000.0
)
SLOS = {
    ("shop", "checkout"): EXHAUSTED,
    ("shop", "cart"): HEALTHY,
    ("shop", "search"): NO_DATA,
    ("shop", "fresh"): None,
    ("pay", "payments"): BURNING,
}
"""(namespace, name) -> the status written to it; `fresh` was never evaluated."""
LIST_SHOP = [
    "NAME       STATE            BUDGET   FIRING       EXHAUSTION   HELD",
    "cart       Healthy          +51.2%   -            41d7h        -",
    "checkout   Exhausted        -50.6%   page 1h/5m   0s           Deployment/checkout",
    "fresh      -                n/a      -            -            -",
    "search     Unknown/NoData   n/a      -            -            Deployment/checkout",
]


@dataclass
class Cluster:
    kube: KubeClient
    emulator: EmulatorClient
    env: dict[str, str]
    kubeconfig: Path

    def slo(self, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(SCRIPT), *args], env=env or self.env, capture_output=True, text=True, timeout=60, check=False
        )

    def annotations(self, name: str) -> dict[str, str]:
        deployment = self.kube.get_object("apps/v1", "Deployment", name, namespace="shop")
        return dict(deployment["metadata"].get("annotations") or {})


def slo(namespace: str, name: str) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "objective": 99.9,
            "window": "30d",
            "indicator": {"ratio": {"errors": 'http_requests_total{code=~"5.."}', "total": "http_requests_total"}},
            "targets": [{"kind": "Deployment", "name": "checkout"}],
            "policy": {"mode": "Enforce", "action": "Pause", "resumeAbove": 0.05},
        },
    }


def write_kubeconfig(path: Path, server: str) -> Path:
    """The current context in namespace shop; `payments` in namespace pay, on the same server."""
    contexts = [
        {"name": "lab", "context": {"cluster": "lab", "user": "lab", "namespace": "shop"}},
        {"name": "payments", "context": {"cluster": "lab", "user": "lab", "namespace": "pay"}},
    ]
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "lab", "cluster": {"server": server}}],
        "users": [{"name": "lab", "user": {"token": "emulator"}}],
        "contexts": contexts,
        "current-context": "lab",
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def base_env() -> dict[str, str]:
    # Not in a pod, no colour preference from the machine running the tests.
    skip = {"KUBERNETES_SERVICE_HOST", "KUBECONFIG", "NO_COLOR"}
    return {key: value for key, value in os.environ.items() if key not in skip}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    assert SCRIPT.exists(), f"{SCRIPT} is missing: install the package (make, or pip install -e .)"
    workdir = tmp_path_factory.mktemp("kubectl-slo")
    port = free_port()
    emulator = emulator_on(port, workdir / "emulator.log")
    try:
        kube = KubeClient(f"http://127.0.0.1:{port}")
        wait_for(lambda: answers(kube), timeout=30, what="the emulator")
        for namespace in ("shop", "pay"):
            kube.ensure_namespace(namespace)
        kube.create_object(deployment_manifest("checkout", namespace="shop"))
        for (namespace, name), value in SLOS.items():
            kube.create_object(slo(namespace, name))
            if value is not None:
                kube.patch_object(API_VERSION, KIND, name, {"status": value}, namespace=namespace, subresource="status")
        kubeconfig = write_kubeconfig(workdir / "kubeconfig", kube.base_url)
        yield Cluster(kube, EmulatorClient(kube.base_url), {**base_env(), "KUBECONFIG": str(kubeconfig)}, kubeconfig)
    finally:
        emulator.terminate()
        emulator.wait(timeout=20)


def on_a_terminal(command: list[str], env: dict[str, str]) -> str:
    """What a person sees: stdout on a pseudo-terminal (which turns each \\n into \\r\\n)."""
    controller, terminal = pty.openpty()
    try:
        process = subprocess.Popen(command, env=env, stdout=terminal, stderr=subprocess.PIPE)
        os.close(terminal)
        chunks = []
        while True:
            try:
                chunk = os.read(controller, 4096)
            except OSError:  # EIO: the writer closed the terminal
                break
            if not chunk:
                break
            chunks.append(chunk)
        assert process.wait(timeout=30) == 0
    finally:
        os.close(controller)
    return b"".join(chunks).decode().replace("\r\n", "\n")


# --- list


def test_list_piped_is_a_plain_table_of_the_context_namespace_sorted_by_name(cluster: Cluster) -> None:
    result = cluster.slo("list")
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout.splitlines() == LIST_SHOP
    assert "\x1b" not in result.stdout


def test_list_all_namespaces_adds_the_namespace_column_sorted_by_namespace_then_name(cluster: Cluster) -> None:
    lines = cluster.slo("list", "-A").stdout.splitlines()
    assert lines[0].split() == ["NAMESPACE", "NAME", "STATE", "BUDGET", "FIRING", "EXHAUSTION", "HELD"]
    assert [line.split()[:2] for line in lines[1:]] == [
        ["pay", "payments"],
        ["shop", "cart"],
        ["shop", "checkout"],
        ["shop", "fresh"],
        ["shop", "search"],
    ]
    assert lines[1].split()[2:] == ["Burning", "+21.0%", "ticket", "1d/2h", "1d3h", "-"]


def test_list_on_a_terminal_draws_the_budget_bar_in_the_state_colour(cluster: Cluster) -> None:
    shown = on_a_terminal([str(SCRIPT), "list"], cluster.env)
    assert "\x1b[31m[..........] -50.6%\x1b[0m" in shown
    assert "\x1b[32m[#####.....] +51.2%\x1b[0m" in shown
    assert "\x1b[31mpage 1h/5m\x1b[0m" in shown
    assert ANSI.sub("", shown).splitlines()[1].split() == [
        "cart",
        "Healthy",
        "[#####.....]",
        "+51.2%",
        "-",
        "41d7h",
        "-",
    ]


def test_no_color_keeps_the_bar_and_drops_the_colour(cluster: Cluster) -> None:
    shown = on_a_terminal([str(SCRIPT), "list"], {**cluster.env, "NO_COLOR": "1"})
    assert "\x1b" not in shown
    assert "cart       Healthy          [#####.....] +51.2%   -" in shown


def test_kubectl_finds_the_plugin_on_path(cluster: Cluster) -> None:
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl is not installed")
    env = {**cluster.env, "PATH": f"{SCRIPT.parent}{os.pathsep}{cluster.env.get('PATH', '')}"}
    result = subprocess.run(
        ["kubectl", "slo", "list", "-n", "shop"], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout.splitlines() == LIST_SHOP


def test_context_chooses_the_context_and_its_namespace(cluster: Cluster) -> None:
    result = cluster.slo("list", "--context", "payments")
    assert result.stdout.splitlines()[1].split()[:2] == ["payments", "Burning"]
    assert len(result.stdout.splitlines()) == 2


def test_list_json_has_one_item_per_slo_with_the_same_keys(cluster: Cluster) -> None:
    result = cluster.slo("list", "-o", "json")
    items = json.loads(result.stdout)["items"]
    assert [item["name"] for item in items] == ["cart", "checkout", "fresh", "search"]
    assert len({tuple(item) for item in items}) == 1
    checkout = items[1]
    assert checkout["errorBudget"] == {"remaining": -0.506, "display": "-50.6%"}
    assert checkout["firing"] == {"severity": "page", "longWindow": "1h", "shortWindow": "5m"}
    assert checkout["held"] == [{"kind": "Deployment", "name": "checkout", "state": "Paused"}]
    assert checkout["timeToExhaustion"] == 0


def test_an_empty_namespace_says_so_on_stderr_like_kubectl(cluster: Cluster) -> None:
    result = cluster.slo("list", "-n", "empty")
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "No resources found in empty namespace.\n")


# --- describe


def test_describe_shows_every_tier_the_targets_and_the_timeline_oldest_first(cluster: Cluster) -> None:
    result = cluster.slo("describe", "checkout")
    assert (result.returncode, result.stderr) == (0, "")
    lines = result.stdout.splitlines()
    assert lines[:3] == ["Name:       checkout", "Namespace:  shop", "Objective:  99.9% over 30d"]
    assert "Budget:     -50.6% left" in lines
    tiers = lines.index("Tiers:")
    assert lines[tiers + 1 : tiers + 6] == [
        "  SEVERITY   LONG   BURN    SHORT   BURN    FACTOR   FIRING",
        "  page       1h     15.2x   5m      16.1x   14.4x    yes",
        "  page       6h     7.3x    30m     8x      6x       yes",
        "  ticket     1d     3.1x    2h      3.5x    3x       no",
        "  ticket     3d     1.2x    6h      7.3x    1x       no",
    ]
    assert "  Deployment/checkout   Paused   2026-11-01T00:00:00Z   Paused" in lines
    actions = lines.index("Actions:")
    assert [line.split()[:3] for line in lines[actions + 2 :]] == [
        ["2026-10-31T21:00:00Z", "Pause", "Deployment/checkout"],
        ["2026-10-31T22:00:00Z", "Resume", "Deployment/checkout"],
        ["2026-10-31T23:00:00Z", "Pause", "Deployment/checkout"],
    ]


def test_describe_yaml_is_the_same_document(cluster: Cluster) -> None:
    document = yaml.safe_load(cluster.slo("-n", "pay", "describe", "payments", "-o", "yaml").stdout)
    assert (document["namespace"], document["name"], document["state"]) == ("pay", "payments", "Burning")
    assert document["tiers"] == [
        {
            "severity": "ticket",
            "longWindow": "1d",
            "longBurnRate": 3.1,
            "shortWindow": "2h",
            "shortBurnRate": 3.5,
            "factor": 3.0,
            "firing": True,
        }
    ]
    assert document["policy"]["resumeAbove"] == 0.05


def test_describe_of_a_missing_slo_fails_in_one_line_like_kubectl(cluster: Cluster) -> None:
    result = cluster.slo("describe", "nope")
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == 'error: servicelevelobjectives.sloguard.io "nope" not found\n'


def test_the_read_commands_only_get_and_list(cluster: Cluster) -> None:
    cluster.emulator.clear_requests()
    cluster.slo("list", "-A")
    cluster.slo("describe", "checkout")
    cluster.slo("gate", "checkout")
    sent = [record for record in cluster.emulator.requests() if record.user_agent.startswith("kubectl-slo/")]
    assert {(record.verb, record.resource) for record in sent} == {
        ("list", "servicelevelobjectives"),
        ("get", "servicelevelobjectives"),
    }


# --- override


def test_override_sets_until_and_reason_on_the_target_and_says_so(cluster: Cluster) -> None:
    before = datetime.now(UTC)
    result = cluster.slo("override", "deploy/checkout", "--for", "2h", "--reason", "hotfix INC-42")
    assert (result.returncode, result.stderr) == (0, "")
    annotations = cluster.annotations("checkout")
    until = annotations[OVERRIDE_UNTIL]
    assert result.stdout == f"deployment.apps/checkout overridden until {until} (hotfix INC-42)\n"
    assert annotations[OVERRIDE_REASON] == "hotfix INC-42"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", until)
    expiry = datetime.fromisoformat(until)
    assert before + timedelta(hours=2) - timedelta(seconds=1) <= expiry <= datetime.now(UTC) + timedelta(hours=2)
    (patch,) = cluster.emulator.writes_to("deployments", namespace="shop", name="checkout")[-1:]
    assert (patch.verb, patch.content_type) == ("patch", "application/merge-patch+json")
    assert patch.body == {"metadata": {"annotations": {OVERRIDE_UNTIL: until, OVERRIDE_REASON: "hotfix INC-42"}}}


def test_an_override_above_the_ceiling_exits_2_and_writes_nothing(cluster: Cluster) -> None:
    cluster.emulator.clear_requests()
    result = cluster.slo("override", "Deployment/checkout", "--for", "48h", "--reason", "x")
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == "error: --for 2d is longer than the ceiling of 1d (--max)\n"
    assert cluster.slo("override", "deploy/checkout", "--for", "48h", "--reason", "x", "--max", "3d").returncode == 0
    assert len(cluster.emulator.writes_to("deployments")) == 1


def test_overriding_a_missing_workload_or_an_unserved_kind_fails_in_one_line(cluster: Cluster) -> None:
    missing = cluster.slo("override", "deploy/nope", "--for", "1h", "--reason", "x")
    assert (missing.returncode, missing.stderr) == (1, 'error: deployments.apps "nope" not found\n')
    unserved = cluster.slo("override", "ro/checkout", "--for", "1h", "--reason", "x")
    assert (unserved.returncode, unserved.stderr) == (1, 'error: the server doesn\'t have a resource type "rollouts"\n')


# --- gate


def test_gate_answers_as_slo_guard_gate_does_for_names_in_the_namespace_or_elsewhere(cluster: Cluster) -> None:
    result = cluster.slo("gate", "checkout", "pay/payments")
    reference = subprocess.run(
        [sys.executable, "-m", "slo_guard", "gate", "shop/checkout", "pay/payments"],
        env=cluster.env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (result.returncode, result.stdout, result.stderr) == (
        reference.returncode,
        reference.stdout,
        reference.stderr,
    )
    assert result.returncode == 1
    assert result.stdout.splitlines() == [
        f"shop/checkout: closed: error budget exhausted, -50.6% left; {OPENS}",
        "pay/payments: open: burning, +21.0% left",
    ]


def test_gate_json_is_the_gate_apis_answer_per_slo_with_the_same_exit_code(cluster: Cluster) -> None:
    result = cluster.slo("gate", "cart", "search", "-o", "json")
    assert result.returncode == 0
    items = json.loads(result.stdout)["items"]
    assert items[0] == {
        "open": True,
        "slo": "shop/cart",
        "state": "Healthy",
        "reason": "WithinBudget",
        "message": "healthy, +51.2% left",
        "errorBudget": {"remaining": 0.512, "display": "+51.2%"},
        "evaluatedAt": "2026-11-01T00:00:00Z",
    }
    assert (items[1]["open"], items[1]["state"], items[1]["reason"]) == (True, "Unknown", "UnknownOpen")
    assert "shop/search is Unknown (NoData: no samples for http_requests_total)" in result.stderr
    assert cluster.slo("gate", "checkout", "-o", "yaml").returncode == 1


def test_gate_strict_refuses_unknown_with_exit_2(cluster: Cluster) -> None:
    result = cluster.slo("gate", "--strict", "fresh")
    assert result.returncode == 2
    assert result.stderr == "error: shop/fresh is Unknown (not evaluated yet) and --strict requires data\n"


def test_gate_on_a_missing_slo_exits_2_naming_it(cluster: Cluster) -> None:
    result = cluster.slo("gate", "cart", "nope")
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == 'error: servicelevelobjectives.sloguard.io "nope" not found\n'


def test_gate_wait_gives_up_at_the_deadline_with_exit_1(cluster: Cluster) -> None:
    result = cluster.slo("gate", "checkout", "--wait", "1s")
    assert result.returncode == 1
    assert result.stdout.splitlines()[-1] == "timed out after 1s: shop/checkout closed"


# --- failures


def test_without_credentials_it_fails_in_one_line(cluster: Cluster, tmp_path: Path) -> None:
    result = cluster.slo("list", env={**base_env(), "KUBECONFIG": str(tmp_path / "none")})
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr.startswith(f"error: no Kubernetes credentials: no kubeconfig at {tmp_path}/none")
    assert result.stderr.count("\n") == 1


def test_an_unreachable_api_server_fails_in_one_line(cluster: Cluster, tmp_path: Path) -> None:
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", f"http://127.0.0.1:{free_port()}")
    result = cluster.slo("describe", "checkout", env={**base_env(), "KUBECONFIG": str(kubeconfig)})
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr.startswith("error: Kubernetes API is unreachable: ")
    assert result.stderr.count("\n") == 1


def test_a_bad_flag_fails_in_one_line_with_exit_2(cluster: Cluster) -> None:
    result = cluster.slo("list", "--bogus")
    assert (result.returncode, result.stdout, result.stderr) == (2, "", "error: unrecognized arguments: --bogus\n")
