"""`--prometheus-header` and a path prefix in `--prometheus`: what Mimir, Cortex and Thanos front ends need.

None of them runs here, so the real Prometheus stands in: it ignores headers it does not know, and a recording
proxy in front of it shows what slo-guard put on the wire. `--web.route-prefix=/prometheus` serves Prometheus's
API under the same path Mimir and Cortex use.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.support.datasets import EXPECTED, NOW, WINDOWS, ratio_slo
from tests.support.faults import FaultProxy, RecordedRequest
from tests.support.prometheus import PrometheusServer

from slo_guard.cli import build_parser, main, prometheus_settings

pytestmark = pytest.mark.prometheus

TENANT = "X-Scope-OrgID"
SECRET = "s3cr3t-never-shown"
"""A header value that no output may contain."""


class PrefixedPrometheus(PrometheusServer):
    """Prometheus serving its API under /prometheus, as Mimir and Cortex do."""

    @property
    def url(self) -> str:
        return f"{super().url}/prometheus"

    @property
    def root(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _command(self) -> list[str]:
        return [*super()._command(), "--web.route-prefix=/prometheus"]


@pytest.fixture(scope="module")
def prefixed_prometheus(
    dataset_storage: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PrefixedPrometheus]:
    workdir = tmp_path_factory.mktemp("prefixed-prometheus")
    storage = shutil.copytree(dataset_storage, workdir / "data")
    with PrefixedPrometheus(workdir, storage_dir=storage) as server:
        yield server


@pytest.fixture
def slo_file(tmp_path: Path) -> Path:
    path = tmp_path / "slo.yaml"
    path.write_text(yaml.safe_dump(ratio_slo("steady")))
    return path


def evaluate(capsys: pytest.CaptureFixture[str], slo_file: Path, *args: str) -> tuple[int, dict[str, Any]]:
    code = main(["evaluate", str(slo_file), "--at", NOW.isoformat(), "--output", "json", *args])
    [row] = json.loads(capsys.readouterr().out)
    return code, row["status"]


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """A real process, so exit code and stderr are what a pipeline sees; no SLO_GUARD_* variable but `env`."""
    clean = {name: value for name, value in os.environ.items() if not name.startswith("SLO_GUARD_")}
    command = [sys.executable, "-c", "import sys; from slo_guard.cli import main; sys.exit(main())", *args]
    environment = {**clean, **(env or {})}
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False, env=environment)


def queries(proxy: FaultProxy) -> list[RecordedRequest]:
    return [request for request in proxy.requests if "/api/v1/query" in request.path]


def assert_steady_numbers(code: int, status: dict[str, Any]) -> None:
    """The right answer, not merely an answer: steady's known budget."""
    assert (code, status["state"]) == (0, "Healthy"), status["message"]
    assert status["errorBudget"]["remaining"] == pytest.approx(EXPECTED["steady"].budget_remaining(), rel=0.005)


# --- parsing: flags and the env var ---------------------------------------------------------------------


def test_the_flag_repeats_and_the_env_var_lists_pairs(monkeypatch: pytest.MonkeyPatch) -> None:
    flags = ["--prometheus-header", f"{TENANT}=team-a", "--prometheus-header", "X-Debug = on"]
    assert build_parser().parse_args(["evaluate", "x.yaml", *flags]).prometheus_header == (
        (TENANT, "team-a"),
        ("X-Debug", "on"),
    )
    monkeypatch.setenv("SLO_GUARD_PROMETHEUS_HEADER", f"{TENANT}=team-b, X-Debug=on")
    from_env = build_parser().parse_args(["evaluate", "x.yaml"]).prometheus_header
    assert from_env == ((TENANT, "team-b"), ("X-Debug", "on"))
    replaced = build_parser().parse_args(["evaluate", "x.yaml", "--prometheus-header", f"{TENANT}=team-c"])
    assert replaced.prometheus_header == ((TENANT, "team-c"),), "flags replace the env var, as for every setting"


def test_the_settings_carry_the_headers_and_their_repr_hides_the_values() -> None:
    args = build_parser().parse_args(
        ["evaluate", "x.yaml", "--prometheus", "http://mimir:9009/prometheus", "--prometheus-header", f"X-A={SECRET}"]
    )
    settings = prometheus_settings(args)
    assert settings.headers == (("X-A", SECRET),)
    assert settings.base_url == "http://mimir:9009/prometheus"
    assert SECRET not in repr(settings)


@pytest.mark.parametrize(
    ("header", "complaint"),
    [
        (f"{TENANT}:{SECRET}", "expected NAME=VALUE"),
        (f"Authorization: Bearer {SECRET}=", "not an HTTP header name"),
        (f"{TENANT}=", f"header {TENANT} has an empty value"),
    ],
    ids=["no-equals", "colon-style", "empty-value"],
)
def test_a_malformed_header_is_one_line_that_never_shows_the_value(header: str, complaint: str, slo_file: Path) -> None:
    result = run_cli("evaluate", str(slo_file), "--prometheus", "http://127.0.0.1:9", "--prometheus-header", header)
    assert result.returncode == 2
    [line] = result.stderr.splitlines()
    assert "--prometheus-header" in line
    assert complaint in line
    assert SECRET not in line


