"""Targets of every kind: read them into the policy's WorkloadState, write its changes as conditional patches.

The policy speaks of one `paused` flag and one replica count; this module translates them per kind. A Deployment
and an Argo Rollout pause through `spec.paused`; a StatefulSet has no such field, so it is held by raising its
rolling update's partition to its replica count, which keeps every pod on its current revision.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

from kubernetes.client import AutoscalingV2Api, CustomObjectsApi

from slo_guard.adapters.kubernetes_api import MERGE_PATCH, KubernetesApi, ObjectNotFound
from slo_guard.adapters.managed_fields import FIELD_MANAGER, field_owner
from slo_guard.adapters.resilience import retrieve_outcome
from slo_guard.domain.model import Target
from slo_guard.domain.policy import (
    HELD_LABEL,
    ORIGINAL_REPLICAS,
    OVERRIDE_REASON,
    OVERRIDE_UNTIL,
    PAUSED_BY,
    PAUSED_FIELD,
    REASSERTED_AT,
    REASSERTIONS,
    REPLICAS_FIELD,
    REVERTED_BY,
    SCALED_BY,
    SCALED_TO,
    Change,
    WorkloadState,
    parse_holders,
)
from slo_guard.domain.timestamps import parse_rfc3339
from slo_guard.service.ports import WorkloadConflict, WorkloadSnapshot

DEPLOYMENT = "Deployment"
STATEFULSET = "StatefulSet"
ROLLOUT = "Rollout"
ORIGINAL_PARTITION = "sloguard.io/original-partition"
"""A held StatefulSet's rolling-update partition before slo-guard raised it; restored when the hold ends."""
PARTITION_FIELD = "spec.updateStrategy.rollingUpdate.partition"
SERVED_CACHE_SECONDS = 30.0
"""How long an answer of API discovery is reused: a Rollout target read while Argo Rollouts is absent asks once."""


@dataclass(frozen=True, slots=True)
class WorkloadKind:
    """Where the API server keeps one target kind, and who else may scale it."""

    kind: str
    group: str
    version: str
    plural: str
    autoscaler_groups: frozenset[str]
    """apiVersion groups an HPA's scaleTargetRef may name this kind with."""
    hint: str = ""
    """What to tell a user whose cluster does not serve the kind."""

    @property
    def resource(self) -> str:
        return f"{self.plural}.{self.group}/{self.version}"


KINDS = {
    DEPLOYMENT: WorkloadKind(DEPLOYMENT, "apps", "v1", "deployments", frozenset({"apps", "extensions"})),
    STATEFULSET: WorkloadKind(STATEFULSET, "apps", "v1", "statefulsets", frozenset({"apps"})),
    ROLLOUT: WorkloadKind(
        ROLLOUT, "argoproj.io", "v1alpha1", "rollouts", frozenset({"argoproj.io"}), hint="; is Argo Rollouts installed?"
    ),
}


@dataclass(frozen=True, slots=True)
class ReadSnapshot(WorkloadSnapshot):
    """A snapshot that keeps the object as read: a StatefulSet's pause is written relative to its partition."""

    body: Mapping[str, Any]


