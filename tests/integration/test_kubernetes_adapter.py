"""The Kubernetes adapter over the official client, against the emulated API server: reads, writes, faults."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kmock
import pytest
from tests.support.emulator import KubeEmulator, running_emulator
from tests.support.kube import deployment_manifest, write_kubeconfig

from slo_guard.adapters.events import KubernetesEvents
from slo_guard.adapters.kubernetes_api import KubernetesApi, KubernetesSettings, load_api_client
from slo_guard.adapters.resilience import BreakerState
from slo_guard.adapters.slo_status import SLOStatusStore
from slo_guard.adapters.workloads import KubernetesWorkloads
from slo_guard.domain.model import Target
from slo_guard.domain.policy import (
    HELD_LABEL,
    ORIGINAL_REPLICAS,
    OVERRIDE_UNTIL,
    PAUSED_AT,
    PAUSED_BY,
    SCALED_BY,
    ActionKind,
    Change,
    WorkloadState,
    release,
)
from slo_guard.service.ports import (
    WRITE_PERMISSION,
    KubernetesUnavailable,
    ObjectRef,
    OwnershipLost,
    WorkloadConflict,
    WorkloadSnapshot,
)
from slo_guard.telemetry import KubernetesOutcome, OperatorMetrics

REPO_ROOT = Path(__file__).resolve().parents[2]
SLO_CRD = REPO_ROOT / "crds" / "servicelevelobjectives.yaml"
MERGE_PATCH = "application/merge-patch+json"
WEB = Target("Deployment", "web")
FAST = KubernetesSettings(timeout=5.0, retries=3, backoff_base=0.01, backoff_max=0.02)
"""Real waits between attempts, kept tiny: the tests are about how many attempts, not how long."""


class RecordingSleep:
    """Really sleeps, and remembers how long each wait between attempts was meant to be."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        await asyncio.sleep(seconds)


@pytest.fixture(scope="module")
def emulator() -> Iterator[KubeEmulator]:
    with running_emulator(crds=[SLO_CRD]) as served:
        yield served


@pytest.fixture
def namespace(emulator: KubeEmulator) -> Iterator[str]:
    with emulator.scratch_namespace("adapter") as name:
        yield name


