"""Rule 1: metadata the API server owns (resourceVersion, uid, generation, timestamps) and deletion."""

from __future__ import annotations

import re
from typing import Any

import pytest
from tests.support.kube import ApiStatusError, KubeClient, deployment_manifest

WIDGET = ("example.test/v1", "Widget")


def widget(name: str, **metadata: Any) -> dict[str, Any]:
    return {"apiVersion": "example.test/v1", "kind": "Widget", "metadata": {"name": name, **metadata}, "spec": {}}


def test_create_stamps_server_owned_metadata(kube: KubeClient) -> None:
    created = kube.create_object({**widget("gizmo", uid="forged", generation=7), "spec": {"size": 1}})
    with pytest.raises(ApiStatusError) as versioned:
        kube.create_object(widget("other", resourceVersion="1"))
    assert versioned.value.body["message"] == "resourceVersion should not be set on objects to be created"
    metadata = created["metadata"]
    assert metadata["uid"] != "forged"
    assert re.fullmatch(r"[0-9a-f-]{36}", metadata["uid"])
    assert metadata["generation"] == 1
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", metadata["creationTimestamp"])
    assert metadata["namespace"] == "default"
    assert kube.get_object(*WIDGET, "gizmo", namespace="default") == created


def test_resource_version_is_one_counter_across_resources(kube: KubeClient) -> None:
    versions = [
        kube.create_object(widget("a"))["metadata"]["resourceVersion"],
        kube.create_object(deployment_manifest("web"))["metadata"]["resourceVersion"],
        kube.patch_object(*WIDGET, "a", {"spec": {"size": 2}}, namespace="default")["metadata"]["resourceVersion"],
    ]
    assert all(isinstance(version, str) for version in versions)
    assert [int(v) for v in versions] == sorted(int(v) for v in versions)
    assert len(set(versions)) == 3
    listed = kube.list_objects("apps/v1", "Deployment", namespace="default")
    assert listed["metadata"]["resourceVersion"] == versions[-1]


def test_generation_counts_only_changes_outside_metadata_and_status(kube: KubeClient) -> None:
    kube.create_object(widget("gizmo"))
    labelled = kube.patch_object(*WIDGET, "gizmo", {"metadata": {"labels": {"a": "b"}}}, namespace="default")
    with_status = kube.patch_object(
        *WIDGET, "gizmo", {"status": {"phase": "Ready"}}, namespace="default", subresource="status"
    )
    resized = kube.patch_object(*WIDGET, "gizmo", {"spec": {"size": 4}}, namespace="default")
    assert [obj["metadata"]["generation"] for obj in (labelled, with_status, resized)] == [1, 1, 2]
    unchanged = kube.patch_object(*WIDGET, "gizmo", {"spec": {"size": 4}}, namespace="default")
    assert unchanged["metadata"]["generation"] == 2, "a patch that changes nothing is a no-op"


def test_deployment_generation_also_counts_annotation_changes(kube: KubeClient) -> None:
    # Like the real Deployment strategy: annotations are copied to ReplicaSets, so they bump generation.
    kube.create_object(deployment_manifest("web"))
    labelled = kube.patch_object(
        "apps/v1", "Deployment", "web", {"metadata": {"labels": {"x": "y"}}}, namespace="default"
    )
    annotated = kube.patch_object(
        "apps/v1",
        "Deployment",
        "web",
        {"metadata": {"annotations": {"sloguard.io/paused-by": "slo"}}},
        namespace="default",
    )
    assert (labelled["metadata"]["generation"], annotated["metadata"]["generation"]) == (1, 2)