class KubernetesWorkloads:
    """The WorkloadController for Deployments, StatefulSets and Rollouts; touches only the namespace it is given."""

    def __init__(self, api: KubernetesApi, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._api = api
        self._objects = CustomObjectsApi(api.client)
        self._autoscaling = AutoscalingV2Api(api.client)
        self._clock = clock
        self._served: dict[str, tuple[float, bool]] = {}
        self._listings: dict[str, asyncio.Future[list[WorkloadSnapshot]]] = {}

    async def read(self, *, namespace: str, target: Target, check_autoscaler: bool) -> WorkloadSnapshot:
        """The target as it is now; a missing object, or a kind the cluster does not serve, is `exists=False`."""
        kind = KINDS[target.kind]
        call = partial(self._objects.get_namespaced_custom_object, kind.group, kind.version, namespace, kind.plural)
        try:
            body = await self._api.request("get", partial(call, target.name))
        except ObjectNotFound:
            # The API server answers 404 both for a missing object and for a resource it does not serve.
            not_served = None
            if not await self._serves(kind):
                not_served = f"{target}: the cluster does not serve {kind.resource}{kind.hint}"
            state = WorkloadState(target=target, exists=False, not_served=not_served)
            return WorkloadSnapshot(state, resource_version=None)
        autoscaler = await self._autoscaler(namespace=namespace, target=target) if check_autoscaler else None
        return workload_snapshot(body, target=target, autoscaler=autoscaler)

    async def apply(self, *, namespace: str, snapshot: WorkloadSnapshot, change: Change) -> None:
        """One merge patch, conditional on the resourceVersion the snapshot was read at."""
        target = snapshot.state.target
        if snapshot.resource_version is None or not isinstance(snapshot, ReadSnapshot):
            raise WorkloadConflict(f"{target} was read without a resourceVersion; read it again")
        kind = KINDS[target.kind]
        patch = workload_patch(
            resource_version=snapshot.resource_version,
            change=change,
            statefulset=snapshot.body if kind.kind == STATEFULSET else None,
        )
        call = partial(
            self._objects.patch_namespaced_custom_object,
            kind.group,
            kind.version,
            namespace,
            kind.plural,
            target.name,
            patch,
            field_manager=FIELD_MANAGER,
            _content_type=MERGE_PATCH,
        )
        try:
            await self._api.request("patch", call, write=True)
        except ObjectNotFound as error:
            # Deleted since it was read: the re-read the service does next reports it missing.
            raise WorkloadConflict(f"{target} no longer exists") from error

    async def held(self, *, namespace: str) -> list[WorkloadSnapshot]:
        """Every workload of every kind in the namespace that carries the hold label.

        Callers asking while a listing of the namespace is in flight share it: the first passes of a thousand new
        SLOs in one namespace would otherwise list every held workload there a thousand times at once. Safe to
        share, because each SLO looks only for its own holds, which no other pass writes meanwhile.
        """
        listing = self._listings.get(namespace)
        if listing is None:
            listing = asyncio.ensure_future(self._list_held(namespace))
            self._listings[namespace] = listing
            listing.add_done_callback(lambda _: self._listings.pop(namespace, None))
            listing.add_done_callback(retrieve_outcome)
        # A caller that is cancelled leaves the listing running for the others.
        return list(await asyncio.shield(listing))

    async def _list_held(self, namespace: str) -> list[WorkloadSnapshot]:
        held: list[WorkloadSnapshot] = []
        for kind in KINDS.values():
            call = partial(
                self._objects.list_namespaced_custom_object,
                kind.group,
                kind.version,
                namespace,
                kind.plural,
                label_selector=f"{HELD_LABEL}=true",
            )
            try:
                listing = await self._api.request("list", call)
            except ObjectNotFound:
                continue  # a kind the cluster does not serve holds nothing
            held += [
                workload_snapshot(item, target=Target(kind.kind, item["metadata"]["name"]), autoscaler=None)
                for item in listing.get("items") or []
            ]
        return held

    async def _serves(self, kind: WorkloadKind) -> bool:
        now = self._clock()
        cached = self._served.get(kind.kind)
        if cached is not None and now - cached[0] < SERVED_CACHE_SECONDS:
            return cached[1]
        served = await self._api.serves(group=kind.group, version=kind.version, plural=kind.plural)
        self._served[kind.kind] = (now, served)
        return served

    async def _autoscaler(self, *, namespace: str, target: Target) -> str | None:
        call = partial(self._autoscaling.list_namespaced_horizontal_pod_autoscaler, namespace)
        try:
            listing = await self._api.request("list", call)
        except ObjectNotFound:
            return None
        names = sorted(item["metadata"]["name"] for item in listing.get("items") or [] if scales(item, target))
        return names[0] if names else None


def workload_patch(
    *, resource_version: str, change: Change, statefulset: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The JSON merge patch that carries `change`; None values become null, which removes the key.

    `statefulset` is the StatefulSet as read when the target is one: its pause moves the partition instead.
    """
    metadata: dict[str, Any] = {"resourceVersion": resource_version}
    annotations = dict(change.annotations)
    spec: dict[str, Any] = {}
    if change.paused is not None and statefulset is not None:
        strategy, recorded = _partition_patch(statefulset, paused=change.paused, replicas=change.replicas)
        spec |= strategy
        annotations |= recorded
    elif change.paused is not None:
        spec["paused"] = change.paused
    if change.replicas is not None:
        spec["replicas"] = change.replicas
    if annotations:
        metadata["annotations"] = annotations
    if change.labels:
        metadata["labels"] = dict(change.labels)
    return {"metadata": metadata, "spec": spec} if spec else {"metadata": metadata}


def _partition_patch(
    statefulset: Mapping[str, Any], *, paused: bool, replicas: int | None
) -> tuple[dict[str, Any], dict[str, str | None]]:
    """The spec and annotations of a StatefulSet's pause (partition up to the replica count) or of its undo."""
    spec = statefulset.get("spec") or {}
    annotations = (statefulset.get("metadata") or {}).get("annotations") or {}
    recorded = annotations.get(ORIGINAL_PARTITION)
    if not paused:
        # The policy undoes a pause only while its record is there (pause_record_lost refuses otherwise).
        original = _non_negative_int(recorded) or 0
        if _on_delete(spec):
            return {}, {ORIGINAL_PARTITION: None}
        return {"updateStrategy": {"rollingUpdate": {"partition": original}}}, {ORIGINAL_PARTITION: None}
    count = replicas if replicas is not None else _replicas(spec)
    strategy = {"updateStrategy": {"rollingUpdate": {"partition": _holding_partition(count)}}}
    # A re-assertion keeps the partition recorded when the hold began, not the one someone reverted to.
    return strategy, ({} if recorded is not None else {ORIGINAL_PARTITION: str(_partition(spec))})


def workload_snapshot(body: Mapping[str, Any], *, target: Target, autoscaler: str | None) -> WorkloadSnapshot:
    """What slo-guard reads from a target's JSON, whatever its kind."""
    if target.kind == STATEFULSET:
        return statefulset_snapshot(body, target=target, autoscaler=autoscaler)
    return deployment_snapshot(body, target=target, autoscaler=autoscaler)


def deployment_snapshot(body: Mapping[str, Any], *, target: Target, autoscaler: str | None) -> WorkloadSnapshot:
    """A Deployment or a Rollout: both pause through `spec.paused`."""
    spec = body.get("spec") or {}
    state = _state(body, target=target, autoscaler=autoscaler, paused=bool(spec.get("paused", False)))
    return _snapshot(body, state)


def statefulset_snapshot(body: Mapping[str, Any], *, target: Target, autoscaler: str | None) -> WorkloadSnapshot:
    """A StatefulSet is paused when its partition keeps every pod on the current revision."""
    spec = body.get("spec") or {}
    on_delete = _on_delete(spec)
    state = _state(
        body,
        target=target,
        autoscaler=autoscaler,
        paused=not on_delete and _partition(spec) >= _holding_partition(_replicas(spec)),
        pause_field=PARTITION_FIELD,
        pause_unsupported=(
            "its updateStrategy is OnDelete, so pods take the new revision whenever they are deleted and no "
            "partition can hold them"
            if on_delete
            else None
        ),
        pause_record_lost=ORIGINAL_PARTITION if _partition_record_lost(body) else None,
    )
    return _snapshot(body, state)


def _partition_record_lost(body: Mapping[str, Any]) -> bool:
    """slo-guard holds the partition but the partition to restore is no longer recorded (or garbled)."""
    annotations = (body.get("metadata") or {}).get("annotations") or {}
    held = bool(parse_holders(annotations.get(PAUSED_BY)))
    return held and _non_negative_int(annotations.get(ORIGINAL_PARTITION)) is None


def _state(
    body: Mapping[str, Any],
    *,
    target: Target,
    autoscaler: str | None,
    paused: bool,
    pause_field: str = PAUSED_FIELD,
    pause_unsupported: str | None = None,
    pause_record_lost: str | None = None,
) -> WorkloadState:
    metadata = body.get("metadata") or {}
    annotations: Mapping[str, str] = metadata.get("annotations") or {}
    override = annotations.get(OVERRIDE_UNTIL)
    override_until = parse_rfc3339(override)
    return WorkloadState(
        target=target,
        exists=True,
        paused=paused,
        replicas=_replicas(body.get("spec") or {}),
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
        paused_set_by=field_owner(metadata.get("managedFields"), pause_field),
        replicas_set_by=field_owner(metadata.get("managedFields"), REPLICAS_FIELD),
        reassertions=_non_negative_int(annotations.get(REASSERTIONS)) or 0,
        reasserted_at=parse_rfc3339(annotations.get(REASSERTED_AT)),
        reverted_by=annotations.get(REVERTED_BY) or None,
        pause_field=pause_field,
        pause_unsupported=pause_unsupported,
        pause_record_lost=pause_record_lost,
    )


def _snapshot(body: Mapping[str, Any], state: WorkloadState) -> ReadSnapshot:
    return ReadSnapshot(state, resource_version=(body.get("metadata") or {}).get("resourceVersion"), body=body)


def _replicas(spec: Mapping[str, Any]) -> int:
    # The API server defaults an unset replica count to 1.
    replicas = spec.get("replicas")
    return 1 if replicas is None else int(replicas)


def _partition(spec: Mapping[str, Any]) -> int:
    rolling = (spec.get("updateStrategy") or {}).get("rollingUpdate") or {}
    partition = rolling.get("partition")
    return int(partition) if isinstance(partition, int) else 0


def _holding_partition(replicas: int) -> int:
    """The partition that holds every pod: at least 1, so a StatefulSet scaled to zero is not read as paused."""
    return max(replicas, 1)


def _on_delete(spec: Mapping[str, Any]) -> bool:
    return (spec.get("updateStrategy") or {}).get("type") == "OnDelete"


def _non_negative_int(value: str | None) -> int | None:
    try:
        count = int(value) if value is not None else None
    except ValueError:
        return None
    return count if count is not None and count >= 0 else None


def scales(autoscaler: Mapping[str, Any], target: Target) -> bool:
    """Whether a HorizontalPodAutoscaler's scaleTargetRef names `target`, in an API group its kind is served in."""
    ref = (autoscaler.get("spec") or {}).get("scaleTargetRef") or {}
    kind = KINDS[target.kind]
    group = str(ref.get("apiVersion") or kind.group).split("/")[0]
    return ref.get("kind") == target.kind and ref.get("name") == target.name and group in kind.autoscaler_groups
