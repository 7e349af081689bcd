"""Crash consistency: `slo-guard run` is SIGKILLed at each step of an action, and a restarted one converges.

For Pause and Scale, acting and undoing, the operator dies (1) after deciding but before the target PATCH lands,
(2) after patching the target but before writing the status, (3) after writing the status. Whatever the step, the
Deployment ends right: exactly one accepted PATCH per decision (no double pause, no lost resume), replicas
restored, and no `sloguard.io/` annotation or hold label left behind.

The module scrapes two services of its own: an SLO on `failing` is exhausted from its first pass, and switching it to
`healthy` (a spec change) makes the budget recover at once, so no scenario waits a whole SLO window.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest
from tests.e2e.conftest import World, wait_for
from tests.e2e.scenario import (
    ACT_TIMEOUT,
    FAILING,
    HEALTHY,
    SLO_API,
    SLO_KIND,
    annotations,
    deploy,
    deployment,
    prometheus_shows_exhausted,
    slo,
    slo_status,
)
from tests.support.emulator_log import RequestRecord
from tests.support.exporter import SyntheticService
from tests.support.kube import USER_AGENT, EmulatorClient

pytestmark = [pytest.mark.e2e, pytest.mark.prometheus]

TARGET = "web"
SLO_NAME = "guard"
CONVERGE_TIMEOUT = 90
"""Seconds; generous, since failed writes may open the Kubernetes circuit breaker (30 s) on a loaded machine."""
FAULTS = 1000
"""Enough failures to last until the operator is killed."""
PASSES_AFTER_RESTART = 3


@dataclass(frozen=True)
class Case:
    """A policy action and what its writes look like on the Deployment."""

    policy: dict[str, Any]
    replicas: int
    held: dict[str, Any]
    """The spec fields the action sets."""
    released: dict[str, Any]
    """The spec fields undoing it sets."""
    held_state: str
    """`status.targets[].state` while the action holds."""


PAUSE = Case(
    {"mode": "Enforce", "action": "Pause", "resumeAbove": 0.05},
    replicas=1,
    held={"paused": True},
    released={"paused": False},
    held_state="Paused",
)
SCALE = Case(
    {"mode": "Enforce", "action": "Scale", "scaleTo": 2, "resumeAbove": 0.05},
    replicas=5,
    held={"replicas": 2},
    released={"replicas": 5},
    held_state="Scaled",
)
CASES = pytest.mark.parametrize("case", [PAUSE, SCALE], ids=["pause", "scale"])


@dataclass(frozen=True)
class Sources:
    healthy: SyntheticService
    failing: SyntheticService


@pytest.fixture(scope="module")
def sources(world: World) -> Iterator[Sources]:
    world.need_emulator()
    with SyntheticService(HEALTHY) as healthy, SyntheticService(FAILING) as failing, _scraped(world, healthy, failing):
        wait_for(
            lambda: prometheus_shows_exhausted(world, failing) and world.prometheus.query(_traffic(healthy)),
            timeout=ACT_TIMEOUT,
            what="Prometheus scraping this module's services",
        )
        yield Sources(healthy=healthy, failing=failing)


@pytest.fixture
def namespace(world: World, request: pytest.FixtureRequest) -> Iterator[str]:
    """The scenario's own namespace; its SLO is deleted afterwards (releasing what it holds), then the namespace."""
    step = request.node.originalname.removeprefix("test_killed_")
    name = re.sub(r"[^a-z0-9]+", "-", f"crash-{step}-{request.node.callspec.id}")
    yield name
    world.need_emulator().clear_faults()
    for item in world.objects(SLO_API, SLO_KIND, name):
        world.kube.delete_object(SLO_API, SLO_KIND, item["metadata"]["name"], namespace=name)
    wait_for(lambda: not world.objects(SLO_API, SLO_KIND, name), timeout=ACT_TIMEOUT, what="SLOs deleted")
    world.kube.delete_object("v1", "Namespace", name)