@pytest.fixture
def kubeconfig(emulator: KubeEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = write_kubeconfig(tmp_path / "kubeconfig", str(emulator.url))
    monkeypatch.setenv("KUBECONFIG", str(path))
    return path


@pytest.fixture
def sleep() -> RecordingSleep:
    return RecordingSleep()


@pytest.fixture
def api(kubeconfig: Path, sleep: RecordingSleep) -> Iterator[KubernetesApi]:
    connected = KubernetesApi(load_api_client(FAST), FAST, metrics=OperatorMetrics(), sleep=sleep)
    yield connected
    connected.close()


@pytest.fixture
def workloads(api: KubernetesApi) -> KubernetesWorkloads:
    return KubernetesWorkloads(api)


def create_deployment(emulator: KubeEmulator, namespace: str, name: str = "web", **fields: Any) -> dict[str, Any]:
    return emulator.create_object(deployment_manifest(name, namespace=namespace, **fields))


def stored_deployment(emulator: KubeEmulator, namespace: str, name: str = "web") -> dict[str, Any]:
    stored = emulator.read_object("deployments", namespace, name)
    assert stored is not None
    return stored


def requests_counted(api: KubernetesApi, verb: str, outcome: KubernetesOutcome) -> float:
    labels = {"verb": verb, "outcome": outcome.value}
    return api.metrics.registry.get_sample_value("slo_guard_kubernetes_requests_total", labels) or 0.0


def pause_change(holder: str) -> Change:
    return Change(
        ActionKind.PAUSE,
        paused=True,
        annotations={PAUSED_BY: holder, PAUSED_AT: "2026-01-01T00:00:00Z"},
        labels={HELD_LABEL: "true"},
    )


# Reading targets.


async def test_read_maps_the_deployment_and_slo_guard_annotations(
    emulator: KubeEmulator, namespace: str, workloads: KubernetesWorkloads
) -> None:
    annotations = {
        PAUSED_BY: "checkout,search",
        SCALED_BY: "latency",
        ORIGINAL_REPLICAS: "3",
        OVERRIDE_UNTIL: "2030-01-02T03:04:05Z",
    }
    created = create_deployment(emulator, namespace, replicas=0, annotations=annotations)
    emulator.patch_object("deployments", namespace, "web", {"spec": {"paused": True}})

    snapshot = await workloads.read(namespace=namespace, target=WEB, check_autoscaler=False)

    state = snapshot.state
    assert (state.exists, state.paused, state.replicas) == (True, True, 0)
    assert state.paused_by == {"checkout", "search"}
    assert state.scaled_by == {"latency"}
    assert state.original_replicas == 3
    assert state.override_until is not None
    assert state.override_until.isoformat() == "2030-01-02T03:04:05+00:00"
    assert snapshot.resource_version == stored_deployment(emulator, namespace)["metadata"]["resourceVersion"]
    assert snapshot.resource_version != created["metadata"]["resourceVersion"]


async def test_a_missing_deployment_reads_as_not_existing(namespace: str, workloads: KubernetesWorkloads) -> None:
    snapshot = await workloads.read(namespace=namespace, target=WEB, check_autoscaler=True)

    assert snapshot == WorkloadSnapshot(WorkloadState(target=WEB, exists=False), resource_version=None)


async def test_unset_replicas_and_garbled_annotations_read_as_defaults(
    emulator: KubeEmulator, namespace: str, workloads: KubernetesWorkloads, caplog: pytest.LogCaptureFixture
) -> None:
    manifest = deployment_manifest(
        "web", namespace=namespace, annotations={ORIGINAL_REPLICAS: "many", OVERRIDE_UNTIL: "next tuesday"}
    )
    del manifest["spec"]["replicas"]
    emulator.create_object(manifest)

    with caplog.at_level(logging.WARNING):
        state = (await workloads.read(namespace=namespace, target=WEB, check_autoscaler=False)).state

    assert (state.replicas, state.paused, state.original_replicas, state.override_until) == (1, False, None, None)
    assert state.override_problem == "sloguard.io/override-until='next tuesday': not an RFC 3339 time with an offset"
    assert caplog.text == "", "reported once through status and an Event, not logged on every read"


def autoscaler(name: str, namespace: str, *, kind: str, target: str) -> dict[str, Any]:
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": kind, "name": target},
            "minReplicas": 1,
            "maxReplicas": 5,
        },
    }


async def test_only_an_autoscaler_that_targets_this_deployment_counts(
    emulator: KubeEmulator, namespace: str, workloads: KubernetesWorkloads
) -> None:
    create_deployment(emulator, namespace)
    emulator.create_object(autoscaler("other-app", namespace, kind="Deployment", target="api"))
    emulator.create_object(autoscaler("same-name-sts", namespace, kind="StatefulSet", target="web"))
    assert (await workloads.read(namespace=namespace, target=WEB, check_autoscaler=True)).state.autoscaler is None

    emulator.create_object(autoscaler("web-hpa", namespace, kind="Deployment", target="web"))

    checked = await workloads.read(namespace=namespace, target=WEB, check_autoscaler=True)
    unchecked = await workloads.read(namespace=namespace, target=WEB, check_autoscaler=False)
    assert checked.state.autoscaler == "web-hpa"
    assert unchecked.state.autoscaler is None
    assert len(emulator.requests(verb="list", resource="horizontalpodautoscalers", namespace=namespace)) == 2


# Writing targets.


