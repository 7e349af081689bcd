"""The web UI's view model: what a person reads about each SLO, and the range queries behind its charts.

Pages come from the operator's memory: the gate board (the last pass's state, budget and verdict) and each SLO's
body as kopf last delivered it (the spec, and the status the operator wrote). Nothing here calls the API server.
Charts come from Prometheus range queries, each bounded to MAX_POINTS, cached, and never needed for a page to
render: when Prometheus cannot answer, the page says so and shows everything else.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from slo_guard.domain.display import NOT_AVAILABLE, budget_percent
from slo_guard.domain.durations import format_duration
from slo_guard.domain.evaluation_types import State
from slo_guard.domain.model import (
    API_VERSION,
    KIND,
    BurnRateTier,
    LabelMatcher,
    MatchOp,
    Objective,
    RatioIndicator,
    Selector,
)
from slo_guard.domain.promql import errors_query, total_query
from slo_guard.domain.recording import QUERY_LABEL, VALUE_RECORD, query_key, refresh_period
from slo_guard.domain.rules import NAMESPACE_LABEL, SLO_LABEL, recorded_error_ratio_query
from slo_guard.domain.selectors import render_selector
from slo_guard.domain.timestamps import parse_rfc3339
from slo_guard.domain.windows import required_windows
from slo_guard.resources import SpecError, objective_from_resource
from slo_guard.service.gate import HOLDING_STATES, as_number
from slo_guard.service.gate_board import GateBoard, GateEntry, entry_from_resource
from slo_guard.service.ports import ObjectRef, PrometheusError, PrometheusUnavailable, RangeSource

logger = logging.getLogger("slo_guard.ui")

STATE_ORDER = (State.EXHAUSTED.value, State.BURNING.value, State.UNKNOWN.value, State.HEALTHY.value)
"""Worst first: the overview lists SLOs in this order, then by namespace and name."""
MAX_POINTS = 500
"""Points per chart series at most; the step of every range query follows from it."""
SPARK_SPAN = 86_400
SPARK_STEP = 3_600
"""The overview's sparkline: the last 24 h of budget, one point an hour (a few hundred bytes per SLO)."""
SPARK_TTL = 300.0
"""Seconds a sparkline is kept; it moves by at most one step's worth of budget in that time."""
RETRY_AFTER = 30.0
"""Seconds before queries that failed are sent again, so a broken Prometheus gets no storm of them."""
CHART_MIN_TTL = 10.0
"""Seconds a detail page's series are kept at least, however short the SLO's evaluation interval."""
TIER_SPAN = 4
"""A tier's burn-rate chart covers this many of its long windows (at most the SLO window)."""
QUERY_CONCURRENCY = 4
"""Range queries the UI has in flight at once, so viewers never crowd out evaluation."""
_LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


# --- Text for people ------------------------------------------------------------------------------------------


def moment_text(moment: datetime | None) -> str:
    """`2026-11-01 09:14:30 UTC`; `n/a` for no moment."""
    return NOT_AVAILABLE if moment is None else moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def duration_text(seconds: float) -> str:
    """The two largest units, rounded down: `3d 4h`, `2h 5m`, `12m`; `under 1m` below a minute."""
    if seconds < 60:
        return "under 1m"
    rest = int(seconds)
    parts: list[str] = []
    for size, unit in ((86_400, "d"), (3_600, "h"), (60, "m")):
        count, rest = divmod(rest, size)
        if count or parts:
            parts.append(f"{count}{unit}")
    return " ".join(part for part in parts[:2] if not part.startswith("0"))


def number_text(value: float | None) -> str:
    """Three significant digits, as the status carries numbers; `n/a` for none."""
    return NOT_AVAILABLE if value is None else f"{value:.3g}"


# --- The view model --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Tier:
    """One burn-rate tier as `status.alerts` and `status.burnRates` report it."""

    severity: str
    long_window: str
    short_window: str
    factor: float | None
    long_burn: float | None
    short_burn: float | None
    firing: bool

    @property
    def label(self) -> str:
        return f"{self.severity} {self.long_window}/{self.short_window} x{number_text(self.factor)}"


