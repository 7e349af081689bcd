"""Liveness bookkeeping: the evaluation loop is alive while every SLO passes within 3x its interval.

A pass in progress gets longer: it may be throttled by the write bucket (hundreds of targets) and every call in it
has a timeout, so only a pass older than IN_PASS_GRACE is taken for a stuck loop.
"""

from __future__ import annotations

from dataclasses import dataclass, field

STALL_FACTOR = 3.0
IN_PASS_GRACE = 300.0
"""Seconds a single pass may run before liveness fails, whatever the interval."""


@dataclass(slots=True)
class _Beat:
    at: float
    interval: float
    in_pass: bool = False


@dataclass(slots=True)
class EvaluationHeartbeats:
    _beats: dict[str, _Beat] = field(default_factory=dict)

    def beat(self, key: str, *, interval: float, now: float, in_pass: bool = False) -> None:
        """Record the start (`in_pass`) or the end of a pass, or the start of the loop (same grace as an end)."""
        self._beats[key] = _Beat(at=now, interval=interval, in_pass=in_pass)

    def forget(self, key: str) -> None:
        self._beats.pop(key, None)

    def stalled(self, *, now: float) -> list[str]:
        """SLOs idle for STALL_FACTOR x their interval, or in one pass for longer than that and IN_PASS_GRACE."""
        return sorted(key for key, beat in self._beats.items() if now - beat.at > _allowed(beat))

    def __len__(self) -> int:
        return len(self._beats)

    def __contains__(self, key: object) -> bool:
        return key in self._beats


def _allowed(beat: _Beat) -> float:
    idle = STALL_FACTOR * beat.interval
    return max(idle, IN_PASS_GRACE) if beat.in_pass else idle
