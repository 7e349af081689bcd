"""The narrow interfaces the service needs; adapters implement them, tests may fake them."""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, Self

from slo_guard.domain.model import Target
from slo_guard.domain.policy import Change, WorkloadState


@dataclass(frozen=True, slots=True)
class WorkloadSnapshot:
    """A target's state plus the resourceVersion it was read at, for optimistic concurrency."""

    state: WorkloadState
    resource_version: str | None


@dataclass(frozen=True, slots=True)
class ObjectRef:
    """The object an Event is about."""

    api_version: str
    kind: str
    namespace: str
    name: str
    uid: str | None = None

    @property
    def key(self) -> str:
        """`namespace/name`, as logs, metrics and per-SLO bookkeeping name an object."""
        return f"{self.namespace}/{self.name}"


class WorkloadConflict(Exception):
    """The target changed since it was read (HTTP 409/422): re-read and decide again."""


class KubernetesUnavailable(Exception):
    """The API server did not answer usefully after bounded retries (timeouts, 429, 5xx, circuit open)."""


class OwnershipLost(Exception):
    """This replica stopped owning the SLO (its shard moved) before a write on the SLO's behalf went out."""

    def __init__(self, key: str) -> None:
        super().__init__(f"{key} is no longer this replica's to act on")


WRITE_PERMISSION: ContextVar[Callable[[], str | None] | None] = ContextVar("slo_guard_write_permission", default=None)
"""Set for the span of one SLO's pass or finalizer: returns None while writes on the SLO's behalf are allowed, and
the SLO's key once they are not. The Kubernetes adapter asks it right before each write goes out, after any wait
for a write token or a connection, so a shard that moved during the wait gets no write."""


@dataclass(frozen=True, slots=True)
class Sample:
    """One element of an instant-vector (or scalar) result. NaN and ±Inf are kept as floats."""

    labels: Mapping[str, str]
    value: float
    timestamp: float
    """Unix seconds: the evaluation time of the query."""


class UnavailableReason(enum.StrEnum):
    UNREACHABLE = "unreachable"
    TIMEOUT = "timeout"
    SERVER_ERROR = "server error"
    CIRCUIT_OPEN = "circuit open"
    CREDENTIALS = "credentials unreadable"


class PrometheusError(Exception):
    """Base of every failure this client raises."""

    def copy(self) -> Self:
        """The same failure as a new exception: one instance raised again by many tasks piles up their tracebacks."""
        clone = type(self).__new__(type(self), *self.args)
        clone.__dict__.update(self.__dict__)
        return clone


class PrometheusUnavailable(PrometheusError):
    """Prometheus could not answer: unreachable, timed out, 5xx, or the circuit breaker is open."""

    def __init__(self, reason: UnavailableReason, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class QueryError(PrometheusError):
    """Prometheus rejected the request (4xx), e.g. a wrong path or missing credentials. Retrying cannot help."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        """The HTTP status; None when the answer was fine but of a kind this client does not accept."""


class QueryRejected(QueryError):
    """Prometheus refused to run the query: bad PromQL (400) or an execution error (422), e.g. its sample limit.

    It says nothing about Prometheus's health: it is not retried and never counts as a circuit breaker failure.
    """

    def __init__(self, message: str, *, status: int, error: str) -> None:
        super().__init__(message, status=status)
        self.error = error
        """Prometheus's own explanation: the `error` field of its answer."""


class MetricsSource(Protocol):
    async def query(self, expr: str, *, at: datetime) -> Sequence[Sample]:
        """Instant query at an explicit evaluation time."""
        ...


class RangeSource(Protocol):
    async def query_range(
        self, expr: str, *, start: datetime, end: datetime, step: float
    ) -> Sequence[tuple[float, float]]:
        """The one series of an aggregated range query as (unix seconds, value); empty when it is absent.

        Raises PrometheusUnavailable when Prometheus cannot answer (circuit open included) and QueryError when it
        refuses the request, as `MetricsSource.query` does.
        """
        ...


class WorkloadController(Protocol):
    async def read(self, *, namespace: str, target: Target, check_autoscaler: bool) -> WorkloadSnapshot:
        """The target now; `check_autoscaler` also looks for a HorizontalPodAutoscaler that scales it."""
        ...

    async def apply(self, *, namespace: str, snapshot: WorkloadSnapshot, change: Change) -> None:
        """Write `change`; WorkloadConflict if the target moved past `snapshot`, KubernetesUnavailable on failure."""
        ...

    async def held(self, *, namespace: str) -> Sequence[WorkloadSnapshot]:
        """Every workload in the namespace that carries slo-guard's hold label."""
        ...


class EventSink(Protocol):
    async def post(self, *, regarding: ObjectRef, type_: str, reason: str, message: str) -> None: ...


class StatusStore(Protocol):
    async def patch_status(self, *, namespace: str, name: str, status: Mapping[str, object]) -> None: ...


class RuleSink(Protocol):
    async def write(self, rules: Mapping[str, str]) -> None:
        """Make these the managed rules Prometheus evaluates: by SLO key (`namespace/name`), the JSON array of
        that SLO's rule groups."""
        ...


# Shard Leases (service/sharding.py decides; adapters/leases.py stores).

LeaseRecord = tuple[str, datetime | None, str | None]
"""(holderIdentity, renewTime, resourceVersion) of a lease."""


class LeaseRole(enum.StrEnum):
    SHARD = "shard"
    """Held by the replica that evaluates the shard's SLOs."""
    MEMBER = "member"
    """One per replica, held by itself, so a replica holding no shard yet still counts towards the fair share."""


@dataclass(frozen=True, slots=True)
class Lease:
    """What slo-guard reads and writes of a coordination.k8s.io/v1 Lease."""

    name: str
    role: LeaseRole
    holder: str = ""
    """spec.holderIdentity; empty when nobody holds the lease (released)."""
    duration_seconds: int | None = None
    acquire_time: datetime | None = None
    renew_time: datetime | None = None
    transitions: int = 0
    resource_version: str | None = None
    """None only for a lease that is yet to be created."""

    @property
    def record(self) -> LeaseRecord:
        """What must stay unchanged for D before another replica may take the lease over."""
        return self.holder, self.renew_time, self.resource_version


class LeaseConflict(Exception):
    """The lease is not at the version the write was based on (changed, created or deleted): someone else won."""


class LeaseStore(Protocol):
    async def list_leases(self) -> Sequence[Lease]:
        """Every shard and member Lease of slo-guard in the namespace."""
        ...

    async def create(self, lease: Lease) -> Lease:
        """Create the lease; LeaseConflict when it exists already, KubernetesUnavailable on other failures."""
        ...

    async def update(self, lease: Lease) -> Lease:
        """Replace the lease if it is still at `lease.resource_version`, else LeaseConflict (also when gone)."""
        ...

    async def delete(self, lease: Lease) -> None:
        """Delete the lease if it is still at `lease.resource_version`; a lease already gone is fine."""
        ...
