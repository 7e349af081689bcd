"""Circuit breaker, retry and bulkhead, with a fake clock, sleep and random source: exact, no waiting."""

from __future__ import annotations

import asyncio
import gc
import threading
from collections.abc import Callable

import pytest

from slo_guard.adapters.resilience import (
    BreakerState,
    Bulkhead,
    CircuitBreaker,
    CircuitOpenError,
    RetryPolicy,
    retry,
)
from slo_guard.telemetry import OperatorMetrics


class Boom(Exception):
    pass


class Harmless(Exception):
    pass


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def succeed() -> str:
    return "ok"


async def fail() -> str:
    raise Boom


def make_breaker(clock: FakeClock, changes: list[BreakerState] | None = None) -> CircuitBreaker:
    return CircuitBreaker(
        "prometheus",
        failure_threshold=3,
        reset_timeout=30.0,
        clock=clock,
        is_failure=lambda error: not isinstance(error, Harmless),
        on_state_change=lambda _name, state: changes.append(state) if changes is not None else None,
    )


async def fail_times(breaker: CircuitBreaker, count: int) -> None:
    for _ in range(count):
        with pytest.raises(Boom):
            await breaker.call(fail)


async def open_breaker(breaker: CircuitBreaker) -> None:
    await fail_times(breaker, 3)
    assert breaker.state is BreakerState.OPEN


async def cooled_down_breaker() -> CircuitBreaker:
    """Opened by failures, and its cool-down over: the next call is the half-open probe."""
    clock = FakeClock()
    breaker = make_breaker(clock)
    await open_breaker(breaker)
    clock.now += 30
    return breaker


def test_breaker_states_have_the_gauge_values() -> None:
    assert [BreakerState.CLOSED, BreakerState.OPEN, BreakerState.HALF_OPEN] == [0, 1, 2]


async def test_breaker_opens_after_threshold_consecutive_failures_and_then_fails_fast() -> None:
    breaker = make_breaker(FakeClock())
    await fail_times(breaker, 2)
    assert breaker.state is BreakerState.CLOSED
    await fail_times(breaker, 1)
    assert breaker.state is BreakerState.OPEN
    ran = False

    async def track() -> None:
        nonlocal ran
        ran = True

    with pytest.raises(CircuitOpenError) as raised:
        await breaker.call(track)
    assert not ran
    assert raised.value.retry_in == 30.0


async def test_a_success_resets_the_consecutive_failure_count() -> None:
    breaker = make_breaker(FakeClock())
    await fail_times(breaker, 2)
    assert await breaker.call(succeed) == "ok"
    await fail_times(breaker, 2)
    assert breaker.state is BreakerState.CLOSED


async def test_errors_that_are_not_failures_do_not_open_the_breaker() -> None:
    breaker = make_breaker(FakeClock())

    async def harmless() -> None:
        raise Harmless

    for _ in range(5):
        with pytest.raises(Harmless):
            await breaker.call(harmless)
    assert breaker.state is BreakerState.CLOSED


async def test_breaker_stays_open_for_the_whole_cool_down() -> None:
    clock = FakeClock()
    breaker = make_breaker(clock)
    await open_breaker(breaker)
    clock.now += 29.5
    with pytest.raises(CircuitOpenError) as raised:
        await breaker.call(succeed)
    assert raised.value.retry_in == pytest.approx(0.5)
    clock.now += 0.5
    assert breaker.state is BreakerState.HALF_OPEN


async def test_fast_failures_read_the_same_all_through_the_cool_down() -> None:
    """Their text reaches SLO status, which is rewritten whenever it changes."""
    clock = FakeClock()
    breaker = make_breaker(clock)
    await open_breaker(breaker)
    messages = set()
    for _ in range(3):
        with pytest.raises(CircuitOpenError) as raised:
            await breaker.call(succeed)
        messages.add(str(raised.value))
        clock.now += 10
    assert messages == {"circuit breaker 'prometheus' is open"}


