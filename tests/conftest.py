"""Options and the terminal summary shared by every suite."""

from __future__ import annotations

import pytest

SUMMARY: dict[str, list[str]] = {}
"""Terminal-summary section title -> what the suites measured under it (figures, not assertions)."""


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--real-cluster",
        action="store_true",
        default=False,
        help="run the end-to-end scenarios against the cluster in KUBECONFIG (through `kubectl proxy`)",
    )


def summary_lines(title: str) -> list[str]:
    """The lines printed under `title` when pytest ends: append what a scenario measured, one line each."""
    return SUMMARY.setdefault(title, [])


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Print what the suites measured, a section per title that got lines, in the order the titles were made."""
    # pytest loads this file as `conftest`; the suites register with the module `tests.conftest`.
    from tests.conftest import SUMMARY as registered

    for title, lines in registered.items():
        if lines:
            terminalreporter.section(title)
            for line in lines:
                terminalreporter.write_line(line)