@dataclass(frozen=True, slots=True)
class TargetRow:
    kind: str
    name: str
    state: str
    since: datetime | None
    reason: str
    message: str

    @property
    def held(self) -> bool:
        return self.state in HOLDING_STATES


@dataclass(frozen=True, slots=True)
class ActionRow:
    """One entry of `status.actions`: what slo-guard did (or refused, or would do) to a target, and why."""

    time: datetime | None
    kind: str
    name: str
    action: str
    result: str
    reason: str
    message: str


@dataclass(frozen=True, slots=True)
class ConditionRow:
    type: str
    status: str
    reason: str
    message: str
    since: datetime | None


@dataclass(frozen=True, slots=True)
class Summary:
    """An SLO as one overview row shows it."""

    namespace: str
    name: str
    state: str
    """`Healthy`, `Burning`, `Exhausted` or `Unknown`."""
    reason: str | None
    """Why an Unknown SLO has no numbers (`NoData`, `InvalidSpec`, ...); None otherwise."""
    objective: str
    """As the spec writes it, in percent: `99.9%`."""
    window: str
    budget_remaining: float | None
    gate_open: bool
    gate_reason: str
    gate_message: str
    fastest_tier: Tier | None
    """The firing tier with the highest factor; None when none fires."""
    time_to_exhaustion: float | None
    held: int
    targets: int
    evaluated_at: datetime | None

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def budget_text(self) -> str:
        return budget_percent(self.budget_remaining)

    @property
    def budget_meter(self) -> float | None:
        """Percent of the budget left for a bar, clamped to 0..100 (the text says how far past either end)."""
        if self.budget_remaining is None or not math.isfinite(self.budget_remaining):
            return None
        return round(min(max(self.budget_remaining * 100, 0.0), 100.0), 1)


@dataclass(frozen=True, slots=True)
class Detail:
    """Everything the detail page shows that memory holds; charts come separately."""

    summary: Summary
    message: str
    description: str
    indicator: tuple[tuple[str, str], ...]
    """(what, as written): the selectors, and a latency SLI's threshold."""
    policy: tuple[tuple[str, str], ...]
    resume_above: float | None
    interval: int
    """The SLO's evaluation interval in seconds: the page refreshes at this cadence."""
    tiers: tuple[Tier, ...]
    targets: tuple[TargetRow, ...]
    actions: tuple[ActionRow, ...]
    """Newest first."""
    conditions: tuple[ConditionRow, ...]
    manifest: dict[str, Any]
    """apiVersion, kind, metadata (without kubectl's last-applied copy) and spec, as plain data for YAML."""


@dataclass(frozen=True, slots=True)
class Overview:
    rows: tuple[Summary, ...]
    """The SLOs the filters let through, worst state first."""
    namespaces: tuple[str, ...]
    """Every namespace with an SLO, for the filter."""
    counts: Mapping[str, int]
    """SLOs per state within the namespace filter."""
    total: int


def overview(
    board: GateBoard,
    bodies: Mapping[str, Mapping[str, Any]],
    *,
    namespace: str | None = None,
    state: str | None = None,
) -> Overview:
    """Every SLO in `bodies` (the ones this process evaluates), filtered by namespace and state."""
    namespaces: set[str] = set()
    rows = []
    counts = dict.fromkeys(STATE_ORDER, 0)
    for key, body in list(bodies.items()):
        slo_namespace, _, name = key.partition("/")
        namespaces.add(slo_namespace)
        if namespace and slo_namespace != namespace:
            continue
        row = summary(slo_namespace, name, body, board.get(slo_namespace, name))
        counts[row.state] = counts.get(row.state, 0) + 1
        if not state or row.state == state:
            rows.append(row)
    rank = {value: index for index, value in enumerate(STATE_ORDER)}
    rows.sort(key=lambda row: (rank.get(row.state, len(rank)), row.namespace, row.name))
    return Overview(tuple(rows), tuple(sorted(namespaces)), counts, total=len(bodies))


