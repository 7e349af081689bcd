"""dashboards/slo-guard.json: every query reads only series slo-guard produces and parses in Prometheus."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import promql_parser
import pytest
from tests.support.prometheus import REPO_ROOT, PrometheusQueryFailed, PrometheusServer

from slo_guard.adapters.resilience import BreakerState
from slo_guard.domain.evaluation_types import State
from slo_guard.domain.model import Objective, RatioIndicator
from slo_guard.domain.rules import rule_file
from slo_guard.domain.selectors import parse_selector
from slo_guard.domain.windows import default_tiers
from slo_guard.telemetry import OperatorMetrics

DASHBOARD = json.loads((REPO_ROOT / "dashboards" / "slo-guard.json").read_text(encoding="utf-8"))
GRAFANA_VARIABLES = {"$namespace": ".*", "$slo": ".*", "$__rate_interval": "1m", "$__interval": "1m"}
LABEL_VALUES = re.compile(r"label_values\((?P<selector>.+),\s*(?P<label>[a-zA-Z_]\w*)\)")
GRID_WIDTH = 24
SERIES_SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
"""The series names prometheus_client exposes for each metric type."""


def panels(container: dict[str, Any] = DASHBOARD) -> Iterator[dict[str, Any]]:
    for panel in container.get("panels", []):
        yield panel
        yield from panels(panel)


def targets() -> list[dict[str, Any]]:
    return [target for panel in panels() for target in panel.get("targets", [])]


def variables() -> dict[str, dict[str, Any]]:
    return {variable["name"]: variable for variable in DASHBOARD["templating"]["list"]}


def variable_selectors() -> list[str]:
    selectors = []
    for variable in variables().values():
        if variable["type"] == "query":
            match = LABEL_VALUES.fullmatch(variable["definition"])
            assert match, variable["definition"]
            selectors.append(match["selector"])
    return selectors


def substituted(expr: str) -> str:
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    assert "$" not in expr, f"unsubstituted Grafana variable in {expr}"
    return expr


def queries() -> list[str]:
    return [substituted(expr) for expr in [target["expr"] for target in targets()] + variable_selectors()]


def metric_names(query: str) -> set[str]:
    names: set[str] = set()

    def visit(node: object) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            assert node.name, f"selector without a metric name in {query}"
            names.add(node.name)

    promql_parser.walk(promql_parser.parse(query), visit)
    return names


def operator_series() -> set[str]:
    families = OperatorMetrics().registry.collect()
    return {family.name + suffix for family in families for suffix in SERIES_SUFFIXES[family.type]}


def recorded_series() -> set[str]:
    slo = Objective(
        name="any",
        namespace="any",
        objective=0.999,
        window=30 * 86_400,
        indicator=RatioIndicator(errors=parse_selector("errors"), total=parse_selector("requests")),
        tiers=default_tiers(30 * 86_400, min_step=30),
    )
    rules = [rule for group in rule_file([slo])["groups"] for rule in group["rules"]]
    return {rule["record"] for rule in rules if "record" in rule}


def value_mapping(panel_title: str) -> dict[int, str]:
    (panel,) = [panel for panel in panels() if panel["title"] == panel_title]
    (mapping,) = panel["fieldConfig"]["defaults"]["mappings"]
    return {int(value): option["text"] for value, option in mapping["options"].items()}


def test_the_dashboard_is_grafana_schema_39_on_a_chosen_prometheus() -> None:
    assert DASHBOARD["schemaVersion"] == 39
    datasource = variables()["datasource"]
    assert (datasource["type"], datasource["query"]) == ("datasource", "prometheus")
    for panel in panels():
        if panel["type"] != "row":
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]


def test_namespace_and_slo_variables_list_what_the_operator_exports() -> None:
    assert variables()["namespace"]["definition"] == "label_values(slo_guard_sli, namespace)"
    assert variables()["slo"]["definition"] == 'label_values(slo_guard_sli{namespace=~"$namespace"}, slo)'


def test_every_query_uses_only_series_slo_guard_produces() -> None:
    allowed = operator_series() | recorded_series()
    for query in queries():
        assert metric_names(query) <= allowed, query


def test_every_per_slo_metric_and_the_recorded_budget_has_a_panel() -> None:
    used = set().union(*(metric_names(query) for query in queries()))
    wanted = {
        "slo_guard_error_budget_remaining",
        "slo_guard_burn_rate",
        "slo_guard_sli",
        "slo_guard_state",
        "slo_guard_actions_total",
        "slo_guard_evaluation_duration_seconds_bucket",
        "slo_guard_prometheus_requests_total",
        "slo_guard_circuit_breaker_state",
        "sloguard_slo:error_budget_remaining",
    }
    assert wanted <= used


def test_state_and_breaker_mappings_name_every_value_the_operator_exports() -> None:
    assert sorted(value_mapping("State").values()) == sorted(state.value for state in State)
    breakers = value_mapping("Circuit breakers")
    assert {value: text.replace("-", "_").upper() for value, text in breakers.items()} == {
        state.value: state.name for state in BreakerState
    }


def test_panels_do_not_overlap_on_the_grid() -> None:
    taken: set[tuple[int, int]] = set()
    for panel in panels():
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= GRID_WIDTH, panel["title"]
        columns = range(grid["x"], grid["x"] + grid["w"])
        cells = {(x, y) for x in columns for y in range(grid["y"], grid["y"] + grid["h"])}
        assert not cells & taken, f"{panel['title']} overlaps another panel"
        taken |= cells


@pytest.fixture(scope="module")
def empty_prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusServer]:
    with PrometheusServer(tmp_path_factory.mktemp("dashboard-prometheus")) as server:
        yield server


@pytest.mark.prometheus
@pytest.mark.parametrize("query", queries())
def test_every_query_parses_in_real_prometheus(empty_prometheus: PrometheusServer, query: str) -> None:
    # query() raises PrometheusQueryFailed with Prometheus's own message on anything but status success.
    assert empty_prometheus.query(query) == []


@pytest.mark.prometheus
def test_a_query_prometheus_rejects_is_reported(empty_prometheus: PrometheusServer) -> None:
    with pytest.raises(PrometheusQueryFailed, match="parse error"):
        empty_prometheus.query(substituted("sum(rate(slo_guard_actions_total[$__rate_interval])"))