@contextmanager
def _scraped(world: World, *services: SyntheticService) -> Iterator[None]:
    targets = [service.target for service in services]
    world.prometheus.scrape_targets.extend(targets)
    world.prometheus.reload()
    try:
        yield
    finally:
        for target in targets:
            world.prometheus.scrape_targets.remove(target)
        world.prometheus.reload()


def _traffic(service: SyntheticService) -> str:
    return f'sum(rate(http_requests_total{{job="synthetic",instance="{service.target}"}}[1m])) > 0'


def guard(world: World, namespace: str, case: Case, source: SyntheticService) -> None:
    deploy(world, namespace, TARGET, replicas=case.replicas)
    target = [{"kind": "Deployment", "name": TARGET}]
    world.kube.create_object(slo(SLO_NAME, namespace, source, targets=target, policy=case.policy))


def switch_source(world: World, namespace: str, source: SyntheticService) -> None:
    """A spec change: the SLO now reads the other service, so its budget is spent or recovered at the next pass."""
    indicator = slo(SLO_NAME, namespace, source, targets=[])["spec"]["indicator"]
    world.kube.patch_object(SLO_API, SLO_KIND, SLO_NAME, {"spec": {"indicator": indicator}}, namespace=namespace)


def restart(world: World) -> None:
    """SIGKILL, disarm every fault, start again: the new process knows only what the cluster shows."""
    world.operator.kill()
    try:
        world.need_emulator().clear_faults()
    finally:
        world.operator.start()


def fail_target_writes(emulator: EmulatorClient, namespace: str) -> None:
    emulator.fail_next(status=500, verb="patch", resource="deployments", namespace=namespace, name=TARGET, count=FAULTS)


def fail_status_writes(emulator: EmulatorClient, namespace: str) -> None:
    emulator.fail_next(
        status=500,
        verb="patch",
        resource="servicelevelobjectives",
        namespace=namespace,
        name=SLO_NAME,
        subresource="status",
        count=FAULTS,
    )


def target_calls(emulator: EmulatorClient, namespace: str) -> list[RequestRecord]:
    """What the operator sent about the Deployment itself (not its /scale), oldest first."""
    records = emulator.requests(resource="deployments", namespace=namespace, name=TARGET, subresource=None)
    return [record for record in records if record.user_agent != USER_AGENT]


def patches(emulator: EmulatorClient, namespace: str, *, sets: dict[str, Any], status: int) -> list[RequestRecord]:
    """Target PATCHes answered with `status` that set the given spec fields."""
    return [
        record
        for record in target_calls(emulator, namespace)
        if record.verb == "patch"
        and record.status == status
        and all((record.body.get("spec") or {}).get(key) == value for key, value in sets.items())
    ]


def accepted_spec_changes(emulator: EmulatorClient, namespace: str) -> list[dict[str, Any]]:
    return [
        dict(record.body.get("spec") or {})
        for record in target_calls(emulator, namespace)
        if record.verb == "patch" and record.status == 200
    ]


def is_held(world: World, namespace: str, case: Case) -> bool:
    spec = deployment(world, namespace, TARGET)["spec"]
    return all(spec.get(key) == value for key, value in case.held.items())


def is_released(world: World, namespace: str, case: Case) -> bool:
    spec = deployment(world, namespace, TARGET)["spec"]
    return all(spec.get(key) == value for key, value in case.released.items())


def wait_target_state(world: World, namespace: str, state: str) -> None:
    def reported() -> bool:
        targets = slo_status(world, namespace, SLO_NAME).get("targets") or [{}]
        return bool(targets[0].get("state") == state)

    wait_for(reported, timeout=CONVERGE_TIMEOUT, what=f"target {state} in the status")


