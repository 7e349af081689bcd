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
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from tests.conftest import summary_lines
from tests.e2e.conftest import World, wait_for
from tests.e2e.scenario import (
    ACT_TIMEOUT,
    CONVERGE_TIMEOUT,
    SLO_KIND,
    Sources,
    accepted_patches,
    delete_namespace,
    deploy,
    fail_status_patches,
    fail_target_patches,
    is_paused,
    matching_samples,
    metric_families,
    namespace_for,
    one_target,
    own_sources,
    slo,
    slo_status,
    switch_source,
    target_calls,
    wait_target_state,
)
from tests.support.emulator_log import RequestRecord
from tests.support.exporter import SyntheticService
from tests.support.kube import EmulatorClient

pytestmark = [pytest.mark.e2e, pytest.mark.prometheus]

TARGET = "web"
"""The Deployment every scenario's SLO acts on."""
RETRY_AFTER = 2
"""Seconds the throttled PATCH asks the operator to wait."""
INACTIVITY_BOUND = 150
"""Seconds to wait for kopf to notice a stalled watch (kopf's watching.inactivity_timeout is 70 s by default)."""
SLO_RESOURCE = "servicelevelobjectives"
RUNS = summary_lines("slo-guard: Kubernetes fault runs, each with one accepted target PATCH per decision")


def _record_run(*, scenario: str, decisions: int, events: int, seconds: float) -> None:
    """A line in RUNS: the fault as injected, the decisions that changed the target (each applied by exactly one
    accepted PATCH), the Events created in the namespace, and the seconds from the fault to the converged state."""
    RUNS.append(
        f"{scenario}: {decisions} decision(s), one accepted target PATCH each, {events} Events, "
        f"converged in {seconds:.1f} s"
    )


@pytest.fixture(scope="module")
def sources(world: World) -> Iterator[Sources]:
    world.need_emulator()
    with own_sources(world) as sources:
        yield sources


@pytest.fixture
def namespace(world: World, request: pytest.FixtureRequest) -> Iterator[str]:
    name = namespace_for(request, "kf")
    deploy(world, name, TARGET)
    yield name
    world.need_emulator().clear_faults()
    delete_namespace(world, name)


def _create_slo(world: World, namespace: str, name: str, service: SyntheticService) -> None:
    world.kube.create_object(slo(name, namespace, service, targets=one_target(TARGET)))


def _wait_target_state(world: World, namespace: str, name: str, state: str) -> None:
    wait_target_state(world, namespace, name, state, timeout=CONVERGE_TIMEOUT)


def _accepted_target_patches(emulator: EmulatorClient, namespace: str) -> list[RequestRecord]:
    return accepted_patches(target_calls(emulator, namespace, TARGET))


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
    return sum(sample.value for sample in matching_samples(metric_families(world.operator), name, **labels))


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
    world: World, sources: Sources, namespace: str, refusal: Refusal
) -> None:
    """409/422 mean the target moved: re-read, decide again. Four refusals outlast one pass (3 attempts)."""
    emulator = world.need_emulator()
    if refusal.action == "Resume":
        _create_slo(world, namespace, "checkout", sources.failing)
        _wait_target_state(world, namespace, "checkout", "Paused")
    started = time.monotonic()
    fail_target_patches(emulator, namespace, TARGET, status=refusal.status, count=refusal.failures)
    if refusal.action == "Pause":
        _create_slo(world, namespace, "checkout", sources.failing)
        _wait_target_state(world, namespace, "checkout", "Paused")
    else:
        switch_source(world, namespace, "checkout", sources.healthy)
        _wait_target_state(world, namespace, "checkout", "Untouched")
    seconds = time.monotonic() - started

    assert is_paused(world, namespace, TARGET) is (refusal.action == "Pause")
    records = target_calls(emulator, namespace, TARGET)
    decisions = 1 if refusal.action == "Pause" else 2
    assert len(accepted_patches(records)) == decisions, "exactly one effective PATCH per decision"
    refused = [record for record in records if record.verb == "patch" and record.status == refusal.status]
    assert len(refused) == refusal.failures
    _assert_reread_before_each_retry(records)
    events = _events(emulator, namespace)
    _assert_no_event_storm(events, decisions=decisions)
    past_tense = "Paused" if refusal.action == "Pause" else "Resumed"
    assert _reasons(events, "Deployment", TARGET).count(past_tense) == 1
    assert _reasons(events, SLO_KIND, "checkout").count(past_tense) == 1
    _record_run(
        scenario=f"{refusal.status} x{refusal.failures} on the {refusal.action} PATCH",
        decisions=decisions,
        events=events.total(),
        seconds=seconds,
    )


