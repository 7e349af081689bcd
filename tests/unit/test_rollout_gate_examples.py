"""examples/argo-rollouts/ and examples/flagger/: objects that would pass the API server and ask slo-guard's gate API
the right question.

Custom resources are checked against cut-down copies of the upstream CRD schemas (tests/support/upstream-schemas/,
every object closed, so a field upstream lacks fails); built-in objects, and the Rollout's pod template, against
Kubernetes 1.32's schemas with kubernetes-validate, strict.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
ARGO = EXAMPLES / "argo-rollouts"
FLAGGER = EXAMPLES / "flagger"
SCHEMAS = REPO / "tests" / "support" / "upstream-schemas"
DOC = REPO / "docs" / "gates.md"
OPERATOR = REPO / "manifests" / "operator" / "deployment.yaml"
KUBERNETES_VERSION = "1.32"

GATE = "http://slo-guard.slo-guard.svc:8081"
GATE_PORT = 8081
GET_PATH = "/gate/v1/namespaces/{namespace}/servicelevelobjectives/{name}"
FLAGGER_URL = f"{GATE}/gate/v1/flagger"
ARGO_ERROR_RETRY_SECONDS = 10
"""Argo retries a measurement that errored after 10 s, whatever the metric's interval (analysis/analysis.go)."""

SCHEMA_OF = {
    ("argoproj.io/v1alpha1", "AnalysisTemplate"): "argo-rollouts-analysistemplate.yaml",
    ("argoproj.io/v1alpha1", "Rollout"): "argo-rollouts-rollout.yaml",
    ("flagger.app/v1beta1", "Canary"): "flagger-canary.yaml",
}
NOT_SPELT_OUT = {"argo-rollouts-rollout.yaml": {"/properties/spec/properties/template/properties/spec"}}
"""Objects a stand-in schema leaves open on purpose: the pod spec, checked with kubernetes-validate instead."""


def documents(path: Path) -> list[dict[str, Any]]:
    return [item for item in yaml.safe_load_all(path.read_text(encoding="utf-8")) if item]


def example_files() -> list[Path]:
    return sorted([*ARGO.glob("*.yaml"), *FLAGGER.glob("*.yaml")])


def example_objects() -> list[tuple[str, dict[str, Any]]]:
    return [(path.relative_to(REPO).as_posix(), item) for path in example_files() for item in documents(path)]


def the(kind: str, directory: Path) -> dict[str, Any]:
    (found,) = [item for path in sorted(directory.glob("*.yaml")) for item in documents(path) if item["kind"] == kind]
    return found


