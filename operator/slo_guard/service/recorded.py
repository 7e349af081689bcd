"""Evaluation through recording rules the operator manages: a constant number of Prometheus queries per cycle.

`ManagedRules` keeps the rule groups of every SLO this process evaluates; `sync_rules_forever` writes them
to a `RuleSink` (a rule file plus reload, or a PrometheusRule object) whenever they change. `RecordedSource`
answers the evaluation's queries from one batch of recorded values per cycle, and sends a query directly
when its value is not recorded yet (a new or edited SLO) or was recorded too long ago. A direct answer is
reused for the query's refresh period, as a recorded one would be: until a new SLO's slow groups first run
(up to an hour for a 30-day window), its long windows cost one direct query per period, not per cycle.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from slo_guard.adapters.prometheus import PrometheusUnavailable, Sample
from slo_guard.domain.durations import parse_duration
from slo_guard.domain.model import Objective
from slo_guard.domain.recording import (
    EVALUATED_RECORD,
    NAMESPACE_LABEL,
    PERIOD_LABEL,
    QUERY_LABEL,
    SLO_LABEL,
    VALUE_RECORD,
    RuleGroup,
    longest_period,
    managed_rule_groups,
    query_key,
    query_periods,
)
from slo_guard.service.evaluation import EvaluationSettings, tenant_matchers
from slo_guard.service.ports import MetricsSource, RuleSink
from slo_guard.telemetry import OperatorMetrics, RecordedRead

logger = logging.getLogger("slo_guard.recorded")

READ_MARGIN = 60
"""Seconds added to the slowest group's period when reading values back, for late rule evaluations."""


class ManagedRules:
    """The recording rules for every SLO this process evaluates; `changed` is set whenever they differ."""

    def __init__(self, settings: EvaluationSettings) -> None:
        self._settings = settings
        self._groups: dict[str, list[RuleGroup]] = {}
        self._intervals: dict[str, int] = {}
        self._periods: dict[str, dict[str, int]] = {}
        """Query key -> {SLO key: period}: a lookup per query must not scan every SLO."""
        self.changed = asyncio.Event()

    def observe(self, objective: Objective) -> None:
        groups = managed_rule_groups(objective, extra=tenant_matchers(objective, self._settings))
        previous = self._groups.get(objective.key)
        if previous != groups:
            if previous is not None:
                self._unindex(objective.key, previous)
            self._groups[objective.key] = groups
            self._intervals[objective.key] = objective.evaluation_interval
            for query, period in query_periods(groups).items():
                self._periods.setdefault(query, {})[objective.key] = period
            self.changed.set()

    def forget(self, key: str) -> None:
        previous = self._groups.pop(key, None)
        if previous is not None:
            del self._intervals[key]
            self._unindex(key, previous)
            self.changed.set()

    def period_of(self, query: str) -> int | None:
        """Seconds between recomputations of the query with this key, the shortest among SLOs sharing it."""
        return min(self._periods.get(query, {}).values(), default=None)

    def _unindex(self, slo: str, groups: list[RuleGroup]) -> None:
        for query in query_periods(groups):
            by_slo = self._periods[query]
            del by_slo[slo]
            if not by_slo:
                del self._periods[query]

    def by_slo(self) -> dict[str, list[RuleGroup]]:
        """Every SLO's rule groups by its key, in a stable order so unchanged rules write the same."""
        return {key: list(self._groups[key]) for key in sorted(self._groups)}

    @property
    def read_range(self) -> int:
        """Seconds to look back for recorded values: the slowest group's period and a margin."""
        return max((longest_period(groups) for groups in self._groups.values()), default=0) + READ_MARGIN

    @property
    def shortest_interval(self) -> int | None:
        return min(self._intervals.values(), default=None)


async def sync_rules_forever(
    rules: ManagedRules, sink: RuleSink, *, metrics: OperatorMetrics, settle: float, retry_every: float
) -> None:
    """Write the rules after every change, at most once per `settle` seconds; retry a failed write."""
    while True:
        await rules.changed.wait()
        await asyncio.sleep(settle)
        rules.changed.clear()
        wanted = rules.by_slo()
        try:
            await sink.write(wanted)
        except Exception as error:
            metrics.rule_syncs.labels(result="failure").inc()
            logger.warning("writing the recording rules failed; retrying", extra={"error": str(error)})
            rules.changed.set()
            await asyncio.sleep(retry_every)
            continue
        metrics.rule_syncs.labels(result="success").inc()
        metrics.managed_rule_groups.set(sum(len(groups) for groups in wanted.values()))


@dataclass(frozen=True, slots=True)
class _Recorded:
    value: float
    group: tuple[str, str, str]
    """(namespace, slo, period) of the group that recorded it."""


@dataclass(slots=True)
class _Batch:
    at: float
    values: dict[str, list[_Recorded]] = field(default_factory=dict)
    evaluated_at: dict[tuple[str, str, str], float] = field(default_factory=dict)
    error: PrometheusUnavailable | None = None


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
            raise batch.error
        key = query_key(expr)
        recorded = _lookup(batch, key)
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
        max_age = self._rules.shortest_interval or READ_MARGIN
        async with self._lock:
            batch = self._batch
            if batch is None or not 0 <= at.timestamp() - batch.at < max_age:
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
        span = f"{self._rules.read_range}s"
        try:
            values, evaluated = await asyncio.gather(
                self._direct.query(f"last_over_time({VALUE_RECORD}[{span}])", at=at),
                self._direct.query(f"last_over_time({EVALUATED_RECORD}[{span}])", at=at),
            )
        except PrometheusUnavailable as error:
            batch.error = error
            return batch
        batch.evaluated_at = {_group_of(sample.labels): sample.value for sample in evaluated}
        for sample in values:
            recorded = _Recorded(value=sample.value, group=_group_of(sample.labels))
            batch.values.setdefault(sample.labels.get(QUERY_LABEL, ""), []).append(recorded)
        return batch


def _lookup(batch: _Batch, key: str) -> float | None:
    """The value of the freshest group recording `key`, if that group evaluated within twice its period."""
    best: tuple[float, float] | None = None
    for recorded in batch.values.get(key, ()):
        evaluated = batch.evaluated_at.get(recorded.group)
        if evaluated is None or batch.at - evaluated > 2 * _period(recorded.group):
            continue
        if best is None or evaluated > best[0]:
            best = (evaluated, recorded.value)
    return None if best is None else best[1]


def _group_of(labels: Mapping[str, Any]) -> tuple[str, str, str]:
    return (str(labels.get(NAMESPACE_LABEL, "")), str(labels.get(SLO_LABEL, "")), str(labels.get(PERIOD_LABEL, "")))


def _period(group: tuple[str, str, str]) -> int:
    try:
        return parse_duration(group[2])
    except ValueError:
        return 0
