"""The operator's gates in memory: each SLO's verdict from its last pass, for the gate API and admission.

Every answer is a dictionary lookup: no Prometheus query and no API call per request. Until an SLO's first pass in
this process, its gate is read from the status the last pass (perhaps another process's) wrote.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from slo_guard.domain.display import budget_percent
from slo_guard.domain.evaluation_types import State
from slo_guard.domain.gate import GateVerdict, gate, unknown_open
from slo_guard.domain.model import Policy, Target
from slo_guard.domain.timestamps import parse_rfc3339, rfc3339
from slo_guard.resources import SpecError, objective_from_resource
from slo_guard.service.gate import HOLDING_STATES, as_number, gate_of
from slo_guard.service.ports import ObjectRef
from slo_guard.service.reconcile import Outcome

_ANY_MIN_STEP = 1
"""Only the policy and targets are read from a stored SLO: the lowest floor rejects nothing the operator accepts."""


@dataclass(frozen=True, slots=True)
class GateEntry:
    """One SLO's gate as the operator knows it now."""

    namespace: str
    name: str
    verdict: GateVerdict
    state: str
    """`Healthy`, `Burning`, `Exhausted` or `Unknown`, as `status.state`."""
    budget_remaining: float | None
    evaluated_at: datetime | None
    targets: tuple[Target, ...] = ()
    policy: Policy | None = None
    """None while the spec is invalid."""
    document: bytes = field(default=b"", compare=False)
    """The GET answer, encoded once per pass rather than once per request."""

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def unknown(self) -> bool:
        return self.state == State.UNKNOWN.value


def gate_document(entry: GateEntry) -> dict[str, Any]:
    """The gate API's JSON answer for one SLO."""
    return {
        "open": entry.verdict.open,
        "slo": entry.key,
        "state": entry.state,
        "reason": entry.verdict.reason,
        "message": entry.verdict.message,
        "errorBudget": {"remaining": entry.budget_remaining, "display": budget_percent(entry.budget_remaining)},
        "evaluatedAt": rfc3339(entry.evaluated_at) if entry.evaluated_at is not None else None,
    }


def _with_document(entry: GateEntry) -> GateEntry:
    return replace(entry, document=json.dumps(gate_document(entry), separators=(",", ":")).encode())


def entry_after_pass(ref: ObjectRef, outcome: Outcome) -> GateEntry | None:
    """The gate a pass concluded; None for a pass that concluded nothing (the SLO is being deleted)."""
    evaluation = outcome.evaluation
    if outcome.objective is None or evaluation is None:
        if outcome.invalid is None:
            return None
        verdict = unknown_open(f"InvalidSpec: {outcome.invalid}")
        return _with_document(GateEntry(ref.namespace, ref.name, verdict, State.UNKNOWN.value, None, None))
    objective = outcome.objective
    holding = any(report.state in HOLDING_STATES for report in outcome.targets)
    verdict = gate(objective.policy, evaluation, holding=holding)
    return _with_document(
        GateEntry(
            ref.namespace,
            ref.name,
            verdict,
            evaluation.state.value,
            evaluation.budget_remaining,
            evaluation.evaluated_at,
            objective.targets,
            objective.policy,
        )
    )


def entry_from_resource(ref: ObjectRef, resource: Mapping[str, Any]) -> GateEntry:
    """The gate as the SLO's stored status shows it: what the last pass, in any process, concluded."""
    verdict = gate_of(ref.key, resource).verdict
    status: Mapping[str, Any] = resource.get("status") or {}
    remaining = (status.get("errorBudget") or {}).get("remaining")
    try:
        objective = objective_from_resource(resource, min_step=_ANY_MIN_STEP)
    except SpecError:
        targets: tuple[Target, ...] = ()
        policy = None
    else:
        targets, policy = objective.targets, objective.policy
    state = status.get("state")
    return _with_document(
        GateEntry(
            ref.namespace,
            ref.name,
            verdict,
            state if isinstance(state, str) and policy is not None else State.UNKNOWN.value,
            as_number(remaining),
            parse_rfc3339(status.get("evaluatedAt")),
            targets,
            policy,
        )
    )


