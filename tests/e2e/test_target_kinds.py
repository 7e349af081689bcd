"""StatefulSets and Argo Rollouts as targets, end to end: the same policy as for Deployments, each kind's own write.

A StatefulSet is held by raising its rolling update's partition to its replica count (and undone by restoring the
partition it had); a Rollout is paused through `spec.paused`, like `kubectl argo rollouts pause`. Recovery is a spec
change to a healthy source, so each undo happens at the next pass instead of after the window drains.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from typing import Any

import pytest
import yaml
from tests.e2e.conftest import REPO, PrivateCluster, PrivateClusters, World, wait_for
from tests.e2e.scenario import (
    ACT_TIMEOUT,
    ROLLOUTS_CRD,
    SLO_API,
    SLO_KIND,
    Cluster,
    Sources,
    annotations_of,
    delete_namespace,
    namespace_for,
    own_sources,
    slo,
    slo_status,
    switch_source,
    wait_target_state,
    workload,
    workload_manifest,
)

from slo_guard.domain.model import TARGET_API_VERSIONS

pytestmark = [pytest.mark.e2e, pytest.mark.prometheus]

STATEFULSET = "StatefulSet"
ROLLOUT = "Rollout"
KINDS = pytest.mark.parametrize("kind", [STATEFULSET, ROLLOUT])
PAUSED_BY = "sloguard.io/paused-by"
ORIGINAL_PARTITION = "sloguard.io/original-partition"
HELD = "sloguard.io/held"
PAUSE = {"mode": "Enforce", "action": "Pause", "resumeAbove": 0.05}
KOPF_PEERING = REPO / "manifests" / "overlays" / "namespaced" / "kopfpeering.yaml"
WATCHED = yaml.safe_load(KOPF_PEERING.read_text())["metadata"]["namespace"]
CANARY = {"canary": {"steps": [{"setWeight": 20}, {"pause": {}}]}}
"""A Rollout strategy with a pause step of its own, which slo-guard must never touch."""
STEP_PAUSE = {"pauseConditions": [{"reason": "CanaryPauseStep", "startTime": "2026-11-01T00:00:00Z"}]}
"""What the Argo Rollouts controller writes to status while that step holds the Rollout."""


@pytest.fixture(scope="module")
def sources(world: World) -> Iterator[Sources]:
    served = {item["name"] for item in world.kube.request("GET", "/apis")["groups"]}
    if "argoproj.io" not in served:
        world.kube.create_object(yaml.safe_load(ROLLOUTS_CRD.read_text()))
    with own_sources(world) as sources:
        yield sources


@pytest.fixture
def namespace(world: World, request: pytest.FixtureRequest) -> Iterator[str]:
    """The scenario's own namespace; its SLOs are deleted afterwards (releasing what they hold), then the namespace."""
    name = namespace_for(request, "kinds")
    world.kube.ensure_namespace(name)
    yield name
    delete_namespace(world, name)


def rolling(partition: int) -> dict[str, Any]:
    return {"type": "RollingUpdate", "rollingUpdate": {"partition": partition}}


def create(cluster: Cluster, kind: str, name: str, namespace: str, *, replicas: int) -> None:
    """A StatefulSet with partition 1, or a canary Rollout that its own pause step holds, like Argo's controller."""
    extra = {"updateStrategy": rolling(1)} if kind == STATEFULSET else {"strategy": CANARY}
    cluster.kube.create_object(workload_manifest(kind, name, namespace=namespace, replicas=replicas, **extra))
    if kind == ROLLOUT:
        api = TARGET_API_VERSIONS[kind]
        cluster.kube.patch_object(api, kind, name, {"status": STEP_PAUSE}, namespace=namespace, subresource="status")


def guard(cluster: Cluster, namespace: str, name: str, source: Any, *, kind: str, policy: dict[str, Any]) -> None:
    targets = [{"kind": kind, "name": name}]
    cluster.kube.create_object(slo(name, namespace, source, targets=targets, policy=policy))


def paused(cluster: Cluster, kind: str, namespace: str, name: str) -> bool:
    body = workload(cluster, kind, namespace, name)
    if kind == STATEFULSET:
        return bool(body["spec"]["updateStrategy"]["rollingUpdate"]["partition"] >= body["spec"]["replicas"])
    return bool(body["spec"].get("paused"))


def slo_gone(cluster: PrivateCluster, namespace: str, name: str) -> bool:
    return cluster.get(SLO_API, SLO_KIND, name, namespace) is None


