"""examples/gates/: valid objects and workflows that run `slo-guard gate` exactly as documented, with least privilege.

Built-in objects are checked offline against Kubernetes 1.32's schemas (kubernetes-validate, strict); the commands
are parsed by slo-guard's own argument parser, so an example cannot drift from the CLI.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from slo_guard.cli import build_parser
from slo_guard.domain.model import GROUP, PLURAL

GATES = Path(__file__).resolve().parents[2] / "examples" / "gates"
KUBERNETES_VERSION = "1.32"
SLO = "shop/checkout-availability"
TEN_MINUTES = 600
HOOK = "argocd.argoproj.io/hook"
WAVE = "argocd.argoproj.io/sync-wave"


def documents(name: str) -> list[dict[str, Any]]:
    return [item for item in yaml.safe_load_all((GATES / name).read_text(encoding="utf-8")) if item]


def by_kind(name: str) -> dict[str, dict[str, Any]]:
    found = {item["kind"]: item for item in documents(name)}
    assert len(found) == len(documents(name)), "one object of each kind"
    return found


ARGOCD = "argocd-presync-job.yaml"


@pytest.mark.parametrize("index", range(len(documents(ARGOCD))))
def test_argocd_objects_pass_strict_schema_validation(index: int) -> None:
    kubernetes_validate.validate(documents(ARGOCD)[index], KUBERNETES_VERSION, strict=True)


def test_argocd_job_runs_the_gate_on_the_slo_for_ten_minutes_before_its_deadline() -> None:
    job = by_kind(ARGOCD)["Job"]
    (container,) = job["spec"]["template"]["spec"]["containers"]
    # The image's entrypoint is `slo-guard run`: the Job must name the command.
    assert container["command"] == ["slo-guard"]
    args = build_parser().parse_args(container["args"])
    assert (args.command, args.slos, args.wait, args.strict) == ("gate", [SLO], TEN_MINUTES, False)
    assert job["spec"]["activeDeadlineSeconds"] > TEN_MINUTES
    assert job["spec"]["backoffLimit"] == 0
    assert job["metadata"]["annotations"][HOOK] == "PreSync"


def test_argocd_rbac_exists_before_the_job_and_grants_only_get_on_that_slo() -> None:
    objects = by_kind(ARGOCD)
    account, role, binding, job = (objects[kind] for kind in ("ServiceAccount", "Role", "RoleBinding", "Job"))
    namespace, name = SLO.split("/")
    assert {item["metadata"]["namespace"] for item in objects.values()} == {namespace}
    assert role["rules"] == [
        {"apiGroups": [GROUP], "resources": [PLURAL], "resourceNames": [name], "verbs": ["get"]},
    ]
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": role["metadata"]["name"],
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": account["metadata"]["name"], "namespace": namespace}
    ]
    assert job["spec"]["template"]["spec"]["serviceAccountName"] == account["metadata"]["name"]
    # Ordinary resources are applied after the PreSync phase: the Job's RBAC must be PreSync hooks, in an earlier wave.
    job_wave = int(job["metadata"]["annotations"].get(WAVE, "0"))
    for item in (account, role, binding):
        assert item["metadata"]["annotations"][HOOK] == "PreSync"
        assert int(item["metadata"]["annotations"][WAVE]) < job_wave


def test_argocd_job_meets_the_restricted_pod_security_standard() -> None:
    pod = by_kind(ARGOCD)["Job"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    context = pod["securityContext"] | container["securityContext"]
    assert context["runAsNonRoot"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert context["seccompProfile"] == {"type": "RuntimeDefault"}


GITHUB = "github-actions.yaml"


def steps() -> list[dict[str, Any]]:
    (workflow,) = documents(GITHUB)
    # YAML 1.1 reads the key `on` as true; GitHub reads it as `on`.
    assert workflow[True] == {"push": {"branches": ["main"]}}
    (job,) = workflow["jobs"].values()
    assert job["runs-on"] == "ubuntu-latest"
    found: list[dict[str, Any]] = job["steps"]
    assert all(("run" in step) != ("uses" in step) for step in found), "each step runs a command or uses an action"
    return found


def test_github_actions_gate_step_runs_the_documented_command() -> None:
    (gate,) = [step for step in steps() if "slo-guard gate" in step.get("run", "")]
    args = build_parser().parse_args(shlex.split(gate["run"])[1:])
    assert (args.command, args.slos, args.wait) == ("gate", [SLO], TEN_MINUTES)
    assert gate["timeout-minutes"] * 60 > TEN_MINUTES


def test_github_actions_installs_slo_guard_and_reads_the_kubeconfig_from_a_secret_before_the_gate() -> None:
    found = steps()
    names = [step.get("name", step.get("uses")) for step in found]
    gate = names.index("Error-budget gate")
    install = next(i for i, step in enumerate(found) if "pip install" in step.get("run", ""))
    kubeconfig = next(i for i, step in enumerate(found) if "GITHUB_ENV" in step.get("run", ""))
    assert install < gate
    assert kubeconfig < gate
    assert "KUBECONFIG=" in found[kubeconfig]["run"]
    assert list(found[kubeconfig]["env"].values()) == ["${{ secrets.KUBECONFIG }}"]
    assert names[-1] == "Deploy", "the deploy comes after the gate"


DOC = GATES.parents[1] / "docs" / "gates.md"


def test_every_gate_command_in_the_docs_parses() -> None:
    commands = [
        line.split("$ ", 1)[1] for line in DOC.read_text(encoding="utf-8").splitlines() if "$ slo-guard gate " in line
    ]
    assert len(commands) >= 4
    for command in commands:
        assert build_parser().parse_args(shlex.split(command)[1:]).command == "gate", command
