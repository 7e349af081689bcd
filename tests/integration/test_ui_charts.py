"""The UI's charts against a real Prometheus: what they draw is the dataset's known answers, and a Prometheus that
cannot answer costs only the charts, never the page.

`DatasetRanges` and `dataset_world` are shared with the browser tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
import yaml
from tests.support.datasets import EXPECTED, NOW, ratio_slo
from tests.support.exporter import SyntheticService, Traffic
from tests.support.prometheus import PrometheusServer

from slo_guard.adapters.prometheus import PrometheusClient, PrometheusSettings
from slo_guard.domain.model import Objective, RatioIndicator
from slo_guard.domain.recording import managed_rule_groups
from slo_guard.domain.selectors import parse_selector
from slo_guard.domain.windows import default_tiers
from slo_guard.handlers.ui_server import UIServer
from slo_guard.resources import objective_from_resource, status_from_evaluation
from slo_guard.service.evaluation import EvaluationSettings, evaluate_objective
from slo_guard.service.gate_board import GateBoard, entry_from_resource
from slo_guard.service.ports import ObjectRef, PrometheusUnavailable, QueryRejected, RangeSource, UnavailableReason
from slo_guard.service.ui import error_ratio_expr

pytestmark = pytest.mark.prometheus


class DatasetRanges:
    """A RangeSource over a real Prometheus's `/api/v1/query_range`, for tests (the operator's own is the adapter's).

    `shift` seconds are taken off every time sent and added to every time received, so a backfilled history that
    ends at a fixed moment reads as if it ended now.
    """

    def __init__(self, url: str, *, shift: float = 0.0) -> None:
        self.url = url
        self.shift = shift
        self.queries: list[str] = []

    async def query_range(
        self, expr: str, *, start: datetime, end: datetime, step: float
    ) -> Sequence[tuple[float, float]]:
        self.queries.append(expr)
        params = {
            "query": expr,
            "start": f"{start.timestamp() - self.shift:.3f}",
            "end": f"{end.timestamp() - self.shift:.3f}",
            "step": f"{step:g}",
        }
        try:
            async with (
                aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session,
                session.get(f"{self.url}/api/v1/query_range", params=params) as response,
            ):
                body = await response.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError) as error:
            raise PrometheusUnavailable(
                UnavailableReason.UNREACHABLE, f"cannot reach Prometheus at {self.url}: {error}"
            ) from error
        if response.status != 200:
            raise QueryRejected(f"Prometheus refused {expr}", status=response.status, error=str(body.get("error")))
        result = body["data"]["result"]
        assert len(result) <= 1, f"{expr} is not aggregated"
        return [(float(moment) + self.shift, float(value)) for moment, value in result[0]["values"]] if result else []


@dataclass
class World:
    board: GateBoard
    bodies: dict[str, dict[str, Any]]
    ranges: DatasetRanges
    now: datetime


def _ago(now: datetime, **delta: float) -> str:
    return (now - timedelta(**delta)).isoformat().replace("+00:00", "Z")


def _action(at: str, target: str, action: str, result: str, *, reason: str, message: str) -> dict[str, str]:
    return {"time": at, "kind": "Deployment", "name": target, "action": action, "result": result, "reason": reason,
            "message": message}  # fmt: skip


def _target(since: str, target: str, state: str, *, reason: str, message: str) -> dict[str, str]:
    return {"kind": "Deployment", "name": target, "state": state, "since": since, "reason": reason,
            "message": message}  # fmt: skip


def _history(now: datetime) -> dict[str, tuple[dict[str, Any], list[Any], list[Any]]]:
    """Per job: the policy, `status.targets` and `status.actions` the operator would have written by now."""
    return {
        "steady": (
            {},
            [_target(_ago(now, days=18), "steady", "Untouched", reason="WithinBudget", message="No action needed")],
            [
                _action(_ago(now, days=20), "steady", "Pause", "Applied", reason="Paused",
                        message="Error budget policy: paused Deployment steady"),
                _action(_ago(now, days=18), "steady", "Resume", "Applied", reason="Resumed",
                        message="Budget recovered; resumed Deployment steady"),
            ],
        ),
        "spike": (
            {"trigger": "FastBurn"},
            [
                _target(_ago(now, minutes=50), "spike", "Paused", reason="Paused",
                        message="Holding Deployment spike paused"),
                _target(_ago(now, minutes=20), "spike-worker", "Overridden", reason="OverrideActive",
                        message="sloguard.io/override-until (hotfix) lets rollouts through"),
            ],
            [
                _action(_ago(now, minutes=50), "spike", "Pause", "Applied", reason="Paused",
                        message="Error budget policy: paused Deployment spike"),
                _action(_ago(now, minutes=50), "spike-worker", "Pause", "Applied", reason="Paused",
                        message="Error budget policy: paused Deployment spike-worker"),
                _action(_ago(now, minutes=35), "spike", "Pause", "Applied", reason="PauseReasserted",
                        message="spec.paused reverted by argocd-controller; re-applied"),
                _action(_ago(now, minutes=20), "spike-worker", "Resume", "Applied", reason="OverrideActive",
                        message="sloguard.io/override-until until 18:00 (hotfix): resumed Deployment spike-worker"),
            ],
        ),
        "exhausted": (
            {"mode": "DryRun"},
            [_target(_ago(now, days=3), "exhausted", "WouldPause", reason="Paused",
                     message="DryRun: would pause Deployment exhausted")],
            [_action(_ago(now, days=3), "exhausted", "Pause", "DryRun", reason="Paused",
                     message="DryRun: would pause Deployment exhausted")],
        ),
        "idle": (
            {},
            [_target(_ago(now, hours=2), "idle", "Untouched", reason="HoldingOnMissingData", message="No usable data")],
            [],
        ),
    }  # fmt: skip


async def dataset_world(prometheus: PrometheusServer, *, extra: Sequence[dict[str, Any]] = ()) -> World:
    """SLOs on the dataset's jobs, evaluated by slo-guard's own evaluation as of the dataset's end, shown as now."""
    now = datetime.now(UTC).replace(microsecond=0)
    board, bodies = GateBoard(), {}
    settings = EvaluationSettings(max_staleness=120)
    async with PrometheusClient(PrometheusSettings(url=prometheus.url)) as client:
        for job, (policy, targets, actions) in _history(now).items():
            body = ratio_slo(job)
            body["spec"]["policy"] = policy
            body["spec"]["targets"] = [{"kind": "Deployment", "name": target["name"]} for target in targets]
            body["spec"]["description"] = f"Availability of {job}: 99.9 % of requests answered without a 5xx."
            objective = objective_from_resource(body, min_step=30)
            evaluation = await evaluate_objective(objective, client, at=NOW, settings=settings)
            body["status"] = {
                **status_from_evaluation(replace(evaluation, evaluated_at=now), digits=3),
                "targets": targets,
                "actions": actions,
            }
            bodies[objective.key] = body
    for body in extra:
        bodies[f"{body['metadata']['namespace']}/{body['metadata']['name']}"] = body
    for key, body in bodies.items():
        namespace, _, name = key.partition("/")
        board.put(entry_from_resource(ObjectRef("v", "k", namespace, name), body))
    return World(board, bodies, DatasetRanges(prometheus.url, shift=now.timestamp() - NOW.timestamp()), now)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.asynccontextmanager
