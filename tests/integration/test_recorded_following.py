"""The following reader in controlled time: groups that finish late, and reads that a pass makes.

A rule group's values carry its evaluation's timestamp but become readable only when the evaluation ends, seconds
later on a loaded Prometheus. Here the test plays the rule evaluator against a real VictoriaMetrics: it imports a
group's recorded series with their evaluation timestamp only when the scenario says the evaluation ended, which
for a late group is after the reader has already read past that time. Reads are made at chosen times in the past,
so the scenarios do not depend on this machine's speed.
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
INTERVAL = 30
SETTINGS = EvaluationSettings(max_staleness=30)


@pytest.fixture(scope="module")
def victoriametrics(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VictoriaMetricsServer]:
    server = VictoriaMetricsServer(tmp_path_factory.mktemp("late-groups")).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def metrics() -> OperatorMetrics:
    return OperatorMetrics()


@pytest.fixture
async def client(victoriametrics: VictoriaMetricsServer, metrics: OperatorMetrics) -> AsyncIterator[PrometheusClient]:
    settings = PrometheusSettings(url=victoriametrics.url, timeout=5, retries=1, backoff_base=0.05, backoff_max=0.1)
    async with PrometheusClient(settings, metrics=metrics) as prometheus:
        yield prometheus


def objective(name: str) -> Objective:
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
        evaluation_interval=INTERVAL,
    )


class Reader:
    """A RecordedSource over its own rules, and the one who evaluates those rules, late or on time."""

    def __init__(
        self, victoriametrics: VictoriaMetricsServer, client: PrometheusClient, metrics: OperatorMetrics
    ) -> None:
        self.victoriametrics = victoriametrics
        self.rules = ManagedRules(SETTINGS)
        self.metrics = metrics
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

        Before each read, `busy` runs on time, half a second earlier: on a backend with thousands of groups some
        group always has just run, which is how the reader tells the backend's own lag from a late group.
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

    def queries(self) -> float:
        """Queries answered by the backend, the reads' and any direct one's."""
        return self.metrics.prometheus_requests.labels(outcome="success")._value.get()

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


async def test_as_groups_finish_later_reads_look_further_back_and_miss_no_run(
    victoriametrics: VictoriaMetricsServer, client: PrometheusClient, metrics: OperatorMetrics
) -> None:
    """A read first sees a group 0.8 s late; a new SLO's first run, 1.4 s late, is then read too, not missed."""
    late, new, busy = objective("late-group"), objective("new-slo"), objective("busy")
    reader = Reader(victoriametrics, client, metrics)
    ran = await started(reader, late, busy) + INTERVAL

    assert late.key not in await reader.follow_each_second(ran + 0.3, ran + 1.3, busy=busy)
    reader.evaluate(late, at=ran, errors=1.0, only_interval_group=True)
    assert late.key in await reader.follow_each_second(ran + 2.3, ran + 2.3, busy=busy), "0.8 s late: still read"
    assert reader.late() == 0, "within the second every read looks back"

    reader.manage(new)
    first_run = ran + 5
    assert new.key not in await reader.follow_each_second(first_run + 0.9, first_run + 1.9, busy=busy)
    reader.evaluate(new, at=first_run, errors=20.0)
    direct_before = reader.reads("direct")

    handed = await reader.follow_each_second(first_run + 2.9, first_run + 2.9, busy=busy)
    assert new.key in handed, "1.4 s late, more than a fixed second of look-back: read, and its pass runs then"
    assert await interval_ratio(reader, new, at=first_run + 2.9) == pytest.approx(0.2)
    assert reader.reads("direct") == direct_before, "every value of its first run came from the read"
    assert reader.late() == 1, "slo_guard_recorded_late_evaluations_total counts it"
    # Its SLO's fallback slot waits for this much lateness too: a next run as late is read before the slot.
    assert reader.source.lateness_allowed >= 2 * 1.4


async def test_a_read_a_pass_makes_hands_the_slos_it_brought_to_the_next_follow(
    victoriametrics: VictoriaMetricsServer, client: PrometheusClient, metrics: OperatorMetrics
) -> None:
    """When the follow loop has not read for an interval, a pass reads; the SLOs whose groups that read brought
    must still get their pass at the next follow, not wait for their fallback slot an interval later."""
    waiting, busy = objective("waiting"), objective("busy-too")
    reader = Reader(victoriametrics, client, metrics)
    ran = await started(reader, waiting, busy) + INTERVAL
    reader.evaluate(waiting, at=ran, errors=30.0, only_interval_group=True)

    # No follow for a whole interval: busy's pass reads, and that read brings waiting's new run.
    before = reader.queries()
    assert await interval_ratio(reader, busy, at=ran + 0.5) == pytest.approx(0.01)
    assert reader.queries() - before == 1, "the pass read what was recorded since the last read"
    assert waiting.key in await reader.follow(ran + 1.0), "handed over at the next follow"
    assert waiting.key not in await reader.follow(ran + 2.0), "once"
