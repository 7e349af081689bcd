"""When each SLO is evaluated: a fixed rate per SLO, with phases spread across the interval, from one scheduler.

One heap of next-due times replaces a long-lived task per SLO: an idle SLO costs one heap entry and one small
record, and at most `max_in_flight` passes run at once, whatever the number of SLOs.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import heapq
import itertools
import logging
import math
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass

from slo_guard.service.health import EvaluationHeartbeats

logger = logging.getLogger("slo_guard.schedule")


def phase_offset(key: str, interval: float) -> float:
    """A stable offset in [0, interval) derived from the SLO's identity, so restarts keep the same spread."""
    digest = hashlib.sha256(key.encode()).digest()
    fraction = int.from_bytes(digest[:8], "big") / 2**64
    return fraction * interval


def next_slot(*, now: float, anchor: float, interval: float) -> float:
    """The first slot `anchor + k * interval` strictly after `now`.

    A pass that overran its interval skips the missed slots instead of running them back to back.
    """
    if now < anchor:
        return anchor
    return anchor + (math.floor((now - anchor) / interval) + 1) * interval


@dataclass(slots=True, eq=False)
class _Entry:
    anchor: float
    interval: float
    previous_start: float | None = None
    due: float = -math.inf
    """The due time of its one live heap item; the others were superseded by `run_now`."""
    again: bool = False
    """`run_now` was called while its pass ran: run once more when that pass ends."""


class PassScheduler:
    """Runs `run_pass(key)` for every added SLO once per its interval, one pass per SLO at a time."""

    def __init__(
        self,
        run_pass: Callable[[str], Awaitable[None]],
        *,
        heartbeats: EvaluationHeartbeats,
        max_in_flight: int,
        on_spacing: Callable[[float], None] = lambda seconds: None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._run_pass = run_pass
        self._heartbeats = heartbeats
        self._on_spacing = on_spacing
        self._clock = clock
        self._entries: dict[str, _Entry] = {}
        self._due: list[tuple[float, int, str, _Entry]] = []
        self._order = itertools.count()
        """Breaks ties between equal due times without comparing entries."""
        self._in_flight: dict[str, asyncio.Task[None]] = {}
        self._slots = asyncio.Semaphore(max_in_flight)
        self._changed = asyncio.Event()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._entries))

    def add(self, key: str, *, interval: float) -> None:
        """Schedule a new SLO at its phase, or change a known one's interval from its next slot on."""
        entry = self._entries.get(key)
        if entry is not None:
            entry.interval = interval
            return
        now = self._clock()
        entry = _Entry(anchor=now + phase_offset(key, interval), interval=interval)
        self._entries[key] = entry
        self._heartbeats.beat(key, interval=interval, now=now)
        self._push(entry.anchor, key, entry)

    def run_now(self, key: str, *, slack: float) -> None:
        """Start the SLO's pass now, because data it waited for has just arrived, and put its next slot one
        interval plus `slack` later: that data's next arrival, not the SLO's phase, paces it from then on, and the
        slot only runs when the data stops coming."""
        entry = self._entries.get(key)
        if entry is None:
            return
        now = self._clock()
        entry.anchor = now + entry.interval + slack
        if key in self._in_flight:
            entry.again = True
        elif entry.due > now:
            self._push(now, key, entry)

    def remove(self, key: str) -> None:
        """No pass starts for this SLO from now on; one in flight runs to its end (see `drain`)."""
        if self._entries.pop(key, None) is not None:
            self._heartbeats.forget(key)

    async def drain(self, keys: Iterable[str], *, within: float | None = None) -> None:
        """Wait for the passes in flight of these SLOs to end, or for `within` seconds."""
        running = [task for key in keys if (task := self._in_flight.get(key)) is not None]
        if running:
            await asyncio.wait(running, timeout=within)

    async def run(self) -> None:
        """Start every pass that is due, forever; a slot missed while all pass slots were busy is skipped."""
        while True:
            now = self._clock()
            while self._due and self._due[0][0] <= now:
                due, _, key, entry = heapq.heappop(self._due)
                if self._entries.get(key) is not entry or due != entry.due:
                    continue  # removed, re-added (its new entry has a heap item of its own), or run_now superseded it
                await self._slots.acquire()
                self._in_flight[key] = asyncio.create_task(self._pass(key, entry), name=f"slo-guard-pass {key}")
            self._changed.clear()
            timeout = self._due[0][0] - self._clock() if self._due else None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), timeout)

    async def close(self, *, grace: float) -> None:
        """Give the passes in flight up to `grace` seconds to end, then cancel them."""
        running = list(self._in_flight.values())
        if running:
            _, pending = await asyncio.wait(running, timeout=grace)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    async def _pass(self, key: str, entry: _Entry) -> None:
        started = self._clock()
        if entry.previous_start is not None:
            self._on_spacing(started - entry.previous_start)
        entry.previous_start = started
        # A pass waiting for write tokens is throttled, not stuck: liveness gives a running pass longer.
        self._heartbeats.beat(key, interval=entry.interval, now=started, in_pass=True)
        try:
            await self._run_pass(key)
        except Exception:
            # One SLO's failure must never end its schedule or touch the others; its next slot retries.
            logger.exception("evaluation pass failed", extra={"slo": key})
        finally:
            self._slots.release()
            if self._in_flight.get(key) is asyncio.current_task():
                del self._in_flight[key]
            if self._entries.get(key) is entry:
                now = self._clock()
                self._heartbeats.beat(key, interval=entry.interval, now=now)
                due = now if entry.again else next_slot(now=now, anchor=entry.anchor, interval=entry.interval)
                entry.again = False
                self._push(due, key, entry)

    def _push(self, due: float, key: str, entry: _Entry) -> None:
        entry.due = due
        heapq.heappush(self._due, (due, next(self._order), key, entry))
        self._changed.set()
