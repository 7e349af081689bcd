"""When each SLO is evaluated: a fixed rate per SLO, with phases spread across the interval."""

from __future__ import annotations

import hashlib
import math


def phase_offset(key: str, interval: float) -> float:
    """A stable offset in [0, interval) derived from the SLO's identity, so restarts keep the same spread."""
    digest = hashlib.sha256(key.encode()).digest()
    fraction = int.from_bytes(digest[:8], "big") / 2**64
    return fraction * interval


def next_slot(*, now: float, anchor: float, interval: float) -> float:
    """The first slot `anchor + k * interval` strictly after `now`.

    A pass that overran its interval skips the missed slots instead of running them back to back.
    """
    if now < anchor:
        return anchor
    return anchor + (math.floor((now - anchor) / interval) + 1) * interval
