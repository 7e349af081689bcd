"""Rule 2: list responses carry kind, apiVersion and metadata.resourceVersion; items carry kind and apiVersion."""

from __future__ import annotations

from tests.support.kube import KubeClient, deployment_manifest


def test_lists_name_their_kind_and_version(kube: KubeClient) -> None:
    created = kube.create_object(deployment_manifest("web"))
    listed = kube.list_objects("apps/v1", "Deployment", namespace="default")
    assert (listed["kind"], listed["apiVersion"]) == ("DeploymentList", "apps/v1")
    assert listed["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]
    assert [(item["kind"], item["apiVersion"]) for item in listed["items"]] == [("Deployment", "apps/v1")]


def test_cluster_wide_lists_span_namespaces_sorted_by_namespace_then_name(kube: KubeClient) -> None:
    kube.ensure_namespace("shop")
    for namespace, name in [("shop", "b"), ("default", "z"), ("shop", "a")]:
        kube.create_object(deployment_manifest(name, namespace=namespace))
    items = kube.list_objects("apps/v1", "Deployment")["items"]
    assert [(i["metadata"]["namespace"], i["metadata"]["name"]) for i in items] == [
        ("default", "z"),
        ("shop", "a"),
        ("shop", "b"),
    ]


def test_limit_and_continue_page_through_a_list(kube: KubeClient) -> None:
    for name in ["a", "b", "c", "d", "e"]:
        kube.create_object(deployment_manifest(name))
    path = kube.path("apps/v1", "Deployment", namespace="default")
    names, token, pages = [], None, 0
    while True:
        page = kube.request("GET", path, params={"limit": 2, "continue": token})
        names += [item["metadata"]["name"] for item in page["items"]]
        pages += 1
        token = page["metadata"].get("continue")
        if not token:
            break
        assert page["metadata"]["remainingItemCount"] == 5 - len(names)
    assert (names, pages) == (["a", "b", "c", "d", "e"], 3)
