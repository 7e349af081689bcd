"""Sloth specs and PrometheusServiceLevels as ServiceLevelObjectives: each mapping, and each refusal in one line."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from slo_guard.importers import ImportOptions, ImportResult, Source, Target, import_slos
from slo_guard.resources import objective_from_resource

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "import"
ORIGIN = "sloguard.io/imported-from"


def fixture(name: str) -> Source:
    return Source(name, list(yaml.safe_load_all((FIXTURES / name).read_text())))


def run(*sources: Source, **options: Any) -> ImportResult:
    return import_slos("sloth", sources, ImportOptions(**options))


def spec(*slos: dict[str, Any], service: str = "shop") -> dict[str, Any]:
    return {"version": "prometheus/v1", "service": service, "slos": list(slos)}


def slo(error_query: str, total_query: str, **fields: Any) -> dict[str, Any]:
    return {
        "name": "availability",
        "objective": 99.9,
        "sli": {"events": {"error_query": error_query, "total_query": total_query}},
        "alerting": {"name": "Availability"},
        **fields,
    }


ERRORS = 'sum(rate(http_requests_total{job="web",code=~"5.."}[{{.window}}]))'
TOTAL = 'sum(rate(http_requests_total{job="web"}[{{.window}}]))'


def test_a_prometheus_v1_spec_maps_each_slo_with_its_description_labels_and_the_window_option() -> None:
    result = run(fixture("sloth.yaml"))
    assert result.errors == ()
    steady, spike, latency = result.resources
    assert steady == {
        "apiVersion": "sloguard.io/v1alpha1",
        "kind": "ServiceLevelObjective",
        "metadata": {
            "name": "shop-steady-availability",
            "namespace": "default",
            "labels": {"team": "storefront", "tier": "1"},
            "annotations": {ORIGIN: "sloth: sloth.yaml, document 1, slos[0]"},
        },
        "spec": {
            "description": "Checkout answers without a server error.",
            "objective": 99.9,
            "window": "30d",
            "indicator": {
                "ratio": {
                    "errors": 'http_requests_total{job="steady",code=~"5.."}',
                    "total": 'http_requests_total{job="steady"}',
                }
            },
        },
    }
    assert spike["spec"]["indicator"]["ratio"]["errors"] == 'http_requests_total{job="spike",code=~"5.."}'
    assert latency["metadata"]["labels"] == {"team": "storefront", "tier": "1", "category": "latency"}
    assert latency["spec"]["objective"] == 98
    assert latency["spec"]["indicator"] == {
        "latency": {"histogram": 'http_request_duration_seconds{job="latency"}', "threshold": 0.3}
    }
    for resource in result.resources:
        objective_from_resource(resource, min_step=30)


def test_grouping_alike_on_both_queries_is_dropped_with_one_warning() -> None:
    result = run(fixture("sloth.yaml"))
    assert result.warnings == (
        "sloth.yaml: document 1 (spike-availability): slos[1].sli.events.error_query: grouping by (job) dropped: "
        "slo-guard tracks one SLI over all the series, the source one per group",
    )


def test_a_prometheus_service_level_resource_keeps_its_namespace_and_labels_and_reads_increase() -> None:
    [resource] = run(fixture("sloth-resource.yaml")).resources
    assert resource["metadata"] == {
        "name": "billing-exhausted-availability",
        "namespace": "billing",
        "labels": {"app.kubernetes.io/part-of": "billing", "owner": "payments"},
        "annotations": {ORIGIN: "sloth: sloth-resource.yaml, document 1, spec.slos[0]"},
    }
    assert resource["spec"]["indicator"]["ratio"] == {
        "errors": 'http_requests_total{job="exhausted",code=~"5.."}',
        "total": 'http_requests_total{job="exhausted"}',
    }


def test_namespace_targets_and_window_come_from_the_options() -> None:
    targets = (Target("Deployment", "web"), Target("Rollout", "api"))
    [resource] = run(fixture("sloth-resource.yaml"), namespace="payments", targets=targets, window="7d").resources
    assert resource["metadata"]["namespace"] == "payments"
    assert resource["spec"]["window"] == "7d"
    assert resource["spec"]["targets"] == [{"kind": "Deployment", "name": "web"}, {"kind": "Rollout", "name": "api"}]
    objective_from_resource(resource, min_step=30)


REFUSED = "sloth-refused.yaml: document 1"


def test_every_construct_that_cannot_map_is_one_line_and_the_rest_still_maps() -> None:
    result = run(fixture("sloth-refused.yaml"))
    assert [resource["metadata"]["name"] for resource in result.resources] == ["shop-steady-availability"]
    assert result.errors == (
        f"{REFUSED} (requests-availability): slos[1].sli.raw: raw SLIs cannot be mapped (a precomputed error ratio "
        "has no events to count)",
        f"{REFUSED} (plugin-availability): slos[2].sli.plugin: SLI plugins cannot be mapped (plugin "
        "'sloth-common/kubernetes/apiserver/availability' writes its own queries)",
        f"{REFUSED} (probe-success): slos[3].sli.events.error_query: not of the form "
        "sum(rate(SELECTOR[{{.window}}])): expected rate(...) or increase(...) inside sum; found "
        "'count_over_time((pro...' at offset 4",
        f"{REFUSED} (per-code-availability): slos[4].sli.events.total_query: has no grouping where "
        "slos[4].sli.events.error_query has grouping by (code): the division would match series group by group, "
        "which one SLI cannot express",
        f"{REFUSED} (fixed-range-availability): slos[5].sli.events.error_query: the range must be Sloth's "
        "[{{.window}}] (got [5m])",
        f"{REFUSED} (corrected-availability): slos[6].plugins: SLO plugins cannot be mapped: they can change the SLI "
        "Sloth computes",
    )


@pytest.mark.parametrize(
    ("errors", "total", "field", "message"),
    [
        (ERRORS, TOTAL.replace("rate", "increase"), "total_query", "uses increase where"),
        (ERRORS, f"{TOTAL} - {TOTAL}", "total_query", "the total must be one sum(rate(...))"),
        (f"{ERRORS} - {ERRORS}", TOTAL, "error_query", "a histogram's _count minus one of its buckets"),
        (f"{TOTAL} - {ERRORS}", TOTAL, "error_query", "a latency SLI needs a histogram's _bucket series"),
        (
            'sum(rate(h_count{job="web"}[{{.window}}])) - sum(rate(h_bucket{job="api",le="0.3"}[{{.window}}]))',
            'sum(rate(h_count{job="web"}[{{.window}}]))',
            "error_query",
            "its matchers besides le must be the count's",
        ),
        (
            'sum(rate(h_count[{{.window}}])) - sum(rate(h_bucket{le=~"0.3"}[{{.window}}]))',
            "sum(rate(h_count[{{.window}}]))",
            "error_query",
            'needs exactly one le="BOUND" matcher',
        ),
        (
            'sum(rate(h_count[{{.window}}])) - sum(rate(h_bucket{le="fast"}[{{.window}}]))',
            "sum(rate(h_count[{{.window}}]))",
            "error_query",
            "le='fast' is not a number",
        ),
        (
            'sum(rate(h_count[{{.window}}])) - sum(rate(other_bucket{le="1"}[{{.window}}]))',
            "sum(rate(h_count[{{.window}}]))",
            "total_query",
            "must count the same histogram, other_count",
        ),
        (ERRORS, 'sum(rate(x{a="b"} or vector(1)[{{.window}}]))', "total_query", "not of the form"),
        (ERRORS, 'sum(rate(x{a="b\\q"}[{{.window}}]))', "total_query", "invalid escape sequence"),
    ],
    ids=[
        "rate-and-increase",
        "difference-total",
        "difference-not-from-total",
        "difference-not-a-histogram",
        "other-matchers",
        "regex-le",
        "le-not-a-number",
        "other-histogram",
        "injection",
        "bad-escape",
    ],
)
def test_queries_that_do_not_map_exactly_are_refused_naming_the_query(
    errors: str, total: str, field: str, message: str
) -> None:
    result = run(Source("s.yaml", [spec(slo(errors, total))]))
    assert result.resources == ()
    [line] = result.errors
    assert line.startswith(f"s.yaml: document 1 (availability): slos[0].sli.events.{field}: ")
    assert message in line


@pytest.mark.parametrize(
    ("change", "line"),
    [
        ({"objective": 100}, "slos[0].objective: must be strictly between 0 and 100, so that some budget is left"),
        ({"objective": "high"}, "slos[0].objective: must be a number (got 'high')"),
        ({"objective": None}, "slos[0].objective: must be a number (got None)"),
        ({"name": "Availability_v2"}, "slos[0].name: 'shop-Availability_v2' cannot be a ServiceLevelObjective name"),
        ({"sli": {}}, "slos[0].sli: needs events (raw and plugin SLIs cannot be mapped)"),
        ({"sli": {"events": {"error_query": ERRORS}}}, "slos[0].sli.events.total_query: is required"),
    ],
    ids=["objective-100", "objective-text", "objective-missing", "bad-name", "no-events", "no-total"],
)
def test_fields_that_cannot_make_a_valid_slo_are_refused(change: dict[str, Any], line: str) -> None:
    result = run(Source("s.yaml", [spec(slo(ERRORS, TOTAL) | change)]))
    assert result.resources == ()
    [error] = result.errors
    assert error.startswith("s.yaml: document 1")
    assert line in error


def test_every_refusal_of_one_slo_is_reported_in_one_run() -> None:
    bad = slo(ERRORS, "sum(count(x))", objective=100, plugins={"chain": [{"id": "x"}]})
    result = run(Source("s.yaml", [spec(bad)]))
    assert [error.split(": ")[2] for error in result.errors] == [
        "slos[0].plugins",
        "slos[0].objective",
        "slos[0].sli.events.total_query",
    ]


def test_plugins_for_the_whole_spec_refuse_every_slo_of_it() -> None:
    document = spec(slo(ERRORS, TOTAL), slo(ERRORS, TOTAL, name="other")) | {"slo_plugins": {"chain": [{"id": "x"}]}}
    result = run(Source("s.yaml", [document]))
    assert [error.split(": ", 2)[2] for error in result.errors] == [
        "slo_plugins: SLO plugins cannot be mapped: they can change the SLI Sloth computes"
    ] * 2


def test_labels_kubernetes_cannot_hold_are_dropped_with_a_warning() -> None:
    labels = {"team": "Platform Team", "owner": "sre", "tags": ["a", "b"]}
    result = run(Source("s.yaml", [spec(slo(ERRORS, TOTAL, labels=labels))]))
    [resource] = result.resources
    assert resource["metadata"]["labels"] == {"owner": "sre"}
    assert result.warnings == (
        "s.yaml: document 1 (availability): slos[0].labels: not valid Kubernetes labels, left out: team, tags",
    )


def test_a_long_description_is_cut_with_a_warning() -> None:
    result = run(Source("s.yaml", [spec(slo(ERRORS, TOTAL, description="x" * 1050))]))
    [resource] = result.resources
    assert len(resource["spec"]["description"]) == 1024
    assert "slos[0].description: longer than 1024 characters, cut there" in result.warnings[0]


def test_a_namespace_kubernetes_cannot_use_is_refused_unless_overridden() -> None:
    [document] = fixture("sloth-resource.yaml").documents
    assert isinstance(document, dict)
    bad = copy.deepcopy(document)
    bad["metadata"]["namespace"] = "Billing"
    assert "metadata.namespace: 'Billing' is not a namespace name" in run(Source("r.yaml", [bad])).errors[0]
    assert run(Source("r.yaml", [bad]), namespace="billing").errors == ()


def test_the_same_name_twice_is_refused_the_second_time() -> None:
    result = run(Source("a.yaml", [spec(slo(ERRORS, TOTAL))]), Source("b.yaml", [spec(slo(ERRORS, TOTAL))]))
    assert len(result.resources) == 1
    assert result.errors == (
        "b.yaml: document 1 (availability): name: imports as default/shop-availability again, like a.yaml: "
        "document 1 (availability)",
    )


def test_documents_of_other_tools_are_skipped_and_nothing_found_is_an_error() -> None:
    other = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}}
    assert run(Source("a.yaml", [other]), Source("b.yaml", [])).errors == (
        "no Sloth specs (version: prometheus/v1, or sloth.slok.dev/v1 PrometheusServiceLevel) in a.yaml, b.yaml",
    )


def test_a_document_without_a_list_of_slos_is_one_line() -> None:
    result = run(Source("s.yaml", [{"version": "prometheus/v1", "service": "shop", "slos": "none"}]))
    assert result.errors == ("s.yaml: document 1: slos: must be a list (got 'none')",)
