"""The narrow interfaces the service needs; adapters implement them, tests may fake them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol

from slo_guard.adapters.kubernetes import ObjectRef, WorkloadSnapshot
from slo_guard.adapters.prometheus import Sample
from slo_guard.domain.model import Target
from slo_guard.domain.policy import Change


class MetricsSource(Protocol):
    async def query(self, expr: str, *, at: datetime) -> Sequence[Sample]:
        """Instant query at an explicit evaluation time."""
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
    async def write(self, rules: Mapping[str, Sequence[Mapping[str, Any]]]) -> None:
        """Make these rule groups, by SLO key (`namespace/name`), the managed rules Prometheus evaluates."""
        ...