def test_throttled_patch_waits_for_retry_after_then_succeeds(world: World, sources: Sources, namespace: str) -> None:
    emulator = world.need_emulator()
    throttled_before = _operator_metric(world, "slo_guard_kubernetes_requests_total", verb="patch", outcome="throttled")
    started = time.monotonic()
    fail_target_patches(emulator, namespace, TARGET, status=429, count=2, retry_after=RETRY_AFTER)
    _create_slo(world, namespace, "search", sources.failing)

    def throttled() -> bool:
        return any(record.status == 429 for record in target_calls(emulator, namespace, TARGET))

    wait_for(throttled, timeout=ACT_TIMEOUT, what="the first 429", every=0.05)
    first_throttle = time.monotonic()
    wait_for(lambda: is_paused(world, namespace, TARGET), timeout=ACT_TIMEOUT, what="paused", every=0.05)
    waited = time.monotonic() - first_throttle
    _wait_target_state(world, namespace, "search", "Paused")

    # A lower bound (the operator must wait at least what the server asked, twice), with a second of polling slack.
    assert waited >= 2 * RETRY_AFTER - 1, f"paused {waited:.1f} s after the first 429"
    records = target_calls(emulator, namespace, TARGET)
    assert [record.status for record in records if record.verb == "patch"] == [429, 429, 200]
    throttled_after = _operator_metric(world, "slo_guard_kubernetes_requests_total", verb="patch", outcome="throttled")
    assert throttled_after - throttled_before == 2
    assert _kubernetes_breaker_closed(world), "429 is the server pacing us, not failing"
    events = _events(emulator, namespace)
    _assert_no_event_storm(events, decisions=1)
    _record_run(
        scenario="429 x2 (Retry-After 2 s) on the Pause PATCH",
        decisions=1,
        events=events.total(),
        seconds=time.monotonic() - started,
    )


def test_server_errors_on_target_and_status_patches_converge_with_one_action(
    world: World, sources: Sources, namespace: str
) -> None:
    """500s are retried in place (5 attempts a request): two on the target PATCH, four on the status write.

    Five status failures in a row would also trip the Kubernetes breaker (threshold 5) and stall every SLO for its
    30 s reset; the restart scenarios cover a status write that fails for good.
    """
    emulator = world.need_emulator()
    fast_failed_before = _operator_metric(world, "slo_guard_kubernetes_requests_total", outcome="circuit_open")
    started = time.monotonic()
    fail_target_patches(emulator, namespace, TARGET, status=500, count=2)
    fail_status_patches(emulator, namespace, "ledger", status=500, count=4)
    _create_slo(world, namespace, "ledger", sources.failing)
    _wait_target_state(world, namespace, "ledger", "Paused")
    seconds = time.monotonic() - started

    records = target_calls(emulator, namespace, TARGET)
    assert [record.status for record in records if record.verb == "patch"] == [500, 500, 200]
    status_writes = emulator.requests(
        verb="patch", resource=SLO_RESOURCE, namespace=namespace, name="ledger", subresource="status"
    )
    assert [record.status for record in status_writes][:5] == [500] * 4 + [200]
    assert slo_status(world, namespace, "ledger")["state"] == "Exhausted"
    wait_for(lambda: _kubernetes_breaker_closed(world), timeout=CONVERGE_TIMEOUT, what="breaker closed")
    fast_failed = _operator_metric(world, "slo_guard_kubernetes_requests_total", outcome="circuit_open")
    # The next pass still sees the Deployment paused by this SLO: nothing to do, no second PATCH.
    assert len(_accepted_target_patches(emulator, namespace)) == 1
    events = _events(emulator, namespace)
    _assert_no_event_storm(events, decisions=1)
    _record_run(
        scenario=(
            "500 x2 on the Pause PATCH, 500 x4 on /status "
            f"(the Kubernetes breaker then failed {fast_failed - fast_failed_before:.0f} requests fast)"
        ),
        decisions=1,
        events=events.total(),
        seconds=seconds,
    )


