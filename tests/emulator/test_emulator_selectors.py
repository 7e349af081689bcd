"""Rule 5b: label selectors and field selectors on list and watch."""

from __future__ import annotations

import pytest
from tests.support.kube import ApiStatusError, KubeClient, deployment_manifest

DEPLOYMENT = ("apps/v1", "Deployment")


@pytest.fixture
def labelled(kube: KubeClient) -> KubeClient:
    kube.create_object(deployment_manifest("a", labels={"tier": "web", "team": "shop"}))
    kube.create_object(deployment_manifest("b", labels={"tier": "db"}))
    kube.create_object(deployment_manifest("c", labels={"tier": "cache", "team": "search"}))
    return kube


@pytest.mark.parametrize(
    ("selector", "names"),
    [
        ("tier=web", ["a"]),
        ("tier==web", ["a"]),
        ("tier!=web", ["b", "c"]),
        ("tier in (web, db)", ["a", "b"]),
        ("tier notin (web,db)", ["c"]),
        ("team", ["a", "c"]),
        ("!team", ["b"]),
        ("team,tier!=cache", ["a"]),
        ("team notin (shop)", ["b", "c"]),
    ],
)
def test_label_selectors_on_lists(labelled: KubeClient, selector: str, names: list[str]) -> None:
    listed = labelled.list_objects(*DEPLOYMENT, namespace="default", label_selector=selector)
    assert [item["metadata"]["name"] for item in listed["items"]] == names


def test_field_selectors_on_name_and_namespace(labelled: KubeClient) -> None:
    labelled.ensure_namespace("shop")
    labelled.create_object(deployment_manifest("a", namespace="shop"))
    by_name = labelled.list_objects(*DEPLOYMENT, field_selector="metadata.name=a")
    by_both = labelled.list_objects(*DEPLOYMENT, field_selector="metadata.name=a,metadata.namespace!=default")
    assert [i["metadata"]["namespace"] for i in by_name["items"]] == ["default", "shop"]
    assert [i["metadata"]["namespace"] for i in by_both["items"]] == ["shop"]


@pytest.mark.parametrize(
    ("parameter", "value"), [("labelSelector", "tier in (web"), ("fieldSelector", "spec.replicas=1")]
)
def test_bad_selectors_are_400(labelled: KubeClient, parameter: str, value: str) -> None:
    with pytest.raises(ApiStatusError) as error:
        labelled.request("GET", labelled.path(*DEPLOYMENT, namespace="default"), params={parameter: value})
    assert (error.value.status, error.value.reason) == (400, "BadRequest")


def test_watch_with_a_label_selector_sees_objects_enter_and_leave(labelled: KubeClient) -> None:
    version = labelled.list_objects(*DEPLOYMENT)["metadata"]["resourceVersion"]
    params = {"resourceVersion": version, "labelSelector": "tier=web"}
    with labelled.watch(*DEPLOYMENT, namespace="default", params=params) as stream:
        labelled.patch_object(*DEPLOYMENT, "b", {"metadata": {"labels": {"tier": "web"}}}, namespace="default")
        labelled.patch_object(*DEPLOYMENT, "c", {"spec": {"paused": True}}, namespace="default")
        labelled.patch_object(*DEPLOYMENT, "a", {"metadata": {"labels": {"tier": "batch"}}}, namespace="default")
        events = [stream.next_event() for _ in range(2)]
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events if e] == [("ADDED", "b"), ("DELETED", "a")]
