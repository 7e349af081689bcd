"""Evaluation through recording rules the operator manages: a constant number of Prometheus queries per cycle.

`ManagedRules` keeps the rule groups of every SLO this process evaluates; `sync_rules_forever` writes them
to a `RuleSink` (a rule file plus reload, or a PrometheusRule object) whenever they change. `RecordedSource`
answers the evaluation's queries from the recorded values: read in full once, then only what the groups recorded
since the previous read, every second from `follow_recorded_forever` (which runs each SLO's pass right after
its group's new values arrive) or at most once per cycle without it. A query is sent directly when its value
is not recorded yet (a new or edited SLO) or the value is older than two of its group's periods (the rule
stopped running, or keeps failing while the rest of its group succeeds). A direct answer is reused for the
query's refresh period, as a recorded one would be: until a new SLO's slow groups first run (up to an hour for
a 30-day window), its long windows cost one direct query per period, not per cycle.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
from collections import Counter
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from slo_guard.domain.durations import format_duration, parse_duration
from slo_guard.domain.model import LabelMatcher, MatchOp, Objective, Selector
from slo_guard.domain.recording import (
    EVALUATED_RECORD,
    PERIOD_LABEL,
    QUERY_LABEL,
    SHARD_LABEL,
    VALUE_RECORD,
    managed_rule_groups,
    query_key,
    query_periods,
)
from slo_guard.domain.rules import NAMESPACE_LABEL, SLO_LABEL
from slo_guard.domain.selectors import render_selector
from slo_guard.service.evaluation import EvaluationSettings, query_all, tenant_matchers
from slo_guard.service.ports import MetricsSource, PrometheusUnavailable, QueryError, RuleSink, Sample
from slo_guard.service.sharding import shard_of
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

    def __init__(self, settings: EvaluationSettings, *, shards: int = 1) -> None:
        self._settings = settings
        self._shards = shards
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
        groups = managed_rule_groups(
            objective,
            extra=tenant_matchers(objective, self._settings),
            shard=shard_of(key, self._shards) if self._shards > 1 else None,
        )
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

    def interval_of(self, key: str) -> int | None:
        """The evaluation interval of the SLO with this key, if its rules are managed here."""
        rules = self._rules.get(key)
        return rules.interval if rules is not None else None

    @property
    def shortest_interval(self) -> int | None:
        return min(self._intervals, default=None)


async def follow_recorded_forever(
    source: RecordedSource, on_fresh: Callable[[str, float], None], *, every: float
) -> None:
    """Read what the groups recorded every `every` seconds; hand each SLO whose group just ran to `on_fresh`,
    with the seconds its group's next run may be read late (`RecordedSource.lateness_allowed`).

    An SLO's pass then runs on values at most `every` seconds older than its group's evaluation, instead of
    waiting for the next cycle's read and then for its own phase: that made the reaction up to three intervals.
    """
    loop = asyncio.get_running_loop()
    while True:
        started = loop.time()
        try:
            fresh = await source.follow(datetime.now(UTC))
        except Exception:
            # Prometheus' own failures are the passes' to report; anything else is a bug, never the loop's end.
            logger.exception("following the recorded values failed")
            fresh = []
        for key in fresh:
            on_fresh(key, source.lateness_allowed)
        await asyncio.sleep(max(0.0, every - (loop.time() - started)))


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


LATE_GROUP_GRACE = 1.0
"""The least a read looks back before what the previous one could show: a group's values become readable when its
evaluation ends, after the timestamp they carry."""
LATENESS_HEADROOM = 2.0
"""A read looks back this many times the latest lateness seen, so that groups a little later still are not missed:
a busy Prometheus finishes groups later and later, and each late one read widens the next reads..."""
GRACE_DECAY = 0.99
"""...which shrink by this factor per read once groups are on time again (halved in about 70 reads)."""
MAX_LOOKBACK_SHARE = 0.2
"""...up to this share of the shortest interval: a group later than that has overrun, and a wider read costs more
than the direct queries it saves. Looking back for every evaluation a group owed, however late, made every read
cover a whole interval whenever Prometheus skipped a run of an overrunning group (5,000 SLOs: p99 spacing 90 s)."""


class RecordedSource:
    """A MetricsSource that answers from recorded values, read at most once per cycle, or whenever `follow` asks."""

    def __init__(
        self,
        rules: ManagedRules,
        direct: MetricsSource,
        *,
        metrics: OperatorMetrics,
        held_shards: Callable[[], frozenset[int]] | None = None,
    ) -> None:
        self._rules = rules
        self._held_shards = held_shards
        """With `--shards N`: reads ask only for the series of these shards, not every replica's."""
        self._read_shards: frozenset[int] | None = None
        self._direct = direct
        self._metrics = metrics
        self._lock = asyncio.Lock()
        self._values: dict[str, tuple[float, float]] = {}
        """By query key, the value of the group that evaluated last among those recording it, and when it did."""
        self._read_at: float | None = None
        self._read_ok_at: float | None = None
        self._pruned_at = -math.inf
        self._error: PrometheusUnavailable | QueryError | None = None
        """Set while the latest read failed: every query fails with it, so a broken Prometheus gets no storm of
        direct queries."""
        self._lag = 0.0
        """How far behind the read's time the newest evaluation it saw was: VictoriaMetrics answers as of 30 s ago
        by default, and a value's age counts from what the backend can show, as `last_over_time` at `now` does."""
        self._followed: dict[str, float] = {}
        """SLO key -> when its group of its own interval last evaluated, as read."""
        self._grace = LATE_GROUP_GRACE
        """How far a read looks back before what the previous one could show. A fixed second missed groups that
        finished later on a busy Prometheus: their values aged out and went to Prometheus directly, adding load
        that made more groups late (3,000 SLOs on three replicas: 1,031 queries per cycle, p99 spacing 55 s)."""
        self._to_hand_over: dict[str, None] = {}
        """SLOs whose group's new values a read for a pass brought: `follow` hands them over next."""
        self._answered: dict[str, tuple[float, Sequence[Sample]]] = {}
        """Direct answers by query key, with the time they answered for."""

    @property
    def lateness_allowed(self) -> float:
        """Seconds after its timestamp a group's evaluation may still be read: groups run that late lately."""
        return self._grace

    async def query(self, expr: str, *, at: datetime) -> Sequence[Sample]:
        max_age = self._rules.shortest_interval or 0
        async with self._lock:
            # A pass that started just before the cycle's read uses it too: reading again for it, then again for
            # the next newer pass, cost one read per straggler (115 queries per cycle at 5,000 SLOs, not 2).
            if self._read_at is None or abs(at.timestamp() - self._read_at) >= max_age:
                self._to_hand_over.update(dict.fromkeys(await self._read(at)))
        if self._error is not None:
            raise self._error.copy()
        key = query_key(expr)
        recorded = self._values.get(key)
        if recorded is None or not self._is_fresh(key, recorded[1], at.timestamp()):
            return await self._answer_directly(expr, key=key, at=at)
        self._metrics.recorded_reads.labels(source=RecordedRead.RECORDED.value).inc()
        if recorded[0] == -math.inf:
            return []
        return [Sample(labels={}, value=recorded[0], timestamp=at.timestamp())]

    async def follow(self, at: datetime) -> list[str]:
        """Read what the groups recorded since the previous read; return the SLOs whose group of their own
        interval evaluated since then, whose pass can now run on values at most this read's age old."""
        async with self._lock:
            fresh = await self._read(at)
            handed = list(dict.fromkeys([*self._to_hand_over, *fresh]))
            self._to_hand_over.clear()
            return handed

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

    async def _read(self, at: datetime) -> list[str]:
        now = at.timestamp()
        self._read_at = now
        periods = self._rules.periods
        if not periods:
            # The last SLO went while one of its evaluations ran: nothing is recorded for it any more.
            self._values.clear()
            self._error = None
            return []
        previous = self._read_ok_at
        shards = self._held_shards() if self._held_shards is not None else None
        matchers = _shard_matchers(shards)
        # After a first full read, only what the groups recorded since the last read: decoding every SLO's values
        # at once was the largest transient allocation of a cycle, and a value that stops coming expires by age.
        since: float | None = None
        horizon: float | None = None
        # A shard just taken: its values, recorded by the replica that held it, are read in full.
        if (
            previous is not None
            and 0 <= now - previous < 2 * max(periods)
            and self._values
            and shards == self._read_shards
        ):
            horizon = previous - self._lag
            since = horizon - self._grace
            self._metrics.recorded_read_lookback.set(previous - since)
        values: Sequence[Sample]
        evaluated: Sequence[Sample]
        try:
            if since is not None:
                samples = await self._direct.query(_recorded_since(now - since, matchers), at=at)
                values = [sample for sample in samples if QUERY_LABEL in sample.labels]
                evaluated = [sample for sample in samples if QUERY_LABEL not in sample.labels]
            else:
                values, evaluated = await query_all(
                    self._direct,
                    [_fresh(VALUE_RECORD, periods, matchers), _fresh(EVALUATED_RECORD, periods, matchers)],
                    at=at,
                )
        except PrometheusUnavailable as error:
            self._error = error
            return []
        except QueryError as error:
            # Prometheus refused the operator's own read, not an SLO's query: no SLO is marked QueryRejected for it.
            self._error = QueryError(f"reading the recorded values: {error}", status=error.status)
            return []
        self._error = None
        self._read_ok_at = now
        self._read_shards = shards
        if since is None:
            self._values = {}
        if since is None or now - self._pruned_at >= (self._rules.shortest_interval or 0):
            self._forget_old(now)
        return self._take(values, evaluated, since=since, horizon=horizon, now=now)

    def _take(
        self,
        values: Iterable[Sample],
        evaluated: Iterable[Sample],
        *,
        since: float | None,
        horizon: float | None,
        now: float,
    ) -> list[str]:
        evaluated_at = {_group_of(sample.labels): sample.value for sample in evaluated}
        if evaluated_at:
            self._lag = max(0.0, now - max(evaluated_at.values()))
        # Resolved once per read: SLOs sharing a query (125 per query in the benchmark) would otherwise compare
        # their groups at every lookup. A value read since the last read without its group's time (read while the
        # group ran) is at least that new.
        unknown = -math.inf if since is None else since
        for sample in values:
            key = sample.labels.get(QUERY_LABEL, "")
            when = evaluated_at.get(_group_of(sample.labels), unknown)
            current = self._values.get(key)
            if current is None or when > current[1]:
                self._values[key] = (sample.value, when)
        fresh = []
        lateness = 0.0
        for (namespace, name, period), when in evaluated_at.items():
            slo = f"{namespace}/{name}"
            interval = self._rules.interval_of(slo)
            if interval is None or period != format_duration(interval) or when <= self._followed.get(slo, -math.inf):
                continue
            self._followed[slo] = when
            if horizon is None:
                # The first read sees every group's last evaluation at once: running all their passes would burst.
                continue
            # It was not readable at the previous read, which could show what was recorded up to `horizon`.
            lateness = max(lateness, horizon - when)
            if horizon - when > LATE_GROUP_GRACE:
                self._metrics.recorded_late_evaluations.inc()
            fresh.append(slo)
        if horizon is not None:
            widest = max(LATE_GROUP_GRACE, MAX_LOOKBACK_SHARE * (self._rules.shortest_interval or 0))
            self._grace = min(widest, max(LATE_GROUP_GRACE, self._grace * GRACE_DECAY, LATENESS_HEADROOM * lateness))
        return fresh

    def _forget_old(self, now: float) -> None:
        """Keeps what is remembered bounded by the queries of the SLOs still evaluated."""
        self._pruned_at = now
        for key, (answered_at, _) in list(self._answered.items()):
            period = self._rules.period_of(key)
            if period is None or now - answered_at >= period:
                del self._answered[key]
        for key in [key for key, (_, when) in self._values.items() if not self._is_fresh(key, when, now)]:
            del self._values[key]
        for slo in [slo for slo in self._followed if self._rules.interval_of(slo) is None]:
            del self._followed[slo]

    def _is_fresh(self, key: str, when: float, now: float) -> bool:
        """Whether a value its group recorded at `when` is at most two of the group's periods old: one that is
        older stopped coming (its rule fails, or its group no longer runs)."""
        period = self._rules.period_of(key)
        return period is not None and now - self._lag - when < 2 * period


