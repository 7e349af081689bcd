"""`slo-guard evaluate` finds a latency threshold's bucket however the client spelled `le`, on a real Prometheus.

Go clients write the bound 1 as `le="1"`; the Python and Java clients write `le="1.0"`, and so does every
classic histogram Prometheus 3 ingests. One histogram of each spelling holds the same observations, so both must
give the same, known, SLI.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.utils import floatToGoString
from tests.support.datasets import DURATION, NOW
from tests.support.openmetrics import Document, HistogramSeries, PiecewiseRate, Resolution, backfill, sample_times
from tests.support.prometheus import PrometheusServer

from slo_guard.cli import main

pytestmark = pytest.mark.prometheus

BOUNDS = {0.1: 0.5, 0.25: 0.875, 1.0: 0.96875, 1.5: 0.984375, 10.0: 0.9921875}
"""Upper bound (s) -> share of requests at or under it; dyadic, so every rate and ratio below is exact.

The neighbours of 1 (`0.1`, `1.5`, `10`) are there to be missed: a bucket matcher that also caught one of
them would count its requests as fast too, and change the SLI.
"""
SPELLINGS: dict[str, Callable[[float], str] | None] = {"go": None, "python": floatToGoString}
"""Job -> how its client writes `le`: Go's `1` (the default), the Python client's `1.0`."""
OBJECTIVE = 75
"""Percent; its error budget 0.25 is exact too."""
RPS = 64


@pytest.fixture(scope="module")
def spellings_prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusServer]:
    """Two hours of both histograms at 15 s resolution, ending at NOW."""
    end = NOW.timestamp()
    start = end - 2 * 3600
    times = sample_times(start=start, end=end, resolutions=[Resolution(since=start, step=15)])
    document = Document()
    series = [
        HistogramSeries({"job": job}, PiecewiseRate.constant(RPS, since=start), BOUNDS, mean=0.2, le_text=spelling)
        for job, spelling in SPELLINGS.items()
    ]
    document.histogram(DURATION, series, times=times)
    workdir = tmp_path_factory.mktemp("bucket-spellings")
    backfill(document.text(), workdir / "data")
    with PrometheusServer(workdir) as server:
        yield server


def latency_slo(job: str, threshold: float) -> dict[str, Any]:
    return {
        "apiVersion": "sloguard.io/v1alpha1",
        "kind": "ServiceLevelObjective",
        "metadata": {"name": f"{job}-latency", "namespace": "shop"},
        "spec": {
            "objective": OBJECTIVE,
            "window": "1h",
            "indicator": {"latency": {"histogram": f'{DURATION}{{job="{job}"}}', "threshold": threshold}},
            "targets": [{"kind": "Deployment", "name": job}],
        },
    }


@pytest.mark.parametrize(
    "threshold",
    [1, 0.25],
)
def test_every_spelling_of_the_threshold_bucket_gives_the_same_known_sli(
    threshold: float, spellings_prometheus: PrometheusServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "slos.yaml"
    path.write_text(yaml.safe_dump_all([latency_slo(job, threshold) for job in SPELLINGS]))
    code = main(
        ["evaluate", str(path), "--prometheus", spellings_prometheus.url, "--at", NOW.isoformat(), "--output", "json"]
    )
    rows = json.loads(capsys.readouterr().out)
    burn = (1 - BOUNDS[threshold]) / (1 - OBJECTIVE / 100)
    assert [row["name"] for row in rows] == [f"{job}-latency" for job in SPELLINGS]
    for row in rows:
        status = row["status"]
        assert status["state"] == "Healthy", (row["name"], status["message"])
        assert status["sli"] == BOUNDS[threshold]
        assert status["errorBudget"]["remaining"] == 1 - burn
        assert set(status["burnRates"].values()) == {burn}
    assert code == 0
