"""The CRD as the API server sees it: structural, well-formed, accepting the examples and rejecting bad SLOs.

There is no API server here, so the openAPIV3Schema is checked with jsonschema after a small conversion of the
OpenAPI/Kubernetes dialect. CEL rules (x-kubernetes-validations) cannot run here: the cases only CEL catches are
tested against the runtime model in test_resources.py, which is the second line of defence anyway.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st
from tests.support.emulator_store import merge_patch

from slo_guard.domain.evaluation_types import AlertStatus, Evaluation, State, UnknownReason
from slo_guard.domain.model import GROUP, KIND, PLURAL, VERSION, Severity
from slo_guard.resources import (
    SpecError,
    objective_from_resource,
    status_from_evaluation,
)

ROOT = Path(__file__).resolve().parents[2]
CRD_PATH = ROOT / "crds" / "servicelevelobjectives.yaml"
SPEC_DOC = ROOT / "docs" / "spec.md"

Schema = dict[str, Any]


def _load_crd() -> dict[str, Any]:
    crd: dict[str, Any] = yaml.safe_load(CRD_PATH.read_text(encoding="utf-8"))
    return crd


CRD = _load_crd()
VERSION_ENTRY: dict[str, Any] = CRD["spec"]["versions"][0]
OPENAPI: Schema = VERSION_ENTRY["schema"]["openAPIV3Schema"]


def to_json_schema(node: Schema) -> Schema:
    """OpenAPI v3.0 with Kubernetes extensions -> JSON Schema 2020-12, as `kubectl --validate=strict` behaves.

    - `nullable: true` becomes a "null" type; `exclusiveMinimum: true` (a v3.0 flag) becomes the 2020-12 bound.
    - An object with `properties` gets `additionalProperties: false`: the API server prunes unknown fields and
      strict field validation (kubectl's default) turns them into errors.
    - `x-kubernetes-list-type: map|set` becomes `uniqueItems` (exact for spec.targets, whose items have only
      the key fields; weaker than Kubernetes for lists with more fields).
    - Other `x-kubernetes-*` keys (CEL rules, list map keys) are dropped.
    """
    converted: Schema = {}
    for key, value in node.items():
        if key in {"properties", "patternProperties"}:
            converted[key] = {name: to_json_schema(child) for name, child in value.items()}
        elif key in {"items", "additionalProperties"} and isinstance(value, dict):
            converted[key] = to_json_schema(value)
        elif key in {"exclusiveMinimum", "exclusiveMaximum", "nullable"} or key.startswith("x-kubernetes-"):
            continue
        else:
            converted[key] = value
    for flag, bound in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if node.get(flag):
            converted[flag] = converted.pop(bound)
    if node.get("nullable"):
        converted["type"] = [node["type"], "null"]
    if "properties" in node and "additionalProperties" not in node:
        converted["additionalProperties"] = False
    if node.get("x-kubernetes-list-type") in {"map", "set"}:
        converted["uniqueItems"] = True
    return converted


VALIDATOR = jsonschema.Draft202012Validator(to_json_schema(OPENAPI))


def _schema_nodes(node: Schema, path: str = "") -> Iterator[tuple[str, Schema]]:
    yield path, node
    for name, child in node.get("properties", {}).items():
        yield from _schema_nodes(child, f"{path}.{name}")
    for key in ("items", "additionalProperties"):
        if isinstance(node.get(key), dict):
            yield from _schema_nodes(node[key], f"{path}[{key}]")


def _slo_documents() -> list[tuple[str, dict[str, Any]]]:
    documents = []
    for path in sorted((ROOT / "examples").glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if document["kind"] == KIND:
                documents.append((path.name, document))
    return documents


def _errors(resource: dict[str, Any]) -> set[tuple[str, str]]:
    """Each schema violation as (dotted path, JSON-schema keyword)."""
    return {
        (".".join(str(part) for part in error.absolute_path), error.validator)
        for error in VALIDATOR.iter_errors(resource)
    }


BASE: dict[str, Any] = {
    "apiVersion": f"{GROUP}/{VERSION}",
    "kind": KIND,
    "metadata": {"name": "checkout", "namespace": "shop"},
    "spec": {
        "objective": 99.9,
        "window": "30d",
        "indicator": {"ratio": {"errors": 'requests_total{code=~"5.."}', "total": "requests_total"}},
        "burnRateAlerts": [{"severity": "page", "longWindow": "1h", "shortWindow": "5m", "factor": 14.4}],
        "evaluationInterval": "30s",
        "targets": [{"kind": "Deployment", "name": "checkout"}],
        "policy": {"mode": "Enforce", "action": "Scale", "trigger": "Exhausted", "scaleTo": 2, "resumeAbove": 0.05},
    },
}


def _with(change: Callable[[dict[str, Any]], object]) -> dict[str, Any]:
    resource = copy.deepcopy(BASE)
    change(resource["spec"])
    return resource


def _set(path: str, value: object) -> Callable[[dict[str, Any]], object]:
    """A change setting `value` at a dotted path under spec (list indices as numbers)."""

    def change(spec: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = spec
        for part in parents:
            node = node[int(part)] if part.isdigit() else node[part]
        node[int(last) if last.isdigit() else last] = value

    return change


def test_crd_names_match_what_the_operator_watches() -> None:
    names = CRD["spec"]["names"]
    assert CRD["metadata"]["name"] == f"{PLURAL}.{GROUP}"
    assert (CRD["spec"]["group"], VERSION_ENTRY["name"]) == (GROUP, VERSION)
    assert (names["kind"], names["plural"], names["singular"]) == (KIND, PLURAL, "servicelevelobjective")
    assert names["shortNames"] == ["slo"]
    assert CRD["spec"]["scope"] == "Namespaced"
    assert VERSION_ENTRY["subresources"] == {"status": {}}
    assert VERSION_ENTRY["served"]
    assert VERSION_ENTRY["storage"]


def test_crd_is_a_valid_apiextensions_v1_object() -> None:
    kubernetes_validate.validate(CRD, "1.32", strict=True)


def test_every_schema_node_is_structural() -> None:
    for path, node in _schema_nodes(OPENAPI):
        assert "type" in node, f"{path or 'root'} has no type"
        assert "x-kubernetes-preserve-unknown-fields" not in node, f"{path} keeps unknown fields"
        assert not ({"properties", "additionalProperties"} <= node.keys()), f"{path} mixes both"
        if node["type"] == "array":
            assert "items" in node, f"{path} is an array without items"


def test_every_default_is_valid_for_its_own_field() -> None:
    defaults = [(path, node) for path, node in _schema_nodes(OPENAPI) if "default" in node]
    assert {path for path, _ in defaults} >= {".spec.policy.mode", ".spec.evaluationInterval"}
    for _, node in defaults:
        jsonschema.Draft202012Validator(to_json_schema(node)).validate(node["default"])


def test_cel_rules_only_name_fields_that_exist() -> None:
    """The API server refuses to install a CRD whose CEL rule names an unknown field."""
    checked = 0
    for path, node in _schema_nodes(OPENAPI):
        for rule in node.get("x-kubernetes-validations", []):
            for match in re.finditer(r"self((?:\.\w+)+)(\()?", rule["rule"]):
                fields = match[1].strip(".").split(".")
                _resolve(node, fields[:-1] if match[2] else fields, where=f"{path}: {rule['rule']}")
                checked += 1
            if "fieldPath" in rule:
                _resolve(node, rule["fieldPath"].strip(".").split("."), where=f"{path}: {rule['fieldPath']}")
    assert checked >= 10


def _resolve(node: Schema, fields: list[str], *, where: str) -> None:
    for field in fields:
        assert field in node.get("properties", {}), f"{where}: no field {field!r}"
        node = node["properties"][field]


def test_printer_columns_point_at_schema_fields() -> None:
    columns = {column["name"]: column for column in VERSION_ENTRY["additionalPrinterColumns"]}
    assert list(columns) == ["Objective", "Window", "SLI", "Budget", "State", "Age", "Reason", "Message"]
    assert [name for name, column in columns.items() if column.get("priority") == 1] == ["Reason", "Message"]
    for name, column in columns.items():
        if name != "Age":
            _resolve(OPENAPI, column["jsonPath"].strip(".").split("."), where=name)


@pytest.mark.parametrize(("name", "document"), _slo_documents(), ids=lambda value: str(value)[:40])
def test_examples_are_accepted(name: str, document: dict[str, Any]) -> None:
    assert _errors(document) == set()


def test_every_example_file_is_checked() -> None:
    assert {name for name, _ in _slo_documents()} == {
        "checkout-availability.yaml",
        "checkout-latency.yaml",
        "search-dryrun.yaml",
    }


def test_the_base_case_of_the_rejection_table_is_valid() -> None:
    assert _errors(BASE) == set()


def test_every_target_kind_is_accepted() -> None:
    kinds = [{"kind": kind, "name": "app"} for kind in ("Deployment", "StatefulSet", "Rollout")]
    assert _errors(_with(_set("targets", kinds))) == set()


@pytest.mark.parametrize(
    ("change", "path", "keyword"),
    [
        (_set("window", "30x"), "spec.window", "pattern"),
        (_set("window", "1.5h"), "spec.window", "pattern"),
        (_set("window", "1m30h"), "spec.window", "pattern"),
        (_set("window", ""), "spec.window", "minLength"),
        (_set("window", 30), "spec.window", "type"),
        (_set("evaluationInterval", "1d"), "spec.evaluationInterval", "pattern"),
        (_set("objective", 100), "spec.objective", "exclusiveMaximum"),
        (_set("objective", 0), "spec.objective", "exclusiveMinimum"),
        (_set("objective", "99.9"), "spec.objective", "type"),
        (_set("policy.scaleTo", -1), "spec.policy.scaleTo", "minimum"),
        (_set("policy.scaleTo", 1.5), "spec.policy.scaleTo", "type"),
        (_set("policy.mode", "enforce"), "spec.policy.mode", "enum"),
        (_set("policy.action", "Delete"), "spec.policy.action", "enum"),
        (_set("policy.resumeAbove", 1), "spec.policy.resumeAbove", "exclusiveMaximum"),
        (_set("targets.0.kind", "DaemonSet"), "spec.targets.0.kind", "enum"),
        (_set("targets.0.kind", "rollout"), "spec.targets.0.kind", "enum"),
        (_set("targets.0.name", "Checkout"), "spec.targets.0.name", "pattern"),
        (_set("targets.0.name", "a" * 254), "spec.targets.0.name", "maxLength"),
        (_set("targets.0.namespace", "other"), "spec.targets.0", "additionalProperties"),
        (_set("targets", [{"kind": "Deployment", "name": f"app-{i}"} for i in range(33)]), "spec.targets", "maxItems"),
        (_set("targets", [{"kind": "Deployment", "name": "app"}] * 2), "spec.targets", "uniqueItems"),
        (_set("indicator.ratio.errors", "a" * 1025), "spec.indicator.ratio.errors", "maxLength"),
        (_set("indicator.ratio.total", ""), "spec.indicator.ratio.total", "minLength"),
        (lambda spec: spec["indicator"]["ratio"].pop("total"), "spec.indicator.ratio", "required"),
        (lambda spec: spec.pop("indicator"), "spec", "required"),
        (
            _set("indicator", {"latency": {"histogram": "h", "threshold": 0}}),
            "spec.indicator.latency.threshold",
            "exclusiveMinimum",
        ),
        (_set("burnRateAlerts", []), "spec.burnRateAlerts", "minItems"),
        (_set("burnRateAlerts", BASE["spec"]["burnRateAlerts"] * 9), "spec.burnRateAlerts", "maxItems"),
        (_set("burnRateAlerts.0.factor", 0), "spec.burnRateAlerts.0.factor", "exclusiveMinimum"),
        (_set("burnRateAlerts.0.severity", "critical"), "spec.burnRateAlerts.0.severity", "enum"),
        (_set("burnRateAlerts.0.shortWindow", "5 m"), "spec.burnRateAlerts.0.shortWindow", "pattern"),
        (_set("foo", 1), "spec", "additionalProperties"),
    ],
)
def test_invalid_slos_are_rejected_for_the_expected_reason(
    change: Callable[[dict[str, Any]], object], path: str, keyword: str
) -> None:
    assert _errors(_with(change)) == {(path, keyword)}


DURATION_UNITS = ("y", "w", "d", "h", "m", "s", "ms")


@st.composite
def prometheus_durations(draw: st.DrawFn) -> str:
    """Durations in Prometheus syntax: some units, in order, each with a whole number."""
    units = draw(st.lists(st.sampled_from(DURATION_UNITS), min_size=1, unique=True))
    ordered = sorted(units, key=DURATION_UNITS.index)
    return "".join(f"{draw(st.integers(min_value=0, max_value=10**6))}{unit}" for unit in ordered)


def _with_window(text: str) -> dict[str, Any]:
    resource = _with(_set("window", text))
    del resource["spec"]["burnRateAlerts"]
    return resource


def _runtime_problem(text: str) -> str | None:
    try:
        objective_from_resource(_with_window(text), min_step=30)
    except SpecError as err:
        return str(err)
    return None


@given(prometheus_durations())
def test_admission_accepts_every_window_the_operator_accepts(text: str) -> None:
    assert _runtime_problem(text) is not None or not _errors(_with_window(text))


@given(st.one_of(prometheus_durations(), st.text(alphabet="0123456789ywdhms.+- ", max_size=12)))
def test_admission_lets_through_only_windows_the_operator_can_judge(text: str) -> None:
    """What the pattern accepts but the runtime refuses is too short or too long, never malformed.

    Windows under 1m without d/w/y units are also caught at admission, by CEL.
    """
    problem = None if _errors(_with_window(text)) else _runtime_problem(text)
    assert problem is None or re.search(
        "longer than zero|whole number of seconds|longer than Prometheus|at least 1m", problem
    )


@pytest.mark.parametrize(
    "evaluation",
    [
        Evaluation(
            state=State.BURNING,
            reason=None,
            message="Burning budget at 14.7x over 1h",
            evaluated_at=datetime(2025, 3, 1, 12, 0, tzinfo=UTC),
            sli=0.998,
            budget_remaining=0.4,
            burn_rates={3600: 14.7, 300: None},
            alerts=(AlertStatus(Severity.PAGE, long_window=3600, short_window=300, factor=14.4, firing=True),),
            time_to_exhaustion=86_400.0,
        ),
        Evaluation(
            state=State.UNKNOWN,
            reason=UnknownReason.NO_DATA,
            message="No series match",
            evaluated_at=datetime(2025, 3, 1, 12, 0, tzinfo=UTC),
        ),
        Evaluation(
            state=State.UNKNOWN,
            reason=UnknownReason.QUERY_REJECTED,
            message="Prometheus rejected one of this SLO's queries: query processing would load too many samples",
            evaluated_at=datetime(2025, 3, 1, 12, 0, tzinfo=UTC),
        ),
    ],
    ids=["burning", "unknown", "query-rejected"],
)
def test_status_the_operator_writes_fits_the_status_schema(evaluation: Evaluation) -> None:
    resource = {**BASE, "status": merge_patch({}, status_from_evaluation(evaluation, digits=3))}
    assert _errors(resource) == set()


def test_every_spec_field_is_documented() -> None:
    text = SPEC_DOC.read_text(encoding="utf-8")
    nodes = _schema_nodes(OPENAPI["properties"]["spec"], "spec")
    fields = [path.replace("[items]", "[]") for path, _ in nodes if not path.endswith("[items]")]
    assert len(fields) > 20
    assert [field for field in fields if f"| `{field}` |" not in text] == []
