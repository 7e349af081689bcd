"""UI benchmark: the overview of 1,000 SLOs, its server time and size, with and without sparklines; one detail page.

Everything is real: the `UIServer` on a loopback port, pages fetched over HTTP as a browser would (gzip accepted),
and for the charts a real Prometheus over the test suite's 30-day dataset (built with promtool into a temporary
directory), queried with the evaluation's own PromQL (no recording rules). Server time is the page's own
`Server-Timing: render` header: building the page, not compressing or sending it. The statuses are slo-guard's own
evaluations of the dataset's services, each reused by a quarter of the SLOs; every SLO's queries differ in text.

1. Overview without range queries (no Prometheus): render time p50/p99 over repeated renders, page size.
2. Overview with sparklines: the first round of N range queries (its wall time is the cost Prometheus sees), then
   repeated renders from the cache, page size.
3. One detail page: its range queries cold (budget, SLI and every tier's windows, at most 500 points each), then
   the page from the cache.

Run: PYTHONPATH=. .venv/bin/python -m benchmarks.ui [--slos N] [--renders R]
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import gzip
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
from tests.integration.test_ui_charts import DatasetRanges
from tests.support.datasets import NOW, build_storage, ratio_slo
from tests.support.prometheus import PrometheusServer, free_port

from slo_guard.adapters.prometheus import PrometheusClient, PrometheusSettings
from slo_guard.handlers.ui_server import UIServer, slo_path
from slo_guard.resources import objective_from_resource, status_from_evaluation
from slo_guard.service.evaluation import EvaluationSettings, evaluate_objective
from slo_guard.service.gate_board import GateBoard, entry_from_resource
from slo_guard.service.ports import ObjectRef, RangeSource

JOBS = ("steady", "spike", "exhausted", "idle")
"""Healthy, Burning, Exhausted and Unknown, in turn."""
NAMESPACES = 20
LOOPBACK = "127.0.0.1"
ROUND_TIMEOUT = 300.0


@dataclass(frozen=True, slots=True)
class Renders:
    server_ms: list[float]
    """Each render's `Server-Timing`."""
    raw_bytes: int
    wire_bytes: int
    """Gzip-compressed, as sent to a browser."""

    def line(self, label: str) -> str:
        ordered = sorted(self.server_ms)
        p50 = statistics.median(ordered)
        p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
        return (
            f"{label:<44} server p50 {p50:7.1f} ms  p99 {p99:7.1f} ms  "
            f"{self.raw_bytes / 1000:6.0f} KB ({self.wire_bytes / 1000:4.0f} KB gzip)"
        )


async def statuses(prometheus: PrometheusServer, now: datetime) -> dict[str, dict[str, Any]]:
    """Each job's status as slo-guard's evaluation writes it, at the dataset's end shown as now."""
    written = {}
    async with PrometheusClient(PrometheusSettings(url=prometheus.url)) as client:
        for job in JOBS:
            objective = objective_from_resource(ratio_slo(job), min_step=30)
            evaluation = await evaluate_objective(
                objective, client, at=NOW, settings=EvaluationSettings(max_staleness=120)
            )
            written[job] = status_from_evaluation(replace(evaluation, evaluated_at=now), digits=3)
    return written


def world(count: int, written: dict[str, dict[str, Any]]) -> tuple[GateBoard, dict[str, dict[str, Any]]]:
    board, bodies = GateBoard(), {}
    for index in range(count):
        job = JOBS[index % len(JOBS)]
        name, namespace = f"checkout-availability-{index:04d}", f"team-{index % NAMESPACES:02d}"
        body = ratio_slo(job, name=name)
        body["metadata"]["namespace"] = namespace
        # A matcher that selects nothing less, so every SLO's query text (and so its work) is its own.
        ratio = body["spec"]["indicator"]["ratio"]
        for field in ("errors", "total"):
            ratio[field] = ratio[field].replace("}", f',instance!="none-{index}"}}')
        status = copy.deepcopy(written[job])
        remaining = status["errorBudget"]["remaining"]
        if remaining is not None:
            # Every row's numbers its own, as in a real fleet, so gzip finds no more repetition than there is.
            status["errorBudget"]["remaining"] = round(remaining - index / 10_000, 4)
            status["timeToExhaustion"] = 3_600 + index * 997
        status["targets"] = [
            {"kind": "Deployment", "name": job, "state": "Paused" if job == "exhausted" else "Untouched"}
        ]
        body["status"] = status
        bodies[f"{namespace}/{name}"] = body
        board.put(entry_from_resource(ObjectRef("v", "k", namespace, name), body))
    return board, bodies


