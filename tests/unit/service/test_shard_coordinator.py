"""Shard ownership through Leases, on a fake clock and an in-memory store that honours resourceVersion
preconditions: the hash, claiming, renewing, expiry measured on the claimer's own clock, rebalancing, handover, lost
races, and a randomized simulation of three replicas that checks exclusivity and coverage at every step."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import random
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import TypeVar

import pytest

from slo_guard.service.ports import KubernetesUnavailable, Lease, LeaseConflict, LeaseRole
from slo_guard.service.sharding import (
    ShardCoordinator,
    member_lease_name,
    shard_lease_name,
    shard_of,
)

D = 15
"""Lease duration; renew period D/3 = 5 s, renew deadline 2D/3 = 10 s."""
EPOCH = datetime(2026, 12, 5, 2, 56, 50, tzinfo=UTC)


class MemoryLeases:
    """Leases as the API server keeps them: every write bumps the resourceVersion, and a write based on another
    version (or a create of an existing name) is refused with a conflict. Unlike kube-apiserver, an update of a
    missing lease conflicts instead of creating it: the coordinator never counts on either."""

    def __init__(self) -> None:
        self.leases: dict[str, Lease] = {}
        self._versions = itertools.count(1)
        self.writes = 0
        self.before_write: Callable[[Lease], Awaitable[None]] | None = None
        """Runs (once) before the next write is applied: lets a test slip another replica's move in between."""
        self.down = False

    def _stamp(self, lease: Lease) -> Lease:
        self.writes += 1
        stored = replace(lease, resource_version=str(next(self._versions)))
        self.leases[lease.name] = stored
        return stored

    def list_now(self) -> list[Lease]:
        return list(self.leases.values())

    def create_now(self, lease: Lease) -> Lease:
        if lease.name in self.leases:
            raise LeaseConflict(f"{lease.name} already exists")
        return self._stamp(lease)

    def update_now(self, lease: Lease) -> Lease:
        current = self.leases.get(lease.name)
        if current is None or current.resource_version != lease.resource_version:
            raise LeaseConflict(f"{lease.name} is not at version {lease.resource_version}")
        return self._stamp(lease)

    def delete_now(self, lease: Lease) -> None:
        current = self.leases.get(lease.name)
        if current is not None and current.resource_version != lease.resource_version:
            raise LeaseConflict(f"{lease.name} is not at version {lease.resource_version}")
        self.leases.pop(lease.name, None)

    # The LeaseStore protocol, for tests without latency.

    async def list_leases(self) -> Sequence[Lease]:
        self._check_up()
        return self.list_now()

    async def create(self, lease: Lease) -> Lease:
        await self._before(lease)
        return self.create_now(lease)

    async def update(self, lease: Lease) -> Lease:
        await self._before(lease)
        return self.update_now(lease)

    async def delete(self, lease: Lease) -> None:
        await self._before(lease)
        self.delete_now(lease)

    async def _before(self, lease: Lease) -> None:
        self._check_up()
        hook, self.before_write = self.before_write, None
        if hook is not None:
            await hook(lease)

    def _check_up(self) -> None:
        if self.down:
            raise KubernetesUnavailable("the API server is down")

    def holder(self, shard: int, shards: int) -> str:
        return self.leases[shard_lease_name(shard, shards)].holder


class Clock:
    """One fake timeline; each replica reads it through its own monotonic origin and a skewed wall clock."""

    def __init__(self) -> None:
        self.now = 0.0

    def monotonic(self, origin: float) -> Callable[[], float]:
        return lambda: origin + self.now

    def wall(self, skew: float) -> Callable[[], datetime]:
        return lambda: EPOCH + timedelta(seconds=self.now + skew)


@dataclass
class Callbacks:
    gained: list[int] = field(default_factory=list)
    releasing: list[int] = field(default_factory=list)

    def on_gained(self, shard: int) -> None:
        self.gained.append(shard)

    async def on_releasing(self, shard: int) -> None:
        self.releasing.append(shard)