async def test_half_open_lets_exactly_one_probe_through_and_its_success_closes() -> None:
    breaker = await cooled_down_breaker()
    probe_started, finish_probe = asyncio.Event(), asyncio.Event()

    async def slow_probe() -> str:
        probe_started.set()
        await finish_probe.wait()
        return "probed"

    probe = asyncio.create_task(breaker.call(slow_probe))
    await probe_started.wait()
    with pytest.raises(CircuitOpenError) as raised:
        await breaker.call(succeed)
    assert raised.value.retry_in == 0.0
    finish_probe.set()
    assert await probe == "probed"
    assert breaker.state is BreakerState.CLOSED
    assert await breaker.call(succeed) == "ok"


async def test_a_failed_probe_reopens_for_a_new_cool_down() -> None:
    clock = FakeClock()
    breaker = make_breaker(clock)
    await open_breaker(breaker)
    clock.now += 40
    await fail_times(breaker, 1)
    assert breaker.state is BreakerState.OPEN
    clock.now += 29
    assert breaker.state is BreakerState.OPEN
    clock.now += 1
    assert breaker.state is BreakerState.HALF_OPEN


async def test_a_probe_answered_with_a_non_failure_error_closes_the_breaker() -> None:
    breaker = await cooled_down_breaker()

    async def rejected() -> None:
        raise Harmless

    with pytest.raises(Harmless):
        await breaker.call(rejected)
    assert breaker.state is BreakerState.CLOSED


async def test_a_probe_whose_caller_gives_up_still_runs_and_decides_the_breaker() -> None:
    """Callers give up on a probe when another call of theirs failed fast: the probe must still close it."""
    breaker = await cooled_down_breaker()
    probe_started, finish_probe, probe_finished = asyncio.Event(), asyncio.Event(), asyncio.Event()

    async def slow_probe() -> str:
        probe_started.set()
        await finish_probe.wait()
        probe_finished.set()
        return "probed"

    caller = asyncio.create_task(breaker.call(slow_probe))
    await probe_started.wait()
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    with pytest.raises(CircuitOpenError):
        await breaker.call(succeed)
    finish_probe.set()
    await probe_finished.wait()
    assert breaker.state is BreakerState.CLOSED


async def test_a_failed_probe_nobody_waits_for_any_more_is_not_logged_as_a_lost_error() -> None:
    """Under load every caller of a probe may give up; its failure still reopens the breaker, quietly."""
    loop = asyncio.get_running_loop()
    reported: list[str] = []
    loop.set_exception_handler(lambda _, context: reported.append(context["message"]))
    try:
        breaker = await cooled_down_breaker()
        probe_started, finish_probe = asyncio.Event(), asyncio.Event()

        async def failing_probe() -> str:
            probe_started.set()
            await finish_probe.wait()
            raise Boom("still down")

        caller = asyncio.create_task(breaker.call(failing_probe))
        await probe_started.wait()
        caller.cancel()
        finish_probe.set()
        with pytest.raises(asyncio.CancelledError):
            await caller
        for _ in range(3):
            await asyncio.sleep(0)
        del caller
        gc.collect()
        assert breaker.state is BreakerState.OPEN
        assert reported == []
    finally:
        loop.set_exception_handler(None)


async def test_a_probe_cancelled_itself_lets_the_next_caller_probe() -> None:
    """The event loop closing cancels the probe: it proved nothing."""
    breaker = await cooled_down_breaker()
    probes: list[asyncio.Task[object]] = []
    probe_started = asyncio.Event()

    async def hang() -> None:
        task = asyncio.current_task()
        assert task is not None
        probes.append(task)
        probe_started.set()
        await asyncio.Event().wait()

    caller = asyncio.create_task(breaker.call(hang))
    await probe_started.wait()
    probes[0].cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    assert breaker.state is BreakerState.HALF_OPEN
    assert await breaker.call(succeed) == "ok"
    assert breaker.state is BreakerState.CLOSED


async def test_calls_admitted_before_the_breaker_opened_do_not_close_it() -> None:
    breaker = make_breaker(FakeClock())
    started, finish = asyncio.Event(), asyncio.Event()

    async def slow_success() -> str:
        started.set()
        await finish.wait()
        return "late"

    late = asyncio.create_task(breaker.call(slow_success))
    await started.wait()
    await open_breaker(breaker)
    finish.set()
    assert await late == "late"
    assert breaker.state is BreakerState.OPEN