async def test_pause_then_resume_writes_exactly_the_policy_fields(
    emulator: KubeEmulator, namespace: str, workloads: KubernetesWorkloads
) -> None:
    create_deployment(emulator, namespace, replicas=4)
    snapshot = await workloads.read(namespace=namespace, target=WEB, check_autoscaler=False)

    await workloads.apply(namespace=namespace, snapshot=snapshot, change=pause_change("checkout"))

    paused = stored_deployment(emulator, namespace)
    assert paused["spec"]["paused"] is True
    assert paused["spec"]["replicas"] == 4
    assert paused["metadata"]["annotations"] == {PAUSED_BY: "checkout", PAUSED_AT: "2026-01-01T00:00:00Z"}
    assert paused["metadata"]["labels"] == {"app": "web", HELD_LABEL: "true"}
    [patch] = emulator.writes_to("deployments", namespace=namespace)
    assert patch.content_type == MERGE_PATCH
    assert patch.body == {
        "metadata": {
            "resourceVersion": snapshot.resource_version,
            "annotations": {PAUSED_BY: "checkout", PAUSED_AT: "2026-01-01T00:00:00Z"},
            "labels": {HELD_LABEL: "true"},
        },
        "spec": {"paused": True},
    }

    held = await workloads.read(namespace=namespace, target=WEB, check_autoscaler=False)
    resume = release(holder="checkout", workload=held.state).change
    assert resume is not None
    await workloads.apply(namespace=namespace, snapshot=held, change=resume)

    resumed = stored_deployment(emulator, namespace)
    assert resumed["spec"]["paused"] is False
    assert resumed["spec"]["replicas"] == 4
    assert not resumed["metadata"].get("annotations")
    assert resumed["metadata"]["labels"] == {"app": "web"}
    assert len(emulator.writes_to("deployments", namespace=namespace)) == 2


async def test_scaling_writes_only_replicas_and_annotations(
    emulator: KubeEmulator, namespace: str, workloads: KubernetesWorkloads
) -> None:
    create_deployment(emulator, namespace, replicas=6)
    snapshot = await workloads.read(namespace=namespace, target=WEB, check_autoscaler=True)
    change = Change(ActionKind.SCALE, replicas=1, annotations={SCALED_BY: "latency", ORIGINAL_REPLICAS: "6"})

    await workloads.apply(namespace=namespace, snapshot=snapshot, change=change)

    [patch] = emulator.writes_to("deployments", namespace=namespace)
    assert patch.body["spec"] == {"replicas": 1}
    assert "labels" not in patch.body["metadata"]
    scaled = stored_deployment(emulator, namespace)
    assert scaled["spec"]["replicas"] == 1
    assert "paused" not in scaled["spec"]


async def test_a_stale_snapshot_conflicts_and_leaves_the_object_alone(
    emulator: KubeEmulator, namespace: str, workloads: KubernetesWorkloads
) -> None:
    create_deployment(emulator, namespace)
    stale = await workloads.read(namespace=namespace, target=WEB, check_autoscaler=False)
    # Someone else (a human, Argo CD) changes the Deployment after slo-guard read it.
    emulator.patch_object("deployments", namespace, "web", {"metadata": {"annotations": {"team": "payments"}}})
    moved = stored_deployment(emulator, namespace)

    with pytest.raises(WorkloadConflict):
        await workloads.apply(namespace=namespace, snapshot=stale, change=pause_change("checkout"))

    assert stored_deployment(emulator, namespace) == moved
    assert len(emulator.writes_to("deployments", namespace=namespace)) == 1


async def test_a_deployment_deleted_since_it_was_read_is_a_conflict(
    emulator: KubeEmulator, namespace: str, workloads: KubernetesWorkloads
) -> None:
    create_deployment(emulator, namespace)
    snapshot = await workloads.read(namespace=namespace, target=WEB, check_autoscaler=False)
    emulator.delete_object("deployments", namespace, "web")

    with pytest.raises(WorkloadConflict):
        await workloads.apply(namespace=namespace, snapshot=snapshot, change=pause_change("checkout"))

    assert emulator.read_object("deployments", namespace, "web") is None


async def test_held_lists_only_held_deployments_of_that_namespace(
    emulator: KubeEmulator, namespace: str, workloads: KubernetesWorkloads
) -> None:
    held_labels = {HELD_LABEL: "true"}
    create_deployment(emulator, namespace, "web", labels=held_labels, annotations={PAUSED_BY: "checkout"})
    create_deployment(emulator, namespace, "api", labels=held_labels, annotations={SCALED_BY: "latency"})
    create_deployment(emulator, namespace, "free")
    elsewhere = f"{namespace}-other"
    create_deployment(emulator, elsewhere, "web", labels=held_labels, annotations={PAUSED_BY: "checkout"})

    snapshots = await workloads.held(namespace=namespace)

    by_name = {snapshot.state.target.name: snapshot.state for snapshot in snapshots}
    assert set(by_name) == {"web", "api"}
    assert by_name["web"].paused_by == {"checkout"}
    assert by_name["api"].scaled_by == {"latency"}
    assert all(snapshot.resource_version for snapshot in snapshots)
    assert emulator.requests(resource="deployments", namespace=elsewhere) == []