async def fetch(session: aiohttp.ClientSession, url: str) -> tuple[float, int, int, str]:
    """(server ms, raw bytes, wire bytes, text) of one GET."""
    async with session.get(url, headers={"Accept-Encoding": "gzip"}) as response:
        response.raise_for_status()
        wire = await response.read()
        timing = response.headers["Server-Timing"]
    raw = gzip.decompress(wire) if response.headers.get("Content-Encoding") == "gzip" else wire
    return float(timing.partition("dur=")[2]), len(raw), len(wire), raw.decode()


async def renders(session: aiohttp.ClientSession, url: str, count: int) -> Renders:
    timings = []
    raw = wire = 0
    for _ in range(count):
        server_ms, raw, wire, _ = await fetch(session, url)
        timings.append(server_ms)
    return Renders(timings, raw, wire)


def sparklines(page: str) -> int:
    """Rows whose sparkline is drawn, or known to have nothing to draw (an SLO without traffic)."""
    return page.count("<svg ") + page.count("no budget data")


async def serving(
    board: GateBoard, bodies: dict[str, dict[str, Any]], charts: RangeSource | None
) -> tuple[UIServer, str]:
    port = free_port()
    server = UIServer(board, bodies, charts, port=port, host=LOOPBACK)
    await server.start()
    return server, f"http://{LOOPBACK}:{port}"


async def run(options: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="slo-guard-ui-bench-") as scratch:
        started = time.monotonic()
        storage = build_storage(Path(scratch) / "data")
        print(f"dataset backfilled in {time.monotonic() - started:.1f} s", flush=True)
        with PrometheusServer(Path(scratch), storage_dir=storage) as prometheus:
            now = datetime.now(UTC).replace(microsecond=0)
            board, bodies = world(options.slos, await statuses(prometheus, now))
            ranges = DatasetRanges(prometheus.url, shift=now.timestamp() - NOW.timestamp())
            lines = [f"{options.slos} SLOs in {NAMESPACES} namespaces, {options.renders} renders each"]
            async with aiohttp.ClientSession(auto_decompress=False) as session:
                server, url = await serving(board, bodies, None)
                try:
                    await renders(session, url, 3)  # warm-up
                    lines.append((await renders(session, url, options.renders)).line("overview, no range queries"))
                finally:
                    await server.stop()

                server, url = await serving(board, bodies, ranges)
                try:
                    started = time.monotonic()
                    while sparklines((await fetch(session, url))[3]) < options.slos:
                        if time.monotonic() - started > ROUND_TIMEOUT:
                            raise TimeoutError("the sparkline round did not finish")
                        await asyncio.sleep(0.2)
                    round_seconds = time.monotonic() - started
                    lines.append(
                        f"{'sparkline round (cold cache)':<44} {len(ranges.queries)} range queries in "
                        f"{round_seconds:.1f} s ({len(ranges.queries) / round_seconds:.0f}/s, 4 at a time)"
                    )
                    lines.append((await renders(session, url, options.renders)).line("overview, 24 h sparklines"))
                    detail = url + slo_path("team-01", "checkout-availability-0001")
                    sent = len(ranges.queries)
                    started = time.monotonic()
                    async with session.get(f"{url}/api/v1{detail.removeprefix(url)}/series") as response:
                        response.raise_for_status()
                        await response.read()
                    lines.append(
                        f"{'detail series (cold cache)':<44} {len(ranges.queries) - sent} range queries in "
                        f"{(time.monotonic() - started) * 1000:.0f} ms"
                    )
                    lines.append((await renders(session, detail, options.renders)).line("detail page, series cached"))
                finally:
                    await server.stop()
    print("\n".join(lines))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--slos", type=int, default=1000, help="SLOs on the overview (default 1000)")
    parser.add_argument("--renders", type=int, default=50, help="renders measured per page (default 50)")
    asyncio.run(run(parser.parse_args(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
