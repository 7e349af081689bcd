"""The operator's own metrics, kept in one registry so tests and processes stay isolated."""

from __future__ import annotations

import enum
import functools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from slo_guard.domain.admission import AdmissionDecision
from slo_guard.domain.durations import format_duration
from slo_guard.domain.evaluation_types import Evaluation, State


class BreakerStateLike(Protocol):
    """A circuit breaker state (adapters.resilience.BreakerState) as telemetry sees it."""

    @property
    def name(self) -> str: ...

    def __int__(self) -> int: ...


class PrometheusOutcome(enum.StrEnum):
    """How one HTTP request to Prometheus ended (the `outcome` label)."""

    SUCCESS = "success"
    ERROR = "error"
    """Prometheus answered 5xx or something unreadable."""
    TIMEOUT = "timeout"
    UNAVAILABLE = "unavailable"
    """No connection could be made (refused, DNS, TLS, credentials unreadable)."""
    CIRCUIT_OPEN = "circuit_open"
    """Not sent: the circuit breaker failed it fast."""
    BAD_QUERY = "bad_query"
    """Prometheus rejected the request with a 4xx."""


class KubernetesOutcome(enum.StrEnum):
    """How one request to the Kubernetes API ended (the `outcome` label)."""

    SUCCESS = "success"
    NOT_FOUND = "not_found"
    CONFLICT = "conflict"
    """409 or 422: the object moved since it was read."""
    THROTTLED = "throttled"
    """429: the API server asked slo-guard to slow down."""
    SERVER_ERROR = "server_error"
    TIMEOUT = "timeout"
    UNAVAILABLE = "unavailable"
    """No connection could be made."""
    CIRCUIT_OPEN = "circuit_open"
    """Not sent: the circuit breaker failed it fast."""
    REJECTED = "rejected"
    """Any other 4xx, e.g. 403 from missing RBAC."""


class EventOutcome(enum.StrEnum):
    """What became of one Kubernetes Event slo-guard wanted to post (the `outcome` label)."""

    POSTED = "posted"
    SUPPRESSED = "suppressed"
    """The same Event was posted lately; not posted again."""
    FAILED = "failed"


class RecordedRead(enum.StrEnum):
    """Where one query's answer came from when the operator manages recording rules (the `source` label)."""

    RECORDED = "recorded"
    """Read from the batch of recorded values."""
    DIRECT = "direct"
    """Not recorded yet, or recorded too long ago: sent to Prometheus as is."""
    REUSED = "reused"
    """A direct answer younger than the query's refresh period, reused."""


# Prometheus answers in milliseconds when healthy; the top buckets catch timeouts.
_REQUEST_SECONDS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

# Intervals are whole seconds, usually 10 s to 5 m; the fine steps around them show lateness.
_SPACING_BUCKETS = (
    0.5,
    1,
    1.5,
    2,
    5,
    9,
    10,
    11,
    15,
    20,
    25,
    29,
    30,
    31,
    33,
    36,
    45,
    60,
    61,
    66,
    90,
    120,
    300,
    301,
    330,
    600,
)


