"""/healthz, /readyz and /metrics on one small aiohttp server (aiohttp comes with kopf)."""

from __future__ import annotations

import time
from collections.abc import Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from slo_guard.service.health import EvaluationHeartbeats


class ProbeServer:
    def __init__(
        self,
        *,
        port: int,
        registry: CollectorRegistry,
        on_scrape: Callable[[], None],
        heartbeats: EvaluationHeartbeats,
        not_ready: Callable[[], str | None],
        host: str = "0.0.0.0",
    ) -> None:
        self._port = port
        self._host = host
        self._registry = registry
        self._on_scrape = on_scrape
        self._heartbeats = heartbeats
        self._not_ready = not_ready
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/metrics", self._metrics)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, self._host, self._port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _healthz(self, _request: web.Request) -> web.Response:
        stalled = self._heartbeats.stalled(now=time.monotonic())
        if stalled:
            shown = ", ".join(stalled[:10])
            return web.Response(status=500, text=f"evaluation loop stalled for {len(stalled)} SLOs: {shown}\n")
        return web.Response(text=f"ok: {len(self._heartbeats)} SLOs evaluating\n")

    async def _readyz(self, _request: web.Request) -> web.Response:
        problem = self._not_ready()
        if problem is None:
            return web.Response(text="ready\n")
        return web.Response(status=503, text=f"not ready: {problem}\n")

    async def _metrics(self, _request: web.Request) -> web.Response:
        self._on_scrape()
        return web.Response(body=generate_latest(self._registry), headers={"Content-Type": CONTENT_TYPE_LATEST})
