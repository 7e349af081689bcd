"""The gate API as Argo Rollouts analysis and Flagger call it, against the running operator: open, closed while the
policy holds, open again on recovery; answered from the operator's memory, not by asking Prometheus."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from tests.e2e.conftest import World, wait_for
from tests.e2e.scenario import (
    ACT_TIMEOUT,
    Sources,
    delete_namespace,
    guard,
    is_paused,
    matching_samples,
    metric_families,
    namespace_for,
    own_sources,
    switch_source,
    wait_healthy,
)

pytestmark = [pytest.mark.e2e, pytest.mark.prometheus]


@pytest.fixture(scope="module")
def sources(world: World) -> Iterator[Sources]:
    with own_sources(world) as sources:
        yield sources


@pytest.fixture
def namespace(world: World, request: pytest.FixtureRequest) -> Iterator[str]:
    name = namespace_for(request, "gate")
    world.kube.ensure_namespace(name)
    yield name
    delete_namespace(world, name)


def call(url: str, payload: dict[str, Any] | None = None) -> tuple[int, str]:
    data = None if payload is None else json.dumps(payload).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310 (the local operator)
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def slo_gate(world: World, namespace: str, name: str) -> dict[str, Any]:
    status, body = call(f"{world.operator.gate_url}/namespaces/{namespace}/servicelevelobjectives/{name}")
    assert status == 200, body
    answer: dict[str, Any] = json.loads(body)
    return answer


def flagger(world: World, namespace: str, canary: str) -> tuple[int, str]:
    payload = {"name": canary, "namespace": namespace, "phase": "Progressing", "checksum": "1", "metadata": {}}
    return call(f"{world.operator.gate_url}/flagger", payload)


def test_both_endpoints_go_open_closed_open_with_the_policy(world: World, sources: Sources, namespace: str) -> None:
    guard(world, namespace, "checkout", sources.healthy)
    wait_healthy(world, namespace, "checkout")
    answer = wait_for(
        lambda: (found := slo_gate(world, namespace, "checkout"))["state"] == "Healthy" and found,
        timeout=ACT_TIMEOUT,
        what="the gate to show the first pass",
    )
    assert (answer["open"], answer["reason"], answer["slo"]) == (True, "WithinBudget", f"{namespace}/checkout")
    assert flagger(world, namespace, "checkout")[0] == 200

    switch_source(world, namespace, "checkout", sources.failing)
    wait_for(lambda: is_paused(world, namespace, "checkout"), timeout=ACT_TIMEOUT, what="checkout paused")
    answer = slo_gate(world, namespace, "checkout")
    assert (answer["open"], answer["state"], answer["reason"]) == (False, "Exhausted", "BudgetExhausted")
    assert answer["errorBudget"]["remaining"] < 0
    status, body = flagger(world, namespace, "checkout")
    assert status == 403
    assert body.startswith(f"closed: canary {namespace}/checkout is held by {namespace}/checkout: error budget")

    switch_source(world, namespace, "checkout", sources.healthy)
    wait_for(lambda: not is_paused(world, namespace, "checkout"), timeout=ACT_TIMEOUT, what="checkout resumed")
    answer = wait_for(
        lambda: (found := slo_gate(world, namespace, "checkout"))["open"] and found,
        timeout=ACT_TIMEOUT,
        what="the gate to open",
    )
    assert answer["state"] == "Healthy"
    assert flagger(world, namespace, "checkout")[0] == 200

    codes = {
        (sample.labels["endpoint"], sample.labels["code"])
        for sample in matching_samples(metric_families(world.operator), "slo_guard_gate_requests_total")
    }
    assert {("slo", "200"), ("flagger", "200"), ("flagger", "403")} <= codes


def test_an_slo_the_operator_does_not_know_is_404_on_both_endpoints(world: World, namespace: str) -> None:
    status, body = call(f"{world.operator.gate_url}/namespaces/{namespace}/servicelevelobjectives/nope")
    assert (status, json.loads(body)["message"]) == (404, f"no ServiceLevelObjective {namespace}/nope")
    payload = {"name": "web", "namespace": namespace, "metadata": {"slos": "nope"}}
    assert call(f"{world.operator.gate_url}/flagger", payload) == (
        404,
        f"no ServiceLevelObjective {namespace}/nope (named in metadata.slos)\n",
    )
