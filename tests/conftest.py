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
