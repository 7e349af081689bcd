"""Pyrra ServiceLevelObjectives as slo-guard's: each mapping, and each refusal in one line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from slo_guard.importers import ImportOptions, ImportResult, Source, import_slos
from slo_guard.resources import objective_from_resource

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "import"


def fixture(name: str) -> Source:
    return Source(name, list(yaml.safe_load_all((FIXTURES / name).read_text())))


def run(*documents: dict[str, Any], **options: Any) -> ImportResult:
    return import_slos("pyrra", [Source("p.yaml", list(documents))], ImportOptions(**options))


def pyrra(indicator: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "pyrra.dev/v1alpha1",
        "kind": "ServiceLevelObjective",
        "metadata": {"name": "web-availability", "namespace": "shop"},
        "spec": {"target": "99.5", "window": "28d", "indicator": indicator, **spec},
    }


RATIO = {
    "ratio": {
        "errors": {"metric": 'http_requests_total{job="web",code=~"5.."}'},
        "total": {"metric": 'http_requests_total{job="web"}'},
    }
}


def latency(success: str, total: str = 'h_count{job="web"}') -> dict[str, Any]:
    return {"latency": {"success": {"metric": success}, "total": {"metric": total}}}


def test_ratio_and_latency_objectives_map_with_target_window_labels_and_description() -> None:
    result = import_slos("pyrra", [fixture("pyrra.yaml")], ImportOptions())
    assert result.errors == ()
    spike, speed, exhausted = result.resources
    assert spike == {
        "apiVersion": "sloguard.io/v1alpha1",
        "kind": "ServiceLevelObjective",
        "metadata": {
            "name": "spike-availability",
            "namespace": "shop",
            "labels": {"prometheus": "k8s", "role": "alert-rules"},
            "annotations": {"sloguard.io/imported-from": "pyrra: pyrra.yaml, document 1"},
        },
        "spec": {
            "description": "Storefront requests answered without a server error.",
            "objective": 99.9,
            "window": "28d",
            "indicator": {
                "ratio": {
                    "errors": 'http_requests_total{job="spike",code=~"5.."}',
                    "total": 'http_requests_total{job="spike"}',
                }
            },
        },
    }
    assert speed["spec"] | {"indicator": None} == {"objective": 98, "window": "7d", "indicator": None}
    assert speed["spec"]["indicator"] == {
        "latency": {"histogram": 'http_request_duration_seconds{job="latency"}', "threshold": 0.3}
    }
    assert exhausted["metadata"]["namespace"] == "billing"
    for resource in result.resources:
        objective_from_resource(resource, min_step=30)


def test_grouping_is_dropped_with_one_warning_naming_it() -> None:
    result = import_slos("pyrra", [fixture("pyrra.yaml")], ImportOptions())
    assert result.warnings == (
        "pyrra.yaml: document 3 (exhausted-availability): spec.indicator.ratio.grouping: grouping by (job) dropped: "
        "slo-guard tracks one SLI over all the series, the source one per group",
    )


def test_bool_gauge_native_latency_and_an_infinite_bucket_are_refused_and_the_rest_still_maps() -> None:
    result = import_slos("pyrra", [fixture("pyrra-refused.yaml")], ImportOptions())
    assert [resource["metadata"]["name"] for resource in result.resources] == ["steady-availability"]
    assert result.errors == (
        "pyrra-refused.yaml: document 2 (probe-success): spec.indicator.bool_gauge: bool_gauge SLIs cannot be mapped "
        "(a gauge's share of good samples counts time, not events)",
        "pyrra-refused.yaml: document 3 (native-latency): spec.indicator.latencyNative: native-histogram latency SLIs "
        "cannot be mapped (slo-guard reads classic histogram buckets)",
        "pyrra-refused.yaml: document 4 (everything-bucket): spec.indicator.latency.success.metric: le='+Inf' is no "
        "latency threshold (every request is at or under it)",
    )


@pytest.mark.parametrize(("target", "objective"), [("99.5", 99.5), (" 99.95 ", 99.95), (99, 99), ("0.5", 0.5)])
def test_target_is_read_as_percent_like_pyrra_reads_it(target: object, objective: float) -> None:
    [resource] = run(pyrra(RATIO, target=target)).resources
    assert resource["spec"]["objective"] == objective


def test_a_target_below_one_percent_is_kept_with_a_warning_as_pyrra_gives() -> None:
    result = run(pyrra(RATIO, target="0.995"))
    assert result.warnings == (
        "p.yaml: document 1 (web-availability): spec.target: 0.995 is read as 0.995 percent, as Pyrra does "
        "(a fraction would be < 1)",
    )


@pytest.mark.parametrize(
    ("indicator", "spec", "line"),
    [
        (RATIO, {"target": "100"}, "spec.target: must be strictly between 0 and 100"),
        (RATIO, {"target": "ninety"}, "spec.target: must be a number (got 'ninety')"),
        (RATIO, {"target": None}, "spec.target: is required"),
        (RATIO, {"window": "1M"}, "spec.window: invalid duration '1M'"),
        ({}, {}, "spec.indicator: needs exactly one of ratio or latency"),
        (RATIO | latency("h_bucket{le='1'}"), {}, "spec.indicator: needs exactly one of ratio or latency"),
        (
            {"ratio": {"errors": {"metric": "sum(rate(x[5m]))"}, "total": {"metric": "x"}}},
            {},
            "spec.indicator.ratio.errors.metric: must be one series selector: invalid selector",
        ),
        ({"ratio": {"errors": {"metric": "x"}}}, {}, "spec.indicator.ratio.total: must be a mapping (got None)"),
        (latency('h_bucket{job="web"}'), {}, 'spec.indicator.latency.success.metric: needs exactly one le="BOUND"'),
        (latency('h_bucket{job="web",le="0.5"}', 'h_total{job="web"}'), {}, "total.metric: must count the same"),
        (latency('h_bucket{job="api",le="0.5"}'), {}, "success.metric: its matchers besides le must be the count's"),
        (latency('h{job="web",le="0.5"}'), {}, "success.metric: a latency SLI needs a histogram's _bucket series"),
    ],
    ids=[
        "target-100",
        "target-text",
        "no-target",
        "calendar-month",
        "no-indicator",
        "two-indicators",
        "a-query",
        "no-total",
        "no-le",
        "not-a-count",
        "other-matchers",
        "not-a-bucket",
    ],
)
def test_fields_that_cannot_map_exactly_are_refused(indicator: dict[str, Any], spec: dict[str, Any], line: str) -> None:
    result = run(pyrra(indicator, **spec))
    assert result.resources == ()
    [error] = result.errors
    assert error.startswith("p.yaml: document 1 (web-availability): ")
    assert line in error


def test_the_latency_threshold_is_the_le_bound_however_it_is_written() -> None:
    [resource] = run(pyrra(latency('h_bucket{job="web",le="2.5e-01"}'))).resources
    assert resource["spec"]["indicator"]["latency"] == {"histogram": 'h{job="web"}', "threshold": 0.25}


def test_the_namespace_option_overrides_the_objects() -> None:
    [resource] = run(pyrra(RATIO), namespace="payments").resources
    assert resource["metadata"]["namespace"] == "payments"


def test_an_object_without_a_name_is_refused() -> None:
    document = pyrra(RATIO)
    del document["metadata"]["name"]
    assert run(document).errors == ("p.yaml: document 1: metadata.name: is required",)