def detail(
    board: GateBoard, bodies: Mapping[str, Mapping[str, Any]], namespace: str, name: str
) -> tuple[Detail, Mapping[str, Any]] | None:
    """The detail of one SLO and its body; None when this process does not evaluate it."""
    body = bodies.get(f"{namespace}/{name}")
    if body is None:
        return None
    entry = _entry(namespace, name, body, board.get(namespace, name))
    spec = _mapping(body.get("spec"))
    status = _mapping(body.get("status"))
    policy = entry.policy
    return (
        Detail(
            summary=summary(namespace, name, body, entry),
            message=entry.verdict.message if entry.policy is None else _text(status.get("message")),
            description=_text(spec.get("description")),
            indicator=_indicator(spec),
            policy=()
            if policy is None
            else (
                ("mode", policy.mode.value),
                ("action", policy.action.value),
                ("trigger", policy.trigger.value),
                *((("scaleTo", str(policy.scale_to)),) if policy.scale_to is not None else ()),
                ("resumeAbove", f"{policy.resume_above:g}"),
            ),
            resume_above=None if policy is None else policy.resume_above,
            interval=_interval(body),
            tiers=_tiers(status),
            targets=tuple(
                TargetRow(
                    _text(row.get("kind")),
                    _text(row.get("name")),
                    _text(row.get("state")),
                    parse_rfc3339(row.get("since")),
                    _text(row.get("reason")),
                    _text(row.get("message")),
                )
                for row in _rows(status.get("targets"))
            ),
            actions=tuple(
                ActionRow(
                    parse_rfc3339(row.get("time")),
                    _text(row.get("kind")),
                    _text(row.get("name")),
                    _text(row.get("action")),
                    _text(row.get("result")),
                    _text(row.get("reason")),
                    _text(row.get("message")),
                )
                for row in reversed(_rows(status.get("actions")))
            ),
            conditions=tuple(
                ConditionRow(
                    _text(row.get("type")),
                    _text(row.get("status")),
                    _text(row.get("reason")),
                    _text(row.get("message")),
                    parse_rfc3339(row.get("lastTransitionTime")),
                )
                for row in _rows(status.get("conditions"))
            ),
            manifest=_manifest(body),
        ),
        body,
    )


def summary(namespace: str, name: str, body: Mapping[str, Any], entry: GateEntry | None) -> Summary:
    """One SLO's row. The entry (the last pass in this process) is fresher than the status the body carries."""
    entry = _entry(namespace, name, body, entry)
    spec = _mapping(body.get("spec"))
    status = _mapping(body.get("status"))
    tiers = _tiers(status)
    firing = [tier for tier in tiers if tier.firing]
    reason = None
    if entry.policy is None:
        reason = "InvalidSpec"
    elif entry.unknown and status.get("state") == entry.state:
        reason = _text(status.get("reason")) or None
    objective = as_number(spec.get("objective"))
    return Summary(
        namespace=namespace,
        name=name,
        state=entry.state,
        reason=reason,
        objective=f"{objective:.12g}%" if objective is not None else NOT_AVAILABLE,
        window=_text(spec.get("window")) or NOT_AVAILABLE,
        budget_remaining=entry.budget_remaining,
        gate_open=entry.verdict.open,
        gate_reason=entry.verdict.reason,
        gate_message=entry.verdict.message,
        fastest_tier=max(firing, key=lambda tier: tier.factor or 0.0) if firing else None,
        time_to_exhaustion=as_number(status.get("timeToExhaustion")) if not entry.unknown else None,
        held=sum(1 for row in _rows(status.get("targets")) if row.get("state") in HOLDING_STATES),
        targets=len(_rows(spec.get("targets"))),
        evaluated_at=entry.evaluated_at,
    )


def _entry(namespace: str, name: str, body: Mapping[str, Any], entry: GateEntry | None) -> GateEntry:
    if entry is not None:
        return entry
    # Not evaluated in this process yet: the gate as the stored status shows it.
    return entry_from_resource(ObjectRef(API_VERSION, KIND, namespace, name), body)


def _tiers(status: Mapping[str, Any]) -> tuple[Tier, ...]:
    burn_rates = _mapping(status.get("burnRates"))
    tiers = []
    for alert in _rows(status.get("alerts")):
        long_window, short_window = _text(alert.get("longWindow")), _text(alert.get("shortWindow"))
        tiers.append(
            Tier(
                severity=_text(alert.get("severity")),
                long_window=long_window,
                short_window=short_window,
                factor=as_number(alert.get("factor")),
                long_burn=as_number(burn_rates.get(long_window)),
                short_burn=as_number(burn_rates.get(short_window)),
                firing=alert.get("firing") is True,
            )
        )
    return tuple(tiers)