def coordinator(
    store: MemoryLeases,
    clock: Clock,
    identity: str,
    *,
    shards: int = 4,
    callbacks: Callbacks | None = None,
    origin: float = 0.0,
    skew: float = 0.0,
) -> ShardCoordinator:
    callbacks = callbacks or Callbacks()
    return ShardCoordinator(
        store,
        identity=identity,
        shards=shards,
        on_gained=callbacks.on_gained,
        on_releasing=callbacks.on_releasing,
        lease_duration_seconds=D,
        monotonic=clock.monotonic(origin),
        wall_clock=clock.wall(skew),
    )


def split(*coordinators: ShardCoordinator) -> list[set[int]]:
    return [set(coordinator.held()) for coordinator in coordinators]


async def settle() -> None:
    """Let background release tasks run to their end (the fakes never wait on anything real)."""
    for _ in range(50):
        await asyncio.sleep(0)


# The hash.


def test_shard_of_is_pinned_across_processes_and_versions() -> None:
    assert shard_of("shop/checkout-availability", 16) == 3
    assert shard_of("shop/checkout-availability", 3) == 1
    assert shard_of("default/api-latency", 7) == 1
    # The first 8 bytes of sha256 themselves, so a change of the hash shows even where a modulus would hide it.
    assert shard_of("shop/checkout-availability", 2**64) == 344476960213950307


def test_shard_of_spreads_ten_thousand_keys_evenly() -> None:
    counts = Counter(shard_of(f"ns-{index % 37}/slo-{index}", 8) for index in range(10_000))
    assert set(counts) == set(range(8))
    assert all(abs(count - 1250) <= 0.1 * 1250 for count in counts.values()), counts


def test_shard_of_and_the_coordinator_refuse_nonsense() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        shard_of("a/b", 0)
    with pytest.raises(ValueError, match="valid Lease name"):
        coordinator(MemoryLeases(), Clock(), "Not_A_Name")


# One replica.


async def test_a_lone_replica_creates_and_claims_every_shard() -> None:
    store, clock, callbacks = MemoryLeases(), Clock(), Callbacks()
    alone = coordinator(store, clock, "a", callbacks=callbacks, skew=-3600.0)

    await alone.tick()

    assert alone.held() == {0, 1, 2, 3}
    assert callbacks.gained == [0, 1, 2, 3]
    lease = store.leases[shard_lease_name(2, 4)]
    stamp = EPOCH - timedelta(hours=1)
    assert (lease.holder, lease.duration_seconds, lease.transitions) == ("a", D, 0)
    assert (lease.acquire_time, lease.renew_time, lease.role) == (stamp, stamp, LeaseRole.SHARD)
    member = store.leases[member_lease_name("a")]
    assert (member.holder, member.role, member.duration_seconds) == ("a", LeaseRole.MEMBER, D)
    assert alone.describe() == "holds shards 0,1,2,3 of 4; fair share 4 among 1 live member"


async def test_renewals_move_renew_time_and_keep_the_shards() -> None:
    store, clock = MemoryLeases(), Clock()
    alone = coordinator(store, clock, "a")
    await alone.tick()
    first = store.leases[shard_lease_name(0, 4)]

    clock.now = 5.0
    await alone.tick()

    renewed = store.leases[shard_lease_name(0, 4)]
    assert renewed.renew_time == EPOCH + timedelta(seconds=5)
    assert renewed.acquire_time == first.acquire_time
    assert renewed.resource_version != first.resource_version
    assert renewed.transitions == 0
    clock.now = 14.9
    assert alone.held() == {0, 1, 2, 3}


