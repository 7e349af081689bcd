"""`slo-guard evaluate` against a real Prometheus holding 30 days of backfilled history with known answers."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.support.datasets import ABSENT_JOB, EXPECTED, LATENCY_THRESHOLD, NOW, WINDOWS
from tests.support.prometheus import PrometheusServer

from slo_guard.cli import main
from slo_guard.domain.durations import format_duration

pytestmark = pytest.mark.prometheus

REL = 0.005
"""The issue's accuracy bar: 0.5 % relative error against the generating formulas."""
TIERS = (
    ("page", "1h", "5m", 14.4),
    ("page", "6h", "30m", 6.0),
    ("ticket", "1d", "2h", 3.0),
    ("ticket", "3d", "6h", 1.0),
)


def ratio_slo(job: str, *, name: str | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "sloguard.io/v1alpha1",
        "kind": "ServiceLevelObjective",
        "metadata": {"name": name or f"{job}-availability", "namespace": "shop"},
        "spec": {
            "objective": 99.9,
            "window": "30d",
            "indicator": {
                "ratio": {
                    "errors": f'http_requests_total{{job="{job}",code=~"5.."}}',
                    "total": f'http_requests_total{{job="{job}"}}',
                }
            },
            "targets": [{"kind": "Deployment", "name": job}],
        },
    }


def latency_slo(threshold: float) -> dict[str, Any]:
    slo = ratio_slo("latency", name="latency-speed")
    slo["spec"]["indicator"] = {
        "latency": {"histogram": 'http_request_duration_seconds{job="latency"}', "threshold": threshold}
    }
    return slo


@pytest.fixture
def write_slos(tmp_path: Path) -> Callable[..., Path]:
    def write(*documents: dict[str, Any], name: str = "slos.yaml") -> Path:
        path = tmp_path / name
        path.write_text(yaml.safe_dump_all(documents))
        return path

    return write


def evaluate_json(
    capsys: pytest.CaptureFixture[str], server: PrometheusServer, path: Path
) -> tuple[int, list[dict[str, Any]]]:
    code = main(["evaluate", str(path), "--prometheus", server.url, "--at", NOW.isoformat(), "--output", "json"])
    return code, json.loads(capsys.readouterr().out)


