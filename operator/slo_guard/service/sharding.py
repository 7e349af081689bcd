"""Shard ownership: replicas split SLOs by a stable hash of namespace/name and hold each shard through a Lease.

Two clocks are never compared across machines. A holder stops treating a shard as its own once it has not renewed
the lease within the renew deadline R = 2D/3 of its last successful renewal, on its own monotonic clock; another
replica takes a held lease over only after it has seen the lease unchanged for D on its own monotonic clock, as
client-go's leader election does. R < D, so the old holder has stopped before anyone else may start. Every write is
conditional on the resourceVersion read, so of two replicas racing for a lease exactly one wins.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import inspect
import logging
import math
import re
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from slo_guard.service.ports import KubernetesUnavailable, Lease, LeaseConflict, LeaseRecord, LeaseRole, LeaseStore

logger = logging.getLogger("slo_guard.sharding")

DEFAULT_LEASE_DURATION_SECONDS = 15
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_NAME_LIMIT = 253
_EXPIRY_MARGIN = 0.001


def shard_of(key: str, shards: int) -> int:
    """The shard of the SLO `key` ("namespace/name"): the same in every process and version (never `hash()`)."""
    if shards < 1:
        raise ValueError(f"shards must be at least 1, got {shards}")
    digest = hashlib.sha256(key.encode()).digest()
    return int.from_bytes(digest[:8], "big") % shards


def shard_lease_name(shard: int, shards: int) -> str:
    return f"slo-guard-shard-{shard}-of-{shards}"


def member_lease_name(identity: str) -> str:
    return f"slo-guard-member-{identity}"


@dataclass(frozen=True, slots=True)
class _Holding:
    lease: Lease
    renewed_at: float
    """Own monotonic instant the last successful renewal was sent: sending time, so a slow answer never extends it."""


@dataclass(frozen=True, slots=True)
class _Sighting:
    record: LeaseRecord
    since: float
    """Own monotonic instant this record was first seen."""


@dataclass(frozen=True, slots=True)
class _Round:
    """What one listing says, as this replica sees it."""

    shard_leases: Mapping[int, Lease]
    members: frozenset[str]
    """Identities with a live member lease, this replica included."""
    held_by_others: Mapping[str, int]
    """Live shards per other live member."""
    fair_share: int
    expiries: Sequence[float]
    """Own monotonic instants the leases other replicas hold expire, unless renewed."""

    def deficit(self, identity: str) -> int:
        """Shards the other live members lack to reach their fair share."""
        others = (member for member in self.members if member != identity)
        return sum(max(0, self.fair_share - self.held_by_others.get(member, 0)) for member in others)


def _utc_now() -> datetime:
    return datetime.now(UTC)


class ShardCoordinator:
    """Holds this replica's share of the shard Leases: claims, renews, rebalances and releases them.

    `identity` must be unique per process (e.g. the pod name with a random suffix): a lease naming this identity
    counts as this process's own. `on_gained(shard)` (sync or async) starts a shard's SLOs; `on_releasing(shard)` is
    awaited before a shard is handed over and also runs when a shard is lost; `holds(shard)` turns False by the clock
    alone once a renewal is overdue, so check it before every write on the shard's behalf.
    """

    def __init__(
        self,
        store: LeaseStore,
        *,
        identity: str,
        shards: int,
        on_gained: Callable[[int], object],
        on_releasing: Callable[[int], Awaitable[object]],
        lease_duration_seconds: int = DEFAULT_LEASE_DURATION_SECONDS,
        monotonic: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        if shards < 1:
            raise ValueError(f"shards must be at least 1, got {shards}")
        if lease_duration_seconds < 1:
            raise ValueError(f"the lease duration must be at least 1 s, got {lease_duration_seconds}")
        member_name = member_lease_name(identity)
        if len(member_name) > _NAME_LIMIT or not _DNS_SUBDOMAIN.match(member_name):
            raise ValueError(f"identity {identity!r} does not make a valid Lease name ({member_name})")
        self.identity = identity
        self.shards = shards
        self.lease_duration = lease_duration_seconds
        self.renew_interval = lease_duration_seconds / 3
        self.renew_deadline = 2 * lease_duration_seconds / 3
        self._store = store
        self._on_gained = on_gained
        self._on_releasing = on_releasing
        self._monotonic = monotonic
        self._wall_clock = wall_clock
        self._member_name = member_name
        self._shard_names = {shard_lease_name(shard, shards): shard for shard in range(shards)}
        self._member: Lease | None = None
        self._held: dict[int, _Holding] = {}
        self._releasing: dict[int, asyncio.Task[None]] = {}
        self._sightings: dict[str, _Sighting] = {}
        self._stopped: dict[str, LeaseRecord] = {}
        """Replicas seen to let a shard lease expire, with the record of their member lease at that time."""
        self._last_round: _Round | None = None
        # tick() and release_all() must not interleave their reads and writes.
        self._lock = asyncio.Lock()

    def holds(self, shard: int) -> bool:
        holding = self._held.get(shard)
        return holding is not None and self._monotonic() - holding.renewed_at < self.renew_deadline

    def held(self) -> frozenset[int]:
        return frozenset(shard for shard in self._held if self.holds(shard))

    def describe(self) -> str:
        """One line for logs, e.g. `holds shards 0,2 of 4; fair share 2 among 2 live members`."""
        held = ",".join(str(shard) for shard in sorted(self.held())) or "none"
        text = f"holds shards {held} of {self.shards}"
        if self._last_round is None:
            return text
        members = len(self._last_round.members)
        noun = "member" if members == 1 else "members"
        return f"{text}; fair share {self._last_round.fair_share} among {members} live {noun}"

    async def run_forever(self, stop: asyncio.Event) -> None:
        """Tick until `stop` is set; call release_all() afterwards to hand over at once."""
        while not stop.is_set():
            pause = await self.tick()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), pause)

    async def tick(self) -> float:
        """One round: drop overdue shards, renew the member and shard leases, release surplus, claim free ones.

        Returns the seconds until the next round is due: the rest of the renew interval, or less when a lease of
        another replica expires or a renew deadline of this one passes sooner, so neither waits a whole interval.
        """
        started = self._monotonic()
        async with self._lock:
            await self._round()
        now = self._monotonic()
        upcoming = [moment for moment in self._wake_ups() if moment > now]
        return max(0.0, min([started + self.renew_interval, *upcoming]) - now)

    async def release_all(self) -> None:
        """Hand every shard over (after on_releasing) and leave the member count, so others take over at their
        next tick instead of after the lease duration."""
        async with self._lock:
            # Leave the count first: others then see a larger fair share and claim each shard as it comes free.
            if self._member is not None:
                try:
                    await self._store.delete(self._member)
                except (LeaseConflict, KubernetesUnavailable) as error:
                    logger.warning("could not delete member lease %s: %s", self._member_name, error)
                self._member = None
            for shard in sorted(self._held):
                self._start_release(shard, self._held.pop(shard).lease)
            await asyncio.gather(*self._releasing.values())

    # One round.

    async def _round(self) -> None:
        self._drop_overdue()
        listing = await self._list()
        await self._renew_member(listing)
        await self._renew_held(listing)
        if listing is None:
            return
        current = self._observe(listing)
        self._last_round = current
        self._release_surplus(current)
        await self._claim(current)
        await self._delete_expired_members(listing)

    async def _delete_expired_members(self, listing: Mapping[str, Lease]) -> None:
        """Member leases of replicas gone for good would pile up with every rollout; one only cut off for a while
        creates its member lease again when it is back. Conditional: a member that renewed in between keeps it."""
        now = self._monotonic()
        for lease in listing.values():
            if lease.role is LeaseRole.MEMBER and lease.holder != self.identity and self._expired(lease, now):
                try:
                    await self._store.delete(lease)
                except (LeaseConflict, KubernetesUnavailable) as error:
                    logger.debug("left expired member lease %s: %s", lease.name, error)

    def _wake_ups(self) -> list[float]:
        """Own monotonic instants the next round should not miss by much."""
        deadlines = [holding.renewed_at + self.renew_deadline for holding in self._held.values()]
        if self._last_round is None:
            return deadlines
        # A hair past expiry, so the round at that instant surely finds the lease expired.
        return deadlines + [moment + _EXPIRY_MARGIN for moment in self._last_round.expiries]

    def _drop_overdue(self) -> None:
        for shard in sorted(self._held):
            if not self.holds(shard):
                del self._held[shard]
                logger.warning("lost shard %d: its lease was not renewed within %g s", shard, self.renew_deadline)
                self._start_release(shard, None)

    async def _list(self) -> dict[str, Lease] | None:
        try:
            leases = await self._store.list_leases()
        except KubernetesUnavailable as error:
            logger.warning("could not list shard leases: %s", error)
            return None
        return {lease.name: lease for lease in leases}

    async def _renew_member(self, listing: Mapping[str, Lease] | None) -> None:
        current = self._member if listing is None else listing.get(self._member_name)
        stamp = self._wall_clock()
        try:
            if current is not None:
                renewal = replace(current, holder=self.identity, duration_seconds=self.lease_duration, renew_time=stamp)
                self._member = await self._store.update(renewal)
            elif listing is not None:
                fresh = Lease(self._member_name, LeaseRole.MEMBER, self.identity, self.lease_duration, stamp, stamp)
                self._member = await self._store.create(fresh)
        except LeaseConflict:
            self._member = None  # read it again at the next tick
        except KubernetesUnavailable as error:
            logger.warning("could not renew member lease %s: %s", self._member_name, error)

    async def _renew_held(self, listing: Mapping[str, Lease] | None) -> None:
        renewals: list[Awaitable[None]] = []
        for shard in sorted(self._held):
            lease = self._held[shard].lease
            if listing is not None:
                listed = listing.get(lease.name)
                if listed is None or listed.holder != self.identity:
                    holder = "nobody" if listed is None else repr(listed.holder or "nobody")
                    self._lose(shard, f"its lease names {holder}")
                    continue
                lease = listed
            renewals.append(self._renew(shard, lease))
        await asyncio.gather(*renewals)

    async def _renew(self, shard: int, lease: Lease) -> None:
        sent_at = self._monotonic()
        renewal = replace(lease, duration_seconds=self.lease_duration, renew_time=self._wall_clock())
        try:
            renewed = await self._store.update(renewal)
        except LeaseConflict:
            self._lose(shard, "another replica changed its lease")
            return
        except KubernetesUnavailable as error:
            logger.warning("could not renew shard %d: %s", shard, error)
            return
        if shard in self._held:
            self._held[shard] = _Holding(renewed, sent_at)

    def _observe(self, listing: Mapping[str, Lease]) -> _Round:
        now = self._monotonic()
        relevant = {
            name: lease
            for name, lease in listing.items()
            if (lease.role is LeaseRole.SHARD and name in self._shard_names) or lease.role is LeaseRole.MEMBER
        }
        for name, lease in relevant.items():
            sighting = self._sightings.get(name)
            if sighting is None or sighting.record != lease.record:
                self._sightings[name] = _Sighting(lease.record, now)
        self._sightings = {name: self._sightings[name] for name in relevant}
        shard_leases = {
            self._shard_names[name]: lease for name, lease in relevant.items() if lease.role is LeaseRole.SHARD
        }
        foreign = [lease for lease in relevant.values() if lease.holder not in ("", self.identity)]
        self._note_stopped(foreign, now)
        members = {
            lease.holder
            for lease in foreign
            if lease.role is LeaseRole.MEMBER and lease.holder not in self._stopped and not self._expired(lease, now)
        }
        members.add(self.identity)
        held_by_others = Counter(
            lease.holder
            for lease in foreign
            if lease.role is LeaseRole.SHARD and lease.holder in members and not self._expired(lease, now)
        )
        return _Round(
            shard_leases=shard_leases,
            members=frozenset(members),
            held_by_others=held_by_others,
            fair_share=math.ceil(self.shards / len(members)),
            expiries=[self._expiry(lease) for lease in foreign],
        )

    def _note_stopped(self, foreign: Sequence[Lease], now: float) -> None:
        """A live replica renews every shard it holds, so one that let a shard lease expire has stopped (or is cut
        off): it leaves the count at once, not when its member lease expires too (maybe a renew period later), and
        stays out until it renews its member lease again."""
        member_leases = {lease.holder: lease for lease in foreign if lease.role is LeaseRole.MEMBER}
        for lease in foreign:
            if lease.role is LeaseRole.SHARD and self._expired(lease, now) and lease.holder in member_leases:
                self._stopped[lease.holder] = member_leases[lease.holder].record
        self._stopped = {
            holder: record
            for holder, record in self._stopped.items()
            if holder in member_leases and member_leases[holder].record == record
        }

    def _expired(self, lease: Lease, now: float) -> bool:
        """Unchanged for its duration on this replica's clock: its holder has stopped (or is cut off)."""
        return now >= self._expiry(lease)

    def _expiry(self, lease: Lease) -> float:
        return self._sightings[lease.name].since + (lease.duration_seconds or self.lease_duration)

    def _release_surplus(self, current: _Round) -> None:
        # Only when another member is below its share: a surplus nobody takes would just sit unowned.
        surplus = min(len(self._held) - current.fair_share, current.deficit(self.identity))
        for shard in sorted(self._held, reverse=True)[: max(0, surplus)]:
            logger.info("releasing shard %d to a replica below its fair share of %d", shard, current.fair_share)
            self._start_release(shard, self._held.pop(shard).lease)

    async def _claim(self, current: _Round) -> None:
        # Coverage beats fairness: with no other member below its share, take whatever is free.
        others_below = current.deficit(self.identity) > 0
        room = current.fair_share - len(self._held) if others_below else self.shards
        now = self._monotonic()
        for shard in range(self.shards):
            if room <= 0:
                return
            lease = current.shard_leases.get(shard)
            if not self._claimable(shard, lease, now):
                continue
            try:
                taken = await self._take(shard, lease)
            except KubernetesUnavailable as error:
                logger.warning("could not claim shard %d: %s", shard, error)
                return
            if taken:
                room -= 1

    def _claimable(self, shard: int, lease: Lease | None, now: float) -> bool:
        if shard in self._held or shard in self._releasing:
            return False
        if lease is None or lease.holder in ("", self.identity):
            return True
        return self._expired(lease, now)

    async def _take(self, shard: int, lease: Lease | None) -> bool:
        sent_at = self._monotonic()
        stamp = self._wall_clock()
        try:
            if lease is None:
                name = shard_lease_name(shard, self.shards)
                fresh = Lease(name, LeaseRole.SHARD, self.identity, self.lease_duration, stamp, stamp)
                taken = await self._store.create(fresh)
            else:
                new_holder = lease.holder != self.identity
                claim = replace(
                    lease,
                    holder=self.identity,
                    duration_seconds=self.lease_duration,
                    acquire_time=stamp if new_holder else lease.acquire_time,
                    renew_time=stamp,
                    transitions=lease.transitions + int(new_holder),
                )
                taken = await self._store.update(claim)
        except LeaseConflict:
            logger.debug("another replica claimed shard %d first", shard)
            return False
        self._held[shard] = _Holding(taken, sent_at)
        previous = "" if lease is None or lease.holder in ("", self.identity) else f" from {lease.holder}"
        logger.info("took shard %d%s", shard, previous)
        try:
            gained = self._on_gained(shard)
            if inspect.isawaitable(gained):
                await gained
        except Exception:
            logger.exception("starting shard %d failed", shard)
        return True

    # Handing over.

    def _lose(self, shard: int, why: str) -> None:
        del self._held[shard]
        logger.warning("lost shard %d: %s", shard, why)
        self._start_release(shard, None)

    def _start_release(self, shard: int, lease: Lease | None) -> None:
        """Run on_releasing in the background (passes in flight may take a while; renewals must not wait), then
        clear the lease's holder when `lease` is given."""
        task = asyncio.create_task(self._release(shard, lease), name=f"slo-guard-release-shard-{shard}")
        self._releasing[shard] = task

        def forget(done: asyncio.Task[None]) -> None:
            if self._releasing.get(shard) is done:
                del self._releasing[shard]

        task.add_done_callback(forget)

    async def _release(self, shard: int, lease: Lease | None) -> None:
        try:
            await self._on_releasing(shard)
        except Exception:
            logger.exception("stopping shard %d failed; handing it over anyway", shard)
        if lease is None:
            return
        try:
            await self._store.update(replace(lease, holder=""))
        except LeaseConflict:
            logger.debug("shard %d changed hands before its release", shard)
        except KubernetesUnavailable as error:
            wait = lease.duration_seconds or self.lease_duration
            logger.warning("could not release shard %d (others take it over after %d s): %s", shard, wait, error)
        else:
            logger.info("released shard %d", shard)
