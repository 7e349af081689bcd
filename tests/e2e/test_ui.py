"""The web UI of a running operator, in Debian's Chromium: an SLO goes Healthy, Exhausted (its Deployment paused)
and Healthy again, and a person reading the overview and the SLO's page sees each step.

Screenshots of both pages at desktop and phone width go to test-artifacts/ui/ (e2e-*.png).
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from tests.e2e.conftest import World, wait_for
from tests.e2e.scenario import (
    ACT_TIMEOUT,
    Sources,
    delete_namespace,
    guard,
    is_paused,
    namespace_for,
    own_sources,
    switch_source,
    wait_healthy,
)
from tests.support.browser import DESKTOP, PHONE, Watched, browser, page, screenshot

pytestmark = [pytest.mark.e2e, pytest.mark.prometheus]


@pytest.fixture(scope="module")
def sources(world: World) -> Iterator[Sources]:
    with own_sources(world) as sources:
        yield sources


@pytest.fixture
def namespace(world: World, request: pytest.FixtureRequest) -> Iterator[str]:
    name = namespace_for(request, "ui")
    world.kube.ensure_namespace(name)
    yield name
    delete_namespace(world, name)


def gate_answer(world: World, namespace: str, name: str) -> dict[str, Any]:
    url = f"{world.operator.gate_url}/namespaces/{namespace}/servicelevelobjectives/{name}"
    with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 (the local operator)
        answer: dict[str, Any] = json.load(response)
    return answer


async def shows(watched: Watched, url: str, selector: str, text: str) -> bool:
    """Whether the page at `url`, freshly loaded, shows `text` in `selector`."""
    await watched.page.goto(url)
    return text in await watched.page.inner_text(selector)


async def eventually(watched: Watched, url: str, selector: str, text: str, what: str) -> None:
    for _ in range(int(ACT_TIMEOUT / 0.5)):
        if await shows(watched, url, selector, text):
            return
        await watched.page.wait_for_timeout(500)
    pytest.fail(f"timed out after {ACT_TIMEOUT}s waiting for {what}")


async def test_a_person_sees_the_budget_spent_the_pause_and_the_recovery(
    world: World, sources: Sources, namespace: str
) -> None:
    guard(world, namespace, "checkout", sources.healthy)
    wait_healthy(world, namespace, "checkout")
    overview = f"{world.operator.ui_url}/?namespace={namespace}"
    detail = f"{world.operator.ui_url}/namespaces/{namespace}/servicelevelobjectives/checkout"
    async with browser() as chromium, page(chromium) as watched:
        await eventually(watched, overview, "#overview", "Healthy", "the overview to show checkout Healthy")
        row = watched.page.locator("tr", has_text="checkout")
        assert "gate open" in (await row.inner_text()).lower()

        switch_source(world, namespace, "checkout", sources.failing)
        wait_for(lambda: is_paused(world, namespace, "checkout"), timeout=ACT_TIMEOUT, what="checkout paused")
        # The state line, not the whole summary: its "Exhausted in" label matched a page still showing Healthy.
        await eventually(watched, detail, "#summary .state", "Exhausted", "the detail page to show Exhausted")
        shown = await watched.page.inner_text("#summary")
        spent = gate_answer(world, namespace, "checkout")["errorBudget"]
        assert spent["remaining"] < 0
        assert spent["display"] in shown, "the budget as the gate API and kubectl show it"
        bar = await watched.page.locator("#summary meter").evaluate("meter => meter.value")
        assert bar == 0, "an overspent budget's bar is empty"
        pause = watched.page.locator(".timeline li", has_text="Pause")
        assert await pause.count() >= 1
        assert "Paused" in await watched.page.inner_text("main")
        chart = watched.page.locator("#chart-budget[data-points]")
        await chart.locator("canvas").wait_for()
        assert int(await chart.get_attribute("data-points") or 0) > 0, "the budget chart has points"
        for name, viewport in (("desktop", DESKTOP), ("phone", PHONE)):
            await watched.page.set_viewport_size(viewport)
            await screenshot(watched.page, f"e2e-detail-exhausted-{name}")
            await watched.page.goto(overview)
            await screenshot(watched.page, f"e2e-overview-exhausted-{name}")
            await watched.page.goto(detail)

        switch_source(world, namespace, "checkout", sources.healthy)
        wait_for(lambda: not is_paused(world, namespace, "checkout"), timeout=ACT_TIMEOUT, what="checkout resumed")
        await eventually(watched, detail, ".timeline", "Resume", "the resume in the timeline")
        assert "Healthy" in await watched.page.inner_text("#summary .state")
        watched.assert_quiet()
