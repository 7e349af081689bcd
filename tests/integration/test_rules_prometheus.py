"""The generated rules in the real Prometheus: promtool accepts them, and they agree with `evaluate()`.

Recording rules only run going forward, so the agreement is checked with `promtool test rules` (the real
Prometheus engine over synthetic series with known rates, evaluated rule by rule) on a 1 h SLO whose
tiers scale down to seconds, plus one live server scraping the synthetic exporter.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.support.exporter import SyntheticService, Traffic
from tests.support.openmetrics import PiecewiseRate
from tests.support.prometheus import PrometheusServer, prometheus_bin

from slo_guard.adapters.prometheus import PrometheusClient, PrometheusSettings
from slo_guard.domain.durations import format_duration
from slo_guard.domain.evaluation import error_ratio, evaluate
from slo_guard.domain.evaluation_types import Evaluation, Measurements, WindowRates
from slo_guard.domain.model import (
    LabelMatcher,
    LatencyIndicator,
    MatchOp,
    Objective,
    RatioIndicator,
    Severity,
)
from slo_guard.domain.rules import (
    BUDGET_REMAINING_RECORD,
    BURN_ALERT,
    EXHAUSTED_ALERT,
    error_ratio_record,
    recording_and_alerting_groups,
    rule_file,
)
from slo_guard.domain.selectors import parse_selector
from slo_guard.domain.windows import default_tiers, required_windows
from slo_guard.service.evaluation import EvaluationSettings, measure

pytestmark = pytest.mark.prometheus

HOUR = 3_600
DAY = 86_400
INCIDENT = (HOUR, HOUR + 60)
"""Seconds from the start of the series: a minute at 2 % errors after an hour at 0.05 %."""
END = HOUR + 120
EVALUATION_INTERVAL = 5
"""Seconds between rule evaluations; every time in EVAL_TIMES is a multiple, so it reads fresh values."""
EVAL_TIMES = (HOUR, HOUR + 5, HOUR + 30, HOUR + 60, END)
"""Steady, early incident (short windows only), incident, its end, a minute after it."""
TOLERANCE = 0.005
"""Relative difference allowed between a recorded value and evaluate()'s."""
VALUE_TEMPLATE = "{{ $value | humanizePercentage }}"


@dataclass(frozen=True, slots=True)
class Job:
    """A synthetic service: per-second good and bad request rates; errors None when it never failed."""

    ok: PiecewiseRate
    errors: PiecewiseRate | None


def _steady(per_second: float) -> PiecewiseRate:
    return PiecewiseRate.constant(per_second, since=0)


def _with_incident(steady: float, incident: float) -> PiecewiseRate:
    return _steady(steady).then(incident, since=INCIDENT[0]).then(steady, since=INCIDENT[1])


JOBS = {
    "checkout": Job(ok=_with_incident(999.5, 980), errors=_with_incident(0.5, 20)),
    "flawless": Job(ok=_steady(1000), errors=None),
    "idle": Job(ok=_steady(0), errors=_steady(0)),
}


def ratio_slo(name: str, *, job: str, target: float = 0.999) -> Objective:
    return Objective(
        name=name,
        namespace="shop",
        objective=target,
        window=HOUR,
        indicator=RatioIndicator(
            errors=parse_selector(f'http_requests_total{{job="{job}",code="500"}}'),
            total=parse_selector(f'http_requests_total{{job="{job}"}}'),
        ),
        tiers=default_tiers(HOUR, min_step=1),
        evaluation_interval=EVALUATION_INTERVAL,
    )


SLOS = {
    "checkout": ratio_slo("checkout", job="checkout"),
    "checkout-strict": ratio_slo("checkout-strict", job="checkout", target=0.9996),
    "flawless": ratio_slo("flawless", job="flawless"),
    "idle": ratio_slo("idle", job="idle"),
}
JOB_OF = {"checkout": "checkout", "checkout-strict": "checkout", "flawless": "flawless", "idle": "idle"}


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    command = [str(prometheus_bin("promtool")), *args]
    return subprocess.run(command, capture_output=True, text=True, check=False)


def run_promtool(*args: str) -> str:
    result = promtool(*args)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    return output


