"""Crash consistency: `slo-guard run` is SIGKILLed at each step of an action, and a restarted one converges.

For Pause and Scale, acting and undoing, the operator dies (1) after deciding but before the target PATCH lands,
(2) after patching the target but before writing the status, (3) after writing the status. Whatever the step, the
Deployment ends right: exactly one accepted PATCH per decision (no double pause, no lost resume), replicas
restored, and no `sloguard.io/` annotation or hold label left behind.

The module scrapes two services of its own: an SLO on `failing` is exhausted from its first pass, and switching it to
`healthy` (a spec change) makes the budget recover at once, so no scenario waits a whole SLO window.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from tests.e2e.conftest import World, wait_for
from tests.e2e.scenario import (
    CONVERGE_TIMEOUT,
    Sources,
    accepted_patches,
    annotations_of,
    delete_namespace,
    deploy,
    deployment,
    fail_status_patches,
    fail_target_patches,
    namespace_for,
    one_target,
    own_sources,
    restart_operator,
    slo,
    slo_status,
    switch_source,
    target_calls,
    wait_target_state,
)
from tests.support.emulator_log import RequestRecord
from tests.support.exporter import SyntheticService
from tests.support.kube import EmulatorClient

pytestmark = [pytest.mark.e2e, pytest.mark.prometheus]

TARGET = "web"
SLO_NAME = "guard"
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


@pytest.fixture(scope="module")
def sources(world: World) -> Iterator[Sources]:
    world.need_emulator()
    with own_sources(world) as sources:
        yield sources


@pytest.fixture
def namespace(world: World, request: pytest.FixtureRequest) -> Iterator[str]:
    """The scenario's own namespace; its SLO is deleted afterwards (releasing what it holds), then the namespace."""
    name = namespace_for(request, "crash")
    yield name
    world.need_emulator().clear_faults()
    delete_namespace(world, name)


def guard(world: World, namespace: str, case: Case, source: SyntheticService) -> None:
    deploy(world, namespace, TARGET, replicas=case.replicas)
    world.kube.create_object(slo(SLO_NAME, namespace, source, targets=one_target(TARGET), policy=case.policy))


def patches(emulator: EmulatorClient, namespace: str, *, sets: dict[str, Any], status: int) -> list[RequestRecord]:
    """Target PATCHes answered with `status` that set the given spec fields."""
    return [
        record
        for record in target_calls(emulator, namespace, TARGET)
        if record.verb == "patch"
        and record.status == status
        and all((record.body.get("spec") or {}).get(key) == value for key, value in sets.items())
    ]


def accepted_spec_changes(emulator: EmulatorClient, namespace: str) -> list[dict[str, Any]]:
    return [
        dict(record.body.get("spec") or {}) for record in accepted_patches(target_calls(emulator, namespace, TARGET))
    ]


def is_held(world: World, namespace: str, case: Case) -> bool:
    spec = deployment(world, namespace, TARGET)["spec"]
    return all(spec.get(key) == value for key, value in case.held.items())


def is_released(world: World, namespace: str, case: Case) -> bool:
    spec = deployment(world, namespace, TARGET)["spec"]
    return all(spec.get(key) == value for key, value in case.released.items())


def wait_reported(world: World, namespace: str, state: str) -> None:
    """Until the status reports the target in `state`."""
    wait_target_state(world, namespace, SLO_NAME, state, timeout=CONVERGE_TIMEOUT)


def restart_and_idle(world: World, namespace: str) -> list[RequestRecord]:
    """Restart, let the new process read the target a few times, and return what it sent about it meanwhile."""
    emulator = world.need_emulator()
    before = max((record.seq for record in target_calls(emulator, namespace, TARGET)), default=-1)
    restart_operator(world)

    def since_restart() -> list[RequestRecord]:
        return [record for record in target_calls(emulator, namespace, TARGET) if record.seq > before]

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
    leftovers = [key for key in annotations_of(body) if key.startswith("sloguard.io/")]
    assert not leftovers, f"orphaned annotations {leftovers}"
    assert "sloguard.io/held" not in (body["metadata"].get("labels") or {})


@CASES
def test_killed_before_the_target_write_lands(world: World, sources: Sources, namespace: str, case: Case) -> None:
    emulator = world.need_emulator()
    fail_target_patches(emulator, namespace, TARGET, status=500, count=FAULTS)
    guard(world, namespace, case, sources.failing)
    wait_for(
        lambda: patches(emulator, namespace, sets=case.held, status=500),
        timeout=CONVERGE_TIMEOUT,
        what="the action decided and its PATCH failing",
    )
    restart_operator(world)
    wait_reported(world, namespace, case.held_state)
    assert is_held(world, namespace, case)

    fail_target_patches(emulator, namespace, TARGET, status=500, count=FAULTS)
    switch_source(world, namespace, SLO_NAME, sources.healthy)
    wait_for(
        lambda: patches(emulator, namespace, sets=case.released, status=500),
        timeout=CONVERGE_TIMEOUT,
        what="the undo decided and its PATCH failing",
    )
    restart_operator(world)
    wait_reported(world, namespace, "Untouched")

    assert_released_cleanly(world, namespace, case)
    assert accepted_spec_changes(emulator, namespace) == [case.held, case.released], "one PATCH per decision"


@CASES
def test_killed_after_the_target_write_before_the_status(
    world: World, sources: Sources, namespace: str, case: Case
) -> None:
    emulator = world.need_emulator()
    fail_status_patches(emulator, namespace, SLO_NAME, status=500, count=FAULTS)
    guard(world, namespace, case, sources.failing)
    wait_for(lambda: is_held(world, namespace, case), timeout=CONVERGE_TIMEOUT, what="the action applied")
    restart_operator(world)
    wait_reported(world, namespace, case.held_state)

    fail_status_patches(emulator, namespace, SLO_NAME, status=500, count=FAULTS)
    switch_source(world, namespace, SLO_NAME, sources.healthy)
    wait_for(lambda: is_released(world, namespace, case), timeout=CONVERGE_TIMEOUT, what="the action undone")
    restart_operator(world)
    wait_reported(world, namespace, "Untouched")

    assert_released_cleanly(world, namespace, case)
    assert accepted_spec_changes(emulator, namespace) == [case.held, case.released], "one PATCH per decision"


@CASES
def test_killed_after_the_status_write(world: World, sources: Sources, namespace: str, case: Case) -> None:
    emulator = world.need_emulator()
    guard(world, namespace, case, sources.failing)
    wait_reported(world, namespace, case.held_state)
    assert slo_status(world, namespace, SLO_NAME)["actions"][-1]["action"] == case.policy["action"]
    after_act = restart_and_idle(world, namespace)
    assert [record.verb for record in after_act if record.verb != "get"] == [], "the restart wrote nothing"
    assert is_held(world, namespace, case)

    switch_source(world, namespace, SLO_NAME, sources.healthy)
    wait_reported(world, namespace, "Untouched")
    after_undo = restart_and_idle(world, namespace)

    assert [record.verb for record in after_undo if record.verb != "get"] == [], "the restart wrote nothing"
    assert_released_cleanly(world, namespace, case)
    assert accepted_spec_changes(emulator, namespace) == [case.held, case.released], "one PATCH per decision"
