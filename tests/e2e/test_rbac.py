"""RBAC completeness, both ways: every request the operator sent is granted, and every grant was used.

The requests come from the emulators' cumulative tallies (`calls_seen()`, which `clear_requests()` does not reset),
kept only for the operator's clients (kopf, and the kubernetes client as `slo-guard/<version>`):
- cluster-wide, checked against the ClusterRole of `kubectl kustomize manifests/`: the shared world (a standalone
  operator driven by every other e2e module) plus test_peering.py's peered replicas and test_prometheus_faults.py's
  operator;
- namespaced, checked against the Role of `kubectl kustomize manifests/overlays/namespaced`: the run below, with
  `--namespace` and the KopfPeering of that overlay.
This module runs after all others (conftest.pytest_collection_modifyitems).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from dataclasses import dataclass

import pytest
import yaml
from tests.e2e.conftest import REPO, PrivateClusters, World, wait_for
from tests.e2e.scenario import ACT_TIMEOUT, FAILING, SLO_API, SLO_KIND, deployment, guard, wait_target_state
from tests.support.emulator import running_emulator
from tests.support.emulator_log import CallSeen
from tests.support.kube import USER_AGENT, EmulatorClient, KubeClient, deployment_manifest, kustomize

from slo_guard import __version__

pytestmark = [pytest.mark.e2e, pytest.mark.prometheus]

MANIFESTS = REPO / "manifests"
KOPF_PEERING = MANIFESTS / "overlays" / "namespaced" / "kopfpeering.yaml"
WATCHED = yaml.safe_load(KOPF_PEERING.read_text())["metadata"]["namespace"]
"""The namespace the namespaced overlay's Role, RoleBinding and KopfPeering are in."""
OPERATOR_AGENTS = ("kopf/", f"slo-guard/{__version__}")
"""User-Agent prefixes of the operator's two clients; tests send USER_AGENT, kubectl its own."""
DISCOVERY_URLS = ("/api", "/api/*", "/apis", "/apis/*", "/version", "/version/", "/healthz", "/livez", "/readyz")
"""Non-resource URLs every authenticated user may GET (the default system:discovery and
system:public-info-viewer ClusterRoles), so the operator's discovery needs no grant of its own."""
WHOLE_SUITE = {"test_operator.py", "test_peering.py"}
"""Modules whose scenarios cause every cluster-wide call: without them an unused grant proves nothing."""


@dataclass(frozen=True)
class Grant:
    """One verb on one resource (optionally one object by name, optionally in one namespace) that a role allows."""

    group: str
    resource: str
    """plural, or plural/subresource."""
    verb: str
    name: str | None
    """From resourceNames; None for any name."""
    namespace: str | None
    """A Role's namespace; None for a ClusterRole."""

    def allows(self, call: CallSeen) -> bool:
        return (
            (call.group, _resource(call), call.verb) == (self.group, self.resource, self.verb)
            and self.name in (None, call.name)
            and self.namespace in (None, call.namespace)
        )

    def __str__(self) -> str:
        named = f" named {self.name}" if self.name else ""
        where = f" in {self.namespace}" if self.namespace else ""
        return f"{self.verb} {self.resource}.{self.group or 'core'}{named}{where}"


def _resource(call: CallSeen) -> str:
    return f"{call.resource}/{call.subresource}" if call.subresource else str(call.resource)


def _describe(call: CallSeen) -> str:
    if call.resource is None:
        return f"{call.verb} {call.path} ({call.user_agent})"
    named = f" {call.name}" if call.name else ""
    where = f" in {call.namespace}" if call.namespace else " cluster-wide"
    return f"{call.verb} {_resource(call)}.{call.group or 'core'}{named}{where} ({call.user_agent}, {call.count}x)"


def grants(tree: str, kind: str) -> set[Grant]:
    """Every unit of permission in the rendered roles of that kind."""
    return {
        Grant(group, resource, verb, name, role["metadata"].get("namespace"))
        for role in kustomize(MANIFESTS / tree)
        if role["kind"] == kind
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
        for name in rule.get("resourceNames") or [None]
    }


def operator_calls(calls: Iterable[CallSeen]) -> list[CallSeen]:
    return [call for call in calls if (call.user_agent or "").startswith(OPERATOR_AGENTS)]


def not_granted(calls: Iterable[CallSeen], granted: set[Grant]) -> list[str]:
    return sorted(
        _describe(call)
        for call in calls
        if not _is_discovery(call) and not any(grant.allows(call) for grant in granted)
    )


