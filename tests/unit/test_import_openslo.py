"""OpenSLO v1 SLOs as ServiceLevelObjectives: inline and referenced SLIs, and each refusal in one line."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from slo_guard.importers import ImportOptions, ImportResult, Source, import_slos
from slo_guard.resources import objective_from_resource

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "import"
ORIGIN = "sloguard.io/imported-from"


def fixture(name: str) -> Source:
    return Source(name, list(yaml.safe_load_all((FIXTURES / name).read_text())))


def run(*sources: Source, **options: Any) -> ImportResult:
    return import_slos("openslo", sources, ImportOptions(**options))


def source(query: str, kind: str = "Prometheus") -> dict[str, Any]:
    return {"metricSource": {"type": kind, "spec": {"query": query}}}


BAD = 'sum(rate(http_requests_total{job="web",code=~"5.."}[5m]))'
TOTAL = 'sum(rate(http_requests_total{job="web"}[5m]))'


def slo(ratio: dict[str, Any] | None = None, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "openslo/v1",
        "kind": "SLO",
        "metadata": {"name": "web-availability"},
        "spec": {
            "indicator": {
                "metadata": {"name": "web-errors"},
                "spec": {"ratioMetric": ratio or {"counter": True, "bad": source(BAD), "total": source(TOTAL)}},
            },
            "timeWindow": [{"duration": "28d", "isRolling": True}],
            "budgetingMethod": "Occurrences",
            "objectives": [{"target": 0.995}],
            **spec,
        },
    }


def test_referenced_and_inline_slis_map_with_the_window_objective_and_description() -> None:
    result = run(fixture("openslo.yaml"))
    assert result.errors == ()
    assert result.warnings == ()
    steady, _, _, speed = result.resources
    assert steady == {
        "apiVersion": "sloguard.io/v1alpha1",
        "kind": "ServiceLevelObjective",
        "metadata": {
            "name": "steady-availability",
            "namespace": "default",
            "labels": {"team": "storefront"},
            "annotations": {ORIGIN: "openslo: openslo.yaml, document 3"},
        },
        "spec": {
            "description": "Requests answered without a server error.",
            "objective": 99.9,
            "window": "28d",
            "indicator": {
                "ratio": {
                    "errors": 'http_requests_total{job="steady",code=~"5.."}',
                    "total": 'http_requests_total{job="steady"}',
                }
            },
        },
    }
    assert speed["spec"]["window"] == "1d"
    assert speed["spec"]["objective"] == 98
    assert speed["spec"]["indicator"] == {
        "latency": {"histogram": 'http_request_duration_seconds{job="latency"}', "threshold": 0.3}
    }
    for resource in result.resources:
        objective_from_resource(resource, min_step=30)


def test_good_events_become_their_exact_complement_and_each_objective_its_own_slo() -> None:
    _, strict, lenient, _ = run(fixture("openslo.yaml")).resources
    assert [strict["metadata"]["name"], lenient["metadata"]["name"]] == [
        "exhausted-availability-1",
        "exhausted-availability-2",
    ]
    assert [strict["spec"]["objective"], lenient["spec"]["objective"]] == [99.9, 99]
    assert [strict["spec"]["description"], lenient["spec"]["description"]] == ["Strict", "Lenient"]
    assert strict["metadata"]["annotations"][ORIGIN] == "openslo: openslo.yaml, document 4, spec.objectives[0]"
    assert strict["spec"]["indicator"]["ratio"] == {
        "errors": 'http_requests_total{job="exhausted",code!~"[234].."}',
        "total": 'http_requests_total{job="exhausted"}',
    }


@pytest.mark.parametrize(
    ("good", "errors"),
    [
        ('x{job="web",code="200"}', 'x{job="web",code!="200"}'),
        ('x{job="web",code!="500"}', 'x{job="web",code="500"}'),
        ('x{code!~"5..",job="web"}', 'x{job="web",code=~"5.."}'),
    ],
)
def test_the_complement_negates_the_one_matcher_good_adds(good: str, errors: str) -> None:
    ratio = {"good": source(f"sum(rate({good}[1m]))"), "total": source('sum(rate(x{job="web"}[1m]))')}
    [resource] = run(Source("o.yaml", [slo(ratio)])).resources
    assert resource["spec"]["indicator"]["ratio"] == {"errors": errors, "total": 'x{job="web"}'}


def test_a_duration_in_weeks_becomes_days_and_target_percent_is_read_as_is() -> None:
    document = slo(timeWindow=[{"duration": "2w", "isRolling": True}], objectives=[{"targetPercent": 99.95}])
    [resource] = run(Source("o.yaml", [document])).resources
    assert (resource["spec"]["window"], resource["spec"]["objective"]) == ("14d", 99.95)


def test_no_time_window_takes_the_window_option_and_says_so() -> None:
    document = slo()
    del document["spec"]["timeWindow"]
    result = run(Source("o.yaml", [document]), window="7d")
    assert result.resources[0]["spec"]["window"] == "7d"
    assert result.warnings == (
        "o.yaml: document 1 (web-availability): spec.timeWindow: absent: the window is --window, 7d",
    )


def test_every_construct_that_cannot_map_is_one_line_and_the_rest_still_maps() -> None:
    result = run(fixture("openslo-refused.yaml"))
    assert [resource["metadata"]["name"] for resource in result.resources] == ["steady-availability"]
    assert result.errors == (
        "openslo-refused.yaml: document 2 (monthly-availability): spec.timeWindow[0]: calendar-aligned windows cannot "
        "be mapped (slo-guard's window is rolling)",
        "openslo-refused.yaml: document 3 (sliced-availability): spec.budgetingMethod: Timeslices budgeting cannot be "
        "mapped (slo-guard budgets events, as Occurrences)",
        "openslo-refused.yaml: document 4 (precomputed-availability): spec.indicator.spec.ratioMetric.raw: raw ratios "
        "cannot be mapped (a precomputed ratio has no events to count)",
        "openslo-refused.yaml: document 5 (datadog-availability): spec.indicator.spec.ratioMetric.good.metricSource: "
        "only Prometheus sources can be mapped (type 'Datadog')",
    )


RATIO = "spec.indicator.spec.ratioMetric"


@pytest.mark.parametrize(
    ("change", "line"),
    [
        ({"timeWindow": [{"duration": "1M", "isRolling": True}]}, "spec.timeWindow[0].duration: '1M' has no fixed"),
        ({"timeWindow": [{"duration": "1Q", "isRolling": True}]}, "spec.timeWindow[0].duration: '1Q' has no fixed"),
        ({"timeWindow": [{"duration": "30 days"}]}, "'30 days' is not a duration shorthand"),
        ({"timeWindow": [{"duration": "0d"}]}, "spec.timeWindow[0].duration: must be longer than zero"),
        ({"timeWindow": [{"duration": "30d", "isRolling": False}]}, "spec.timeWindow[0]: calendar-aligned"),
        ({"timeWindow": []}, "spec.timeWindow: must hold exactly one window (got 0)"),
        ({"budgetingMethod": "RatioTimeslices"}, "spec.budgetingMethod: RatioTimeslices budgeting cannot be mapped"),
        ({"budgetingMethod": None}, "spec.budgetingMethod: must be Occurrences (got None)"),
        ({"objectives": []}, "spec.objectives: needs at least one objective"),
        ({"objectives": [{"target": 1}]}, "spec.objectives[0].target: must be strictly between 0 and 1"),
        ({"objectives": [{"target": 0.9, "targetPercent": 90}]}, "needs exactly one of target or targetPercent"),
        ({"objectives": [{"indicatorRef": "x", "target": 0.9}]}, "spec.objectives[0]: composite objectives"),
        ({"indicator": None}, "spec.indicator: is required (or spec.indicatorRef)"),
        ({"indicatorRef": "web-errors"}, "spec.indicatorRef: give indicator or indicatorRef, not both"),
    ],
    ids=[
        "month",
        "quarter",
        "not-shorthand",
        "zero",
        "not-rolling",
        "no-window",
        "ratio-timeslices",
        "no-budgeting",
        "no-objectives",
        "target-1",
        "both-targets",
        "composite",
        "no-indicator",
        "both-indicators",
    ],
)
def test_slo_fields_that_cannot_map_are_refused(change: dict[str, Any], line: str) -> None:
    document = slo()
    document["spec"] |= change
    result = run(Source("o.yaml", [document]))
    assert result.resources == ()
    [error] = result.errors
    assert error.startswith("o.yaml: document 1 (web-availability): ")
    assert line in error


@pytest.mark.parametrize(
    ("ratio", "line"),
    [
        (
            {"bad": source(BAD), "good": source(BAD), "total": source(TOTAL)},
            f"{RATIO}: needs exactly one of good or bad",
        ),
        ({"bad": source(BAD)}, f"{RATIO}.total: must be a mapping (got None)"),
        (
            {"bad": source("errors_total"), "total": source(TOTAL)},
            f"{RATIO}.bad.metricSource.spec.query: not of the form",
        ),
        (
            {"bad": source(BAD.replace("5m", "{{.window}}")), "total": source(TOTAL)},
            f"{RATIO}.bad.metricSource.spec.query: the range must be a duration",
        ),
        ({"bad": source(BAD), "total": {"metricSource": {"spec": {"query": TOTAL}}}}, "only Prometheus sources"),
        (
            {"good": source('sum(rate(other_total{job="web"}[5m]))'), "total": source(TOTAL)},
            f"{RATIO}.good: good events map only as the total's selector with one more matcher",
        ),
        (
            {"good": source(f"{TOTAL} - {BAD}"), "total": source(TOTAL)},
            f"{RATIO}.good: must be one sum(rate(...)) when the good events are given",
        ),
    ],
    ids=["good-and-bad", "no-total", "not-a-sum", "sloth-template", "no-type", "unrelated-good", "good-difference"],
)
def test_ratio_metrics_that_cannot_map_exactly_are_refused(ratio: dict[str, Any], line: str) -> None:
    result = run(Source("o.yaml", [slo(ratio)]))
    [error] = result.errors
    assert line in error


def test_threshold_metrics_are_refused() -> None:
    document = slo()
    document["spec"]["indicator"]["spec"] = {"thresholdMetric": source("avg(latency)")}
    [error] = run(Source("o.yaml", [document])).errors
    assert "spec.indicator.spec.thresholdMetric: threshold SLIs cannot be mapped" in error


def sli(name: str, ratio: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "openslo/v1", "kind": "SLI", "metadata": {"name": name}, "spec": {"ratioMetric": ratio}}


def referencing(name: str) -> dict[str, Any]:
    document = slo()
    del document["spec"]["indicator"]
    document["spec"]["indicatorRef"] = name
    return document


def test_an_sli_in_another_file_is_found_and_its_problems_named_with_its_place() -> None:
    good = sli("errors", {"bad": source(BAD), "total": source(TOTAL)})
    assert run(Source("slo.yaml", [referencing("errors")]), Source("sli.yaml", [good])).errors == ()
    raw = sli("errors", {"raw": source("ratio"), "rawType": "failure"})
    [error] = run(Source("slo.yaml", [referencing("errors")]), Source("sli.yaml", [raw])).errors
    assert error == (
        "slo.yaml: document 1 (web-availability): SLI errors in sli.yaml document 1, spec.ratioMetric.raw: raw ratios "
        "cannot be mapped (a precomputed ratio has no events to count)"
    )


def test_a_missing_or_ambiguous_reference_is_refused() -> None:
    [missing] = run(Source("o.yaml", [referencing("errors")])).errors
    assert missing.endswith("spec.indicatorRef: no SLI named 'errors' in the given files")
    twice = sli("errors", {"bad": source(BAD), "total": source(TOTAL)})
    [ambiguous] = run(Source("o.yaml", [referencing("errors"), twice, copy.deepcopy(twice)])).errors
    assert ambiguous.endswith("spec.indicatorRef: 2 SLIs are named 'errors': o.yaml document 2, o.yaml document 3")


def test_a_data_source_reference_gives_the_type() -> None:
    def by_reference(query: str) -> dict[str, Any]:
        return {"metricSource": {"metricSourceRef": "metrics", "spec": {"query": query}}}

    document = slo({"bad": by_reference(BAD), "total": by_reference(TOTAL)})
    datasource = {"apiVersion": "openslo/v1", "kind": "DataSource", "metadata": {"name": "metrics"}}
    prometheus = datasource | {"spec": {"type": "prometheus"}}
    assert run(Source("o.yaml", [document, prometheus])).errors == ()
    [error] = run(Source("o.yaml", [document, datasource | {"spec": {"type": "Datadog"}}])).errors
    assert "only Prometheus sources can be mapped (type 'Datadog')" in error
    [error] = run(Source("o.yaml", [document])).errors
    assert "metricSourceRef: no DataSource named 'metrics'" in error


def test_other_openslo_versions_are_refused_by_name() -> None:
    document = slo() | {"apiVersion": "openslo/v1alpha"}
    assert run(Source("o.yaml", [document])).errors == (
        "o.yaml: document 1 (web-availability): apiVersion: only openslo/v1 is read",
    )


def test_one_refusal_for_an_slo_with_several_objectives_is_one_line() -> None:
    document = slo(objectives=[{"target": 0.99}, {"target": 0.999}], budgetingMethod="Timeslices")
    assert len(run(Source("o.yaml", [document])).errors) == 1


def test_labels_with_list_values_are_left_out_with_a_warning() -> None:
    document = slo()
    document["metadata"]["labels"] = {"team": "web", "tags": ["auth", "edge"]}
    result = run(Source("o.yaml", [document]))
    assert result.resources[0]["metadata"]["labels"] == {"team": "web"}
    assert result.warnings == (
        "o.yaml: document 1 (web-availability): metadata.labels: not valid Kubernetes labels, left out: tags",
    )
