"""Evaluation through recording rules the operator manages: a constant number of Prometheus queries per cycle.

`ManagedRules` keeps the rule groups of every SLO this process evaluates; `sync_rules_forever` writes them
to a `RuleSink` (a rule file plus reload, or a PrometheusRule object) whenever they change. `RecordedSource`
answers the evaluation's queries from one batch of recorded values per cycle, and sends a query directly
when its value is not recorded yet (a new or edited SLO) or its own latest sample is older than two of its
group's periods (the rule stopped running, or keeps failing while the rest of its group succeeds). A direct
answer is reused for the query's refresh period, as a recorded one would be: until a new SLO's slow groups
first run (up to an hour for a 30-day window), its long windows cost one direct query per period, not per cycle.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
from collections import Counter
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from slo_guard.domain.durations import format_duration, parse_duration
from slo_guard.domain.model import Objective
from slo_guard.domain.recording import (
    EVALUATED_RECORD,
    PERIOD_LABEL,
    QUERY_LABEL,
    VALUE_RECORD,
    managed_rule_groups,
    query_key,
    query_periods,
)
from slo_guard.domain.rules import NAMESPACE_LABEL, SLO_LABEL
from slo_guard.service.evaluation import EvaluationSettings, query_all, tenant_matchers
from slo_guard.service.ports import MetricsSource, PrometheusUnavailable, QueryError, RuleSink, Sample
from slo_guard.telemetry import OperatorMetrics, RecordedRead

logger = logging.getLogger("slo_guard.recorded")


@dataclass(frozen=True, slots=True)
class _SloRules:
    text: str
    """The SLO's rule groups as a JSON array: under half the memory of the dicts, and what a rule file is made of."""
    groups: int
    spans: frozenset[int]
    """Its groups' periods, in seconds."""
    queries: tuple[str, ...]
    """The keys of the queries it records."""
    interval: int


class ManagedRules:
    """The recording rules for every SLO this process evaluates; `changed` is set whenever they differ."""

    def __init__(self, settings: EvaluationSettings) -> None:
        self._settings = settings
        self._rules: dict[str, _SloRules] = {}
        self._periods: dict[str, dict[str, int]] = {}
        """Query key -> {SLO key: period}: a lookup per query must not scan every SLO."""
        self._versions: dict[str, Hashable] = {}
        """SLO key -> the spec version its rules were built from, so an unchanged spec costs no rebuild."""
        self._intervals: Counter[int] = Counter()
        self._spans: Counter[int] = Counter()
        """How many SLOs have each interval, and a group of each period: every query asks, and a scan of every SLO
        per query made a cycle cost O(SLOs squared), a quarter of the operator's CPU at 5,000 SLOs."""
        self.changed = asyncio.Event()

    def is_current(self, key: str, version: Hashable) -> bool:
        """Whether the SLO's rules were built from this spec version (e.g. its uid and generation)."""
        return self._versions.get(key) == version

    def observe(self, objective: Objective, *, version: Hashable = None) -> None:
        key = objective.key
        self._versions[key] = version
        groups = managed_rule_groups(objective, extra=tenant_matchers(objective, self._settings))
        text = json.dumps(groups, separators=(",", ":"))
        previous = self._rules.get(key)
        if previous is not None and previous.text == text:
            return
        if previous is not None:
            self._unindex(key, previous)
        periods = query_periods(groups)
        self._rules[key] = _SloRules(
            text=text,
            groups=len(groups),
            spans=frozenset(parse_duration(group["interval"]) for group in groups),
            queries=tuple(periods),
            interval=objective.evaluation_interval,
        )
        for query, period in periods.items():
            self._periods.setdefault(query, {})[key] = period
        self._intervals[objective.evaluation_interval] += 1
        self._spans.update(self._rules[key].spans)
        self.changed.set()

    def forget(self, key: str) -> None:
        self._versions.pop(key, None)
        previous = self._rules.pop(key, None)
        if previous is not None:
            self._unindex(key, previous)
            self.changed.set()

    def period_of(self, query: str) -> int | None:
        """Seconds between recomputations of the query with this key, the shortest among SLOs sharing it."""
        return min(self._periods.get(query, {}).values(), default=None)

    def _unindex(self, slo: str, rules: _SloRules) -> None:
        self._intervals[rules.interval] -= 1
        self._spans.subtract(rules.spans)
        self._intervals += Counter()  # drops the counts that reached 0
        self._spans += Counter()
        for query in rules.queries:
            by_slo = self._periods[query]
            del by_slo[slo]
            if not by_slo:
                del self._periods[query]

    def by_slo(self) -> dict[str, str]:
        """Every SLO's rule groups (a JSON array) by its key, in a stable order so unchanged rules write the same."""
        return {key: self._rules[key].text for key in sorted(self._rules)}

    @property
    def group_count(self) -> int:
        return sum(rules.groups for rules in self._rules.values())

    @property
    def periods(self) -> set[int]:
        """Every group's period in seconds, each once."""
        return set(self._spans)

    @property
    def shortest_interval(self) -> int | None:
        return min(self._intervals, default=None)


RULE_WRITE_SHARE = 0.25
"""At most this share of the time goes to writing rules: each reload makes Prometheus reread every rule file."""


