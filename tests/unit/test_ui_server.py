"""The web UI over real HTTP, without Prometheus: escaping, filters, auth, security headers, read-only, size."""

from __future__ import annotations

import contextlib
import gzip
import socket
from collections.abc import AsyncIterator, Mapping
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from tests.unit.test_ui_view import slo, world

from slo_guard.handlers.ui_server import CONTENT_SECURITY_POLICY, SESSION_COOKIE, UIServer
from slo_guard.service.gate_board import GateBoard

SCRIPT = "<script>alert(1)</script>"
IMG = '"><img src=x onerror=alert(1)>'
HOSTILE = f"{SCRIPT}{IMG}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.asynccontextmanager
async def ui(board: GateBoard, bodies: Mapping[str, Mapping[str, Any]], **options: Any) -> AsyncIterator[str]:
    # A context manager, not an async fixture: fixtures run on the session's loop, the tests on their own.
    port = free_port()
    server = UIServer(board, bodies, None, port=port, host="127.0.0.1", **options)
    await server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await server.stop()


async def fetch(method: str, url: str, **kwargs: Any) -> tuple[int, Mapping[str, str], str]:
    async with aiohttp.ClientSession() as session, session.request(method, url, **kwargs) as response:
        return response.status, response.headers, await response.text()


class Tags(HTMLParser):
    """Every start tag with its attributes, and the text, as a browser's parser would see them."""

    def __init__(self, page: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.feed(page)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def hostile_slo() -> dict[str, Any]:
    """An SLO whose every free-text field carries markup: it must reach the page as text."""
    body = slo(HOSTILE, namespace=f"ns{SCRIPT}", state="Exhausted", remaining=-0.5)
    body["spec"]["description"] = HOSTILE
    body["spec"]["indicator"]["ratio"]["errors"] = f'http_requests_total{{job="{IMG}"}}'
    body["metadata"]["annotations"] = {"note": HOSTILE}
    body["metadata"]["labels"] = {"team": IMG}
    body["status"]["message"] = HOSTILE
    body["status"]["targets"] = [{"kind": "Deployment", "name": HOSTILE, "state": "Paused", "message": HOSTILE}]
    body["status"]["actions"] = [
        {"time": "2026-11-01T10:00:00Z", "kind": "Deployment", "name": HOSTILE, "action": HOSTILE,
         "result": "Applied", "reason": HOSTILE, "message": HOSTILE},
    ]  # fmt: skip
    return body


def assert_inert(page: str) -> None:
    tags = Tags(page)
    scripts = [attrs.get("src") for tag, attrs in tags.tags if tag == "script"]
    assert scripts
    assert all(src and src.startswith("/static/") for src in scripts), scripts
    assert not [tag for tag, _ in tags.tags if tag == "img"]
    handlers = [(tag, name) for tag, attrs in tags.tags for name in attrs if name.startswith("on")]
    assert not handlers
    assert SCRIPT not in page
    assert "<img" not in page


async def test_markup_in_any_slo_field_renders_as_text_on_both_pages() -> None:
    board, bodies = world(hostile_slo(), slo("web"))
    async with ui(board, bodies) as url:
        status, _, page = await fetch("GET", url)
        assert status == 200
        assert_inert(page)
        assert HOSTILE in "".join(Tags(page).text)
        links = [
            attrs["href"] for tag, attrs in Tags(page).tags if tag == "a" and "servicelevelobjectives" in str(attrs)
        ]
        hostile_link = next(link for link in links if link and "script" in link)
        status, _, page = await fetch("GET", url + str(hostile_link))
        assert status == 200
        assert_inert(page)
        text = "".join(Tags(page).text)
        # Name, description, status message, target, action and (in the YAML) selector, label and annotation.
        assert text.count(HOSTILE) >= 6
        assert f'errors: http_requests_total{{job="{IMG}"}}' in text
        assert f"note: {HOSTILE}" in text
        assert f"team: '{IMG}'" in text


async def test_the_filter_form_and_the_state_links_filter_the_rows() -> None:
    board, bodies = world(slo("web"), slo("api", state="Exhausted", remaining=-0.2), slo("pay", namespace="payments"))
    async with ui(board, bodies) as url:
        _, _, page = await fetch("GET", url, params={"namespace": "shop", "state": "Exhausted"})
        rows = [
            attrs["href"] for tag, attrs in Tags(page).tags if tag == "a" and "/servicelevelobjectives/" in str(attrs)
        ]
        assert rows == ["/namespaces/shop/servicelevelobjectives/api"]
        assert "1 of 3 SLOs" in page
        assert '<option value="shop" selected>' in page
        assert '<option value="Exhausted" selected>' in page
        assert 'href="/?namespace=shop&amp;state=Healthy">1 Healthy</a>' in page
        _, _, page = await fetch("GET", url, params={"state": "Sideways"})
        assert "3 SLOs:" in page
        _, _, page = await fetch("GET", url, params={"namespace": "nowhere"})
        assert "No SLO matches these filters." in page


async def test_a_page_shows_state_budget_and_gate_as_text() -> None:
    board, bodies = world(slo("api", state="Exhausted", remaining=-0.506, targets=(("api", "Paused"),)))
    async with ui(board, bodies) as url:
        _, _, page = await fetch("GET", url)
        assert '<td class="st st-x">Exhausted</td>' in page
        assert '<meter max="100" low="10" high="50" optimum="100" value="0"></meter> -50.6%' in page
        assert '<td class="g-c">gate closed</td>' in page
        assert "1 of 1 held" in page
        assert "charts unavailable: no Prometheus to ask for range queries" in page
        status, _, page = await fetch("GET", url + "/namespaces/shop/servicelevelobjectives/api")
        assert status == 200
        assert "charts unavailable: no Prometheus to ask for range queries" in page
        assert "data-series" not in page


async def test_unknown_slo_and_series_without_prometheus() -> None:
    board, bodies = world(slo("web"))
    async with ui(board, bodies) as url:
        status, _, page = await fetch("GET", url + "/namespaces/shop/servicelevelobjectives/nope")
        assert status == 404
        assert "No ServiceLevelObjective shop/nope" in page
        status, headers, text = await fetch("GET", url + "/api/v1/namespaces/shop/servicelevelobjectives/nope/series")
        assert (status, headers["Content-Type"]) == (404, "application/json; charset=utf-8")
        status, _, text = await fetch("GET", url + "/api/v1/namespaces/shop/servicelevelobjectives/web/series")
        assert status == 503
        assert "no Prometheus" in text


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE", "OPTIONS"])
@pytest.mark.parametrize(
    "path",
    [
        "/",
        "/namespaces/shop/servicelevelobjectives/web",
        "/api/v1/namespaces/shop/servicelevelobjectives/web/series",
        "/anything",
    ],
)
async def test_nothing_but_get_is_answered(method: str, path: str) -> None:
    board, bodies = world(slo("web"))
    async with ui(board, bodies) as url:
        status, headers, _ = await fetch(method, url + path, data=b"{}")
        assert (status, headers["Allow"]) == (405, "GET, HEAD")
        assert headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY


async def test_every_answer_carries_the_security_headers() -> None:
    board, bodies = world(slo("web"))
    async with ui(board, bodies) as url:
        _, _, page = await fetch("GET", url)
        assets = [attrs.get("href") or attrs.get("src") for tag, attrs in Tags(page).tags if tag in ("link", "script")]
        assets = [asset for asset in assets if asset and asset.startswith("/static/")]
        assert len(assets) == 2
        detail = "/namespaces/shop/servicelevelobjectives/web"
        _, _, detail_page = await fetch("GET", url + detail)
        assets += [
            attrs.get("href") or attrs.get("src")
            for tag, attrs in Tags(detail_page).tags
            if tag in ("link", "script", "a") and str(attrs.get("href") or attrs.get("src")).startswith("/static/")
        ]
        for path in ["/", detail, "/api/v1/namespaces/shop/servicelevelobjectives/web/series", "/nope", *assets]:
            status, headers, _ = await fetch("GET", url + str(path))
            assert headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY, path
            assert headers["X-Content-Type-Options"] == "nosniff"
            assert headers["Referrer-Policy"] == "no-referrer"
            if path in assets:
                assert status == 200
                assert headers["Cache-Control"] == "public, max-age=31536000, immutable"
            elif status == 200:
                assert headers["Cache-Control"] == "no-store"
                assert headers["Server-Timing"].startswith("render;dur=")


async def test_static_files_have_versioned_names_and_their_types() -> None:
    board, bodies = world(slo("web"))
    async with ui(board, bodies) as url:
        _, _, page = await fetch("GET", url + "/namespaces/shop/servicelevelobjectives/web")
        scripts = [str(attrs["src"]) for tag, attrs in Tags(page).tags if tag == "script"]
        assert [script.split(".")[0] for script in scripts] == ["/static/uPlot", "/static/ui"]
        status, headers, text = await fetch("GET", url + scripts[0])
        assert (status, headers["Content-Type"]) == (200, "text/javascript; charset=utf-8")
        assert text.startswith("/*! https://github.com/leeoniya/uPlot (v1.6.32) */")
        licence = next(str(attrs["href"]) for tag, attrs in Tags(page).tags if tag == "a" and "LICENSE" in str(attrs))
        status, _, text = await fetch("GET", url + licence)
        assert status == 200
        assert "Copyright (c) 2022 Leon Sorokin" in text
        assert (await fetch("GET", url + "/static/ui.js"))[0] == 404
        assert (await fetch("GET", url + "/static/ui.0000.js"))[0] == 404


async def test_a_token_file_guards_every_page_and_a_link_with_the_token_signs_in(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("first\n", encoding="utf-8")
    board, bodies = world(slo("web"))
    async with ui(board, bodies, token_file=token) as url:
        status, headers, _ = await fetch("GET", url)
        assert (status, headers["WWW-Authenticate"]) == (401, "Bearer")
        assert headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
        assert (await fetch("GET", url, headers={"Authorization": "Bearer wrong"}))[0] == 401
        assert (await fetch("GET", url, headers={"Authorization": "Bearer first"}))[0] == 200
        # `unsafe`: keep cookies from an IP address, as browsers do.
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
            async with session.get(url + "/?state=Healthy&token=first", allow_redirects=False) as response:
                assert response.status == 303
                assert response.headers["Location"] == "/?state=Healthy"
                cookie = response.cookies[SESSION_COOKIE]
                assert (cookie.value, cookie["httponly"], cookie["samesite"], cookie["path"]) == (
                    "first",
                    True,
                    "Strict",
                    "/",
                )
            async with session.get(url + "/?state=Healthy") as response:
                assert response.status == 200
            token.write_text("second", encoding="utf-8")  # rotated: the cookie stops working at once
            async with session.get(url) as response:
                assert response.status == 401
        assert (await fetch("GET", url + "/?token=first", allow_redirects=False))[0] == 401


async def test_an_auth_proxy_header_is_required_and_names_the_user(tmp_path: Path) -> None:
    board, bodies = world(slo("web"))
    async with ui(board, bodies, auth_header="X-Forwarded-User") as url:
        assert (await fetch("GET", url))[0] == 401
        assert (await fetch("GET", url, headers={"X-Forwarded-User": " "}))[0] == 401
        status, _, page = await fetch("GET", url, headers={"X-Forwarded-User": SCRIPT})
        assert status == 200
        assert "signed in as &lt;script&gt;" in page
        assert_inert(page)


async def test_the_page_refreshes_at_the_cadence_it_was_given_and_each_slo_s_own() -> None:
    body = slo("web")
    body["spec"]["evaluationInterval"] = "10s"
    board, bodies = world(body)
    async with ui(board, bodies, refresh_seconds=30) as url:
        assert '<body data-refresh="30">' in (await fetch("GET", url))[2]
        assert (
            '<body data-refresh="10">' in (await fetch("GET", url + "/namespaces/shop/servicelevelobjectives/web"))[2]
        )


async def test_the_overview_of_1000_slos_stays_small() -> None:
    bodies_list = []
    for index in range(1000):
        state = ("Healthy", "Burning", "Exhausted", "Unknown")[index % 4]
        remaining = None if state == "Unknown" else 0.9 - index / 1000
        bodies_list.append(
            slo(f"checkout-availability-{index:04d}", namespace=f"team-{index % 20:02d}", state=state,
                remaining=remaining, firing=(0,) if state == "Burning" else (), timeToExhaustion=86_000)
        )  # fmt: skip
    board, bodies = world(*bodies_list)
    async with (
        ui(board, bodies) as url,
        aiohttp.ClientSession(auto_decompress=False) as session,
        session.get(url, headers={"Accept-Encoding": "gzip"}) as response,
    ):
        assert response.headers["Content-Encoding"] == "gzip"
        wire = await response.read()
    page = gzip.decompress(wire).decode()
    assert page.count("<tr>") == 1001
    assert len(page) < 450_000, len(page)
    assert len(wire) < 60_000, len(wire)
