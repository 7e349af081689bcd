"""HTTP front ends of the gates: the gate API (plain HTTP) and the validating admission webhook (TLS).

Both answer from the gate board in memory. Each is its own small aiohttp server, so a flood on one port never
delays the other or the health probes.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web

from slo_guard.service.admission import AdmissionReviewer, NotAReview
from slo_guard.service.gate_board import GateBoard, flagger_gate
from slo_guard.telemetry import OperatorMetrics

logger = logging.getLogger("slo_guard.gates")

GATE_PREFIX = "/gate/v1"
FLAGGER_PATH = f"{GATE_PREFIX}/flagger"
MAX_BODY = 1 << 20
"""Bytes; a Flagger payload is a few hundred, an AdmissionReview of a large Deployment some tens of thousands."""
CERT_RELOAD_EVERY = 60.0
"""Seconds between looks for a renewed serving certificate (cert-manager rotates it in place)."""

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class GateServer:
    """`GET /gate/v1/namespaces/{ns}/servicelevelobjectives/{name}` and `POST /gate/v1/flagger`."""

    def __init__(
        self,
        board: GateBoard,
        *,
        port: int,
        metrics: OperatorMetrics,
        token_file: Path | None = None,
        host: str = "0.0.0.0",
    ) -> None:
        self._board = board
        self._port = port
        self._host = host
        self._metrics = metrics
        self._token_file = token_file
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application(client_max_size=MAX_BODY, middlewares=[self._authorise])
        app.router.add_get(f"{GATE_PREFIX}/namespaces/{{namespace}}/servicelevelobjectives/{{name}}", self._slo)
        app.router.add_post(FLAGGER_PATH, self._flagger)
        self._runner = await _serve(app, host=self._host, port=self._port)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    @web.middleware
    async def _authorise(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path == FLAGGER_PATH:
            # Flagger cannot send headers: its handler takes the token from the payload too.
            return await handler(request)
        return self._refusal(_bearer(request)) or await handler(request)

    def _refusal(self, sent: str) -> web.Response | None:
        """None when no token is configured or `sent` is it; otherwise the answer to send."""
        if self._token_file is None:
            return None
        try:
            token = self._token_file.read_text(encoding="utf-8").strip()
        except OSError as error:
            logger.error("cannot read the gate token file %s: %s", self._token_file, error.strerror)
            return web.Response(status=503, text="gate token unreadable on the operator's side\n")
        if token and hmac.compare_digest(sent.encode(), token.encode()):
            return None
        return web.Response(status=401, text="bearer token required\n", headers={"WWW-Authenticate": "Bearer"})

    async def _slo(self, request: web.Request) -> web.Response:
        namespace, name = request.match_info["namespace"], request.match_info["name"]
        entry = self._board.get(namespace, name)
        if entry is None:
            self._count("slo", 404)
            body = {"slo": f"{namespace}/{name}", "message": f"no ServiceLevelObjective {namespace}/{name}"}
            return web.json_response(body, status=404)
        self._count("slo", 200)
        return web.Response(body=entry.document, content_type="application/json")

    async def _flagger(self, request: web.Request) -> web.Response:
        try:
            payload = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            payload = None
        metadata = payload.get("metadata") if isinstance(payload, dict) else None
        in_payload = metadata.get("token") if isinstance(metadata, dict) else None
        sent = _bearer(request) or str(in_payload or "")
        refusal = self._refusal(sent)
        if refusal is not None:
            self._count("flagger", refusal.status)
            return refusal
        answer = flagger_gate(self._board, payload)
        self._count("flagger", answer.status)
        if answer.status != 200:
            logger.info("flagger gate: %s", answer.message)
        return web.Response(status=answer.status, text=answer.message + "\n")

    def _count(self, endpoint: str, code: int) -> None:
        self._metrics.gate_requests.labels(endpoint=endpoint, code=str(code)).inc()


class AdmissionServer:
    """`POST /validate` over TLS, for a ValidatingWebhookConfiguration."""

    def __init__(
        self, reviewer: AdmissionReviewer, *, port: int, cert_file: Path, key_file: Path, host: str = "0.0.0.0"
    ) -> None:
        self._reviewer = reviewer
        self._port = port
        self._host = host
        self._cert_file = cert_file
        self._key_file = key_file
        self._runner: web.AppRunner | None = None
        self._reload: asyncio.Task[None] | None = None
        self._ssl = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._loaded_at: tuple[float, float] = (0.0, 0.0)

    async def start(self) -> None:
        self._load_certificate()
        app = web.Application(client_max_size=MAX_BODY)
        app.router.add_post("/validate", self._validate)
        self._runner = await _serve(app, host=self._host, port=self._port, ssl_context=self._ssl)
        self._reload = asyncio.create_task(self._reload_forever(), name="slo-guard-webhook-cert-reload")

    async def stop(self) -> None:
        if self._reload is not None:
            self._reload.cancel()
            await asyncio.gather(self._reload, return_exceptions=True)
        if self._runner is not None:
            await self._runner.cleanup()
        await self._reviewer.close()

    def _load_certificate(self) -> None:
        """(Re)load the key pair into the live context: new handshakes use it, open connections keep theirs."""
        stamps = (self._cert_file.stat().st_mtime, self._key_file.stat().st_mtime)
        if stamps == self._loaded_at:
            return
        self._ssl.load_cert_chain(self._cert_file, self._key_file)
        self._loaded_at = stamps

    async def _reload_forever(self) -> None:
        while True:
            await asyncio.sleep(CERT_RELOAD_EVERY)
            try:
                self._load_certificate()
            except (OSError, ssl.SSLError) as error:
                # A half-written pair during rotation: the old certificate serves until the next look.
                logger.warning("could not reload the webhook certificate: %s", error)

    async def _validate(self, request: web.Request) -> web.Response:
        try:
            answer = self._reviewer.review(await request.json())
        except (json.JSONDecodeError, UnicodeDecodeError, NotAReview) as error:
            return web.Response(status=400, text=f"not an AdmissionReview: {error}\n")
        return web.json_response(answer)


def _bearer(request: web.Request) -> str:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token if scheme == "Bearer" else ""


async def _serve(
    app: web.Application, *, host: str, port: int, ssl_context: ssl.SSLContext | None = None
) -> web.AppRunner:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port, ssl_context=ssl_context).start()
    return runner