async def sync_rules_forever(
    rules: ManagedRules, sink: RuleSink, *, metrics: OperatorMetrics, settle: float, retry_every: float
) -> None:
    """Write the rules after every change, at most once per `settle` seconds; retry a failed write.

    After a write that took `d` seconds the next waits `3d` more: at thousands of SLOs a reload takes tens of
    seconds, and SLOs arriving during a cold start would otherwise keep Prometheus reloading back to back. SLOs
    whose rules wait meanwhile are answered by direct queries.
    """
    loop = asyncio.get_running_loop()
    while True:
        await rules.changed.wait()
        await asyncio.sleep(settle)
        rules.changed.clear()
        wanted, groups = rules.by_slo(), rules.group_count
        started = loop.time()
        try:
            await sink.write(wanted)
        except Exception as error:
            metrics.rule_syncs.labels(result="failure").inc()
            logger.warning("writing the recording rules failed; retrying", extra={"error": str(error)})
            rules.changed.set()
            await asyncio.sleep(max(retry_every, _rest_after(loop.time() - started)))
            continue
        took = loop.time() - started
        metrics.rule_syncs.labels(result="success").inc()
        metrics.rule_sync_duration.observe(took)
        metrics.managed_rule_groups.set(groups)
        await asyncio.sleep(_rest_after(took))


def _rest_after(took: float) -> float:
    return took * (1 / RULE_WRITE_SHARE - 1)


@dataclass(slots=True)
class _Batch:
    at: float
    values: dict[str, float] = field(default_factory=dict)
    """By query key, the value of the group that evaluated last among those recording it; only values whose own
    latest sample is at most two of their group's periods old."""
    error: PrometheusUnavailable | QueryError | None = None


class RecordedSource:
    """A MetricsSource that answers from recorded values, fetched in one batch per cycle."""

    def __init__(self, rules: ManagedRules, direct: MetricsSource, *, metrics: OperatorMetrics) -> None:
        self._rules = rules
        self._direct = direct
        self._metrics = metrics
        self._batch: _Batch | None = None
        self._lock = asyncio.Lock()
        self._answered: dict[str, tuple[float, Sequence[Sample]]] = {}
        """Direct answers by query key, with the time they answered for."""

    async def query(self, expr: str, *, at: datetime) -> Sequence[Sample]:
        batch = await self._batch_for(at)
        if batch.error is not None:
            # A failed batch fails every query of the cycle: a broken Prometheus gets no direct-query storm.
            raise batch.error.copy()
        key = query_key(expr)
        recorded = batch.values.get(key)
        if recorded is None:
            return await self._answer_directly(expr, key=key, at=at)
        self._metrics.recorded_reads.labels(source=RecordedRead.RECORDED.value).inc()
        if recorded == -math.inf:
            return []
        return [Sample(labels={}, value=recorded, timestamp=at.timestamp())]

    async def _answer_directly(self, expr: str, *, key: str, at: datetime) -> Sequence[Sample]:
        period = self._rules.period_of(key) or 0
        answered = self._answered.get(key)
        if answered is not None and 0 <= at.timestamp() - answered[0] < period:
            self._metrics.recorded_reads.labels(source=RecordedRead.REUSED.value).inc()
            return answered[1]
        self._metrics.recorded_reads.labels(source=RecordedRead.DIRECT.value).inc()
        samples = await self._direct.query(expr, at=at)
        self._answered[key] = (at.timestamp(), samples)
        return samples

    async def _batch_for(self, at: datetime) -> _Batch:
        max_age = self._rules.shortest_interval or 0
        async with self._lock:
            batch = self._batch
            # A pass that started just before the batch was fetched uses it too: refetching for it, then again for
            # the next newer pass, cost one batch per straggler (115 queries per cycle at 5,000 SLOs, not 2).
            if batch is None or abs(at.timestamp() - batch.at) >= max_age:
                batch = self._batch = await self._fetch(at)
                self._forget_old_answers(at.timestamp())
            return batch

    def _forget_old_answers(self, now: float) -> None:
        """Keeps the direct answers bounded by the queries of the SLOs still evaluated."""
        for key, (answered_at, _) in list(self._answered.items()):
            period = self._rules.period_of(key)
            if period is None or now - answered_at >= period:
                del self._answered[key]

    async def _fetch(self, at: datetime) -> _Batch:
        batch = _Batch(at=at.timestamp())
        periods = self._rules.periods
        if not periods:
            # The last SLO went while one of its evaluations ran: nothing is recorded for it any more.
            return batch
        try:
            values, evaluated = await query_all(
                self._direct, [_fresh(VALUE_RECORD, periods), _fresh(EVALUATED_RECORD, periods)], at=at
            )
        except PrometheusUnavailable as error:
            batch.error = error
            return batch
        except QueryError as error:
            # Prometheus refused the operator's own read, not an SLO's query: no SLO is marked QueryRejected for it.
            batch.error = QueryError(f"reading the recorded values: {error}", status=error.status)
            return batch
        evaluated_at = {_group_of(sample.labels): sample.value for sample in evaluated}
        # Resolved once per batch: SLOs sharing a query (125 per query in the benchmark) would otherwise compare
        # their groups at every lookup.
        newest: dict[str, float] = {}
        for sample in values:
            key = sample.labels.get(QUERY_LABEL, "")
            when = evaluated_at.get(_group_of(sample.labels), -math.inf)
            if key not in batch.values or when > newest[key]:
                batch.values[key], newest[key] = sample.value, when
        return batch


def _fresh(record: str, periods: Iterable[int]) -> str:
    """The latest sample of every `record` series whose own latest sample is at most two of its periods old.

    Each series is judged by its own samples: a rule that keeps failing (a timeout, a sample limit) writes
    nothing while the other rules of its group, its `time()` among them, still succeed.
    """
    return " or ".join(
        f'last_over_time({record}{{{PERIOD_LABEL}="{format_duration(period)}"}}[{format_duration(2 * period)}])'
        for period in sorted(periods)
    )


def _group_of(labels: Mapping[str, Any]) -> tuple[str, str, str]:
    return (str(labels.get(NAMESPACE_LABEL, "")), str(labels.get(SLO_LABEL, "")), str(labels.get(PERIOD_LABEL, "")))