def _shard_matchers(shards: frozenset[int] | None) -> tuple[LabelMatcher, ...]:
    """The matcher for the series of these shards (none when not sharded)."""
    if shards is None:
        return ()
    # No shard held: a value no shard label has, so the read stays one valid query that matches nothing.
    pattern = "|".join(str(shard) for shard in sorted(shards)) or "none"
    return (LabelMatcher(SHARD_LABEL, MatchOp.REGEX, pattern),)


def _recorded_since(seconds: float, matchers: tuple[LabelMatcher, ...]) -> str:
    """Every value and evaluation time recorded in the last `seconds`: only the groups that ran since."""
    window = f"{math.ceil(seconds * 1000)}ms"
    return " or ".join(
        f"last_over_time({render_selector(Selector(record, matchers))}[{window}])"
        for record in (VALUE_RECORD, EVALUATED_RECORD)
    )


def _fresh(record: str, periods: Iterable[int], matchers: tuple[LabelMatcher, ...]) -> str:
    """The latest sample of every `record` series whose own latest sample is at most two of its periods old.

    Each series is judged by its own samples: a rule that keeps failing (a timeout, a sample limit) writes
    nothing while the other rules of its group, its `time()` among them, still succeed.
    """
    return " or ".join(
        f"last_over_time({render_selector(Selector(record, (_period_is(period), *matchers)))}"
        f"[{format_duration(2 * period)}])"
        for period in sorted(periods)
    )


def _period_is(period: int) -> LabelMatcher:
    return LabelMatcher(PERIOD_LABEL, MatchOp.EQUAL, format_duration(period))


def _group_of(labels: Mapping[str, Any]) -> tuple[str, str, str]:
    return (str(labels.get(NAMESPACE_LABEL, "")), str(labels.get(SLO_LABEL, "")), str(labels.get(PERIOD_LABEL, "")))
