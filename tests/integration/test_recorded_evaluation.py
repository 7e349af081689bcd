"""Evaluation through operator-managed recording rules, on a real Prometheus scraping synthetic services.

The rules are written the way `slo-guard run --rules-file` writes them (a rule file plus `/-/reload`); the
queries the operator sends are counted by a loopback proxy in front of Prometheus.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from tests.support.exporter import SyntheticService, Traffic
from tests.support.faults import FaultProxy
from tests.support.prometheus import PrometheusServer

from slo_guard.adapters.prometheus import PrometheusClient, PrometheusSettings
from slo_guard.adapters.rulesink import FileRuleSink, RuleFileSettings
from slo_guard.domain.durations import format_duration
from slo_guard.domain.evaluation import error_ratio
from slo_guard.domain.evaluation_types import State, UnknownReason, WindowRates
from slo_guard.domain.model import Objective, RatioIndicator
from slo_guard.domain.recording import (
    EVALUATED_RECORD,
    PERIOD_LABEL,
    QUERY_LABEL,
    SHARD_LABEL,
    VALUE_RECORD,
    measurement_queries,
    query_key,
    refresh_period,
)
from slo_guard.domain.rules import SLO_LABEL
from slo_guard.domain.selectors import parse_selector
from slo_guard.domain.windows import default_tiers
from slo_guard.service.evaluation import EvaluationSettings, evaluate_objective, measure
from slo_guard.service.recorded import LATE_GROUP_GRACE, ManagedRules, RecordedSource
from slo_guard.service.sharding import shard_of
from slo_guard.telemetry import OperatorMetrics

pytestmark = pytest.mark.prometheus

HOUR = 3600
SETTINGS = EvaluationSettings(max_staleness=30)
ERROR_RATIOS = (0.0, 0.02, 0.25)
TOLERANCE = 0.005
"""Relative difference allowed between a recorded error ratio and a direct one."""


def objective(name: str, service: SyntheticService, *, also: str = "") -> Objective:
    """`also` adds matchers, making the queries' text differ from other SLOs' on the same service."""
    instance = f'job="synthetic",instance="{service.target}"{also}'
    return Objective(
        name=name,
        namespace="shop",
        objective=0.99,
        window=HOUR,
        indicator=RatioIndicator(
            errors=parse_selector(f'http_requests_total{{{instance},code="500"}}'),
            total=parse_selector(f"http_requests_total{{{instance}}}"),
        ),
        tiers=default_tiers(HOUR, min_step=1),
        evaluation_interval=1,
    )


class World:
    def __init__(self, prometheus: PrometheusServer, services: list[SyntheticService], rules_path: Path) -> None:
        self.prometheus = prometheus
        self.services = services
        self.rules_path = rules_path
        self.proxy = FaultProxy(prometheus.url)
        self.metrics = OperatorMetrics()
        self.sink = FileRuleSink(
            RuleFileSettings(path=rules_path, reload_url=f"{prometheus.url}/-/reload"),
            PrometheusSettings(url=prometheus.url),
        )

    def new_client(self) -> PrometheusClient:
        """A client per test: its bulkhead belongs to the test's event loop."""
        settings = PrometheusSettings(url=self.proxy.url, timeout=2, retries=1, backoff_base=0.05, backoff_max=0.1)
        return PrometheusClient(settings, metrics=self.metrics)

    def queries_sent(self) -> int:
        return sum(1 for request in self.proxy.requests if request.path.startswith("/api/v1/query"))

    def query_texts(self, *, since: int) -> list[str]:
        """The PromQL of every query the proxy received after its first `since` requests."""
        sent = [urlsplit(request.path) for request in self.proxy.requests[since:]]
        return [parse_qs(url.query)["query"][0] for url in sent if url.path.startswith("/api/v1/query")]

    def reads(self, source: str) -> float:
        return self.metrics.recorded_reads.labels(source=source)._value.get()


