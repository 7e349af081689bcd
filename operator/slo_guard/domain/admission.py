"""Admission for Deny policies: refuse a change that would start a rollout of a workload an SLO holds.

A rollout starts when `spec.template` changes; scaling, labels and annotations do not start one and always pass.
Decided from the gates in memory alone, so it costs microseconds and never waits on Prometheus or the API server.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from slo_guard.domain.gate import GateVerdict
from slo_guard.domain.model import PolicyMode
from slo_guard.domain.policy import OVERRIDE_REASON, OVERRIDE_UNTIL
from slo_guard.domain.timestamps import parse_rfc3339, rfc3339


class AdmissionDecision(enum.StrEnum):
    """The label of `slo_guard_admission_decisions_total`."""

    ALLOWED = "allowed"
    WARNED = "warned"
    """Allowed, with a warning: an Unknown SLO, or a DryRun one that would have denied."""
    OVERRIDDEN = "overridden"
    """Allowed past a freeze by `sloguard.io/override-until` on the object."""
    DENIED = "denied"


@dataclass(frozen=True, slots=True)
class Freeze:
    """One Deny SLO that names the workload, with its gate now."""

    slo: str
    """`namespace/name`."""
    mode: PolicyMode
    verdict: GateVerdict
    unknown: bool
    """The SLO has no usable data: its gate is open whatever it held."""


@dataclass(frozen=True, slots=True)
class AdmissionVerdict:
    decision: AdmissionDecision
    message: str
    """Why; for a denial, the whole answer kubectl prints."""
    warnings: tuple[str, ...] = ()
    frozen_by: tuple[str, ...] = ()
    """The SLOs whose freeze denied the change or that an override got past; each gets an Event."""

    @property
    def allowed(self) -> bool:
        return self.decision is not AdmissionDecision.DENIED


def admit(
    *,
    workload: str,
    template_changed: bool,
    annotations: dict[str, str],
    now: datetime,
    freezes: Sequence[Freeze],
) -> AdmissionVerdict:
    """Whether an UPDATE of `workload` (e.g. `Deployment checkout`) may go ahead.

    `annotations` are the updated object's, so an override set in the same change as a hotfix lets it through.
    """
    if not template_changed or not freezes:
        return AdmissionVerdict(AdmissionDecision.ALLOWED, "no rollout of a held workload")
    warnings = [
        f"slo-guard: ServiceLevelObjective {freeze.slo} has no usable data, so this rollout is not held; "
        f"{freeze.verdict.message}"
        for freeze in freezes
        if freeze.unknown
    ]
    warnings += [
        f"slo-guard DryRun: ServiceLevelObjective {freeze.slo} would deny this rollout: {freeze.verdict.message}"
        for freeze in freezes
        if freeze.mode is PolicyMode.DRY_RUN and not freeze.verdict.open
    ]
    frozen = [freeze for freeze in freezes if freeze.mode is PolicyMode.ENFORCE and not freeze.verdict.open]
    if not frozen:
        decision = AdmissionDecision.WARNED if warnings else AdmissionDecision.ALLOWED
        return AdmissionVerdict(decision, "no freeze in force", tuple(warnings))
    slos = tuple(freeze.slo for freeze in frozen)
    named = ", ".join(slos)
    raw_until = annotations.get(OVERRIDE_UNTIL)
    until = parse_rfc3339(raw_until)
    if until is not None and now < until:
        reason = annotations.get(OVERRIDE_REASON)
        override = f"override until {rfc3339(until)}" + (f" ({reason})" if reason else "")
        warnings.append(f"slo-guard: {override} lets this rollout of {workload} past ServiceLevelObjective {named}")
        return AdmissionVerdict(AdmissionDecision.OVERRIDDEN, f"{workload}: {override}", tuple(warnings), slos)
    why = "; ".join(f"{freeze.slo}: {freeze.verdict.message}" for freeze in frozen)
    if raw_until is not None:
        why += f"; {OVERRIDE_UNTIL}={raw_until!r} " + (
            "has passed" if until is not None else "is not an RFC 3339 time with an offset"
        )
    message = (
        f"slo-guard: rollouts of {workload} are frozen by the error-budget policy of ServiceLevelObjective {why}. "
        f"To ship a fix anyway, set the annotation {OVERRIDE_UNTIL} to an RFC 3339 time in the future "
        f"(and {OVERRIDE_REASON}) in the same change"
    )
    return AdmissionVerdict(AdmissionDecision.DENIED, message, tuple(warnings), slos)