async def test_passes_asking_for_held_workloads_at_once_share_one_listing_per_kind(
    emulator: KubeEmulator, namespace: str, workloads: KubernetesWorkloads
) -> None:
    """A thousand new SLOs in one namespace start together; each first pass looks for holds it no longer wants."""
    create_deployment(emulator, namespace, "web", labels={HELD_LABEL: "true"}, annotations={PAUSED_BY: "checkout"})

    answers = await asyncio.gather(*(workloads.held(namespace=namespace) for _ in range(50)))

    assert {tuple(snapshot.state.target.name for snapshot in answer) for answer in answers} == {("web",)}
    assert len(emulator.requests(verb="list", resource="deployments", namespace=namespace)) == 1
    create_deployment(emulator, namespace, "api", labels={HELD_LABEL: "true"}, annotations={PAUSED_BY: "latency"})
    later = await workloads.held(namespace=namespace)
    assert {snapshot.state.target.name for snapshot in later} == {"web", "api"}, "a later call lists again"


async def test_a_cancelled_caller_does_not_cancel_the_listing_others_wait_for(
    emulator: KubeEmulator, namespace: str, workloads: KubernetesWorkloads
) -> None:
    create_deployment(emulator, namespace, "web", labels={HELD_LABEL: "true"}, annotations={PAUSED_BY: "checkout"})
    impatient = asyncio.ensure_future(workloads.held(namespace=namespace))
    patient = asyncio.ensure_future(workloads.held(namespace=namespace))
    await asyncio.sleep(0)  # both wait on the listing, whose HTTP request runs in a thread
    impatient.cancel()
    assert [snapshot.state.target.name for snapshot in await patient] == ["web"]
    assert impatient.cancelled()


# Retries, throttling and the circuit breaker.


async def test_429_is_retried_after_the_servers_retry_after(
    emulator: KubeEmulator, namespace: str, api: KubernetesApi, sleep: RecordingSleep
) -> None:
    create_deployment(emulator, namespace)
    emulator.fail_next(status=429, verb="get", resource="deployments", namespace=namespace, retry_after=1)

    state = (await KubernetesWorkloads(api).read(namespace=namespace, target=WEB, check_autoscaler=False)).state

    assert state.exists
    assert [record.status for record in emulator.requests(verb="get", namespace=namespace)] == [429, 200]
    assert sleep.waits == [1.0]
    assert requests_counted(api, "get", KubernetesOutcome.THROTTLED) == 1
    assert requests_counted(api, "get", KubernetesOutcome.SUCCESS) == 1


async def test_retry_after_is_capped(
    emulator: KubeEmulator, namespace: str, kubeconfig: Path, sleep: RecordingSleep
) -> None:
    settings = KubernetesSettings(timeout=5.0, retry_after_max=0.1)
    api = KubernetesApi(load_api_client(settings), settings, sleep=sleep)
    create_deployment(emulator, namespace)
    emulator.fail_next(status=503, verb="get", resource="deployments", namespace=namespace, retry_after=3600)

    await KubernetesWorkloads(api).read(namespace=namespace, target=WEB, check_autoscaler=False)
    api.close()

    assert sleep.waits == [0.1]


async def test_server_errors_give_up_after_bounded_attempts(
    emulator: KubeEmulator, namespace: str, api: KubernetesApi
) -> None:
    create_deployment(emulator, namespace)
    emulator.fail_next(
        status=500, verb="get", resource="deployments", namespace=namespace, count=100, message="etcd is down"
    )

    with pytest.raises(KubernetesUnavailable, match="etcd is down"):
        await KubernetesWorkloads(api).read(namespace=namespace, target=WEB, check_autoscaler=False)

    assert len(emulator.requests(verb="get", namespace=namespace)) == FAST.retries + 1
    assert requests_counted(api, "get", KubernetesOutcome.SERVER_ERROR) == FAST.retries + 1