def test_a_malformed_env_var_names_the_variable_and_never_shows_the_value(slo_file: Path) -> None:
    env = {"SLO_GUARD_PROMETHEUS_HEADER": f"{TENANT}=team-a,{SECRET}"}
    result = run_cli("evaluate", str(slo_file), "--prometheus", "http://127.0.0.1:9", env=env)
    assert result.returncode == 2
    [line] = result.stderr.splitlines()
    assert "SLO_GUARD_PROMETHEUS_HEADER: expected NAME=VALUE" in line
    assert SECRET not in line


def test_an_authorization_header_beside_a_token_file_is_refused(slo_file: Path, tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("from-the-file")
    result = run_cli(
        *("evaluate", str(slo_file), "--prometheus", "http://127.0.0.1:9", "--prometheus-token-file", str(token)),
        *("--prometheus-header", f"authorization=Basic {SECRET}"),
    )
    assert result.returncode == 2
    [line] = result.stderr.splitlines()
    assert "Authorization header (--prometheus-header) would replace the bearer token" in line
    assert "--prometheus-token-file" in line
    assert SECRET not in line


def test_the_same_header_twice_is_refused(slo_file: Path) -> None:
    result = run_cli(
        *("evaluate", str(slo_file), "--prometheus", "http://127.0.0.1:9"),
        *("--prometheus-header", f"{TENANT}=a", "--prometheus-header", "x-scope-orgid=b"),
    )
    assert result.returncode == 2
    assert "header X-Scope-OrgID is given more than once (--prometheus-header)" in result.stderr


# --- on the wire, against the real Prometheus --------------------------------------------------------------


def test_every_query_carries_the_headers_beside_the_bearer_token(
    dataset_prometheus: PrometheusServer, slo_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    token = tmp_path / "token"
    token.write_text("from-the-file")
    with FaultProxy(dataset_prometheus.url) as proxy:
        code, status = evaluate(
            capsys,
            slo_file,
            *("--prometheus", proxy.url, "--prometheus-token-file", str(token)),
            *("--prometheus-header", f"{TENANT}=team-a", "--prometheus-header", f"X-Api-Key={SECRET}"),
        )
    assert_steady_numbers(code, status)
    sent = queries(proxy)
    assert len(sent) == 1 + 2 * len(WINDOWS), "the freshness query and two per window"
    for request in sent:
        assert request.headers[TENANT] == "team-a"
        assert request.headers["X-Api-Key"] == SECRET
        assert request.headers["Authorization"] == "Bearer from-the-file"


def test_a_path_prefix_in_the_url_reaches_the_api_under_it(
    prefixed_prometheus: PrefixedPrometheus, slo_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, status = evaluate(capsys, slo_file, "--prometheus", prefixed_prometheus.url)
    assert_steady_numbers(code, status)


def test_without_the_prefix_the_api_is_not_found_and_said_so(
    prefixed_prometheus: PrefixedPrometheus, slo_file: Path
) -> None:
    """The mistake a Mimir user makes first: the base URL without /prometheus."""
    result = run_cli("evaluate", str(slo_file), "--prometheus", prefixed_prometheus.root, "--at", NOW.isoformat())
    assert result.returncode == 2
    assert "404" in result.stdout + result.stderr


def test_a_mimir_shaped_url_and_tenant_header_together(
    prefixed_prometheus: PrefixedPrometheus, slo_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--prometheus http://mimir:9009/prometheus --prometheus-header X-Scope-OrgID=...`, through a proxy that
    records what arrives."""
    with FaultProxy(prefixed_prometheus.root) as proxy:
        code, status = evaluate(
            capsys, slo_file, "--prometheus", f"{proxy.url}/prometheus", "--prometheus-header", f"{TENANT}=team-a"
        )
    assert_steady_numbers(code, status)
    sent = queries(proxy)
    assert sent
    assert all(request.path.startswith("/prometheus/api/v1/query?") for request in sent)
    assert {request.headers[TENANT] for request in sent} == {"team-a"}


def test_a_failing_backend_never_shows_a_header_value(slo_file: Path) -> None:
    with FaultProxy(None, fail_with=503) as proxy:
        result = run_cli(
            *("evaluate", str(slo_file), "--prometheus", proxy.url, "--prometheus-retries", "1"),
            *("--prometheus-header", f"X-Api-Key={SECRET}"),
        )
    assert result.returncode == 2
    assert "503" in result.stderr
    assert SECRET not in result.stdout + result.stderr
