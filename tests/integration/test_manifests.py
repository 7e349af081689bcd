"""manifests/ as a cluster would receive it: rendered by `kubectl kustomize`, validated, and held to least privilege.

No API server here: built-in objects are checked against Kubernetes 1.32's schemas (kubernetes-validate, strict),
custom resources for a CRD (with the right scope) in the same install, and RBAC, Pod Security and the NetworkPolicy
field by field.
Example SLOs against the CRD: tests/unit/test_crd_schema.py.
"""

from __future__ import annotations

import functools
import itertools
import os
import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import kubernetes_validate
import pytest
import yaml
from tests.support.kube import kustomize

from slo_guard.adapters.rulesink import PROMETHEUS_RULE_GROUP, PROMETHEUS_RULE_PLURAL
from slo_guard.cli import build_parser
from slo_guard.config import OPERATOR_SETTINGS
from slo_guard.handlers.runtime import parse_labels

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = ROOT / "manifests"
TREES = {
    "base": MANIFESTS,
    "namespaced": MANIFESTS / "overlays" / "namespaced",
    "prometheus-operator": MANIFESTS / "overlays" / "prometheus-operator",
    "admission": MANIFESTS / "overlays" / "admission",
    "sharded": MANIFESTS / "overlays" / "sharded",
}
"""The installs; each but `sharded` expects kopf's peering CRDs from KOPF_PEERING, applied before it and never deleted
with it (`sharded` runs standalone and coordinates through Leases instead)."""
KOPF_PEERING = MANIFESTS / "kopf-peering"
KOPF_GROUP = "kopf.dev"
KUBERNETES_VERSION = "1.32"
OPERATOR = "slo-guard"
SLO_CRD = "servicelevelobjectives.yaml"
FOREIGN_CUSTOM_KINDS = {"ServiceMonitor", "PrometheusRule", "Certificate", "Issuer"}
"""Custom resources whose CRD another project installs (the Prometheus Operator, cert-manager)."""
NAMESPACED_MODE_CLUSTER_KINDS = {"Namespace", "CustomResourceDefinition"}
PROMETHEUS_RULES = "prometheusrule.yaml"

INSTALL_DOC = ROOT / "docs" / "install.md"
DOC_BASE_PATH = "../slo-guard/manifests"
"""Where install.md's example kustomizations expect slo-guard's manifests/."""
DOC_NAMESPACED_PROMETHEUS_OPERATOR = "# kustomization.yaml: the namespaced install with the Prometheus Operator\n"
"""The first line of install.md's namespaced example with components/prometheus-operator."""
DOC_PROMETHEUS_PATCH = "# prometheus.yaml"
"""The first line of install.md's patch for a Prometheus elsewhere, which its own kustomization lists by file name."""
IMAGE_LINE = "    newName: slo-guard\n"
"""The one line of manifests/operator/kustomization.yaml that says which registry the image comes from."""
MANAGED_RULES_ENV = "SLO_GUARD_RULES_PROMETHEUSRULE"
MANAGED_RULES_LABELS_ENV = "SLO_GUARD_RULES_PROMETHEUSRULE_LABELS"

Object = dict[str, Any]
Tree = str | Path
"""A name from TREES, or any directory holding a kustomization."""
Grant = tuple[str, str, str, str | None]
"""(apiGroup, resource, verb, resourceName or None for any)."""


def _setting(name: str) -> Any:
    return next(setting.default for setting in OPERATOR_SETTINGS if setting.name == name)


def _parsed_env(name: str, value: str) -> Any:
    """`value` as the operator reads its env var `name`."""
    return next(setting.parse(value) for setting in OPERATOR_SETTINGS if setting.env == name)


PEERING_NAME: str = _setting("peering_name")
HEALTH_PORT: int = _setting("health_port")
GATE_PORT: int = _setting("gate_port")
UI_PORT: int = _setting("ui_port")
WEBHOOK_PORT: int = _setting("webhook_port")


def _grants(peering_resource: str) -> set[Grant]:
    """Every request slo-guard and kopf make, one grant per line; peering writes only to the named object.

    tests/e2e/test_rbac.py derives the same from the requests the operator really sent.
    """
    return {
        ("sloguard.io", "servicelevelobjectives", "list", None),
        ("sloguard.io", "servicelevelobjectives", "watch", None),
        ("sloguard.io", "servicelevelobjectives", "patch", None),
        ("sloguard.io", "servicelevelobjectives/status", "patch", None),
        ("apps", "deployments", "get", None),
        ("apps", "deployments", "list", None),
        ("apps", "deployments", "patch", None),
        ("apps", "statefulsets", "get", None),
        ("apps", "statefulsets", "list", None),
        ("apps", "statefulsets", "patch", None),
        ("argoproj.io", "rollouts", "get", None),
        ("argoproj.io", "rollouts", "list", None),
        ("argoproj.io", "rollouts", "patch", None),
        ("autoscaling", "horizontalpodautoscalers", "list", None),
        ("", "events", "create", None),
        ("kopf.dev", peering_resource, "list", None),
        ("kopf.dev", peering_resource, "watch", None),
        ("kopf.dev", peering_resource, "patch", PEERING_NAME),
    }