@pytest.fixture
async def client(world: World) -> AsyncIterator[PrometheusClient]:
    async with world.new_client() as prometheus:
        yield prometheus


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    workdir = tmp_path_factory.mktemp("recorded")
    services = [SyntheticService(Traffic(rps=50, error_ratio=ratio)).start() for ratio in ERROR_RATIOS]
    rules_path = workdir / "rules" / "slo-guard.yaml"
    rules_path.parent.mkdir()
    rules_path.write_text("groups: []\n")
    prometheus = PrometheusServer(
        workdir / "prometheus", scrape_targets=[s.target for s in services], rule_files=[rules_path]
    ).start()
    world = World(prometheus, services, rules_path)
    # The shortest window the SLOs use is 2 s: wait until every service has that much history.
    deadline = time.monotonic() + 60
    while len(prometheus.query("sum by (instance) (rate(http_requests_total[3s]) > 0)")) < len(services):
        assert time.monotonic() < deadline, "Prometheus never scraped the synthetic services"
        time.sleep(0.5)
    world.proxy.start()
    try:
        yield world
    finally:
        world.sink.close()
        world.proxy.stop()
        prometheus.stop()
        for service in services:
            service.stop()


def objectives(world: World, count: int) -> list[Objective]:
    return [objective(f"svc-{index}", world.services[index % len(world.services)]) for index in range(count)]


async def write_rules(
    world: World, client: PrometheusClient, slos: list[Objective]
) -> tuple[ManagedRules, RecordedSource]:
    rules = ManagedRules(SETTINGS)
    for slo in slos:
        rules.observe(slo)
    await world.sink.write(rules.by_slo())
    return rules, RecordedSource(rules, client, metrics=world.metrics)


async def wait_until_recorded(world: World, source: RecordedSource, slos: list[Objective]) -> None:
    """Until one whole pass over `slos` is answered without a direct query."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        before = world.reads("direct") + world.reads("reused")
        await asyncio.gather(*(measure(slo, source, at=datetime.now(UTC), settings=SETTINGS) for slo in slos))
        if world.reads("direct") + world.reads("reused") == before:
            return
        await asyncio.sleep(1)
    raise AssertionError("the managed recording rules never answered every query")


async def recorded_rules(
    world: World, client: PrometheusClient, slos: list[Objective]
) -> tuple[ManagedRules, RecordedSource]:
    """The SLOs' rules written and answering every query, as in a running operator's steady state."""
    rules, source = await write_rules(world, client, slos)
    await wait_until_recorded(world, source, slos)
    return rules, source


async def at_a_new_cycle(world: World, client: PrometheusClient, slos: list[Objective]) -> RecordedSource:
    """Rules answering, and the last batch older than the 1 s interval: the next pass reads a new one."""
    _, source = await recorded_rules(world, client, slos)
    await asyncio.sleep(1.1)
    return source


def direct_at_rule_evaluation(world: World, slo: Objective, *, at: datetime) -> dict[int, float | None]:
    """Each window's error ratio queried directly at the time its rule group last ran before `at`."""
    evaluated = {
        labels[PERIOD_LABEL]: value
        for labels, value in world.prometheus.query(
            f'last_over_time({EVALUATED_RECORD}{{{SLO_LABEL}="{slo.name}"}}[1m])', at=at
        )
    }
    ratios = {}
    for window in measurement_queries(slo).windows:
        ran_at = datetime.fromtimestamp(evaluated[format_duration(refresh_period(window.window, interval=1))], UTC)
        errors = world.prometheus.query_value(window.errors, at=ran_at)
        total = world.prometheus.query_value(window.total, at=ran_at)
        ratios[window.window] = error_ratio(slo.indicator, WindowRates(errors=errors, total=total))
    return ratios


async def test_recorded_values_are_what_prometheus_answers_when_the_rules_run(
    world: World, client: PrometheusClient
) -> None:
    slos = objectives(world, 3)
    rules, _ = await recorded_rules(world, client, slos)
    at = datetime.now(UTC)
    fresh = RecordedSource(rules, client, metrics=world.metrics)
    for slo in slos:
        recorded = await measure(slo, fresh, at=at, settings=SETTINGS)
        expected = direct_at_rule_evaluation(world, slo, at=at)
        for window, ratio in expected.items():
            assert ratio is not None, f"window {window}s has traffic"
            actual = error_ratio(slo.indicator, recorded.windows[window])
            assert actual == pytest.approx(ratio, rel=TOLERANCE), f"{slo.name}, window {window}s"
        assert recorded.newest_sample_age is not None
        assert recorded.newest_sample_age < 5


