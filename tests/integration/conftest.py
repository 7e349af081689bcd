"""Fixtures for tests against a real Prometheus, and against VictoriaMetrics for tests that run on both."""

import pytest
from tests.support.datasets import dataset_prometheus, dataset_storage
from tests.support.prometheus import PrometheusServer
from tests.support.victoriametrics import VictoriaMetricsServer, dataset_victoriametrics

__all__ = ["backend", "dataset_backend", "dataset_prometheus", "dataset_storage", "dataset_victoriametrics"]

BACKENDS = ("prometheus", "victoriametrics")


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """The query API a test runs against, by name: a test using it is collected once per backend."""
    name: str = request.param
    return name


@pytest.fixture
def dataset_backend(backend: str, request: pytest.FixtureRequest) -> PrometheusServer | VictoriaMetricsServer:
    """The session's server of that backend holding tests/support/datasets.py's history."""
    server: PrometheusServer | VictoriaMetricsServer = request.getfixturevalue(f"dataset_{backend}")
    return server