PROMETHEUS_RULE_GRANTS: set[Grant] = {
    (PROMETHEUS_RULE_GROUP, PROMETHEUS_RULE_PLURAL, verb, None) for verb in ("create", "patch", "delete")
}
"""PrometheusRuleSink's requests: a merge patch, a create when that answers 404, a delete; never a read."""


@functools.cache
def render(tree: Tree) -> tuple[Object, ...]:
    return tuple(kustomize(TREES[tree] if isinstance(tree, str) else tree))


def objects(tree: Tree, kind: str) -> list[Object]:
    return [item for item in render(tree) if item["kind"] == kind]


def one(tree: Tree, kind: str) -> Object:
    (item,) = objects(tree, kind)
    return item


def container(tree: Tree) -> Object:
    only: Object
    (only,) = one(tree, "Deployment")["spec"]["template"]["spec"]["containers"]
    return only


def watched_namespaces(tree: Tree) -> list[str]:
    args = container(tree).get("args") or []
    return [value for flag, value in itertools.pairwise(args) if flag in {"--namespace", "-n"}]


def env_values(tree: Tree) -> dict[str, str]:
    return {item["name"]: item["value"] for item in container(tree)["env"] if "value" in item}


# Rendering and schemas


@pytest.mark.parametrize("tree", TREES)
def test_renders_offline_with_no_flags(tree: str) -> None:
    kinds = {item["kind"] for item in render(tree)}
    assert {"Namespace", "CustomResourceDefinition", "ServiceAccount", "Deployment", "Service"} <= kinds