async def test_follow_hands_over_each_slo_at_the_first_read_after_its_group_ran_with_that_runs_values(
    world: World, client: PrometheusClient
) -> None:
    """Rules mode's reaction: a pass runs right after the read that brings its group's values, on those values."""
    slos = objectives(world, 3)
    _, source = await recorded_rules(world, client, slos)
    interval_group = {f"shop/{slo.name}": slo for slo in slos}
    handed: dict[str, list[float]] = {key: [] for key in interval_group}
    previous = started = time.time()
    reads, sent = 0, world.queries_sent()
    direct_before = world.reads("direct")
    while time.time() - started < 4:
        await asyncio.sleep(0.2)
        at = datetime.now(UTC)
        fresh = await source.follow(at)
        reads += 1
        for key in fresh:
            slo = interval_group[key]
            evaluated = world.prometheus.query_value(
                f'last_over_time({EVALUATED_RECORD}{{{SLO_LABEL}="{slo.name}",{PERIOD_LABEL}="1s"}}[5s])', at=at
            )
            assert evaluated is not None
            assert evaluated > previous - LATE_GROUP_GRACE, f"{key}: handed over at the first read after its run"
            assert evaluated not in handed[key], f"{key}: handed over once per run of its group"
            handed[key].append(evaluated)
            measured = await measure(slo, source, at=at, settings=SETTINGS)
            for window, ratio in direct_at_rule_evaluation(world, slo, at=at).items():
                assert error_ratio(slo.indicator, measured.windows[window]) == pytest.approx(ratio, rel=TOLERANCE)
        previous = at.timestamp()
    assert all(len(runs) >= 3 for runs in handed.values()), "every run of a 1 s group in 4 s, give or take one"
    assert world.reads("direct") == direct_before, "every value came from the reads"
    assert world.queries_sent() - sent == reads, "one query per read, for what was recorded since the last"


async def test_a_sharded_replica_reads_back_only_its_shards_and_a_shard_it_takes_is_answered_at_once(
    world: World, client: PrometheusClient
) -> None:
    """Two replicas' rules in Prometheus: each reads only the series of the shards it holds, not every replica's."""
    slos = [
        objective(f"sharded-{index}", world.services[index % len(world.services)], also=f',path!="/sharded-{index}"')
        for index in range(4)
    ]
    by_shard = {shard: [slo for slo in slos if shard_of(slo.key, 2) == shard] for shard in (0, 1)}
    assert all(by_shard.values()), "both shards have SLOs"
    mine, theirs = ManagedRules(SETTINGS, shards=2), ManagedRules(SETTINGS, shards=2)
    for shard, rules in ((0, mine), (1, theirs)):
        for slo in by_shard[shard]:
            rules.observe(slo)
    await world.sink.write({**mine.by_slo(), **theirs.by_slo()})
    held = {0}
    source = RecordedSource(mine, client, metrics=world.metrics, held_shards=lambda: frozenset(held))
    await wait_until_recorded(world, source, by_shard[0])
    await wait_until_recorded(world, RecordedSource(theirs, client, metrics=world.metrics), by_shard[1])

    sent = len(world.proxy.requests)
    at = datetime.now(UTC)
    await source.follow(at)
    [read] = world.query_texts(since=sent)
    shards_read = {labels[SHARD_LABEL] for labels, _ in world.prometheus.query(read, at=at)}
    assert shards_read == {"0"}, "the other replica's series are not read, though Prometheus records them"

    # The other replica stops; this one takes shard 1 and its rules, whose series keep their labels.
    for slo in by_shard[1]:
        mine.observe(slo)
    held.add(1)
    direct_before = world.reads("direct")
    at = datetime.now(UTC)
    await source.follow(at)
    await asyncio.gather(*(measure(slo, source, at=at, settings=SETTINGS) for slo in by_shard[1]))
    assert world.reads("direct") == direct_before, "what the shard's previous holder recorded answers at once"


async def test_queries_per_cycle_do_not_grow_with_the_number_of_slos(world: World, client: PrometheusClient) -> None:
    per_cycle = {}
    for count in (1, 30):
        slos = objectives(world, count)
        source = await at_a_new_cycle(world, client, slos)
        sent = world.queries_sent()
        at = datetime.now(UTC)
        await asyncio.gather(*(measure(slo, source, at=at, settings=SETTINGS) for slo in slos))
        per_cycle[count] = world.queries_sent() - sent
    assert per_cycle == {1: 1, 30: 1}, "one read of what was recorded since the last answers every SLO's queries"