def restart_and_idle(world: World, namespace: str) -> list[RequestRecord]:
    """Restart, let the new process read the target a few times, and return what it sent about it meanwhile."""
    emulator = world.need_emulator()
    before = max((record.seq for record in target_calls(emulator, namespace)), default=-1)
    restart(world)

    def since_restart() -> list[RequestRecord]:
        return [record for record in target_calls(emulator, namespace) if record.seq > before]

    wait_for(
        lambda: sum(record.verb == "get" for record in since_restart()) >= PASSES_AFTER_RESTART,
        timeout=CONVERGE_TIMEOUT,
        what=f"{PASSES_AFTER_RESTART} passes of the restarted operator",
    )
    return since_restart()


def assert_released_cleanly(world: World, namespace: str, case: Case) -> None:
    body = deployment(world, namespace, TARGET)
    assert is_released(world, namespace, case)
    assert body["spec"]["replicas"] == case.replicas, "replicas as before the action"
    leftovers = [key for key in annotations(body) if key.startswith("sloguard.io/")]
    assert not leftovers, f"orphaned annotations {leftovers}"
    assert "sloguard.io/held" not in (body["metadata"].get("labels") or {})


@CASES
def test_killed_before_the_target_write_lands(world: World, sources: Sources, namespace: str, case: Case) -> None:
    emulator = world.need_emulator()
    fail_target_writes(emulator, namespace)
    guard(world, namespace, case, sources.failing)
    wait_for(
        lambda: patches(emulator, namespace, sets=case.held, status=500),
        timeout=CONVERGE_TIMEOUT,
        what="the action decided and its PATCH failing",
    )
    restart(world)
    wait_target_state(world, namespace, case.held_state)
    assert is_held(world, namespace, case)

    fail_target_writes(emulator, namespace)
    switch_source(world, namespace, sources.healthy)
    wait_for(
        lambda: patches(emulator, namespace, sets=case.released, status=500),
        timeout=CONVERGE_TIMEOUT,
        what="the undo decided and its PATCH failing",
    )
    restart(world)
    wait_target_state(world, namespace, "Untouched")

    assert_released_cleanly(world, namespace, case)
    assert accepted_spec_changes(emulator, namespace) == [case.held, case.released], "one PATCH per decision"


@CASES
def test_killed_after_the_target_write_before_the_status(
    world: World, sources: Sources, namespace: str, case: Case
) -> None:
    emulator = world.need_emulator()
    fail_status_writes(emulator, namespace)
    guard(world, namespace, case, sources.failing)
    wait_for(lambda: is_held(world, namespace, case), timeout=CONVERGE_TIMEOUT, what="the action applied")
    restart(world)
    wait_target_state(world, namespace, case.held_state)

    fail_status_writes(emulator, namespace)
    switch_source(world, namespace, sources.healthy)
    wait_for(lambda: is_released(world, namespace, case), timeout=CONVERGE_TIMEOUT, what="the action undone")
    restart(world)
    wait_target_state(world, namespace, "Untouched")

    assert_released_cleanly(world, namespace, case)
    assert accepted_spec_changes(emulator, namespace) == [case.held, case.released], "one PATCH per decision"


@CASES
def test_killed_after_the_status_write(world: World, sources: Sources, namespace: str, case: Case) -> None:
    emulator = world.need_emulator()
    guard(world, namespace, case, sources.failing)
    wait_target_state(world, namespace, case.held_state)
    assert slo_status(world, namespace, SLO_NAME)["actions"][-1]["action"] == case.policy["action"]
    after_act = restart_and_idle(world, namespace)
    assert [record.verb for record in after_act if record.verb != "get"] == [], "the restart wrote nothing"
    assert is_held(world, namespace, case)

    switch_source(world, namespace, sources.healthy)
    wait_target_state(world, namespace, "Untouched")
    after_undo = restart_and_idle(world, namespace)

    assert [record.verb for record in after_undo if record.verb != "get"] == [], "the restart wrote nothing"
    assert_released_cleanly(world, namespace, case)
    assert accepted_spec_changes(emulator, namespace) == [case.held, case.released], "one PATCH per decision"
