"""apps/v1 StatefulSets as a real API server serves them, and the plain 404 of a resource nobody serves."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from tests.support.emulator import KubeEmulator
from tests.support.kube import ApiStatusError, KubeClient, deployment_manifest

STATEFULSET = ("apps/v1", "StatefulSet")
ROLLOUTS_CRD = Path(__file__).resolve().parents[1] / "support" / "argo-rollouts-crd.yaml"


def statefulset(name: str, **spec: Any) -> dict[str, Any]:
    body = deployment_manifest(name)
    body["kind"] = "StatefulSet"
    body["spec"].pop("replicas")
    body["spec"].update(spec)
    return body


def test_statefulsets_are_discovered_with_status_and_scale(kube: KubeClient) -> None:
    names = {resource["name"] for resource in kube.request("GET", "/apis/apps/v1")["resources"]}
    assert {"statefulsets", "statefulsets/status", "statefulsets/scale"} <= names


def test_create_defaults_replicas_and_a_rolling_update_with_partition_zero(kube: KubeClient) -> None:
    created = kube.create_object(statefulset("db"))
    assert created["spec"]["replicas"] == 1
    assert created["spec"]["updateStrategy"] == {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}
    on_delete = kube.create_object(statefulset("cache", updateStrategy={"type": "OnDelete"}))
    assert on_delete["spec"]["updateStrategy"] == {"type": "OnDelete"}, "a strategy given is kept"


def test_a_partition_change_bumps_generation_and_an_annotation_does_not(kube: KubeClient) -> None:
    kube.create_object(statefulset("db", replicas=3))
    annotated = kube.patch_object(*STATEFULSET, "db", {"metadata": {"annotations": {"a": "b"}}}, namespace="default")
    assert annotated["metadata"]["generation"] == 1, "unlike a Deployment, annotations are not copied to pods"
    partition = {"spec": {"updateStrategy": {"rollingUpdate": {"partition": 3}}}}
    held = kube.patch_object(*STATEFULSET, "db", partition, namespace="default")
    assert held["metadata"]["generation"] == 2
    assert held["spec"]["updateStrategy"] == {"type": "RollingUpdate", "rollingUpdate": {"partition": 3}}


def test_status_is_isolated_from_the_main_resource(kube: KubeClient) -> None:
    kube.create_object(statefulset("db"))
    kube.patch_object(*STATEFULSET, "db", {"status": {"replicas": 1}}, namespace="default", subresource="status")
    kube.patch_object(*STATEFULSET, "db", {"status": {"replicas": 7}}, namespace="default")
    assert kube.get_object(*STATEFULSET, "db", namespace="default")["status"] == {"replicas": 1}


def test_scale_of_a_statefulset_sets_spec_replicas(kube: KubeClient) -> None:
    kube.create_object(statefulset("db", replicas=3))
    kube.patch_object(*STATEFULSET, "db", {"spec": {"replicas": 1}}, namespace="default", subresource="scale")
    assert kube.get_object(*STATEFULSET, "db", namespace="default")["spec"]["replicas"] == 1


def test_a_resource_nobody_serves_is_a_plain_404_unlike_a_missing_object(kube: KubeClient) -> None:
    with pytest.raises(ApiStatusError) as unserved:
        kube.request("GET", "/apis/argoproj.io/v1alpha1/namespaces/default/rollouts/web")
    assert (unserved.value.status, unserved.value.body) == (404, "404 page not found\n")
    with pytest.raises(ApiStatusError) as no_group:
        kube.request("GET", "/apis/argoproj.io/v1alpha1")
    assert (no_group.value.status, no_group.value.body) == (404, "404 page not found\n")
    with pytest.raises(ApiStatusError) as missing:
        kube.get_object(*STATEFULSET, "nothing", namespace="default")
    assert (missing.value.status, missing.value.reason) == (404, "NotFound")
    assert missing.value.body["message"] == 'statefulsets.apps "nothing" not found'


def test_the_test_rollout_crd_serves_rollouts_with_scale_and_a_boolean_paused(
    emulator: KubeEmulator, kube: KubeClient
) -> None:
    emulator.load_crd(ROLLOUTS_CRD)
    rollout = statefulset("web", replicas=2, strategy={"canary": {"steps": [{"pause": {}}]}})
    rollout.update(apiVersion="argoproj.io/v1alpha1", kind="Rollout")
    kube.create_object(rollout)
    paused = kube.patch_object(
        "argoproj.io/v1alpha1", "Rollout", "web", {"spec": {"paused": True}}, namespace="default"
    )
    assert paused["spec"]["paused"] is True
    with pytest.raises(ApiStatusError) as invalid:
        kube.patch_object("argoproj.io/v1alpha1", "Rollout", "web", {"spec": {"paused": "yes"}}, namespace="default")
    assert invalid.value.status == 422
    scale = kube.request("GET", "/apis/argoproj.io/v1alpha1/namespaces/default/rollouts/web/scale")
    assert scale["spec"] == {"replicas": 2}
