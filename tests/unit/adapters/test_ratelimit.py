"""The write-rate limiter, with a fake clock: exact waits, no real sleeping."""

from __future__ import annotations

import asyncio

import pytest

from slo_guard.adapters.ratelimit import TokenBucket


class FakeTime:
    """A clock that only moves when something sleeps on it."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def bucket(fake: FakeTime, *, rate: float = 20.0, burst: int = 40) -> TokenBucket:
    return TokenBucket(rate, burst, fake.clock, sleep=fake.sleep)


async def test_a_full_bucket_lets_the_burst_through_without_waiting() -> None:
    fake = FakeTime()
    limiter = bucket(fake)

    for _ in range(40):
        await limiter.acquire()

    assert fake.sleeps == []
    assert limiter.tokens == pytest.approx(0.0)


async def test_past_the_burst_each_write_waits_one_interval() -> None:
    fake = FakeTime()
    limiter = bucket(fake, rate=20.0, burst=40)

    for _ in range(43):
        await limiter.acquire()

    assert fake.sleeps == pytest.approx([0.05, 0.05, 0.05])


async def test_100_writes_take_as_long_as_the_rate_allows() -> None:
    fake = FakeTime()
    limiter = bucket(fake, rate=20.0, burst=40)
    start = fake.now

    for _ in range(100):
        await limiter.acquire()

    # 40 from the burst, the other 60 at 20 per second.
    assert fake.now - start == pytest.approx(3.0)


async def test_idle_time_refills_but_never_beyond_the_burst() -> None:
    fake = FakeTime()
    limiter = bucket(fake, rate=20.0, burst=40)
    for _ in range(40):
        await limiter.acquire()

    fake.now += 1.0
    assert limiter.tokens == pytest.approx(20.0)
    fake.now += 3600.0
    assert limiter.tokens == pytest.approx(40.0)


async def test_concurrent_callers_are_spaced_one_interval_apart() -> None:
    fake = FakeTime()
    waits: list[float] = []

    async def sleep_while_others_arrive(seconds: float) -> None:
        waits.append(seconds)
        await asyncio.sleep(0)

    limiter = TokenBucket(10.0, 1, fake.clock, sleep=sleep_while_others_arrive)
    await limiter.acquire()

    await asyncio.gather(*(limiter.acquire() for _ in range(3)))

    # All three arrive at the same instant; each reserves the next token: 1, 2 and 3 intervals away.
    assert waits == pytest.approx([0.1, 0.2, 0.3])


async def test_a_cancelled_waiter_gives_its_token_back() -> None:
    fake = FakeTime()

    async def never_wakes(_seconds: float) -> None:
        await asyncio.Event().wait()

    limiter = TokenBucket(10.0, 1, fake.clock, sleep=never_wakes)
    await limiter.acquire()
    waiter = asyncio.create_task(limiter.acquire())
    await asyncio.sleep(0)
    assert limiter.tokens == pytest.approx(-1.0)

    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter

    assert limiter.tokens == pytest.approx(0.0)


@pytest.mark.parametrize(("rate", "burst"), [(0.0, 1), (-1.0, 1), (1.0, 0)])
def test_rejects_a_bucket_that_could_never_pass_a_call(rate: float, burst: int) -> None:
    with pytest.raises(ValueError, match="must be"):
        TokenBucket(rate, burst)
