"""Deployments as targets: read them into the policy's WorkloadState, write its changes as conditional patches."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from functools import partial
from typing import Any

from kubernetes.client import AppsV1Api, AutoscalingV2Api

from slo_guard.adapters.kubernetes_api import MERGE_PATCH, KubernetesApi, ObjectNotFound
from slo_guard.adapters.managed_fields import FIELD_MANAGER, field_owner
from slo_guard.domain.model import Target
from slo_guard.domain.policy import (
    HELD_LABEL,
    ORIGINAL_REPLICAS,
    OVERRIDE_REASON,
    OVERRIDE_UNTIL,
    PAUSED_BY,
    REASSERTED_AT,
    REASSERTIONS,
    REVERTED_BY,
    SCALED_BY,
    SCALED_TO,
    Change,
    WorkloadState,
    parse_holders,
)
from slo_guard.service.ports import WorkloadConflict, WorkloadSnapshot

DEPLOYMENT = "Deployment"


class DeploymentWorkloads:
    """The WorkloadController for apps/v1 Deployments; touches only the namespace it is given."""

    def __init__(self, api: KubernetesApi) -> None:
        self._api = api
        self._apps = AppsV1Api(api.client)
        self._autoscaling = AutoscalingV2Api(api.client)

    async def read(self, *, namespace: str, target: Target, check_autoscaler: bool) -> WorkloadSnapshot:
        """The target as it is now; a missing Deployment is `exists=False`, not an error."""
        call = partial(self._apps.read_namespaced_deployment, target.name, namespace)
        try:
            deployment = await self._api.request("get", call)
        except ObjectNotFound:
            return WorkloadSnapshot(WorkloadState(target=target, exists=False), resource_version=None)
        autoscaler = await self._autoscaler(namespace=namespace, deployment=target.name) if check_autoscaler else None
        return deployment_snapshot(deployment, target=target, autoscaler=autoscaler)

    async def apply(self, *, namespace: str, snapshot: WorkloadSnapshot, change: Change) -> None:
        """One merge patch, conditional on the resourceVersion the snapshot was read at."""
        if snapshot.resource_version is None:
            raise WorkloadConflict(f"{snapshot.state.target} was read without a resourceVersion; read it again")
        call = partial(
            self._apps.patch_namespaced_deployment,
            snapshot.state.target.name,
            namespace,
            workload_patch(resource_version=snapshot.resource_version, change=change),
            field_manager=FIELD_MANAGER,
            _content_type=MERGE_PATCH,
        )
        try:
            await self._api.request("patch", call, write=True)
        except ObjectNotFound as error:
            # Deleted since it was read: the re-read the service does next reports it missing.
            raise WorkloadConflict(f"{snapshot.state.target} no longer exists") from error

    async def held(self, *, namespace: str) -> list[WorkloadSnapshot]:
        """Every Deployment in the namespace that carries the hold label."""
        call = partial(self._apps.list_namespaced_deployment, namespace, label_selector=f"{HELD_LABEL}=true")
        try:
            listing = await self._api.request("list", call)
        except ObjectNotFound:
            return []
        return [
            deployment_snapshot(item, target=Target(DEPLOYMENT, item["metadata"]["name"]), autoscaler=None)
            for item in listing.get("items") or []
        ]

    async def _autoscaler(self, *, namespace: str, deployment: str) -> str | None:
        call = partial(self._autoscaling.list_namespaced_horizontal_pod_autoscaler, namespace)
        try:
            listing = await self._api.request("list", call)
        except ObjectNotFound:
            return None
        names = sorted(
            item["metadata"]["name"] for item in listing.get("items") or [] if _scales_deployment(item, deployment)
        )
        return names[0] if names else None


def workload_patch(*, resource_version: str, change: Change) -> dict[str, Any]:
    """The JSON merge patch that carries `change`; None values become null, which removes the key."""
    metadata: dict[str, Any] = {"resourceVersion": resource_version}
    if change.annotations:
        metadata["annotations"] = dict(change.annotations)
    if change.labels:
        metadata["labels"] = dict(change.labels)
    spec: dict[str, Any] = {}
    if change.paused is not None:
        spec["paused"] = change.paused
    if change.replicas is not None:
        spec["replicas"] = change.replicas
    return {"metadata": metadata, "spec": spec} if spec else {"metadata": metadata}


def deployment_snapshot(deployment: Mapping[str, Any], *, target: Target, autoscaler: str | None) -> WorkloadSnapshot:
    """What slo-guard reads from a Deployment's JSON: its spec, slo-guard's annotations and managedFields."""
    metadata = deployment.get("metadata") or {}
    annotations: Mapping[str, str] = metadata.get("annotations") or {}
    spec = deployment.get("spec") or {}
    replicas = spec.get("replicas")
    override = annotations.get(OVERRIDE_UNTIL)
    override_until = _timestamp(override)
    state = WorkloadState(
        target=target,
        exists=True,
        paused=bool(spec.get("paused", False)),
        # The API server defaults an unset replica count to 1.
        replicas=1 if replicas is None else int(replicas),
        paused_by=parse_holders(annotations.get(PAUSED_BY)),
        scaled_by=parse_holders(annotations.get(SCALED_BY)),
        original_replicas=_non_negative_int(annotations.get(ORIGINAL_REPLICAS)),
        scaled_to=_non_negative_int(annotations.get(SCALED_TO)),
        override_until=override_until,
        override_reason=annotations.get(OVERRIDE_REASON) or None,
        override_problem=(
            f"{OVERRIDE_UNTIL}={override!r}: not an RFC 3339 time with an offset"
            if override is not None and override_until is None
            else None
        ),
        autoscaler=autoscaler,
        paused_set_by=field_owner(metadata.get("managedFields"), "paused"),
        replicas_set_by=field_owner(metadata.get("managedFields"), "replicas"),
        reassertions=_non_negative_int(annotations.get(REASSERTIONS)) or 0,
        reasserted_at=_timestamp(annotations.get(REASSERTED_AT)),
        reverted_by=annotations.get(REVERTED_BY) or None,
    )
    return WorkloadSnapshot(state, resource_version=metadata.get("resourceVersion"))


def _non_negative_int(value: str | None) -> int | None:
    try:
        count = int(value) if value is not None else None
    except ValueError:
        return None
    return count if count is not None and count >= 0 else None


def _timestamp(value: str | None) -> datetime | None:
    """An RFC 3339 time with an offset, or None."""
    try:
        moment = datetime.fromisoformat(value) if value is not None else None
    except ValueError:
        return None
    return moment if moment is not None and moment.tzinfo is not None else None


def _scales_deployment(autoscaler: Mapping[str, Any], deployment: str) -> bool:
    ref = (autoscaler.get("spec") or {}).get("scaleTargetRef") or {}
    group = str(ref.get("apiVersion") or "apps").split("/")[0]
    return ref.get("kind") == DEPLOYMENT and ref.get("name") == deployment and group in {"apps", "extensions"}
