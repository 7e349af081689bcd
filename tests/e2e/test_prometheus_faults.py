"""Prometheus misbehaving under a running operator: down, 5xx, too slow, NaN, absent series, stale samples.

A world of this module's own: an emulated API server (from `private_clusters`, so test_rbac.py checks its requests
too), a FaultProxy in front of the shared world's real Prometheus, and `slo-guard run` reading Prometheus only through
that proxy. While a fault lasts the operator must write nothing to any target, report DataAvailable=False with the
reason, open its circuit breaker and probe through it; after the fault it must evaluate again and act at most once per
decision, without a burst of requests.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest
from prometheus_client import Gauge
from tests.conftest import summary_lines
from tests.e2e.conftest import EVALUATION_INTERVAL, OperatorProcess, PrivateClusters, World, wait_for
from tests.e2e.scenario import (
    ACT_TIMEOUT,
    FAILING,
    HEALTHY,
    SLO_API,
    SLO_KIND,
    condition,
    deploy,
    is_paused,
    matching_samples,
    metric_families,
    one_target,
    prometheus_shows_exhausted,
    repeating,
    service_labels,
    slo,
    slo_status,
    wait_healthy,
)
from tests.support.exporter import SyntheticService
from tests.support.faults import FaultProxy
from tests.support.kube import USER_AGENT, EmulatorClient, KubeClient
from tests.support.prometheus import free_port

from slo_guard.adapters.prometheus import BREAKER_NAME
from slo_guard.adapters.resilience import BreakerState
from slo_guard.domain.recording import measurement_queries
from slo_guard.resources import objective_from_resource

pytestmark = [pytest.mark.e2e, pytest.mark.prometheus]

PROMETHEUS_TIMEOUT = 1.0
"""Seconds; the slow fault answers later than this."""
BREAKER_THRESHOLD = 3
BREAKER_RESET = 3.0
"""Seconds the breaker stays open before one probe."""
MIN_STEP = 1
"""Seconds, as the shared operator's --min-step: a 1m window gets 2s and 6s burn-rate windows."""
LONG_OUTAGE = 5 * BREAKER_RESET
"""Seconds: five breaker cool-downs and fifteen evaluation intervals."""
RECOVERY_WINDOW = 3.0
"""Seconds after a fault ends over which the requests reaching Prometheus are counted."""
POLL = 0.05
"""Seconds between readings of the breaker gauge: short enough to catch a half-open probe of a slow fault."""

OUTAGE_NS = "pf-outage"
NAN_NS = "pf-nan"
ABSENT_NS = "pf-absent"
STALE_NS = "pf-stale"
NAMESPACES = (OUTAGE_NS, NAN_NS, ABSENT_NS, STALE_NS)
NAN_METRIC = "fault_nan_requests_total"
TARGET = "app"
"""The name of every SLO here and of the Deployment it guards."""

FIGURES = summary_lines("slo-guard: Prometheus faults (seconds, or requests)")


@dataclass
class FaultWorld:
    kube: KubeClient
    emulator: EmulatorClient
    proxy: FaultProxy
    operator: OperatorProcess
    shared: World
    """The shared world: its real Prometheus sits behind the proxy and scrapes `outage_service` and `data_service`."""
    outage_service: SyntheticService
    data_service: SyntheticService

    def data_available(self, namespace: str) -> dict[str, Any]:
        return condition(slo_status(self, namespace, TARGET), "DataAvailable")

    def target_writes(self, namespace: str) -> list[Any]:
        """Writes the operator (not this test) sent to Deployments in `namespace`."""
        records = self.emulator.writes_to("deployments", namespace=namespace)
        return [record for record in records if record.user_agent != USER_AGENT]

    def status_writes(self, namespace: str) -> list[Any]:
        return self.emulator.writes_to("servicelevelobjectives", namespace=namespace, subresource="status")

    def target_patches(self, namespace: str) -> list[Any]:
        return self.emulator.requests(verb="patch", resource="deployments", namespace=namespace)

    def guard(self, namespace: str, service: SyntheticService, *, total: str | None = None) -> float:
        """A Deployment and an SLO on `service` that guards it (with another `total` selector if given).

        Returns when the SLO was created (time.monotonic()).
        """
        deploy(self, namespace, TARGET)
        manifest = slo(TARGET, namespace, service, targets=one_target(TARGET))
        if total is not None:
            manifest["spec"]["indicator"]["ratio"]["total"] = total
        self.kube.create_object(manifest)
        return time.monotonic()

    def slo_count(self) -> int:
        return sum(
            len(self.kube.list_objects(SLO_API, SLO_KIND, namespace=namespace)["items"]) for namespace in NAMESPACES
        )


