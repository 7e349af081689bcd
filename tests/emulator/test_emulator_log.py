"""Rule 8: the request log, in RBAC verbs, for assertions and RBAC completeness checks."""

from __future__ import annotations

from tests.support.emulator import KubeEmulator, running_emulator
from tests.support.kube import USER_AGENT, KubeClient, deployment_manifest

DEPLOYMENT = ("apps/v1", "Deployment")


def test_every_verb_is_logged_in_rbac_terms(emulator: KubeEmulator, kube: KubeClient) -> None:
    kube.create_object(deployment_manifest("web"))
    kube.get_object(*DEPLOYMENT, "web", namespace="default")
    kube.list_objects(*DEPLOYMENT, namespace="default")
    with kube.watch(*DEPLOYMENT, params={"timeoutSeconds": 1}) as stream:
        stream.next_event()
    kube.patch_object(*DEPLOYMENT, "web", {"spec": {"replicas": 2}}, namespace="default", subresource="scale")
    current = kube.get_object(*DEPLOYMENT, "web", namespace="default")
    kube.replace_object({**current, "spec": {**current["spec"], "paused": True}})
    kube.delete_object(*DEPLOYMENT, "web", namespace="default")

    records = emulator.requests(resource="deployments")
    assert [(r.verb, r.subresource) for r in records] == [
        ("create", None),
        ("get", None),
        ("list", None),
        ("watch", None),
        ("patch", "scale"),
        ("get", None),
        ("update", None),
        ("delete", None),
    ]
    assert all(r.group == "apps" and r.user_agent == USER_AGENT and r.status in (200, 201) for r in records)


def test_records_carry_what_tests_assert_on(emulator: KubeEmulator, kube: KubeClient) -> None:
    kube.create_object(deployment_manifest("web"))
    kube.create_object(deployment_manifest("api"))
    kube.patch_object(*DEPLOYMENT, "web", {"spec": {"paused": True}}, namespace="default")
    kube.patch_object(*DEPLOYMENT, "web", {"status": {"replicas": 1}}, namespace="default", subresource="status")

    [patch] = emulator.requests(verb="patch", resource="deployments", name="web", subresource=None)
    assert (patch.method, patch.path, patch.namespace) == (
        "PATCH",
        "/apis/apps/v1/namespaces/default/deployments/web",
        "default",
    )
    assert (patch.body, patch.content_type, patch.status) == (
        {"spec": {"paused": True}},
        "application/merge-patch+json",
        200,
    )
    assert [r.verb for r in emulator.writes_to("deployments", name="web")] == ["create", "patch", "patch"]
    assert [r.verb for r in emulator.writes_to("deployments", subresource="status")] == ["patch"]
    assert emulator.writes_to("deployments.apps", name="api")[0].verb == "create"
    assert emulator.writes_to("events") == []


def test_the_log_can_be_cleared_and_bounded() -> None:
    with running_emulator(request_log_limit=2) as emulator:
        kube = KubeClient(str(emulator.url))
        for name in ("a", "b", "c"):
            kube.create_object(deployment_manifest(name))
        kept = [record.body["metadata"]["name"] for record in emulator.requests(verb="create")]
        emulator.clear_requests()
        assert emulator.requests() == []
    assert kept == ["b", "c"]