class OperatorMetrics:
    """Every metric slo-guard exports about itself."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        """Where the metrics live; a fresh registry by default so tests never share counters."""
        self.prometheus_requests = Counter(
            "slo_guard_prometheus_requests",
            "HTTP requests to Prometheus (one per attempt), by how they ended.",
            ["outcome"],
            registry=self.registry,
        )
        self.prometheus_request_duration = Histogram(
            "slo_guard_prometheus_request_duration_seconds",
            "Wall time of HTTP requests to Prometheus that were sent.",
            buckets=_REQUEST_SECONDS_BUCKETS,
            registry=self.registry,
        )
        self.circuit_breaker_state = Gauge(
            "slo_guard_circuit_breaker_state",
            "Circuit breaker state: 0 closed, 1 open, 2 half-open.",
            ["breaker"],
            registry=self.registry,
        )
        self.circuit_breaker_transitions = Counter(
            "slo_guard_circuit_breaker_transitions",
            "Circuit breaker state changes, by the state entered (closed, open, half_open).",
            ["breaker", "state"],
            registry=self.registry,
        )
        self.kubernetes_requests = Counter(
            "slo_guard_kubernetes_requests",
            "Requests to the Kubernetes API (one per attempt), by verb and how they ended.",
            ["verb", "outcome"],
            registry=self.registry,
        )
        self.kubernetes_events = Counter(
            "slo_guard_kubernetes_events",
            "Kubernetes Events slo-guard wanted to post, by what became of them.",
            ["outcome"],
            registry=self.registry,
        )
        self._slos = SloSeries()
        """The per-SLO gauges (slo_guard_sli, _error_budget_remaining, _burn_rate, _state)."""
        self.registry.register(self._slos)
        self.actions = Counter(
            "slo_guard_actions",
            "Actions on target workloads, by action and result.",
            ["action", "result"],
            registry=self.registry,
        )
        self.evaluation_duration = Histogram(
            "slo_guard_evaluation_duration_seconds",
            "Wall time of one SLO's evaluate-and-reconcile pass.",
            buckets=_REQUEST_SECONDS_BUCKETS,
            registry=self.registry,
        )
        self.evaluation_spacing = Histogram(
            "slo_guard_evaluation_spacing_seconds",
            "Time between the starts of one SLO's consecutive passes; above the interval means falling behind.",
            buckets=_SPACING_BUCKETS,
            registry=self.registry,
        )
        self.asyncio_tasks = Gauge(
            "slo_guard_asyncio_tasks",
            "asyncio tasks alive in the operator's event loop (passes in flight plus kopf's own); a leak grows it.",
            registry=self.registry,
        )
        self.evaluated_slos = Gauge(
            "slo_guard_evaluated_slos",
            "SLOs this replica evaluates now: all it watches, or those of the shards it holds.",
            registry=self.registry,
        )
        self.shards_held = Gauge(
            "slo_guard_shards_held",
            "Shard Leases this replica holds now (0 without --shards).",
            registry=self.registry,
        )
        self.recorded_reads = Counter(
            "slo_guard_recorded_reads",
            "Queries answered while managing recording rules, by where the answer came from.",
            ["source"],
            registry=self.registry,
        )
        self.recorded_late_evaluations = Counter(
            "slo_guard_recorded_late_evaluations",
            "Rule group evaluations read although they became readable over a second after their timestamp (a "
            "busy Prometheus): reads look further back while groups run late.",
            registry=self.registry,
        )
        self.recorded_read_lookback = Gauge(
            "slo_guard_recorded_read_lookback_seconds",
            "How far before the previous read the latest read of recorded values looked back.",
            registry=self.registry,
        )
        self.rule_syncs = Counter(
            "slo_guard_rule_syncs",
            "Writes of the managed recording rules, by result (success or failure).",
            ["result"],
            registry=self.registry,
        )
        self.rule_sync_duration = Histogram(
            "slo_guard_rule_sync_duration_seconds",
            "Wall time of one write of the managed recording rules, including Prometheus's reload.",
            buckets=(0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0),
            registry=self.registry,
        )
        self.managed_rule_groups = Gauge(
            "slo_guard_managed_rule_groups",
            "Recording rule groups in the last rules slo-guard wrote.",
            registry=self.registry,
        )
        self.admission_decisions = Counter(
            "slo_guard_admission_decisions",
            "Admission reviews of workload updates, by decision (allowed, warned, overridden, denied).",
            ["decision"],
            registry=self.registry,
        )
        self.gate_requests = Counter(
            "slo_guard_gate_requests",
            "Requests to the gate API, by endpoint (slo, flagger) and HTTP status code.",
            ["endpoint", "code"],
            registry=self.registry,
        )
        for decision in AdmissionDecision:
            self.admission_decisions.labels(decision=decision.value)
        for outcome in PrometheusOutcome:
            # Export every outcome at 0 so rate() and alerts work before the first failure.
            self.prometheus_requests.labels(outcome=outcome.value)
        for event_outcome in EventOutcome:
            self.kubernetes_events.labels(outcome=event_outcome.value)
        for source in RecordedRead:
            self.recorded_reads.labels(source=source.value)

    def record_evaluation(self, *, namespace: str, name: str, evaluation: Evaluation) -> None:
        """Per-SLO gauges; values an Unknown evaluation does not have are removed rather than left stale."""
        self._slos.record(namespace, name, evaluation)

    def forget_slo(self, *, namespace: str, name: str) -> None:
        """Drop every series of an SLO deleted, or evaluated by another replica now, so dashboards never count it
        twice and churn cannot grow the registry."""
        self._slos.forget(namespace, name)

    def count_action(self, *, action: str, result: str) -> None:
        self.actions.labels(action=action, result=result).inc()

    def count_prometheus_request(self, outcome: PrometheusOutcome) -> None:
        self.prometheus_requests.labels(outcome=outcome.value).inc()

    def set_breaker_state(self, breaker: str, state: int) -> None:
        self.circuit_breaker_state.labels(breaker=breaker).set(state)

    def breaker_moved(self, breaker: str, state: BreakerStateLike) -> None:
        """A state change: the gauge, plus a counter that keeps even a half-open state of a millisecond."""
        self.set_breaker_state(breaker, int(state))
        self.circuit_breaker_transitions.labels(breaker=breaker, state=state.name.lower()).inc()

    def count_kubernetes_request(self, verb: str, outcome: KubernetesOutcome) -> None:
        self.kubernetes_requests.labels(verb=verb, outcome=outcome.value).inc()

    def count_kubernetes_event(self, outcome: EventOutcome) -> None:
        self.kubernetes_events.labels(outcome=outcome.value).inc()


_SLO = ["namespace", "slo"]


@dataclass(frozen=True, slots=True)
class _Latest:
    sli: float | None
    budget_remaining: float | None
    burn_rates: tuple[tuple[str, float], ...]
    state: State


class SloSeries(Collector):
    """The per-SLO gauges, built at each scrape from each SLO's latest evaluation.

    One prometheus_client child per series cost about 10 KiB per SLO (14 series); one record per SLO costs a
    tenth of that, and an SLO's series come and go together, so none is left stale.
    """

    def __init__(self) -> None:
        self._latest: dict[tuple[str, str], _Latest] = {}

    def record(self, namespace: str, name: str, evaluation: Evaluation) -> None:
        burns = tuple(
            (_window_label(window), burn)
            for window, burn in sorted((evaluation.burn_rates or {}).items())
            if burn is not None
        )
        self._latest[(namespace, name)] = _Latest(evaluation.sli, evaluation.budget_remaining, burns, evaluation.state)

    def forget(self, namespace: str, name: str) -> None:
        self._latest.pop((namespace, name), None)

    def describe(self) -> list[Metric]:
        return list(_families())

    def collect(self) -> Iterator[Metric]:
        sli, budget, burn, state = _families()
        # A copy in one step: scrapes may run on another thread than the passes that record.
        for (namespace, name), latest in list(self._latest.items()):
            if latest.sli is not None:
                sli.add_metric([namespace, name], latest.sli)
            if latest.budget_remaining is not None:
                budget.add_metric([namespace, name], latest.budget_remaining)
            for window, value in latest.burn_rates:
                burn.add_metric([namespace, name, window], value)
            for each in State:
                state.add_metric([namespace, name, each.value], 1 if each is latest.state else 0)
        yield from (sli, budget, burn, state)


def _families() -> tuple[GaugeMetricFamily, GaugeMetricFamily, GaugeMetricFamily, GaugeMetricFamily]:
    return (
        GaugeMetricFamily("slo_guard_sli", "SLI over the SLO window (fraction of good events).", labels=_SLO),
        GaugeMetricFamily(
            "slo_guard_error_budget_remaining",
            "Fraction of the error budget left over the SLO window; negative when overspent.",
            labels=_SLO,
        ),
        GaugeMetricFamily(
            "slo_guard_burn_rate", "Burn rate per window (1 spends the budget exactly).", labels=[*_SLO, "window"]
        ),
        GaugeMetricFamily(
            "slo_guard_state", "1 for the SLO's current state, 0 for the others.", labels=[*_SLO, "state"]
        ),
    )


@functools.cache
def _window_label(window: int) -> str:
    """One string per window for every SLO, not one per SLO."""
    return format_duration(window)
