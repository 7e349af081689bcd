"""The pure parts of the benchmarks: the exporter's counters, the backfill text, /proc and /metrics parsing (stack.py),
and the soak's judge of wrong actions (soak.py)."""

from __future__ import annotations

import itertools
import os
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from benchmarks.soak import REPLICAS, SCALE_TO, find_mismatches
from benchmarks.stack import (
    CRD,
    INSTANCE,
    JOB,
    ManyServicesExporter,
    MetricsSnapshot,
    ServiceRates,
    cpu_seconds_from_stat,
    exposition,
    initial_rates,
    process_cpu_seconds,
    process_rss_bytes,
    rss_bytes_from_status,
    service_name,
    slo_manifest,
    target_manifest,
    threads_from_status,
    write_history,
)
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from tests.support.emulator import running_emulator

from slo_guard.domain.model import PolicyAction
from slo_guard.domain.policy import HELD_LABEL, ORIGINAL_REPLICAS, PAUSED_BY, SCALED_BY
from slo_guard.resources import objective_from_resource

START = 1_700_000_000.0


def _served(rates: list[ServiceRates], *, at: float) -> MetricsSnapshot:
    return MetricsSnapshot.parse(exposition(rates, at=at))


def test_counters_are_rate_times_elapsed_split_by_error_ratio() -> None:
    rates = initial_rates(count=2, rps=10, error_ratios=[0.25, 0.0], start=START)

    served = _served(rates, at=START + 100)

    assert served.value("http_requests_total", service=service_name(0), code="500") == 250
    assert served.value("http_requests_total", service=service_name(0), code="200") == 750
    assert served.value("http_requests_total", service=service_name(1), code="500") == 0
    assert served.value("http_requests_total", service=service_name(1)) == 1000


def test_a_changed_error_ratio_keeps_counters_continuous_and_monotonic() -> None:
    before = ServiceRates.constant(rps=10, error_ratio=0.0, since=START)
    after = before.with_error_ratio(0.5, since=START + 60)

    assert after.errors.counter(START + 60) == before.errors.counter(START + 60) == 0
    assert after.ok.counter(START + 60) == before.ok.counter(START + 60) == 600
    # 10 s later: 50 errors, 50 successes on top of the 600.
    assert (after.errors.counter(START + 70), after.ok.counter(START + 70)) == (50, 650)
    assert after.error_ratio == 0.5


def test_a_change_dated_before_the_last_one_takes_effect_at_the_last_one() -> None:
    rates = ServiceRates.constant(rps=10, error_ratio=0.0, since=START).with_error_ratio(1.0, since=START + 60)

    late = rates.with_error_ratio(0.0, since=START + 30)

    assert late.ok.counter(START + 100) == 600 + 400
    assert late.errors.counter(START + 100) == 0


@pytest.mark.parametrize("ratio", [-0.1, 1.5])
def test_error_ratios_outside_zero_to_one_are_refused(ratio: float) -> None:
    with pytest.raises(ValueError, match="error ratio"):
        ServiceRates.constant(rps=1, error_ratio=ratio, since=START)


def test_one_error_ratio_per_service_is_required() -> None:
    with pytest.raises(ValueError, match="2 error ratios for 3 services"):
        initial_rates(count=3, rps=1, error_ratios=[0.1, 0.2], start=START)


def test_the_exporter_serves_its_counters_at_its_clock_and_applies_ratio_changes() -> None:
    now = [START + 10]
    with ManyServicesExporter(3, rps=2, start=START, clock=lambda: now[0]) as exporter:
        exporter.set_error_ratio(2, 1.0)
        now[0] = START + 20
        with urllib.request.urlopen(f"http://{exporter.target}/metrics", timeout=10) as response:
            served = MetricsSnapshot.parse(response.read().decode())

    assert served.value("http_requests_total", service=service_name(2), code="500") == 20
    assert served.value("http_requests_total", service=service_name(2), code="200") == 20
    assert served.value("http_requests_total", service=service_name(0), code="200") == 40
    assert exporter.error_ratio(2) == 1.0


def test_backfilled_history_carries_the_live_labels_and_the_same_counter_values(tmp_path: Path) -> None:
    rates = initial_rates(count=2, rps=3, error_ratios=[0.1, 0.5], start=START)
    source = tmp_path / "history.om"

    samples = write_history(source, rates=rates, start=START, end=START + 90, step=30)

    # prometheus_client's OpenMetrics parser is untyped; it checks the text is valid OpenMetrics.
    families = list(parse_openmetrics(source.read_text()))  # type: ignore[no-untyped-call]
    points = [(s.labels, s.timestamp, s.value) for family in families for s in family.samples]
    assert samples == len(points) == 2 * 2 * 4
    first = points[0][0]
    assert first == {"code": "500", "instance": INSTANCE, "job": JOB, "service": service_name(0)}
    by_series = {(labels["service"], labels["code"], float(stamp)): value for labels, stamp, value in points}
    assert by_series[(service_name(1), "500", START + 90)] == rates[1].errors.counter(START + 90) == 135
    assert by_series[(service_name(1), "200", START + 60)] == rates[1].ok.counter(START + 60) == 90


def test_backfilled_series_are_written_one_after_another_in_time_order(tmp_path: Path) -> None:
    rates = initial_rates(count=2, rps=1, error_ratios=0.0, start=START)
    source = tmp_path / "history.om"

    write_history(source, rates=rates, start=START, end=START + 60, step=20)

    lines = [line for line in source.read_text().splitlines() if not line.startswith("#")]
    series = [line.split(" ")[0] for line in lines]
    changes = sum(1 for previous, current in itertools.pairwise(series) if previous != current)
    assert changes == 3  # 4 series, each contiguous
    stamps = [float(line.split(" ")[2]) for line in lines[:4]]
    assert stamps == [START, START + 20, START + 40, START + 60]
    assert source.read_text().endswith("# EOF\n")