class GateBoard:
    """Every SLO's current gate, by name and by target. Only the event loop's thread touches it."""

    def __init__(self) -> None:
        self._entries: dict[str, GateEntry] = {}
        self._by_target: dict[tuple[str, str], dict[str, GateEntry]] = {}
        """(namespace, target name) to the entries of the SLOs naming it, by SLO key."""

    def put(self, entry: GateEntry) -> None:
        self.forget(entry.key)
        self._entries[entry.key] = entry
        for target in entry.targets:
            self._by_target.setdefault((entry.namespace, target.name), {})[entry.key] = entry

    def forget(self, key: str) -> None:
        old = self._entries.pop(key, None)
        if old is None:
            return
        for target in old.targets:
            holders = self._by_target.get((old.namespace, target.name))
            if holders is not None:
                holders.pop(key, None)
                if not holders:
                    del self._by_target[(old.namespace, target.name)]

    def get(self, namespace: str, name: str) -> GateEntry | None:
        return self._entries.get(f"{namespace}/{name}")

    def targeting(self, namespace: str, name: str, *, kind: str | None = None) -> list[GateEntry]:
        """The SLOs whose targets name this workload (of any target kind when `kind` is None), by key."""
        holders = self._by_target.get((namespace, name)) or {}
        return [entry for key, entry in sorted(holders.items()) if kind is None or Target(kind, name) in entry.targets]

    def __len__(self) -> int:
        return len(self._entries)


@dataclass(frozen=True, slots=True)
class FlaggerAnswer:
    status: int
    """200 lets the canary go on; Flagger halts it on any status above 202."""
    message: str
    """One line, which Flagger logs and shows in its Events."""


def flagger_gate(board: GateBoard, payload: object) -> FlaggerAnswer:
    """Answer a Flagger webhook: the canary may go on when every SLO gating it is open.

    The SLOs are those in `metadata.slos` (comma-separated names in the canary's namespace); otherwise those whose
    targets name `metadata.target` (`KIND/NAME` or `NAME`; 404 when none does), else a workload named like the
    canary, as Flagger's canaries usually are (200 when none does: nothing gates it).
    """
    problem = _not_flagger(payload)
    if problem is not None:
        return FlaggerAnswer(400, f"not a Flagger webhook payload: {problem}")
    assert isinstance(payload, Mapping)
    namespace, canary = payload["namespace"], payload["name"]
    metadata: Mapping[str, str] = payload.get("metadata") or {}
    named = [name.strip() for name in metadata.get("slos", "").split(",") if name.strip()]
    if named:
        missing = [f"{namespace}/{name}" for name in named if board.get(namespace, name) is None]
        if missing:
            return FlaggerAnswer(404, f"no ServiceLevelObjective {', '.join(missing)} (named in metadata.slos)")
        entries = [entry for name in named if (entry := board.get(namespace, name)) is not None]
    else:
        kind, _, target = metadata.get("target", canary).rpartition("/")
        entries = board.targeting(namespace, target, kind=kind or None)
        if not entries:
            shown = f"{kind} {target}" if kind else target
            if "target" in metadata:
                # A typo in metadata.target must not let every canary through ungated.
                return FlaggerAnswer(404, f"no ServiceLevelObjective in {namespace} targets {shown} (metadata.target)")
            return FlaggerAnswer(
                200, f"open: no ServiceLevelObjective in {namespace} targets {shown}, so none gates canary {canary}"
            )
    closed = [entry for entry in entries if not entry.verdict.open]
    if closed:
        reasons = "; ".join(f"{entry.key}: {entry.verdict.message}" for entry in closed)
        return FlaggerAnswer(403, f"closed: canary {namespace}/{canary} is held by {reasons}")
    reasons = "; ".join(f"{entry.key}: {entry.verdict.message}" for entry in entries)
    return FlaggerAnswer(200, f"open: {reasons}")


def _not_flagger(payload: object) -> str | None:
    """What makes `payload` something other than Flagger's webhook body; None when it is one."""
    if not isinstance(payload, Mapping):
        return "expected a JSON object"
    # Older Flagger releases send no phase or checksum, and no metadata when the webhook has none.
    for name in ("name", "namespace"):
        if not isinstance(payload.get(name), str) or not payload[name]:
            return f"{name!r} must be a non-empty string"
    metadata = payload.get("metadata")
    if metadata is not None and not (
        isinstance(metadata, Mapping) and all(isinstance(value, str) for value in metadata.values())
    ):
        return "'metadata' must map names to strings"
    return None