@pytest.mark.parametrize(
    ("status", "error"), [(409, WorkloadConflict), (422, WorkloadConflict), (403, KubernetesUnavailable)]
)
async def test_client_errors_are_not_retried(
    emulator: KubeEmulator,
    namespace: str,
    workloads: KubernetesWorkloads,
    status: int,
    error: type[Exception],
) -> None:
    create_deployment(emulator, namespace)
    snapshot = await workloads.read(namespace=namespace, target=WEB, check_autoscaler=False)
    emulator.fail_next(status=status, verb="patch", namespace=namespace, message="denied by the test")

    with pytest.raises(error, match="denied by the test"):
        await workloads.apply(namespace=namespace, snapshot=snapshot, change=pause_change("checkout"))

    assert len(emulator.writes_to("deployments", namespace=namespace)) == 1
    assert "paused" not in stored_deployment(emulator, namespace)["spec"]


async def test_the_circuit_opens_after_the_threshold_and_fails_fast(
    emulator: KubeEmulator, namespace: str, kubeconfig: Path
) -> None:
    settings = KubernetesSettings(
        timeout=5.0, retries=4, backoff_base=0.01, backoff_max=0.02, breaker_failure_threshold=3
    )
    api = KubernetesApi(load_api_client(settings), settings)
    workloads = KubernetesWorkloads(api)
    create_deployment(emulator, namespace)
    emulator.fail_next(status=503, verb="get", resource="deployments", namespace=namespace, count=100)

    with pytest.raises(KubernetesUnavailable, match="circuit breaker"):
        await workloads.read(namespace=namespace, target=WEB, check_autoscaler=False)
    assert api.breaker_state is BreakerState.OPEN
    assert len(emulator.requests(verb="get", namespace=namespace)) == 3

    with pytest.raises(KubernetesUnavailable, match="circuit breaker"):
        await workloads.read(namespace=namespace, target=WEB, check_autoscaler=False)
    api.close()

    assert len(emulator.requests(verb="get", namespace=namespace)) == 3
    assert requests_counted(api, "get", KubernetesOutcome.CIRCUIT_OPEN) == 2
    gauge = api.metrics.registry.get_sample_value("slo_guard_circuit_breaker_state", {"breaker": "kubernetes"})
    assert gauge == BreakerState.OPEN


async def test_an_unreachable_api_server_is_unavailable_after_bounded_attempts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    monkeypatch.setenv("KUBECONFIG", str(write_kubeconfig(tmp_path / "kc", f"http://127.0.0.1:{closed_port}")))
    api = KubernetesApi(load_api_client(FAST), FAST)

    with pytest.raises(KubernetesUnavailable, match="unreachable"):
        await KubernetesWorkloads(api).read(namespace="default", target=WEB, check_autoscaler=False)
    api.close()

    assert requests_counted(api, "get", KubernetesOutcome.UNAVAILABLE) == FAST.retries + 1


async def test_writes_wait_for_the_token_bucket_and_reads_do_not(
    emulator: KubeEmulator, namespace: str, kubeconfig: Path
) -> None:
    waits: list[float] = []

    async def record_wait(seconds: float) -> None:
        waits.append(seconds)

    settings = KubernetesSettings(timeout=5.0, writes_per_second=2.0, write_burst=1)
    api = KubernetesApi(load_api_client(settings), settings, sleep=record_wait, clock=lambda: 0.0)
    workloads = KubernetesWorkloads(api)
    create_deployment(emulator, namespace)

    first = await workloads.read(namespace=namespace, target=WEB, check_autoscaler=False)
    await workloads.apply(namespace=namespace, snapshot=first, change=pause_change("checkout"))
    second = await workloads.read(namespace=namespace, target=WEB, check_autoscaler=False)
    await workloads.apply(namespace=namespace, snapshot=second, change=pause_change("checkout,search"))
    api.close()

    # The burst of one is spent by the first patch; the second waits half a second for the next token.
    assert waits == [0.5]
    assert stored_deployment(emulator, namespace)["metadata"]["annotations"][PAUSED_BY] == "checkout,search"


# Events.


