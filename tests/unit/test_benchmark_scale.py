"""The pure parts of the scale benchmark (benchmarks/scale.py): per-replica aggregation, ownership of SLOs across
replicas, the idle-RSS settling rule and the targets, plus the stack's distinct free ports."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
from benchmarks.scale import (
    Ownership,
    Row,
    exported_slos,
    merge_histograms,
    ownership,
    per_replica,
    quantile,
    rss_settled,
    targets,
)
from benchmarks.stack import MetricsSnapshot
from tests.support.prometheus import free_ports

NOBODY = Ownership(duplicated=frozenset(), missing=frozenset())


def _state_page(*slos: str) -> MetricsSnapshot:
    """A replica's /metrics holding slo_guard_state for `slos` ("namespace/name"), one series per state."""
    lines = ["# TYPE slo_guard_state gauge"]
    for slo in slos:
        namespace, name = slo.split("/")
        for state, value in (("Healthy", 1), ("Exhausted", 0)):
            lines.append(f'slo_guard_state{{namespace="{namespace}",slo="{name}",state="{state}"}} {value}')
    lines.append('slo_guard_sli{namespace="bench",slo="only-an-sli"} 0.99')
    return MetricsSnapshot.parse("\n".join(lines) + "\n")


def _row(**changes: object) -> Row:
    """A 5,000-SLO single-replica run at 60 s that meets every target."""
    row = Row(
        size=5000,
        mode="ours",
        replicas=1,
        interval=60,
        writes_per_second=20.0,
        cold_start=520.0,
        spacing_p50=60.0,
        spacing_p99=61.0,
        pass_p50=0.003,
        pass_p99=0.2,
        passes_per_slo_per_interval=1.0,
        queries_per_cycle=2.0,
        prometheus_cpu_per_cycle=4.0,
        kube_writes_per_cycle=0.0,
        lease_writes_per_cycle=0.0,
        operator_rss_mib=(240.0,),
        operator_peak_rss_mib=(260.0,),
        operator_cpu_per_cycle=(5.0,),
        idle_rss_mib=60.0,
        ownership=NOBODY,
        accuracy=0.0,
        recorded_share=0.97,
    )
    return replace(row, **changes)  # type: ignore[arg-type]


def _verdicts(row: Row) -> dict[str, bool]:
    return {target.what: target.met for target in targets(row)}


def test_exported_slos_are_the_ones_with_a_state_series() -> None:
    page = _state_page("bench/slo-00001", "other/slo-00002")

    assert exported_slos(page) == {"bench/slo-00001", "other/slo-00002"}


def test_ownership_names_slos_on_several_replicas_and_on_none() -> None:
    replicas = [
        exported_slos(_state_page("bench/a", "bench/b")),
        exported_slos(_state_page("bench/b", "bench/c")),
        exported_slos(_state_page("bench/e")),
    ]

    found = ownership(replicas, ["bench/a", "bench/b", "bench/c", "bench/d", "bench/e"])

    assert found == Ownership(duplicated=frozenset({"bench/b"}), missing=frozenset({"bench/d"}))


def test_an_slo_listed_twice_by_one_replica_is_not_a_duplicate() -> None:
    assert ownership([["bench/a", "bench/a"], ["bench/b"]], ["bench/a", "bench/b"]) == NOBODY


def test_merged_histograms_add_counts_bound_by_bound() -> None:
    # Replica 1: 90 passes 30 s apart, 10 at 61 s; replica 2: 100 at 30 s.
    first = [(30.0, 90.0), (61.0, 100.0), (math.inf, 100.0)]
    second = [(30.0, 100.0), (61.0, 100.0), (math.inf, 100.0)]

    merged = merge_histograms([first, second])

    assert merged == [(30.0, 190.0), (61.0, 200.0), (math.inf, 200.0)]
    # 5 % of all passes were late: the fleet's p99 is late, its p50 is not.
    assert quantile(merged, 0.5) == pytest.approx(30 * 100 / 190)
    assert quantile(merged, 0.99) == pytest.approx(30 + 31 * (198 - 190) / 10)
    assert quantile(second, 0.99) <= 30


