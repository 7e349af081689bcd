"""The LeaseStore over coordination.k8s.io/v1 Leases: every write conditional, none retried blindly."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from functools import partial
from typing import Any

from kubernetes.client import CoordinationV1Api, V1DeleteOptions, V1Lease, V1LeaseSpec, V1ObjectMeta, V1Preconditions

from slo_guard.adapters.kubernetes_api import KubernetesApi, ObjectNotFound
from slo_guard.domain.timestamps import parse_rfc3339
from slo_guard.service.ports import KubernetesUnavailable, Lease, LeaseConflict, LeaseRole, WorkloadConflict

APP_LABEL = "app.kubernetes.io/name"
APP_NAME = "slo-guard"
ROLE_LABEL = "sloguard.io/lease"
LEASE_SELECTOR = f"{APP_LABEL}={APP_NAME},{ROLE_LABEL} in ({LeaseRole.MEMBER},{LeaseRole.SHARD})"
_CONFLICT = 409


class _MicroTime(datetime):
    """A Lease's MicroTime must carry exactly six fractional digits or the API server refuses the whole body; the
    client writes datetimes with plain isoformat(), which leaves the fraction out when it is zero."""

    def isoformat(self, sep: str = "T", timespec: str = "microseconds") -> str:
        # datetime's own method: astimezone() keeps this class, and self.isoformat would recurse.
        return datetime.isoformat(self.astimezone(UTC), sep, timespec).replace("+00:00", "Z")


class KubernetesLeaseStore:
    """The shard and member Leases of one namespace, through a KubernetesApi of their own (own breaker and
    bulkhead), so a struggling status path never starves renewals."""

    def __init__(self, api: KubernetesApi, namespace: str) -> None:
        self._api = api
        self._namespace = namespace
        self._leases = CoordinationV1Api(api.client)

    async def list_leases(self) -> Sequence[Lease]:
        call = partial(self._leases.list_namespaced_lease, self._namespace, label_selector=LEASE_SELECTOR)
        try:
            listing = await self._api.request("list", call)
        except ObjectNotFound:
            return []
        leases = []
        for item in listing.get("items") or []:
            role = _role(item)
            if role is not None:
                leases.append(_lease(item, role))
        return leases

    # Lease writes skip the write token bucket (write=False): a renewal queued behind a burst of status patches
    # would miss its renew deadline and drop shards. They are single attempts (retry=False): a retry of a write that
    # went through but whose answer was lost would meet a 409 and read as losing the lease.

    async def create(self, lease: Lease) -> Lease:
        call = partial(self._leases.create_namespaced_lease, self._namespace, self._body(lease))
        try:
            created = await self._api.request("create", call, retry=False)
        except ObjectNotFound as error:
            raise KubernetesUnavailable(f"cannot create Lease {lease.name} in {self._namespace}: {error}") from error
        except WorkloadConflict as error:
            raise _conflict_or_refusal(error, lease) from error
        return _lease(created, lease.role)

    async def update(self, lease: Lease) -> Lease:
        if lease.resource_version is None:
            raise ValueError(f"an update of Lease {lease.name} must name the resourceVersion it was based on")
        call = partial(self._leases.replace_namespaced_lease, lease.name, self._namespace, self._body(lease))
        try:
            updated = await self._api.request("update", call, retry=False)
        except ObjectNotFound as error:
            raise LeaseConflict(f"Lease {self._namespace}/{lease.name} is gone") from error
        except WorkloadConflict as error:
            raise _conflict_or_refusal(error, lease) from error
        return _lease(updated, lease.role)

    async def delete(self, lease: Lease) -> None:
        options = V1DeleteOptions(preconditions=V1Preconditions(resource_version=lease.resource_version))
        call = partial(self._leases.delete_namespaced_lease, lease.name, self._namespace, body=options)
        try:
            await self._api.request("delete", call, retry=False)
        except ObjectNotFound:
            return
        except WorkloadConflict as error:
            raise _conflict_or_refusal(error, lease) from error

    def _body(self, lease: Lease) -> V1Lease:
        return V1Lease(
            api_version="coordination.k8s.io/v1",
            kind="Lease",
            metadata=V1ObjectMeta(
                name=lease.name,
                namespace=self._namespace,
                labels={APP_LABEL: APP_NAME, ROLE_LABEL: str(lease.role)},
                resource_version=lease.resource_version,
            ),
            spec=V1LeaseSpec(
                holder_identity=lease.holder or None,
                lease_duration_seconds=lease.duration_seconds,
                acquire_time=_micro_time(lease.acquire_time),
                renew_time=_micro_time(lease.renew_time),
                lease_transitions=lease.transitions,
            ),
        )


def _micro_time(moment: datetime | None) -> datetime | None:
    return None if moment is None else _MicroTime.combine(moment.date(), moment.timetz())


def _conflict_or_refusal(error: WorkloadConflict, lease: Lease) -> Exception:
    """KubernetesApi reports 409 and 422 alike; only a 409 means another replica won. A 422 is a Lease the API
    server refuses to store, which no later tick can fix by itself."""
    if getattr(error.__cause__, "status", None) == _CONFLICT:
        return LeaseConflict(str(error))
    return KubernetesUnavailable(f"the API server refused Lease {lease.name}: {error}")


def _role(body: Mapping[str, Any]) -> LeaseRole | None:
    labels = (body.get("metadata") or {}).get("labels") or {}
    try:
        return LeaseRole(str(labels.get(ROLE_LABEL)))
    except ValueError:
        return None


def _lease(body: Mapping[str, Any], role: LeaseRole) -> Lease:
    metadata = body.get("metadata") or {}
    spec = body.get("spec") or {}
    duration = spec.get("leaseDurationSeconds")
    return Lease(
        name=str(metadata.get("name", "")),
        role=role,
        holder=str(spec.get("holderIdentity") or ""),
        duration_seconds=duration if isinstance(duration, int) and duration > 0 else None,
        acquire_time=parse_rfc3339(spec.get("acquireTime")),
        renew_time=parse_rfc3339(spec.get("renewTime")),
        transitions=int(spec.get("leaseTransitions") or 0),
        resource_version=metadata.get("resourceVersion"),
    )
