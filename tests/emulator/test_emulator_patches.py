"""Rule 4: merge, JSON and strategic merge patches, optimistic concurrency, PUT."""

from __future__ import annotations

from typing import Any

import pytest
from tests.support.kube import ApiStatusError, KubeClient, deployment_manifest

WIDGET = ("example.test/v1", "Widget")
DEPLOYMENT = ("apps/v1", "Deployment")


def widget(name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "example.test/v1", "kind": "Widget", "metadata": {"name": name}, "spec": spec}


def test_merge_patch_merges_objects_replaces_lists_and_deletes_nulls(kube: KubeClient) -> None:
    kube.create_object(widget("gizmo", size=1, colour="red", tags=["a", "b"], limits={"cpu": 1, "memory": 2}))
    patch = {"spec": {"colour": None, "tags": ["c"], "limits": {"cpu": 3}}}
    patched = kube.patch_object(*WIDGET, "gizmo", patch, namespace="default")
    assert patched["spec"] == {"size": 1, "tags": ["c"], "limits": {"cpu": 3, "memory": 2}}


def test_json_patch_applies_when_its_tests_pass(kube: KubeClient) -> None:
    created = kube.create_object(widget("gizmo", size=1))
    version = created["metadata"]["resourceVersion"]
    ops = [
        {"op": "test", "path": "/metadata/resourceVersion", "value": version},
        {"op": "add", "path": "/metadata/finalizers", "value": ["example.test/keep"]},
        {"op": "replace", "path": "/spec/size", "value": 2},
    ]
    patched = kube.patch_object(*WIDGET, "gizmo", ops, namespace="default", patch_type="json")
    assert (patched["metadata"]["finalizers"], patched["spec"]["size"]) == (["example.test/keep"], 2)


def test_a_failed_json_patch_test_is_422_and_changes_nothing(kube: KubeClient) -> None:
    kube.create_object(widget("gizmo", size=1))
    ops = [
        {"op": "test", "path": "/metadata/resourceVersion", "value": "0"},
        {"op": "replace", "path": "/spec/size", "value": 2},
    ]
    with pytest.raises(ApiStatusError) as error:
        kube.patch_object(*WIDGET, "gizmo", ops, namespace="default", patch_type="json")
    with pytest.raises(ApiStatusError) as missing_path:
        kube.patch_object(
            *WIDGET, "gizmo", [{"op": "remove", "path": "/spec/nothing"}], namespace="default", patch_type="json"
        )
    assert (error.value.status, error.value.reason) == (422, "Invalid")
    assert missing_path.value.status == 422
    assert kube.get_object(*WIDGET, "gizmo", namespace="default")["spec"] == {"size": 1}


def test_strategic_merge_patch_is_a_merge_patch_for_built_ins_only(kube: KubeClient) -> None:
    kube.create_object(deployment_manifest("web"))
    kube.create_object(widget("gizmo", size=1))
    containers = [{"name": "app", "image": "registry.example/app:2"}]
    smp = {"spec": {"template": {"spec": {"$setElementOrder/containers": [{"name": "app"}], "containers": containers}}}}
    patched = kube.patch_object(*DEPLOYMENT, "web", smp, namespace="default", patch_type="strategic")
    with pytest.raises(ApiStatusError) as refused:
        kube.patch_object(*WIDGET, "gizmo", {"spec": {"size": 2}}, namespace="default", patch_type="strategic")
    assert patched["spec"]["template"]["spec"] == {"containers": containers}  # directives dropped, list replaced
    assert (refused.value.status, refused.value.reason) == (415, "UnsupportedMediaType")


def test_a_stale_resource_version_is_a_409_conflict(kube: KubeClient) -> None:
    created = kube.create_object(widget("gizmo", size=1))
    kube.patch_object(*WIDGET, "gizmo", {"spec": {"size": 2}}, namespace="default")
    stale = {"metadata": {"resourceVersion": created["metadata"]["resourceVersion"]}, "spec": {"size": 3}}
    with pytest.raises(ApiStatusError) as patch_error:
        kube.patch_object(*WIDGET, "gizmo", stale, namespace="default")
    with pytest.raises(ApiStatusError) as put_error:
        kube.replace_object({**created, "spec": {"size": 4}})
    status = patch_error.value.body
    assert (status["kind"], status["status"], status["reason"], status["code"]) == (
        "Status",
        "Failure",
        "Conflict",
        409,
    )
    assert status["details"] == {"name": "gizmo", "group": "example.test", "kind": "widgets"}
    assert "the object has been modified" in status["message"]
    assert put_error.value.status == 409
    assert kube.get_object(*WIDGET, "gizmo", namespace="default")["spec"] == {"size": 2}


def test_put_replaces_content_but_keeps_server_owned_metadata(kube: KubeClient) -> None:
    created = kube.create_object(widget("gizmo", size=1, colour="red"))
    replacement = {**created, "spec": {"size": 5}}
    replacement["metadata"] = {**created["metadata"], "uid": "forged", "labels": {"tier": "gold"}}
    replaced = kube.replace_object(replacement)
    assert replaced["spec"] == {"size": 5}
    assert replaced["metadata"]["uid"] == created["metadata"]["uid"]
    assert replaced["metadata"]["creationTimestamp"] == created["metadata"]["creationTimestamp"]
    assert (replaced["metadata"]["labels"], replaced["metadata"]["generation"]) == ({"tier": "gold"}, 2)


def test_put_needs_a_resource_version_for_custom_resources_only(kube: KubeClient) -> None:
    widget_body = kube.create_object(widget("gizmo", size=1))
    deployment = kube.create_object(deployment_manifest("web"))
    del widget_body["metadata"]["resourceVersion"], deployment["metadata"]["resourceVersion"]
    with pytest.raises(ApiStatusError) as error:
        kube.replace_object(widget_body)
    replaced = kube.replace_object({**deployment, "spec": {**deployment["spec"], "paused": True}})
    assert error.value.status == 422
    assert replaced["spec"]["paused"] is True


def test_server_side_apply_is_refused(kube: KubeClient) -> None:
    kube.create_object(widget("gizmo"))
    path = kube.path(*WIDGET, namespace="default", name="gizmo")
    with pytest.raises(ApiStatusError) as error:
        kube.request("PATCH", path, body={"spec": {}}, content_type="application/apply-patch+yaml")
    assert error.value.status == 415