async def test_an_event_names_the_object_and_slo_guard(
    emulator: KubeEmulator, namespace: str, api: KubernetesApi
) -> None:
    events = KubernetesEvents(api, instance="slo-guard-7d9f-abcde")
    regarding = ObjectRef("apps/v1", "Deployment", namespace, "web", uid="1234-abcd")

    await events.post(regarding=regarding, type_="Warning", reason="Paused", message="Error budget policy: paused")

    [event] = emulator.list_objects("events", namespace)
    assert event["involvedObject"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "namespace": namespace,
        "name": "web",
        "uid": "1234-abcd",
    }
    assert (event["type"], event["reason"], event["message"]) == ("Warning", "Paused", "Error budget policy: paused")
    assert event["source"] == {"component": "slo-guard"}
    assert (event["reportingComponent"], event["reportingInstance"]) == (
        "sloguard.io/slo-guard",
        "slo-guard-7d9f-abcde",
    )
    assert event["count"] == 1
    assert event["firstTimestamp"] == event["lastTimestamp"]
    assert event["metadata"]["name"].startswith("web.")


async def test_the_same_event_is_posted_once(emulator: KubeEmulator, namespace: str, api: KubernetesApi) -> None:
    events = KubernetesEvents(api)
    regarding = ObjectRef("apps/v1", "Deployment", namespace, "web")

    for _ in range(3):
        await events.post(regarding=regarding, type_="Normal", reason="Paused", message="paused web")
    await events.post(regarding=regarding, type_="Normal", reason="Paused", message="paused web again")

    messages = sorted(event["message"] for event in emulator.list_objects("events", namespace))
    assert messages == ["paused web", "paused web again"]


async def test_the_same_event_is_posted_again_after_the_window(
    emulator: KubeEmulator, namespace: str, api: KubernetesApi
) -> None:
    now = [0.0]
    events = KubernetesEvents(api, monotonic=lambda: now[0])
    regarding = ObjectRef("apps/v1", "Deployment", namespace, "web")

    await events.post(regarding=regarding, type_="Normal", reason="Paused", message="paused web")
    now[0] += api.settings.event_dedup_window
    await events.post(regarding=regarding, type_="Normal", reason="Paused", message="paused web")

    assert len(emulator.list_objects("events", namespace)) == 2


async def test_a_long_message_is_truncated(emulator: KubeEmulator, namespace: str, api: KubernetesApi) -> None:
    regarding = ObjectRef("apps/v1", "Deployment", namespace, "web")

    await KubernetesEvents(api).post(regarding=regarding, type_="Normal", reason="Paused", message="x" * 5000)

    [event] = emulator.list_objects("events", namespace)
    assert len(event["message"]) == 1024
    assert event["message"].startswith("xxx")


async def test_a_failed_event_is_swallowed_counted_and_not_remembered(
    emulator: KubeEmulator, namespace: str, api: KubernetesApi
) -> None:
    events = KubernetesEvents(api)
    regarding = ObjectRef("apps/v1", "Deployment", namespace, "web")
    emulator.fail_next(status=500, verb="create", resource="events", namespace=namespace)

    await events.post(regarding=regarding, type_="Normal", reason="Paused", message="paused web")
    assert emulator.list_objects("events", namespace) == []
    await events.post(regarding=regarding, type_="Normal", reason="Paused", message="paused web")

    assert len(emulator.list_objects("events", namespace)) == 1
    failed = api.metrics.registry.get_sample_value("slo_guard_kubernetes_events_total", {"outcome": "failed"})
    assert failed == 1


# SLO status.


def create_slo(emulator: KubeEmulator, namespace: str, name: str = "checkout") -> dict[str, Any]:
    slo = emulator.create_object(
        {
            "apiVersion": "sloguard.io/v1alpha1",
            "kind": "ServiceLevelObjective",
            "metadata": {"name": name, "namespace": namespace, "labels": {"team": "payments"}},
            "spec": {
                "objective": 99.9,
                "window": "30d",
                "indicator": {"ratio": {"errors": 'http_requests_total{code=~"5.."}', "total": "http_requests_total"}},
            },
        }
    )
    emulator.patch_object(
        "servicelevelobjectives",
        namespace,
        name,
        {"status": {"state": "Healthy", "message": "fine", "sli": 0.9995}},
        subresource="status",
    )
    return slo


