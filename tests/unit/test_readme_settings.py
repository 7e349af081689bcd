"""The README's settings table is the operator's reference: it lists every flag of `slo-guard run`, and its
defaults are the ones `--help` shows and the ones the operator actually runs with."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from slo_guard.cli import build_parser
from slo_guard.config import OPERATOR_SETTINGS, PROMETHEUS_SETTINGS, Setting

README = Path(__file__).resolve().parents[2] / "README.md"
NO_DEFAULT = "\N{EN DASH}"


def _readme_table() -> dict[str, tuple[str, str]]:
    """Flag -> (env var, default) as the README's settings table shows them."""
    rows = [line for line in README.read_text(encoding="utf-8").splitlines() if line.startswith("| `--")]
    return {cells[1]: (cells[2], cells[3]) for cells in ([cell.strip(" `") for cell in row.split("|")] for row in rows)}


@pytest.fixture
def run_help(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> dict[str, str]:
    """Flag -> its `slo-guard run --help` entry on one line, with no SLO_GUARD_* variable set."""
    for name in [name for name in os.environ if name.startswith("SLO_GUARD_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("COLUMNS", "1000")  # no wrapping inside a default such as <prometheus>/-/reload
    with pytest.raises(SystemExit):
        build_parser().parse_args(["run", "--help"])
    entries: dict[str, list[str]] = {}
    words: list[str] = []
    for line in capsys.readouterr().out.splitlines():
        if line.startswith("  -"):
            words = entries.setdefault(line.split()[0].rstrip(","), [])
        words += line.split()
    return {flag: " ".join(text) for flag, text in entries.items()}


def test_every_run_setting_is_in_the_readme_with_its_env_var() -> None:
    documented = _readme_table()
    for setting in (*PROMETHEUS_SETTINGS, *OPERATOR_SETTINGS):
        assert documented.get(setting.flag, ("",))[0] == setting.env, f"{setting.flag} ({setting.env}) missing"


@pytest.mark.parametrize("setting", [*PROMETHEUS_SETTINGS, *OPERATOR_SETTINGS], ids=lambda setting: setting.flag)
def test_help_readme_and_the_parsed_default_agree(setting: Setting, run_help: dict[str, str]) -> None:
    _, readme_default = _readme_table()[setting.flag]
    option = run_help[setting.flag]
    parsed = getattr(build_parser().parse_args(["run"]), setting.name)
    if readme_default == NO_DEFAULT:
        assert option.endswith(f"(env {setting.env})")
        assert parsed is None
        return
    assert option.endswith(f"(env {setting.env}, default {readme_default})")
    if setting.default is None:
        # A default the operator derives (`<prometheus>/-/reload`): nothing is parsed until it is known.
        assert parsed is None
    else:
        assert parsed == setting.parse(readme_default)
