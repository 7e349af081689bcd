"""Two replicas with kopf peering: the one with the higher priority acts, the other stands by and takes over.

kopf peering is not leader election. A replica pauses while a live peer of higher priority exists, and replicas of
equal priority all pause ("possibly conflicting operators"), so these two run with different `--priority`. A killed
peer counts as alive until its last keep-alive plus its lifetime (kopf's default 60 s; slo-guard keeps it), so the
standby takes over up to that long after the kill. Both replicas use the default peering name and the
ClusterKopfPeering of manifests/clusterwide/, in an emulator of their own: the shared operator is standalone and
would act too.
"""

from __future__ import annotations

import time
from datetime import datetime

import pytest
from tests.conftest import summary_lines
from tests.e2e.conftest import (
    EVALUATION_INTERVAL,
    REPO,
    OperatorProcess,
    PrivateCluster,
    PrivateClusters,
    World,
    wait_for,
)
from tests.e2e.scenario import ACT_TIMEOUT, FAILING, HEALTHY, guard, is_paused, metric_families

pytestmark = [pytest.mark.e2e, pytest.mark.prometheus]

PEERING = REPO / "manifests" / "clusterwide" / "clusterkopfpeering.yaml"
PEERING_API, PEERING_KIND = "kopf.dev/v1", "ClusterKopfPeering"
PEERING_NAME = "slo-guard"
"""The default --peering-name, and the name in the shipped ClusterKopfPeering."""
PEER_LIFETIME = 60
"""Seconds; kopf's PeeringSettings.lifetime default, which slo-guard does not change."""
NAMESPACE = "e2e-peering"
ACTIVE, STANDBY = "replica-active", "replica-standby"
TAKEOVERS = summary_lines("slo-guard: standby replica takes over after the active one is killed")


def test_only_the_higher_priority_replica_acts_and_the_standby_takes_over_when_it_dies(
    world: World, private_clusters: PrivateClusters
) -> None:
    service = world.take_service(FAILING)
    with private_clusters.cluster("peering", watched_namespace=None, manifests=[PEERING]) as cluster:
        active = _start(cluster, ACTIVE, priority=10)
        standby = _start(cluster, STANDBY, priority=0)
        guard(cluster, NAMESPACE, "checkout", service)
        wait_for(lambda: is_paused(cluster, NAMESPACE, "checkout"), timeout=ACT_TIMEOUT, what="checkout paused")
        time.sleep(3 * EVALUATION_INTERVAL)
        assert _targets_acted_on(active) == ["Deployment/checkout"]
        assert _targets_acted_on(standby) == []
        assert _evaluations(active) > 0
        assert _evaluations(standby) == 0, "the standby does not even evaluate while the active replica lives"

        expires = _record_expiry(cluster, ACTIVE)
        active.kill()
        killed = time.monotonic()
        guard(cluster, NAMESPACE, "orders", service)
        wait_for(
            lambda: is_paused(cluster, NAMESPACE, "orders"),
            timeout=PEER_LIFETIME + ACT_TIMEOUT,
            what="the standby to take over and pause orders",
        )
        TAKEOVERS.append(f"active replica SIGKILLed -> standby pauses a new target: {time.monotonic() - killed:.1f} s")
        TAKEOVERS.append(f"killed peer's record expires -> standby pauses: {time.time() - expires:.1f} s")
        # The pass logs its action after the patch and its Events: the log may trail what the API server shows.
        wait_for(lambda: _targets_acted_on(standby), timeout=10, what="the standby to log its pause")
        assert _targets_acted_on(standby) == ["Deployment/orders"]
        for name in ("checkout", "orders"):
            patches = cluster.emulator.requests(verb="patch", resource="deployments", namespace=NAMESPACE, name=name)
            assert len(patches) == 1, f"{name}: exactly one pause, by one replica"


def _start(cluster: PrivateCluster, identity: str, *, priority: int) -> OperatorProcess:
    """Start a replica and wait until it has announced itself in the peering object."""
    operator = cluster.operator(identity, "--priority", str(priority))
    operator.start()
    wait_for(operator.is_ready, timeout=60, what=f"{identity} /readyz")
    wait_for(lambda: identity in _peers(cluster), timeout=60, what=f"{identity} in the peering object")
    return operator


def _peers(cluster: PrivateCluster) -> dict[str, dict[str, object]]:
    peering = cluster.get(PEERING_API, PEERING_KIND, PEERING_NAME) or {}
    return dict(peering.get("status") or {})


def _record_expiry(cluster: PrivateCluster, identity: str) -> float:
    """Unix time at which peers stop counting `identity` as alive: its last keep-alive plus its lifetime."""
    record = _peers(cluster)[identity]
    return datetime.fromisoformat(str(record["lastseen"])).timestamp() + float(str(record["lifetime"]))


def _targets_acted_on(operator: OperatorProcess) -> list[str]:
    """The targets this replica patched, from its JSON log (one entry per action taken)."""
    return [
        str(entry["target"])
        for entry in operator.log_entries()
        if entry.get("logger") == "slo_guard.reconcile" and "target" in entry
    ]


def _evaluations(operator: OperatorProcess) -> float:
    """How many evaluation passes the replica ran, from its /metrics."""
    for family in metric_families(operator):
        if family.name == "slo_guard_evaluation_duration_seconds":
            return sum(sample.value for sample in family.samples if sample.name.endswith("_count"))
    raise AssertionError("the replica exports no slo_guard_evaluation_duration_seconds")


def test_a_running_replica_stops_evaluating_while_a_higher_priority_peer_lives_and_resumes_after(
    world: World, private_clusters: PrivateClusters
) -> None:
    """kopf pauses a replica when a peer of higher priority appears (a developer's operator, say) and tells its
    handlers nothing: the scheduler reads the same peering object and pauses with it."""
    service = world.take_service(HEALTHY)
    with private_clusters.cluster("peering-pause", watched_namespace=None, manifests=[PEERING]) as cluster:
        deployed = _start(cluster, "replica-deployed", priority=0)
        guard(cluster, NAMESPACE, "cart", service)
        wait_for(lambda: _evaluations(deployed) > 0, timeout=30, what="the deployed replica evaluating")

        developer = _start(cluster, "replica-developer", priority=100)
        wait_for(lambda: _evaluations(developer) > 0, timeout=30, what="the developer's replica evaluating")
        wait_for(lambda: _evaluated_slos(deployed) == 0, timeout=15, what="the deployed replica to pause")
        paused_at = _evaluations(deployed)
        time.sleep(3 * EVALUATION_INTERVAL)
        assert _evaluations(deployed) == paused_at, "no pass while paused"

        developer.stop()
        wait_for(lambda: _evaluated_slos(deployed) == 1, timeout=30, what="the deployed replica to resume")
        wait_for(lambda: _evaluations(deployed) > paused_at, timeout=15, what="passes again")


def _evaluated_slos(operator: OperatorProcess) -> float:
    for family in metric_families(operator):
        if family.name == "slo_guard_evaluated_slos":
            return sum(sample.value for sample in family.samples)
    raise AssertionError("the replica exports no slo_guard_evaluated_slos")
