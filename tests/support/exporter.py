"""A synthetic HTTP service's metrics, with traffic a test (or the demo) can change while it runs.

Exports `http_requests_total{code="200"|"500"}` and the histogram `http_request_duration_seconds`
(buckets 0.1, 0.3, 1, +Inf) from its own registry. A background thread adds the requests of each 100 ms
tick, so a 1 s scrape sees smooth rates and the error and slow shares are exact to one request.

In-process: `with SyntheticService(Traffic(rps=50)) as service: ... service.set(error_ratio=0.5)`.
Subprocess: `python -m tests.support.exporter --port N --rps 50`, then
`POST /control {"error_ratio": 0.5, "rps": 50}` to change it (GET /control shows the current traffic).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import signal
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType
from typing import Any, Self

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from tests.support.lifecycle import Started

TICK = 0.1
"""Seconds between counter updates."""
FAST_SECONDS = 0.05
"""Latency recorded for a normal request."""
SLOW_SECONDS = 0.5
"""Latency recorded for a slow request: above the 0.3 s bucket, below 1 s."""
SHUTDOWN_POLL = 0.05
"""Seconds between the HTTP server's checks for stop(); the default 0.5 s slows every test teardown."""


@dataclass(frozen=True, slots=True)
class Traffic:
    rps: float = 10.0
    """Requests per second."""
    error_ratio: float = 0.0
    """Share of requests answered with code 500."""
    slow_ratio: float = 0.0
    """Share of requests slower than 0.3 s."""

    def __post_init__(self) -> None:
        if self.rps < 0 or not 0 <= self.error_ratio <= 1 or not 0 <= self.slow_ratio <= 1:
            raise ValueError(f"need rps >= 0 and ratios within [0, 1], got {self}")


class _Meter:
    """Turns rates into whole requests; the fractional remainders carry over so shares stay exact."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter("http_requests", "Requests served.", ["code"], registry=registry)
        self.duration = Histogram(
            "http_request_duration_seconds", "Request latency.", buckets=(0.1, 0.3, 1.0), registry=registry
        )
        self._due = {"requests": 0.0, "errors": 0.0, "slow": 0.0}

    def advance(self, traffic: Traffic, elapsed: float) -> None:
        served = self._take("requests", traffic.rps * elapsed)
        errors = self._take("errors", served * traffic.error_ratio)
        slow = self._take("slow", served * traffic.slow_ratio)
        self.requests.labels(code="500").inc(errors)
        self.requests.labels(code="200").inc(served - errors)
        for _ in range(slow):
            self.duration.observe(SLOW_SECONDS)
        for _ in range(served - slow):
            self.duration.observe(FAST_SECONDS)

    def _take(self, name: str, amount: float) -> int:
        self._due[name] += amount
        whole = int(self._due[name])
        self._due[name] -= whole
        return whole


class SyntheticService(Started):
    """Serves `/metrics` and `/control` on 127.0.0.1 (port 0 picks a free one) and ticks in the background."""

    def __init__(self, traffic: Traffic | None = None, *, port: int = 0) -> None:
        self.registry = CollectorRegistry()
        self._meter = _Meter(self.registry)
        self._traffic = traffic or Traffic()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", port), _handler_for(self))
        self._server.daemon_threads = True
        self._threads = [
            threading.Thread(
                target=self._server.serve_forever, args=(SHUTDOWN_POLL,), name="exporter-http", daemon=True
            ),
            threading.Thread(target=self._tick_forever, name="exporter-ticks", daemon=True),
        ]

    @property
    def port(self) -> int:
        port: int = self._server.server_address[1]
        return port

    @property
    def target(self) -> str:
        """`host:port` for a Prometheus scrape config."""
        return f"127.0.0.1:{self.port}"

    @property
    def traffic(self) -> Traffic:
        with self._lock:
            return self._traffic

    def set(self, **changes: Any) -> Traffic:
        """Change some of rps, error_ratio, slow_ratio; takes effect at the next tick."""
        with self._lock:
            self._traffic = dataclasses.replace(self._traffic, **changes)
            return self._traffic

    def start(self) -> Self:
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()
        for thread in self._threads:
            thread.join()

    def metrics_text(self) -> bytes:
        with self._lock:
            return generate_latest(self.registry)

    def _tick_forever(self) -> None:
        last = time.monotonic()
        while not self._stopping.wait(TICK):
            now = time.monotonic()
            with self._lock:
                self._meter.advance(self._traffic, now - last)
            last = now


def _handler_for(service: SyntheticService) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.startswith("/metrics"):
                self._send(200, CONTENT_TYPE_LATEST, service.metrics_text())
            elif self.path == "/control":
                self._send_json(200, dataclasses.asdict(service.traffic))
            else:
                self._send(404, "text/plain", b"not found")

        def do_POST(self) -> None:
            if self.path != "/control":
                self._send(404, "text/plain", b"not found")
                return
            try:
                changes = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
                traffic = service.set(**changes)
            except (ValueError, TypeError) as error:
                self._send_json(400, {"error": str(error)})
                return
            self._send_json(200, dataclasses.asdict(traffic))

        def log_message(self, format: str, *args: object) -> None:
            """Silence the per-request stderr line."""

        def _send_json(self, status: int, body: object) -> None:
            self._send(status, "application/json", json.dumps(body).encode())

        def _send(self, status: int, content_type: str, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return Handler


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Synthetic service exporter for slo-guard tests and demo")
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0 picks a free one)")
    defaults = Traffic()
    parser.add_argument("--rps", type=float, default=defaults.rps)
    parser.add_argument("--error-ratio", type=float, default=defaults.error_ratio)
    parser.add_argument("--slow-ratio", type=float, default=defaults.slow_ratio)
    args = parser.parse_args(argv)
    traffic = Traffic(rps=args.rps, error_ratio=args.error_ratio, slow_ratio=args.slow_ratio)
    stop = threading.Event()

    def request_stop(_signal: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    with SyntheticService(traffic, port=args.port) as service:
        # The one line a parent process waits for before scraping or posting to /control.
        print(f"listening on {service.target}", flush=True)
        stop.wait()


if __name__ == "__main__":
    main()