async def test_passes_that_started_just_before_the_cycles_batch_was_read_use_it_too(
    world: World, client: PrometheusClient
) -> None:
    """With thousands of SLOs, passes overlap: one that started before the batch was read must not read it again."""
    slos = objectives(world, 4)
    source = await at_a_new_cycle(world, client, slos)
    sent = world.queries_sent()
    at = datetime.now(UTC)
    started_earlier = [at - timedelta(seconds=0.5), at - timedelta(seconds=0.2), at - timedelta(seconds=0.4)]
    for slo, started in zip(slos, [at, *started_earlier], strict=True):
        await measure(slo, source, at=started, settings=SETTINGS)
    assert world.queries_sent() - sent == 1, "one read for the whole cycle"


async def test_a_new_slo_is_evaluated_by_direct_queries_reused_for_their_refresh_period(
    world: World, client: PrometheusClient
) -> None:
    recorded_slos = objectives(world, 1)
    rules, source = await recorded_rules(world, client, recorded_slos)
    newcomer = objective("newcomer", world.services[2], also=',path!="/never"')
    rules.observe(newcomer)
    plan = measurement_queries(newcomer)
    queries = 1 + 2 * len(plan.windows)
    slow = 2 * sum(1 for w in plan.windows if refresh_period(w.window, interval=1) > 1)
    assert slow > 0, "the 1 h window is recomputed every 5 s"

    direct_before = world.reads("direct")
    at = datetime.now(UTC)
    evaluation = await evaluate_objective(newcomer, source, at=at, settings=SETTINGS)
    assert evaluation.state is State.EXHAUSTED, "25 % errors spend a 1 % budget, read directly"
    assert world.reads("direct") - direct_before == queries, "every one of its queries went to Prometheus"

    direct_before, reused_before = world.reads("direct"), world.reads("reused")
    await evaluate_objective(newcomer, source, at=at + timedelta(seconds=1), settings=SETTINGS)
    assert world.reads("reused") - reused_before == slow, "slow windows reuse the answer until their period ends"
    assert world.reads("direct") - direct_before == queries - slow


async def test_values_of_rules_that_stopped_running_are_not_used(world: World, client: PrometheusClient) -> None:
    slos = objectives(world, 1)
    rules, _ = await recorded_rules(world, client, slos)
    await world.sink.write({})
    slowest = max(refresh_period(w.window, interval=1) for w in measurement_queries(slos[0]).windows)
    await asyncio.sleep(2 * slowest + 1.5)
    fresh = RecordedSource(rules, client, metrics=world.metrics)
    direct_before = world.reads("direct")
    await measure(slos[0], fresh, at=datetime.now(UTC), settings=SETTINGS)
    queries = 1 + 2 * len(measurement_queries(slos[0]).windows)
    assert world.reads("direct") - direct_before == queries, "values older than twice their period are not used"