def test_memory_and_threads_come_from_their_status_lines() -> None:
    status = "Name:\tpython\nVmPeak:\t  900 kB\nVmHWM:\t   20000 kB\nVmRSS:\t   12345 kB\nThreads:\t3\n"

    assert rss_bytes_from_status(status) == 12345 * 1024
    assert rss_bytes_from_status(status, peak=True) == 20000 * 1024
    assert threads_from_status(status) == 3


def test_a_status_without_vmrss_is_an_error() -> None:
    with pytest.raises(ValueError, match="VmRSS"):
        rss_bytes_from_status("Name:\tkworker\nState:\tI (idle)\n")


def test_cpu_seconds_add_utime_and_stime_even_when_the_name_holds_spaces_and_parentheses() -> None:
    fields_after_name = "S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 4 0 100"
    stat = f"4242 (slo guard (worker)) {fields_after_name}"

    assert cpu_seconds_from_stat(stat, clock_ticks=100) == 3.0


def test_readings_of_this_process_match_the_kernel_accounting() -> None:
    times = os.times()
    cpu = process_cpu_seconds(os.getpid())

    assert times.user + times.system - 0.02 <= cpu <= os.times().user + os.times().system + 0.02
    assert 1024 * 1024 < process_rss_bytes(os.getpid()) < 8 * 1024**3


def test_metrics_values_are_summed_over_the_matching_samples() -> None:
    text = (
        "# TYPE slo_guard_actions_total counter\n"
        'slo_guard_actions_total{action="Pause",result="Applied"} 3\n'
        'slo_guard_actions_total{action="Pause",result="Failed"} 1\n'
        'slo_guard_actions_total{action="Resume",result="Applied"} 2\n'
    )
    snapshot = MetricsSnapshot.parse(text)

    assert snapshot.value("slo_guard_actions_total") == 6
    assert snapshot.value("slo_guard_actions_total", action="Pause") == 4
    assert snapshot.value("slo_guard_actions_total", result="Refused") is None
    assert snapshot.labelled("slo_guard_actions_total", "action") == {"Pause": 4, "Resume": 2}


@pytest.mark.parametrize("action", ["Pause", "Scale"])
def test_the_benchmark_slos_are_accepted_by_the_crd_and_the_operator(action: str) -> None:
    manifest = slo_manifest(7, namespace="bench", action=action, scale_to=0)

    with running_emulator(crds=[CRD]) as emulator:
        emulator.create_object(target_manifest(7, namespace="bench"))
        created = emulator.create_object(manifest)
    objective = objective_from_resource(created, min_step=5)

    assert objective.policy.action is PolicyAction(action)
    assert objective.window == 300
    assert [target.name for target in objective.targets] == ["app-00007"]
    assert service_name(7) in str(objective.indicator)


def _soak_pair(*, action: str, state: str, remaining: float, held: bool) -> list[dict[str, Any]]:
    """An SLO with the given status and its Deployment, held by it or not, as the soak reads them."""
    slo = slo_manifest(3, namespace="soak", action=action, scale_to=SCALE_TO)
    slo["status"] = {"state": state, "errorBudget": {"remaining": remaining}}
    target = target_manifest(3, namespace="soak", replicas=REPLICAS)
    if held and action == "Pause":
        target["metadata"]["annotations"] = {PAUSED_BY: slo["metadata"]["name"]}
        target["spec"]["paused"] = True
    elif held:
        target["metadata"]["annotations"] = {SCALED_BY: slo["metadata"]["name"], ORIGINAL_REPLICAS: str(REPLICAS)}
        target["spec"]["replicas"] = SCALE_TO
    if held:
        target["metadata"]["labels"][HELD_LABEL] = "true"
    return [slo, target]


@pytest.mark.parametrize("action", ["Pause", "Scale"])
def test_the_soak_accepts_targets_that_follow_their_status(action: str) -> None:
    assert find_mismatches(_soak_pair(action=action, state="Exhausted", remaining=-0.5, held=True)) == set()
    assert find_mismatches(_soak_pair(action=action, state="Healthy", remaining=0.9, held=False)) == set()
    # Hysteresis: below resumeAbove either state of the target is right.
    assert find_mismatches(_soak_pair(action=action, state="Healthy", remaining=0.01, held=True)) == set()


@pytest.mark.parametrize("action", ["Pause", "Scale"])
def test_the_soak_counts_targets_that_contradict_their_status(action: str) -> None:
    not_held = find_mismatches(_soak_pair(action=action, state="Exhausted", remaining=-0.5, held=False))
    still_held = find_mismatches(_soak_pair(action=action, state="Healthy", remaining=0.9, held=True))

    assert [m.problem for m in not_held] == ["status Exhausted but the target is not held"]
    assert [m.problem for m in still_held] == [
        "status Healthy with 0.9 of the budget left but the target is still held"
    ]
    assert {m.slo for m in not_held | still_held} == {"soak/slo-00003"}


def test_the_soak_counts_a_pause_without_its_bookkeeping() -> None:
    objects = _soak_pair(action="Pause", state="Healthy", remaining=0.9, held=False)
    objects[1]["spec"]["paused"] = True

    assert [m.problem for m in find_mismatches(objects)] == ["spec.paused=True but sloguard.io/paused-by=[]"]