def _is_discovery(call: CallSeen) -> bool:
    path = call.path or ""
    return (
        call.resource is None and call.verb == "get" and any(fnmatch.fnmatchcase(path, url) for url in DISCOVERY_URLS)
    )


def unused(granted: set[Grant], calls: list[CallSeen]) -> list[str]:
    return sorted(str(grant) for grant in granted if not any(grant.allows(call) for call in calls))


@dataclass(frozen=True)
class Mode:
    """An install mode: its kustomization, the kind of role it grants, and the runs that used it."""

    name: str
    tree: str
    """Kustomization under manifests/."""
    role_kind: str
    watched_namespace: str | None
    """`--namespace` of the runs to check; None for cluster-wide runs."""

    def grants(self) -> set[Grant]:
        return grants(self.tree, self.role_kind)

    def calls(self, world: World, private: PrivateClusters) -> list[CallSeen]:
        """The operator's calls in this mode this session; skips the test when no such run happened."""
        seen = [call for watched, calls in private.calls if watched == self.watched_namespace for call in calls]
        if self.watched_namespace is None:
            seen += world.need_emulator().calls_seen()
        if not operator_calls(seen):
            pytest.skip(f"no {self.name} operator ran in this session")
        return operator_calls(seen)


MODES = [Mode("cluster-wide", ".", "ClusterRole", None), Mode("namespaced", "overlays/namespaced", "Role", WATCHED)]


def test_the_tally_outlives_clear_requests_and_names_each_client() -> None:
    with running_emulator() as emulator:
        control = EmulatorClient(str(emulator.url))
        kube = KubeClient(str(emulator.url))
        kube.create_object(deployment_manifest("web"))
        kube.get_object("apps/v1", "Deployment", "web", namespace="default")
        kube.get_object("apps/v1", "Deployment", "web", namespace="default")
        control.clear_requests()
        assert control.requests() == []
        calls = {(call.verb, call.resource, call.name, call.user_agent): call.count for call in control.calls_seen()}
    assert calls[("create", "deployments", None, USER_AGENT)] == 1, "a create is authorized without a name"
    assert calls[("get", "deployments", "web", USER_AGENT)] == 2


def test_a_namespaced_run_scales_and_releases_within_its_namespace(
    world: World, private_clusters: PrivateClusters
) -> None:
    service = world.take_service(FAILING)
    with private_clusters.cluster("namespaced", watched_namespace=WATCHED, manifests=[KOPF_PEERING]) as cluster:
        cluster.operator("namespaced").start()
        guard(cluster, WATCHED, "web", service, policy={"mode": "Enforce", "action": "Scale", "scaleTo": 1}, replicas=4)

        def replicas() -> int:
            return int(deployment(cluster, WATCHED, "web")["spec"]["replicas"])

        wait_for(lambda: replicas() == 1, timeout=ACT_TIMEOUT, what="web scaled to 1")
        # The status write that follows the scale is one of the calls checked below: see it land before deleting.
        wait_target_state(cluster, WATCHED, "web", "Scaled")
        cluster.kube.delete_object(SLO_API, SLO_KIND, "web", namespace=WATCHED)
        wait_for(lambda: cluster.get(SLO_API, SLO_KIND, "web", WATCHED) is None, timeout=ACT_TIMEOUT, what="SLO gone")
        assert replicas() == 4, "the finalizer restored the replicas"
        peering = cluster.get("kopf.dev/v1", "KopfPeering", "slo-guard", WATCHED) or {}
        assert "namespaced" in (peering.get("status") or {}), "the operator peers through the overlay's KopfPeering"


@pytest.mark.parametrize("mode", MODES, ids=lambda mode: mode.name)
def test_every_request_the_operator_sent_is_granted(
    mode: Mode, world: World, private_clusters: PrivateClusters
) -> None:
    missing = not_granted(mode.calls(world, private_clusters), mode.grants())
    assert not missing, f"the {mode.role_kind} lacks what the operator sent:\n" + "\n".join(missing)


@pytest.mark.parametrize("mode", MODES, ids=lambda mode: mode.name)
def test_nothing_is_granted_that_the_operator_never_sent(
    mode: Mode, world: World, private_clusters: PrivateClusters, request: pytest.FixtureRequest
) -> None:
    collected = {item.path.name for item in request.session.items}
    if mode.watched_namespace is None and not collected >= WHOLE_SUITE:
        pytest.skip(f"needs the scenarios of {sorted(WHOLE_SUITE)} in the same session")
    needless = unused(mode.grants(), mode.calls(world, private_clusters))
    assert not needless, f"the {mode.role_kind} grants what the operator never sent:\n" + "\n".join(needless)