@pytest.fixture(scope="module")
def faults(world: World, private_clusters: PrivateClusters) -> Iterator[FaultWorld]:
    services = (world.take_service(HEALTHY), world.take_service(FAILING))
    proxy = FaultProxy(world.prometheus.url).start()
    try:
        with private_clusters.cluster("prometheus-faults", watched_namespace=None, manifests=()) as cluster:
            # After the shared flags, so these win: the proxy, and what the assertions here count on.
            operator = cluster.operator(
                "prometheus-faults",
                "--standalone",
                "--prometheus", proxy.url,
                "--min-step", f"{MIN_STEP}s",
                "--prometheus-timeout", f"{PROMETHEUS_TIMEOUT:g}",
                "--prometheus-breaker-threshold", str(BREAKER_THRESHOLD),
                "--prometheus-breaker-reset", f"{BREAKER_RESET:g}",
            )  # fmt: skip
            operator.start()
            wait_for(operator.is_ready, timeout=60, what="the fault world's operator /readyz")
            yield FaultWorld(
                kube=cluster.kube,
                emulator=cluster.emulator,
                proxy=proxy,
                operator=operator,
                shared=world,
                outage_service=services[0],
                data_service=services[1],
            )
    finally:
        proxy.stop()
        for service in services:
            service.stop()


def record(what: str, value: float) -> None:
    """A line in FIGURES: seconds, or a count of requests."""
    FIGURES.append(f"{what}: {value:.2f}")


@dataclass(frozen=True, slots=True)
class Reading:
    at: float
    """time.monotonic() of the reading."""
    breaker: int | None
    """slo_guard_circuit_breaker_state{breaker="prometheus"}; None when /metrics did not answer."""
    proxied: int
    """Requests the proxy had received so far."""


class Monitor:
    """Reads the operator's breaker gauge and the proxy's request count every POLL seconds, in the background."""

    def __init__(self, operator: OperatorProcess, proxy: FaultProxy) -> None:
        self.operator = operator
        self.proxy = proxy
        self.readings: list[Reading] = []

    @contextmanager
    def watching(self) -> Iterator[Monitor]:
        self._read()
        with repeating(self._read, every=POLL, name="breaker-monitor"):
            yield self

    def _read(self) -> None:
        self.readings.append(Reading(time.monotonic(), breaker_state(self.operator), len(self.proxy.requests)))

    def states(self, since: float = 0.0) -> list[BreakerState]:
        """The breaker states seen from `since` on, each change once."""
        seen: list[BreakerState] = []
        for reading in list(self.readings):
            if reading.at >= since and reading.breaker is not None and seen[-1:] != [reading.breaker]:
                seen.append(BreakerState(reading.breaker))
        return seen

    def first(self, state: BreakerState, since: float = 0.0) -> Reading | None:
        return next((r for r in list(self.readings) if r.at >= since and r.breaker == state), None)

    def proxied_at(self, moment: float) -> Reading:
        """The first reading at or after `moment` (waits for it)."""
        reading: Reading = wait_for(
            lambda: next((r for r in list(self.readings) if r.at >= moment), None),
            timeout=10,
            what="a breaker reading",
            every=POLL,
        )
        return reading


