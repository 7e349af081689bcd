"""`slo-guard rules`: what it prints loads in promtool and in prometheus-operator's shape."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml
from tests.support.prometheus import prometheus_bin

from slo_guard.cli import main

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "examples").glob("*.yaml"))


@pytest.mark.prometheus
def test_rule_file_for_the_examples_passes_promtool(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["rules", *map(str, EXAMPLES)]) == 0
    path = tmp_path / "rules.yaml"
    path.write_text(capsys.readouterr().out)
    result = subprocess.run(
        [str(prometheus_bin("promtool")), "check", "rules", str(path)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    groups = yaml.safe_load(path.read_text())["groups"]
    assert {group["name"] for group in groups} == {
        "sloguard-shop-checkout-availability",
        "sloguard-shop-checkout-latency",
        "sloguard-shop-search-availability",
    }


def test_prometheusrule_format_is_a_prometheus_operator_object(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["rules", "--format", "prometheusrule", "--namespace", "observability", *map(str, EXAMPLES)]) == 0
    document = yaml.safe_load(capsys.readouterr().out)
    assert document["apiVersion"] == "monitoring.coreos.com/v1"
    assert document["kind"] == "PrometheusRule"
    assert document["metadata"]["namespace"] == "observability"
    alerts = [rule["alert"] for group in document["spec"]["groups"] for rule in group["rules"] if "alert" in rule]
    assert "SLOGuardErrorBudgetBurn" in alerts


def test_bad_slo_file_is_one_line_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(EXAMPLES[0].read_text().replace("window: 30d", "window: soon"))
    assert main(["rules", str(bad)]) == 2
    [line] = capsys.readouterr().err.splitlines()
    assert str(bad) in line
    assert "spec.window" in line