async def test_holds_turns_false_at_the_renew_deadline_without_any_request() -> None:
    store, clock, callbacks = MemoryLeases(), Clock(), Callbacks()
    alone = coordinator(store, clock, "a", callbacks=callbacks)
    await alone.tick()
    store.down = True
    clock.now = 5.0
    await alone.tick()  # the renewal fails: the deadline still counts from t=0
    writes = store.writes

    clock.now = 9.999
    assert alone.holds(0)
    clock.now = 10.0
    assert not alone.holds(0)
    assert alone.held() == frozenset()
    assert store.writes == writes
    assert callbacks.releasing == []

    await alone.tick()
    await settle()
    assert sorted(callbacks.releasing) == [0, 1, 2, 3]


# Takeover.


async def test_a_held_lease_is_taken_over_only_after_d_on_the_claimers_own_clock() -> None:
    store, clock = MemoryLeases(), Clock()
    dead = coordinator(store, clock, "dead", skew=-7200.0)
    await dead.tick()
    # The newcomer's wall clock runs two hours ahead: comparing renewTime with it would call every lease expired.
    newcomer = coordinator(store, clock, "new", origin=1e6, skew=7200.0)

    clock.now = 1.0
    await newcomer.tick()
    for moment in (6.0, 11.0, 15.999):
        clock.now = moment
        await newcomer.tick()
        assert newcomer.held() == frozenset(), moment
        assert store.holder(0, 4) == "dead"

    clock.now = 16.0  # unchanged for D since the newcomer first saw it at t=1
    await newcomer.tick()

    assert newcomer.held() == {0, 1, 2, 3}
    lease = store.leases[shard_lease_name(0, 4)]
    assert (lease.holder, lease.transitions) == ("new", 1)
    assert lease.acquire_time == EPOCH + timedelta(seconds=16 + 7200)
    assert member_lease_name("dead") not in store.leases  # gone for good: it would pile up with every rollout


async def test_a_renewal_seen_resets_the_observation() -> None:
    store, clock = MemoryLeases(), Clock()
    holder = coordinator(store, clock, "holder", shards=1)
    other = coordinator(store, clock, "other", shards=1)
    await holder.tick()
    await other.tick()

    for moment in range(5, 60, 5):
        clock.now = float(moment)
        await holder.tick()
        await other.tick()

    assert holder.held() == {0}
    assert other.held() == frozenset()


async def test_a_409_loses_the_race_cleanly() -> None:
    store, clock = MemoryLeases(), Clock()
    loser_calls, winner_calls = Callbacks(), Callbacks()
    loser = coordinator(store, clock, "loser", shards=1, callbacks=loser_calls)
    winner = coordinator(store, clock, "winner", shards=1, callbacks=winner_calls)
    await winner.tick()
    await winner.release_all()
    await settle()
    released = store.leases[shard_lease_name(0, 1)]
    assert released.holder == ""

    async def winner_first(lease: Lease) -> None:
        if lease.role is LeaseRole.SHARD:
            await winner.tick()
        else:
            store.before_write = winner_first

    store.before_write = winner_first
    await loser.tick()  # lists a free shard, then loses the claim to the winner's conditional write

    assert loser.held() == frozenset()
    assert loser_calls.gained == []
    assert winner.held() == {0}
    assert store.holder(0, 1) == "winner"
    clock.now = 5.0
    await loser.tick()
    assert loser.held() == frozenset()


async def test_a_renewal_that_meets_a_409_loses_the_shard_and_says_so() -> None:
    store, clock, callbacks = MemoryLeases(), Clock(), Callbacks()
    holder = coordinator(store, clock, "holder", shards=2, callbacks=callbacks)
    await holder.tick()

    async def someone_else_writes(lease: Lease) -> None:
        if lease.role is LeaseRole.SHARD:
            stolen = replace(store.leases[lease.name], holder="intruder")
            store.update_now(stolen)
        else:
            store.before_write = someone_else_writes

    store.before_write = someone_else_writes
    clock.now = 5.0
    await holder.tick()
    await settle()

    assert holder.held() == {1}
    assert callbacks.releasing == [0]
    assert store.holder(0, 2) == "intruder"


