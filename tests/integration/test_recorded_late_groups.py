"""Rule groups that finish late on a busy backend: the following reader must read them late, not miss them.

A rule group's values carry its evaluation's timestamp but become readable only when the evaluation ends, seconds
later on a loaded Prometheus. Here the test plays the rule evaluator against a real VictoriaMetrics: it imports a
group's recorded series with their evaluation timestamp only after the reader has already read past that time,
which is exactly what a reader sees when a group finishes late. Reads are made at chosen times in the past, so the
scenario does not depend on this machine's speed.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime

import pytest
from tests.support.victoriametrics import VictoriaMetricsServer

from slo_guard.adapters.prometheus import PrometheusClient, PrometheusSettings
from slo_guard.domain.durations import format_duration
from slo_guard.domain.model import Objective, RatioIndicator
from slo_guard.domain.recording import EVALUATED_RECORD, QUERY_LABEL, measurement_queries, query_key
from slo_guard.domain.selectors import parse_selector
from slo_guard.domain.windows import default_tiers
from slo_guard.service.evaluation import EvaluationSettings, measure
from slo_guard.service.recorded import ManagedRules, RecordedSource
from slo_guard.telemetry import OperatorMetrics

pytestmark = pytest.mark.prometheus

HOUR = 3600
INTERVAL = 5
SETTINGS = EvaluationSettings(max_staleness=30)
LATE = 3.0
"""Seconds after its timestamp a late group's values become readable: three reads a second apart miss it."""


@pytest.fixture(scope="module")
def victoriametrics(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VictoriaMetricsServer]:
    server = VictoriaMetricsServer(tmp_path_factory.mktemp("late-groups")).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def client(victoriametrics: VictoriaMetricsServer) -> AsyncIterator[PrometheusClient]:
    settings = PrometheusSettings(url=victoriametrics.url, timeout=5, retries=1, backoff_base=0.05, backoff_max=0.1)
    async with PrometheusClient(settings, metrics=OperatorMetrics()) as prometheus:
        yield prometheus


def objective(name: str, *, interval: int = INTERVAL) -> Objective:
    return Objective(
        name=name,
        namespace="late",
        objective=0.99,
        window=HOUR,
        indicator=RatioIndicator(
            errors=parse_selector(f'http_requests_total{{job="{name}",code="500"}}'),
            total=parse_selector(f'http_requests_total{{job="{name}"}}'),
        ),
        tiers=default_tiers(HOUR, min_step=1),
        evaluation_interval=interval,
    )


class Reader:
    """A RecordedSource over its own rules, and the one who evaluates those rules, late or on time."""

    def __init__(self, victoriametrics: VictoriaMetricsServer, client: PrometheusClient) -> None:
        self.victoriametrics = victoriametrics
        self.rules = ManagedRules(SETTINGS)
        self.metrics = OperatorMetrics()
        self.source = RecordedSource(self.rules, client, metrics=self.metrics)

    def manage(self, *slos: Objective) -> None:
        for slo in slos:
            self.rules.observe(slo)

    def evaluate(self, slo: Objective, *, at: float, errors: float, only_interval_group: bool = False) -> None:
        """Record what the SLO's groups would at `at`: `errors` errors per second out of 100 in every window."""
        errors_keys = {query_key(window.errors) for window in measurement_queries(slo).windows}
        lines = []
        for group in json.loads(self.rules.by_slo()[slo.key]):
            if only_interval_group and group["interval"] != format_duration(slo.evaluation_interval):
                continue
            for rule in group["rules"]:
                labels = ",".join(f'{name}="{value}"' for name, value in sorted(rule["labels"].items()))
                if rule["record"] == EVALUATED_RECORD:
                    value = at
                else:
                    value = errors if rule["labels"][QUERY_LABEL] in errors_keys else 100.0
                lines.append(f"{rule['record']}{{{labels}}} {value} {at:.3f}")
        self.victoriametrics.import_openmetrics("\n".join(lines) + "\n")

    async def follow(self, at: float) -> list[str]:
        return await self.source.follow(datetime.fromtimestamp(at, UTC))

    async def follow_each_second(self, start: float, end: float, *, busy: Objective) -> list[str]:
        """Reads a second apart from `start` up to `end`, as the operator makes them; the SLOs handed over.

        Before each read, `busy` (a 1 s interval) runs on time, half a second earlier: on a backend with thousands
        of groups some group always has just run, which is how the reader tells the backend's own lag from a late
        group.
        """
        handed: list[str] = []
        at = start
        while at <= end:
            self.evaluate(busy, at=at - 0.5, errors=1.0, only_interval_group=True)
            handed += await self.follow(at)
            at += 1.0
        return handed

    def reads(self, source: str) -> float:
        return self.metrics.recorded_reads.labels(source=source)._value.get()

    def late(self) -> float:
        return self.metrics.recorded_late_evaluations._value.get()