def schema(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((SCHEMAS / name).read_text(encoding="utf-8"))
    return loaded


def example_slos() -> set[str]:
    """NAMESPACE/NAME of every ServiceLevelObjective in the repository's examples/*.yaml."""
    return {
        f"{item['metadata']['namespace']}/{item['metadata']['name']}"
        for path in EXAMPLES.glob("*.yaml")
        for item in documents(path)
        if item.get("kind") == "ServiceLevelObjective"
    }


CUSTOM = [(where, item) for where, item in example_objects() if (item["apiVersion"], item["kind"]) in SCHEMA_OF]
BUILT_IN = [(where, item) for where, item in example_objects() if (item["apiVersion"], item["kind"]) not in SCHEMA_OF]


def test_every_example_file_says_what_it_is_and_how_to_apply_it() -> None:
    assert {path.name for path in example_files()} == {
        "analysis-template.yaml",
        "gate-token-secret.yaml",
        "rollout.yaml",
        "networkpolicy.yaml",
        "canary.yaml",
    }
    for path in example_files():
        text = path.read_text(encoding="utf-8")
        assert text.startswith("# "), path
        header = text.split("\napiVersion:", 1)[0]
        assert "kubectl" in header, f"{path}: the opening comment says how to apply it"


def closed_objects(node: Any, where: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every object schema under `node`, with its JSON pointer."""
    if isinstance(node, dict):
        if node.get("type") == "object":
            yield where, node
        for key, value in node.items():
            yield from closed_objects(value, f"{where}/{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from closed_objects(value, f"{where}/{index}")


@pytest.mark.parametrize("name", sorted(SCHEMA_OF.values()))
def test_stand_in_schemas_reject_every_field_they_do_not_describe(name: str) -> None:
    text = (SCHEMAS / name).read_text(encoding="utf-8")
    assert text.startswith("# Cut-down stand-in"), "the header says what it mirrors"
    assert re.search(r"commit [0-9a-f]{40}", text), "the header names the upstream version"
    for where, node in closed_objects(schema(name)):
        if where in NOT_SPELT_OUT.get(name, set()):
            continue
        if "properties" in node:
            assert node.get("additionalProperties") is False, f"{name}{where} must be closed"
        else:
            assert isinstance(node.get("additionalProperties"), dict), f"{name}{where}: a map of typed values"


@pytest.mark.parametrize(("where", "item"), CUSTOM, ids=[f"{w}:{i['kind']}" for w, i in CUSTOM])
def test_custom_resources_match_the_upstream_schema(where: str, item: dict[str, Any]) -> None:
    jsonschema.validate(item, schema(SCHEMA_OF[item["apiVersion"], item["kind"]]))


@pytest.mark.parametrize(("where", "item"), BUILT_IN, ids=[f"{w}:{i['kind']}" for w, i in BUILT_IN])
def test_built_in_objects_pass_strict_schema_validation(where: str, item: dict[str, Any]) -> None:
    kubernetes_validate.validate(item, KUBERNETES_VERSION, strict=True)


def test_rollout_pod_template_passes_strict_schema_validation() -> None:
    template = the("Rollout", ARGO)["spec"]["template"]
    pod_template = {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": "checkout"}, "template": template}
    kubernetes_validate.validate(pod_template, KUBERNETES_VERSION, strict=True)
    selector = the("Rollout", ARGO)["spec"]["selector"]["matchLabels"]
    assert selector.items() <= template["metadata"]["labels"].items(), "the selector matches the pods"


def test_a_web_header_cannot_take_its_value_from_a_secret() -> None:
    """The stand-in is strict where it matters: the token reaches the header through a secret arg, not valueFrom."""
    template = the("AnalysisTemplate", ARGO)
    (metric,) = template["spec"]["metrics"]
    metric["provider"]["web"]["headers"][0]["valueFrom"] = {"secretKeyRef": {"name": "t", "key": "token"}}
    with pytest.raises(jsonschema.ValidationError, match="valueFrom"):
        jsonschema.validate(template, schema(SCHEMA_OF["argoproj.io/v1alpha1", "AnalysisTemplate"]))


ARG = re.compile(r"\{\{\s*args\.([A-Za-z0-9_.-]+)\s*\}\}")


def template_args() -> dict[str, dict[str, Any]]:
    return {arg["name"]: arg for arg in the("AnalysisTemplate", ARGO)["spec"]["args"]}


def rollout_analysis() -> dict[str, Any]:
    analysis: dict[str, Any] = the("Rollout", ARGO)["spec"]["strategy"]["canary"]["analysis"]
    return analysis


def resolved(text: str) -> str:
    """`text` with the args an AnalysisRun would get: the template's defaults, overridden by the Rollout's."""
    values = {name: arg["value"] for name, arg in template_args().items() if "value" in arg}
    values |= {arg["name"]: arg["value"] for arg in rollout_analysis()["args"]}

    def value(match: re.Match[str]) -> str:
        assert match.group(1) in values, f"{match.group(1)} has no value"
        return str(values[match.group(1)])

    return ARG.sub(value, text)


def gate_metric() -> dict[str, Any]:
    metrics: list[dict[str, Any]] = the("AnalysisTemplate", ARGO)["spec"]["metrics"]
    (metric,) = metrics
    return metric


def test_rollout_uses_the_template_and_passes_every_arg_it_requires() -> None:
    template, rollout, analysis = the("AnalysisTemplate", ARGO), the("Rollout", ARGO), rollout_analysis()
    assert analysis["templates"] == [{"templateName": template["metadata"]["name"]}]
    # An AnalysisTemplate (not a ClusterAnalysisTemplate) is looked up in the Rollout's namespace.
    assert rollout["metadata"]["namespace"] == template["metadata"]["namespace"]
    required = {name for name, arg in template_args().items() if "value" not in arg and "valueFrom" not in arg}
    passed = [arg["name"] for arg in analysis["args"]]
    assert len(passed) == len(set(passed))
    assert set(passed) == required, "the Rollout passes exactly the args without a default"


def test_analysis_asks_the_get_endpoint_about_an_slo_in_the_rollouts_namespace() -> None:
    rollout, web = the("Rollout", ARGO), gate_metric()["provider"]["web"]
    url = urlsplit(resolved(web["url"]))
    slo = {arg["name"]: arg["value"] for arg in rollout_analysis()["args"]}
    assert f"{url.scheme}://{url.netloc}" == GATE
    assert url.path == GET_PATH.format(namespace=slo["slo-namespace"], name=slo["slo-name"])
    assert (url.query, url.fragment) == ("", "")
    assert web.get("method", "GET") == "GET"
    assert f"{slo['slo-namespace']}/{slo['slo-name']}" in example_slos()
    assert slo["slo-namespace"] == rollout["metadata"]["namespace"]


def test_analysis_passes_exactly_when_the_gate_is_open() -> None:
    metric = gate_metric()
    # No jsonPath: the whole JSON answer is `result`, so `result.open` is the gate's `open`.
    assert "jsonPath" not in metric["provider"]["web"]
    assert metric["successCondition"] == "result.open == true"
    assert metric["failureCondition"] == "result.open == false"
    assert metric["failureLimit"] == 0, "the first closed answer fails the analysis"
    assert metric["inconclusiveLimit"] == 0


def duration_seconds(text: str) -> int:
    match = re.fullmatch(r"(\d+)([sm])", text)
    assert match, text
    return int(match.group(1)) * (60 if match.group(2) == "m" else 1)


def test_analysis_gates_the_whole_canary_and_outlasts_an_operator_restart() -> None:
    metric, analysis = gate_metric(), rollout_analysis()
    # A background analysis from the first step; without count it measures until the last step is done.
    assert "count" not in metric
    assert analysis.get("startingStep", 0) == 0
    assert metric["provider"]["web"]["timeoutSeconds"] < duration_seconds(metric["interval"])
    # The operator runs one replica, replaced with Recreate: a restart takes its grace period and a start-up.
    (operator,) = documents(OPERATOR)
    grace = operator["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert metric["consecutiveErrorLimit"] * ARGO_ERROR_RETRY_SECONDS >= grace + 60


def test_analysis_sends_the_token_from_a_secret_the_analysis_run_can_read() -> None:
    headers = gate_metric()["provider"]["web"]["headers"]
    assert headers == [{"key": "Authorization", "value": "Bearer {{args.gate-token}}"}]
    reference = template_args()["gate-token"]["valueFrom"]["secretKeyRef"]
    secret = the("Secret", ARGO)
    # An AnalysisRun reads Secrets from its own namespace, the Rollout's.
    assert secret["metadata"] == {"name": reference["name"], "namespace": the("Rollout", ARGO)["metadata"]["namespace"]}
    assert reference["key"] in secret["stringData"]


def gate_webhooks() -> list[dict[str, Any]]:
    return [hook for hook in the("Canary", FLAGGER)["spec"]["analysis"]["webhooks"] if "slo-guard" in hook["url"]]


def test_canary_waits_for_the_flagger_endpoint_before_it_starts_and_before_it_promotes() -> None:
    hooks = gate_webhooks()
    assert [hook["type"] for hook in hooks] == ["confirm-rollout", "confirm-promotion"]
    assert {hook["url"] for hook in hooks} == {FLAGGER_URL}
    interval = duration_seconds(the("Canary", FLAGGER)["spec"]["analysis"]["interval"])
    for hook in hooks:
        assert duration_seconds(hook["timeout"]) < interval


def test_canary_names_slos_that_exist_in_its_namespace() -> None:
    canary = the("Canary", FLAGGER)
    namespace = canary["metadata"]["namespace"]
    (slos,) = {hook["metadata"]["slos"] for hook in gate_webhooks()}
    names = slos.split(",")
    assert names == [name.strip() for name in names if name.strip()], "comma-separated names, no blanks"
    assert {f"{namespace}/{name}" for name in names} <= example_slos()


@pytest.mark.parametrize("directory", [ARGO, FLAGGER], ids=["argo-rollouts", "flagger"])
def test_networkpolicy_admits_the_controller_to_the_gate_port_of_the_operator_pods(directory: Path) -> None:
    policy = the("NetworkPolicy", directory)
    (operator,) = documents(OPERATOR)
    assert policy["metadata"]["namespace"] == operator["metadata"]["namespace"] == "slo-guard"
    pod_labels = operator["spec"]["template"]["metadata"]["labels"]
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= pod_labels.items()
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    (rule,) = policy["spec"]["ingress"]
    assert rule["ports"] == [{"protocol": "TCP", "port": GATE_PORT}]
    (source,) = rule["from"]
    assert set(source) == {"namespaceSelector"}, "one namespace, not every pod in the cluster"


def test_doc_snippets_are_lines_of_the_examples() -> None:
    """The YAML quoted in docs/gates.md for Argo Rollouts and Flagger cannot drift from the example files."""
    example_lines = {line.strip() for path in example_files() for line in path.read_text(encoding="utf-8").splitlines()}
    blocks = re.findall(r"```yaml\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.DOTALL)
    quoted = [block for block in blocks if "gate/v1" in block or "slo-guard-gate" in block]
    assert len(quoted) >= 2
    for block in quoted:
        for line in block.splitlines():
            stripped = line.strip()
            if stripped and not stripped.startswith("#") and stripped != "...":
                assert stripped in example_lines, stripped
