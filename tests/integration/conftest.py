"""Fixtures for tests against a real Prometheus."""

from tests.support.datasets import dataset_prometheus, dataset_storage

__all__ = ["dataset_prometheus", "dataset_storage"]