def a_while_ago() -> float:
    """A start far enough back that every read of the scenario is in the past, at a whole millisecond."""
    return round(time.time() - 300, 3)


async def interval_ratio(reader: Reader, slo: Objective, *, at: float) -> float:
    """The error ratio the SLO's shortest window is measured at, at `at`."""
    measured = await measure(slo, reader.source, at=datetime.fromtimestamp(at, UTC), settings=SETTINGS)
    shortest = min(measured.windows)
    rates = measured.windows[shortest]
    assert rates.errors is not None
    assert rates.total
    return rates.errors / rates.total


async def started(reader: Reader, *slos: Objective) -> float:
    """The SLOs' groups all ran at a start time, and a first read took them in; returns that time."""
    reader.manage(*slos)
    start = a_while_ago()
    for slo in slos:
        reader.evaluate(slo, at=start, errors=1.0)
    assert await reader.follow(start + 0.5) == [], "the first read takes everything in, handing nothing over"
    return start


async def test_a_group_that_finishes_after_the_next_reads_is_read_late_not_missed(
    victoriametrics: VictoriaMetricsServer, client: PrometheusClient
) -> None:
    late, busy = objective("late-group"), objective("busy", interval=1)
    reader = Reader(victoriametrics, client)
    evaluated = await started(reader, late, busy) + INTERVAL

    handed = await reader.follow_each_second(evaluated + 0.5, evaluated + LATE - 0.5, busy=busy)
    assert late.key not in handed
    # The late group's run at `evaluated` ends now, three reads later: with 50 errors a second instead of 1.
    reader.evaluate(late, at=evaluated, errors=50.0, only_interval_group=True)
    direct_before = reader.reads("direct")

    handed = await reader.follow_each_second(evaluated + LATE + 0.5, evaluated + LATE + 0.5, busy=busy)
    assert late.key in handed, "read late, and its pass runs then"
    assert await interval_ratio(reader, late, at=evaluated + LATE + 0.5) == pytest.approx(0.5)
    assert reader.reads("direct") == direct_before, "its values came from the read, not from direct queries"
    assert reader.late() == 1, "slo_guard_recorded_late_evaluations_total counts it"
    # Its SLO's fallback slot waits this much longer than the interval: a next run as late is read before it.
    assert reader.source.lateness_allowed >= LATE


async def test_after_late_groups_a_new_slos_first_evaluation_is_read_even_when_it_is_late_too(
    victoriametrics: VictoriaMetricsServer, client: PrometheusClient
) -> None:
    """A group never seen before owes no evaluation the reader could wait for: the look-back must cover it."""
    teacher, new, busy = objective("teacher"), objective("new-slo"), objective("busy-too", interval=1)
    reader = Reader(victoriametrics, client)
    evaluated = await started(reader, teacher, busy) + INTERVAL
    await reader.follow_each_second(evaluated + 0.5, evaluated + LATE - 0.5, busy=busy)
    reader.evaluate(teacher, at=evaluated, errors=1.0, only_interval_group=True)
    assert teacher.key in await reader.follow_each_second(evaluated + LATE + 0.5, evaluated + LATE + 0.5, busy=busy)

    # A new SLO's first run ends three reads late too.
    reader.manage(new)
    first_run = evaluated + LATE + 1
    handed = await reader.follow_each_second(first_run + 0.5, first_run + LATE - 0.5, busy=busy)
    assert new.key not in handed
    reader.evaluate(new, at=first_run, errors=20.0)
    direct_before = reader.reads("direct")

    assert new.key in await reader.follow_each_second(first_run + LATE + 0.5, first_run + LATE + 0.5, busy=busy)
    assert await interval_ratio(reader, new, at=first_run + LATE + 0.5) == pytest.approx(0.2)
    assert reader.reads("direct") == direct_before, "every value of its first run came from the read"
