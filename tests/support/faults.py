"""Fault injection in front of a real server: a loopback HTTP proxy that delays, fails and records requests."""

from __future__ import annotations

import json
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

from tests.support.lifecycle import Started

# Hop-by-hop headers, plus Accept-Encoding so the answer comes back plain and is relayed as is.
_NOT_FORWARDED = {"connection", "keep-alive", "transfer-encoding", "host", "content-length", "accept-encoding"}


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    method: str
    path: str
    """Path and query string, e.g. `/api/v1/query?query=up&time=...`."""
    headers: Mapping[str, str]


class FaultProxy(Started):
    """Forwards to `upstream` (e.g. a real Prometheus) unless told to misbehave.

    Change `delay` (seconds before answering or forwarding), `undelayed` (how many of the first requests skip the
    delay) or `fail_with` (answer this HTTP status without forwarding) at any time; hold() keeps requests waiting
    until release(). `requests` lists every request received, in order, and `max_in_flight` the most requests it was
    ever serving at once. With `upstream=None` every request that is not failed gets 502.
    """

    def __init__(self, upstream: str | None, *, delay: float = 0.0, fail_with: int | None = None) -> None:
        self.upstream = upstream.rstrip("/") if upstream else None
        self.delay = delay
        self.undelayed = 0
        self.fail_with = fail_with
        self._recorded: list[RecordedRequest] = []
        self._in_flight = 0
        self._max_in_flight = 0
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._released = threading.Event()
        self._released.set()
        self._server = _QuietServer(("127.0.0.1", 0), _handler_for(self))
        # A short poll interval makes stop() quick (the default is 0.5 s).
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="fault-proxy", daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._recorded)

    @property
    def in_flight(self) -> int:
        with self._lock:
            return self._in_flight

    @property
    def max_in_flight(self) -> int:
        with self._lock:
            return self._max_in_flight

    def hold(self) -> None:
        """Make new and waiting requests wait (after being recorded) until release()."""
        self._released.clear()

    def release(self) -> None:
        self._released.set()

    def start(self) -> Self:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._released.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def _answer(self, *, method: str, path: str, headers: Mapping[str, str], body: bytes | None) -> _Answer:
        with self._lock:
            self._recorded.append(RecordedRequest(method, path, dict(headers)))
            position = len(self._recorded)
            self._in_flight += 1
            self._max_in_flight = max(self._max_in_flight, self._in_flight)
        try:
            return self._misbehave_or_forward(method=method, path=path, headers=headers, body=body, position=position)
        finally:
            with self._lock:
                self._in_flight -= 1

    def _misbehave_or_forward(
        self, *, method: str, path: str, headers: Mapping[str, str], body: bytes | None, position: int
    ) -> _Answer:
        self._released.wait()
        delay = self.delay if position > self.undelayed else 0.0
        # Waiting on the stop event lets stop() end a long delay at once.
        if delay and self._stopping.wait(delay):
            return _Answer(503, "text/plain", b"proxy stopping")
        if self.fail_with is not None:
            error = {"status": "error", "errorType": "injected", "error": f"FaultProxy answered {self.fail_with}"}
            return _Answer(self.fail_with, "application/json", json.dumps(error).encode())
        if self.upstream is None:
            return _Answer(502, "text/plain", b"no upstream")
        return _forward(f"{self.upstream}{path}", method=method, headers=headers, body=body)


@dataclass(frozen=True, slots=True)
class _Answer:
    status: int
    content_type: str
    body: bytes


def _forward(url: str, *, method: str, headers: Mapping[str, str], body: bytes | None) -> _Answer:
    kept = {name: value for name, value in headers.items() if name.lower() not in _NOT_FORWARDED}
    request = urllib.request.Request(url, data=body, headers=kept, method=method)  # noqa: S310 (loopback http)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310 (loopback http)
            return _Answer(response.status, response.headers.get("Content-Type", ""), response.read())
    except urllib.error.HTTPError as error:
        return _Answer(error.code, error.headers.get("Content-Type", ""), error.read())
    except OSError as error:
        return _Answer(502, "text/plain", f"upstream unreachable: {error}".encode())


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients that time out hang up before the delayed answer: expected, not worth a traceback.
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


def _handler_for(proxy: FaultProxy) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            self._relay()

        def do_POST(self) -> None:
            self._relay()

        def log_message(self, format: str, *args: object) -> None:
            """Silence the per-request stderr line."""

        def _relay(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            answer = proxy._answer(method=self.command, path=self.path, headers=dict(self.headers), body=body)
            self.send_response(answer.status)
            self.send_header("Content-Type", answer.content_type)
            self.send_header("Content-Length", str(len(answer.body)))
            self.end_headers()
            self.wfile.write(answer.body)

    return Handler
