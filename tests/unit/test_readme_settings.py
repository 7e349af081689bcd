"""The README's settings table is the operator's reference: it lists every flag of `slo-guard run`."""

from __future__ import annotations

from pathlib import Path

from slo_guard.config import OPERATOR_SETTINGS, PROMETHEUS_SETTINGS

README = Path(__file__).resolve().parents[2] / "README.md"


def test_every_run_setting_is_in_the_readme_with_its_env_var() -> None:
    rows = [line for line in README.read_text(encoding="utf-8").splitlines() if line.startswith("| `--")]
    documented = {row.split("|")[1].strip(" `"): row.split("|")[2].strip(" `") for row in rows}
    for setting in (*PROMETHEUS_SETTINGS, *OPERATOR_SETTINGS):
        assert documented.get(setting.flag) == setting.env, f"{setting.flag} ({setting.env}) missing from the README"