def test_quantile_of_nothing_observed_is_nan() -> None:
    assert math.isnan(quantile(merge_histograms([[(30.0, 0.0)], [(30.0, 0.0)]]), 0.5))


def test_rss_settles_once_the_last_five_samples_are_within_one_percent() -> None:
    steady = [100_000_000, 99_600_000, 100_200_000, 99_900_000, 100_300_000]

    assert not rss_settled(steady[:4])
    assert rss_settled(steady)
    assert rss_settled([50_000_000, *steady])
    assert not rss_settled([*steady, 102_000_000])


def test_rss_above_idle_is_per_slo_over_every_replica() -> None:
    row = _row(size=3000, replicas=3, operator_rss_mib=(100.0, 110.0, 90.0), idle_rss_mib=60.0)

    assert row.rss_above_idle_kib_per_slo == pytest.approx((300 - 180) * 1024 / 3000)


def test_a_run_within_every_limit_meets_every_target() -> None:
    checks = targets(_row())

    assert all(check.met for check in checks)
    assert str(checks[0]) == "RSS per replica 240 MiB PASS (<= 250 MiB)"
    # 5,000 SLOs x 2 writes at 20 writes/s, plus 30 s.
    assert [check.limit for check in checks if check.what == "cold start"] == [530.0]


def test_each_limit_is_missed_on_its_own() -> None:
    assert not _verdicts(_row(operator_rss_mib=(251.0,)))["RSS per replica"]
    assert not _verdicts(_row(operator_rss_mib=(250.0,), idle_rss_mib=50.0))["above idle"]
    assert not _verdicts(_row(spacing_p99=66.1))["spacing p99"]
    assert not _verdicts(_row(kube_writes_per_cycle=0.1))["k8s writes/cycle"]
    assert not _verdicts(_row(cold_start=531.0))["cold start"]
    assert not _verdicts(_row(ownership=Ownership(frozenset({"bench/a"}), frozenset())))["SLOs on >1 replica"]
    assert not _verdicts(_row(ownership=Ownership(frozenset(), frozenset({"bench/a"}))))["SLOs on none"]
    assert sum(not met for met in _verdicts(_row(spacing_p99=66.1)).values()) == 1


def test_targets_are_judged_at_the_printed_precision_and_nan_misses() -> None:
    assert _verdicts(_row(queries_per_cycle=2.04))["queries/cycle"]
    assert not _verdicts(_row(queries_per_cycle=2.06))["queries/cycle"]
    assert not _verdicts(_row(queries_per_cycle=math.nan))["queries/cycle"]


def test_sharded_limits_scale_with_the_replicas() -> None:
    row = _row(
        size=3000,
        replicas=3,
        interval=30,
        operator_rss_mib=(100.0, 100.0, 100.0),
        queries_per_cycle=6.0,
        spacing_p99=31.0,
        cold_start=120.0,
        idle_rss_mib=70.0,
    )
    limits = {check.what: check.limit for check in targets(row)}

    assert limits["queries/cycle"] == 6.0
    assert limits["cold start"] == 3000 / 60 * 2 + 30
    assert limits["spacing p99"] == pytest.approx(33.0)
    assert [str(check) for check in targets(row) if not check.met] == []
    assert not _verdicts(replace(row, operator_rss_mib=(100.0, 260.0, 10.0)))["RSS per replica"]


def test_per_replica_figures_show_the_total_and_each_share() -> None:
    assert per_replica((208.4,), 0) == "208"
    assert per_replica((1.5, 1.25, 1.0), 2) == "3.75 = 1.50 + 1.25 + 1.00"


def test_the_ports_one_replica_gets_are_distinct() -> None:
    for _ in range(20):
        ports = free_ports(3)
        assert len(set(ports)) == 3
