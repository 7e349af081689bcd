"""`slo-guard <command> --help` reads like the README: defaults in its units, switches as plain flags."""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest

from slo_guard.cli import build_parser, main

COMMANDS = ["evaluate", "gate", "rules", "import", "run"]


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No SLO_GUARD_* variable from the machine running the tests, and help on one line per option."""
    for name in [name for name in os.environ if name.startswith("SLO_GUARD_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("COLUMNS", "1000")
    return monkeypatch


@pytest.fixture
def help_of(clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Callable[[str], str]:
    def show(command: str) -> str:
        with pytest.raises(SystemExit) as exited:
            main([command, "--help"])
        assert exited.value.code == 0
        return capsys.readouterr().out

    return show


@pytest.mark.parametrize("command", COMMANDS)
def test_help_never_shows_a_missing_default(command: str, help_of: Callable[[str], str]) -> None:
    text = help_of(command)
    assert "default None" not in text
    assert "(env SLO_GUARD_PROMETHEUS_URL)" in text or command in {"rules", "gate", "import"}


@pytest.mark.parametrize(
    ("command", "shown"),
    [
        ("evaluate", "(env SLO_GUARD_MAX_STALENESS, default 3m)"),
        ("rules", "(env SLO_GUARD_MIN_STEP, default 30s)"),
        ("run", "(env SLO_GUARD_STATUS_HEARTBEAT, default 5m)"),
        ("run", "(env SLO_GUARD_REASSERT_BACKOFF_MAX, default 10m)"),
        ("run", "(env SLO_GUARD_PROMETHEUS_TIMEOUT, default 10)"),
    ],
)
def test_help_shows_defaults_the_way_the_readme_writes_them(
    command: str, shown: str, help_of: Callable[[str], str]
) -> None:
    assert shown in help_of(command)


def test_switches_are_plain_flags_in_the_usage(help_of: Callable[[str], str]) -> None:
    usage = help_of("run")
    assert "[--standalone]" in usage
    assert "[--rules-prometheusrule]" in usage
    assert "--standalone [" not in usage


@pytest.mark.parametrize(
    ("env", "argv", "standalone"),
    [
        (None, [], False),
        (None, ["--standalone"], True),
        ("true", [], True),
        ("false", [], False),
        ("false", ["--standalone"], True),
    ],
)
def test_standalone_comes_from_the_flag_or_the_environment(
    env: str | None, argv: list[str], standalone: bool, clean_env: pytest.MonkeyPatch
) -> None:
    if env is not None:
        clean_env.setenv("SLO_GUARD_STANDALONE", env)
    assert build_parser().parse_args(["run", *argv]).standalone is standalone


def test_a_bad_switch_value_in_the_environment_is_one_line_and_exit_2(
    clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    clean_env.setenv("SLO_GUARD_STANDALONE", "maybe")
    assert main(["run", "--prometheus", "http://prometheus:9090"]) == 2
    assert capsys.readouterr().err == "slo-guard: error: SLO_GUARD_STANDALONE: expected true or false, got 'maybe'\n"
