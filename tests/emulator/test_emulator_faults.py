"""Rule 7: fault injection (error answers, 410 on watch, dropped and stalled watch streams) and kmock reactions."""

from __future__ import annotations

import urllib.request

import pytest
from tests.support.emulator import KubeEmulator
from tests.support.kube import ApiStatusError, KubeClient, deployment_manifest

DEPLOYMENT = ("apps/v1", "Deployment")


@pytest.fixture
def web(kube: KubeClient) -> KubeClient:
    kube.create_object(deployment_manifest("web"))
    return kube


@pytest.mark.parametrize(("status", "reason"), [(409, "Conflict"), (422, "Invalid"), (500, "InternalError")])
def test_the_next_matching_request_fails_once(
    emulator: KubeEmulator, web: KubeClient, status: int, reason: str
) -> None:
    emulator.fail_next(status=status, verb="patch", resource="deployments", name="web")
    with pytest.raises(ApiStatusError) as error:
        web.patch_object(*DEPLOYMENT, "web", {"spec": {"paused": True}}, namespace="default")
    assert (error.value.status, error.value.reason) == (status, reason)
    assert "paused" not in web.get_object(*DEPLOYMENT, "web", namespace="default")["spec"]
    assert web.patch_object(*DEPLOYMENT, "web", {"spec": {"paused": True}}, namespace="default")["spec"]["paused"]
    assert [record.status for record in emulator.requests(verb="patch")] == [status, 200]


def test_429_carries_retry_after(emulator: KubeEmulator, web: KubeClient) -> None:
    emulator.fail_next(status=429, verb="get", resource="deployments", retry_after=7)
    url = str(emulator.url) + web.path(*DEPLOYMENT, namespace="default", name="web")
    with pytest.raises(urllib.error.HTTPError) as error:
        urllib.request.urlopen(url, timeout=10)  # noqa: S310 (http only)
    body = error.value.read()
    assert error.value.code == 429
    assert error.value.headers["Retry-After"] == "7"
    assert b'"retryAfterSeconds": 7' in body


def test_faults_match_only_what_they_name(emulator: KubeEmulator, web: KubeClient) -> None:
    emulator.fail_next(status=500, verb="patch", resource="deployments", subresource="status", count=2)
    main = web.patch_object(*DEPLOYMENT, "web", {"spec": {"paused": True}}, namespace="default")
    web.create_object(deployment_manifest("api"))
    statuses = []
    for _ in range(3):
        try:
            web.patch_object(*DEPLOYMENT, "web", {"status": {}}, namespace="default", subresource="status")
            statuses.append(200)
        except ApiStatusError as error:
            statuses.append(error.status)
    assert main["spec"]["paused"] is True
    assert statuses == [500, 500, 200]


def test_410_on_a_watch_is_an_error_event(emulator: KubeEmulator, web: KubeClient) -> None:
    emulator.fail_next(status=410, verb="watch", resource="deployments")
    with web.watch(*DEPLOYMENT, params={"resourceVersion": "1"}) as stream:
        error, end = stream.next_event(), stream.next_event()
    assert error is not None
    assert (error["type"], error["object"]["code"], error["object"]["reason"]) == ("ERROR", 410, "Expired")
    assert end is None


def test_dropped_watches_end(emulator: KubeEmulator, web: KubeClient) -> None:
    with web.watch(*DEPLOYMENT) as stream:
        assert stream.next_event() is not None  # the initial ADDED: the stream is open
        assert emulator.drop_watches("deployments") == 1
        assert stream.next_event() is None
    assert emulator.open_watches() == 0


def test_stalled_watches_stay_open_but_silent(emulator: KubeEmulator, web: KubeClient) -> None:
    with web.watch(*DEPLOYMENT, read_timeout=1) as stalled:
        assert stalled.next_event() is not None
        assert emulator.stall_watches("deployments") == 1
        web.patch_object(*DEPLOYMENT, "web", {"spec": {"paused": True}}, namespace="default")
        with web.watch(*DEPLOYMENT) as fresh:
            fresh_event = fresh.next_event()
        with pytest.raises(TimeoutError):
            stalled.next_event()
    assert fresh_event is not None
    assert fresh_event["object"]["spec"]["paused"] is True


def test_kmock_reactions_take_precedence(emulator: KubeEmulator, web: KubeClient) -> None:
    emulator["fetch deployments"][:1] << 418  # kmock's DSL: only the first matching request
    emulator["list deployments"] << {"kind": "DeploymentList", "items": []}
    with pytest.raises(ApiStatusError) as error:
        web.get_object(*DEPLOYMENT, "web", namespace="default")
    second = web.get_object(*DEPLOYMENT, "web", namespace="default")
    listed = web.list_objects(*DEPLOYMENT, namespace="default")
    assert error.value.status == 418
    assert second["metadata"]["name"] == "web"
    assert listed["items"] == []
