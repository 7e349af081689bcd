"""scripts/demo.py (`make demo`): its output helpers, and one whole run the way CI sees it (stdout not a terminal).

The run takes about 30 s on 2 cores: it is the first thing a newcomer runs, so it must not rot unnoticed.
"""

from __future__ import annotations

import importlib.util
import io
import os
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from prometheus_client import generate_latest

from slo_guard.telemetry import OperatorMetrics, PrometheusOutcome, RecordedRead

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "scripts" / "demo.py"
RUN_TIMEOUT = 240
"""Seconds; a run takes about 30."""


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("demo", DEMO)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # Its dataclasses look their module up by name.
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


demo = _load()


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _slo(name: str, state: str | None = None, reason: str | None = None, budget: float | None = None) -> Any:
    status: dict[str, Any] = {}
    if state is not None:
        status = {"state": state, "reason": reason, "sli": 0.95, "errorBudget": {"remaining": budget}}
    return {"metadata": {"name": name}, "spec": {"objective": 90, "window": "1m"}, "status": status}


def _event(version: int, stamp: str, reason: str, message: str, kind: str = "ServiceLevelObjective") -> Any:
    return {
        "metadata": {"resourceVersion": str(version)},
        "involvedObject": {"kind": kind, "name": "checkout-demo" if kind != "Deployment" else "checkout"},
        "type": "Normal",
        "reason": reason,
        "message": message,
        "lastTimestamp": stamp,
    }


def test_escape_codes_only_on_a_terminal_without_no_color() -> None:
    assert demo.use_color(_Terminal(), {}) is True
    assert demo.use_color(_Terminal(), {"NO_COLOR": "1"}) is False
    assert demo.use_color(_Terminal(), {"NO_COLOR": ""}) is True, "no-color.org: only a non-empty value counts"
    assert demo.use_color(io.StringIO(), {}) is False
    assert "\033" not in demo.heading("text", color=False)
    assert "\033[1m" in demo.heading("text", color=True)


@pytest.mark.parametrize(("value", "keep"), [(None, False), ("", False), ("0", False), ("1", True), ("yes", True)])
def test_the_scratch_directory_is_kept_only_when_asked(value: str | None, keep: bool) -> None:
    assert demo.keep_dir({} if value is None else {demo.KEEP_DIR_ENV: value}) is keep


def test_examples_fold_into_one_line_once_two_screens_show_them_unchanged() -> None:
    deployment = {"metadata": {}, "spec": {"paused": False}}
    screen = demo.Screen()
    examples = [_slo("search-availability", "Unknown", "NoData"), _slo("checkout-latency")]
    first = screen.update([_slo("checkout-demo"), *examples], deployment)
    assert first is not None
    rows = ["NAME", "checkout-demo", "checkout-latency", "search-availability", "deployment/checkout"]
    assert [line.split()[0] for line in first.splitlines()] == rows
    assert screen.update([_slo("checkout-demo"), *examples], deployment) is None, "nothing changed, nothing printed"
    folded = screen.update([_slo("checkout-demo", "Healthy", None, 1.0), *examples], deployment)
    assert folded is not None
    assert (
        "examples/ (never act here): checkout-latency not evaluated yet; search-availability Unknown/NoData" in folded
    )
    assert [line.split()[0] for line in folded.splitlines()] == [
        "NAME",
        "checkout-demo",
        "examples/",
        "deployment/checkout",
    ]
    assert "+100.0%" in folded


def test_events_in_posting_order_with_times_and_each_state_said_once() -> None:
    events = [
        _event(
            9,
            "2026-01-01T00:00:12Z",
            "StateHealthy",
            "Exhausted -> Healthy: Healthy: +11.1% of the error budget left over 1m",
        ),
        _event(7, "2026-01-01T00:00:04Z", "Paused", "paused Deployment checkout", kind="Deployment"),
        _event(6, "2026-01-01T00:00:04Z", "StateExhausted", "Healthy -> Exhausted: Error budget exhausted"),
    ]
    lines = demo.event_lines(events, since=1767225600.4)  # 2026-01-01T00:00:00.4Z
    assert [re.sub(r"\s+", " ", line).strip() for line in lines] == [
        "t+ 4s Normal slo/checkout-demo Healthy -> Exhausted Error budget exhausted",
        "t+ 4s Normal deployment/checkout Paused paused Deployment checkout",
        "t+ 12s Normal slo/checkout-demo Exhausted -> Healthy +11.1% of the error budget left over 1m",
    ]


def test_query_claim_comes_from_the_operators_own_counters() -> None:
    metrics = OperatorMetrics()
    before = demo.Counters.parse(generate_latest(metrics.registry).decode())
    for _ in range(4):
        metrics.count_prometheus_request(PrometheusOutcome.SUCCESS)
    metrics.recorded_reads.labels(source=RecordedRead.RECORDED.value).inc(30)
    metrics.recorded_reads.labels(source=RecordedRead.DIRECT.value).inc(1)
    metrics.evaluation_duration.observe(0.01)
    delta = demo.Counters.parse(generate_latest(metrics.registry).decode()).since(before)
    text = "\n".join(demo.query_lines(delta))
    assert "1 evaluation passes needed 31 query answers" in text
    assert "30 read from recording rules, 0 reused, 1 queried directly" in text
    assert "Prometheus got 4 requests (slo_guard_prometheus_requests_total): those 1, and 3 batch reads" in text


@pytest.mark.prometheus
def test_a_whole_run_without_a_terminal_prints_no_escape_codes_and_cleans_up(tmp_path: Path) -> None:
    env = {key: value for key, value in os.environ.items() if key not in {"NO_COLOR", demo.KEEP_DIR_ENV}}
    env |= {"TMPDIR": str(tmp_path), "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, str(DEMO)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "\033" not in result.stdout + result.stderr
    assert list(tmp_path.iterdir()) == [], "the scratch directory should be gone"
    assert re.search(r"^Removed .*slo-guard-demo-", result.stdout, re.M)
    for line in result.stdout.splitlines():
        assert not re.search(r"-> (\w+)\s.*\b\1: ", line), f"state said twice: {line}"
    # A pass may see a page tier fire before the budget is gone: Healthy -> Burning -> Exhausted is the same story.
    assert re.search(r"(Healthy|Burning) -> Exhausted", result.stdout)
    assert re.search(r"batch reads", result.stdout)


@pytest.mark.parametrize(("value", "keep"), [(None, False), ("", False), ("0", False), ("1", True)])
def test_the_stack_keeps_serving_the_ui_only_when_asked(value: str | None, keep: bool) -> None:
    assert demo.keep_serving({} if value is None else {demo.KEEP_SERVING_ENV: value}) is keep