async def test_a_lease_listed_with_another_holder_is_lost() -> None:
    store, clock, callbacks = MemoryLeases(), Clock(), Callbacks()
    holder = coordinator(store, clock, "holder", shards=2, callbacks=callbacks)
    await holder.tick()
    store.update_now(replace(store.leases[shard_lease_name(1, 2)], holder="intruder"))

    clock.now = 5.0
    await holder.tick()
    await settle()

    assert holder.held() == {0}
    assert callbacks.releasing == [1]


# Rebalancing and handover.


async def test_joining_members_take_only_the_surplus() -> None:
    store, clock = MemoryLeases(), Clock()
    calls = {name: Callbacks() for name in "abc"}
    a = coordinator(store, clock, "a", shards=6, callbacks=calls["a"])
    b = coordinator(store, clock, "b", shards=6, callbacks=calls["b"])
    c = coordinator(store, clock, "c", shards=6, callbacks=calls["c"])
    await a.tick()
    assert a.held() == set(range(6))

    clock.now = 1.0
    await b.tick()  # joins the count; every shard is held
    assert b.held() == frozenset()
    clock.now = 5.0
    await a.tick()  # sees b below its share of 3: releases the highest three
    await settle()
    assert a.held() == {0, 1, 2}
    assert sorted(calls["a"].releasing) == [3, 4, 5]
    assert {store.holder(shard, 6) for shard in (3, 4, 5)} == {""}
    clock.now = 6.0
    await b.tick()  # a released shard is unowned for at most one renew period
    assert b.held() == {3, 4, 5}
    assert calls["b"].gained == [3, 4, 5]

    clock.now = 7.0
    await c.tick()
    clock.now = 10.0
    await a.tick()
    clock.now = 11.0
    await b.tick()
    await settle()
    clock.now = 12.0
    await c.tick()

    assert split(a, b, c) == [{0, 1}, {3, 4}, {2, 5}]
    moved = {name: len(callbacks.releasing) for name, callbacks in calls.items()}
    assert moved == {"a": 4, "b": 1, "c": 0}  # 3 for b's arrival, then one each from a and b for c
    assert calls["a"].gained == [0, 1, 2, 3, 4, 5]
    assert calls["c"].gained == [2, 5]
    assert b.describe() == "holds shards 3,4 of 6; fair share 2 among 3 live members"


async def test_an_uneven_split_stays_put() -> None:
    store, clock = MemoryLeases(), Clock()
    a = coordinator(store, clock, "a", shards=3)
    b = coordinator(store, clock, "b", shards=3)
    await a.tick()
    clock.now = 1.0
    await b.tick()
    clock.now = 5.0
    await a.tick()
    await settle()
    clock.now = 6.0
    await b.tick()
    for moment in range(10, 40, 5):
        clock.now = float(moment)
        await a.tick()
        await settle()
        await b.tick()

    assert split(a, b) == [{0, 1}, {2}]


async def test_release_all_hands_over_at_the_next_tick() -> None:
    store, clock = MemoryLeases(), Clock()
    leaving_calls = Callbacks()
    leaving = coordinator(store, clock, "leaving", callbacks=leaving_calls)
    staying = coordinator(store, clock, "staying")
    await leaving.tick()
    clock.now = 1.0
    await staying.tick()
    clock.now = 5.0
    await leaving.tick()
    await settle()
    clock.now = 6.0
    await staying.tick()
    assert split(leaving, staying) == [{0, 1}, {2, 3}]

    clock.now = 7.0
    await leaving.release_all()

    assert leaving.held() == frozenset()
    assert sorted(leaving_calls.releasing) == [0, 1, 2, 3]  # 2 and 3 for the rebalance, 0 and 1 now
    assert member_lease_name("leaving") not in store.leases
    assert {store.holder(shard, 4) for shard in (0, 1)} == {""}
    clock.now = 7.5
    await staying.tick()
    assert staying.held() == {0, 1, 2, 3}