def _indicator(spec: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    indicator = _mapping(spec.get("indicator"))
    ratio, latency = _mapping(indicator.get("ratio")), _mapping(indicator.get("latency"))
    if ratio:
        return (("errors", _text(ratio.get("errors"))), ("total", _text(ratio.get("total"))))
    if latency:
        return (("histogram", _text(latency.get("histogram"))), ("threshold", f"{_text(latency.get('threshold'))} s"))
    return ()


def _interval(body: Mapping[str, Any]) -> int:
    try:
        return objective_from_resource(body, min_step=1).evaluation_interval
    except SpecError:
        return 30


def _manifest(body: Mapping[str, Any]) -> dict[str, Any]:
    metadata = _mapping(body.get("metadata"))
    shown: dict[str, Any] = {"name": metadata.get("name"), "namespace": metadata.get("namespace")}
    for key in ("labels", "annotations"):
        values = {name: value for name, value in _mapping(metadata.get(key)).items() if name != _LAST_APPLIED}
        if values:
            shown[key] = values
    manifest: dict[str, Any] = _plain(
        {"apiVersion": body.get("apiVersion"), "kind": body.get("kind"), "metadata": shown, "spec": body.get("spec")}
    )
    return manifest


def _plain(value: Any) -> Any:
    """kopf's mapping views as plain dicts and lists, for a YAML dump."""
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return value


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _rows(value: object) -> list[Mapping[str, Any]]:
    return [item for item in value if isinstance(item, Mapping)] if isinstance(value, list | tuple) else []


def _text(value: object) -> str:
    return "" if value is None else str(value)


# --- Range queries ----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RangeQuery:
    expr: str
    span: int
    """Seconds back from the moment of the query, at least; the grid ends exactly at that moment."""
    step: int

    @property
    def points(self) -> int:
        return math.ceil(self.span / self.step) + 1

    def start(self, end: int) -> int:
        return end - (self.points - 1) * self.step


def range_query(expr: str, span: int) -> RangeQuery:
    """`expr` over the last `span` seconds with a step that keeps it within MAX_POINTS."""
    return RangeQuery(expr, span, max(1, math.ceil(span / (MAX_POINTS - 1))))


@dataclass(frozen=True, slots=True)
class TierPlan:
    tier: BurnRateTier
    long: RangeQuery
    short: RangeQuery


@dataclass(frozen=True, slots=True)
class ChartPlan:
    """The range queries behind one SLO's detail charts, each an error ratio over some window."""

    objective: Objective
    budget: RangeQuery
    """The ratio over the SLO window, across the window: the budget's burn-down."""
    sli: RangeQuery
    sli_window: int
    """The SLI chart reads the shortest recorded window at least one step long, so no point misses events."""
    tiers: tuple[TierPlan, ...]
    recorded: bool

    def queries(self) -> tuple[RangeQuery, ...]:
        every = [self.budget, self.sli, *(query for tier in self.tiers for query in (tier.long, tier.short))]
        return tuple(dict.fromkeys(every))


def error_ratio_expr(objective: Objective, window: int, *, recorded: bool, extra: Sequence[LabelMatcher] = ()) -> str:
    """errors / total over `window`: absent without traffic, 0 when a ratio SLI's errors series is absent.

    `recorded` reads the values the operator's managed recording rules keep for the evaluation's own queries
    (docs/rules.md), far cheaper over long windows; otherwise the same PromQL the evaluation sends.
    """
    if not recorded:
        return recorded_error_ratio_query(objective, window=window, extra=extra)
    # A window is recorded every refresh period: look back two, as the evaluation's own reads accept.
    lookback = format_duration(2 * refresh_period(window, interval=objective.evaluation_interval))

    def value(expr: str) -> str:
        selector = Selector(
            VALUE_RECORD,
            (
                LabelMatcher(NAMESPACE_LABEL, MatchOp.EQUAL, objective.namespace),
                LabelMatcher(SLO_LABEL, MatchOp.EQUAL, objective.name),
                LabelMatcher(QUERY_LABEL, MatchOp.EQUAL, query_key(expr)),
            ),
        )
        # An absent result is recorded as -Inf.
        return f"max(last_over_time({render_selector(selector)}[{lookback}]) > -Inf)"

    errors = value(errors_query(objective.indicator, window, extra=extra))
    if isinstance(objective.indicator, RatioIndicator):
        errors = f"({errors} or vector(0))"
    return f"{errors} / ({value(total_query(objective.indicator, window, extra=extra))} > 0)"


def chart_plan(objective: Objective, *, recorded: bool, extra: Sequence[LabelMatcher] = ()) -> ChartPlan:
    window = objective.window
    budget = range_query(error_ratio_expr(objective, window, recorded=recorded, extra=extra), window)
    sli_window = min((w for w in required_windows(objective) if w >= budget.step), default=window)
    tiers = []
    for tier in objective.tiers:
        span = min(window, TIER_SPAN * tier.long_window)
        long, short = (
            range_query(error_ratio_expr(objective, w, recorded=recorded, extra=extra), span)
            for w in (tier.long_window, tier.short_window)
        )
        tiers.append(TierPlan(tier, long, short))
    return ChartPlan(
        objective=objective,
        budget=budget,
        sli=range_query(error_ratio_expr(objective, sli_window, recorded=recorded, extra=extra), window),
        sli_window=sli_window,
        tiers=tuple(tiers),
        recorded=recorded,
    )


def sparkline_query(objective: Objective, *, recorded: bool, extra: Sequence[LabelMatcher] = ()) -> RangeQuery:
    expr = error_ratio_expr(objective, objective.window, recorded=recorded, extra=extra)
    return RangeQuery(expr, SPARK_SPAN, SPARK_STEP)


@dataclass(frozen=True, slots=True)
class Column:
    """A range query's answer on its grid: `start + i * step`, None where Prometheus had no value."""

    start: int
    step: int
    values: tuple[float | None, ...]

    @property
    def times(self) -> list[int]:
        return [self.start + index * self.step for index in range(len(self.values))]

    def map(self, function: Callable[[float], float]) -> list[float | None]:
        return [None if value is None else function(value) for value in self.values]


def column(points: Sequence[tuple[float, float]], query: RangeQuery, *, end: int) -> Column:
    start = query.start(end)
    values: list[float | None] = [None] * query.points
    for moment, value in points:
        index = round((moment - start) / query.step)
        if 0 <= index < len(values) and math.isfinite(value):
            values[index] = value
    return Column(start, query.step, tuple(values))


def budget_column(ratios: Column, objective: Objective) -> list[float | None]:
    return ratios.map(lambda ratio: 1 - ratio / objective.error_budget)


@dataclass(frozen=True, slots=True)
class Stretch:
    """A time a tier fired: both its windows above the factor; `end` None while it still fires at the last point."""

    start: int
    end: int | None


def firing_stretches(
    times: Sequence[int], long: Sequence[float | None], short: Sequence[float | None], factor: float
) -> list[Stretch]:
    stretches: list[Stretch] = []
    began: int | None = None
    for moment, long_burn, short_burn in zip(times, long, short, strict=True):
        firing = long_burn is not None and short_burn is not None and long_burn > factor and short_burn > factor
        if firing and began is None:
            began = moment
        elif not firing and began is not None:
            stretches.append(Stretch(began, moment))
            began = None
    if began is not None:
        stretches.append(Stretch(began, None))
    return stretches


def fired_text(stretches: Sequence[Stretch], span: int) -> str:
    """When a tier last fired, as its chart shows it."""
    if not stretches:
        return f"not in the last {format_duration(span)}"
    last = stretches[-1]
    began = moment_text(datetime.fromtimestamp(last.start, UTC))
    if last.end is None:
        return f"since {began}"
    return f"{began} to {moment_text(datetime.fromtimestamp(last.end, UTC))}"


def series_document(plan: ChartPlan, columns: Mapping[RangeQuery, Column]) -> dict[str, Any]:
    """The detail charts as JSON: columns of unix seconds and values (null: no data), ready for uPlot."""
    objective = plan.objective
    budget, sli = columns[plan.budget], columns[plan.sli]
    tiers = []
    for tier_plan in plan.tiers:
        tier = tier_plan.tier
        long, short = columns[tier_plan.long], columns[tier_plan.short]
        long_burn, short_burn = (c.map(lambda ratio: ratio / objective.error_budget) for c in (long, short))
        times = long.times
        tiers.append(
            {
                "severity": tier.severity.value,
                "longWindow": format_duration(tier.long_window),
                "shortWindow": format_duration(tier.short_window),
                "factor": tier.factor,
                "span": format_duration(tier_plan.long.span),
                "step": long.step,
                "t": times,
                "long": long_burn,
                "short": short_burn,
                "fired": fired_text(firing_stretches(times, long_burn, short_burn, tier.factor), tier_plan.long.span),
            }
        )
    return {
        "slo": objective.key,
        "source": "recording rules" if plan.recorded else "PromQL",
        "objective": objective.objective,
        "resumeAbove": objective.policy.resume_above,
        "budget": {
            "window": format_duration(objective.window),
            "step": budget.step,
            "t": budget.times,
            "remaining": budget_column(budget, objective),
        },
        "sli": {
            "window": format_duration(plan.sli_window),
            "step": sli.step,
            "t": sli.times,
            "sli": sli.map(lambda ratio: 1 - ratio),
        },
        "tiers": tiers,
    }


# --- Fetching and caching ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Series:
    """One SLO's detail charts, or why there are none."""

    document: dict[str, Any] | None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Sparklines:
    columns: Mapping[str, Column]
    """The budget remaining over the last 24 h, by SLO key; missing where none was fetched yet."""
    error: str | None
    """Why the last round of sparkline queries failed; None when it succeeded."""


@dataclass(slots=True)
class _Cached:
    plan: ChartPlan
    series: Series
    due: float
    """Clock time at which it is fetched again."""


@dataclass(slots=True)
class _Sparks:
    columns: dict[str, Column] = field(default_factory=dict)
    due: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    task: asyncio.Task[None] | None = None


class Charts:
    """Range queries for the UI: sparklines in rounds over every SLO, detail series per SLO, both cached.

    A page never waits longer than the `wait` it passes: a round or fetch still running after it goes on in the
    background, shared by every request that comes meanwhile, and the page shows what is cached.
    """

    def __init__(
        self,
        source: RangeSource,
        bodies: Mapping[str, Mapping[str, Any]],
        *,
        recorded: bool,
        min_step: int,
        tenant_label: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._source = source
        self._bodies = bodies
        self.recorded = recorded
        self._min_step = min_step
        self._tenant_label = tenant_label
        self._clock = clock
        self._limit = asyncio.Semaphore(QUERY_CONCURRENCY)
        self._sparks = _Sparks()
        self._series: dict[str, _Cached] = {}
        self._fetches: dict[str, tuple[ChartPlan, asyncio.Task[Series]]] = {}

    def plan(self, body: Mapping[str, Any]) -> ChartPlan | str:
        """The SLO's chart plan, or why it has none."""
        objective = self._objective(body)
        if objective is None:
            return "the spec is invalid"
        return chart_plan(objective, recorded=self.recorded, extra=self._extra(objective))

    def _objective(self, body: Mapping[str, Any]) -> Objective | None:
        try:
            return objective_from_resource(body, min_step=self._min_step)
        except SpecError:
            return None

    async def sparklines(self, *, wait: float) -> Sparklines:
        """The cached sparklines, after starting a round for the stale ones and waiting up to `wait` for it."""
        sparks = self._sparks
        now = self._clock()
        stale = {key: body for key, body in list(self._bodies.items()) if now >= sparks.due.get(key, now)}
        for gone in [key for key in sparks.due if key not in self._bodies]:
            sparks.due.pop(gone)
            sparks.columns.pop(gone, None)
        if stale and (sparks.task is None or sparks.task.done()):
            for key in stale:
                sparks.due[key] = now + SPARK_TTL
            sparks.task = asyncio.create_task(self._spark_round(stale, now), name="slo-guard-ui-sparklines")
        if sparks.task is not None and not sparks.task.done() and wait > 0:
            await asyncio.wait({sparks.task}, timeout=wait)
        return Sparklines(dict(sparks.columns), sparks.error)

    async def series(self, key: str, body: Mapping[str, Any], *, wait: float | None) -> Series | None:
        """The SLO's detail series, fetched when stale; None when a fetch is still running after `wait` seconds."""
        plan = self.plan(body)
        if isinstance(plan, str):
            return Series(None, plan)
        cached = self._series.get(key)
        if cached is not None and cached.plan == plan and self._clock() < cached.due:
            return cached.series
        running = self._fetches.get(key)
        if running is None or running[0] != plan or running[1].done():
            task = asyncio.create_task(self._fetch(key, plan), name=f"slo-guard-ui-series-{key}")
            running = self._fetches[key] = (plan, task)
        done, _ = await asyncio.wait({running[1]}, timeout=wait)
        if done:
            return running[1].result()
        return cached.series if cached is not None and cached.plan == plan else None

    async def close(self) -> None:
        tasks: list[asyncio.Task[Any]] = [task for _, task in self._fetches.values()]
        if self._sparks.task is not None:
            tasks.append(self._sparks.task)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _extra(self, objective: Objective) -> tuple[LabelMatcher, ...]:
        # The matcher evaluation forces into every selector (service.evaluation.tenant_matchers): the same text,
        # so the same recorded series.
        if self._tenant_label is None:
            return ()
        return (LabelMatcher(self._tenant_label, MatchOp.EQUAL, objective.namespace),)

    async def _spark_round(self, stale: Mapping[str, Mapping[str, Any]], started: float) -> None:
        end = int(started)
        error: str | None = None
        try:
            async with asyncio.TaskGroup() as group:
                for key, body in stale.items():
                    objective = self._objective(body)
                    if objective is not None:
                        group.create_task(self._sparkline(key, objective, end))
        except* PrometheusUnavailable as errors:
            # One answer for all: the rest of the round was cancelled.
            error = str(errors.exceptions[0])
        except* Exception:
            logger.exception("sparkline round failed")
            error = "internal error (see the operator's log)"
        if error is not None:
            for key in stale:
                self._sparks.due[key] = started + RETRY_AFTER
        self._sparks.error = error

    async def _sparkline(self, key: str, objective: Objective, end: int) -> None:
        query = sparkline_query(objective, recorded=self.recorded, extra=self._extra(objective))
        try:
            ratios = await self._column(query, end)
        except PrometheusError as error:
            if isinstance(error, PrometheusUnavailable):
                raise
            # Prometheus refused this SLO's query (e.g. over its sample limit): asking every round cannot help.
            logger.warning("sparkline query refused", extra={"slo": key, "error": str(error)})
            return
        self._sparks.columns[key] = Column(ratios.start, ratios.step, tuple(budget_column(ratios, objective)))

    async def _fetch(self, key: str, plan: ChartPlan) -> Series:
        end = int(self._clock())
        queries = plan.queries()
        try:
            columns = await _gather(*(self._column(query, end) for query in queries))
        except PrometheusError as error:
            series = Series(None, str(error))
            due = end + CHART_MIN_TTL
        else:
            series = Series(series_document(plan, dict(zip(queries, columns, strict=True))))
            due = end + max(float(plan.objective.evaluation_interval), CHART_MIN_TTL)
        if key in self._bodies:
            self._series[key] = _Cached(plan, series, due)
        for gone in [known for known in self._series if known not in self._bodies]:
            del self._series[gone]
        if self._fetches.get(key, (plan, None))[1] is asyncio.current_task():
            del self._fetches[key]
        return series

    async def _column(self, query: RangeQuery, end: int) -> Column:
        async with self._limit:
            points = await self._source.query_range(
                query.expr,
                start=datetime.fromtimestamp(query.start(end), UTC),
                end=datetime.fromtimestamp(end, UTC),
                step=query.step,
            )
        return column(points, query, end=end)


async def _gather(*calls: Awaitable[Column]) -> list[Column]:
    """Every answer; on the first failure the others are cancelled and awaited before it propagates."""
    tasks = [asyncio.ensure_future(call) for call in calls]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
