"""Resilience for calls to a remote dependency: circuit breaker, jittered retry, bulkhead.

Pure asyncio; the clock, the sleep and the random source are injectable so tests are exact.
"""

from __future__ import annotations

import asyncio
import enum
import random
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")


class BreakerState(enum.IntEnum):
    """Values double as the `slo_guard_circuit_breaker_state` gauge reading."""

    CLOSED = 0
    OPEN = 1
    HALF_OPEN = 2


class CircuitOpenError(Exception):
    """The breaker failed a call fast, without running it."""

    def __init__(self, name: str, retry_in: float) -> None:
        # No countdown in the text: it ends up in SLO status, which is rewritten whenever its message changes.
        super().__init__(f"circuit breaker {name!r} is open")
        self.name = name
        self.retry_in = retry_in
        """Seconds until the breaker lets a probe through (0 while a probe is in flight)."""


def _always(_: BaseException) -> bool:
    return True


class CircuitBreaker:
    """Stops calling a dependency that keeps failing, and probes it once per cool-down.

    Closed: calls run; `failure_threshold` consecutive failures open it. Open: calls fail fast with
    `CircuitOpenError` for `reset_timeout` seconds, then it is half-open. Half-open: exactly one probe
    call runs while other callers still fail fast; its success closes the breaker, its failure opens it
    for a new cool-down. The probe runs to its end even when its caller stops waiting for it. Results of
    calls admitted before the breaker opened do not move it. Use it from one event loop; it holds no lock.
    """

    def __init__(
        self,
        name: str,
        *,
        failure_threshold: int,
        reset_timeout: float,
        clock: Callable[[], float] = time.monotonic,
        is_failure: Callable[[BaseException], bool] = _always,
        on_state_change: Callable[[str, BreakerState], None] | None = None,
    ) -> None:
        if failure_threshold < 1:
            raise ValueError(f"failure_threshold must be at least 1, got {failure_threshold}")
        if reset_timeout < 0:
            raise ValueError(f"reset_timeout must not be negative, got {reset_timeout}")
        self.name = name
        self._failure_threshold = failure_threshold
        self._reset_timeout = reset_timeout
        self._clock = clock
        self._is_failure = is_failure
        self._on_state_change = on_state_change
        self._state = BreakerState.CLOSED
        self._consecutive_failures = 0
        self._opened_at = 0.0
        self._probe: asyncio.Task[Any] | None = None
        """The half-open probe while it runs; referenced here because its caller may have stopped waiting."""

    @property
    def state(self) -> BreakerState:
        """The current state; reading it after the cool-down reports (and enters) HALF_OPEN."""
        if self._state is BreakerState.OPEN and self._clock() - self._opened_at >= self._reset_timeout:
            self._move_to(BreakerState.HALF_OPEN)
        return self._state

    async def call(self, fn: Callable[[], Awaitable[T]]) -> T:
        """Run `fn()` if the breaker admits it; errors for which `is_failure` is false count as success."""
        if self._admit():
            probe = self._probe = asyncio.ensure_future(self._run_probe(fn))
            probe.add_done_callback(retrieve_outcome)
            # Shielded: callers that give up on the probe (e.g. when another call of theirs failed fast) must not
            # cancel it, or no probe would ever finish and close the breaker.
            return await asyncio.shield(probe)
        return await self._run(fn, is_probe=False)

    async def _run_probe(self, fn: Callable[[], Awaitable[T]]) -> T:
        try:
            return await self._run(fn, is_probe=True)
        except BaseException:
            # Cancelled itself (the event loop is closing): it proved nothing, so the next caller probes instead.
            self._probe = None
            raise

    async def _run(self, fn: Callable[[], Awaitable[T]], *, is_probe: bool) -> T:
        """Run `fn()` and record its outcome; errors for which `is_failure` is false count as success."""
        try:
            result = await fn()
        except Exception as error:
            if self._is_failure(error):
                self._record_failure(is_probe=is_probe)
            else:
                self._record_success(is_probe=is_probe)
            raise
        self._record_success(is_probe=is_probe)
        return result

    def _admit(self) -> bool:
        """True when the admitted call is the half-open probe; raises when the call must fail fast."""
        state = self.state
        if state is BreakerState.CLOSED:
            return False
        if state is BreakerState.HALF_OPEN and self._probe is None:
            return True
        if state is BreakerState.HALF_OPEN:
            raise CircuitOpenError(self.name, retry_in=0.0)
        raise CircuitOpenError(self.name, retry_in=self._opened_at + self._reset_timeout - self._clock())

    def _record_success(self, *, is_probe: bool) -> None:
        if is_probe:
            self._probe = None
            self._consecutive_failures = 0
            self._move_to(BreakerState.CLOSED)
        elif self._state is BreakerState.CLOSED:
            self._consecutive_failures = 0

    def _record_failure(self, *, is_probe: bool) -> None:
        if is_probe:
            self._probe = None
            self._open()
        elif self._state is BreakerState.CLOSED:
            self._consecutive_failures += 1
            if self._consecutive_failures >= self._failure_threshold:
                self._open()

    def _open(self) -> None:
        self._opened_at = self._clock()
        self._consecutive_failures = 0
        self._move_to(BreakerState.OPEN)

    def _move_to(self, state: BreakerState) -> None:
        if state is self._state:
            return
        self._state = state
        if self._on_state_change is not None:
            self._on_state_change(self.name, state)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Bounded attempts with capped exponential backoff and full jitter."""

    attempts: int
    """Total attempts, the first included; 1 means no retry."""
    base_delay: float
    """Seconds; the backoff cap before retry n is base_delay * 2**(n-1)."""
    max_delay: float
    """Seconds; no single wait is longer than this."""

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError(f"attempts must be at least 1, got {self.attempts}")
        if not 0 <= self.base_delay <= self.max_delay:
            raise ValueError(f"need 0 <= base_delay <= max_delay, got {self.base_delay} and {self.max_delay}")

    def backoff_cap(self, retry_number: int) -> float:
        """The longest wait before retry `retry_number` (1-based); the wait is a uniform draw below it."""
        return min(self.max_delay, self.base_delay * 2.0 ** (retry_number - 1))


async def retry(
    call: Callable[[], Awaitable[T]],
    *,
    policy: RetryPolicy,
    retryable: Callable[[BaseException], bool],
    sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    rng: Callable[[], float] = random.random,
    requested_delay: Callable[[BaseException], float | None] = lambda _: None,
) -> T:
    """Await `call()` until it succeeds, raises a non-retryable error, or runs out of attempts.

    `requested_delay` gives the wait a server asked for (e.g. `Retry-After`); it replaces the jittered backoff.
    The last error propagates unchanged. Cancellation is never retried.
    """
    failures = 0
    while True:
        try:
            return await call()
        except Exception as error:
            failures += 1
            if failures >= policy.attempts or not retryable(error):
                raise
            delay = requested_delay(error)
        # Full jitter spreads the retries of many callers that failed together.
        await sleep(rng() * policy.backoff_cap(failures) if delay is None else delay)


class Bulkhead:
    """A process-wide bound on concurrent blocking calls, run on a thread pool of the same size.

    A slot stays taken until its thread really finishes, even when the awaiting task is cancelled,
    so the number of threads busy with calls never exceeds `max_concurrency`.
    """

    def __init__(self, max_concurrency: int, *, thread_name_prefix: str) -> None:
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency must be at least 1, got {max_concurrency}")
        self.max_concurrency = max_concurrency
        self._slots = asyncio.Semaphore(max_concurrency)
        self._executor = ThreadPoolExecutor(max_workers=max_concurrency, thread_name_prefix=thread_name_prefix)

    async def run(self, fn: Callable[[], T]) -> T:
        """Wait for a free slot, then run the blocking `fn()` on the pool."""
        await self._slots.acquire()
        try:
            future = asyncio.get_running_loop().run_in_executor(self._executor, fn)
        except BaseException:
            self._slots.release()
            raise
        future.add_done_callback(self._finished)
        # Shielded: cancelling the caller must not release the slot while the thread still runs.
        return await asyncio.shield(future)

    def _finished(self, future: asyncio.Future[Any]) -> None:
        self._slots.release()
        if not future.cancelled():
            # Marks the error retrieved: a cancelled caller no longer wants it, and asyncio would log it.
            future.exception()

    def close(self) -> None:
        """Refuse new calls; calls already running finish in the background."""
        self._executor.shutdown(wait=False)

    async def aclose(self) -> None:
        """Refuse new calls, and wait until the calls already running have ended, those of callers that gave up too."""
        # Waiting on the threads rather than on their futures works from any event loop; each thread hands its
        # result to the loop before it ends, so the loop has it before this returns.
        await asyncio.to_thread(self._executor.shutdown)


class Remote:
    """One remote dependency and every guard slo-guard puts on a call to it: a bulkhead for its blocking client, a
    circuit breaker, and bounded jittered retries, with a callback per attempt for metrics.

    Each attempt runs through the breaker, which admits it or fails it fast with CircuitOpenError (never retried),
    and then waits for a bulkhead slot.
    """

    def __init__(
        self,
        *,
        bulkhead: Bulkhead,
        breaker: CircuitBreaker,
        policy: RetryPolicy,
        retryable: Callable[[BaseException], bool],
        requested_delay: Callable[[BaseException], float | None] = lambda _: None,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.bulkhead = bulkhead
        self.breaker = breaker
        self.policy = policy
        self._retryable = retryable
        self._requested_delay = requested_delay
        self._sleep = sleep
        self._rng = rng

    async def call(
        self,
        blocking: Callable[[], T],
        *,
        on_attempt: Callable[[BaseException | None], None] = lambda _: None,
        before_attempt: Callable[[], Awaitable[object]] | None = None,
        policy: RetryPolicy | None = None,
    ) -> T:
        """Run `blocking()` until it succeeds or the retry policy gives up; the last error propagates.

        `on_attempt` hears every attempt's error (None for a success); `before_attempt` runs ahead of each attempt
        (e.g. waiting for a write token); `policy` replaces the default retry policy for this call.
        """

        async def attempt() -> T:
            if before_attempt is not None:
                await before_attempt()
            try:
                result = await self.breaker.call(lambda: self.bulkhead.run(blocking))
            except Exception as error:
                on_attempt(error)
                raise
            on_attempt(None)
            return result

        return await retry(
            attempt,
            policy=policy or self.policy,
            retryable=self._retryable,
            sleep=self._sleep,
            rng=self._rng,
            requested_delay=self._requested_delay,
        )


def retrieve_outcome(future: asyncio.Future[Any]) -> None:
    """Mark a shared future's exception as seen: when all who awaited it gave up, asyncio would log it as lost."""
    if not future.cancelled():
        future.exception()