def test_a_write_that_changes_nothing_keeps_the_resource_version(kube: KubeClient) -> None:
    created = kube.create_object(widget("gizmo"))
    with kube.watch(*WIDGET, params={"resourceVersion": created["metadata"]["resourceVersion"]}) as stream:
        same = kube.patch_object(*WIDGET, "gizmo", {"spec": {}}, namespace="default")
        changed = kube.patch_object(*WIDGET, "gizmo", {"spec": {"size": 1}}, namespace="default")
        first_event = stream.next_event()
    assert same["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]
    assert first_event is not None
    assert first_event["object"]["metadata"]["resourceVersion"] == changed["metadata"]["resourceVersion"]


def test_delete_without_finalizers_removes_at_once(kube: KubeClient) -> None:
    created = kube.create_object(widget("gizmo"))
    with kube.watch(*WIDGET, params={"resourceVersion": created["metadata"]["resourceVersion"]}) as stream:
        kube.delete_object(*WIDGET, "gizmo", namespace="default")
        event = stream.next_event()
    with pytest.raises(ApiStatusError) as error:
        kube.get_object(*WIDGET, "gizmo", namespace="default")
    assert (error.value.status, error.value.reason) == (404, "NotFound")
    assert event is not None
    assert event["type"] == "DELETED"
    assert int(event["object"]["metadata"]["resourceVersion"]) > int(created["metadata"]["resourceVersion"])


def test_delete_with_finalizers_waits_for_the_last_finalizer(kube: KubeClient) -> None:
    created = kube.create_object(widget("gizmo", finalizers=["example.test/a", "example.test/b"]))
    start = created["metadata"]["resourceVersion"]
    with kube.watch(*WIDGET, params={"resourceVersion": start}) as stream:
        marked = kube.delete_object(*WIDGET, "gizmo", namespace="default")
        again = kube.delete_object(*WIDGET, "gizmo", namespace="default")
        kube.patch_object(*WIDGET, "gizmo", {"metadata": {"finalizers": ["example.test/b"]}}, namespace="default")
        with pytest.raises(ApiStatusError) as forbidden:
            kube.patch_object(
                *WIDGET, "gizmo", {"metadata": {"finalizers": ["x", "example.test/b"]}}, namespace="default"
            )
        kube.patch_object(*WIDGET, "gizmo", {"metadata": {"finalizers": None}}, namespace="default")
        events = [stream.next_event() for _ in range(3)]

    assert marked["metadata"]["deletionTimestamp"]
    assert marked["metadata"]["deletionGracePeriodSeconds"] == 0
    assert marked["metadata"]["generation"] == 2  # the server bumps generation when deletion starts
    assert again == marked
    assert forbidden.value.status == 422
    assert [event["type"] for event in events if event] == ["MODIFIED", "MODIFIED", "DELETED"]
    with pytest.raises(ApiStatusError):
        kube.get_object(*WIDGET, "gizmo", namespace="default")


def test_create_refuses_duplicates_and_unknown_namespaces(kube: KubeClient) -> None:
    kube.create_object(widget("gizmo"))
    with pytest.raises(ApiStatusError) as duplicate:
        kube.create_object(widget("gizmo"))
    with pytest.raises(ApiStatusError) as no_namespace:
        kube.create_object(widget("gizmo", namespace="nowhere"))
    assert (duplicate.value.status, duplicate.value.reason) == (409, "AlreadyExists")
    assert (no_namespace.value.status, no_namespace.value.body["message"]) == (404, 'namespaces "nowhere" not found')


def test_generate_name_makes_unique_names(kube: KubeClient) -> None:
    event = {"apiVersion": "v1", "kind": "Event", "metadata": {"generateName": "slo-guard-"}, "reason": "Paused"}
    names = {kube.create_object(event)["metadata"]["name"] for _ in range(3)}
    assert len(names) == 3
    assert all(re.fullmatch(r"slo-guard-[a-z0-9]{5}", name) for name in names)


def test_deleting_a_namespace_deletes_its_objects(kube: KubeClient) -> None:
    kube.ensure_namespace("shop")
    kube.create_object(deployment_manifest("web", namespace="shop"))
    kube.create_object(deployment_manifest("web", namespace="default"))
    kube.delete_object("v1", "Namespace", "shop")
    remaining = kube.list_objects("apps/v1", "Deployment")["items"]
    assert [obj["metadata"]["namespace"] for obj in remaining] == ["default"]


def test_a_body_of_another_kind_is_400(kube: KubeClient) -> None:
    with pytest.raises(ApiStatusError) as error:
        kube.request("POST", kube.path(*WIDGET, namespace="default"), body=deployment_manifest("web"))
    assert (error.value.status, error.value.reason) == (400, "BadRequest")
