"""Options shared by every suite."""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--real-cluster",
        action="store_true",
        default=False,
        help="run the end-to-end scenarios against the cluster in KUBECONFIG (through `kubectl proxy`)",
    )


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Print the end-to-end reaction times the e2e suite measured (figures, not assertions)."""
    from tests.e2e.conftest import EVALUATION_INTERVAL, LATENCIES

    if LATENCIES:
        terminalreporter.section("slo-guard: budget exhausted in Prometheus -> spec.paused: true")
        for scenario, seconds in LATENCIES:
            terminalreporter.write_line(
                f"{scenario}: {seconds:.2f} s (evaluation interval {EVALUATION_INTERVAL:.0f} s)"
            )
