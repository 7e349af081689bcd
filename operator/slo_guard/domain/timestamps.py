"""The one way slo-guard writes a moment as text: RFC 3339 in UTC with a `Z`, as Kubernetes does."""

from __future__ import annotations

from datetime import UTC, datetime


def rfc3339(moment: datetime, *, timespec: str = "seconds") -> str:
    """`2026-11-01T00:00:00Z`; `timespec` as for `datetime.isoformat`. A naive moment is a bug, not UTC."""
    if moment.tzinfo is None:
        raise ValueError(f"a moment must be timezone-aware, got {moment.isoformat()}")
    return moment.astimezone(UTC).isoformat(timespec=timespec).replace("+00:00", "Z")


def parse_rfc3339(value: object) -> datetime | None:
    """An RFC 3339 time with an offset (as annotations and `.status` carry them); None for anything else."""
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None
