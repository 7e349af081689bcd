"""Deny at admission, end to end: the shipped webhook configuration registered in the emulated API server, which
calls the operator's TLS webhook on every UPDATE, and `kubectl apply` as a person or a GitOps tool runs it.

A Deny SLO on a failing service holds its Deployment: a new image is refused with the reason, scaling passes, an
override in the same apply lets a hotfix through, and recovery lets rollouts through again. DryRun and Unknown SLOs
let changes through with warnings, which kubectl prints.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.e2e.conftest import REPO, OperatorProcess, PrivateCluster, PrivateClusters, World, wait_for
from tests.e2e.scenario import (
    ACT_TIMEOUT,
    SLO_KIND,
    Sources,
    matching_samples,
    metric_families,
    one_target,
    own_sources,
    slo,
    slo_status,
    switch_source,
)
from tests.support.certs import serving_certificate
from tests.support.exporter import SyntheticService, Traffic
from tests.support.kube import deployment_manifest
from tests.support.prometheus import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.prometheus]

NAMESPACE = "shop"
SHIPPED_WEBHOOK = REPO / "manifests" / "components" / "admission-webhook" / "validatingwebhookconfiguration.yaml"
DENY = {"mode": "Enforce", "action": "Deny", "resumeAbove": 0.05}
OVERRIDE = "sloguard.io/override-until"


@dataclass
class Admission:
    cluster: PrivateCluster
    operator: OperatorProcess
    sources: Sources
    idle: SyntheticService
    """Scraped but sending nothing: SLOs on it are Unknown (NoTraffic)."""
    workdir: Path

    def kubectl(self, *args: str) -> subprocess.CompletedProcess[str]:
        command = ["kubectl", "--kubeconfig", str(self.cluster.kubeconfig), *args]
        return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)

    def apply(self, name: str, image: str, **annotations: str) -> subprocess.CompletedProcess[str]:
        """`kubectl apply` of the Deployment `name` with `image`, as a GitOps tool syncs a new commit."""
        body = deployment_manifest(name, namespace=NAMESPACE, replicas=2, annotations=annotations or None)
        body["spec"]["template"]["spec"]["containers"][0]["image"] = image
        path = self.workdir / f"{name}.yaml"
        path.write_text(yaml.safe_dump(body), encoding="utf-8")
        # The emulator serves no OpenAPI document for kubectl's client-side validation (docs/emulator.md).
        return self.kubectl("apply", "--validate=false", "-f", str(path))

    def image(self, name: str) -> str:
        body = self.cluster.kube.get_object("apps/v1", "Deployment", name, namespace=NAMESPACE)
        return str(body["spec"]["template"]["spec"]["containers"][0]["image"])

    def wait_target(self, name: str, state: str) -> None:
        wait_for(
            lambda: (slo_status(self.cluster, NAMESPACE, name).get("targets") or [{}])[0].get("state") == state,
            timeout=ACT_TIMEOUT,
            what=f"{name}'s target {state}",
        )

    def decisions(self) -> dict[str, float]:
        """slo_guard_admission_decisions_total by decision, from the operator's /metrics."""
        samples = matching_samples(metric_families(self.operator), "slo_guard_admission_decisions_total")
        return {sample.labels["decision"]: sample.value for sample in samples}

    def slo_events(self, reason: str) -> list[dict[str, Any]]:
        events = self.cluster.kube.list_objects("v1", "Event", namespace=NAMESPACE).get("items", [])
        return [item for item in events if item["reason"] == reason and item["involvedObject"]["kind"] == SLO_KIND]


@pytest.fixture(scope="module")
def admission(
    world: World, private_clusters: PrivateClusters, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Admission]:
    workdir = tmp_path_factory.mktemp("admission")
    certificate = serving_certificate(workdir / "tls")
    port = free_port()
    webhook = yaml.safe_load(SHIPPED_WEBHOOK.read_text(encoding="utf-8"))
    # The shipped rules, conditions and policies; only the address differs, as there is no cluster DNS here.
    webhook["webhooks"][0]["clientConfig"] = {
        "url": f"https://127.0.0.1:{port}/validate",
        "caBundle": certificate.ca_bundle,
    }
    with (
        own_sources(world) as sources,
        SyntheticService(Traffic(rps=0)) as idle,
        private_clusters.cluster("admission", watched_namespace=None, manifests=()) as cluster,
    ):
        world.prometheus.scrape_targets.append(idle.target)
        world.prometheus.reload()
        operator = cluster.operator(
            "admission",
            "--standalone",
            *("--webhook-port", str(port)),
            *("--webhook-cert-file", str(certificate.cert_file)),
            *("--webhook-key-file", str(certificate.key_file)),
        )
        operator.start()
        wait_for(operator.is_ready, timeout=60, what="the operator's /readyz")
        cluster.kube.create_object(webhook)
        cluster.kube.ensure_namespace(NAMESPACE)
        try:
            yield Admission(cluster, operator, sources, idle, workdir)
        finally:
            world.prometheus.scrape_targets.remove(idle.target)
            world.prometheus.reload()


