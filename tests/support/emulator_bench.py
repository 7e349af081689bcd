"""The emulator's own per-request cost, next to kmock 0.8's stock KubernetesEmulator, in one run.

`python -m tests.support.emulator_bench` prints median milliseconds of a GET and a merge PATCH of one Deployment
(300 stored; also of an SLO and its /status, validated against crds/servicelevelobjectives.yaml) after a number
of requests already served, over keep-alive HTTP from another thread (as an operator
under test would call it). The figures go into docs/emulator.md; no test asserts on them.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import statistics
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import kmock
import yarl
from tests.support.emulator import running_emulator
from tests.support.kube import deployment_manifest

NAMESPACE = "bench"
DEPLOYMENT_PATH = f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments/web-0"
SLO_PATH = f"/apis/sloguard.io/v1alpha1/namespaces/{NAMESPACE}/servicelevelobjectives/slo-0"
PROJECT_CRD = Path(__file__).parents[2] / "crds" / "servicelevelobjectives.yaml"
Patcher = Callable[[str, int], tuple[str, Any]]


def _label_patch(path: str, index: int) -> tuple[str, Any]:
    return path, {"metadata": {"labels": {"n": str(index)}}}


def _status_patch(path: str, index: int) -> tuple[str, Any]:
    return f"{path}/status", {"status": {"state": "Healthy", "sli": 0.999 - index / 1e6}}


def _slo(index: int) -> dict[str, Any]:
    ratio = {"errors": 'http_requests_total{code=~"5.."}', "total": "http_requests_total"}
    return {
        "apiVersion": "sloguard.io/v1alpha1",
        "kind": "ServiceLevelObjective",
        "metadata": {"name": f"slo-{index}", "namespace": NAMESPACE},
        "spec": {"objective": 99.9, "window": "30d", "indicator": {"ratio": ratio}},
    }


class _Bench:
    """Keep-alive requests to one server, counting how many it has served."""

    def __init__(self, url: str, *, samples: int, path: str = DEPLOYMENT_PATH, patch: Patcher = _label_patch) -> None:
        parsed = yarl.URL(url)
        self._connection = http.client.HTTPConnection(parsed.host or "127.0.0.1", parsed.port, timeout=600)
        self._samples = samples
        self._path = path
        self._patch = patch
        self.served = 0

    def _call(self, method: str, path: str, body: Any = None) -> None:
        headers = {"Content-Type": "application/merge-patch+json"} if body is not None else {}
        payload = None if body is None else json.dumps(body)
        self._connection.request(method, path, body=payload, headers=headers)
        response = self._connection.getresponse()
        response.read()
        self.served += 1
        if response.status >= 400:
            raise RuntimeError(f"{method} {path}: HTTP {response.status}")

    def serve_until(self, count: int) -> None:
        """Send GETs until the server has served `count` requests."""
        while self.served < count:
            self._call("GET", self._path)

    def _median_ms(self, action: Callable[[int], None]) -> float:
        durations = []
        for index in range(self._samples):
            start = time.perf_counter()
            action(index)
            durations.append(time.perf_counter() - start)
        return statistics.median(durations) * 1000

    def measure(self) -> tuple[int, float, float]:
        """(requests served before, GET median ms, PATCH median ms)."""
        before = self.served
        get_ms = self._median_ms(lambda _: self._call("GET", self._path))
        patch_ms = self._median_ms(lambda index: self._call("PATCH", *self._patch(self._path, index)))
        return before, get_ms, patch_ms


def _row(server: str, figures: tuple[int, float, float]) -> str:
    served, get_ms, patch_ms = figures
    return f"| {server} | {served} | {get_ms:.2f} | {patch_ms:.2f} |"


@contextmanager
def _stock_kmock(stored: int) -> Iterator[str]:
    """kmock 0.8's KubernetesEmulator with the same Deployments, served from its own thread."""
    ready = threading.Event()
    started: list[tuple[str, asyncio.AbstractEventLoop, asyncio.Event]] = []

    async def serve() -> None:
        stop = asyncio.Event()
        async with kmock.KubernetesEmulator() as emulator, kmock.Server(emulator) as server:
            for index in range(stored):
                key = ("apps/v1/deployments", NAMESPACE, f"web-{index}")
                emulator.objects[key] = deployment_manifest(f"web-{index}", namespace=NAMESPACE)
            started.append((str(server.url), asyncio.get_running_loop(), stop))
            ready.set()
            await stop.wait()

    thread = threading.Thread(target=lambda: asyncio.run(serve()), daemon=True)
    thread.start()
    ready.wait(30)
    url, loop, stop = started[0]
    try:
        yield url
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(30)


def main(argv: Sequence[str] | None = None) -> None:
    """Print a Markdown table of the medians."""
    parser = argparse.ArgumentParser(prog="python -m tests.support.emulator_bench", description=__doc__)
    parser.add_argument("--stored", type=int, default=300, help="Deployments stored")
    parser.add_argument("--samples", type=int, default=100, help="timed requests per figure")
    args = parser.parse_args(argv)
    print("| server | requests served before | GET median ms | PATCH median ms |")
    print("|---|---|---|---|")
    with running_emulator() as emulator:
        for index in range(args.stored):
            emulator.create_object(deployment_manifest(f"web-{index}", namespace=NAMESPACE))
        bench = _Bench(str(emulator.url), samples=args.samples)
        for checkpoint in (0, 5000):
            bench.serve_until(checkpoint)
            print(_row("KubeEmulator", bench.measure()))
        emulator["patch widgets"] << 500  # plain-criteria kmock reactions: matched without scanning the log
        emulator["list leases"] << {"items": []}
        print(_row("KubeEmulator + 2 kmock reactions", bench.measure()))
    with running_emulator(crds=[PROJECT_CRD]) as emulator:
        for index in range(args.stored):
            emulator.create_object(_slo(index))
        bench = _Bench(str(emulator.url), samples=args.samples, path=SLO_PATH, patch=_status_patch)
        print(_row("KubeEmulator, SLO GET and status PATCH (schema-checked)", bench.measure()))
    with _stock_kmock(args.stored) as url:
        bench = _Bench(url, samples=max(args.samples // 5, 5))
        for checkpoint in (0, 250, 500):
            bench.serve_until(checkpoint)
            print(_row("kmock.KubernetesEmulator (stock)", bench.measure()))


if __name__ == "__main__":
    main()