def breaker_state(operator: OperatorProcess) -> int | None:
    try:
        families = metric_families(operator, timeout=2)
    except OSError:
        return None
    samples = matching_samples(families, "slo_guard_circuit_breaker_state", breaker=BREAKER_NAME)
    return int(samples[0].value) if samples else None


def queries_per_pass(service: SyntheticService) -> int:
    """Queries one evaluation of a scenario.slo() manifest sends: the freshness one, errors and total per window."""
    objective = objective_from_resource(slo(TARGET, OUTAGE_NS, service, targets=[]), min_step=MIN_STEP)
    return 1 + 2 * len(measurement_queries(objective).windows)


def wait_unavailable(faults: FaultWorld, namespace: str, *, since: float, fault: str) -> dict[str, Any]:
    """Wait for DataAvailable=False and record how long it took after `since`."""
    data = wait_for(
        lambda: (c := faults.data_available(namespace)).get("status") == "False" and c,
        timeout=30,
        what=f"DataAvailable=False after {fault}",
        every=0.1,
    )
    record(f"{fault} -> DataAvailable=False", time.monotonic() - since)
    return dict(data)


def wait_available(faults: FaultWorld, *, since: float, fault: str) -> None:
    wait_for(
        lambda: faults.data_available(OUTAGE_NS).get("status") == "True",
        timeout=30,
        what=f"DataAvailable=True after {fault} ended",
        every=0.1,
    )
    record(f"{fault} ended -> DataAvailable=True", time.monotonic() - since)


def hold_exhausted_and_paused(faults: FaultWorld) -> None:
    faults.outage_service.set(error_ratio=1.0)
    wait_for(lambda: is_paused(faults, OUTAGE_NS, TARGET), timeout=ACT_TIMEOUT, what="the outage target paused")


def assert_probes_only(monitor: Monitor, *, opened: Reading, until: float) -> int:
    """While the breaker is open Prometheus gets one probe per cool-down, never the evaluation load.

    Counting starts half a cool-down after the breaker opened, when requests admitted before it opened are done.
    Returns the number of probes.
    """
    first = monitor.proxied_at(opened.at + BREAKER_RESET / 2)
    last = monitor.proxied_at(until)
    probes = last.proxied - first.proxied
    assert probes <= (last.at - first.at) / BREAKER_RESET + 1, f"{probes} requests in {last.at - first.at:.1f}s"
    return probes


@pytest.fixture(scope="module")
def outage_slo(faults: FaultWorld) -> None:
    """A healthy SLO in OUTAGE_NS whose target the proxy faults may not touch."""
    faults.outage_service.set(error_ratio=0.0)
    faults.guard(OUTAGE_NS, faults.outage_service)
    wait_healthy(faults, OUTAGE_NS, TARGET)


def test_nan_from_prometheus_is_no_data_and_never_acts(faults: FaultWorld) -> None:
    service = faults.data_service
    Gauge(NAN_METRIC, "A request counter that reads NaN.", registry=service.registry).set(float("nan"))
    total = f"{NAN_METRIC}{{{service_labels(service)}}}"
    # Two samples make a rate: from then on the operator's total query answers NaN rather than nothing.
    wait_for(
        lambda: faults.shared.prometheus.query(f"sum(rate({total}[1m]))"), timeout=30, what="a NaN rate in Prometheus"
    )
    created = faults.guard(NAN_NS, service, total=total)
    data = wait_unavailable(faults, NAN_NS, since=created, fault="NaN total")
    assert data["reason"] == "NoData"
    assert "nan" in data["message"].lower()
    time.sleep(3 * EVALUATION_INTERVAL)
    assert faults.target_writes(NAN_NS) == [], "100 % errors over a NaN total is no reason to act"
    assert breaker_state(faults.operator) == BreakerState.CLOSED, "an answer without data is no Prometheus failure"


