"""`slo-guard evaluate` against a real Prometheus holding 30 days of backfilled history with known answers."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.support.datasets import ABSENT_JOB, EXPECTED, LATENCY_THRESHOLD, NOW, REQUESTS, WINDOWS, ratio_slo
from tests.support.openmetrics import CounterSeries, Document, PiecewiseRate, Resolution, backfill, sample_times
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
    assert lines[1].split()[:7] == ["shop", "steady-availability", "99.9%", "30d", "99.950%", "+50.0%", "Healthy"]
    assert lines[2].split()[:7] == ["shop", "exhausted-availability", "99.9%", "30d", "99.800%", "-100.0%", "Exhausted"]


SHORT_WINDOW_ERRORS = {"half-budget": 1, "on-budget": 2, "over-budget": 3}
"""Job -> errors per second out of 32 requests/s over the last 2 minutes (1 before): burn 0.5, 1 and 1.5 for a
93.75 % objective, whose budget 1/16 is exact, as are all these rates."""


@pytest.fixture(scope="module")
def short_window_prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusServer]:
    """An hour of the SHORT_WINDOW_ERRORS jobs at 15 s resolution, ending at NOW."""
    end = NOW.timestamp()
    start, change = end - 3600, end - 120
    times = sample_times(start=start, end=end, resolutions=[Resolution(since=start, step=15)])
    series = [
        CounterSeries({"job": job, "code": code}, PiecewiseRate.constant(before, since=start).then(after, since=change))
        for job, errors in SHORT_WINDOW_ERRORS.items()
        for code, before, after in (("500", 1, errors), ("200", 31, 32 - errors))
    ]
    document = Document()
    document.counter(REQUESTS, series, times=times)
    workdir = tmp_path_factory.mktemp("short-window-prometheus")
    backfill(document.text(), workdir / "data")
    with PrometheusServer(workdir) as server:
        yield server


def short_window_slo(job: str) -> dict[str, Any]:
    """A 10m SLO: with the default --min-step 30s every tier reads 1m windows."""
    slo = ratio_slo(job)
    slo["spec"].update(objective=93.75, window="10m")
    return slo


@pytest.mark.parametrize(("job", "burn"), [("half-budget", 0.5), ("on-budget", 1.0)])
def test_a_short_window_slo_at_or_under_its_budget_rate_is_not_burning(
    job: str,
    burn: float,
    short_window_prometheus: PrometheusServer,
    write_slos: Callable[..., Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, [row] = evaluate_json(capsys, short_window_prometheus, write_slos(short_window_slo(job)))
    status = row["status"]
    assert status["burnRates"]["1m"] == burn
    assert [alert["firing"] for alert in status["alerts"]] == [False] * 4
    assert status["state"] == "Healthy", status["message"]
    assert code == 0


def test_a_short_window_slo_over_its_budget_rate_is_burning(
    short_window_prometheus: PrometheusServer, write_slos: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    code, [row] = evaluate_json(capsys, short_window_prometheus, write_slos(short_window_slo("over-budget")))
    status = row["status"]
    # 10m: (8m at 1/32 + 2m at 3/32) / 10m = 0.04375 of requests failed, 0.7 of the budget.
    assert status["errorBudget"]["remaining"] == pytest.approx(0.3)
    assert status["burnRates"]["1m"] == 1.5
    assert [alert["firing"] for alert in status["alerts"]] == [True] * 4
    assert status["state"] == "Burning"
    assert code == 0


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
        yaml.safe_dump_all(
            [ratio_slo("steady"), {**ratio_slo("spike"), "spec": {**ratio_slo("spike")["spec"], "objective": 100}}]
        ),
        ("document 2", "spike-availability", "spec.objective"),
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


def test_every_mistake_in_every_file_is_one_line_each_in_one_run(tmp_path: Path) -> None:
    four_mistakes = ratio_slo("spike")
    spec = four_mistakes["spec"]
    spec["objectve"] = spec.pop("objective")
    spec.update(window="30x", policy={"mode": "enforce"})
    spec["targets"][0]["name"] = "Spike_v2"
    first = tmp_path / "slos.yaml"
    first.write_text(yaml.safe_dump_all([ratio_slo("steady"), four_mistakes]))
    second = tmp_path / "more.yaml"
    second.write_text(yaml.safe_dump({**ratio_slo("idle"), "spec": {**ratio_slo("idle")["spec"], "objective": 100}}))

    result = run_cli("evaluate", str(first), str(second), "--prometheus", "http://127.0.0.1:9")

    assert result.returncode == 2
    assert result.stdout == ""
    spike = f"slo-guard: error: {first}: document 2 (spike-availability): "
    assert result.stderr.splitlines() == [
        spike + "spec.objectve: unknown field; did you mean 'objective'?",
        spike + "spec.window: invalid duration '30x': unknown unit 'x' (use y w d h m s ms)",
        spike + "spec.targets[0].name: must be a DNS subdomain: lowercase letters, digits, '-' and '.', alphanumeric"
        " at both ends (got 'Spike_v2')",
        spike + "spec.policy.mode: must be 'Enforce' or 'DryRun' (got 'enforce')",
        f"slo-guard: error: {second}: document 1 (idle-availability): spec.objective: must be less than 100 (got 100)",
    ]


def test_table_shows_budget_as_signed_percent_remaining_and_no_number_as_n_a(
    dataset_prometheus: PrometheusServer, write_slos: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_slos(ratio_slo("spike"), ratio_slo("idle"))
    main(["evaluate", str(path), "--prometheus", dataset_prometheus.url, "--at", str(NOW.timestamp())])
    spike, idle = (line.split() for line in capsys.readouterr().out.splitlines()[1:])
    remaining = EXPECTED["spike"].budget_remaining()
    assert remaining is not None
    assert spike[5].startswith("+")
    assert spike[5].endswith("%")
    assert len(spike[5].split(".")[1]) == len("3%"), "one decimal"
    assert float(spike[5][:-1]) == pytest.approx(remaining * 100, rel=REL)
    assert spike[6] == "Burning"
    assert idle[4:7] == ["n/a", "n/a", "Unknown"]
