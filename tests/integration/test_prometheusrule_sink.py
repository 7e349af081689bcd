"""Managed recording rules as PrometheusRule objects (prometheus-operator), against the emulated API server."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.support.emulator import KubeEmulator, running_emulator
from tests.support.kube import write_kubeconfig

from slo_guard.adapters.kubernetes_api import KubernetesApi, KubernetesSettings, load_api_client
from slo_guard.adapters.rulesink import PrometheusRuleSink, RuleSinkError
from slo_guard.telemetry import OperatorMetrics

PROMETHEUS_RULE_CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "prometheusrules.monitoring.coreos.com"},
    "spec": {
        "group": "monitoring.coreos.com",
        "names": {"kind": "PrometheusRule", "plural": "prometheusrules", "singular": "prometheusrule"},
        "scope": "Namespaced",
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {"spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}},
                    }
                },
            }
        ],
    },
}
FAST = KubernetesSettings(timeout=5.0, retries=1, backoff_base=0.01, backoff_max=0.02)
LABELS = {"role": "slo-guard-rules"}


def groups(name: str, expr: str = "vector(1)") -> str:
    """One SLO's rule groups, as ManagedRules hands them to a sink: a JSON array."""
    return json.dumps(
        [{"name": f"sloguard-operator-{name}-30s", "interval": "30s", "rules": [{"record": "a:b", "expr": expr}]}]
    )


@pytest.fixture(scope="module")
def emulator() -> Iterator[KubeEmulator]:
    with running_emulator() as served:
        served.load_crd(PROMETHEUS_RULE_CRD)
        for namespace in ("shop", "search"):
            served.create_object({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
        yield served


@pytest.fixture
def sink(emulator: KubeEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[PrometheusRuleSink]:
    monkeypatch.setenv("KUBECONFIG", str(write_kubeconfig(tmp_path / "kubeconfig", str(emulator.url))))
    api = KubernetesApi(load_api_client(FAST), FAST, metrics=OperatorMetrics())
    yield PrometheusRuleSink(api, labels=LABELS)
    api.close()


def stored(emulator: KubeEmulator, namespace: str, name: str) -> dict[str, Any] | None:
    return emulator.read_object("prometheusrules", namespace, f"sloguard-{name}")


async def test_each_slo_gets_its_own_prometheusrule_written_only_when_its_rules_change(
    emulator: KubeEmulator, sink: PrometheusRuleSink
) -> None:
    emulator.clear_requests()
    await sink.write({"shop/checkout": groups("checkout"), "search/api": groups("api")})
    checkout = stored(emulator, "shop", "checkout")
    assert checkout is not None
    assert checkout["spec"]["groups"] == json.loads(groups("checkout"))
    assert checkout["metadata"]["labels"] == {**LABELS, "app.kubernetes.io/managed-by": "slo-guard"}
    assert stored(emulator, "search", "api") is not None

    writes = len(emulator.writes_to("prometheusrules"))
    await sink.write({"shop/checkout": groups("checkout"), "search/api": groups("api", expr="vector(2)")})
    assert len(emulator.writes_to("prometheusrules")) == writes + 1, "only the changed SLO's object is written"
    api_rules = stored(emulator, "search", "api")
    assert api_rules is not None
    assert api_rules["spec"]["groups"] == json.loads(groups("api", expr="vector(2)"))


async def test_an_slo_whose_rules_are_gone_loses_its_prometheusrule(
    emulator: KubeEmulator, sink: PrometheusRuleSink
) -> None:
    await sink.write({"shop/cart": groups("cart"), "shop/pay": groups("pay")})
    await sink.write({"shop/pay": groups("pay")})
    assert stored(emulator, "shop", "cart") is None
    assert stored(emulator, "shop", "pay") is not None


async def test_a_failed_write_raises_and_is_written_again_next_time(
    emulator: KubeEmulator, sink: PrometheusRuleSink
) -> None:
    emulator.fail_next(status=500, resource="prometheusrules", count=2)
    with pytest.raises(RuleSinkError, match="shop/orders"):
        await sink.write({"shop/orders": groups("orders")})
    await sink.write({"shop/orders": groups("orders")})
    assert stored(emulator, "shop", "orders") is not None


async def test_the_sink_only_creates_patches_and_deletes_as_the_prometheus_operator_rbac_allows(
    emulator: KubeEmulator, sink: PrometheusRuleSink
) -> None:
    emulator.clear_requests()
    await sink.write({"search/ranker": groups("ranker")})
    await sink.write({"search/ranker": groups("ranker", expr="vector(3)")})
    await sink.write({})
    verbs = {record.verb for record in emulator.requests(resource="prometheusrules")}
    assert verbs == {"create", "patch", "delete"}
