"""Kubernetes API faults under the running operator: conflicts, throttling, 5xx, and watches that drop, stall or expire.

Faults are injected through the emulator (`fail_next`, `drop_watches`, `stall_watches`) on the shared world. After
each fault the operator must converge to the right state with exactly one effective action per decision (a PATCH of
the target that the API server accepted) and post each Event at most once: no retry storm, no Event storm.

The module scrapes two services of its own (always healthy, always failing) instead of taking them from the shared
pool, and points its SLOs at one or the other: an SLO on the failing one is exhausted from its first pass, and a
spec change to the healthy one makes it resume at once. Each scenario runs in its own namespace, deleted afterwards.
"""

from __future__ import annotations

import itertools
import re
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest
from prometheus_client.parser import text_string_to_metric_families
from tests.e2e.conftest import World, wait_for
from tests.e2e.scenario import (
    ACT_TIMEOUT,
    FAILING,
    HEALTHY,
    SLO_API,
    SLO_KIND,
    deploy,
    is_paused,
    prometheus_shows_exhausted,
    slo,
    slo_status,
)
from tests.support.emulator_log import RequestRecord
from tests.support.exporter import SyntheticService
from tests.support.kube import EmulatorClient

pytestmark = [pytest.mark.e2e, pytest.mark.prometheus]

TARGET = "web"
"""The Deployment every scenario's SLO acts on."""
CONVERGE_TIMEOUT = 90
"""Seconds; generous, since a fault may open the Kubernetes circuit breaker (30 s) on a loaded machine."""
RETRY_AFTER = 2
"""Seconds the throttled PATCH asks the operator to wait."""
INACTIVITY_BOUND = 150
"""Seconds to wait for kopf to notice a stalled watch (kopf's watching.inactivity_timeout is 70 s by default)."""
SLO_RESOURCE = "servicelevelobjectives"


@dataclass(frozen=True)
class Sources:
    """Two synthetic services this module scrapes."""

    healthy: SyntheticService
    """Never fails: SLOs on it are Healthy."""
    failing: SyntheticService
    """Always fails: SLOs on it are Exhausted from their first pass."""


@dataclass(frozen=True, kw_only=True)
class FaultRun:
    """One injected fault scenario that converged with one effective PATCH per decision; printed at module end."""

    scenario: str
    """The fault, as injected."""
    decisions: int
    """Decisions that changed the target (pause, resume), each applied by exactly one accepted PATCH."""
    events: int
    """Events created in the scenario's namespace."""
    seconds: float
    """From injecting the fault to the converged state."""


@pytest.fixture(scope="module")
def sources(world: World) -> Iterator[Sources]:
    world.need_emulator()
    with SyntheticService(HEALTHY) as healthy, SyntheticService(FAILING) as failing, _scraped(world, healthy, failing):
        wait_for(
            lambda: _has_traffic(world, healthy) and prometheus_shows_exhausted(world, failing),
            timeout=ACT_TIMEOUT,
            what="Prometheus scraping this module's services",
        )
        yield Sources(healthy=healthy, failing=failing)


@pytest.fixture(scope="module")
def fault_runs(request: pytest.FixtureRequest) -> Iterator[list[FaultRun]]:
    runs: list[FaultRun] = []
    yield runs
    lines = [
        f"{run.scenario}: {run.decisions} decision(s), one accepted target PATCH each, {run.events} Events, "
        f"converged in {run.seconds:.1f} s"
        for run in runs
    ]
    _print_section(request, f"slo-guard: {len(runs)} Kubernetes fault runs, 0 wrong actions", lines)


def _print_section(request: pytest.FixtureRequest, title: str, lines: list[str]) -> None:
    """Figures go to the terminal even though fixture teardown output is captured."""
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is None or capture is None or not lines:
        return
    with capture.global_and_fixture_disabled():
        reporter.write_line("")
        reporter.write_sep("-", title)
        for line in lines:
            reporter.write_line(line)


@pytest.fixture
def namespace(world: World, request: pytest.FixtureRequest) -> Iterator[str]:
    callspec = getattr(request.node, "callspec", None)
    name = "-".join(
        _slug(part)
        for part in ("kf", request.node.originalname.removeprefix("test_")[:40], callspec and callspec.id)
        if part
    )
    deploy(world, name, TARGET)
    yield name
    world.need_emulator().clear_faults()
    _delete_namespace(world, name)


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


