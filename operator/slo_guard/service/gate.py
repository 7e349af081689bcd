"""The pipeline gate: each SLO's gate read from the status the operator wrote, polled until open or a deadline.

No Prometheus: the operator's last evaluation and target states, as `.status` carries them, go through the same
domain decision the operator enforces (`slo_guard.domain.gate`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from slo_guard.domain.evaluation_types import AlertStatus, Evaluation, State
from slo_guard.domain.gate import GateVerdict, gate, unknown_open
from slo_guard.domain.model import Severity
from slo_guard.domain.policy import ActionKind, TargetState
from slo_guard.domain.timestamps import parse_rfc3339
from slo_guard.resources import SpecError, objective_from_resource
from slo_guard.service.ports import KubernetesUnavailable

POLL_SECONDS = 5.0
"""Between two reads while waiting; the operator rewrites a status at most once per evaluation interval anyway."""
HOLDING_STATES = frozenset(
    {
        TargetState.PAUSED.value,
        TargetState.SCALED.value,
        TargetState.CONTESTED.value,
        TargetState.DENYING.value,
        f"Would{ActionKind.PAUSE.value}",
        f"Would{ActionKind.SCALE.value}",
        f"Would{ActionKind.DENY.value}",
    }
)
"""`status.targets[].state` values of a target the SLO holds, or in DryRun would hold."""
_EVALUATED_STATES = frozenset({State.HEALTHY.value, State.BURNING.value, State.EXHAUSTED.value})
_ANY_MIN_STEP = 1
"""Only the policy is read: the lowest floor rejects no spec the operator accepts, whatever its --min-step."""


class SLOReader(Protocol):
    async def read(self, *, namespace: str, name: str) -> Mapping[str, Any] | None:
        """The whole object, status included; None when it does not exist. Raises KubernetesUnavailable."""


class SLOsMissing(Exception):
    """Some of the SLOs asked for do not exist."""

    def __init__(self, keys: Sequence[str]) -> None:
        super().__init__(", ".join(keys))
        self.keys = tuple(keys)


@dataclass(frozen=True, slots=True)
class SLOGate:
    key: str
    """`namespace/name`."""
    verdict: GateVerdict
    unknown: str | None = None
    """Why the SLO has no usable evaluation; None when it has one."""


@dataclass(frozen=True, slots=True)
class Poll:
    """One read of every SLO: their gates, or why the API server could not be read this time."""

    gates: tuple[SLOGate, ...] = ()
    problem: str | None = None
    elapsed: float = 0.0
    """Seconds since the wait began."""


def gate_of(key: str, resource: Mapping[str, Any]) -> SLOGate:
    """The gate of one ServiceLevelObjective as the API server stores it."""
    try:
        policy = objective_from_resource(resource, min_step=_ANY_MIN_STEP).policy
    except SpecError as error:
        return _unknown(key, f"InvalidSpec: {error}")
    status: Mapping[str, Any] = resource.get("status") or {}
    state = status.get("state")
    evaluated_at = parse_rfc3339(status.get("evaluatedAt"))
    if state is None or evaluated_at is None:
        return _unknown(key, "not evaluated yet")
    if state not in _EVALUATED_STATES:
        reason = status.get("reason")
        message = str(status.get("message") or state)
        return _unknown(key, f"{reason}: {message}" if reason else message)
    evaluation = Evaluation(
        State(state),
        None,
        str(status.get("message") or ""),
        evaluated_at,
        budget_remaining=as_number((status.get("errorBudget") or {}).get("remaining")),
        alerts=_firing_pages(status),
    )
    holding = any(row.get("state") in HOLDING_STATES for row in status.get("targets") or [])
    return SLOGate(key, gate(policy, evaluation, holding=holding))


async def read_gates(reader: SLOReader, keys: Sequence[str]) -> list[SLOGate]:
    """The gate of each SLO, in order; SLOsMissing names every one that does not exist."""
    resources = await asyncio.gather(
        *(reader.read(namespace=key.partition("/")[0], name=key.partition("/")[2]) for key in keys)
    )
    missing = [key for key, resource in zip(keys, resources, strict=True) if resource is None]
    if missing:
        raise SLOsMissing(missing)
    return [gate_of(key, resource) for key, resource in zip(keys, resources, strict=True) if resource is not None]


async def wait_for_gates(
    reader: SLOReader,
    keys: Sequence[str],
    *,
    passes: Callable[[SLOGate], bool],
    within: float,
    report: Callable[[Poll], None],
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
) -> Poll:
    """Read the gates every POLL_SECONDS until every one `passes` or `within` seconds are up; the last poll.

    `report` sees every poll. `within=0` reads once. The first read raises what it meets, as a wrong kubeconfig
    or missing RBAC will not pass by waiting; after it, the API server failing is a poll with a problem, tried again
    while time is left. A missing SLO raises SLOsMissing at once.
    """
    started = clock()
    first = True
    while True:
        try:
            gates = await read_gates(reader, keys)
        except KubernetesUnavailable as error:
            if first:
                raise
            poll = Poll(problem=str(error), elapsed=clock() - started)
        else:
            poll = Poll(tuple(gates), elapsed=clock() - started)
        first = False
        report(poll)
        left = within - (clock() - started)
        if (poll.problem is None and all(passes(item) for item in poll.gates)) or left <= 0:
            return poll
        await sleep(min(POLL_SECONDS, left))


def _unknown(key: str, why: str) -> SLOGate:
    return SLOGate(key, unknown_open(why), unknown=why)


def as_number(value: object) -> float | None:
    """A JSON number as a float; None for null, booleans and anything else."""
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _firing_pages(status: Mapping[str, Any]) -> tuple[AlertStatus, ...]:
    """The firing page tiers, which is all the gate reads of `status.alerts` (their windows are not needed)."""
    return tuple(
        AlertStatus(Severity.PAGE, long_window=0, short_window=0, factor=0.0, firing=True)
        for alert in status.get("alerts") or []
        if alert.get("severity") == Severity.PAGE.value and alert.get("firing") is True
    )