def target_events(world: World, namespace: str, kind: str) -> list[dict[str, Any]]:
    return [event for event in world.objects("v1", "Event", namespace) if event["involvedObject"]["kind"] == kind]


@KINDS
def test_a_spent_budget_pauses_and_scales_and_recovery_undoes_both(
    world: World, sources: Sources, namespace: str, kind: str
) -> None:
    create(world, kind, "app", namespace, replicas=3)
    create(world, kind, "api", namespace, replicas=4)
    guard(world, namespace, "app", sources.failing, kind=kind, policy=PAUSE)
    guard(world, namespace, "api", sources.failing, kind=kind, policy={**PAUSE, "action": "Scale", "scaleTo": 1})

    wait_for(lambda: paused(world, kind, namespace, "app"), timeout=ACT_TIMEOUT, what=f"{kind} app paused")
    wait_for(
        lambda: workload(world, kind, namespace, "api")["spec"]["replicas"] == 1,
        timeout=ACT_TIMEOUT,
        what=f"{kind} api scaled to 1",
    )
    held = workload(world, kind, namespace, "app")
    assert annotations_of(held)[PAUSED_BY] == "app"
    if kind == STATEFULSET:
        assert held["spec"]["updateStrategy"] == rolling(3), "the partition holds all 3 pods on their revision"
        assert annotations_of(held)[ORIGINAL_PARTITION] == "1"
        assert "paused" not in held["spec"]
    else:
        assert held["spec"]["paused"] is True
    assert wait_target_state(world, namespace, "app", "Paused")["targets"][0]["kind"] == kind
    events = [event for event in target_events(world, namespace, kind) if event["reason"] == "Paused"]
    assert events, f"a Paused Event on the {kind}"
    assert events[0]["involvedObject"]["apiVersion"] == TARGET_API_VERSIONS[kind]

    switch_source(world, namespace, "app", sources.healthy)
    switch_source(world, namespace, "api", sources.healthy)
    wait_for(lambda: not paused(world, kind, namespace, "app"), timeout=ACT_TIMEOUT, what=f"{kind} app resumed")
    wait_for(
        lambda: workload(world, kind, namespace, "api")["spec"]["replicas"] == 4,
        timeout=ACT_TIMEOUT,
        what=f"{kind} api restored to 4",
    )
    resumed = workload(world, kind, namespace, "app")
    assert PAUSED_BY not in annotations_of(resumed)
    assert HELD not in (resumed["metadata"].get("labels") or {})
    if kind == STATEFULSET:
        assert resumed["spec"]["updateStrategy"] == rolling(1), "the partition it had before"
        assert ORIGINAL_PARTITION not in annotations_of(resumed)
    else:
        assert resumed["spec"]["paused"] is False
        assert resumed["spec"]["strategy"] == CANARY, "the strategy's own pause step is untouched"
        assert resumed["status"] == STEP_PAUSE, "status.pauseConditions are the controller's"
    status = wait_target_state(world, namespace, "app", "Untouched")
    assert [action["action"] for action in status["actions"]] == ["Pause", "Resume"]


def test_an_on_delete_statefulset_is_refused_with_a_warning_event(
    world: World, sources: Sources, namespace: str
) -> None:
    world.kube.create_object(
        workload_manifest(STATEFULSET, "db", namespace=namespace, replicas=3, updateStrategy={"type": "OnDelete"})
    )
    guard(world, namespace, "db", sources.failing, kind=STATEFULSET, policy=PAUSE)

    status = wait_target_state(world, namespace, "db", "Refused")
    assert status["targets"][0]["reason"] == "PauseUnsupported"
    assert "OnDelete" in status["targets"][0]["message"]
    events = wait_for(
        lambda: [e for e in target_events(world, namespace, STATEFULSET) if e["reason"] == "PauseUnsupported"],
        timeout=ACT_TIMEOUT,
        what="a PauseUnsupported Event on the StatefulSet",
    )
    assert events[0]["type"] == "Warning"
    assert "OnDelete" in events[0]["message"]
    untouched = workload(world, STATEFULSET, namespace, "db")
    assert untouched["spec"]["updateStrategy"] == {"type": "OnDelete"}
    assert PAUSED_BY not in annotations_of(untouched)