@contextmanager
def _scraped(world: World, *services: SyntheticService) -> Iterator[None]:
    targets = [service.target for service in services]
    world.prometheus.scrape_targets.extend(targets)
    world.prometheus.reload()
    try:
        yield
    finally:
        for target in targets:
            world.prometheus.scrape_targets.remove(target)
        world.prometheus.reload()


def _has_traffic(world: World, service: SyntheticService) -> bool:
    instance = f'job="synthetic",instance="{service.target}"'
    return bool(world.prometheus.query(f"sum(rate(http_requests_total{{{instance}}}[1m])) > 0"))


def _delete_namespace(world: World, namespace: str) -> None:
    """SLOs first, so the operator releases what they hold and drops their finalizers; then the namespace."""
    for item in world.objects(SLO_API, SLO_KIND, namespace):
        world.kube.delete_object(SLO_API, SLO_KIND, item["metadata"]["name"], namespace=namespace)
    wait_for(lambda: not world.objects(SLO_API, SLO_KIND, namespace), timeout=ACT_TIMEOUT, what="SLOs deleted")
    world.kube.delete_object("v1", "Namespace", namespace)


def _create_slo(world: World, namespace: str, name: str, service: SyntheticService) -> None:
    world.kube.create_object(slo(name, namespace, service, targets=[{"kind": "Deployment", "name": TARGET}]))


def _switch_source(world: World, namespace: str, name: str, service: SyntheticService) -> None:
    """A spec change: the same SLO now reads the other service's series."""
    indicator = slo(name, namespace, service, targets=[])["spec"]["indicator"]
    world.kube.patch_object(SLO_API, SLO_KIND, name, {"spec": {"indicator": indicator}}, namespace=namespace)


def _target_state(world: World, namespace: str, name: str) -> str | None:
    targets: list[dict[str, str]] = slo_status(world, namespace, name).get("targets") or [{}]
    return targets[0].get("state")


def _wait_target_state(world: World, namespace: str, name: str, state: str) -> None:
    wait_for(
        lambda: _target_state(world, namespace, name) == state,
        timeout=CONVERGE_TIMEOUT,
        what=f"{name}: target {state} in status",
    )


def _target_calls(emulator: EmulatorClient, namespace: str) -> list[RequestRecord]:
    """Reads and writes of the target itself (not its /scale), oldest first."""
    return emulator.requests(resource="deployments", namespace=namespace, name=TARGET, subresource=None)


def _accepted_patches(records: list[RequestRecord]) -> list[RequestRecord]:
    return [record for record in records if record.verb == "patch" and record.status == 200]


def _events(emulator: EmulatorClient, namespace: str) -> Counter[tuple[str, str, str, str]]:
    """Events created in the namespace, by (involved kind, involved name, reason, message)."""
    created = emulator.requests(verb="create", resource="events", namespace=namespace)
    return Counter(
        (
            record.body["involvedObject"]["kind"],
            record.body["involvedObject"]["name"],
            record.body["reason"],
            record.body["message"],
        )
        for record in created
        if record.status == 201
    )


def _assert_no_event_storm(events: Counter[tuple[str, str, str, str]], *, decisions: int) -> None:
    """No Event twice; per SLO one for its first state plus a state change and an action per decision; per target
    one per decision."""
    repeated = {key: count for key, count in events.items() if count > 1}
    assert not repeated, f"Events posted more than once: {repeated}"
    per_object = Counter((kind, name) for kind, name, _, _ in events.elements())
    for (kind, name), count in per_object.items():
        bound = 1 + 2 * decisions if kind == SLO_KIND else decisions
        assert count <= bound, f"{count} Events about {kind} {name}, expected at most {bound}: {sorted(events)}"


def _reasons(events: Counter[tuple[str, str, str, str]], kind: str, name: str) -> list[str]:
    return sorted(
        reason for event_kind, event_name, reason, _ in events.elements() if (event_kind, event_name) == (kind, name)
    )


def _assert_reread_before_each_retry(records: list[RequestRecord]) -> None:
    """After a refused PATCH the operator reads the target again before it decides and patches again."""
    for earlier, later in itertools.pairwise(records):
        assert not (earlier.verb == "patch" and later.verb == "patch"), f"PATCH #{later.seq} without a re-read"