@pytest.mark.parametrize("tree", TREES)
def test_built_in_objects_pass_strict_schema_validation(tree: str) -> None:
    custom_kinds = _custom_kinds(tree)
    for item in render(tree):
        if item["kind"] not in custom_kinds:
            kubernetes_validate.validate(item, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize("tree", TREES)
def test_custom_resources_have_their_crd_in_the_same_install_or_kopf_peering(tree: str) -> None:
    served = {
        (f"{crd['spec']['group']}/{version['name']}", crd["spec"]["names"]["kind"]): crd["spec"]["scope"]
        for crd in objects(tree, "CustomResourceDefinition") + objects(KOPF_PEERING, "CustomResourceDefinition")
        for version in crd["spec"]["versions"]
        if version["served"]
    }
    for item in render(tree):
        if item["kind"] in _custom_kinds(tree) - FOREIGN_CUSTOM_KINDS:
            scope = served[(item["apiVersion"], item["kind"])]
            assert ("namespace" in item["metadata"]) == (scope == "Namespaced"), item["metadata"]


def _custom_kinds(tree: Tree) -> set[str]:
    crds = objects(tree, "CustomResourceDefinition") + objects(KOPF_PEERING, "CustomResourceDefinition")
    return {crd["spec"]["names"]["kind"] for crd in crds} | FOREIGN_CUSTOM_KINDS


def test_shipped_crd_is_a_byte_for_byte_copy_of_the_source() -> None:
    source = (ROOT / "crds" / SLO_CRD).read_bytes()
    copy = (MANIFESTS / "crds" / SLO_CRD).read_bytes()
    assert copy == source, f"manifests/crds/{SLO_CRD} is stale: cp crds/{SLO_CRD} manifests/crds/{SLO_CRD}"


@pytest.mark.parametrize(("plural", "scope"), [("clusterkopfpeerings", "Cluster"), ("kopfpeerings", "Namespaced")])
def test_peering_crds_are_the_ones_kopf_watches(plural: str, scope: str) -> None:
    crds = {crd["metadata"]["name"]: crd for crd in objects(KOPF_PEERING, "CustomResourceDefinition")}
    crd = crds[f"{plural}.kopf.dev"]
    assert (crd["spec"]["group"], crd["spec"]["names"]["plural"], crd["spec"]["scope"]) == ("kopf.dev", plural, scope)
    (version,) = crd["spec"]["versions"]
    assert version["name"] == "v1"
    # With a status subresource kopf would patch /status, which the RBAC rules do not grant.
    assert "status" not in version.get("subresources", {})


def test_kopf_peering_holds_kopfs_crds_and_nothing_of_slo_guards() -> None:
    """Shared with every kopf operator: nothing in it may carry slo-guard's labels or go with its uninstall."""
    for item in render(KOPF_PEERING):
        assert item["kind"] == "CustomResourceDefinition"
        assert item["spec"]["group"] == KOPF_GROUP
        assert "app.kubernetes.io/part-of" not in item["metadata"].get("labels", {})
    assert len(render(KOPF_PEERING)) == 2


@pytest.mark.parametrize("tree", TREES)
def test_deleting_an_install_leaves_the_shared_peering_crds(tree: str) -> None:
    """`kubectl delete -k` removes what the tree renders: kopf's CRDs must not be in it, or every other kopf
    operator's peering objects would go with them."""
    groups = {crd["spec"]["group"] for crd in objects(tree, "CustomResourceDefinition")}
    assert KOPF_GROUP not in groups
    assert groups == {"sloguard.io"}


# RBAC


def _rules(tree: str) -> Iterator[tuple[str, Object]]:
    for role in objects(tree, "ClusterRole") + objects(tree, "Role"):
        for rule in role["rules"]:
            yield role["metadata"]["name"], rule


def _granted(role: Object) -> set[Grant]:
    return {
        (group, resource, verb, name)
        for rule in role["rules"]
        for group in rule.get("apiGroups", [])
        for resource in rule.get("resources", [])
        for verb in rule["verbs"]
        for name in rule.get("resourceNames") or [None]
    }


@pytest.mark.parametrize("tree", TREES)
def test_no_wildcards_no_secrets_no_raw_urls(tree: str) -> None:
    for role, rule in _rules(tree):
        for key in ("apiGroups", "resources", "verbs", "resourceNames"):
            assert "*" not in rule.get(key, []), f"{role}: wildcard in {key}"
        assert "secrets" not in rule.get("resources", []), f"{role} grants secrets"
        assert "nonResourceURLs" not in rule, f"{role} grants raw URLs"


def test_cluster_role_grants_exactly_what_the_operator_uses() -> None:
    assert _granted(one("base", "ClusterRole")) == _grants("clusterkopfpeerings")


def test_namespaced_roles_grant_exactly_what_the_operator_uses() -> None:
    roles = objects("namespaced", "Role")
    assert roles
    for role in roles:
        assert _granted(role) == _grants("kopfpeerings"), role["metadata"]["namespace"]


@pytest.mark.parametrize(
    ("tree", "binding_kind", "role_kind"),
    [
        ("base", "ClusterRoleBinding", "ClusterRole"),
        ("namespaced", "RoleBinding", "Role"),
        ("prometheus-operator", "ClusterRoleBinding", "ClusterRole"),
    ],
)
def test_bindings_give_the_roles_to_the_operators_service_account(tree: str, binding_kind: str, role_kind: str) -> None:
    account = _operator_account(tree)
    roles = {(role["metadata"]["name"], role["metadata"].get("namespace")) for role in objects(tree, role_kind)}
    bindings = objects(tree, binding_kind)
    assert len(bindings) == len(roles)
    for binding in bindings:
        assert binding["subjects"] == [account]
        assert binding["roleRef"]["kind"] == role_kind
        assert (binding["roleRef"]["name"], binding["metadata"].get("namespace")) in roles


def _operator_account(tree: Tree) -> Object:
    deployment = one(tree, "Deployment")
    return {
        "kind": "ServiceAccount",
        "name": deployment["spec"]["template"]["spec"]["serviceAccountName"],
        "namespace": deployment["metadata"]["namespace"],
    }


def _operator_grants(tree: Tree, *, namespace: str | None = None) -> set[Grant]:
    """What the operator's account may do through the bindings: cluster-wide, or also those in `namespace`."""
    roles = {
        (role["kind"], role["metadata"]["name"], role["metadata"].get("namespace")): role
        for role in objects(tree, "ClusterRole") + objects(tree, "Role")
    }
    bindings = objects(tree, "ClusterRoleBinding") + [
        binding for binding in objects(tree, "RoleBinding") if binding["metadata"]["namespace"] == namespace
    ]
    granted: set[Grant] = set()
    for binding in bindings:
        if _operator_account(tree) in binding["subjects"]:
            ref = binding["roleRef"]
            role_namespace = binding["metadata"]["namespace"] if ref["kind"] == "Role" else None
            granted |= _granted(roles[(ref["kind"], ref["name"], role_namespace)])
    return granted


def test_namespaced_mode_grants_nothing_cluster_wide() -> None:
    cluster_scoped = {item["kind"] for item in render("namespaced") if "namespace" not in item["metadata"]}
    assert cluster_scoped == NAMESPACED_MODE_CLUSTER_KINDS


def test_namespaced_mode_has_a_role_and_a_peering_in_every_watched_namespace() -> None:
    namespaces = watched_namespaces("namespaced")
    assert namespaces == ["shop"]
    for kind in ("Role", "RoleBinding", "KopfPeering"):
        assert sorted(item["metadata"]["namespace"] for item in objects("namespaced", kind)) == namespaces, kind
    assert {item["metadata"]["name"] for item in objects("namespaced", "KopfPeering")} == {PEERING_NAME}


def test_cluster_mode_watches_everything_and_peers_cluster_wide() -> None:
    assert watched_namespaces("base") == []
    assert one("base", "ClusterKopfPeering")["metadata"]["name"] == PEERING_NAME
    assert objects("base", "KopfPeering") == []


# The operator's pod


@pytest.mark.parametrize("tree", TREES)
def test_pod_meets_the_restricted_pod_security_standard(tree: str) -> None:
    pod = one(tree, "Deployment")["spec"]["template"]["spec"]
    context = pod.get("securityContext", {}) | container(tree).get("securityContext", {})
    assert context["runAsNonRoot"] is True
    assert context["runAsUser"] == 65532
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert context["seccompProfile"] == {"type": "RuntimeDefault"}
    assert context.get("privileged", False) is False
    assert not {"hostNetwork", "hostPID", "hostIPC"} & {key for key, value in pod.items() if value}
    assert all("hostPort" not in port for port in container(tree).get("ports", []))
    assert all("hostPath" not in volume for volume in pod.get("volumes", []))


@pytest.mark.parametrize("tree", TREES)
def test_root_filesystem_is_read_only_with_a_writable_tmp(tree: str) -> None:
    assert container(tree)["securityContext"]["readOnlyRootFilesystem"] is True
    volumes = {volume["name"]: volume for volume in one(tree, "Deployment")["spec"]["template"]["spec"]["volumes"]}
    (tmp,) = [mount for mount in container(tree)["volumeMounts"] if mount["mountPath"] == "/tmp"]
    assert "emptyDir" in volumes[tmp["name"]]


def test_runs_as_the_images_user() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text(encoding="utf-8").splitlines()
    user = next(line.split()[1] for line in dockerfile if line.startswith("USER "))
    assert user.split(":")[0] == str(container("base")["securityContext"]["runAsUser"])


@pytest.mark.parametrize("tree", TREES)
def test_probes_hit_healthz_and_readyz_on_the_health_port(tree: str) -> None:
    main = container(tree)
    ports = {port["name"]: port["containerPort"] for port in main["ports"]}
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        get = main[probe]["httpGet"]
        assert get["path"] == path
        assert ports.get(get["port"], get["port"]) == HEALTH_PORT


def test_one_replica_replaced_with_recreate_and_a_stable_peer_identity() -> None:
    """kopf pauses every peer of equal priority: a second replica would halt enforcement (docs/install.md)."""
    spec = one("base", "Deployment")["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "Recreate"}
    env = {item["name"]: item for item in container("base")["env"]}
    assert env["POD_ID"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}


def test_pod_uses_its_token_has_resource_bounds_and_runs_this_release() -> None:
    pod = one("base", "Deployment")["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is True
    resources = container("base")["resources"]
    assert {"cpu", "memory"} <= resources["requests"].keys()
    assert {"cpu", "memory"} <= resources["limits"].keys()
    version = _project_version()
    assert container("base")["image"].endswith(f":{version}"), "the image tag should be the released version"


def _project_version() -> str:
    return str(tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["version"])


def test_one_line_moves_every_install_to_another_registry(tmp_path: Path) -> None:
    """docs/install.md: after pushing the image, change newName in manifests/operator/kustomization.yaml."""
    copy = shutil.copytree(MANIFESTS, tmp_path / "manifests")
    kustomization = copy / "operator" / "kustomization.yaml"
    text = kustomization.read_text(encoding="utf-8")
    assert text.count(IMAGE_LINE) == 1
    kustomization.write_text(text.replace(IMAGE_LINE, "    newName: registry.example/team/slo-guard\n"), "utf-8")
    for tree in TREES.values():
        rendered = copy / tree.relative_to(MANIFESTS)
        assert container(rendered)["image"] == f"registry.example/team/slo-guard:{_project_version()}", tree


@pytest.mark.parametrize("tree", TREES)
def test_an_images_entry_in_your_own_kustomization_sets_the_image(tree: str, tmp_path: Path) -> None:
    own = {
        "resources": [os.path.relpath(TREES[tree], tmp_path)],
        "images": [{"name": "slo-guard", "newName": "registry.example/slo-guard", "newTag": "1.2.3"}],
    }
    (tmp_path / "kustomization.yaml").write_text(yaml.safe_dump(own), encoding="utf-8")
    assert container(tmp_path)["image"] == "registry.example/slo-guard:1.2.3"


# Network


def _peers_and_ports(rules: list[Object], peer_key: str) -> set[tuple[str, str, int]]:
    allowed = set()
    for rule in rules:
        for peer in rule.get(peer_key) or [None]:
            for port in rule["ports"]:
                allowed.add((_peer(peer), port.get("protocol", "TCP"), port["port"]))
    return allowed


def _peer(peer: Object | None) -> str:
    if peer is None:
        return "anywhere"
    if peer.keys() == {"namespaceSelector"} and peer["namespaceSelector"].keys() == {"matchLabels"}:
        return f"namespace {peer['namespaceSelector']['matchLabels']['kubernetes.io/metadata.name']}"
    return repr(peer)


def _prometheus(tree: Tree = "base") -> tuple[str, str, int]:
    env = {item["name"]: item.get("value") for item in container(tree)["env"]}
    url = urlsplit(env["SLO_GUARD_PROMETHEUS_URL"])
    assert url.hostname is not None
    namespace = url.hostname.split(".")[1]
    return f"namespace {namespace}", "TCP", url.port or (443 if url.scheme == "https" else 80)


def _allowed(tree: Tree, direction: str) -> set[tuple[str, str, int]]:
    """What the operator's NetworkPolicies let through in `direction` (ingress or egress): they add up."""
    peer_key = "from" if direction == "ingress" else "to"
    return {
        allowed
        for policy in objects(tree, "NetworkPolicy")
        for allowed in _peers_and_ports(policy["spec"].get(direction, []), peer_key)
    }


API_SERVER_AND_DNS = {
    ("anywhere", "TCP", 443),
    ("anywhere", "TCP", 6443),
    ("namespace kube-system", "UDP", 53),
    ("namespace kube-system", "TCP", 53),
}


def test_network_policies_select_the_operator_and_limit_both_directions() -> None:
    pod_labels = one("base", "Deployment")["spec"]["template"]["metadata"]["labels"]
    policies = objects("base", "NetworkPolicy")
    for policy in policies:
        assert policy["spec"]["podSelector"]["matchLabels"].items() <= pod_labels.items()
    assert {kind for policy in policies for kind in policy["spec"]["policyTypes"]} == {"Egress", "Ingress"}


def test_network_policy_lets_in_only_the_metrics_probe_gate_and_ui_ports() -> None:
    assert _allowed("base", "ingress") == {
        ("anywhere", "TCP", HEALTH_PORT),
        ("anywhere", "TCP", GATE_PORT),
        ("anywhere", "TCP", UI_PORT),
    }


@pytest.mark.parametrize(("name", "port"), [("http-gate", GATE_PORT), ("http-ui", UI_PORT)])
def test_gate_and_ui_ports_are_served_named_and_reached_by_the_service(name: str, port: int) -> None:
    ports = {item["name"]: item["containerPort"] for item in container("base")["ports"]}
    assert ports[name] == port
    served = next(item for item in one("base", "Service")["spec"]["ports"] if item["name"] == name)
    assert (served["port"], served["targetPort"]) == (port, name)


def test_the_ui_ingress_example_is_a_valid_ingress_to_the_ui_port() -> None:
    text = (MANIFESTS / "operator" / "ui-ingress.yaml").read_text(encoding="utf-8")
    commented = [line.removeprefix("# ") for line in text.splitlines() if line.startswith("# ")]
    ingress = yaml.safe_load("\n".join(commented[commented.index("apiVersion: networking.k8s.io/v1") :]))
    kubernetes_validate.validate(ingress, KUBERNETES_VERSION, strict=True)
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": one("base", "Service")["metadata"]["name"], "port": {"name": "http-ui"}}


@pytest.mark.parametrize("tree", TREES)
def test_network_policy_lets_out_only_the_api_server_prometheus_and_dns(tree: str) -> None:
    assert _allowed(tree, "egress") == API_SERVER_AND_DNS | {_prometheus(tree)}
    assert _prometheus(tree) == ("namespace monitoring", "TCP", 9090)


def test_metrics_service_reaches_the_pod_port() -> None:
    service = one("base", "Service")["spec"]
    pod_labels = one("base", "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert service["selector"].items() <= pod_labels.items()
    port = service["ports"][0]
    assert port["name"] == "http-metrics"
    assert port["targetPort"] in {item["name"] for item in container("base")["ports"]}


# Prometheus Operator overlay


def _ids(tree: Tree) -> set[tuple[str, str, str | None]]:
    return {(item["kind"], item["metadata"]["name"], item["metadata"].get("namespace")) for item in render(tree)}


def test_prometheus_operator_overlay_is_the_base_plus_monitoring_and_rules() -> None:
    added = _ids("prometheus-operator") - _ids("base")
    assert {kind for kind, _, _ in added} == {"ServiceMonitor", "PrometheusRule", "ClusterRole", "ClusterRoleBinding"}
    assert ("ServiceMonitor", OPERATOR, OPERATOR) in added
    assert _ids("base") <= _ids("prometheus-operator")


def test_shipped_prometheus_rules_are_what_the_cli_generates_from_the_examples() -> None:
    """Stale rules would alert on SLOs that no longer read this way."""
    examples = sorted(str(path.relative_to(ROOT)) for path in (ROOT / "examples").glob("*.yaml"))
    result = subprocess.run(
        [sys.executable, "-m", "slo_guard", "rules", "--format", "prometheusrule", *examples],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    shipped = (TREES["prometheus-operator"] / PROMETHEUS_RULES).read_text(encoding="utf-8")
    generated_part = "".join(line for line in shipped.splitlines(keepends=True) if not line.startswith("#"))
    assert generated_part == result.stdout, f"regenerate {PROMETHEUS_RULES}: see the command at its top"


def test_prometheus_operator_overlay_manages_recording_rules_as_prometheusrules() -> None:
    assert _parsed_env(MANAGED_RULES_ENV, env_values("prometheus-operator")[MANAGED_RULES_ENV]) is True


def test_managed_prometheusrules_carry_the_labels_that_select_the_shipped_rules() -> None:
    """A Prometheus whose ruleSelector loads slo-guard-rules (docs/rules.md) loads the managed rules as well."""
    labels = parse_labels(env_values("prometheus-operator")[MANAGED_RULES_LABELS_ENV])
    shipped = one("prometheus-operator", "PrometheusRule")["metadata"]["labels"]
    assert labels.items() <= shipped.items()
    assert labels["role"] == "slo-guard-rules"


def test_prometheus_operator_overlay_grants_exactly_the_prometheusrule_writes_on_top_of_the_base() -> None:
    assert _operator_grants("prometheus-operator") == _grants("clusterkopfpeerings") | PROMETHEUS_RULE_GRANTS


@pytest.mark.parametrize("tree", ["base", "namespaced"])
def test_installs_without_the_component_neither_manage_nor_may_write_prometheusrules(tree: str) -> None:
    assert MANAGED_RULES_ENV not in env_values(tree)
    for role, rule in _rules(tree):
        assert PROMETHEUS_RULE_PLURAL not in rule.get("resources", []), role


def test_service_monitor_scrapes_the_metrics_service() -> None:
    monitor = one("prometheus-operator", "ServiceMonitor")
    service = one("prometheus-operator", "Service")
    assert monitor["metadata"]["namespace"] == service["metadata"]["namespace"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] in {port["name"] for port in service["spec"]["ports"]}
    assert endpoint["path"] == "/metrics"


# The example in docs/install.md


def _documented(first_line: str) -> str:
    """The install.md example starting with `first_line`."""
    pattern = "```yaml\n(" + re.escape(first_line) + ".*?)```"
    blocks = re.findall(pattern, INSTALL_DOC.read_text(encoding="utf-8"), re.S)
    assert len(blocks) == 1, f"install.md should hold one example starting {first_line!r}"
    return str(blocks[0])


def _write_documented(first_line: str, directory: Path) -> Path:
    """The install.md kustomization starting with `first_line`, beside a path to this checkout's manifests/, and
    install.md's prometheus.yaml patch, which such a kustomization may list."""
    text = _documented(first_line)
    assert DOC_BASE_PATH in text
    (directory / "kustomization.yaml").write_text(
        text.replace(DOC_BASE_PATH, os.path.relpath(MANIFESTS, directory)), encoding="utf-8"
    )
    (directory / "prometheus.yaml").write_text(_documented(DOC_PROMETHEUS_PATCH), encoding="utf-8")
    return directory


@pytest.fixture(scope="module")
def documented_kustomization(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """install.md's "your own kustomization"."""
    return _write_documented("# kustomization.yaml\n", tmp_path_factory.mktemp("documented"))


@pytest.fixture(scope="module")
def documented_prometheus_patch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """manifests/ with nothing but install.md's prometheus.yaml on top."""
    directory = tmp_path_factory.mktemp("prometheus-elsewhere")
    own = {"resources": [os.path.relpath(MANIFESTS, directory)], "patches": [{"path": "prometheus.yaml"}]}
    (directory / "kustomization.yaml").write_text(yaml.safe_dump(own), encoding="utf-8")
    (directory / "prometheus.yaml").write_text(_documented(DOC_PROMETHEUS_PATCH), encoding="utf-8")
    return directory


def test_the_documented_prometheus_patch_moves_the_url_and_the_egress_together(
    documented_prometheus_patch: Path,
) -> None:
    """One file says where Prometheus is: after it, the operator may reach the new address and only that."""
    moved = _prometheus(documented_prometheus_patch)
    namespace, _, port = moved
    assert namespace != "namespace monitoring"
    assert port != 9090, "the example should move the port as well"
    assert _allowed(documented_prometheus_patch, "egress") == API_SERVER_AND_DNS | {moved}


def test_shipped_prometheus_patch_is_the_only_place_naming_prometheus() -> None:
    """deployment.yaml and networkpolicy.yaml leave Prometheus to operator/prometheus.yaml."""
    for name in ("deployment.yaml", "networkpolicy.yaml"):
        text = (MANIFESTS / "operator" / name).read_text(encoding="utf-8")
        assert "9090" not in text, name
        assert "monitoring" not in text, name


@pytest.fixture(scope="module")
def documented_namespaced_prometheus_operator(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """install.md's namespaced install with components/prometheus-operator."""
    return _write_documented(DOC_NAMESPACED_PROMETHEUS_OPERATOR, tmp_path_factory.mktemp("namespaced-po"))


@pytest.mark.parametrize("example", ["documented_kustomization", "documented_namespaced_prometheus_operator"])
def test_documented_kustomizations_render_valid_objects(example: str, request: pytest.FixtureRequest) -> None:
    tree: Path = request.getfixturevalue(example)
    custom_kinds = _custom_kinds(tree)
    for item in render(tree):
        if item["kind"] not in custom_kinds:
            kubernetes_validate.validate(item, KUBERNETES_VERSION, strict=True)


def test_documented_namespaced_prometheus_operator_install_writes_rules_in_watched_namespaces_only(
    documented_namespaced_prometheus_operator: Path,
) -> None:
    tree = documented_namespaced_prometheus_operator
    assert _parsed_env(MANAGED_RULES_ENV, env_values(tree)[MANAGED_RULES_ENV]) is True
    # The ClusterRole grants nothing by itself: only the RoleBindings in watched namespaces use it.
    cluster_scoped = {item["kind"] for item in render(tree) if "namespace" not in item["metadata"]}
    assert cluster_scoped == NAMESPACED_MODE_CLUSTER_KINDS | {"ClusterRole"}
    assert _operator_grants(tree) == set()
    for namespace in watched_namespaces(tree):
        assert _operator_grants(tree, namespace=namespace) == _grants("kopfpeerings") | PROMETHEUS_RULE_GRANTS
    assert _operator_grants(tree, namespace=_operator_account(tree)["namespace"]) == set()


def test_documented_kustomization_wires_token_and_ca_files_from_the_secret(documented_kustomization: Path) -> None:
    main = container(documented_kustomization)
    env = {item["name"]: item["value"] for item in main["env"] if "value" in item}
    mounts = {mount["name"]: mount["mountPath"] for mount in main["volumeMounts"]}
    pod = one(documented_kustomization, "Deployment")["spec"]["template"]["spec"]
    (volume,) = [volume for volume in pod["volumes"] if "secret" in volume]
    for variable in ("SLO_GUARD_PROMETHEUS_TOKEN_FILE", "SLO_GUARD_PROMETHEUS_CA_FILE"):
        assert Path(env[variable]).parent == Path(mounts[volume["name"]]), variable
    assert env["SLO_GUARD_PROMETHEUS_URL"].startswith("https://")
    assert main["image"] == f"registry.example/slo-guard:{_project_version()}"


def test_documented_kustomization_lets_the_new_prometheus_port_through(documented_kustomization: Path) -> None:
    assert _allowed(documented_kustomization, "egress") == API_SERVER_AND_DNS | {_prometheus(documented_kustomization)}
    assert _prometheus(documented_kustomization) != _prometheus("base")


# Admission webhook overlay


def test_admission_overlay_is_the_base_plus_the_webhook_and_its_certificate() -> None:
    added = _ids("admission") - _ids("base")
    assert added == {
        ("ValidatingWebhookConfiguration", "slo-guard", None),
        ("Service", "slo-guard-webhook", "slo-guard"),
        ("NetworkPolicy", "slo-guard-webhook", "slo-guard"),
        ("Certificate", "slo-guard-webhook", "slo-guard"),
        ("Issuer", "slo-guard-selfsigned", "slo-guard"),
    }


def test_webhook_never_blocks_the_cluster_and_sees_only_rollouts() -> None:
    (webhook,) = one("admission", "ValidatingWebhookConfiguration")["webhooks"]
    assert (webhook["failurePolicy"], webhook["sideEffects"], webhook["admissionReviewVersions"]) == (
        "Ignore",
        "None",
        ["v1"],
    )
    assert webhook["timeoutSeconds"] <= 5
    assert {
        (group, version, resource, operation)
        for rule in webhook["rules"]
        for group in rule["apiGroups"]
        for version in rule["apiVersions"]
        for resource in rule["resources"]
        for operation in rule["operations"]
    } == {
        ("apps", "v1", "deployments", "UPDATE"),
        ("apps", "v1", "statefulsets", "UPDATE"),
        ("argoproj.io", "v1alpha1", "rollouts", "UPDATE"),
    }
    assert [condition["name"] for condition in webhook["matchConditions"]] == ["pod-template-changed"]
    assert "kube-system" in webhook["namespaceSelector"]["matchExpressions"][0]["values"]


def test_webhook_service_reaches_the_tls_port_the_operator_serves_from_the_certificate_secret() -> None:
    (webhook,) = one("admission", "ValidatingWebhookConfiguration")["webhooks"]
    service_ref = webhook["clientConfig"]["service"]
    service = next(item for item in objects("admission", "Service") if item["metadata"]["name"] == service_ref["name"])
    assert (service_ref["namespace"], service_ref["path"]) == (service["metadata"]["namespace"], "/validate")
    (port,) = service["spec"]["ports"]
    assert port["port"] == service_ref["port"]
    ports = {item["name"]: item["containerPort"] for item in container("admission")["ports"]}
    assert ports[port["targetPort"]] == WEBHOOK_PORT
    assert ("anywhere", "TCP", WEBHOOK_PORT) in _allowed("admission", "ingress")
    certificate = one("admission", "Certificate")
    assert f"{service['metadata']['name']}.{service['metadata']['namespace']}.svc" in certificate["spec"]["dnsNames"]
    pod = one("admission", "Deployment")["spec"]["template"]["spec"]
    (volume,) = [
        item for item in pod["volumes"] if item.get("secret", {}).get("secretName") == certificate["spec"]["secretName"]
    ]
    (mount,) = [item for item in container("admission")["volumeMounts"] if item["name"] == volume["name"]]
    env = env_values("admission")
    assert (env["SLO_GUARD_WEBHOOK_CERT_FILE"], env["SLO_GUARD_WEBHOOK_KEY_FILE"]) == (
        f"{mount['mountPath']}/tls.crt",
        f"{mount['mountPath']}/tls.key",
    )
    injected = one("admission", "ValidatingWebhookConfiguration")["metadata"]["annotations"]
    assert injected["cert-manager.io/inject-ca-from"] == (
        f"{certificate['metadata']['namespace']}/{certificate['metadata']['name']}"
    )


def test_installs_without_the_overlay_serve_no_webhook() -> None:
    for tree in ("base", "namespaced", "prometheus-operator"):
        assert objects(tree, "ValidatingWebhookConfiguration") == []
        assert "SLO_GUARD_WEBHOOK_CERT_FILE" not in env_values(tree)


# Sharded overlay

LEASE_GRANTS: set[Grant] = {
    ("coordination.k8s.io", "leases", verb, None) for verb in ("get", "list", "watch", "create", "update", "delete")
}
"""The shard coordinator's requests on its Leases: read and watch them, create, renew/claim/release by conditional
update (a PUT, which also creates a missing Lease, so it needs create too), delete its member Lease."""


def _run_args(tree: Tree) -> Any:
    """The container's args as `slo-guard run` parses them (an unknown flag fails here)."""
    return build_parser().parse_args(["run", *(container(tree).get("args") or [])])


def test_sharded_runs_one_replica_per_shard_one_at_a_time() -> None:
    spec = one("sharded", "Deployment")["spec"]
    assert spec["replicas"] == _run_args("sharded").shards == 3
    # The base's Recreate would stop every replica at once and leave every shard unowned during a rollout.
    assert spec["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}}


def test_sharded_replicas_take_their_identity_and_namespace_from_the_downward_api() -> None:
    env = {item["name"]: item for item in container("sharded")["env"]}
    assert env["POD_ID"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert env["POD_NAMESPACE"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    args = _run_args("sharded")
    assert (args.identity, args.shard_lease_namespace) == (None, None), "the flags would override the pod's values"


def test_sharded_lease_rbac_is_granted_in_the_operators_namespace_only() -> None:
    namespace = one("sharded", "Deployment")["metadata"]["namespace"]
    cluster_wide = _operator_grants("sharded")
    in_own_namespace = _operator_grants("sharded", namespace=namespace)
    assert in_own_namespace - cluster_wide == LEASE_GRANTS
    assert not any(group == "coordination.k8s.io" for group, _, _, _ in cluster_wide)
    for role in objects("sharded", "Role"):
        assert role["metadata"]["namespace"] == namespace
        assert _granted(role) == LEASE_GRANTS
    for binding in objects("sharded", "RoleBinding"):
        assert binding["subjects"] == [_operator_account("sharded")]


def test_sharded_cluster_role_is_the_base_one_without_peering() -> None:
    peering = {grant for grant in _grants("clusterkopfpeerings") if grant[0] == KOPF_GROUP}
    assert _granted(one("sharded", "ClusterRole")) == _grants("clusterkopfpeerings") - peering
    (binding,) = objects("sharded", "ClusterRoleBinding")
    assert binding["subjects"] == [_operator_account("sharded")]


def test_sharded_install_needs_no_kopf_peering() -> None:
    assert _run_args("sharded").standalone is True
    assert not [item for item in render("sharded") if item["apiVersion"].startswith(f"{KOPF_GROUP}/")]
    assert KOPF_GROUP not in yaml.safe_dump_all(render("sharded"))
    added = _ids("sharded") - _ids("base")
    removed = _ids("base") - _ids("sharded")
    assert removed == {("ClusterKopfPeering", PEERING_NAME, None)}
    assert {kind for kind, _, _ in added} == {"Role", "RoleBinding", "PodDisruptionBudget"}


def test_sharded_disruption_budget_lets_one_operator_pod_go_at_a_time() -> None:
    budget = one("sharded", "PodDisruptionBudget")
    pod_labels = one("sharded", "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert budget["metadata"]["namespace"] == one("sharded", "Deployment")["metadata"]["namespace"]
    assert budget["spec"]["maxUnavailable"] == 1
    assert budget["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()


def test_installs_without_the_overlay_keep_one_replica_and_no_lease_grants() -> None:
    for tree in ("base", "namespaced", "prometheus-operator", "admission"):
        assert _run_args(tree).shards == 1
        assert not any(group == "coordination.k8s.io" for group, _, _, _ in _operator_grants(tree))