def test_absent_total_series_is_no_data_and_never_acts(faults: FaultWorld) -> None:
    service = faults.data_service
    total = f'http_requests_total{{{service_labels(service)},code="absent"}}'
    created = faults.guard(ABSENT_NS, service, total=total)
    data = wait_unavailable(faults, ABSENT_NS, since=created, fault="absent total series")
    assert data["reason"] == "NoData"
    time.sleep(3 * EVALUATION_INTERVAL)
    assert faults.target_writes(ABSENT_NS) == [], "errors without a total are no reason to act"
    assert breaker_state(faults.operator) == BreakerState.CLOSED, "an answer without data is no Prometheus failure"


def test_stale_samples_are_stale_data_and_never_act(faults: FaultWorld) -> None:
    service = faults.data_service
    wait_for(
        lambda: prometheus_shows_exhausted(faults.shared, service),
        timeout=ACT_TIMEOUT,
        what="the window full of errors",
    )
    service.stop()
    total = f"http_requests_total{{{service_labels(service)}}}"
    # The first failed scrape writes stale markers: from then on the series has no current sample.
    wait_for(
        lambda: not faults.shared.prometheus.query(f"timestamp({total})"), timeout=30, what="the series marked stale"
    )
    created = faults.guard(STALE_NS, service)
    data = wait_unavailable(faults, STALE_NS, since=created, fault="stale samples")
    assert data["reason"] == "StaleData"
    time.sleep(3 * EVALUATION_INTERVAL)
    assert faults.target_writes(STALE_NS) == [], "a spent budget read from stale samples is no reason to act"
    assert not is_paused(faults, STALE_NS, TARGET)
    assert breaker_state(faults.operator) == BreakerState.CLOSED, "an answer without data is no Prometheus failure"


@pytest.mark.usefixtures("outage_slo")
def test_long_outage_blocks_every_write_then_the_operator_acts_once(faults: FaultWorld) -> None:
    proxy = faults.proxy
    assert not is_paused(faults, OUTAGE_NS, TARGET)
    faults.emulator.clear_requests()
    with Monitor(faults.operator, proxy).watching() as monitor:
        started = time.monotonic()
        # Nothing listens there: every request through the proxy fails as if Prometheus were killed.
        proxy.upstream = f"http://127.0.0.1:{free_port()}"
        faults.outage_service.set(error_ratio=1.0)
        data = wait_unavailable(faults, OUTAGE_NS, since=started, fault="Prometheus down")
        assert data["reason"] == "PrometheusUnavailable"
        assert "502" in data["message"], "the status names the cause"
        opened = wait_for(lambda: monitor.first(BreakerState.OPEN, since=started), timeout=30, what="breaker open")
        # Without the outage the operator would now pause the target.
        wait_for(
            lambda: prometheus_shows_exhausted(faults.shared, faults.outage_service),
            timeout=ACT_TIMEOUT,
            what="the budget spent in Prometheus",
        )
        time.sleep(max(0.0, started + LONG_OUTAGE - time.monotonic()))
        assert faults.target_writes(OUTAGE_NS) == [], "no target write while Prometheus is down"
        # The status changes when the data goes and when the breaker opens, not on every evaluation.
        assert len(faults.status_writes(OUTAGE_NS)) <= 3
        recovered = time.monotonic()
        probes = assert_probes_only(monitor, opened=opened, until=recovered)
        assert probes >= 1, "the open breaker probes Prometheus"
        proxy.upstream = faults.shared.prometheus.url
        wait_available(faults, since=recovered, fault="Prometheus down")
        wait_for(lambda: is_paused(faults, OUTAGE_NS, TARGET), timeout=ACT_TIMEOUT, what="the pause after the outage")
        record("Prometheus back -> target paused", time.monotonic() - recovered)
        wait_for(lambda: monitor.first(BreakerState.CLOSED, since=recovered), timeout=30, what="the breaker closed")
        time.sleep(max(0.0, recovered + RECOVERY_WINDOW + 3 * EVALUATION_INTERVAL - time.monotonic()))
    assert monitor.states()[:2] == [BreakerState.CLOSED, BreakerState.OPEN]
    first, last = monitor.proxied_at(recovered), monitor.proxied_at(recovered + RECOVERY_WINDOW)
    # At most one pass per SLO per interval (plus the probe): missed passes are skipped, not replayed.
    passes = int((last.at - first.at) / EVALUATION_INTERVAL) + 1
    per_pass = faults.slo_count() * queries_per_pass(faults.outage_service)
    assert last.proxied - first.proxied <= passes * per_pass + 1, "no burst of queued queries"
    record(f"requests in the {last.at - first.at:.1f}s after the outage", last.proxied - first.proxied)
    assert len(faults.target_patches(OUTAGE_NS)) == 1, "one decision, one PATCH"


