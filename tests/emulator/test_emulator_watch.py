"""Rule 5c: watch streams: initial state, resuming from a resourceVersion, 410 Gone, timeouts, bookmarks."""

from __future__ import annotations

from typing import Any

from tests.support.emulator import running_emulator
from tests.support.kube import KubeClient, deployment_manifest

DEPLOYMENT = ("apps/v1", "Deployment")


def names(events: list[dict[str, Any] | None]) -> list[tuple[str, str]]:
    return [(event["type"], event["object"]["metadata"]["name"]) for event in events if event]


def test_watch_without_version_starts_with_the_current_objects(kube: KubeClient) -> None:
    kube.create_object(deployment_manifest("a"))
    with kube.watch(*DEPLOYMENT, namespace="default") as stream:
        initial = stream.next_event()
        kube.create_object(deployment_manifest("b"))
        kube.patch_object(*DEPLOYMENT, "a", {"spec": {"paused": True}}, namespace="default")
        kube.delete_object(*DEPLOYMENT, "b", namespace="default")
        live = [stream.next_event() for _ in range(3)]
    assert names([initial, *live]) == [("ADDED", "a"), ("ADDED", "b"), ("MODIFIED", "a"), ("DELETED", "b")]
    versions = [int(event["object"]["metadata"]["resourceVersion"]) for event in live if event]
    assert versions == sorted(versions)


def test_watch_from_a_resource_version_replays_only_later_changes(kube: KubeClient) -> None:
    kube.create_object(deployment_manifest("a"))
    version = kube.list_objects(*DEPLOYMENT)["metadata"]["resourceVersion"]
    kube.create_object(deployment_manifest("b"))
    kube.patch_object(*DEPLOYMENT, "a", {"spec": {"paused": True}}, namespace="default")
    with kube.watch(*DEPLOYMENT, params={"resourceVersion": version, "allowWatchBookmarks": "true"}) as stream:
        events = [stream.next_event() for _ in range(2)]
    assert names(events) == [("ADDED", "b"), ("MODIFIED", "a")]


def test_a_version_older_than_the_kept_history_gets_410_expired() -> None:
    with running_emulator(watch_window=2) as emulator:
        kube = KubeClient(str(emulator.url))
        first = kube.create_object(deployment_manifest("a"))["metadata"]["resourceVersion"]
        for replicas in (2, 3, 4):
            kube.patch_object(*DEPLOYMENT, "a", {"spec": {"replicas": replicas}}, namespace="default")
        with kube.watch(*DEPLOYMENT, params={"resourceVersion": first}) as stream:
            error = stream.next_event()
            end = stream.next_event()
    assert error is not None
    assert error["type"] == "ERROR"
    assert (error["object"]["code"], error["object"]["reason"]) == (410, "Expired")
    assert end is None


def test_timeout_seconds_ends_the_stream(kube: KubeClient) -> None:
    with kube.watch(*DEPLOYMENT, params={"timeoutSeconds": 1}, read_timeout=30) as stream:
        assert stream.next_event() is None


def test_initial_events_end_with_a_bookmark_when_asked(kube: KubeClient) -> None:
    kube.create_object(deployment_manifest("a"))
    params = {"sendInitialEvents": "true", "allowWatchBookmarks": "true", "resourceVersionMatch": "NotOlderThan"}
    with kube.watch(*DEPLOYMENT, params=params) as stream:
        added, bookmark = stream.next_event(), stream.next_event()
    assert added is not None
    assert bookmark is not None
    assert (added["type"], bookmark["type"]) == ("ADDED", "BOOKMARK")
    assert bookmark["object"]["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}
    assert int(bookmark["object"]["metadata"]["resourceVersion"]) >= int(added["object"]["metadata"]["resourceVersion"])


def test_a_watch_of_one_object_by_field_selector(kube: KubeClient) -> None:
    version = kube.create_object(deployment_manifest("a"))["metadata"]["resourceVersion"]
    kube.create_object(deployment_manifest("b"))
    params = {"resourceVersion": version, "fieldSelector": "metadata.name=b"}
    with kube.watch(*DEPLOYMENT, namespace="default", params=params) as stream:
        event = stream.next_event()
    assert names([event]) == [("ADDED", "b")]
