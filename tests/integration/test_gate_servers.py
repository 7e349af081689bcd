"""The gate API and the admission webhook as their clients meet them: real sockets, real TLS, real HTTP."""

from __future__ import annotations

import contextlib
import json
import socket
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from tests.support.certs import ServingCertificate, serving_certificate
from tests.unit.service.test_admission_review import deployment, review
from tests.unit.service.test_gate_board import after_pass, board

from slo_guard.handlers.gate_server import AdmissionServer, GateServer
from slo_guard.service.admission import AdmissionReviewer
from slo_guard.service.gate_board import GateBoard
from slo_guard.service.ports import ObjectRef
from slo_guard.telemetry import OperatorMetrics


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


GATES = board(
    after_pass("web-availability", "Deployment/web", remaining=-0.2),
    after_pass("api-availability", "Deployment/api", remaining=0.6),
)


async def started_gate(gates: GateBoard, *, token_file: Path | None = None) -> tuple[GateServer, str, OperatorMetrics]:
    port, metrics = free_port(), OperatorMetrics()
    server = GateServer(gates, port=port, metrics=metrics, token_file=token_file, host="127.0.0.1")
    await server.start()
    return server, f"http://127.0.0.1:{port}/gate/v1", metrics


@contextlib.asynccontextmanager
async def gate_api() -> AsyncIterator[tuple[str, OperatorMetrics]]:
    # Context managers, not async fixtures: those run on the session's loop, the tests on their own.
    server, url, metrics = await started_gate(GATES)
    try:
        yield url, metrics
    finally:
        await server.stop()


async def fetch(method: str, url: str, **kwargs: Any) -> tuple[int, str, str]:
    async with aiohttp.ClientSession() as session, session.request(method, url, **kwargs) as response:
        return response.status, response.content_type, await response.text()


async def test_get_answers_an_slo_s_gate_as_json() -> None:
    async with gate_api() as (url, metrics):
        status, content_type, text = await fetch(
            "GET", f"{url}/namespaces/shop/servicelevelobjectives/web-availability"
        )
        body = json.loads(text)
        assert (status, content_type) == (200, "application/json")
        assert (body["open"], body["slo"], body["state"], body["reason"]) == (
            False,
            "shop/web-availability",
            "Exhausted",
            "BudgetExhausted",
        )
        assert body["errorBudget"] == {"remaining": -0.2, "display": "-20.0%"}
        status, _, text = await fetch("GET", f"{url}/namespaces/shop/servicelevelobjectives/api-availability")
        assert (status, json.loads(text)["open"]) == (200, True)
        assert metrics.gate_requests.labels(endpoint="slo", code="200")._value.get() == 2


async def test_get_of_an_unknown_slo_is_404_naming_it() -> None:
    async with gate_api() as (url, _):
        status, _, text = await fetch("GET", f"{url}/namespaces/shop/servicelevelobjectives/nope")
        assert (status, json.loads(text)["message"]) == (404, "no ServiceLevelObjective shop/nope")


async def test_flagger_gets_403_with_the_reason_as_one_line() -> None:
    async with gate_api() as (url, _):
        payload = {"name": "web", "namespace": "shop", "phase": "Progressing", "checksum": "1", "metadata": {}}
        status, _, text = await fetch("POST", f"{url}/flagger", json=payload)
        assert status == 403
        assert text.startswith("closed: canary shop/web is held by shop/web-availability: error budget exhausted")
        assert text.count("\n") == 1
        status, _, _ = await fetch("POST", f"{url}/flagger", json={**payload, "name": "api"})
        assert status == 200
        status, _, text = await fetch("POST", f"{url}/flagger", data=b"{not json")
        assert (status, text) == (400, "not a Flagger webhook payload: expected a JSON object\n")


async def test_with_a_token_file_only_requests_bearing_the_current_token_pass(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("first\n", encoding="utf-8")
    server, url, _ = await started_gate(GATES, token_file=token)
    slo = f"{url}/namespaces/shop/servicelevelobjectives/api-availability"
    try:
        assert (await fetch("GET", slo))[0] == 401
        assert (await fetch("GET", slo, headers={"Authorization": "Bearer wrong"}))[0] == 401
        assert (await fetch("GET", slo, headers={"Authorization": "Bearer first"}))[0] == 200
        token.write_text("second", encoding="utf-8")  # rotated: the old token stops working at once
        assert (await fetch("GET", slo, headers={"Authorization": "Bearer first"}))[0] == 401
        assert (await fetch("GET", slo, headers={"Authorization": "Bearer second"}))[0] == 200
        assert (await fetch("GET", slo, headers={"Authorization": "second"}))[0] == 401
        # Flagger sends no headers: its canary carries the token in the webhook's metadata.
        flagger = f"{url}/flagger"
        payload = {"name": "api", "namespace": "shop", "metadata": {"token": "second"}}
        assert (await fetch("POST", flagger, json=payload))[0] == 200
        assert (await fetch("POST", flagger, json={**payload, "metadata": {"token": "first"}}))[0] == 401
        assert (await fetch("POST", flagger, json={**payload, "metadata": {}}))[0] == 401
    finally:
        await server.stop()


class Events:
    async def post(self, *, regarding: ObjectRef, type_: str, reason: str, message: str) -> None:
        return None


@pytest.fixture
def certificate(tmp_path: Path) -> ServingCertificate:
    return serving_certificate(tmp_path / "tls")


@contextlib.asynccontextmanager
async def webhook(certificate: ServingCertificate) -> AsyncIterator[str]:
    gates = board(after_pass("web-availability", "Deployment/web", remaining=-0.2, policy={"action": "Deny"}))
    port = free_port()
    server = AdmissionServer(
        AdmissionReviewer(gates, events=Events(), metrics=OperatorMetrics()),
        port=port,
        cert_file=certificate.cert_file,
        key_file=certificate.key_file,
        host="127.0.0.1",
    )
    await server.start()
    try:
        yield f"https://127.0.0.1:{port}/validate"
    finally:
        await server.stop()


async def test_the_webhook_speaks_tls_trusted_through_the_ca_bundle(certificate: ServingCertificate) -> None:
    trusted = ssl.create_default_context(cadata=certificate.ca_file.read_text(encoding="utf-8"))
    body = review(deployment("web:2"), deployment("web:1"))
    async with webhook(certificate) as url:
        status, _, text = await fetch("POST", url, json=body, ssl=trusted)
        response = json.loads(text)["response"]
        assert (status, response["allowed"], response["status"]["code"]) == (200, False, 403)
        with pytest.raises(aiohttp.ClientConnectorCertificateError):
            await fetch("POST", url, json=body)  # not in the system's trust store


async def test_the_webhook_refuses_what_is_not_an_admission_review(certificate: ServingCertificate) -> None:
    trusted = ssl.create_default_context(cadata=certificate.ca_file.read_text(encoding="utf-8"))
    async with webhook(certificate) as url:
        status, _, text = await fetch("POST", url, json={"kind": "Pod"}, ssl=trusted)
    assert (status, text) == (400, "not an AdmissionReview: expected an admission.k8s.io/v1 AdmissionReview\n")