@pytest.mark.usefixtures("outage_slo")
def test_5xx_from_prometheus_holds_a_paused_target(faults: FaultWorld) -> None:
    proxy = faults.proxy
    hold_exhausted_and_paused(faults)
    faults.emulator.clear_requests()
    with Monitor(faults.operator, proxy).watching() as monitor:
        started = time.monotonic()
        proxy.fail_with = 503
        data = wait_unavailable(faults, OUTAGE_NS, since=started, fault="Prometheus answering 503")
        assert data["reason"] == "PrometheusUnavailable"
        assert "503" in data["message"], "the status names the cause"
        opened = wait_for(lambda: monitor.first(BreakerState.OPEN, since=started), timeout=30, what="breaker open")
        after_open = monitor.proxied_at(opened.at + BREAKER_RESET / 2).proxied
        wait_for(lambda: monitor.readings[-1].proxied > after_open, timeout=30, what="a probe through the open breaker")
        recovered = time.monotonic()
        assert_probes_only(monitor, opened=opened, until=recovered)
        assert faults.target_writes(OUTAGE_NS) == [], "Unknown never undoes a pause"
        proxy.fail_with = None
        wait_available(faults, since=recovered, fault="Prometheus answering 503")
        wait_for(lambda: monitor.first(BreakerState.CLOSED, since=recovered), timeout=30, what="the breaker closed")
    assert slo_status(faults, OUTAGE_NS, TARGET)["state"] == "Exhausted"
    assert is_paused(faults, OUTAGE_NS, TARGET)
    assert faults.target_writes(OUTAGE_NS) == [], "the target was already paused: nothing to write"


@pytest.mark.usefixtures("outage_slo")
def test_prometheus_slower_than_the_timeout_holds_a_paused_target(faults: FaultWorld) -> None:
    proxy = faults.proxy
    hold_exhausted_and_paused(faults)
    faults.emulator.clear_requests()
    with Monitor(faults.operator, proxy).watching() as monitor:
        started = time.monotonic()
        proxy.delay = PROMETHEUS_TIMEOUT + 1.5
        data = wait_unavailable(faults, OUTAGE_NS, since=started, fault="Prometheus slower than the timeout")
        assert data["reason"] == "PrometheusUnavailable"
        assert f"did not answer within {PROMETHEUS_TIMEOUT:g} s" in data["message"], "the status names the cause"
        # A probe lasts as long as the timeout, long enough for the gauge to show it.
        wait_for(lambda: monitor.first(BreakerState.HALF_OPEN, since=started), timeout=30, what="the breaker half-open")
        recovered = time.monotonic()
        assert faults.target_writes(OUTAGE_NS) == [], "Unknown never undoes a pause"
        proxy.delay = 0.0
        wait_available(faults, since=recovered, fault="Prometheus slower than the timeout")
        wait_for(lambda: monitor.first(BreakerState.CLOSED, since=recovered), timeout=30, what="the breaker closed")
    assert monitor.states()[:3] == [BreakerState.CLOSED, BreakerState.OPEN, BreakerState.HALF_OPEN]
    assert is_paused(faults, OUTAGE_NS, TARGET)
    assert faults.target_writes(OUTAGE_NS) == []
