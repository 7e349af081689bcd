"""Rule 10: the emulator as a separate process, observed and steered through its private control API."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.support.kube import ApiStatusError, EmulatorClient, KubeClient, deployment_manifest

ROOT = Path(__file__).parents[2]
WIDGETS_CRD = Path(__file__).with_name("widgets-crd.yaml")
Running = tuple[subprocess.Popen[str], str]


@pytest.fixture
def emulator_process(tmp_path: Path) -> Iterator[Running]:
    command = [sys.executable, "-m", "tests.support.emulator", "--port", "0", "--crd", str(WIDGETS_CRD)]
    command += ["--state-dump", str(tmp_path / "state.json"), "--url-file", str(tmp_path / "url")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    url = process.stdout.readline().strip()
    yield process, url
    if process.poll() is None:
        process.kill()
        process.wait(10)


def test_the_process_prints_its_url_and_serves_the_crd(emulator_process: Running, tmp_path: Path) -> None:
    _, url = emulator_process
    kube = KubeClient(url)
    assert url.startswith("http://127.0.0.1:")
    assert (tmp_path / "url").read_text().strip() == url
    assert kube.create_object({"apiVersion": "example.test/v1", "kind": "Widget", "metadata": {"name": "w"}})


def test_the_control_api_exposes_the_log_and_faults(emulator_process: Running) -> None:
    _, url = emulator_process
    kube, control = KubeClient(url), EmulatorClient(url)
    kube.create_object(deployment_manifest("web"))
    control.fail_next(status=409, verb="patch", resource="deployments", name="web", subresource=None)
    with pytest.raises(ApiStatusError) as error:
        kube.patch_object("apps/v1", "Deployment", "web", {"spec": {"paused": True}}, namespace="default")
    kube.patch_object("apps/v1", "Deployment", "web", {"spec": {"paused": True}}, namespace="default")

    writes = control.writes_to("deployments", name="web", subresource=None)
    assert error.value.status == 409
    assert [(record.verb, record.status) for record in writes] == [("create", 201), ("patch", 409), ("patch", 200)]
    assert [r.verb for r in control.requests(resource="deployments", subresource="status")] == []
    with kube.watch("apps/v1", "Deployment") as stream:
        stream.next_event()
        assert control.drop_watches("deployments") == 1
        assert stream.next_event() is None
    control.clear_requests()
    assert control.requests() == []


def test_sigterm_writes_the_state_dump(emulator_process: Running, tmp_path: Path) -> None:
    process, url = emulator_process
    KubeClient(url).create_object(deployment_manifest("web"))
    process.terminate()
    assert process.wait(30) == 0
    state = json.loads((tmp_path / "state.json").read_text())
    deployments = [obj for obj in state["items"] if obj["kind"] == "Deployment"]
    assert [obj["metadata"]["name"] for obj in deployments] == ["web"]
    assert state["resourceVersion"] == deployments[0]["metadata"]["resourceVersion"]
