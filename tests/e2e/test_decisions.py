"""Decisions that must hold exactly when the operator is needed most, through `slo-guard run` on the emulator.

An override during an outage, two SLOs scaling one Deployment, a hold whose evidence was tampered with, a spec
edited while a pass waits on Prometheus (held by a fault proxy), and an operator started without kopf's peering
resource. A deletion racing a target write is pinned down in tests/unit/service/test_reconcile.py, where the write
can be held in flight.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import yaml
from tests.e2e.conftest import REPO, PrivateClusters, World, wait_for
from tests.e2e.scenario import (
    ACT_TIMEOUT,
    FAILING,
    RECOVER_TIMEOUT,
    SLO_API,
    SLO_KIND,
    annotations_of,
    deploy,
    deployment,
    event_reasons,
    guard,
    is_paused,
    one_target,
    slo,
    slo_status,
    switch_source,
    target_state,
    wait_target_state,
)
from tests.support.exporter import Traffic
from tests.support.faults import FaultProxy

pytestmark = [pytest.mark.e2e, pytest.mark.prometheus]

HELD = "sloguard.io/held"
ORIGINAL_REPLICAS = "sloguard.io/original-replicas"
SCALED_BY = "sloguard.io/scaled-by"
IDLE = Traffic(rps=0)
PEERING_CRDS = REPO / "manifests" / "kopf-peering" / "kopfpeerings.yaml"


def _replicas(world: World, namespace: str, name: str) -> int:
    return int(deployment(world, namespace, name)["spec"]["replicas"])


def _annotate(world: World, namespace: str, name: str, annotations: dict[str, Any]) -> None:
    patch = {"metadata": {"annotations": annotations}}
    world.kube.patch_object("apps/v1", "Deployment", name, patch, namespace=namespace)


def test_an_override_releases_a_pause_while_the_data_is_unknown(world: World) -> None:
    namespace = "e2e-override-unknown"
    guard(world, namespace, "checkout", world.take_service(FAILING))
    wait_for(lambda: is_paused(world, namespace, "checkout"), timeout=ACT_TIMEOUT, what="checkout paused")
    # A crash-looping service exports nothing: the SLO's data is gone, and the pause is held.
    switch_source(world, namespace, "checkout", world.take_service(IDLE))
    wait_for(
        lambda: slo_status(world, namespace, "checkout").get("state") == "Unknown",
        timeout=ACT_TIMEOUT,
        what="checkout Unknown",
    )
    assert is_paused(world, namespace, "checkout"), "missing data holds the pause"

    until = (datetime.now(UTC) + timedelta(hours=1)).replace(microsecond=0)
    stamp = until.isoformat().replace("+00:00", "Z")
    overrides = {"sloguard.io/override-until": stamp, "sloguard.io/override-reason": "P0 fix INC-42"}
    _annotate(world, namespace, "checkout", overrides)

    wait_for(lambda: not is_paused(world, namespace, "checkout"), timeout=ACT_TIMEOUT, what="checkout resumed")
    status = wait_target_state(world, namespace, "checkout", "Overridden")
    assert status["state"] == "Unknown"
    last = status["actions"][-1]
    assert (last["action"], last["reason"]) == ("Resume", "OverrideActive")
    assert stamp in last["message"]
    assert "P0 fix INC-42" in last["message"]
    assert "OverrideActive" in event_reasons(world, namespace, "Deployment")
    assert HELD not in (deployment(world, namespace, "checkout")["metadata"].get("labels") or {})


def test_a_malformed_override_is_reported_once_and_ignored(world: World) -> None:
    namespace = "e2e-override-garbled"
    guard(world, namespace, "cart", world.take_service(FAILING))
    wait_for(lambda: is_paused(world, namespace, "cart"), timeout=ACT_TIMEOUT, what="cart paused")
    _annotate(world, namespace, "cart", {"sloguard.io/override-until": "tomorrow"})
    status = wait_for(
        lambda: (
            "override-until='tomorrow'" in str(slo_status(world, namespace, "cart").get("targets"))
            and slo_status(world, namespace, "cart")
        ),
        timeout=ACT_TIMEOUT,
        what="the garbled override in the target's status",
    )
    assert target_state(status) == "Paused"
    assert is_paused(world, namespace, "cart")
    wait_for(
        lambda: "InvalidOverride" in event_reasons(world, namespace, "Deployment"),
        timeout=ACT_TIMEOUT,
        what="an InvalidOverride Event",
    )
    passes_later = status["evaluatedAt"]
    wait_for(
        lambda: slo_status(world, namespace, "cart").get("evaluatedAt") != passes_later or None,
        timeout=ACT_TIMEOUT,
        what="another status write",
    )
    assert event_reasons(world, namespace, "Deployment").count("InvalidOverride") == 1


def test_with_two_scale_holders_a_revert_is_scaled_back_to_the_first_holders_count(world: World) -> None:
    namespace = "e2e-two-scalers"
    service = world.take_service(FAILING)
    deploy(world, namespace, "search", replicas=5)
    for name, scale_to in (("search-a", 2), ("search-b", 3)):
        policy = {"mode": "Enforce", "action": "Scale", "scaleTo": scale_to, "resumeAbove": 0.05}
        world.kube.create_object(slo(name, namespace, service, targets=one_target("search"), policy=policy))
        wait_for(
            lambda name=name: name in annotations_of(deployment(world, namespace, "search")).get(SCALED_BY, ""),
            timeout=ACT_TIMEOUT,
            what=f"{name} holding search",
        )
    assert _replicas(world, namespace, "search") == 2, "the first holder's scaleTo sets the count"

    world.kube.patch_object("apps/v1", "Deployment", "search", {"spec": {"replicas": 5}}, namespace=namespace)
    wait_for(lambda: _replicas(world, namespace, "search") == 2, timeout=ACT_TIMEOUT, what="search scaled back to 2")
    reasons = event_reasons(world, namespace, "Deployment")
    assert "ScaleReasserted" in reasons
    for name in ("search-a", "search-b"):
        assert target_state(slo_status(world, namespace, name)) in {"Scaled", "Contested"}


def test_a_lost_original_replicas_is_refused_until_a_human_sets_the_replicas(world: World) -> None:
    namespace = "e2e-lost-original"
    service = world.take_service(FAILING)
    policy = {"mode": "Enforce", "action": "Scale", "scaleTo": 1, "resumeAbove": 0.05}
    guard(world, namespace, "catalog", service, policy=policy, replicas=4)
    wait_for(lambda: _replicas(world, namespace, "catalog") == 1, timeout=ACT_TIMEOUT, what="catalog scaled to 1")
    _annotate(world, namespace, "catalog", {ORIGINAL_REPLICAS: None})

    service.set(error_ratio=0.0)
    status = wait_target_state(world, namespace, "catalog", "Refused", timeout=RECOVER_TIMEOUT)
    assert status["targets"][0]["reason"] == "OriginalReplicasUnknown"
    held = deployment(world, namespace, "catalog")
    assert held["spec"]["replicas"] == 1, "never a guessed count"
    assert held["metadata"]["labels"].get(HELD) == "true", "the evidence stays"
    assert annotations_of(held)[SCALED_BY] == "catalog"
    assert "OriginalReplicasUnknown" in event_reasons(world, namespace, "Deployment")

    world.kube.patch_object("apps/v1", "Deployment", "catalog", {"spec": {"replicas": 3}}, namespace=namespace)
    wait_for(
        lambda: HELD not in (deployment(world, namespace, "catalog")["metadata"].get("labels") or {}),
        timeout=ACT_TIMEOUT,
        what="the hold released",
    )
    released = deployment(world, namespace, "catalog")
    assert released["spec"]["replicas"] == 3, "the human's count stands"
    assert SCALED_BY not in annotations_of(released)
    assert target_state(wait_target_state(world, namespace, "catalog", "Untouched")) == "Untouched"


def test_without_kopfs_peering_resource_the_operator_says_so_and_restarts_once_it_is_installed(
    world: World, private_clusters: PrivateClusters
) -> None:
    with private_clusters.cluster("no-peering", watched_namespace=None, manifests=[], kopf_peering=False) as cluster:
        operator = cluster.operator("no-peering")
        operator.start()
        warning = wait_for(
            lambda: next((e for e in operator.log_entries() if "ClusterKopfPeering" in e.get("message", "")), None),
            timeout=30,
            what="a warning naming the missing ClusterKopfPeering",
        )
        assert warning["level"] == "WARNING"
        assert "--standalone" in warning["message"]
        assert "manifests/kopf-peering" in warning["message"]
        _, text = wait_for(lambda: (r := operator.readiness())[0] == 503 and r, timeout=10, what="/readyz 503")
        assert "ClusterKopfPeering" in text

        for crd in yaml.safe_load_all(PEERING_CRDS.read_text()):
            cluster.kube.create_object(crd)
        wait_for(lambda: operator.exit_code() is not None, timeout=30, what="the operator to stop for a restart")
        assert operator.exit_code() == 1
        assert any("installed now" in e.get("message", "") for e in operator.log_entries())


def test_a_target_dropped_from_the_spec_while_a_pass_waits_on_prometheus_is_released(
    world: World, private_clusters: PrivateClusters
) -> None:
    namespace = "e2e-dropped-target"
    service = world.take_service(FAILING)
    with (
        FaultProxy(world.prometheus.url) as proxy,
        private_clusters.cluster("dropped-target", watched_namespace=None, manifests=[]) as cluster,
    ):
        # After the shared flags, so these win: Prometheus behind the proxy, and no timeout while it is held.
        operator = cluster.operator(
            "dropped-target", "--standalone", "--prometheus", proxy.url, "--prometheus-timeout", "30"
        )
        operator.start()
        for name in ("front", "back"):
            deploy(cluster, namespace, name)
        targets = [{"kind": "Deployment", "name": "front"}, {"kind": "Deployment", "name": "back"}]
        cluster.kube.create_object(slo("shop", namespace, service, targets=targets))
        for name in ("front", "back"):
            wait_for(lambda name=name: is_paused(cluster, namespace, name), timeout=ACT_TIMEOUT, what=f"{name} paused")

        proxy.hold()
        wait_for(lambda: proxy.in_flight > 0, timeout=ACT_TIMEOUT, what="a pass waiting on Prometheus")
        patch = {"spec": {"targets": [{"kind": "Deployment", "name": "front"}]}}
        cluster.kube.patch_object(SLO_API, SLO_KIND, "shop", patch, namespace=namespace)
        # Time for kopf's watch to swap the body under the waiting pass: what made the old code keep `back` held.
        # The assertions below hold whenever the edit lands.
        time.sleep(1)
        proxy.release()

        wait_for(lambda: not is_paused(cluster, namespace, "back"), timeout=ACT_TIMEOUT, what="back released")
        assert HELD not in (deployment(cluster, namespace, "back")["metadata"].get("labels") or {})
        assert is_paused(cluster, namespace, "front"), "the target still named stays held"
        wait_for(
            lambda: slo_status(cluster, namespace, "shop").get("observedGeneration") == 2,
            timeout=ACT_TIMEOUT,
            what="the status speaking for the new spec",
        )
