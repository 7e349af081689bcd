"""Synthetic metric history as OpenMetrics text, backfilled into a Prometheus TSDB with promtool.

Counters are the exact integral of a piecewise-constant rate, so every ratio a test derives from the
generating rates is exactly what Prometheus computes from the samples. Sample spacing may be coarse for old
history and fine for recent history (promtool's cost grows with the number of samples).
"""

from __future__ import annotations

import math
import subprocess
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.prometheus import prometheus_bin


@dataclass(frozen=True, slots=True)
class PiecewiseRate:
    """Events per second that change only at given instants; the counter is 0 at the first instant."""

    segments: tuple[tuple[float, float], ...]
    """(start in unix seconds, events per second) in time order; each rate holds until the next start."""

    def __post_init__(self) -> None:
        starts = [start for start, _ in self.segments]
        if not starts or starts != sorted(starts):
            raise ValueError("segments must be non-empty and in time order")

    @classmethod
    def constant(cls, rate: float, *, since: float) -> PiecewiseRate:
        return cls(((since, rate),))

    def then(self, rate: float, *, since: float) -> PiecewiseRate:
        """This rate up to `since`, `rate` from then on."""
        return PiecewiseRate((*self.segments, (since, rate)))

    def scaled(self, factor: float) -> PiecewiseRate:
        """The same shape with every rate multiplied, e.g. the error share of a total."""
        return PiecewiseRate(tuple((start, rate * factor) for start, rate in self.segments))

    @property
    def start(self) -> float:
        return self.segments[0][0]

    def counter(self, at: float) -> float:
        """Events from the first instant up to `at`: the value a counter exports at `at`."""
        total = 0.0
        ends = [start for start, _ in self.segments[1:]] + [math.inf]
        for (start, rate), end in zip(self.segments, ends, strict=True):
            if at <= start:
                break
            total += rate * (min(at, end) - start)
        return total

    def events(self, start: float, end: float) -> float:
        return self.counter(end) - self.counter(start)


@dataclass(frozen=True, slots=True)
class Resolution:
    """Sample spacing from an instant on (until the next Resolution or the end)."""

    since: float
    """Unix seconds."""
    step: float
    """Seconds between samples."""


def sample_times(*, start: float, end: float, resolutions: Sequence[Resolution]) -> list[float]:
    """Timestamps from `start` to `end` (both included), spaced by the Resolution in force at each point.

    Each stretch starts exactly at its `since`, so window edges placed on those instants fall on samples.
    """
    edges = [*(max(start, r.since) for r in resolutions[1:]), end]
    stretches = zip([start, *edges[:-1]], edges, [r.step for r in resolutions], strict=True)
    times: list[float] = []
    for stretch_start, stretch_end, step in stretches:
        count = math.ceil((stretch_end - stretch_start) / step)
        times.extend(t for t in (stretch_start + k * step for k in range(count)) if t < stretch_end)
    times.append(end)
    return times


@dataclass(frozen=True, slots=True)
class CounterSeries:
    labels: Mapping[str, str]
    rate: PiecewiseRate
    last_sample: float | None = None
    """No samples after this instant (a target that stopped being scraped); None for no cut-off."""


@dataclass(frozen=True, slots=True)
class HistogramSeries:
    labels: Mapping[str, str]
    rate: PiecewiseRate
    """Observations per second."""
    bucket_fractions: Mapping[float, float]
    """Upper bound in seconds -> cumulative fraction of observations at or below it; +Inf is implied as 1."""
    mean: float
    """Mean observed value, which makes `_sum` = mean * `_count`."""
    last_sample: float | None = None
    """No samples after this instant; None for no cut-off."""
    le_text: Callable[[float], str] | None = None
    """How the client writes a bound in `le`; None for Go's spelling (`1`, `0.25`)."""


@dataclass(slots=True)
class Document:
    """An OpenMetrics exposition being assembled family by family."""

    lines: list[str] = field(default_factory=list)

    def counter(self, name: str, series: Iterable[CounterSeries], *, times: Sequence[float]) -> None:
        """A counter family: `name` without `_total`; samples are `name_total{...}`."""
        self.lines.append(f"# TYPE {name} counter")
        for one in series:
            labels = _labels(one.labels)
            for t in _until(times, one.last_sample):
                self.lines.append(f"{name}_total{labels} {_number(one.rate.counter(t))} {_number(t)}")

    def histogram(self, name: str, series: Iterable[HistogramSeries], *, times: Sequence[float]) -> None:
        self.lines.append(f"# TYPE {name} histogram")
        for one in series:
            bounds = sorted(one.bucket_fractions)
            le_text = one.le_text or _number
            for t in _until(times, one.last_sample):
                count = one.rate.counter(t)
                stamp = _number(t)
                for bound in bounds:
                    labels = _labels({**one.labels, "le": le_text(bound)})
                    value = count * one.bucket_fractions[bound]
                    self.lines.append(f"{name}_bucket{labels} {_number(value)} {stamp}")
                self.lines.append(f"{name}_bucket{_labels({**one.labels, 'le': '+Inf'})} {_number(count)} {stamp}")
                self.lines.append(f"{name}_count{_labels(one.labels)} {_number(count)} {stamp}")
                self.lines.append(f"{name}_sum{_labels(one.labels)} {_number(count * one.mean)} {stamp}")

    def text(self) -> str:
        return "\n".join([*self.lines, "# EOF", ""])


def backfill(text: str, storage_dir: Path, *, max_block_duration: str = "1000h") -> None:
    """Write `text` as TSDB blocks into `storage_dir` (created if needed) with promtool."""
    with tempfile.TemporaryDirectory(prefix="openmetrics-") as scratch:
        source = Path(scratch) / "history.om"
        source.write_text(text, encoding="utf-8")
        backfill_file(source, storage_dir, max_block_duration=max_block_duration)


def backfill_file(source: Path, storage_dir: Path, *, max_block_duration: str = "1000h") -> None:
    """Write the OpenMetrics file `source` as TSDB blocks into `storage_dir` (created if needed) with promtool.

    promtool re-reads the whole input once per block it writes; long blocks (a hidden promtool flag that
    Prometheus 2.42 honours) keep that to a few passes instead of one per 2 h of history.
    """
    storage_dir.mkdir(parents=True, exist_ok=True)
    completed = subprocess.run(
        [
            str(prometheus_bin("promtool")),
            "tsdb",
            "create-blocks-from",
            "openmetrics",
            f"--max-block-duration={max_block_duration}",
            "--quiet",
            str(source),
            str(storage_dir),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"promtool backfill failed ({completed.returncode}): {completed.stderr.strip()}")


def _until(times: Sequence[float], last: float | None) -> Iterable[float]:
    return times if last is None else (t for t in times if t <= last)


def _labels(labels: Mapping[str, str]) -> str:
    if not labels:
        return ""
    pairs = (f'{name}="{_escape(value)}"' for name, value in sorted(labels.items()))
    return "{" + ",".join(pairs) + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    """Shortest text that parses back to the same float; integers without a fraction."""
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return str(int(value)) if float(value).is_integer() else repr(float(value))
