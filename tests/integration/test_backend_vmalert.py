"""The managed recording rules on VictoriaMetrics: vmalert runs the rule file, slo-guard reads the recorded series.

The rule file is written and reloaded the way `slo-guard run --rules-file F --rules-reload-url
http://vmalert/-/reload` does it; vmalert evaluates it against VictoriaMetrics and remote-writes what it records
back there, where the operator's reader finds it with its two batch queries, as with Prometheus
(tests/integration/test_recorded_evaluation.py). A proxy in front of VictoriaMetrics counts the operator's queries.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
import urllib.parse
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from tests.support.exporter import SyntheticService, Traffic
from tests.support.faults import FaultProxy
from tests.support.kube import kustomize
from tests.support.victoriametrics import REPO_ROOT, VictoriaMetricsServer, VMAlert

from slo_guard.adapters.prometheus import PrometheusClient, PrometheusSettings
from slo_guard.adapters.rulesink import FileRuleSink, RuleFileSettings
from slo_guard.domain.durations import format_duration
from slo_guard.domain.evaluation import error_ratio
from slo_guard.domain.evaluation_types import WindowRates
from slo_guard.domain.model import Objective, RatioIndicator
from slo_guard.domain.recording import EVALUATED_RECORD, PERIOD_LABEL, VALUE_RECORD, measurement_queries, refresh_period
from slo_guard.domain.rules import SLO_LABEL
from slo_guard.domain.selectors import parse_selector
from slo_guard.domain.windows import default_tiers
from slo_guard.service.evaluation import EvaluationSettings, measure
from slo_guard.service.recorded import ManagedRules, RecordedSource
from slo_guard.telemetry import OperatorMetrics

pytestmark = pytest.mark.prometheus

HOUR = 3600
SETTINGS = EvaluationSettings(max_staleness=30)
ERROR_RATIOS = (0.0, 0.02, 0.25)
TOLERANCE = 0.005
"""Relative difference allowed between a recorded error ratio and a direct one (the Prometheus test's bound)."""
DEADLINE = 60.0
"""Seconds to wait for scraped data and for recorded series: VictoriaMetrics 1.79 makes a new series searchable
about 10 s after its first sample."""


def objective(name: str, service: SyntheticService) -> Objective:
    instance = f'job="synthetic",instance="{service.target}"'
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


@dataclass
class World:
    victoriametrics: VictoriaMetricsServer
    vmalert: VMAlert
    services: list[SyntheticService]
    proxy: FaultProxy
    sink: FileRuleSink
    metrics: OperatorMetrics

    def reads(self, source: str) -> float:
        return self.metrics.recorded_reads.labels(source=source)._value.get()

    def queries_sent(self) -> int:
        return sum(1 for request in self.proxy.requests if request.path.startswith("/api/v1/query"))


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    workdir = tmp_path_factory.mktemp("vmalert")
    services = [SyntheticService(Traffic(rps=50, error_ratio=ratio)).start() for ratio in ERROR_RATIOS]
    rules_path = workdir / "rules" / "slo-guard.yaml"
    rules_path.parent.mkdir()
    rules_path.write_text("groups: []\n")
    victoriametrics = VictoriaMetricsServer(workdir / "vm", scrape_targets=[s.target for s in services]).start()
    vmalert = VMAlert(
        workdir / "vmalert", datasource=victoriametrics.url, remote_write=victoriametrics.url, rule_files=[rules_path]
    ).start()
    sink = FileRuleSink(
        RuleFileSettings(path=rules_path, reload_url=vmalert.reload_url), PrometheusSettings(url=victoriametrics.url)
    )
    world = World(victoriametrics, vmalert, services, FaultProxy(victoriametrics.url).start(), sink, OperatorMetrics())
    try:
        # The shortest window the SLOs use is 2 s: wait until every service has that much history.
        deadline = time.monotonic() + DEADLINE
        while len(victoriametrics.query("sum by (instance) (rate(http_requests_total[3s]) > 0)")) < len(services):
            assert time.monotonic() < deadline, "VictoriaMetrics never scraped the synthetic services"
            time.sleep(0.5)
        yield world
    finally:
        sink.close()
        world.proxy.stop()
        vmalert.stop()
        victoriametrics.stop()
        for service in services:
            service.stop()


@pytest.fixture
async def client(world: World) -> AsyncIterator[PrometheusClient]:
    settings = PrometheusSettings(url=world.proxy.url, timeout=2, retries=1, backoff_base=0.05, backoff_max=0.1)
    async with PrometheusClient(settings, metrics=world.metrics) as prometheus:
        yield prometheus


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
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        before = world.reads("direct") + world.reads("reused")
        await asyncio.gather(*(measure(slo, source, at=datetime.now(UTC), settings=SETTINGS) for slo in slos))
        if world.reads("direct") + world.reads("reused") == before:
            return
        await asyncio.sleep(1)
    raise AssertionError(f"the recorded series never answered every query; vmalert log:\n{world.vmalert.log_tail()}")


def direct_at_rule_evaluation(world: World, slo: Objective, *, at: datetime) -> dict[int, float | None]:
    """Each window's error ratio asked of VictoriaMetrics directly for the time its group last ran before `at`."""
    evaluated = {
        labels[PERIOD_LABEL]: value
        for labels, value in world.victoriametrics.query(
            f'last_over_time({EVALUATED_RECORD}{{{SLO_LABEL}="{slo.name}"}}[1m])', at=at
        )
    }
    ratios = {}
    for window in measurement_queries(slo).windows:
        ran_at = datetime.fromtimestamp(evaluated[format_duration(refresh_period(window.window, interval=1))], UTC)
        errors = world.victoriametrics.query_value(window.errors, at=ran_at)
        total = world.victoriametrics.query_value(window.total, at=ran_at)
        ratios[window.window] = error_ratio(slo.indicator, WindowRates(errors=errors, total=total))
    return ratios


async def test_vmalert_runs_the_rule_file_and_the_recorded_values_are_what_victoriametrics_answers(
    world: World, client: PrometheusClient
) -> None:
    slos = [objective(f"svc-{index}", service) for index, service in enumerate(world.services)]
    rules, source = await write_rules(world, client, slos)
    await wait_until_recorded(world, source, slos)
    group_names = {group["name"] for group in world.vmalert.groups()}
    assert group_names == {group["name"] for groups in rules.by_slo().values() for group in json.loads(groups)}

    at = datetime.now(UTC)
    for slo, error_share in zip(slos, ERROR_RATIOS, strict=True):
        recorded = await measure(slo, source, at=at, settings=SETTINGS)
        expected = direct_at_rule_evaluation(world, slo, at=at)
        for window, ratio in expected.items():
            assert ratio is not None, f"window {window}s has traffic"
            actual = error_ratio(slo.indicator, recorded.windows[window])
            assert actual is not None
            assert actual == pytest.approx(ratio, rel=TOLERANCE, abs=1e-12), f"{slo.name}, window {window}s"
            # And it is the service's error share, within a request of the 100 in the shortest window.
            assert actual == pytest.approx(error_share, abs=0.02), f"{slo.name}, window {window}s"
        assert recorded.newest_sample_age is not None
        assert recorded.newest_sample_age < 5


async def test_one_query_per_cycle_reads_every_slo(world: World, client: PrometheusClient) -> None:
    slos = [objective(f"many-{index}", world.services[index % len(world.services)]) for index in range(30)]
    _, source = await write_rules(world, client, slos)
    await wait_until_recorded(world, source, slos)
    await asyncio.sleep(1.1)
    sent = world.queries_sent()
    at = datetime.now(UTC)
    await asyncio.gather(*(measure(slo, source, at=at, settings=SETTINGS) for slo in slos))
    assert world.queries_sent() - sent == 1, "what vmalert recorded since the last read, for all 30 SLOs"


async def test_an_absent_series_is_recorded_as_minus_infinity_and_read_back_as_absent(
    world: World, client: PrometheusClient
) -> None:
    silent = Objective(
        name="silent",
        namespace="shop",
        objective=0.99,
        window=HOUR,
        indicator=RatioIndicator(
            errors=parse_selector('never_exported_total{code="500"}'), total=parse_selector("never_exported_total")
        ),
        tiers=default_tiers(HOUR, min_step=1),
        evaluation_interval=1,
    )
    _, source = await write_rules(world, client, [silent])
    await wait_until_recorded(world, source, [silent])
    measured = await measure(silent, source, at=datetime.now(UTC), settings=SETTINGS)
    assert measured.newest_sample_age is None
    assert all(rates.total is None and rates.errors is None for rates in measured.windows.values())
    stored = world.victoriametrics.query(f'{VALUE_RECORD}{{{SLO_LABEL}="silent"}}')
    assert stored
    assert all(value == -math.inf for _, value in stored)


def test_the_example_deploys_vmalert_as_these_tests_run_it(tmp_path: Path) -> None:
    """examples/vmalert/: the operator's rules file is vmalert's, its reload URL vmalert's address, both talk to the
    same VictoriaMetrics the NetworkPolicy opens, and every vmalert flag it sets is one these tests pass."""
    rendered = kustomize(REPO_ROOT / "examples" / "vmalert")
    [deployment] = [item for item in rendered if item["kind"] == "Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    containers = {container["name"]: container for container in pod["containers"]}
    env = {item["name"]: item["value"] for item in containers["slo-guard"]["env"] if "value" in item}
    flags = dict(arg.removeprefix("-").split("=", 1) for arg in containers["vmalert"]["args"])

    assert flags["rule"] == env["SLO_GUARD_RULES_FILE"]
    assert env["SLO_GUARD_RULES_RELOAD_URL"] == f"http://{flags['httpListenAddr']}/-/reload"
    assert flags["datasource.url"] == flags["remoteWrite.url"] == env["SLO_GUARD_PROMETHEUS_URL"]
    rules_dir = str(Path(env["SLO_GUARD_RULES_FILE"]).parent)
    for container in containers.values():
        assert {"name": "rules", "mountPath": rules_dir} in [
            {key: mount[key] for key in ("name", "mountPath")} for mount in container["volumeMounts"]
        ]
    assert {"name": "rules", "emptyDir": {"sizeLimit": "64Mi"}} in pod["volumes"]
    [policy] = [item for item in rendered if item["metadata"]["name"] == "slo-guard-prometheus"]
    [rule] = policy["spec"]["egress"]
    assert rule["ports"] == [{"protocol": "TCP", "port": urllib.parse.urlsplit(flags["datasource.url"]).port}]

    tested = VMAlert(tmp_path, datasource="http://vm", remote_write="http://vm", rule_files=[tmp_path / "rules"])
    tested_flags = {arg.removeprefix("-").split("=", 1)[0] for arg in tested._command()[1:]}
    assert set(flags) <= tested_flags
