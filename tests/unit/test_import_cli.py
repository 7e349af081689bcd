"""`slo-guard import`: YAML on stdout that `evaluate` reads, one line per problem on stderr, exit 0 or 2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from slo_guard.cli import load_objectives, main

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "import"
NO_TARGET = "slo-guard: note: no --target: the imported SLOs act on no workload, they only report"


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, list[str]]:
    code = main(["import", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err.splitlines()


@pytest.mark.parametrize(
    ("tool", "files", "count"),
    [
        ("sloth", ["sloth.yaml", "sloth-resource.yaml"], 4),
        ("pyrra", ["pyrra.yaml"], 3),
        ("openslo", ["openslo.yaml"], 4),
    ],
)
def test_every_printed_document_is_a_valid_slo_that_evaluate_loads(
    tool: str, files: list[str], count: int, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, out, err = run(capsys, "--from", tool, *(str(FIXTURES / name) for name in files))
    assert code == 0
    assert err[-1] == NO_TARGET
    assert all(line.startswith("slo-guard: warning: ") for line in err[:-1])
    output = tmp_path / "slos.yaml"
    output.write_text(out)
    loaded = load_objectives([output], min_step=30)
    assert len(loaded) == count
    assert out.startswith("---\n")


def test_targets_namespace_and_window_apply_to_every_slo(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(
        capsys,
        "--from=sloth",
        str(FIXTURES / "sloth.yaml"),
        "--namespace",
        "shop",
        "--target",
        "Deployment/checkout",
        "--target",
        "Rollout/checkout-canary",
        "--target",
        "Deployment/checkout",
        "--window",
        "28d",
    )
    assert code == 0
    assert NO_TARGET not in err
    for document in yaml.safe_load_all(out):
        assert document["metadata"]["namespace"] == "shop"
        assert document["spec"]["window"] == "28d"
        assert document["spec"]["targets"] == [
            {"kind": "Deployment", "name": "checkout"},
            {"kind": "Rollout", "name": "checkout-canary"},
        ]


def test_refusals_are_one_error_line_each_exit_2_and_the_rest_is_still_printed(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, err = run(capsys, "--from", "openslo", str(FIXTURES / "openslo-refused.yaml"))
    assert code == 2
    assert [document["metadata"]["name"] for document in yaml.safe_load_all(out)] == ["steady-availability"]
    errors = [line for line in err if line.startswith("slo-guard: error: ")]
    assert len(errors) == 4
    assert all(str(FIXTURES / "openslo-refused.yaml") + ": document " in line for line in errors)
    assert err == [NO_TARGET, *errors]


def test_an_unreadable_or_malformed_file_is_one_line_and_the_other_files_still_import(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    malformed = tmp_path / "malformed.yaml"
    malformed.write_text("version: prometheus/v1\nslos: [\n")
    missing = tmp_path / "missing.yaml"
    code, out, err = run(capsys, "--from", "sloth", str(missing), str(malformed), str(FIXTURES / "sloth-resource.yaml"))
    assert code == 2
    assert len(list(yaml.safe_load_all(out))) == 1
    missing_line, malformed_line = err[-2:]
    assert missing_line == f"slo-guard: error: {missing}: cannot read: No such file or directory"
    assert malformed_line.startswith(f"slo-guard: error: {malformed}: malformed YAML at line 3, column 1: ")


def test_files_with_nothing_to_import_are_an_error(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    other = tmp_path / "deployment.yaml"
    other.write_text("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\n")
    code, out, err = run(capsys, "--from", "pyrra", str(other))
    assert (code, out) == (2, "")
    assert err == [f"slo-guard: error: no Pyrra ServiceLevelObjectives (pyrra.dev/v1alpha1) in {other}"]


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--from", "nobl9"], "argument --from: invalid choice: 'nobl9'"),
        ([], "the following arguments are required: --from"),
        (["--from", "sloth", "--target", "Pod/web"], "expected KIND/NAME with KIND Deployment, StatefulSet or Rollout"),
        (["--from", "sloth", "--target", "Deployment/Web_1"], "(got 'Deployment/Web_1')"),
        (["--from", "sloth", "--target", "web"], "(got 'web')"),
        (["--from", "sloth", "--window", "30x"], "argument --window: invalid duration '30x'"),
        (["--from", "sloth", "--window", "30s"], "argument --window: must be at least 1m (got '30s')"),
        (["--from", "sloth", "--namespace", "Shop"], "argument --namespace: not a namespace name, a DNS label"),
    ],
    ids=["unknown-tool", "no-tool", "bad-kind", "bad-name", "no-slash", "bad-window", "short-window", "bad-namespace"],
)
def test_usage_mistakes_are_one_line_and_exit_2(args: list[str], needle: str, tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from slo_guard.cli import main; sys.exit(main())",
            "import",
            "x.yaml",
            *args,
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
        check=False,
        env={**os.environ, "COLUMNS": "1000"},
    )
    assert result.returncode == 2
    assert result.stdout == ""
    [line] = result.stderr.splitlines()
    assert needle in line


def test_help_names_every_option_with_its_default(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["import", "--help"])
    assert exited.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "default None" not in text
    for shown in ("--from {sloth,pyrra,openslo}", "--target KIND/NAME", "(default 30d)", "docs/import.md"):
        assert shown in text