def _operator_metric(world: World, name: str, **labels: str) -> float:
    """The sum of the operator's samples named `name` whose labels include `labels`."""
    with urllib.request.urlopen(world.operator.health_url + "/metrics", timeout=5) as response:  # noqa: S310
        text = response.read().decode()
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and all(sample.labels.get(key) == value for key, value in labels.items())
    )


def _kubernetes_breaker_closed(world: World) -> bool:
    return _operator_metric(world, "slo_guard_circuit_breaker_state", breaker="kubernetes") == 0


@dataclass(frozen=True, kw_only=True)
class Refusal:
    """Which status the API server answers the operator's PATCH with, how many times, and on which action."""

    status: int
    """409 Conflict or 422 Invalid: both mean the target changed since it was read."""
    failures: int
    """PATCHes refused in a row; more than 3 outlast one pass."""
    action: str
    """Pause, or Resume after a clean pause."""

    def __str__(self) -> str:
        return f"{self.status}x{self.failures}-{self.action}"


@pytest.mark.parametrize(
    "refusal",
    [
        Refusal(status=409, failures=4, action="Pause"),
        Refusal(status=422, failures=2, action="Pause"),
        Refusal(status=409, failures=2, action="Resume"),
        Refusal(status=422, failures=4, action="Resume"),
    ],
    ids=str,
)
def test_refused_target_patch_is_reread_and_decided_again(
    world: World, sources: Sources, namespace: str, fault_runs: list[FaultRun], refusal: Refusal
) -> None:
    """409/422 mean the target moved: re-read, decide again. Four refusals outlast one pass (3 attempts)."""
    emulator = world.need_emulator()
    if refusal.action == "Resume":
        _create_slo(world, namespace, "checkout", sources.failing)
        _wait_target_state(world, namespace, "checkout", "Paused")
    started = time.monotonic()
    emulator.fail_next(
        status=refusal.status,
        verb="patch",
        resource="deployments",
        namespace=namespace,
        name=TARGET,
        count=refusal.failures,
    )
    if refusal.action == "Pause":
        _create_slo(world, namespace, "checkout", sources.failing)
        _wait_target_state(world, namespace, "checkout", "Paused")
    else:
        _switch_source(world, namespace, "checkout", sources.healthy)
        _wait_target_state(world, namespace, "checkout", "Untouched")
    seconds = time.monotonic() - started

    assert is_paused(world, namespace, TARGET) is (refusal.action == "Pause")
    records = _target_calls(emulator, namespace)
    decisions = 1 if refusal.action == "Pause" else 2
    assert len(_accepted_patches(records)) == decisions, "exactly one effective PATCH per decision"
    refused = [record for record in records if record.verb == "patch" and record.status == refusal.status]
    assert len(refused) == refusal.failures
    _assert_reread_before_each_retry(records)
    events = _events(emulator, namespace)
    _assert_no_event_storm(events, decisions=decisions)
    past_tense = "Paused" if refusal.action == "Pause" else "Resumed"
    assert _reasons(events, "Deployment", TARGET).count(past_tense) == 1
    assert _reasons(events, SLO_KIND, "checkout").count(past_tense) == 1
    fault_runs.append(
        FaultRun(
            scenario=f"{refusal.status} x{refusal.failures} on the {refusal.action} PATCH",
            decisions=decisions,
            events=events.total(),
            seconds=seconds,
        )
    )


