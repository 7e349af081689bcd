"""Rule 5a: the /scale subresource (autoscaling/v1 Scale) of Deployments and of CRDs that declare one."""

from __future__ import annotations

import pytest
from tests.support.kube import ApiStatusError, KubeClient, deployment_manifest

DEPLOYMENT = ("apps/v1", "Deployment")


def test_get_scale_of_a_deployment(kube: KubeClient) -> None:
    created = kube.create_object(deployment_manifest("web", replicas=3))
    scale = kube.request("GET", kube.path(*DEPLOYMENT, namespace="default", name="web", subresource="scale"))
    assert (scale["kind"], scale["apiVersion"]) == ("Scale", "autoscaling/v1")
    assert scale["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]
    assert scale["spec"] == {"replicas": 3}
    assert scale["status"] == {"replicas": 0, "selector": "app=web"}  # no controller fills status.replicas


def test_patching_scale_sets_replicas_like_a_spec_edit(kube: KubeClient) -> None:
    kube.create_object(deployment_manifest("web", replicas=3))
    scale = kube.patch_object(*DEPLOYMENT, "web", {"spec": {"replicas": 0}}, namespace="default", subresource="scale")
    deployment = kube.get_object(*DEPLOYMENT, "web", namespace="default")
    assert scale["spec"] == {"replicas": 0}
    assert (deployment["spec"]["replicas"], deployment["metadata"]["generation"]) == (0, 2)


def test_put_scale_with_a_stale_resource_version_conflicts(kube: KubeClient) -> None:
    created = kube.create_object(deployment_manifest("web", replicas=3))
    path = kube.path(*DEPLOYMENT, namespace="default", name="web", subresource="scale")
    scale = kube.request("GET", path)
    kube.request("PUT", path, body={**scale, "spec": {"replicas": 5}})
    with pytest.raises(ApiStatusError) as error:
        kube.request("PUT", path, body={**scale, "spec": {"replicas": 1}})
    assert error.value.status == 409
    assert kube.get_object(*DEPLOYMENT, "web", namespace="default")["spec"]["replicas"] == 5
    assert created["spec"]["replicas"] == 3


def test_replicas_default_to_one(kube: KubeClient) -> None:
    manifest = deployment_manifest("web")
    del manifest["spec"]["replicas"]
    assert kube.create_object(manifest)["spec"]["replicas"] == 1


def test_crd_scale_uses_the_crd_paths(kube: KubeClient) -> None:
    widget = {"apiVersion": "example.test/v1", "kind": "Widget", "metadata": {"name": "gizmo"}}
    kube.create_object({**widget, "spec": {"replicas": 2}})
    kube.patch_object(
        "example.test/v1",
        "Widget",
        "gizmo",
        {"status": {"replicas": 2, "selector": "app=gizmo"}},
        namespace="default",
        subresource="status",
    )
    scale = kube.patch_object(
        "example.test/v1", "Widget", "gizmo", {"spec": {"replicas": 4}}, namespace="default", subresource="scale"
    )
    assert (scale["spec"], scale["status"]) == ({"replicas": 4}, {"replicas": 2, "selector": "app=gizmo"})
