"""Reading a Deployment's JSON into what the policy needs, including who last set a field (managedFields)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from slo_guard.adapters.managed_fields import FIELD_MANAGER, field_owner
from slo_guard.adapters.workloads import deployment_snapshot
from slo_guard.domain.model import Target
from slo_guard.domain.policy import PAUSED_BY, REASSERTED_AT, REASSERTIONS, REVERTED_BY

WEB = Target("Deployment", "web")


def entry(manager: str, time: str, *fields: str, operation: str = "Update") -> dict[str, Any]:
    """A managedFields entry as the API server writes it."""
    return {
        "manager": manager,
        "operation": operation,
        "apiVersion": "apps/v1",
        "time": time,
        "fieldsType": "FieldsV1",
        "fieldsV1": {"f:spec": {f"f:{field}": {} for field in fields}},
    }


def test_the_owner_of_a_field_is_the_manager_that_set_it_last() -> None:
    managed = [
        entry("kubectl-client-side-apply", "2026-11-01T00:00:00Z", "replicas", "paused"),
        entry("argocd-controller", "2026-11-01T00:05:00Z", "paused"),
        entry("kube-controller-manager", "2026-11-01T00:09:00Z", "template"),
    ]
    assert field_owner(managed, "spec.paused") == "argocd-controller"
    assert field_owner(managed, "spec.replicas") == "kubectl-client-side-apply"
    assert field_owner(managed, "spec.minReadySeconds") is None


def test_slo_guard_itself_is_never_named_as_the_reverter() -> None:
    managed = [entry(FIELD_MANAGER, "2026-11-01T00:05:00Z", "paused")]
    assert field_owner(managed, "spec.paused") is None


def test_missing_or_malformed_managed_fields_mean_unknown() -> None:
    assert field_owner(None, "spec.paused") is None
    assert field_owner("garbage", "spec.paused") is None
    assert field_owner([{"manager": "x"}, "y", {"fieldsV1": {"f:spec": {"f:paused": {}}}}], "spec.paused") is None


def deployment(annotations: dict[str, str], managed: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "metadata": {"name": "web", "resourceVersion": "7", "annotations": annotations, "managedFields": managed},
        "spec": {"replicas": 3, "paused": False},
    }


def test_a_snapshot_carries_the_contest_of_the_hold_and_who_set_the_fields() -> None:
    annotations = {
        PAUSED_BY: "checkout",
        REASSERTIONS: "3",
        REASSERTED_AT: "2026-11-01T00:04:00Z",
        REVERTED_BY: "argocd-controller",
    }
    managed = [
        entry("argocd-controller", "2026-11-01T00:05:00Z", "paused"),
        entry("hpa", "2026-11-01T00:01:00Z", "replicas"),
    ]

    state = deployment_snapshot(deployment(annotations, managed), target=WEB, autoscaler=None).state

    assert (state.paused, state.paused_set_by, state.replicas_set_by) == (False, "argocd-controller", "hpa")
    assert (state.reassertions, state.reverted_by) == (3, "argocd-controller")
    assert state.reasserted_at == datetime(2026, 11, 1, 0, 4, tzinfo=UTC)


def test_garbled_contest_annotations_read_as_no_contest() -> None:
    annotations = {REASSERTIONS: "many", REASSERTED_AT: "yesterday", REVERTED_BY: ""}
    state = deployment_snapshot(deployment(annotations, []), target=WEB, autoscaler=None).state
    assert (state.reassertions, state.reasserted_at, state.reverted_by) == (0, None, None)
