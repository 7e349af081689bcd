"""Fixtures for the emulator's own tests: a fresh emulator per test, served from its own thread."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.support.emulator import KubeEmulator, running_emulator
from tests.support.kube import KubeClient, write_kubeconfig

WIDGETS_CRD = Path(__file__).with_name("widgets-crd.yaml")


@pytest.fixture
def emulator() -> Iterator[KubeEmulator]:
    with running_emulator(crds=[WIDGETS_CRD]) as emulator:
        yield emulator


@pytest.fixture
def kube(emulator: KubeEmulator) -> KubeClient:
    return KubeClient(str(emulator.url))


@pytest.fixture
def kubeconfig(emulator: KubeEmulator, tmp_path: Path) -> Path:
    return write_kubeconfig(tmp_path / "kubeconfig", str(emulator.url))
