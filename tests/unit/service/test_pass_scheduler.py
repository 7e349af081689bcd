"""The one scheduler behind every SLO's passes: spread phases, one pass per SLO at a time, missed slots skipped,
bounded concurrency, removal that lets a pass in flight finish, and liveness per SLO."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest

from slo_guard.service.health import EvaluationHeartbeats
from slo_guard.service.schedule import PassScheduler, phase_offset

pytestmark = pytest.mark.asyncio


class Recorder:
    def __init__(self, *, duration: float = 0.0, failing: frozenset[str] = frozenset()) -> None:
        self.starts: dict[str, list[float]] = defaultdict(list)
        self.ends: dict[str, list[float]] = defaultdict(list)
        self.duration = duration
        self.failing = failing
        self.running = 0
        self.most_running = 0

    async def __call__(self, key: str) -> None:
        self.starts[key].append(time.monotonic())
        self.running += 1
        self.most_running = max(self.most_running, self.running)
        try:
            await asyncio.sleep(self.duration)
            if key in self.failing:
                raise RuntimeError("boom")
        finally:
            self.running -= 1
            self.ends[key].append(time.monotonic())


@asynccontextmanager
async def running(
    run_pass: Callable[[str], Awaitable[None]], *, max_in_flight: int = 64
) -> AsyncIterator[tuple[PassScheduler, EvaluationHeartbeats, list[float]]]:
    heartbeats = EvaluationHeartbeats()
    spacings: list[float] = []
    scheduler = PassScheduler(run_pass, heartbeats=heartbeats, max_in_flight=max_in_flight, on_spacing=spacings.append)
    task = asyncio.create_task(scheduler.run())
    try:
        yield scheduler, heartbeats, spacings
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await scheduler.close(grace=1.0)


async def test_each_slo_starts_at_its_own_phase_and_then_once_per_interval() -> None:
    recorder = Recorder()
    interval = 0.4
    keys = [f"shop/slo-{index}" for index in range(40)]
    async with running(recorder) as (scheduler, _, spacings):
        added = time.monotonic()
        for key in keys:
            scheduler.add(key, interval=interval)
        await asyncio.sleep(3 * interval + 0.1)
    for key in keys:
        first = recorder.starts[key][0] - added
        assert first == pytest.approx(phase_offset(key, interval), abs=0.05), key
        assert len(recorder.starts[key]) in (3, 4), key
    assert spacings
    assert all(interval * 0.9 < spacing < interval * 1.25 for spacing in spacings)
    offsets = sorted(phase_offset(key, interval) for key in keys)
    assert offsets[0] < interval / 4, "phases spread over the interval"
    assert offsets[-1] > 3 * interval / 4, "phases spread over the interval"


async def test_a_pass_longer_than_its_interval_skips_the_missed_slots_instead_of_bursting() -> None:
    recorder = Recorder(duration=0.25)
    async with running(recorder) as (scheduler, _, _spacings):
        scheduler.add("shop/slow", interval=0.1)
        await asyncio.sleep(1.2)
    starts = recorder.starts["shop/slow"]
    ends = recorder.ends["shop/slow"]
    assert len(starts) >= 3
    for previous_end, next_start in zip(ends, starts[1:], strict=False):
        assert next_start >= previous_end, "one pass at a time per SLO"
    gaps = [later - earlier for earlier, later in itertools.pairwise(starts)]
    assert all(gap >= 0.29 for gap in gaps), f"a slot 0.1 s after the last was run late: {gaps}"


async def test_no_more_passes_run_at_once_than_the_bound() -> None:
    recorder = Recorder(duration=0.2)
    async with running(recorder, max_in_flight=3) as (scheduler, _, _spacings):
        for index in range(12):
            scheduler.add(f"shop/slo-{index}", interval=0.05)
        await asyncio.sleep(1.0)
    assert recorder.most_running == 3
    assert len(recorder.starts) == 12, "every SLO gets its turn"


async def test_a_removed_slo_gets_no_new_pass_and_its_pass_in_flight_ends() -> None:
    recorder = Recorder(duration=0.3)
    async with running(recorder) as (scheduler, heartbeats, _spacings):
        scheduler.add("shop/gone", interval=0.05)
        await asyncio.sleep(0.1)
        assert recorder.running == 1
        scheduler.remove("shop/gone")
        assert "shop/gone" not in scheduler
        assert "shop/gone" not in heartbeats
        await scheduler.drain(["shop/gone"])
        assert recorder.ends["shop/gone"], "drain waited for the pass in flight"
        await asyncio.sleep(0.3)
    assert len(recorder.starts["shop/gone"]) == 1


async def test_a_failing_pass_is_retried_at_its_next_slot_and_spares_the_others() -> None:
    recorder = Recorder(failing=frozenset({"shop/broken"}))
    async with running(recorder) as (scheduler, _, _spacings):
        scheduler.add("shop/broken", interval=0.1)
        scheduler.add("shop/fine", interval=0.1)
        await asyncio.sleep(0.55)
    assert len(recorder.starts["shop/broken"]) >= 4
    assert len(recorder.starts["shop/fine"]) >= 4


async def test_a_changed_interval_applies_from_the_next_slot() -> None:
    recorder = Recorder()
    async with running(recorder) as (scheduler, _, _spacings):
        scheduler.add("shop/checkout", interval=0.1)
        await asyncio.sleep(0.35)
        scheduler.add("shop/checkout", interval=0.5)
        before = len(recorder.starts["shop/checkout"])
        await asyncio.sleep(0.6)
    assert 1 <= len(recorder.starts["shop/checkout"]) - before <= 2


async def test_liveness_sees_an_slo_whose_passes_stopped_coming() -> None:
    gate = asyncio.Event()
    started: list[str] = []

    async def stuck(key: str) -> None:
        started.append(key)
        await gate.wait()

    async with running(stuck, max_in_flight=1) as (scheduler, heartbeats, _spacings):
        scheduler.add("shop/first", interval=0.05)
        scheduler.add("shop/second", interval=0.05)
        await asyncio.sleep(0.3)
        # One pass holds the only slot (a pass in progress has a long grace); the other SLO has not passed for
        # over 3 intervals.
        waiting = {"shop/first", "shop/second"} - set(started)
        assert heartbeats.stalled(now=time.monotonic()) == sorted(waiting)
        gate.set()


async def test_run_now_starts_the_pass_at_once_and_paces_the_next_from_then_without_a_second_pass() -> None:
    """What rules mode relies on: the read bringing an SLO's fresh values runs its pass, and its old slot does not."""
    recorder = Recorder()
    interval, slack = 0.6, 0.2
    key = "shop/followed"
    async with running(recorder) as (scheduler, _, _):
        scheduler.add(key, interval=interval)
        await asyncio.sleep(phase_offset(key, interval) + 0.05)
        assert len(recorder.starts[key]) == 1, "the first pass at its phase"
        await asyncio.sleep(0.1)
        called = time.monotonic()
        scheduler.run_now(key, slack=slack)
        scheduler.run_now(key, slack=slack)
        await asyncio.sleep(interval + slack - 0.1)
        starts = [start - called for start in recorder.starts[key][1:]]
        assert len(starts) == 1, "one pass for both calls; the slot of its old phase was superseded"
        assert starts[0] == pytest.approx(0, abs=0.05)
        await asyncio.sleep(0.2)
    assert recorder.starts[key][2] - called == pytest.approx(interval + slack, abs=0.05), "the fallback slot"


async def test_run_now_during_a_pass_runs_one_more_pass_right_after_it() -> None:
    recorder = Recorder(duration=0.2)
    key = "shop/busy"
    async with running(recorder) as (scheduler, _, _):
        scheduler.add(key, interval=5.0)
        await asyncio.sleep(phase_offset(key, 5.0) + 0.05)
        scheduler.run_now(key, slack=1.0)
        scheduler.run_now(key, slack=1.0)
        await asyncio.sleep(0.5)
    assert len(recorder.starts[key]) == 2, "the values that came during the pass get a pass of their own, once"
    assert recorder.starts[key][1] == pytest.approx(recorder.ends[key][0], abs=0.05)