def test_dropped_watches_reconnect_without_missing_changes(world: World, sources: Sources, namespace: str) -> None:
    emulator = world.need_emulator()
    _create_slo(world, namespace, "catalog", sources.healthy)
    _wait_target_state(world, namespace, "catalog", "Untouched")
    started = time.monotonic()

    _drop_slo_watches(emulator)
    switch_source(world, namespace, "catalog", sources.failing)
    _wait_target_state(world, namespace, "catalog", "Paused")
    _drop_slo_watches(emulator)
    _create_slo(world, namespace, "late", sources.healthy)
    wait_for(lambda: slo_status(world, namespace, "late"), timeout=CONVERGE_TIMEOUT, what="a status for `late`")
    _drop_slo_watches(emulator)
    switch_source(world, namespace, "catalog", sources.healthy)
    _wait_target_state(world, namespace, "catalog", "Untouched")
    seconds = time.monotonic() - started

    assert not is_paused(world, namespace, TARGET)
    assert len(_accepted_target_patches(emulator, namespace)) == 2, "one pause, one resume"
    events = _events(emulator, namespace)
    _assert_no_event_storm(events, decisions=2)
    _record_run(scenario="3 dropped SLO watches", decisions=2, events=events.total(), seconds=seconds)


def _drop_slo_watches(emulator: EmulatorClient) -> None:
    # Right after a drop kopf may still be reconnecting: try until a stream was there to drop.
    wait_for(lambda: emulator.drop_watches(SLO_RESOURCE) >= 1, timeout=ACT_TIMEOUT, what="an SLO watch to drop")


def test_stalled_watch_is_noticed_and_changes_are_caught_up(world: World, sources: Sources, namespace: str) -> None:
    """A stream that stays open but silent: kopf must give up on it (inactivity timeout) and resume from its RV."""
    emulator = world.need_emulator()
    _create_slo(world, namespace, "orders", sources.healthy)
    _wait_target_state(world, namespace, "orders", "Untouched")
    last_watch = _last_slo_watch(emulator)
    assert emulator.stall_watches(SLO_RESOURCE) >= 1
    started = time.monotonic()

    switch_source(world, namespace, "orders", sources.failing)
    _create_slo(world, namespace, "late", sources.healthy)
    wait_for(
        lambda: is_paused(world, namespace, TARGET) and slo_status(world, namespace, "late"),
        timeout=INACTIVITY_BOUND,
        what="the spec change and the new SLO after the stall",
    )
    seconds = time.monotonic() - started
    _wait_target_state(world, namespace, "orders", "Paused")

    assert _last_slo_watch(emulator) > last_watch, "kopf opened a new watch"
    assert len(_accepted_target_patches(emulator, namespace)) == 1
    events = _events(emulator, namespace)
    _assert_no_event_storm(events, decisions=1)
    _record_run(
        scenario="stalled SLO watch (noticed by kopf's inactivity timeout)",
        decisions=1,
        events=events.total(),
        seconds=seconds,
    )


def _last_slo_watch(emulator: EmulatorClient) -> int:
    return max((record.seq for record in emulator.requests(verb="watch", resource=SLO_RESOURCE)), default=-1)


def test_expired_watch_relists_and_catches_up(world: World, sources: Sources, namespace: str) -> None:
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

    switch_source(world, namespace, "billing", sources.failing)
    _create_slo(world, namespace, "late", sources.healthy)
    wait_for(
        lambda: is_paused(world, namespace, TARGET) and slo_status(world, namespace, "late"),
        timeout=CONVERGE_TIMEOUT,
        what="the spec change and the new SLO after the re-list",
    )
    _wait_target_state(world, namespace, "billing", "Paused")
    seconds = time.monotonic() - started

    assert len(_accepted_target_patches(emulator, namespace)) == 1
    events = _events(emulator, namespace)
    _assert_no_event_storm(events, decisions=1)
    _record_run(scenario="410 Gone on the SLO watch", decisions=1, events=events.total(), seconds=seconds)