async def test_an_unavailable_api_only_lets_the_clock_decide() -> None:
    store, clock = MemoryLeases(), Clock()
    a = coordinator(store, clock, "a", shards=2)
    await a.tick()
    store.down = True
    clock.now = 5.0
    await a.tick()
    assert a.held() == {0, 1}
    store.down = False
    clock.now = 9.0
    await a.tick()  # renewed in time: nothing lost
    clock.now = 18.0
    assert a.held() == {0, 1}


# Three replicas in a randomized interleaving.

LATENCIES = (0.0, 1 / 64, 1 / 16, 1 / 8, 1 / 4)
SHARDS = 5
SLACK = 3.0
STEP = 0.25
"""Seconds between checks when nothing else happens."""
T = TypeVar("T")
"""Seconds a tick may spend on its requests (each up to twice the highest latency) before its claims land."""


class SimClock(Clock):
    """Discrete-event time: a sleeper wakes when the simulation reaches its instant."""

    def __init__(self) -> None:
        super().__init__()
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    async def sleep(self, seconds: float) -> None:
        woken = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self.now + seconds, next(self._order), woken))
        await woken

    def next_wake(self) -> float | None:
        return self._sleepers[0][0] if self._sleepers else None

    def wake_due(self) -> int:
        woke = 0
        while self._sleepers and self._sleepers[0][0] <= self.now:
            _, _, woken = heapq.heappop(self._sleepers)
            if not woken.done():
                woken.set_result(None)
                woke += 1
        return woke


class Link:
    """One replica's way to the shared store: each request takes effect at one instant between a random delay out
    and a random delay back, and fails while the replica is cut off (an answer lost after the write went through
    included)."""

    def __init__(self, store: MemoryLeases, clock: SimClock, rng: random.Random) -> None:
        self.store = store
        self.clock = clock
        self.rng = rng
        self.cut = False

    async def _call(self, operation: Callable[[], T]) -> T:
        await self.clock.sleep(self.rng.choice(LATENCIES))
        if self.cut:
            raise KubernetesUnavailable("cut off")
        result = operation()
        await self.clock.sleep(self.rng.choice(LATENCIES))
        if self.cut:
            raise KubernetesUnavailable("the answer was lost")
        return result

    async def list_leases(self) -> Sequence[Lease]:
        return await self._call(self.store.list_now)

    async def create(self, lease: Lease) -> Lease:
        return await self._call(lambda: self.store.create_now(lease))

    async def update(self, lease: Lease) -> Lease:
        return await self._call(lambda: self.store.update_now(lease))

    async def delete(self, lease: Lease) -> None:
        await self._call(lambda: self.store.delete_now(lease))


@dataclass(eq=False)
class Replica:
    coordinator: ShardCoordinator
    link: Link
    next_tick: float
    ticking: bool = True
    tick: asyncio.Task[float] | None = None
    leaving: asyncio.Task[None] | None = None


