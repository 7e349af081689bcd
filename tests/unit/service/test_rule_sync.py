"""The managed recording rules: what they tell the batch reader, and how often they are rewritten while SLOs keep
changing (a cold start of thousands)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

from slo_guard.domain.model import Objective, RatioIndicator
from slo_guard.domain.selectors import Selector
from slo_guard.domain.windows import default_tiers
from slo_guard.service.evaluation import EvaluationSettings
from slo_guard.service.recorded import RULE_WRITE_SHARE, ManagedRules, sync_rules_forever
from slo_guard.telemetry import OperatorMetrics

HOUR = 3600
WRITE_SECONDS = 0.2


def objective(name: str, *, interval: int = 10) -> Objective:
    return Objective(
        name=name,
        namespace="shop",
        objective=0.99,
        window=HOUR,
        indicator=RatioIndicator(errors=Selector("http_errors_total"), total=Selector("http_requests_total")),
        tiers=default_tiers(HOUR, min_step=1),
        evaluation_interval=interval,
    )


class SlowSink:
    """A reload that takes WRITE_SECONDS, as Prometheus's does (tens of seconds) at thousands of SLOs."""

    def __init__(self, *, failing: bool = False) -> None:
        self.failing = failing
        self.writes: list[tuple[float, float, int]] = []
        """(started, finished, SLOs written) per write."""

    async def write(self, rules: Mapping[str, Sequence[Mapping[str, Any]]]) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        await asyncio.sleep(WRITE_SECONDS)
        self.writes.append((started, loop.time(), len(rules)))
        if self.failing:
            raise OSError("reload answered 500")

    def pauses(self) -> list[float]:
        """Seconds between the end of each write and the start of the next."""
        ends = [finished for _, finished, _ in self.writes[:-1]]
        return [started - ended for ended, (started, _, _) in zip(ends, self.writes[1:], strict=True)]


async def arrive(rules: ManagedRules, count: int, *, every: float) -> None:
    for index in range(count):
        rules.observe(objective(f"slo-{index}"))
        await asyncio.sleep(every)


async def run_sync(sink: SlowSink, *, arrivals: int, every: float) -> OperatorMetrics:
    rules = ManagedRules(EvaluationSettings(max_staleness=30))
    metrics = OperatorMetrics()
    sync = asyncio.create_task(sync_rules_forever(rules, sink, metrics=metrics, settle=0.01, retry_every=0.05))
    await arrive(rules, arrivals, every=every)
    await asyncio.sleep(WRITE_SECONDS / RULE_WRITE_SHARE + 0.3)
    sync.cancel()
    await asyncio.gather(sync, return_exceptions=True)
    return metrics


async def test_slos_arriving_steadily_leave_prometheus_reloading_a_quarter_of_the_time_not_back_to_back() -> None:
    sink = SlowSink()
    metrics = await run_sync(sink, arrivals=30, every=0.05)
    gaps = sink.pauses()
    assert gaps, "several writes happened"
    assert min(gaps) >= WRITE_SECONDS * (1 / RULE_WRITE_SHARE - 1), "each write is followed by three times its time"
    busy = sum(finished - started for started, finished, _ in sink.writes[:-1])
    assert busy / (sink.writes[-1][0] - sink.writes[0][0]) <= RULE_WRITE_SHARE, "reloading a quarter of the time"
    assert sink.writes[-1][2] == 30, "the last write holds every SLO: none is lost by writing less often"
    assert metrics.registry.get_sample_value("slo_guard_rule_sync_duration_seconds_count") == len(sink.writes)


async def test_a_failing_write_is_retried_no_sooner_than_three_times_its_duration() -> None:
    sink = SlowSink(failing=True)
    metrics = await run_sync(sink, arrivals=1, every=0)
    gaps = sink.pauses()
    assert gaps, "the failed write was retried"
    assert min(gaps) >= WRITE_SECONDS * (1 / RULE_WRITE_SHARE - 1), "no sooner than three times its duration"
    failures = metrics.registry.get_sample_value("slo_guard_rule_syncs_total", {"result": "failure"})
    assert failures == len(sink.writes), "every failed write is counted"


def test_the_shortest_interval_and_the_group_periods_follow_slos_coming_changing_and_going() -> None:
    """The batch of recorded values is reread once per shortest interval, for every group period there is."""
    rules = ManagedRules(EvaluationSettings(max_staleness=30))
    rules.observe(objective("fast", interval=10), version=("fast", 1))
    rules.observe(objective("slow", interval=60), version=("slow", 1))
    assert rules.shortest_interval == 10
    fast_periods = rules.periods
    assert 10 in fast_periods

    rules.observe(objective("fast", interval=30), version=("fast", 2))
    assert rules.shortest_interval == 30
    assert 10 not in rules.periods, "no group runs every 10 s any more"

    rules.forget("shop/fast")
    assert rules.shortest_interval == 60
    rules.forget("shop/slow")
    assert rules.shortest_interval is None
    assert rules.periods == set()
