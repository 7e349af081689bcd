"""`kubectl slo` as kubectl users type it: help everywhere, flags before or after the command, one-line errors,
and the connection chosen from the kubeconfig as kubectl chooses it. Nothing here reaches an API server."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from slo_guard.kubectl_slo import main
from slo_guard.kubectl_slo.cluster import CommandError, connect
from slo_guard.kubectl_slo.command import build_parser

COMMANDS = ["list", "describe", "override", "gate"]


@pytest.fixture
def kubeconfig(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Two contexts: the current one in namespace shop, `payments` in pay, `bare` without a namespace."""
    path = tmp_path / "kubeconfig"
    clusters = [{"name": "lab", "cluster": {"server": "http://127.0.0.1:9"}}]
    contexts = [
        {"name": "lab", "context": {"cluster": "lab", "user": "lab", "namespace": "shop"}},
        {"name": "payments", "context": {"cluster": "lab", "user": "lab", "namespace": "pay"}},
        {"name": "bare", "context": {"cluster": "lab", "user": "lab"}},
    ]
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": clusters,
        "users": [{"name": "lab", "user": {"token": "t"}}],
        "contexts": contexts,
        "current-context": "lab",
    }
    path.write_text(yaml.safe_dump(config))
    monkeypatch.setenv("KUBECONFIG", str(path))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    return path


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main([command, "--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: kubectl slo {command} ")
    assert "--context NAME" in out
    assert "-n NS, --namespace NS" in out


def test_the_plugin_has_help_listing_its_commands(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert all(f"    {command} " in out for command in COMMANDS)


@pytest.mark.parametrize(
    ("argv", "namespace", "context"),
    [
        (["-n", "shop", "list"], "shop", None),
        (["list", "-n", "shop"], "shop", None),
        (["--namespace", "a", "gate", "x", "--namespace", "b"], "b", None),
        (["--context", "lab", "describe", "x"], None, "lab"),
        (["describe", "x", "--context", "lab"], None, "lab"),
        (["list"], None, None),
    ],
)
def test_connection_flags_work_before_or_after_the_command_as_in_kubectl(
    argv: list[str], namespace: str | None, context: str | None
) -> None:
    args = build_parser().parse_args(argv)
    assert (args.namespace, args.context) == (namespace, context)


@pytest.mark.parametrize(
    ("argv", "error"),
    [
        (["list", "--bogus"], "error: unrecognized arguments: --bogus\n"),
        (["list", "-o", "xml"], "error: argument -o/--output: invalid choice: 'xml' (choose from 'json', 'yaml')\n"),
        (
            ["frob"],
            "error: argument COMMAND: invalid choice: 'frob' (choose from 'list', 'describe', 'override', 'gate')\n",
        ),
        ([], "error: the following arguments are required: COMMAND\n"),
        (["override", "deploy/checkout", "--for", "2h"], "error: the following arguments are required: --reason\n"),
        (
            ["gate", "x", "--wait", "10x"],
            "error: argument --wait: invalid duration '10x': unknown unit 'x' (use y w d h m s ms)\n",
        ),
    ],
)
def test_usage_mistakes_are_one_line_and_exit_2(
    argv: list[str], error: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    assert capsys.readouterr().err == error


@pytest.mark.parametrize(
    ("argv", "error"),
    [
        (
            ["override", "deploy/checkout", "--for", "25h", "--reason", "r"],
            "--for 1d1h is longer than the ceiling of 1d",
        ),
        (["override", "deploy/checkout", "--for", "3d", "--reason", "r", "--max", "2d"], "--for 3d is longer than"),
        (["override", "job/nightly", "--for", "1h", "--reason", "r"], "cannot override 'job'"),
        (["override", "deploy/checkout", "--for", "1h", "--reason", " "], "--reason must say why"),
    ],
)
def test_an_override_the_rules_refuse_exits_2_before_any_request(
    argv: list[str], error: str, kubeconfig: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The kubeconfig's server does not answer: reaching it would print another error.
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {error}")
    assert err.count("\n") == 1


def test_the_namespace_is_the_current_contexts(kubeconfig: Path) -> None:
    cluster = connect(None)
    try:
        assert cluster.namespace == "shop"
        assert cluster.api.client.configuration.host == "http://127.0.0.1:9"
    finally:
        cluster.close()


@pytest.mark.parametrize(("context", "namespace"), [("payments", "pay"), ("bare", "default")])
def test_context_picks_another_context_and_its_namespace_else_default(
    context: str, namespace: str, kubeconfig: Path
) -> None:
    cluster = connect(context)
    try:
        assert cluster.namespace == namespace
    finally:
        cluster.close()


def test_a_context_not_in_the_kubeconfig_is_an_error_as_in_kubectl(kubeconfig: Path) -> None:
    with pytest.raises(CommandError, match=r'^context "nope" does not exist$'):
        connect("nope")


def test_without_a_kubeconfig_or_a_pod_there_are_no_credentials(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "none"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(CommandError, match=f"^no Kubernetes credentials: no kubeconfig at {tmp_path}/none"):
        connect(None)


def test_gate_names_that_are_not_slo_names_exit_2_each_in_one_line(
    kubeconfig: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["gate", "Bad_Name", "a/b/c", "checkout"]) == 2
    assert capsys.readouterr().err == (
        "error: 'Bad_Name' is not NAME or NAMESPACE/NAME\nerror: 'a/b/c' is not NAME or NAMESPACE/NAME\n"
    )
