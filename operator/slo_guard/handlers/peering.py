"""When kopf pauses this replica for a peer: the rule kopf applies to its peering objects, restated.

kopf stops its watches while paused but tells handlers nothing; the scheduler must stop with it, so the runtime
reads the same peering objects and applies the same rule (kopf 1.45, `process_peering_event`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

from slo_guard.domain.timestamps import parse_rfc3339

KOPF_DEFAULT_LIFETIME = 60


def paused_by_peers(statuses: Iterable[Mapping[str, Any]], *, identity: str, priority: int, now: datetime) -> bool:
    """Whether a live peer other than `identity` has a higher priority, or the same one (kopf then pauses all)."""
    for status in statuses:
        for peer, keepalive in status.items():
            if peer == identity or not isinstance(keepalive, Mapping):
                continue
            if _alive(keepalive, now=now) and _priority(keepalive) >= priority:
                return True
    return False


def _alive(keepalive: Mapping[str, Any], *, now: datetime) -> bool:
    seen = parse_rfc3339(keepalive.get("lastseen"))
    if seen is None:
        return True  # kopf counts a peer without a keep-alive time as seen just now
    try:
        lifetime = int(keepalive.get("lifetime", KOPF_DEFAULT_LIFETIME))
    except (TypeError, ValueError):
        lifetime = KOPF_DEFAULT_LIFETIME
    return seen + timedelta(seconds=lifetime) > now


def _priority(keepalive: Mapping[str, Any]) -> int:
    try:
        return int(keepalive.get("priority", 0))
    except (TypeError, ValueError):
        return 0