def guarded(admission: Admission, name: str, service: SyntheticService, policy: dict[str, Any]) -> None:
    assert admission.apply(name, "registry.example/app:1").returncode == 0
    admission.cluster.kube.create_object(slo(name, NAMESPACE, service, targets=one_target(name), policy=policy))


def test_a_held_deployment_refuses_a_new_image_lets_scaling_and_an_override_through_and_recovery_reopens_it(
    admission: Admission,
) -> None:
    guarded(admission, "checkout", admission.sources.failing, DENY)
    admission.wait_target("checkout", "Denying")

    refused = admission.apply("checkout", "registry.example/app:2")
    assert refused.returncode == 1
    assert (
        'admission webhook "deny.sloguard.io" denied the request: slo-guard: rollouts of Deployment ' in refused.stderr
    )
    assert (
        f"frozen by the error-budget policy of ServiceLevelObjective {NAMESPACE}/checkout: error budget exhausted"
        in (refused.stderr)
    )
    assert f"set the annotation {OVERRIDE} to an RFC 3339 time in the future" in refused.stderr
    assert admission.image("checkout") == "registry.example/app:1"
    assert admission.slo_events("RolloutDenied"), "a Warning Event on the SLO"

    scaled = admission.kubectl("scale", "deployment/checkout", "-n", NAMESPACE, "--replicas=5")
    assert scaled.returncode == 0, scaled.stderr

    until = (datetime.now(UTC) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    hotfix = admission.apply("checkout", "registry.example/app:2-hotfix", **{OVERRIDE: until})
    assert hotfix.returncode == 0, hotfix.stderr
    assert f"Warning: slo-guard: override until {until} lets this rollout of Deployment {NAMESPACE}/checkout" in (
        hotfix.stderr
    )
    assert admission.image("checkout") == "registry.example/app:2-hotfix"
    wait_for(lambda: admission.slo_events("RolloutOverridden"), timeout=10, what="the RolloutOverridden Event")

    # An apply that drops the override is judged without it.
    assert admission.apply("checkout", "registry.example/app:3").returncode == 1
    # Removing it is a metadata change, which always passes; the freeze is back at the next pass.
    removed = admission.kubectl("annotate", "deployment/checkout", "-n", NAMESPACE, f"{OVERRIDE}-")
    assert removed.returncode == 0, removed.stderr
    admission.wait_target("checkout", "Denying")

    switch_source(admission.cluster, NAMESPACE, "checkout", admission.sources.healthy)
    admission.wait_target("checkout", "Untouched")
    released = admission.apply("checkout", "registry.example/app:3")
    assert released.returncode == 0, released.stderr
    assert admission.image("checkout") == "registry.example/app:3"
    actions = [item["action"] for item in slo_status(admission.cluster, NAMESPACE, "checkout")["actions"]]
    assert actions == ["Deny", "Allow"]
    decisions = admission.decisions()
    assert decisions["denied"] >= 2
    assert decisions["overridden"] >= 1


def test_dry_run_and_unknown_slos_let_a_new_image_through_with_a_warning_each(admission: Admission) -> None:
    guarded(admission, "search", admission.sources.failing, {**DENY, "mode": "DryRun"})
    guarded(admission, "cart", admission.idle, DENY)
    admission.wait_target("search", "WouldDeny")
    wait_for(
        lambda: slo_status(admission.cluster, NAMESPACE, "cart").get("state") == "Unknown",
        timeout=ACT_TIMEOUT,
        what="cart Unknown",
    )

    dry_run = admission.apply("search", "registry.example/app:2")
    assert dry_run.returncode == 0, dry_run.stderr
    assert f"Warning: slo-guard DryRun: ServiceLevelObjective {NAMESPACE}/search would deny this rollout" in (
        dry_run.stderr
    )
    unknown = admission.apply("cart", "registry.example/app:2")
    assert unknown.returncode == 0, unknown.stderr
    assert f"Warning: slo-guard: ServiceLevelObjective {NAMESPACE}/cart has no usable data" in unknown.stderr
    assert admission.image("search") == admission.image("cart") == "registry.example/app:2"

    assert admission.decisions()["warned"] >= 2
