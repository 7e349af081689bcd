"""Every SLO `slo-guard import` maps evaluates, on a real Prometheus, to the numbers the source tool gives.

The fixtures in tests/fixtures/import/ are written against tests/support/datasets.py's services. For each
imported SLO, the test finds its source document through the `sloguard.io/imported-from` annotation and computes
the source tool's own error ratio over the window with PromQL, from the source's text and not from the import:

- Sloth: its SLI recording rule, `(error_query) / (total_query)` with `{{.window}}` set to the window (the rule
  `--disable-optimizations` writes; Sloth's default averages 5-minute ratios instead, the same on this steady
  traffic);
- Pyrra: its window rule, `sum(increase(errors[w])) / sum(increase(total[w]))`, and for latency
  `(sum(increase(total[w])) - sum(increase(success[w]))) / sum(increase(total[w]))`, grouped as the object says;
- OpenSLO: the spec's formulas, `bad / total` or `1 - good / total`, each query's range set to the window.

slo-guard's SLI must be 1 minus that ratio, and its budget left 1 - ratio / (1 - objective), within REL.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.conftest import summary_lines
from tests.support.datasets import NOW
from tests.support.prometheus import PrometheusServer

from slo_guard.cli import main

pytestmark = pytest.mark.prometheus

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "import"
REL = 1e-5
"""`evaluate -o json` keeps 6 significant digits of the error ratio and the budget (at most 5e-6 relative); both
sides read the same samples at the same instant, so nothing else separates them."""
SLOTH_WINDOW = "30d"
_ORIGIN = re.compile(r"(?P<tool>\w+): (?P<path>.+), document (?P<index>\d+)(?:, (?P<field>.+))?")
_SLOTH_WINDOW = re.compile(r"\{\{\s*\.window\s*\}\}")
_RANGE = re.compile(r"\[[0-9]+[smhdwy]\]")
"""A query's range; a regex's character class such as `[234]` is no duration."""
SUMMARY = summary_lines("slo-guard import: error ratios against the source tools' own PromQL")


@dataclass(frozen=True)
class Case:
    tool: str
    files: tuple[str, ...]
    slos: int
    """How many SLOs map."""
    exit_code: int = 0
    """2 when some SLOs of the files cannot map: those that did must still evaluate right."""


CASES = [
    Case("sloth", ("sloth.yaml", "sloth-resource.yaml"), slos=4),
    Case("pyrra", ("pyrra.yaml",), slos=3),
    Case("openslo", ("openslo.yaml",), slos=4),
    Case("sloth", ("sloth-refused.yaml",), slos=1, exit_code=2),
    Case("pyrra", ("pyrra-refused.yaml",), slos=1, exit_code=2),
    Case("openslo", ("openslo-refused.yaml",), slos=1, exit_code=2),
]


@pytest.mark.parametrize("case", CASES, ids=[f"{case.tool}:{','.join(case.files)}" for case in CASES])
def test_every_imported_slo_evaluates_to_the_source_tools_numbers(
    case: Case,
    dataset_prometheus: PrometheusServer,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    tool = case.tool
    paths = [str(FIXTURES / name) for name in case.files]
    assert main(["import", "--from", tool, *paths, "--window", SLOTH_WINDOW]) == case.exit_code
    imported = tmp_path / "imported.yaml"
    imported.write_text(capsys.readouterr().out)
    resources = list(yaml.safe_load_all(imported.read_text()))
    assert len(resources) == case.slos

    code = main(
        ["evaluate", str(imported), "--prometheus", dataset_prometheus.url, "--at", NOW.isoformat(), "-o", "json"]
    )
    rows = json.loads(capsys.readouterr().out)

    assert code in {0, 1}, "no SLO Unknown, no bad input (1 only says a budget is spent)"
    for resource, row in zip(resources, rows, strict=True):
        status = row["status"]
        assert status["state"] != "Unknown", (resource["metadata"]["name"], status["message"])
        ratio, objective = source_numbers(resource, dataset_prometheus)
        ours = 1 - status["sli"]
        assert ours == pytest.approx(ratio, rel=REL)
        assert status["errorBudget"]["remaining"] == pytest.approx(1 - ratio / (1 - objective), rel=REL, abs=1e-9)
        SUMMARY.append(
            f"{tool} {resource['metadata']['name']}: error ratio slo-guard {ours:.6g}, {tool} {ratio:.9g} "
            f"(relative difference {abs(ours - ratio) / ratio:.1e}); budget left {status['errorBudget']['remaining']}"
        )


def source_numbers(resource: Mapping[str, Any], server: PrometheusServer) -> tuple[float, float]:
    """The source tool's error ratio over the SLO's window at NOW, and its objective as a fraction."""
    origin = _ORIGIN.fullmatch(resource["metadata"]["annotations"]["sloguard.io/imported-from"])
    assert origin is not None
    documents = list(yaml.safe_load_all(Path(origin["path"]).read_text()))
    document = documents[int(origin["index"]) - 1]
    tool, field = origin["tool"], origin["field"]
    if tool == "sloth":
        return sloth(document, field, server)
    if tool == "pyrra":
        return pyrra(document, server)
    return openslo(document, field, documents, server)


def sloth(document: Mapping[str, Any], field: str, server: PrometheusServer) -> tuple[float, float]:
    service = document.get("spec", document)
    slo = service["slos"][position(field)]
    events = slo["sli"]["events"]
    errors = events.get("error_query") or events["errorQuery"]
    total = events.get("total_query") or events["totalQuery"]
    rule = _SLOTH_WINDOW.sub(SLOTH_WINDOW, f"({errors}) / ({total})")
    return value(server, rule), slo["objective"] / 100


def pyrra(document: Mapping[str, Any], server: PrometheusServer) -> tuple[float, float]:
    spec = document["spec"]
    window = spec["window"]
    indicator = spec["indicator"]
    if "ratio" in indicator:
        ratio = indicator["ratio"]
        by = f"by ({', '.join(ratio.get('grouping', []))})"
        rule = (
            f"sum {by} (increase({ratio['errors']['metric']}[{window}]))"
            f" / sum {by} (increase({ratio['total']['metric']}[{window}]))"
        )
    else:
        latency = indicator["latency"]
        total = f"sum(increase({latency['total']['metric']}[{window}]))"
        rule = f"({total} - sum(increase({latency['success']['metric']}[{window}]))) / {total}"
    return value(server, rule), float(spec["target"]) / 100


def openslo(
    document: Mapping[str, Any], field: str | None, documents: list[Any], server: PrometheusServer
) -> tuple[float, float]:
    spec = document["spec"]
    window = spec["timeWindow"][0]["duration"]
    if "indicatorRef" in spec:
        [sli] = [d for d in documents if d["kind"] == "SLI" and d["metadata"]["name"] == spec["indicatorRef"]]
    else:
        sli = spec["indicator"]
    ratio_metric = sli["spec"]["ratioMetric"]

    def query(side: str) -> str:
        return _RANGE.sub(f"[{window}]", ratio_metric[side]["metricSource"]["spec"]["query"])

    if "bad" in ratio_metric:
        rule = f"({query('bad')}) / ({query('total')})"
    else:
        rule = f"1 - ({query('good')}) / ({query('total')})"
    objective = spec["objectives"][position(field) if field else 0]
    return value(server, rule), objective["target"] if "target" in objective else objective["targetPercent"] / 100


def position(field: str) -> int:
    """The list index at the end of a field such as `slos[2]`."""
    return int(field.rsplit("[", 1)[1].rstrip("]"))


def value(server: PrometheusServer, expr: str) -> float:
    [(_, result)] = server.query(expr, at=NOW)
    return result
