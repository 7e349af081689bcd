"""The web UI in Debian's Chromium: what a person sees, at desktop and phone width, from a real Prometheus.

Each page is saved as a screenshot under test-artifacts/ui/. With SLO_GUARD_UPDATE_SCREENSHOT=1 the detail page's
desktop screenshot also replaces docs/ui-detail.png, the one the README shows.
"""

from __future__ import annotations

import json
import os
import shutil
import time

import aiohttp
import pytest
from tests.integration.test_ui_charts import SPIKE, dataset_world, serving
from tests.support.browser import DESKTOP, PHONE, browser, page, screenshot
from tests.support.prometheus import REPO_ROOT, PrometheusServer
from tests.unit.test_ui_server import HOSTILE, hostile_slo

from slo_guard.handlers.ui_server import slo_path
from slo_guard.service.gate_board import entry_from_resource
from slo_guard.service.ports import ObjectRef

pytestmark = pytest.mark.prometheus

UPDATE_SCREENSHOT_ENV = "SLO_GUARD_UPDATE_SCREENSHOT"
README_SCREENSHOT = REPO_ROOT / "docs" / "ui-detail.png"


async def test_the_overview_shows_each_slo_s_state_budget_and_gate(dataset_prometheus: PrometheusServer) -> None:
    world = await dataset_world(dataset_prometheus)
    async with serving(world) as url, browser() as chromium:
        for name, viewport in (("desktop", DESKTOP), ("phone", PHONE)):
            async with page(chromium, viewport=viewport) as watched:
                await watched.page.goto(url)
                spike = watched.page.locator("tr", has_text="spike-availability")
                await spike.locator("svg").wait_for()
                assert "Burning" in await spike.locator(".st").inner_text()
                assert await spike.locator("meter").evaluate("meter => meter.value") == 47.3
                assert "+47.3%" in await spike.inner_text()
                assert "page 1h/5m x14.4" in await spike.inner_text()
                exhausted = watched.page.locator("tr", has_text="exhausted-availability")
                assert "Exhausted" in await exhausted.inner_text()
                assert await exhausted.locator("meter").evaluate("meter => meter.value") == 0
                assert "gate closed" in await exhausted.inner_text()
                # Nothing wider than the screen: no sideways scrolling on a phone.
                width = await watched.page.evaluate("document.documentElement.scrollWidth")
                assert width <= viewport["width"]
                await screenshot(watched.page, f"overview-{name}")
                watched.assert_quiet()


async def test_the_detail_page_draws_the_charts_and_the_timeline(dataset_prometheus: PrometheusServer) -> None:
    world = await dataset_world(dataset_prometheus)
    async with serving(world) as url, browser() as chromium:
        async with aiohttp.ClientSession() as session, session.get(f"{url}/api/v1{SPIKE}/series") as response:
            series = json.loads(await response.text())
        for name, viewport, scheme in (
            ("desktop", DESKTOP, "light"),
            ("phone", PHONE, "light"),
            ("dark", DESKTOP, "dark"),
        ):
            async with page(chromium, viewport=viewport, color_scheme=scheme) as watched:
                await watched.page.goto(url + SPIKE)
                charts = ["chart-budget", "chart-sli", *(f"chart-tier-{index}" for index in range(4))]
                for chart in charts:
                    drawn = watched.page.locator(f"#{chart}[data-points]")
                    await drawn.locator("canvas").wait_for()
                    assert int(await drawn.get_attribute("data-points") or 0) > 0
                budget_points = sum(1 for value in series["budget"]["remaining"] if value is not None)
                assert await watched.page.get_attribute("#chart-budget", "data-points") == str(budget_points)
                assert budget_points > 400
                summary = await watched.page.inner_text("#summary")
                assert "Burning" in summary
                assert "+47.3%" in summary
                assert await watched.page.locator("#summary meter").evaluate("meter => meter.value") == 47.3
                pause = watched.page.locator(".timeline li.a-hold", has_text="Deployment spike: Applied, Paused")
                assert await pause.is_visible()
                assert await watched.page.locator(".timeline li.a-override").is_visible()
                assert await watched.page.locator(".timeline li.a-contest").is_visible()
                assert (await watched.page.inner_text('[data-fired="0"]')).startswith("since ")
                assert await watched.page.inner_text("#charts-note") == ""
                width = await watched.page.evaluate("document.documentElement.scrollWidth")
                assert width <= viewport["width"]
                path = await screenshot(watched.page, f"detail-{name}")
                if name == "desktop" and os.environ.get(UPDATE_SCREENSHOT_ENV) == "1":
                    shutil.copyfile(path, README_SCREENSHOT)
                watched.assert_quiet()


async def test_markup_in_an_slo_stays_text_in_the_browser(dataset_prometheus: PrometheusServer) -> None:
    hostile = hostile_slo()
    world = await dataset_world(dataset_prometheus, extra=[hostile])
    metadata = hostile["metadata"]
    async with serving(world) as url, browser() as chromium, page(chromium) as watched:
        for path in ("/", slo_path(metadata["namespace"], metadata["name"])):
            await watched.page.goto(url + path)
            await watched.page.wait_for_load_state("networkidle")
            assert await watched.page.locator("img").count() == 0
            scripts = await watched.page.evaluate("[...document.scripts].map(script => script.src)")
            assert all(f"{url}/static/" in script for script in scripts), scripts
            assert HOSTILE in await watched.page.inner_text("main")
            watched.assert_quiet()
        # The YAML shows the selector, the labels and the annotations as they were written.
        yaml_text = await watched.page.inner_text("pre")
        assert HOSTILE in yaml_text
        assert "<img src=x" in yaml_text


async def test_the_overview_refreshes_in_place(dataset_prometheus: PrometheusServer) -> None:
    world = await dataset_world(dataset_prometheus)
    async with serving(world, refresh_seconds=1) as url, browser() as chromium, page(chromium) as watched:
        await watched.page.goto(url + "/?namespace=shop")
        steady = watched.page.locator("tr", has_text="steady-availability")
        assert "Healthy" in await steady.inner_text()
        await watched.page.evaluate("window.notReloaded = true")
        body = world.bodies["shop/steady-availability"]
        body["status"] = {**body["status"], "state": "Exhausted", "errorBudget": {"remaining": -0.25}}
        world.board.put(entry_from_resource(ObjectRef("v", "k", "shop", "steady-availability"), body))
        deadline = time.monotonic() + 10
        while "Exhausted" not in await steady.inner_text():
            assert time.monotonic() < deadline, "the overview never showed the new state"
            await watched.page.wait_for_timeout(200)
        assert "-25.0%" in await steady.inner_text()
        assert await watched.page.evaluate("window.notReloaded") is True
        assert await watched.page.input_value("select[name=namespace]") == "shop"
        assert (await watched.page.inner_text("#refresh")).startswith("updated ")
        watched.assert_quiet()