def test_steady_service_matches_known_sli_budget_and_burn_rates(
    dataset_prometheus: PrometheusServer, write_slos: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    code, [row] = evaluate_json(capsys, dataset_prometheus, write_slos(ratio_slo("steady")))
    expected = EXPECTED["steady"]
    status = row["status"]
    assert code == 0
    assert (row["name"], row["namespace"]) == ("steady-availability", "shop")
    assert status["state"] == "Healthy"
    assert status["sli"] == pytest.approx(1 - expected.error_ratio[WINDOWS[-1]], rel=REL)
    assert status["errorBudget"]["remaining"] == pytest.approx(expected.budget_remaining(), rel=REL)
    assert status["errorBudget"]["consumed"] == pytest.approx(1 - expected.budget_remaining(), rel=REL)
    for window in WINDOWS:
        assert status["burnRates"][format_duration(window)] == pytest.approx(expected.burn_rate(window), rel=REL)
    assert not any(alert["firing"] for alert in status["alerts"])
    assert status["evaluatedAt"] == "2026-11-01T00:00:00Z"


@pytest.mark.parametrize("job", ["steady", "spike", "exhausted"])
def test_every_tier_fires_exactly_as_its_two_windows_dictate(
    job: str,
    dataset_prometheus: PrometheusServer,
    write_slos: Callable[..., Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    _, [row] = evaluate_json(capsys, dataset_prometheus, write_slos(ratio_slo(job)))
    expected = EXPECTED[job]
    burn = {format_duration(window): expected.burn_rate(window) for window in WINDOWS}
    alerts = {(a["severity"], a["longWindow"], a["shortWindow"]): a for a in row["status"]["alerts"]}
    assert set(alerts) == {tier[:3] for tier in TIERS}
    for severity, long_window, short_window, factor in TIERS:
        alert = alerts[(severity, long_window, short_window)]
        should_fire = (burn[long_window] or 0) > factor and (burn[short_window] or 0) > factor
        assert alert["factor"] == pytest.approx(factor)
        assert alert["firing"] is should_fire, (job, long_window, short_window)


def test_spike_pages_and_reports_burning(
    dataset_prometheus: PrometheusServer, write_slos: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    code, [row] = evaluate_json(capsys, dataset_prometheus, write_slos(ratio_slo("spike")))
    status = row["status"]
    assert code == 0, "Burning still lets a deploy through; only Exhausted closes the gate"
    assert status["state"] == "Burning"
    assert status["errorBudget"]["remaining"] == pytest.approx(EXPECTED["spike"].budget_remaining(), rel=REL)
    firing = [(a["longWindow"], a["shortWindow"]) for a in status["alerts"] if a["firing"]]
    assert firing == [("1h", "5m")]
    one_hour_burn = EXPECTED["spike"].burn_rate(3600)
    assert one_hour_burn is not None
    expected_tte = EXPECTED["spike"].budget_remaining() * 30 * 86400 / one_hour_burn  # type: ignore[operator]
    assert status["timeToExhaustion"] == pytest.approx(expected_tte, rel=REL)


def test_exhausted_budget_closes_the_gate(
    dataset_prometheus: PrometheusServer, write_slos: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    code, [row] = evaluate_json(capsys, dataset_prometheus, write_slos(ratio_slo("exhausted")))
    assert code == 1
    assert row["status"]["state"] == "Exhausted"
    assert row["status"]["errorBudget"]["remaining"] == pytest.approx(EXPECTED["exhausted"].budget_remaining(), rel=REL)
    assert row["status"]["timeToExhaustion"] == 0


def test_latency_sli_from_histogram(
    dataset_prometheus: PrometheusServer, write_slos: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    _, [row] = evaluate_json(capsys, dataset_prometheus, write_slos(latency_slo(LATENCY_THRESHOLD)))
    expected = EXPECTED["latency"]
    assert row["status"]["sli"] == pytest.approx(1 - expected.error_ratio[WINDOWS[-1]], rel=REL)
    assert row["status"]["burnRates"]["1h"] == pytest.approx(expected.burn_rate(3600), rel=REL)


@pytest.mark.parametrize(
    ("slo", "reason"),
    [
        (ratio_slo("idle"), "NoTraffic"),
        (ratio_slo(ABSENT_JOB), "NoData"),
        (ratio_slo("stale"), "StaleData"),
        (latency_slo(0.25), "NoData"),
    ],
    ids=["zero-traffic", "absent-series", "stale-samples", "threshold-not-a-bucket"],
)
def test_missing_data_is_unknown_with_its_own_reason_and_never_a_number(
    slo: dict[str, Any],
    reason: str,
    dataset_prometheus: PrometheusServer,
    write_slos: Callable[..., Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, [row] = evaluate_json(capsys, dataset_prometheus, write_slos(slo))
    status = row["status"]
    assert code == 2
    assert (status["state"], status["reason"]) == ("Unknown", reason)
    assert status["sli"] is None
    assert status["errorBudget"]["remaining"] is None


def test_one_unknown_slo_makes_the_whole_run_exit_2(
    dataset_prometheus: PrometheusServer, write_slos: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    code, rows = evaluate_json(capsys, dataset_prometheus, write_slos(ratio_slo("steady"), ratio_slo("idle")))
    assert code == 2
    assert [row["status"]["state"] for row in rows] == ["Healthy", "Unknown"]


def test_table_output_reads_like_kubectl(
    dataset_prometheus: PrometheusServer, write_slos: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_slos(ratio_slo("steady"), ratio_slo("exhausted"))
    code = main(["evaluate", str(path), "--prometheus", dataset_prometheus.url, "--at", str(NOW.timestamp())])
    lines = capsys.readouterr().out.splitlines()
    assert code == 1
    assert lines[0].split()[:7] == ["NAMESPACE", "NAME", "OBJECTIVE", "WINDOW", "SLI", "BUDGET", "STATE"]
    assert lines[1].split()[:7] == ["shop", "steady-availability", "99.9%", "30d", "99.950%", "50.0%", "Healthy"]
    assert lines[2].split()[:7] == ["shop", "exhausted-availability", "99.9%", "30d", "99.800%", "-100.0%", "Exhausted"]


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """A real process, so the exit code and stderr are exactly what a pipeline sees."""
    command = [sys.executable, "-c", "import sys; from slo_guard.cli import main; sys.exit(main())", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


BAD_INPUTS: list[tuple[str, str, tuple[str, ...]]] = [
    ("malformed-yaml", "kind: [unclosed", ("malformed YAML", "line 1")),
    (
        "unknown-field",
        yaml.safe_dump({**ratio_slo("steady"), "spec": {**ratio_slo("steady")["spec"], "windw": "30d"}}),
        ("document 1", "spec.windw"),
    ),
    (
        "wrong-type",
        yaml.safe_dump({**ratio_slo("steady"), "spec": {**ratio_slo("steady")["spec"], "objective": "high"}}),
        ("spec.objective",),
    ),
    (
        "objective-out-of-range",
        yaml.safe_dump({**ratio_slo("steady"), "spec": {**ratio_slo("steady")["spec"], "objective": 100}}),
        ("spec.objective",),
    ),
    (
        "bad-duration",
        yaml.safe_dump({**ratio_slo("steady"), "spec": {**ratio_slo("steady")["spec"], "window": "30x"}}),
        ("spec.window",),
    ),
    (
        "injection",
        yaml.safe_dump(
            {
                **ratio_slo("steady"),
                "spec": {
                    **ratio_slo("steady")["spec"],
                    "indicator": {"ratio": {"errors": 'x{a="b"} or vector(1) #', "total": "http_requests_total"}},
                },
            }
        ),
        ("spec.indicator.ratio.errors",),
    ),
    (
        "second-document-bad",
        yaml.safe_dump_all([ratio_slo("steady"), {**ratio_slo("spike"), "spec": {"objective": 99}}]),
        ("document 2", "spike-availability", "spec."),
    ),
]


@pytest.mark.parametrize(("text", "needles"), [case[1:] for case in BAD_INPUTS], ids=[case[0] for case in BAD_INPUTS])
def test_bad_input_is_one_line_naming_file_document_and_field(
    text: str, needles: tuple[str, ...], tmp_path: Path
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    result = run_cli("evaluate", str(path), "--prometheus", "http://127.0.0.1:9")
    assert result.returncode == 2
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    [line] = result.stderr.splitlines()
    assert str(path) in line
    for needle in needles:
        assert needle in line


def test_unreachable_prometheus_is_one_line_and_exit_2(write_slos: Callable[..., Path]) -> None:
    path = write_slos(ratio_slo("steady"))
    result = run_cli("evaluate", str(path), "--prometheus", "http://127.0.0.1:9", "--prometheus-retries", "1")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    [line] = result.stderr.splitlines()
    assert "Prometheus" in line
    assert "unavailable" in line.lower()


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["evaluate", "missing.yaml", "--prometheus", "http://127.0.0.1:9"], "missing.yaml"),
        (["evaluate", "x.yaml", "--prometheus", "http://127.0.0.1:9", "--at", "yesterday"], "--at"),
        (["evaluate", "x.yaml", "--prometheus", "ftp://prometheus"], "--prometheus"),
        (["evaluate", "x.yaml", "--output", "xml", "--prometheus", "http://127.0.0.1:9"], "--output"),
    ],
    ids=["missing-file", "bad-time", "bad-url", "bad-output"],
)
def test_usage_errors_are_one_line(args: list[str], needle: str, tmp_path: Path) -> None:
    (tmp_path / "x.yaml").write_text(yaml.safe_dump(ratio_slo("steady")))
    result = subprocess.run(
        [sys.executable, "-c", "import sys; from slo_guard.cli import main; sys.exit(main())", *args],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    [line] = result.stderr.splitlines()
    assert needle in line