class Simulation:
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.clock = SimClock()
        self.store = MemoryLeases()
        self.replicas: list[Replica] = []
        self.names = itertools.count()
        self.heal_at: list[tuple[float, Replica]] = []
        self.last_change = 0.0
        self.checks = 0

    def start_replica(self) -> None:
        link = Link(self.store, self.clock, self.rng)

        async def on_releasing(shard: int) -> None:
            await self.clock.sleep(self.rng.choice((0.0, 0.5, 2.0)))  # passes in flight finish

        replica = ShardCoordinator(
            link,
            identity=f"replica-{next(self.names)}",
            shards=SHARDS,
            on_gained=lambda shard: None,
            on_releasing=on_releasing,
            lease_duration_seconds=D,
            monotonic=self.clock.monotonic(self.rng.uniform(0, 1e6)),
            wall_clock=self.clock.wall(self.rng.uniform(-3600, 3600)),
        )
        self.replicas.append(Replica(replica, link, next_tick=self.clock.now))

    def healthy(self) -> list[Replica]:
        return [replica for replica in self.replicas if replica.ticking and not replica.link.cut]

    def disturb(self) -> None:
        """One random change: a replica is killed, cut off for a while, leaves gracefully, or a new one joins."""
        healthy = self.healthy()
        choice = self.rng.choice(("kill", "partition", "leave", "join"))
        if len(healthy) < 2 or (choice == "join" and len(healthy) < 4):
            self.start_replica()
        elif choice == "kill":
            victim = self.rng.choice(healthy)
            victim.ticking, victim.link.cut = False, True
        elif choice == "partition":
            victim = self.rng.choice(healthy)
            victim.link.cut = True
            self.heal_at.append((self.clock.now + self.rng.uniform(1, 3 * D), victim))
        elif choice == "leave":
            victim = self.rng.choice(healthy)
            victim.ticking = False
            victim.leaving = asyncio.create_task(victim.coordinator.release_all())
        self.last_change = self.clock.now

    async def run(self, *, until: float) -> None:
        joins = sorted([0.0, *(self.rng.uniform(0, 2 * D) for _ in range(2))])
        next_disturbance = 3.0 * D
        while self.clock.now <= until:
            changes = self.last_change
            while joins and joins[0] <= self.clock.now:
                joins.pop(0)
                self.start_replica()
                self.last_change = self.clock.now
            if self.clock.now >= next_disturbance:
                self.disturb()
                next_disturbance = self.clock.now + self.rng.uniform(D, 6 * D)
            for moment, replica in [entry for entry in self.heal_at if entry[0] <= self.clock.now]:
                self.heal_at.remove((moment, replica))
                replica.link.cut = False
                self.last_change = self.clock.now
            woke = self.clock.wake_due()
            for replica in self.replicas:
                if replica.ticking and replica.tick is None and replica.next_tick <= self.clock.now:
                    replica.tick = asyncio.create_task(replica.coordinator.tick())
                    woke += 1
            if woke or self.last_change != changes:
                await settle()
            for replica in self.replicas:
                if replica.tick is not None and replica.tick.done():
                    replica.next_tick = self.clock.now + replica.tick.result()  # as run_forever waits
                    replica.tick = None
            self.check()
            self.clock.now = self.next_instant(next_disturbance, joins)
        for replica in self.replicas:
            replica.link.cut = True
        self.clock.now += 10 * D
        self.clock.wake_due()
        await settle()

    def next_instant(self, next_disturbance: float, joins: Sequence[float]) -> float:
        # A fine grid as well: holding ends by the clock alone, between any two requests.
        candidates = [next_disturbance, self.clock.now + STEP, *joins, *(moment for moment, _ in self.heal_at)]
        wake = self.clock.next_wake()
        if wake is not None:
            candidates.append(wake)
        candidates += [replica.next_tick for replica in self.replicas if replica.ticking and replica.tick is None]
        return max(self.clock.now, min(candidates))

    def check(self) -> None:
        self.checks += 1
        holders = {
            shard: [replica.coordinator.identity for replica in self.replicas if replica.coordinator.holds(shard)]
            for shard in range(SHARDS)
        }
        doubled = {shard: names for shard, names in holders.items() if len(names) > 1}
        assert not doubled, f"t={self.clock.now}: shards held twice: {doubled}"
        if self.clock.now >= self.last_change + D + D / 3 + SLACK:
            unowned = [shard for shard, names in holders.items() if not names]
            assert not unowned, f"t={self.clock.now}: shards {unowned} unowned since the change at {self.last_change}"


@pytest.mark.parametrize("seed", range(6))
async def test_three_replicas_never_hold_a_shard_twice_and_cover_every_shard(seed: int) -> None:
    simulation = Simulation(seed)

    await simulation.run(until=1200.0)

    assert simulation.checks > 1000
    assert len(simulation.replicas) >= 3
