"""`kubectl slo override`: which workload, until when, and the annotations that say so."""

from __future__ import annotations

from datetime import datetime, timedelta

from slo_guard.adapters.workloads import DEPLOYMENT, KINDS, ROLLOUT, STATEFULSET, WorkloadKind
from slo_guard.domain.durations import format_duration
from slo_guard.domain.policy import OVERRIDE_REASON, OVERRIDE_UNTIL
from slo_guard.domain.timestamps import rfc3339

KIND_NAMES = {
    **dict.fromkeys(("deployment", "deployments", "deploy"), DEPLOYMENT),
    **dict.fromkeys(("statefulset", "statefulsets", "sts"), STATEFULSET),
    **dict.fromkeys(("rollout", "rollouts", "ro"), ROLLOUT),
}
"""What kubectl accepts for each kind: singular, plural and short name, in any case."""


class OverrideRefused(ValueError):
    """The command line asks for an override slo-guard's rules do not allow; one line saying why."""


def workload(text: str) -> tuple[WorkloadKind, str]:
    """`deploy/checkout`, `StatefulSet/db`, `rollouts.argoproj.io/web`: the kind and the name."""
    kind_text, slash, name = text.partition("/")
    if not slash or not name or "/" in name:
        raise OverrideRefused(f"{text!r} is not KIND/NAME (e.g. deployment/checkout)")
    kind_name, _, group = kind_text.lower().partition(".")
    kind = KINDS.get(KIND_NAMES.get(kind_name, ""))
    if kind is None or group not in ("", kind.group):
        raise OverrideRefused(
            f"cannot override {kind_text!r}: slo-guard targets Deployments, StatefulSets and Rollouts (deploy, sts, ro)"
        )
    return kind, name


def check_ceiling(duration: int, ceiling: int) -> None:
    """Refuse an override longer than the ceiling: an override is an exception, not a way to switch a policy off."""
    if duration > ceiling:
        raise OverrideRefused(
            f"--for {format_duration(duration)} is longer than the ceiling of {format_duration(ceiling)} (--max)"
        )


def override_annotations(*, now: datetime, duration: int, reason: str) -> dict[str, str]:
    """The annotations that let a target's rollouts through until `now + duration`, in UTC with a `Z`."""
    return {OVERRIDE_UNTIL: rfc3339(now + timedelta(seconds=duration)), OVERRIDE_REASON: reason}


def display_name(kind: WorkloadKind, name: str) -> str:
    """`deployment.apps/checkout`, as kubectl names what it changed."""
    return f"{kind.kind.lower()}.{kind.group}/{name}"
