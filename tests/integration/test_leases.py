"""KubernetesLeaseStore against the emulated API server: MicroTimes on the wire, conditional writes and what their
refusals mean, and two coordinators sharing one API server."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from tests.support.emulator import KubeEmulator, running_emulator
from tests.support.kube import write_kubeconfig

from slo_guard.adapters.kubernetes_api import KubernetesApi, KubernetesSettings, load_api_client
from slo_guard.adapters.leases import KubernetesLeaseStore
from slo_guard.service.ports import KubernetesUnavailable, Lease, LeaseConflict, LeaseRole
from slo_guard.service.sharding import ShardCoordinator, shard_lease_name
from slo_guard.telemetry import OperatorMetrics

SETTINGS = KubernetesSettings(
    timeout=5.0, retries=3, backoff_base=0.01, backoff_max=0.02, writes_per_second=0.01, write_burst=1
)
"""A write bucket that would hold a second write for 100 s: lease writes must not wait for it."""
MICRO_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")
WHOLE_SECOND = datetime(2026, 12, 5, 2, 56, 50, tzinfo=UTC)


@pytest.fixture(scope="module")
def emulator() -> Iterator[KubeEmulator]:
    with running_emulator() as served:
        yield served


@pytest.fixture
def namespace(emulator: KubeEmulator) -> Iterator[str]:
    with emulator.scratch_namespace("leases") as name:
        yield name


@pytest.fixture
def api(emulator: KubeEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[KubernetesApi]:
    monkeypatch.setenv("KUBECONFIG", str(write_kubeconfig(tmp_path / "kubeconfig", str(emulator.url))))
    connected = KubernetesApi(load_api_client(SETTINGS), SETTINGS, metrics=OperatorMetrics())
    yield connected
    connected.close()


@pytest.fixture
def store(api: KubernetesApi, namespace: str) -> KubernetesLeaseStore:
    return KubernetesLeaseStore(api, namespace)


def shard_lease(shard: int = 0, *, holder: str = "a", at: datetime = WHOLE_SECOND) -> Lease:
    return Lease(shard_lease_name(shard, 4), LeaseRole.SHARD, holder, 15, at, at)


def stored(emulator: KubeEmulator, namespace: str, name: str) -> dict[str, Any]:
    lease = emulator.read_object("leases", namespace, name)
    assert lease is not None
    return lease


def split(*coordinators: ShardCoordinator) -> list[set[int]]:
    return [set(coordinator.held()) for coordinator in coordinators]


async def until(condition: Callable[[], bool], *, within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


# The store.


async def test_a_lease_goes_out_with_microtimes_and_labels_and_comes_back_the_same(
    emulator: KubeEmulator, namespace: str, store: KubernetesLeaseStore
) -> None:
    created = await store.create(shard_lease())
    emulator.create_object(
        {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "other", "namespace": namespace}}
    )

    sent = emulator.requests(verb="create", resource="leases", namespace=namespace)[0].body
    assert MICRO_TIME.match(sent["spec"]["renewTime"]), sent  # six digits even for a whole second
    assert MICRO_TIME.match(sent["spec"]["acquireTime"]), sent
    assert sent["metadata"]["labels"] == {"app.kubernetes.io/name": "slo-guard", "sloguard.io/lease": "shard"}
    assert sent["spec"]["leaseTransitions"] == 0
    assert created.resource_version is not None
    assert (created.holder, created.duration_seconds, created.renew_time) == ("a", 15, WHOLE_SECOND)
    assert await store.list_leases() == [created]


async def test_an_update_based_on_a_stale_version_is_a_conflict(
    emulator: KubeEmulator, namespace: str, store: KubernetesLeaseStore
) -> None:
    created = await store.create(shard_lease())
    later = WHOLE_SECOND + timedelta(seconds=5, microseconds=123456)
    renewed = await store.update(replace(created, holder="b", renew_time=later))
    assert renewed.resource_version != created.resource_version
    assert stored(emulator, namespace, created.name)["spec"]["renewTime"] == "2026-12-05T02:56:55.123456Z"

    with pytest.raises(LeaseConflict):
        await store.update(replace(created, holder="c", renew_time=later))

    assert stored(emulator, namespace, created.name)["spec"]["holderIdentity"] == "b"
    assert [record.status for record in emulator.requests(verb="update", namespace=namespace)] == [200, 409]


async def test_creating_an_existing_lease_is_a_conflict(
    emulator: KubeEmulator, namespace: str, store: KubernetesLeaseStore
) -> None:
    await store.create(shard_lease(holder="a"))

    with pytest.raises(LeaseConflict):
        await store.create(shard_lease(holder="b"))

    assert stored(emulator, namespace, shard_lease_name(0, 4))["spec"]["holderIdentity"] == "a"


async def test_a_lease_gone_under_an_update_is_a_conflict(
    emulator: KubeEmulator, namespace: str, store: KubernetesLeaseStore
) -> None:
    created = await store.create(shard_lease())
    emulator.fail_next(status=404, verb="update", resource="leases", namespace=namespace)

    with pytest.raises(LeaseConflict):
        await store.update(created)


async def test_a_delete_is_conditional_and_a_missing_lease_is_fine(
    emulator: KubeEmulator, namespace: str, store: KubernetesLeaseStore
) -> None:
    created = await store.create(shard_lease())
    renewed = await store.update(replace(created, renew_time=WHOLE_SECOND + timedelta(seconds=5)))

    with pytest.raises(LeaseConflict):
        await store.delete(created)
    await store.delete(renewed)
    await store.delete(renewed)

    assert emulator.read_object("leases", namespace, created.name) is None


async def test_a_refused_lease_is_a_failure_and_not_a_lost_race(
    emulator: KubeEmulator, namespace: str, store: KubernetesLeaseStore
) -> None:
    created = await store.create(shard_lease())
    emulator.fail_next(status=422, verb="update", resource="leases", namespace=namespace)

    with pytest.raises(KubernetesUnavailable, match="refused"):
        await store.update(created)


async def test_lease_writes_are_single_attempts_that_skip_the_write_bucket(
    emulator: KubeEmulator, namespace: str, store: KubernetesLeaseStore
) -> None:
    lease = await store.create(shard_lease())
    started = time.monotonic()
    for _ in range(3):
        lease = await store.update(lease)
    assert time.monotonic() - started < 5.0  # the write bucket would have held the second write for 100 s

    emulator.fail_next(status=503, verb="update", resource="leases", namespace=namespace)
    with pytest.raises(KubernetesUnavailable):
        await store.update(lease)
    assert [record.status for record in emulator.requests(verb="update", namespace=namespace)][-1:] == [503]
    await store.update(lease)  # nothing went through: the version read still holds


# Two coordinators on one API server.


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def stop_passes(shard: int) -> None:
    """What the runtime does before a shard is handed over; nothing runs here."""


def coordinator(store: KubernetesLeaseStore, clock: Clock, identity: str) -> ShardCoordinator:
    return ShardCoordinator(
        store,
        identity=identity,
        shards=4,
        on_gained=lambda shard: None,
        on_releasing=stop_passes,
        lease_duration_seconds=15,
        monotonic=clock,
    )


def holders(emulator: KubeEmulator, namespace: str, shards: int = 4) -> list[str | None]:
    leases = [stored(emulator, namespace, shard_lease_name(shard, shards)) for shard in range(shards)]
    return [lease["spec"].get("holderIdentity") for lease in leases]


async def test_two_coordinators_split_fairly_and_hand_over_within_a_tick(
    emulator: KubeEmulator, namespace: str, store: KubernetesLeaseStore
) -> None:
    clock = Clock()
    first, second = coordinator(store, clock, "first"), coordinator(store, clock, "second")
    await first.tick()
    assert first.held() == {0, 1, 2, 3}

    clock.now = 1.0
    await second.tick()
    clock.now = 5.0
    await first.tick()  # releases its surplus in the background
    await until(lambda: holders(emulator, namespace) == ["first", "first", None, None])
    clock.now = 6.0
    await second.tick()

    assert split(first, second) == [{0, 1}, {2, 3}]
    assert stored(emulator, namespace, shard_lease_name(2, 4))["spec"]["leaseTransitions"] == 1

    clock.now = 7.0
    await first.release_all()
    assert first.held() == frozenset()
    assert emulator.read_object("leases", namespace, "slo-guard-member-first") is None
    clock.now = 7.5
    await second.tick()

    assert second.held() == {0, 1, 2, 3}
    assert holders(emulator, namespace) == ["second"] * 4
    assert second.describe() == "holds shards 0,1,2,3 of 4; fair share 4 among 1 live member"


async def test_run_forever_keeps_the_shards_until_stopped(
    emulator: KubeEmulator, namespace: str, store: KubernetesLeaseStore
) -> None:
    alone = ShardCoordinator(
        store,
        identity="alone",
        shards=2,
        on_gained=lambda shard: None,
        on_releasing=stop_passes,
        lease_duration_seconds=1,
    )
    stop = asyncio.Event()
    running = asyncio.create_task(alone.run_forever(stop))
    await until(lambda: alone.held() == {0, 1})
    await asyncio.sleep(1.5)  # past the 1 s lease duration: kept only by renewals every third of a second

    assert alone.held() == {0, 1}
    stop.set()
    await asyncio.wait_for(running, 2.0)
    await alone.release_all()
    assert holders(emulator, namespace, 2) == [None, None]