def test_throttled_patch_waits_for_retry_after_then_succeeds(
    world: World, sources: Sources, namespace: str, fault_runs: list[FaultRun]
) -> None:
    emulator = world.need_emulator()
    throttled_before = _operator_metric(world, "slo_guard_kubernetes_requests_total", verb="patch", outcome="throttled")
    started = time.monotonic()
    emulator.fail_next(
        status=429,
        verb="patch",
        resource="deployments",
        namespace=namespace,
        name=TARGET,
        count=2,
        retry_after=RETRY_AFTER,
    )
    _create_slo(world, namespace, "search", sources.failing)

    def throttled() -> bool:
        return any(record.status == 429 for record in _target_calls(emulator, namespace))

    wait_for(throttled, timeout=ACT_TIMEOUT, what="the first 429", every=0.05)
    first_throttle = time.monotonic()
    wait_for(lambda: is_paused(world, namespace, TARGET), timeout=ACT_TIMEOUT, what="paused", every=0.05)
    waited = time.monotonic() - first_throttle
    _wait_target_state(world, namespace, "search", "Paused")

    # A lower bound (the operator must wait at least what the server asked, twice), with a second of polling slack.
    assert waited >= 2 * RETRY_AFTER - 1, f"paused {waited:.1f} s after the first 429"
    records = _target_calls(emulator, namespace)
    assert [record.status for record in records if record.verb == "patch"] == [429, 429, 200]
    throttled_after = _operator_metric(world, "slo_guard_kubernetes_requests_total", verb="patch", outcome="throttled")
    assert throttled_after - throttled_before == 2
    assert _kubernetes_breaker_closed(world), "429 is the server pacing us, not failing"
    events = _events(emulator, namespace)
    _assert_no_event_storm(events, decisions=1)
    fault_runs.append(
        FaultRun(
            scenario="429 x2 (Retry-After 2 s) on the Pause PATCH",
            decisions=1,
            events=events.total(),
            seconds=time.monotonic() - started,
        )
    )


def test_server_errors_on_target_and_status_patches_converge_with_one_action(
    world: World, sources: Sources, namespace: str, fault_runs: list[FaultRun]
) -> None:
    """500s are retried in place (5 attempts a request): two on the target PATCH, four on the status write.

    Five status failures in a row would also trip the Kubernetes breaker (threshold 5) and stall every SLO for its
    30 s reset; the restart scenarios cover a status write that fails for good.
    """
    emulator = world.need_emulator()
    fast_failed_before = _operator_metric(world, "slo_guard_kubernetes_requests_total", outcome="circuit_open")
    started = time.monotonic()
    emulator.fail_next(status=500, verb="patch", resource="deployments", namespace=namespace, name=TARGET, count=2)
    emulator.fail_next(
        status=500,
        verb="patch",
        resource=SLO_RESOURCE,
        namespace=namespace,
        name="ledger",
        subresource="status",
        count=4,
    )
    _create_slo(world, namespace, "ledger", sources.failing)
    _wait_target_state(world, namespace, "ledger", "Paused")
    seconds = time.monotonic() - started

    records = _target_calls(emulator, namespace)
    assert [record.status for record in records if record.verb == "patch"] == [500, 500, 200]
    status_writes = emulator.requests(
        verb="patch", resource=SLO_RESOURCE, namespace=namespace, name="ledger", subresource="status"
    )
    assert [record.status for record in status_writes][:5] == [500] * 4 + [200]
    assert slo_status(world, namespace, "ledger")["state"] == "Exhausted"
    wait_for(lambda: _kubernetes_breaker_closed(world), timeout=CONVERGE_TIMEOUT, what="breaker closed")
    fast_failed = _operator_metric(world, "slo_guard_kubernetes_requests_total", outcome="circuit_open")
    # The next pass still sees the Deployment paused by this SLO: nothing to do, no second PATCH.
    assert len(_accepted_patches(_target_calls(emulator, namespace))) == 1
    events = _events(emulator, namespace)
    _assert_no_event_storm(events, decisions=1)
    fault_runs.append(
        FaultRun(
            scenario=(
                "500 x2 on the Pause PATCH, 500 x4 on /status "
                f"(the Kubernetes breaker then failed {fast_failed - fast_failed_before:.0f} requests fast)"
            ),
            decisions=1,
            events=events.total(),
            seconds=seconds,
        )
    )


def test_dropped_watches_reconnect_without_missing_changes(
    world: World, sources: Sources, namespace: str, fault_runs: list[FaultRun]
) -> None:
    emulator = world.need_emulator()
    _create_slo(world, namespace, "catalog", sources.healthy)
    _wait_target_state(world, namespace, "catalog", "Untouched")
    started = time.monotonic()

    _drop_slo_watches(emulator)
    _switch_source(world, namespace, "catalog", sources.failing)
    _wait_target_state(world, namespace, "catalog", "Paused")
    _drop_slo_watches(emulator)
    _create_slo(world, namespace, "late", sources.healthy)
    wait_for(lambda: slo_status(world, namespace, "late"), timeout=CONVERGE_TIMEOUT, what="a status for `late`")
    _drop_slo_watches(emulator)
    _switch_source(world, namespace, "catalog", sources.healthy)
    _wait_target_state(world, namespace, "catalog", "Untouched")
    seconds = time.monotonic() - started

    assert not is_paused(world, namespace, TARGET)
    assert len(_accepted_patches(_target_calls(emulator, namespace))) == 2, "one pause, one resume"
    events = _events(emulator, namespace)
    _assert_no_event_storm(events, decisions=2)
    fault_runs.append(FaultRun(scenario="3 dropped SLO watches", decisions=2, events=events.total(), seconds=seconds))