def write_yaml(path: Path, document: Mapping[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(dict(document), sort_keys=False, width=1_000_000), encoding="utf-8")
    return path


def test_promtool_accepts_the_rules_of_every_kind_of_slo(tmp_path: Path) -> None:
    latency = LatencyIndicator(parse_selector('http_request_duration_seconds{job="checkout"}'), threshold=0.3)
    slos = [
        SLOS["checkout"],
        Objective(
            name="checkout-latency",
            namespace="shop",
            objective=0.99,
            window=28 * DAY,
            indicator=latency,
            tiers=default_tiers(28 * DAY, min_step=60),
        ),
    ]
    tenant = (LabelMatcher("namespace", MatchOp.EQUAL, "shop"),)
    path = write_yaml(tmp_path / "rules.yml", rule_file(slos, extra=tenant))
    rules = sum(len(recording_and_alerting_groups(slo)[0]["rules"]) for slo in slos)
    assert f"SUCCESS: {rules} rules found" in run_promtool("check", "rules", str(path))


# --- promtool test rules: recorded values and alerts against evaluate() ---------------------------------


def counter_values(rate: PiecewiseRate) -> str:
    """promtool's expanding notation for a counter sampled every second from 0 to END (`a+bxn ...`)."""
    starts = [int(start) for start, _ in rate.segments]
    parts = []
    for index, ((start, per_second), stop) in enumerate(zip(rate.segments, [*starts[1:], END], strict=True)):
        first = int(start) if index == 0 else int(start) + 1
        parts.append(f"{rate.counter(first)!r}+{per_second!r}x{stop - first}")
    return " ".join(parts)


def input_series() -> list[dict[str, str]]:
    return [
        {"series": f'http_requests_total{{job="{job}",code="{code}"}}', "values": counter_values(rate)}
        for job, traffic in JOBS.items()
        for code, rate in (("200", traffic.ok), ("500", traffic.errors))
        if rate is not None
    ]


def window_rates(job: Job, *, at: int, window: int) -> WindowRates:
    total = job.ok.events(at - window, at) + (job.errors.events(at - window, at) if job.errors else 0.0)
    errors = None if job.errors is None else job.errors.events(at - window, at) / window
    return WindowRates(errors=errors, total=total / window)


def measurements(slo: Objective, *, at: int) -> Measurements:
    job = JOBS[JOB_OF[slo.name]]
    windows = {window: window_rates(job, at=at, window=window) for window in required_windows(slo)}
    return Measurements(windows=windows, newest_sample_age=0.0)


def evaluation(slo: Objective, *, at: int) -> Evaluation:
    moment = datetime.fromtimestamp(at, UTC)
    return evaluate(slo, measurements(slo, at=at), now=moment, max_staleness=60)


def recorded_ratio(slo: Objective, *, at: int, window: int) -> float | None:
    return error_ratio(slo.indicator, measurements(slo, at=at).windows[window])


def slo_selector(metric: str, slo: Objective) -> str:
    return f'{metric}{{sloguard_namespace="{slo.namespace}",sloguard_slo="{slo.name}"}}'


def close_to(selector: str, expected: float) -> str:
    """1 when the recorded value is within TOLERANCE of `expected`; no sample when nothing was recorded."""
    if expected == 0:
        return f"{selector} == bool 0"
    return f"abs({selector} - {expected!r}) <= bool {abs(expected) * TOLERANCE!r}"


def value_test(
    slo: Objective,
    *,
    metric: str,
    window: int,
    at: int,
    expected: float | None,
) -> dict[str, Any]:
    selector = slo_selector(metric, slo)
    span = format_duration(window)
    labels = f'{{sloguard_namespace="{slo.namespace}",sloguard_slo="{slo.name}",window="{span}"}}'
    if expected is None:
        return {"expr": selector, "eval_time": f"{at}s", "exp_samples": []}
    return {
        "expr": close_to(selector, expected),
        "eval_time": f"{at}s",
        "exp_samples": [{"labels": labels, "value": 1}],
    }


def value_tests() -> Iterator[dict[str, Any]]:
    for slo in SLOS.values():
        for at in EVAL_TIMES:
            for window in required_windows(slo):
                expected = recorded_ratio(slo, at=at, window=window)
                metric = error_ratio_record(window)
                yield value_test(slo, metric=metric, window=window, at=at, expected=expected)
            remaining = evaluation(slo, at=at).budget_remaining
            budget = BUDGET_REMAINING_RECORD
            yield value_test(slo, metric=budget, window=slo.window, at=at, expected=remaining)


def humanize_percentage(value: float) -> str:
    """Prometheus's `humanizePercentage` template function (Go's `%.4g%%` of value * 100)."""
    return f"{value * 100:.4g}%"


def rule_annotations(slo: Objective, *, alert: str, long_window: int | None = None) -> dict[str, str]:
    for rule in recording_and_alerting_groups(slo)[0]["rules"]:
        if rule.get("alert") != alert:
            continue
        if long_window is None or rule["labels"]["long_window"] == format_duration(long_window):
            return dict(rule["annotations"])
    raise AssertionError(f"no {alert} rule with long window {long_window}")


def expanded(annotations: Mapping[str, str], value: float) -> dict[str, str]:
    text = humanize_percentage(value)
    return {key: template.replace(VALUE_TEMPLATE, text) for key, template in annotations.items()}


def expected_burn_alerts(slo: Objective, *, at: int) -> Iterator[dict[str, Any]]:
    for status in evaluation(slo, at=at).alerts:
        if not status.firing:
            continue
        long_ratio = recorded_ratio(slo, at=at, window=status.long_window)
        assert long_ratio is not None
        labels = {
            "sloguard_namespace": slo.namespace,
            "sloguard_slo": slo.name,
            "severity": status.severity.value,
            "long_window": format_duration(status.long_window),
            "short_window": format_duration(status.short_window),
        }
        annotations = rule_annotations(slo, alert=BURN_ALERT, long_window=status.long_window)
        yield {"exp_labels": labels, "exp_annotations": expanded(annotations, long_ratio)}


def expected_exhausted_alerts(slo: Objective, *, at: int) -> Iterator[dict[str, Any]]:
    remaining = evaluation(slo, at=at).budget_remaining
    if remaining is None or remaining > 0:
        return
    labels = {
        "sloguard_namespace": slo.namespace,
        "sloguard_slo": slo.name,
        "window": format_duration(slo.window),
        "severity": Severity.TICKET.value,
    }
    annotations = rule_annotations(slo, alert=EXHAUSTED_ALERT)
    yield {"exp_labels": labels, "exp_annotations": expanded(annotations, remaining)}


def alert_tests() -> Iterator[dict[str, Any]]:
    for at in EVAL_TIMES:
        burning = [alert for slo in SLOS.values() for alert in expected_burn_alerts(slo, at=at)]
        exhausted = [alert for slo in SLOS.values() for alert in expected_exhausted_alerts(slo, at=at)]
        yield {"eval_time": f"{at}s", "alertname": BURN_ALERT, "exp_alerts": burning}
        yield {"eval_time": f"{at}s", "alertname": EXHAUSTED_ALERT, "exp_alerts": exhausted}


def page_tiers_firing(slo: Objective, *, at: int) -> list[tuple[str, str]]:
    return [
        (format_duration(alert.long_window), format_duration(alert.short_window))
        for alert in evaluation(slo, at=at).alerts
        if alert.firing and alert.severity is Severity.PAGE
    ]


def test_the_scenario_pages_on_the_incident_only() -> None:
    """The data the next test replays: evaluate() pages during the incident and never on steady traffic."""
    checkout = SLOS["checkout"]
    assert page_tiers_firing(checkout, at=HOUR) == []
    assert page_tiers_firing(checkout, at=HOUR + 60) == [("5s", "2s"), ("30s", "3s")]
    assert page_tiers_firing(checkout, at=END) == []
    assert evaluation(SLOS["checkout-strict"], at=HOUR).budget_remaining == pytest.approx(-0.25)
    assert recorded_ratio(SLOS["flawless"], at=HOUR, window=HOUR) == 0.0
    assert evaluation(SLOS["idle"], at=HOUR).budget_remaining is None


def test_recorded_values_and_alerts_match_evaluate_in_the_prometheus_engine(tmp_path: Path) -> None:
    rules = write_yaml(tmp_path / "rules.yml", rule_file(list(SLOS.values())))
    unit_tests = {
        "rule_files": [rules.name],
        "evaluation_interval": f"{EVALUATION_INTERVAL}s",
        "tests": [
            {
                "interval": "1s",
                "input_series": input_series(),
                "promql_expr_test": list(value_tests()),
                "alert_rule_test": list(alert_tests()),
            }
        ],
    }
    path = write_yaml(tmp_path / "rules_test.yml", unit_tests)
    assert "SUCCESS" in run_promtool("test", "rules", str(path))


def test_promtool_test_rules_catches_a_wrong_expectation(tmp_path: Path) -> None:
    """The harness above can fail: one recorded value off by 1 % is reported."""
    checkout = SLOS["checkout"]
    ratio = recorded_ratio(checkout, at=END, window=HOUR)
    assert ratio is not None
    wrong = value_test(checkout, metric=error_ratio_record(HOUR), window=HOUR, at=END, expected=ratio * 1.01)
    rules = write_yaml(tmp_path / "rules.yml", rule_file([checkout]))
    unit_tests = {
        "rule_files": [rules.name],
        "evaluation_interval": f"{EVALUATION_INTERVAL}s",
        "tests": [{"interval": "1s", "input_series": input_series(), "promql_expr_test": [wrong]}],
    }
    path = write_yaml(tmp_path / "rules_test.yml", unit_tests)
    result = promtool("test", "rules", str(path))
    assert result.returncode != 0
    assert error_ratio_record(HOUR) in result.stdout + result.stderr


# --- live: a real server evaluating the rules every second against a scraped exporter ---------------------

LIVE_DEADLINE = 30.0
"""Seconds to wait for the first recorded budget (the first scrape takes about 6 s)."""


def live_slo() -> Objective:
    """A 20 s SLO in a namespace named like the scrape job, so the tenant label `job` selects its series."""
    window = 20
    return Objective(
        name="live",
        namespace="synthetic",
        objective=0.8,
        window=window,
        indicator=RatioIndicator(
            errors=parse_selector('http_requests_total{code="500"}'),
            total=parse_selector("http_requests_total"),
        ),
        tiers=default_tiers(window, min_step=1),
        evaluation_interval=1,
    )


def wait_for_recorded_budget(server: PrometheusServer, slo: Objective) -> datetime:
    """The evaluation time of the first recorded budget remaining."""
    deadline = time.monotonic() + LIVE_DEADLINE
    while time.monotonic() < deadline:
        stamp = server.query_value(f"timestamp({slo_selector(BUDGET_REMAINING_RECORD, slo)})")
        if stamp is not None:
            return datetime.fromtimestamp(stamp, UTC)
        time.sleep(0.2)
    raise AssertionError(f"no {BUDGET_REMAINING_RECORD} recorded within {LIVE_DEADLINE} s")


def test_live_recorded_values_equal_what_the_operator_evaluates_at_the_same_instant(tmp_path: Path) -> None:
    slo = live_slo()
    tenant = (LabelMatcher("job", MatchOp.EQUAL, slo.namespace),)
    rules = write_yaml(tmp_path / "rules.yml", rule_file([slo], extra=tenant))
    workdir = tmp_path / "prometheus"
    with (
        SyntheticService(Traffic(rps=200, error_ratio=0.1)) as service,
        PrometheusServer(workdir, scrape_targets=[service.target], rule_files=[rules]) as server,
    ):
        at = wait_for_recorded_budget(server, slo)
        recorded = {
            window: server.query_value(slo_selector(error_ratio_record(window), slo), at=at)
            for window in required_windows(slo)
        }
        budget = server.query_value(slo_selector(BUDGET_REMAINING_RECORD, slo), at=at)
        settings = EvaluationSettings(max_staleness=10, tenant_label="job")
        measured = asyncio.run(_measure(slo, url=server.url, at=at, settings=settings))
    live = evaluate(slo, measured, now=at, max_staleness=10)
    assert live.budget_remaining == pytest.approx(0.5, rel=0.05)
    assert budget == pytest.approx(live.budget_remaining, rel=TOLERANCE)
    for window, value in recorded.items():
        assert value == pytest.approx(error_ratio(slo.indicator, measured.windows[window]), rel=TOLERANCE)


async def _measure(slo: Objective, *, url: str, at: datetime, settings: EvaluationSettings) -> Measurements:
    async with PrometheusClient(PrometheusSettings(url=url)) as client:
        return await measure(slo, client, at=at, settings=settings)