async def test_state_changes_are_reported_in_order() -> None:
    clock = FakeClock()
    changes: list[BreakerState] = []
    breaker = make_breaker(clock, changes)
    await open_breaker(breaker)
    clock.now += 30
    await fail_times(breaker, 1)
    clock.now += 30
    await breaker.call(succeed)
    assert changes == [
        BreakerState.OPEN,
        BreakerState.HALF_OPEN,
        BreakerState.OPEN,
        BreakerState.HALF_OPEN,
        BreakerState.CLOSED,
    ]


@pytest.mark.parametrize(("threshold", "reset_timeout"), [(0, 1.0), (1, -1.0)])
def test_breaker_rejects_nonsense_settings(threshold: int, reset_timeout: float) -> None:
    with pytest.raises(ValueError, match=r"failure_threshold|reset_timeout"):
        CircuitBreaker("x", failure_threshold=threshold, reset_timeout=reset_timeout)


class Flaky:
    """Fails with the given errors in turn, then answers."""

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "answer"


class RecordingSleep:
    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


def is_boom(error: BaseException) -> bool:
    return isinstance(error, Boom)


async def test_retry_returns_the_first_success_after_jittered_backoff() -> None:
    sleep = RecordingSleep()
    flaky = Flaky(Boom(), Boom())
    policy = RetryPolicy(attempts=3, base_delay=0.2, max_delay=10)
    result = await retry(flaky, policy=policy, retryable=is_boom, sleep=sleep, rng=lambda: 0.5)
    assert result == "answer"
    assert flaky.calls == 3
    assert sleep.delays == pytest.approx([0.1, 0.2])


async def test_retry_gives_up_after_the_attempts_with_the_last_error() -> None:
    sleep = RecordingSleep()
    last = Boom("third")
    flaky = Flaky(Boom("first"), Boom("second"), last, Boom("never reached"))
    policy = RetryPolicy(attempts=3, base_delay=0.1, max_delay=1)
    with pytest.raises(Boom) as raised:
        await retry(flaky, policy=policy, retryable=is_boom, sleep=sleep, rng=lambda: 1.0)
    assert raised.value is last
    assert flaky.calls == 3
    assert len(sleep.delays) == 2


async def test_non_retryable_errors_propagate_at_once() -> None:
    sleep = RecordingSleep()
    flaky = Flaky(ValueError("bad query"))
    policy = RetryPolicy(attempts=5, base_delay=0.1, max_delay=1)
    with pytest.raises(ValueError, match="bad query"):
        await retry(flaky, policy=policy, retryable=is_boom, sleep=sleep)
    assert flaky.calls == 1
    assert sleep.delays == []


async def test_backoff_doubles_up_to_the_cap_and_jitter_scales_it() -> None:
    policy = RetryPolicy(attempts=6, base_delay=1, max_delay=5)
    highest, lowest = RecordingSleep(), RecordingSleep()
    with pytest.raises(Boom):
        await retry(Flaky(*[Boom()] * 6), policy=policy, retryable=is_boom, sleep=highest, rng=lambda: 1.0)
    with pytest.raises(Boom):
        await retry(Flaky(*[Boom()] * 6), policy=policy, retryable=is_boom, sleep=lowest, rng=lambda: 0.0)
    assert highest.delays == [1, 2, 4, 5, 5]
    assert lowest.delays == [0, 0, 0, 0, 0]


async def test_one_attempt_means_no_retry() -> None:
    flaky = Flaky(Boom())
    with pytest.raises(Boom):
        await retry(flaky, policy=RetryPolicy(attempts=1, base_delay=0, max_delay=0), retryable=is_boom)
    assert flaky.calls == 1


async def test_cancellation_is_never_retried() -> None:
    calls = 0

    async def cancelled() -> None:
        nonlocal calls
        calls += 1
        raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        await retry(cancelled, policy=RetryPolicy(3, 0, 0), retryable=lambda _: True, sleep=RecordingSleep())
    assert calls == 1


