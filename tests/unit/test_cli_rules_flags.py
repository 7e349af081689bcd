"""`slo-guard run`'s recording-rule settings: mistakes are one line and exit 2, before anything starts."""

from __future__ import annotations

import pytest

from slo_guard.cli import main
from slo_guard.handlers.runtime import parse_labels


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--rules-file", "r.yaml", "--rules-prometheusrule"], "choose one place for the recording rules"),
        (["--rules-prometheusrule", "--rules-prometheusrule-labels", "role"], "expected KEY=VALUE, got 'role'"),
    ],
)
def test_conflicting_or_malformed_rule_settings_are_one_line_errors(
    flags: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", "--prometheus", "http://prometheus:9090", *flags]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert message in err


def test_prometheusrule_labels_parse_into_a_mapping() -> None:
    assert parse_labels("role=slo-guard-rules, release=kube-prometheus-stack") == {
        "role": "slo-guard-rules",
        "release": "kube-prometheus-stack",
    }