async def serving(world: World, charts: RangeSource | None = None, **options: Any) -> AsyncIterator[str]:
    port = free_port()
    ranges = world.ranges if charts is None else charts
    server = UIServer(world.board, world.bodies, ranges, port=port, host="127.0.0.1", **options)
    await server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await server.stop()


async def get(url: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, await response.text()


SPIKE = "/namespaces/shop/servicelevelobjectives/spike-availability"


async def test_the_series_are_the_dataset_s_numbers(dataset_prometheus: PrometheusServer) -> None:
    world = await dataset_world(dataset_prometheus)
    async with serving(world) as url:
        status, text = await get(f"{url}/api/v1{SPIKE}/series")
    assert status == 200
    series = json.loads(text)
    assert (series["slo"], series["source"], series["objective"]) == ("shop/spike-availability", "PromQL", 0.999)
    budget = series["budget"]
    assert len(budget["t"]) == len(budget["remaining"]) <= 500
    assert budget["t"][-1] - budget["t"][0] >= 30 * 86_400
    # The last point is now, which the shifted source reads as the dataset's end.
    assert budget["remaining"][-1] == pytest.approx(EXPECTED["spike"].budget_remaining(), abs=0.002)
    assert budget["remaining"][0] == pytest.approx(EXPECTED["steady"].budget_remaining(), abs=0.002)
    # Each SLI point covers the shortest window at least one step (1h26m35s) long: 2 h.
    assert series["sli"]["window"] == "2h"
    assert series["sli"]["sli"][-1] == pytest.approx(1 - (EXPECTED["spike"].error_ratio[7_200] or 0), abs=1e-4)
    page_1h = series["tiers"][0]
    assert (page_1h["longWindow"], page_1h["shortWindow"], page_1h["factor"]) == ("1h", "5m", 14.4)
    assert page_1h["long"][-1] == pytest.approx(20, rel=0.01)
    assert page_1h["fired"].startswith("since ")
    fired_at = datetime.strptime(page_1h["fired"], "since %Y-%m-%d %H:%M:%S UTC").replace(tzinfo=UTC)
    # The 5m window burns 20 within minutes of the spike; the 1h one passes 14.4 once t/60 * 20 + (1 - t/60) * 0.5
    # does, t = 42.8 minutes into the last hour: 17.2 minutes before the end, give or take a 29 s step.
    assert abs(world.now - timedelta(minutes=17.2) - fired_at) < timedelta(seconds=60)
    assert [tier["fired"] for tier in series["tiers"][1:]] == [
        "not in the last 1d",
        "not in the last 4d",
        "not in the last 12d",
    ]
    assert all(len(tier["t"]) <= 500 for tier in series["tiers"])


async def test_the_detail_page_tells_when_each_tier_fired_without_javascript(
    dataset_prometheus: PrometheusServer,
) -> None:
    world = await dataset_world(dataset_prometheus)
    async with serving(world) as url:
        status, page = await get(url + SPIKE)
    assert status == 200
    assert '<p id="charts-note" class="note" role="status"></p>' in page
    assert '<td data-fired="0">since ' in page
    assert '<td data-fired="1">not in the last 1d</td>' in page
    assert f'data-series="/api/v1{SPIKE}/series"' in page
    assert "<b>Pause</b> Deployment spike: Applied, PauseReasserted" in page


async def test_the_overview_draws_each_slo_s_budget_of_the_last_24_hours(dataset_prometheus: PrometheusServer) -> None:
    world = await dataset_world(dataset_prometheus)
    async with serving(world) as url:
        _, page = await get(url)
    assert 'aria-label="24 h: from +50.0% to +47.3%"' in page
    assert 'aria-label="24 h: from +50.0% to +50.0%"' in page
    assert 'aria-label="24 h: from -100.0% to -100.0%"' in page
    assert "charts unavailable" not in page
    assert page.count("<svg ") == 3
    assert "no budget data" in page


async def test_with_prometheus_unreachable_every_page_still_renders_from_memory(
    dataset_prometheus: PrometheusServer,
) -> None:
    world = await dataset_world(dataset_prometheus)
    dead = DatasetRanges(f"http://127.0.0.1:{free_port()}")
    async with serving(world, dead) as url:
        status, page = await get(url)
        assert status == 200
        assert "charts unavailable: cannot reach Prometheus at" in page
        assert '<td class="st st-b">Burning</td>' in page
        assert "<svg " not in page
        status, page = await get(url + SPIKE)
        assert status == 200
        assert '<p id="charts-note" class="note" role="status">charts unavailable: cannot reach Prometheus' in page
        assert "<b>Pause</b> Deployment spike" in page
        status, text = await get(f"{url}/api/v1{SPIKE}/series")
        assert status == 503
        assert json.loads(text)["unavailable"].startswith("cannot reach Prometheus at")
        # The round that failed is not sent again on every request.
        sent = len(dead.queries)
        await get(url)
        assert len(dead.queries) == sent


async def test_through_recording_rules_the_charts_read_what_the_raw_queries_say(tmp_path: Any) -> None:
    with SyntheticService(Traffic(rps=50, error_ratio=0.1)) as service:
        target = f'job="synthetic",instance="{service.target}"'
        objective = Objective(
            name="checkout",
            namespace="shop",
            objective=0.99,
            window=600,
            indicator=RatioIndicator(
                errors=parse_selector(f'http_requests_total{{{target},code="500"}}'),
                total=parse_selector(f"http_requests_total{{{target}}}"),
            ),
            tiers=default_tiers(600, min_step=1),
            evaluation_interval=1,
        )
        rules = tmp_path / "rules.yaml"
        rules.write_text(yaml.safe_dump({"groups": managed_rule_groups(objective)}), encoding="utf-8")
        with PrometheusServer(tmp_path / "prometheus", scrape_targets=[service.target], rule_files=[rules]) as server:
            exprs = {recorded: error_ratio_expr(objective, 600, recorded=recorded) for recorded in (True, False)}
            deadline = time.monotonic() + 60
            while not server.query(exprs[True]):
                assert time.monotonic() < deadline, "the managed rules never recorded the SLO window"
                await asyncio.sleep(0.5)
            # Let the recorded series cover the range asked for.
            await asyncio.sleep(4)
            ranges = DatasetRanges(server.url)
            end = datetime.now(UTC)
            answers = {
                recorded: await ranges.query_range(expr, start=end - timedelta(seconds=3), end=end, step=1)
                for recorded, expr in exprs.items()
            }
    for recorded, points in answers.items():
        assert len(points) == 4, recorded
        for _, ratio in points:
            assert ratio == pytest.approx(0.1, rel=0.05), recorded
