"""A GitOps controller reverting slo-guard's pause while the budget is still spent.

The controller is simulated the way Argo CD's self-heal behaves: whenever it finds the Deployment paused it sets
`spec.paused: false`, as an update with its own fieldManager. slo-guard must pause again, but back off exponentially
instead of fighting every evaluation, and say who reverted it (Events on the SLO and the Deployment, the `Contested`
condition). A human's own pause is never undone: test_operator.py covers that.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import pytest
from tests.e2e.conftest import World, wait_for
from tests.e2e.scenario import (
    ACT_TIMEOUT,
    CONVERGE_TIMEOUT,
    FAILING,
    HEALTHY,
    SLO_KIND,
    annotations_of,
    condition,
    delete_slos,
    deploy,
    deployment,
    is_paused,
    one_target,
    repeating,
    slo,
    slo_status,
    switch_source,
)
from tests.support.kube import PATCH_TYPES

pytestmark = [pytest.mark.e2e, pytest.mark.prometheus]

NAMESPACE = "e2e-gitops"
TARGET = "storefront"
SLO_NAME = "storefront"
REVERTER = "argocd-controller"
REVERT_EVERY = 0.5
"""Seconds between the simulated controller's looks at the Deployment."""
REASSERTIONS = 4
"""Re-assertions to watch; with a 1 s interval the back-off spaces them 2, 4 and 8 s apart."""


class Reverter:
    """Sets `spec.paused: false` whenever it finds the Deployment paused, as a self-healing GitOps sync does."""

    def __init__(self, world: World, *, manager: str) -> None:
        self._world = world
        self._manager = manager
        self.reverts = 0

    @contextmanager
    def running(self) -> Iterator[Reverter]:
        with repeating(self._look, every=REVERT_EVERY, name="reverter"):
            yield self

    def _look(self) -> None:
        if is_paused(self._world, NAMESPACE, TARGET):
            self._revert()
            self.reverts += 1

    def _revert(self) -> None:
        body: dict[str, Any] = {"spec": {"paused": False}}
        if self._world.emulator is not None:
            # The emulator keeps no managedFields (docs/emulator.md): write the entry a real API server records.
            body["metadata"] = {"managedFields": [self._managed_fields_entry()]}
        kube = self._world.kube
        kube.request(
            "PATCH",
            kube.path("apps/v1", "Deployment", namespace=NAMESPACE, name=TARGET),
            body=body,
            params={"fieldManager": self._manager},
            content_type=PATCH_TYPES["merge"],
        )

    def _managed_fields_entry(self) -> dict[str, Any]:
        return {
            "manager": self._manager,
            "operation": "Update",
            "apiVersion": "apps/v1",
            "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "fieldsType": "FieldsV1",
            "fieldsV1": {"f:spec": {"f:paused": {}}},
        }


@pytest.fixture
def namespace(world: World) -> Iterator[str]:
    yield NAMESPACE
    delete_slos(world, NAMESPACE)


def reassertions(world: World) -> int:
    return int(annotations_of(deployment(world, NAMESPACE, TARGET)).get("sloguard.io/reassertions") or 0)


def events(world: World, kind: str, reason: str) -> list[str]:
    """Messages of the Events with that reason about objects of that kind, in the scenario's namespace."""
    return [
        event["message"]
        for event in world.objects("v1", "Event", NAMESPACE)
        if event["involvedObject"]["kind"] == kind and event["reason"] == reason
    ]


def test_a_gitops_revert_is_reasserted_with_backoff_and_the_reverter_is_named(world: World, namespace: str) -> None:
    failing, healthy = world.take_service(FAILING), world.take_service(HEALTHY)
    deploy(world, namespace, TARGET)
    world.kube.create_object(slo(SLO_NAME, namespace, failing, targets=one_target(TARGET)))
    wait_for(lambda: is_paused(world, namespace, TARGET), timeout=ACT_TIMEOUT, what="paused")

    started = time.monotonic()
    with Reverter(world, manager=REVERTER).running() as reverter:
        wait_for(
            lambda: reassertions(world) >= REASSERTIONS,
            timeout=CONVERGE_TIMEOUT,
            what=f"{REASSERTIONS} re-assertions",
        )
        elapsed = time.monotonic() - started
        count = reassertions(world)
    # Re-assertion k comes at least 2 + 4 + ... + 2**(k-1) = 2**k - 2 intervals after the first one.
    assert count <= math.log2(elapsed + 2) + 1, f"{count} re-assertions in {elapsed:.1f} s: a fight loop"
    assert reverter.reverts >= REASSERTIONS

    # With the controller gone, the back-off ends with the pause back in place, for good.
    wait_for(lambda: is_paused(world, namespace, TARGET), timeout=CONVERGE_TIMEOUT, what="paused again")
    final = reassertions(world)
    assert annotations_of(deployment(world, namespace, TARGET))["sloguard.io/reverted-by"] == REVERTER
    reasserted = events(world, "Deployment", "PauseReasserted")
    assert len(reasserted) == final, "one Event per re-assertion"
    assert all(f"reverted by {REVERTER}" in message for message in reasserted)
    assert len(events(world, SLO_KIND, "PauseReasserted")) == final
    assert len(events(world, "Deployment", "PauseReverted")) <= final, "one Event per revert left standing"
    contested = wait_for(
        lambda: (
            (c := condition(slo_status(world, namespace, SLO_NAME), "Contested")).get("reason") == "Reasserted" and c
        ),
        timeout=CONVERGE_TIMEOUT,
        what="Contested: Reasserted",
    )
    assert contested["status"] == "True"
    assert f"spec.paused reverted by {REVERTER}; re-applied {final} times" in contested["message"]

    # The budget recovers: the hold ends and its contest is forgotten with it.
    switch_source(world, namespace, SLO_NAME, healthy)
    wait_for(lambda: not is_paused(world, namespace, TARGET), timeout=CONVERGE_TIMEOUT, what="resumed")
    assert not [key for key in annotations_of(deployment(world, namespace, TARGET)) if key.startswith("sloguard.io/")]
    wait_for(
        lambda: condition(slo_status(world, namespace, SLO_NAME), "Contested").get("status") == "False",
        timeout=CONVERGE_TIMEOUT,
        what="Contested: False",
    )
