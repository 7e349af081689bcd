"""Prometheus duration strings (`1h30m`, `30d`) to whole seconds and back."""

from __future__ import annotations

import itertools
import re

_MILLIS_PER_UNIT = {
    "y": 365 * 86_400_000,
    "w": 7 * 86_400_000,
    "d": 86_400_000,
    "h": 3_600_000,
    "m": 60_000,
    "s": 1_000,
    "ms": 1,
}
"""Units in the descending order Prometheus requires."""

_UNIT_RANK = {unit: rank for rank, unit in enumerate(_MILLIS_PER_UNIT)}

_FORMAT_UNITS = (("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1))
"""Canonical units: days are the largest unit whose length never varies in the way people read it."""

_PART = re.compile(r"(?P<number>[0-9]+)(?P<unit>[a-zA-Z]+)")

_MAX_MILLIS = 2**63 - 1
"""Prometheus keeps durations in int64 milliseconds and rejects anything longer."""


class DurationError(ValueError):
    """A duration string Prometheus would not accept, or one slo-guard cannot use."""


def parse_duration(text: str) -> int:
    """Parse a Prometheus duration (`90s`, `1h30m`, `2w`) into a positive number of whole seconds."""
    if not text:
        raise DurationError(f"invalid duration {text!r}: it is empty")
    millis = sum(int(match["number"]) * _MILLIS_PER_UNIT[match["unit"]] for match in _parts(text))
    if millis == 0:
        raise DurationError(f"invalid duration {text!r}: it must be longer than zero")
    if millis > _MAX_MILLIS:
        raise DurationError(f"invalid duration {text!r}: it is longer than Prometheus can represent")
    if millis % 1_000:
        raise DurationError(f"invalid duration {text!r}: it is not a whole number of seconds")
    return millis // 1_000


def format_duration(seconds: int) -> str:
    """Canonical form (`5400` -> `1h30m`): units d h m s, largest first, zero parts left out."""
    if seconds <= 0:
        raise DurationError(f"cannot format duration {seconds!r}: it must be a positive number of seconds")
    parts = []
    remainder = seconds
    for unit, unit_seconds in _FORMAT_UNITS:
        count, remainder = divmod(remainder, unit_seconds)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)


def _parts(text: str) -> list[re.Match[str]]:
    """Split into number+unit parts, rejecting anything in between (signs, dots, spaces)."""
    matches = []
    offset = 0
    while offset < len(text):
        match = _PART.match(text, offset)
        if match is None:
            raise _unexpected(text, offset)
        matches.append(match)
        offset = match.end()
    _check_order(text, matches)
    return matches


def _check_order(text: str, matches: list[re.Match[str]]) -> None:
    units = [match["unit"] for match in matches]
    for unit in units:
        if unit not in _UNIT_RANK:
            raise DurationError(f"invalid duration {text!r}: unknown unit {unit!r} (use y w d h m s ms)")
        if units.count(unit) > 1:
            raise DurationError(f"invalid duration {text!r}: unit {unit!r} appears more than once")
    for earlier, later in itertools.pairwise(units):
        if _UNIT_RANK[later] < _UNIT_RANK[earlier]:
            raise DurationError(f"invalid duration {text!r}: unit {later!r} must come before {earlier!r}")


def _unexpected(text: str, offset: int) -> DurationError:
    rest = text[offset:]
    if rest[0] in "+-":
        problem = "signs are not allowed (durations are positive)"
    elif "." in rest or "," in rest:
        problem = "fractions are not allowed, use a smaller unit (90m, not 1.5h)"
    elif rest[0].isspace():
        problem = "whitespace is not allowed"
    elif rest.isdigit():
        problem = "the number has no unit"
    else:
        problem = "expected a whole number followed by a unit"
    return DurationError(f"invalid duration {text!r}: {problem}; found {rest!r} at offset {offset}")
