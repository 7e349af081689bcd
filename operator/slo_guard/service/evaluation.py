"""Evaluate one SLO: build its queries, read Prometheus at an explicit time, and hand the numbers to the domain."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from slo_guard.domain.evaluation import evaluate, unavailable
from slo_guard.domain.evaluation_types import Evaluation, Measurements, State, UnknownReason, WindowRates
from slo_guard.domain.model import LabelMatcher, MatchOp, Objective
from slo_guard.domain.recording import measurement_queries
from slo_guard.service.ports import MetricsSource, PrometheusUnavailable, QueryError, QueryRejected, Sample


@dataclass(frozen=True, slots=True)
class EvaluationSettings:
    max_staleness: float
    """Seconds; a newest sample older than this makes the SLO Unknown/StaleData."""
    tenant_label: str | None = None
    """When set, `<label>="<SLO namespace>"` is forced into every selector."""


class _InvalidSample(Exception):
    """Prometheus answered with NaN or infinity where a rate was expected."""


async def evaluate_objective(
    objective: Objective, source: MetricsSource, *, at: datetime, settings: EvaluationSettings
) -> Evaluation:
    """Never raises for metric problems: they become an Unknown evaluation with a reason."""
    try:
        measurements = await measure(objective, source, at=at, settings=settings)
    except PrometheusUnavailable as err:
        return unavailable(now=at, message=f"Prometheus unavailable: {err}")
    except QueryRejected as err:
        # Not naming the query: which of several rejected ones fails first varies, and the status would churn.
        message = f"Prometheus rejected one of this SLO's queries: {err.error}"
        return Evaluation(state=State.UNKNOWN, reason=UnknownReason.QUERY_REJECTED, message=message, evaluated_at=at)
    except QueryError as err:
        return unavailable(now=at, message=f"Prometheus rejected a query: {err}")
    except _InvalidSample as err:
        return Evaluation(state=State.UNKNOWN, reason=UnknownReason.NO_DATA, message=str(err), evaluated_at=at)
    return evaluate(objective, measurements, now=at, max_staleness=settings.max_staleness)


async def measure(
    objective: Objective, source: MetricsSource, *, at: datetime, settings: EvaluationSettings
) -> Measurements:
    plan = measurement_queries(objective, extra=tenant_matchers(objective, settings))
    queries = [plan.freshness]
    for window in plan.windows:
        queries.extend((window.errors, window.total))
    results = await query_all(source, queries, at=at)
    newest = _scalar(queries[0], results[0])
    rates = {
        window.window: WindowRates(
            errors=_scalar(window.errors, results[1 + 2 * index]),
            total=_scalar(window.total, results[2 + 2 * index]),
        )
        for index, window in enumerate(plan.windows)
    }
    age = None if newest is None else max(0.0, at.timestamp() - newest)
    return Measurements(windows=rates, newest_sample_age=age)


def _scalar(query: str, samples: Sequence[Sample]) -> float | None:
    """The single value of an aggregated query; None when the series is absent."""
    if not samples:
        return None
    value = samples[0].value
    if not math.isfinite(value):
        raise _InvalidSample(f"Prometheus returned {value} for {query}")
    return value


async def query_all(source: MetricsSource, queries: Sequence[str], *, at: datetime) -> list[Sequence[Sample]]:
    """Every query's answer, asked concurrently.

    When one fails, the others are cancelled and awaited before its error propagates: none goes on retrying or
    sending once the evaluation's outcome is known.
    """
    tasks = [asyncio.ensure_future(source.query(query, at=at)) for query in queries]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


def tenant_matchers(objective: Objective, settings: EvaluationSettings) -> tuple[LabelMatcher, ...]:
    if settings.tenant_label is None:
        return ()
    return (LabelMatcher(settings.tenant_label, MatchOp.EQUAL, objective.namespace),)