def _drop_slo_watches(emulator: EmulatorClient) -> None:
    # Right after a drop kopf may still be reconnecting: try until a stream was there to drop.
    wait_for(lambda: emulator.drop_watches(SLO_RESOURCE) >= 1, timeout=ACT_TIMEOUT, what="an SLO watch to drop")


def test_stalled_watch_is_noticed_and_changes_are_caught_up(
    world: World, sources: Sources, namespace: str, fault_runs: list[FaultRun]
) -> None:
    """A stream that stays open but silent: kopf must give up on it (inactivity timeout) and resume from its RV."""
    emulator = world.need_emulator()
    _create_slo(world, namespace, "orders", sources.healthy)
    _wait_target_state(world, namespace, "orders", "Untouched")
    last_watch = _last_slo_watch(emulator)
    assert emulator.stall_watches(SLO_RESOURCE) >= 1
    started = time.monotonic()

    _switch_source(world, namespace, "orders", sources.failing)
    _create_slo(world, namespace, "late", sources.healthy)
    wait_for(
        lambda: is_paused(world, namespace, TARGET) and slo_status(world, namespace, "late"),
        timeout=INACTIVITY_BOUND,
        what="the spec change and the new SLO after the stall",
    )
    seconds = time.monotonic() - started
    _wait_target_state(world, namespace, "orders", "Paused")

    assert _last_slo_watch(emulator) > last_watch, "kopf opened a new watch"
    assert len(_accepted_patches(_target_calls(emulator, namespace))) == 1
    events = _events(emulator, namespace)
    _assert_no_event_storm(events, decisions=1)
    fault_runs.append(
        FaultRun(
            scenario="stalled SLO watch (noticed by kopf's inactivity timeout)",
            decisions=1,
            events=events.total(),
            seconds=seconds,
        )
    )


def _last_slo_watch(emulator: EmulatorClient) -> int:
    return max((record.seq for record in emulator.requests(verb="watch", resource=SLO_RESOURCE)), default=-1)


def test_expired_watch_relists_and_catches_up(
    world: World, sources: Sources, namespace: str, fault_runs: list[FaultRun]
) -> None:
    """410 Gone inside the watch stream: kopf must list again, then watch from the new resourceVersion."""
    emulator = world.need_emulator()
    _create_slo(world, namespace, "billing", sources.healthy)
    _wait_target_state(world, namespace, "billing", "Untouched")
    lists_before = len(emulator.requests(verb="list", resource=SLO_RESOURCE))
    started = time.monotonic()
    emulator.fail_next(status=410, verb="watch", resource=SLO_RESOURCE)
    _drop_slo_watches(emulator)
    wait_for(
        lambda: len(emulator.requests(verb="list", resource=SLO_RESOURCE)) > lists_before,
        timeout=ACT_TIMEOUT,
        what="kopf listing SLOs again after 410 Gone",
    )

    _switch_source(world, namespace, "billing", sources.failing)
    _create_slo(world, namespace, "late", sources.healthy)
    wait_for(
        lambda: is_paused(world, namespace, TARGET) and slo_status(world, namespace, "late"),
        timeout=CONVERGE_TIMEOUT,
        what="the spec change and the new SLO after the re-list",
    )
    _wait_target_state(world, namespace, "billing", "Paused")
    seconds = time.monotonic() - started

    assert len(_accepted_patches(_target_calls(emulator, namespace))) == 1
    events = _events(emulator, namespace)
    _assert_no_event_storm(events, decisions=1)
    fault_runs.append(
        FaultRun(scenario="410 Gone on the SLO watch", decisions=1, events=events.total(), seconds=seconds)
    )