@pytest.mark.parametrize(
    ("attempts", "base", "cap"),
    [(0, 0.1, 1.0), (3, -0.1, 1.0), (3, 2.0, 1.0)],
)
def test_retry_policy_rejects_nonsense(attempts: int, base: float, cap: float) -> None:
    with pytest.raises(ValueError, match=r"attempts|base_delay"):
        RetryPolicy(attempts=attempts, base_delay=base, max_delay=cap)


class Gate:
    """Blocking work that counts how many threads run it at once, and waits for open()."""

    def __init__(self) -> None:
        self.running = 0
        self.most_running = 0
        self.finished = 0
        self._lock = threading.Lock()
        self._open = threading.Event()

    def work(self) -> str:
        with self._lock:
            self.running += 1
            self.most_running = max(self.most_running, self.running)
        self._open.wait(timeout=30)
        with self._lock:
            self.running -= 1
            self.finished += 1
        return threading.current_thread().name

    def open(self) -> None:
        self._open.set()


async def until(condition: Callable[[], bool], *, within: float = 30.0) -> None:
    """Poll until `condition()`; the deadline makes a bug fail the test rather than hang it."""
    deadline = asyncio.get_running_loop().time() + within
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition never became true"
        await asyncio.sleep(0.01)


async def test_bulkhead_runs_at_most_its_bound_on_its_own_threads() -> None:
    bulkhead = Bulkhead(2, thread_name_prefix="bounded")
    gate = Gate()
    tasks = [asyncio.create_task(bulkhead.run(gate.work)) for _ in range(5)]
    await until(lambda: gate.running == 2)
    assert not any(task.done() for task in tasks)
    gate.open()
    names = await asyncio.gather(*tasks)
    assert gate.most_running == 2
    assert gate.finished == 5
    assert all(name.startswith("bounded") for name in names)
    bulkhead.close()


async def test_a_cancelled_caller_returns_at_once_and_its_slot_frees_when_the_thread_ends() -> None:
    bulkhead = Bulkhead(1, thread_name_prefix="single")
    gate = Gate()
    first = asyncio.create_task(bulkhead.run(gate.work))
    await until(lambda: gate.running == 1)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    assert gate.running == 1
    gate.open()
    assert await asyncio.wait_for(bulkhead.run(lambda: "next"), timeout=30) == "next"
    assert gate.finished == 1
    bulkhead.close()


async def test_aclose_waits_for_the_threads_of_callers_that_gave_up() -> None:
    bulkhead = Bulkhead(2, thread_name_prefix="aclose")
    gate = Gate()
    caller = asyncio.create_task(bulkhead.run(gate.work))
    await until(lambda: gate.running == 1)
    caller.cancel()
    closed = asyncio.create_task(bulkhead.aclose())
    await asyncio.sleep(0.05)
    assert not closed.done()
    gate.open()
    await asyncio.wait_for(closed, timeout=30)
    assert gate.finished == 1


async def test_bulkhead_passes_errors_to_the_caller() -> None:
    bulkhead = Bulkhead(1, thread_name_prefix="errors")

    def broken() -> None:
        raise Boom("from the thread")

    with pytest.raises(Boom, match="from the thread"):
        await bulkhead.run(broken)
    bulkhead.close()


async def test_breaker_transitions_are_counted_even_when_half_open_lasts_an_instant() -> None:
    metrics = OperatorMetrics()
    now = [0.0]
    breaker = CircuitBreaker(
        "prometheus",
        failure_threshold=1,
        reset_timeout=1.0,
        clock=lambda: now[0],
        on_state_change=metrics.breaker_moved,
    )

    async def fail() -> None:
        raise RuntimeError("down")

    async def succeed() -> None:
        return None

    with pytest.raises(RuntimeError):
        await breaker.call(fail)
    now[0] = 2.0
    await breaker.call(succeed)
    counted = {
        state: metrics.registry.get_sample_value(
            "slo_guard_circuit_breaker_transitions_total", {"breaker": "prometheus", "state": state}
        )
        for state in ("open", "half_open", "closed")
    }
    assert counted == {"open": 1.0, "half_open": 1.0, "closed": 1.0}