async def follow_for(source: RecordedSource, seconds: float) -> None:
    """Read what was recorded since the last read every half second, as the operator does."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        await source.follow(datetime.now(UTC))
        await asyncio.sleep(0.5)


@pytest.mark.parametrize("reader", ["new", "following"])
async def test_the_value_of_a_rule_that_keeps_failing_is_not_used_while_its_group_still_runs(
    world: World, client: PrometheusClient, reader: str
) -> None:
    """A new reader reads everything at once; a following one only what came since, where the value stops coming."""
    slo = objective(f"failing-rule-{reader}", world.services[1], also=f',path!="/failing-rule-{reader}"')
    rules, following = await recorded_rules(world, client, [slo])
    hour = next(window for window in measurement_queries(slo).windows if window.window == HOUR)
    period = refresh_period(HOUR, interval=1)
    assert period > 1, "the 1 h window's group runs every 5 s"
    groups = json.loads(rules.by_slo()[slo.key])
    # The 1 h total's rule now fails at every evaluation (many-to-many matching), while the other rules of its
    # group, its time() among them, keep succeeding. Its last value stays in Prometheus, growing old.
    for group in groups:
        for rule in group["rules"]:
            if rule["labels"].get(QUERY_LABEL) == query_key(hour.total):
                rule["expr"] = "http_requests_total + on() http_requests_total"
    await world.sink.write({slo.key: json.dumps(groups)})
    if reader == "following":
        await follow_for(following, 2 * period + 1.5)
        source = following
    else:
        await asyncio.sleep(2 * period + 1.5)
        source = RecordedSource(rules, client, metrics=world.metrics)

    sent = len(world.proxy.requests)
    direct_before = world.reads("direct")
    at = datetime.now(UTC)
    measured = await measure(slo, source, at=at, settings=SETTINGS)
    assert hour.total in world.query_texts(since=sent), "a value older than two of its periods is asked directly"
    assert world.reads("direct") - direct_before >= 1
    # The service started minutes ago, so its 1 h rate still grows by a few percent every second.
    [(_, stale)] = world.prometheus.query(
        f'last_over_time({VALUE_RECORD}{{{QUERY_LABEL}="{query_key(hour.total)}"}}[1m])', at=at
    )
    now = world.prometheus.query_value(hour.total, at=at)
    measured_total = measured.windows[HOUR].total
    assert now is not None
    assert measured_total is not None
    gap = abs(stale - now)
    assert gap > 0.01 * now, "the failing rule's last value is still there, and wrong"
    assert abs(measured_total - now) < gap / 2, "the current number, not the stale one"


@pytest.mark.parametrize(
    ("path", "fail_with"),
    [("/not-prometheus", None), ("", 422)],
    ids=["wrong-path-404", "batch-rejected-422"],
)
async def test_a_failed_batch_read_fails_its_cycle_once_and_the_next_cycle_tries_again(
    world: World, path: str, fail_with: int | None
) -> None:
    """Neither error is worth a retry; a rejected batch is the operator's own query, so no SLO is QueryRejected."""
    slos = objectives(world, 20)
    rules = ManagedRules(SETTINGS)
    for slo in slos:
        rules.observe(slo)
    settings = PrometheusSettings(url=f"{world.proxy.url}{path}", timeout=2, retries=1)
    world.proxy.fail_with = fail_with
    sent = len(world.proxy.requests)
    try:
        async with PrometheusClient(settings, metrics=world.metrics) as prometheus:
            source = RecordedSource(rules, prometheus, metrics=world.metrics)
            at = datetime.now(UTC)
            for cycle in range(2):
                evaluations = await asyncio.gather(
                    *(
                        evaluate_objective(slo, source, at=at + timedelta(seconds=1.5 * cycle), settings=SETTINGS)
                        for slo in slos
                    )
                )
                unknown = {(e.state, e.reason) for e in evaluations}
                assert unknown == {(State.UNKNOWN, UnknownReason.PROMETHEUS_UNAVAILABLE)}
        # Counted once the client has closed: a batch query cancelled when its pair failed may still be on its way.
        requests = len(world.proxy.requests) - sent
    finally:
        world.proxy.fail_with = None
    assert requests == 4, "the two batch queries once per cycle, and no SLO sends them again"


async def test_an_unreachable_prometheus_fails_the_cycle_without_a_query_storm(
    world: World, client: PrometheusClient
) -> None:
    slos = objectives(world, 20)
    source = await at_a_new_cycle(world, client, slos)
    world.proxy.fail_with = 503
    try:
        sent = world.queries_sent()
        at = datetime.now(UTC)
        evaluations = await asyncio.gather(*(evaluate_objective(slo, source, at=at, settings=SETTINGS) for slo in slos))
        failed_requests = world.queries_sent() - sent
    finally:
        world.proxy.fail_with = None
    assert {e.state for e in evaluations} == {State.UNKNOWN}
    assert failed_requests <= 4, "two batch queries, each tried twice; no per-SLO direct queries"


async def test_absent_results_are_recorded_as_minus_infinity_and_read_back_as_absent(
    world: World, client: PrometheusClient
) -> None:
    silent = Objective(
        name="silent",
        namespace="shop",
        objective=0.99,
        window=HOUR,
        indicator=RatioIndicator(
            errors=parse_selector('never_exported_total{code="500"}'),
            total=parse_selector("never_exported_total"),
        ),
        tiers=default_tiers(HOUR, min_step=1),
        evaluation_interval=1,
    )
    _, source = await recorded_rules(world, client, [silent])
    measured = await measure(silent, source, at=datetime.now(UTC), settings=SETTINGS)
    assert measured.newest_sample_age is None
    assert all(rates.total is None and rates.errors is None for rates in measured.windows.values())
    stored = world.prometheus.query('sloguard_operator:query:value{sloguard_slo="silent"}')
    assert stored
    assert all(value == -math.inf for _, value in stored)