async def test_status_patch_changes_only_the_status(emulator: KubeEmulator, namespace: str, api: KubernetesApi) -> None:
    create_slo(emulator, namespace)
    before = emulator.read_object("servicelevelobjectives", namespace, "checkout")
    assert before is not None

    await SLOStatusStore(api).patch_status(
        namespace=namespace, name="checkout", status={"state": "Exhausted", "message": "budget spent", "sli": None}
    )

    after = emulator.read_object("servicelevelobjectives", namespace, "checkout")
    assert after is not None
    assert after["status"] == {"state": "Exhausted", "message": "budget spent"}
    assert after["spec"] == before["spec"]
    assert after["metadata"]["labels"] == before["metadata"]["labels"]
    assert after["metadata"]["generation"] == before["metadata"]["generation"]
    [patch] = emulator.writes_to("servicelevelobjectives", namespace=namespace)
    assert (patch.subresource, patch.content_type) == ("status", MERGE_PATCH)


async def test_status_of_a_deleted_slo_is_ignored(emulator: KubeEmulator, namespace: str, api: KubernetesApi) -> None:
    await SLOStatusStore(api).patch_status(namespace=namespace, name="gone", status={"state": "Healthy"})

    [patch] = emulator.writes_to("servicelevelobjectives", namespace=namespace)
    assert patch.status == 404


async def test_status_write_failure_raises(emulator: KubeEmulator, namespace: str, api: KubernetesApi) -> None:
    create_slo(emulator, namespace)
    emulator.fail_next(status=403, resource="servicelevelobjectives", namespace=namespace, subresource="status")

    with pytest.raises(KubernetesUnavailable):
        await SLOStatusStore(api).patch_status(namespace=namespace, name="checkout", status={"state": "Burning"})

    stored = emulator.read_object("servicelevelobjectives", namespace, "checkout")
    assert stored is not None
    assert stored["status"]["state"] == "Healthy"


async def test_a_slow_api_server_times_out_each_attempt(
    emulator: KubeEmulator, namespace: str, kubeconfig: Path
) -> None:
    async def too_slow() -> dict[str, Any]:
        await asyncio.sleep(2.0)
        return {}

    emulator[kmock.namespace(namespace)] << too_slow
    settings = KubernetesSettings(timeout=0.2, retries=1, backoff_base=0.01, backoff_max=0.02)
    api = KubernetesApi(load_api_client(settings), settings)

    with pytest.raises(KubernetesUnavailable, match=r"did not answer within 0\.2 s"):
        await KubernetesWorkloads(api).read(namespace=namespace, target=WEB, check_autoscaler=False)
    api.close()

    assert requests_counted(api, "get", KubernetesOutcome.TIMEOUT) == 2


# Sharding: no write on behalf of an SLO once its shard moved, even one already waiting for a write token.


async def test_a_write_that_waited_for_a_token_past_the_loss_of_its_shard_never_goes_out(
    emulator: KubeEmulator, namespace: str, kubeconfig: Path
) -> None:
    create_deployment(emulator, namespace)
    throttled = KubernetesSettings(timeout=5.0, writes_per_second=2.0, write_burst=1)
    api = KubernetesApi(load_api_client(throttled), throttled, metrics=OperatorMetrics())
    workloads = KubernetesWorkloads(api)
    owned = {"shop/checkout": True}
    try:
        snapshot = await workloads.read(namespace=namespace, target=WEB, check_autoscaler=False)
        WRITE_PERMISSION.set(lambda: None if owned["shop/checkout"] else "shop/checkout")
        await workloads.apply(namespace=namespace, snapshot=snapshot, change=pause_change("checkout"))
        snapshot = await workloads.read(namespace=namespace, target=WEB, check_autoscaler=False)
        # The bucket is empty now: this write waits about half a second for its token, and the shard moves meanwhile.
        waiting = asyncio.ensure_future(
            workloads.apply(namespace=namespace, snapshot=snapshot, change=pause_change("checkout-again"))
        )
        await asyncio.sleep(0.1)
        owned["shop/checkout"] = False
        with pytest.raises(OwnershipLost, match="shop/checkout"):
            await waiting
    finally:
        api.close()

    [patch] = emulator.writes_to("deployments", namespace=namespace)
    assert patch.body["metadata"]["annotations"][PAUSED_BY] == "checkout", "only the write made while owned"
