"""Liveness bookkeeping: the evaluation loop is alive while every SLO starts or ends a pass within 3x its interval."""

from __future__ import annotations

from dataclasses import dataclass, field

STALL_FACTOR = 3.0


@dataclass(slots=True)
class _Beat:
    at: float
    interval: float


@dataclass(slots=True)
class EvaluationHeartbeats:
    _beats: dict[str, _Beat] = field(default_factory=dict)

    def beat(self, key: str, *, interval: float, now: float) -> None:
        """Record the start or the end of a pass (or the start of the loop, which gets the same grace)."""
        self._beats[key] = _Beat(at=now, interval=interval)

    def forget(self, key: str) -> None:
        self._beats.pop(key, None)

    def stalled(self, *, now: float) -> list[str]:
        """SLOs whose loop has neither started nor completed a pass in STALL_FACTOR x their interval."""
        return sorted(key for key, beat in self._beats.items() if now - beat.at > STALL_FACTOR * beat.interval)

    def __len__(self) -> int:
        return len(self._beats)