def test_an_autoscaler_on_a_statefulset_or_a_rollout_refuses_scale(
    world: World, sources: Sources, namespace: str
) -> None:
    for kind in (STATEFULSET, ROLLOUT):
        name = kind.lower()
        world.kube.create_object(workload_manifest(kind, name, namespace=namespace, replicas=3))
        ref = {"apiVersion": TARGET_API_VERSIONS[kind], "kind": kind, "name": name}
        world.kube.create_object(
            {
                "apiVersion": "autoscaling/v2",
                "kind": "HorizontalPodAutoscaler",
                "metadata": {"name": name, "namespace": namespace},
                "spec": {"scaleTargetRef": ref, "minReplicas": 2, "maxReplicas": 10},
            }
        )
        guard(world, namespace, name, sources.failing, kind=kind, policy={**PAUSE, "action": "Scale", "scaleTo": 1})
    for kind in (STATEFULSET, ROLLOUT):
        status = wait_target_state(world, namespace, kind.lower(), "Refused")
        assert status["targets"][0]["reason"] == "AutoscalerPresent"
        assert workload(world, kind, namespace, kind.lower())["spec"]["replicas"] == 3


def test_deleting_an_slo_restores_the_partition_of_a_statefulset_it_held(
    world: World, sources: Sources, namespace: str
) -> None:
    create(world, STATEFULSET, "db", namespace, replicas=2)
    guard(world, namespace, "db", sources.failing, kind=STATEFULSET, policy=PAUSE)
    wait_for(lambda: paused(world, STATEFULSET, namespace, "db"), timeout=ACT_TIMEOUT, what="db paused")

    world.kube.delete_object(SLO_API, SLO_KIND, "db", namespace=namespace)
    wait_for(lambda: world.get(SLO_API, SLO_KIND, "db", namespace) is None, timeout=ACT_TIMEOUT, what="SLO gone")

    released = workload(world, STATEFULSET, namespace, "db")
    assert released["spec"]["updateStrategy"] == rolling(1), "the finalizer restored the partition"
    assert ORIGINAL_PARTITION not in annotations_of(released)
    assert HELD not in (released["metadata"].get("labels") or {})


def test_without_argo_rollouts_a_rollout_target_is_missing_and_deployments_still_work(
    world: World, sources: Sources, private_clusters: PrivateClusters
) -> None:
    namespace = "shop"
    with private_clusters.cluster("no-rollouts", watched_namespace=None, manifests=[]) as cluster:
        cluster.operator("no-rollouts", "--standalone").start()
        cluster.kube.ensure_namespace(namespace)
        guard(cluster, namespace, "web", sources.failing, kind=ROLLOUT, policy=PAUSE)
        cluster.kube.create_object(workload_manifest("Deployment", "api", namespace=namespace))
        guard(cluster, namespace, "api", sources.failing, kind="Deployment", policy=PAUSE)

        status = wait_target_state(cluster, namespace, "web", "Missing")
        target = status["targets"][0]
        assert target["reason"] == "KindNotServed"
        assert "does not serve rollouts.argoproj.io/v1alpha1" in target["message"]
        assert "Argo Rollouts" in target["message"]
        wait_for(lambda: paused(cluster, "Deployment", namespace, "api"), timeout=ACT_TIMEOUT, what="api paused")
        assert slo_status(cluster, namespace, "web")["state"] == "Exhausted", "evaluated all the same"


def test_a_namespaced_run_pauses_and_releases_a_statefulset_and_a_rollout(
    world: World, sources: Sources, private_clusters: PrivateClusters
) -> None:
    # Its requests are what tests/e2e/test_rbac.py checks the namespaced Role's new grants against.
    manifests = [KOPF_PEERING, ROLLOUTS_CRD]
    with private_clusters.cluster("kinds-namespaced", watched_namespace=WATCHED, manifests=manifests) as cluster:
        cluster.operator("kinds-namespaced").start()
        for kind in (STATEFULSET, ROLLOUT):
            create(cluster, kind, kind.lower(), WATCHED, replicas=2)
            guard(cluster, WATCHED, kind.lower(), sources.failing, kind=kind, policy=PAUSE)
        for kind in (STATEFULSET, ROLLOUT):
            wait_for(partial(paused, cluster, kind, WATCHED, kind.lower()), timeout=ACT_TIMEOUT, what=f"{kind} paused")
            # The status write after the pause is one of the calls test_rbac.py checks: see it land first.
            wait_target_state(cluster, WATCHED, kind.lower(), "Paused")
            cluster.kube.delete_object(SLO_API, SLO_KIND, kind.lower(), namespace=WATCHED)
        for kind in (STATEFULSET, ROLLOUT):
            wait_for(partial(slo_gone, cluster, WATCHED, kind.lower()), timeout=ACT_TIMEOUT, what=f"{kind}'s SLO gone")
            assert not paused(cluster, kind, WATCHED, kind.lower()), f"the finalizer released the {kind}"
