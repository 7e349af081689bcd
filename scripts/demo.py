"""`make demo`: the whole error-budget loop on this machine, every part a real process, narrated in under 3 minutes.

Parts: the emulated Kubernetes API server (tests/support/emulator.py), a real Prometheus scraping a synthetic
checkout service, and `slo-guard run`. The SLOs from examples/ are applied as they are; their services do not exist
here, so they stay Unknown/NoData and never act. A demo SLO with a 1-minute window shows the loop: the budget drains,
the Deployment is paused, errors stop, the budget recovers and the Deployment is resumed.

Logs, Prometheus data and the rules file go to a temporary directory, removed at the end unless DEMO_KEEP_DIR=1
(or the demo failed: its logs say why). The web UI's URL is printed at the start; with DEMO_KEEP=1 everything keeps
running after the loop, so the UI can be explored, until Ctrl-C. Headings are bold on a terminal only, and never
with NO_COLOR set.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

import yaml
from prometheus_client.parser import text_string_to_metric_families
from tests.support.exporter import SyntheticService, Traffic
from tests.support.kube import KubeClient, deployment_manifest, write_kubeconfig
from tests.support.prometheus import PrometheusServer, free_port, terminate

from slo_guard.domain.display import NOT_AVAILABLE, budget_percent

REPO = Path(__file__).resolve().parents[1]
NAMESPACE = "shop"
DEMO_SLO = "checkout-demo"
TARGET = "checkout"
DEMO_INTERVAL = 2
"""The demo SLO's evaluationInterval in seconds: the shortest, so the operator's read cycle."""
STEP_TIMEOUT = 150.0
KEEP_DIR_ENV = "DEMO_KEEP_DIR"
KEEP_SERVING_ENV = "DEMO_KEEP"
SLO_API = ("sloguard.io/v1alpha1", "ServiceLevelObjective")
BOLD, RESET = "\033[1m", "\033[0m"

Body = Mapping[str, Any]


def use_color(stream: TextIO, environ: Mapping[str, str]) -> bool:
    """Escape codes only for a terminal; NO_COLOR with any non-empty value turns them off (no-color.org)."""
    return stream.isatty() and not environ.get("NO_COLOR")


def keep_dir(environ: Mapping[str, str]) -> bool:
    return environ.get(KEEP_DIR_ENV, "") not in {"", "0"}


def heading(text: str, *, color: bool) -> str:
    line = f"==> {text}"
    return f"\n{BOLD}{line}{RESET}" if color else f"\n{line}"


def demo_slo(service: SyntheticService) -> dict[str, Any]:
    instance = f'job="synthetic",instance="{service.target}"'
    return {
        "apiVersion": SLO_API[0],
        "kind": SLO_API[1],
        "metadata": {"name": DEMO_SLO, "namespace": NAMESPACE},
        "spec": {
            "description": "Demo: 90 % of checkout requests succeed over a 1-minute window",
            "objective": 90,
            "window": "1m",
            "indicator": {
                "ratio": {
                    "errors": f'http_requests_total{{{instance},code="500"}}',
                    "total": f"http_requests_total{{{instance}}}",
                }
            },
            "evaluationInterval": f"{DEMO_INTERVAL}s",
            "targets": [{"kind": "Deployment", "name": TARGET}],
            "policy": {"mode": "Enforce", "action": "Pause", "resumeAbove": 0.05},
        },
    }


# The screen: a `kubectl get slo`-style table, the examples in one line once settled, the Deployment's spec.paused

HEADER = ("NAME", "OBJECTIVE", "WINDOW", "SLI", "BUDGET", "STATE", "REASON")


def slo_row(slo: Body) -> tuple[str, ...]:
    status = slo.get("status") or {}
    sli = status.get("sli")
    budget = (status.get("errorBudget") or {}).get("remaining")
    return (
        slo["metadata"]["name"],
        f"{slo['spec']['objective']}%",
        slo["spec"]["window"],
        NOT_AVAILABLE if sli is None else f"{sli * 100:.2f}%",
        budget_percent(budget),
        status.get("state", "-"),
        status.get("reason") or "",
    )


def table(rows: Iterable[tuple[str, ...]]) -> str:
    rows = [HEADER, *rows]
    widths = [max(len(row[i]) for row in rows) for i in range(len(HEADER))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows
    )


def examples_line(examples: Iterable[Body]) -> str:
    """One line for the examples/ SLOs: their names grouped by state/reason."""
    groups: dict[str, list[str]] = {}
    for slo in examples:
        status = slo.get("status") or {}
        label = "/".join(filter(None, (status.get("state"), status.get("reason")))) or "not evaluated yet"
        groups.setdefault(label, []).append(slo["metadata"]["name"])
    return "examples/ (never act here): " + "; ".join(f"{', '.join(names)} {label}" for label, names in groups.items())


def paused_line(deployment: Body) -> str:
    annotations = deployment["metadata"].get("annotations") or {}
    paused = str(bool(deployment["spec"].get("paused"))).lower()
    return f"deployment/{TARGET}  spec.paused={paused}  paused-by={annotations.get('sloguard.io/paused-by', '-')}"


@dataclass
class Screen:
    """What changed since the last print; the examples fold into one line once two prints show them unchanged."""

    printed: tuple[object, ...] | None = None
    examples_settled: bool = False

    def update(self, slos: list[Body], deployment: Body) -> str | None:
        """The screen to print now, or None when nothing changed."""
        slos = sorted(slos, key=lambda slo: str(slo["metadata"]["name"]))
        demo = [slo_row(slo) for slo in slos if slo["metadata"]["name"] == DEMO_SLO]
        examples = [slo for slo in slos if slo["metadata"]["name"] != DEMO_SLO]
        example_rows = [slo_row(slo) for slo in examples]
        state = (demo, example_rows, paused_line(deployment))
        if state == self.printed:
            return None
        if self.printed is not None and self.printed[1] == example_rows:
            self.examples_settled = True
        self.printed = state
        if self.examples_settled:
            return "\n".join((table(demo), examples_line(examples), paused_line(deployment)))
        return "\n".join((table(sorted(demo + example_rows)), paused_line(deployment)))


# Events


def event_lines(events: Iterable[Body], *, since: float) -> list[str]:
    """Events in the order they were posted, timed from `since` (epoch seconds), state changes said once.

    slo-guard's state Events read `Old -> New: <status message>` and the status message may start with `New: `
    again; the transition takes the reason's column instead of StateNew.
    """
    rows = []
    for event in sorted(events, key=_posted):
        involved = event["involvedObject"]
        what, message = event["reason"], event["message"]
        transition, separator, rest = message.partition(": ")
        if separator and " -> " in transition:
            new_state = transition.rsplit(" -> ", 1)[1]
            what, message = transition, rest.removeprefix(f"{new_state}: ")
        kind = "slo" if involved["kind"] == SLO_API[1] else involved["kind"].lower()
        # Event times are cut to the second: so is the start, so that no offset comes out negative.
        offset = _posted(event)[0] - math.floor(since)
        rows.append((f"t+{offset:3.0f}s", event["type"], f"{kind}/{involved['name']}", what, message))
    widths = [max((len(row[i]) for row in rows), default=0) for i in range(4)]
    return ["  " + "  ".join(cell.ljust(width) for cell, width in zip(row, [*widths, 0], strict=True)) for row in rows]


def _posted(event: Body) -> tuple[float, int]:
    """(time, resourceVersion): Event times are whole seconds; the emulator's resourceVersions count up."""
    stamp: str = event.get("lastTimestamp") or event.get("firstTimestamp") or event["eventTime"]
    return datetime.fromisoformat(stamp).timestamp(), int(event["metadata"]["resourceVersion"])


# The operator's own /metrics


@dataclass(frozen=True)
class Counters:
    """The operator's counters behind the demo's closing claim."""

    prometheus_requests: float = 0.0
    passes: float = 0.0
    reads: Mapping[str, float] = field(default_factory=dict)
    """slo_guard_recorded_reads_total by source: recorded, reused, direct."""
    rule_groups: float = 0.0

    @classmethod
    def parse(cls, text: str) -> Counters:
        requests = passes = groups = 0.0
        reads: dict[str, float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == "slo_guard_prometheus_requests_total":
                    requests += sample.value
                elif sample.name == "slo_guard_recorded_reads_total":
                    reads[sample.labels["source"]] = sample.value
                elif sample.name == "slo_guard_evaluation_duration_seconds_count":
                    passes = sample.value
                elif sample.name == "slo_guard_managed_rule_groups":
                    groups = sample.value
        return cls(requests, passes, reads, groups)

    def since(self, earlier: Counters) -> Counters:
        reads = {source: value - earlier.reads.get(source, 0.0) for source, value in self.reads.items()}
        return Counters(self.prometheus_requests - earlier.prometheus_requests, self.passes - earlier.passes, reads)


def read_counters(url: str) -> Counters:
    with urllib.request.urlopen(url, timeout=10) as response:
        return Counters.parse(response.read().decode())


def query_lines(delta: Counters) -> list[str]:
    """The closing claim, in the operator's own numbers: what it asked Prometheus, and what naive reads would cost."""
    recorded, reused, direct = (round(delta.reads.get(source, 0.0)) for source in ("recorded", "reused", "direct"))
    answers = recorded + reused + direct
    requests = round(delta.prometheus_requests)
    return [
        f"  {delta.passes:.0f} evaluation passes needed {answers} query answers (slo_guard_recorded_reads_total):",
        f"    {recorded} read from recording rules, {reused} reused, {direct} queried directly"
        " (values no rule had recorded yet: a new SLO's first passes).",
        f"  Prometheus got {requests} requests (slo_guard_prometheus_requests_total): those {direct},"
        f" and {requests - direct} batch reads,",
        "    two per read cycle however many SLOs a cycle serves.",
        f"  Without recording rules every answer is a query of its own: {answers} requests.",
    ]


# The loop


class Narrator:
    """Prints headings, and the screen whenever it changes."""

    def __init__(self, kube: KubeClient, *, color: bool) -> None:
        self.kube = kube
        self.color = color
        self.screen = Screen()
        self.started = time.monotonic()
        self.started_epoch = time.time()

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def say(self, text: str) -> None:
        print(heading(text, color=self.color), flush=True)

    def show(self) -> Body:
        slos = self.kube.list_objects(*SLO_API, namespace=NAMESPACE)["items"]
        deployment = self.kube.get_object("apps/v1", "Deployment", TARGET, namespace=NAMESPACE)
        screen = self.screen.update(slos, deployment)
        if screen is not None:
            print(f"\n[t+{self.elapsed():5.1f}s]\n{screen}", flush=True)
        return deployment

    def until(self, condition: Callable[[Body], bool], what: str) -> None:
        deadline = time.monotonic() + STEP_TIMEOUT
        while not condition(self.show()):
            if time.monotonic() > deadline:
                raise SystemExit(f"demo: gave up waiting for {what}")
            time.sleep(1)

    def events(self) -> list[str]:
        items = self.kube.list_objects("v1", "Event", namespace=NAMESPACE)["items"]
        ours = [event for event in items if event["involvedObject"].get("name") in {DEMO_SLO, TARGET}]
        return event_lines(ours, since=self.started_epoch)


def start_emulator(workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    url_file = workdir / "emulator.url"
    crd = REPO / "crds" / "servicelevelobjectives.yaml"
    with (workdir / "emulator.log").open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "tests.support.emulator", "--crd", str(crd), "--url-file", str(url_file)],
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 30
    while not (url_file.exists() and url_file.read_text().strip()):
        if time.monotonic() > deadline or process.poll() is not None:
            raise SystemExit(f"demo: the emulator did not start; see {workdir / 'emulator.log'}")
        time.sleep(0.1)
    return process, url_file.read_text().strip()


def start_operator(
    workdir: Path, *, prometheus: str, api_url: str, health_port: int, gate_port: int, ui_port: int
) -> subprocess.Popen[bytes]:
    kubeconfig = write_kubeconfig(workdir / "kubeconfig", api_url)
    with (workdir / "operator.log").open("wb") as log:
        return subprocess.Popen(
            [
                sys.executable, "-m", "slo_guard", "run",
                "--prometheus", prometheus,
                "--min-step", "1s",
                "--max-staleness", "15s",
                "--standalone",
                "--health-port", str(health_port),
                "--gate-port", str(gate_port),
                "--ui-port", str(ui_port),
                # slo-guard writes its recording rules here and asks Prometheus to reload them.
                "--rules-file", str(workdir / "slo-guard-rules.yaml"),
            ],
            env={"KUBECONFIG": str(kubeconfig), "PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)},
            stdout=log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip


def apply_examples(kube: KubeClient) -> None:
    for path in sorted((REPO / "examples").glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            if document["kind"] == "Namespace":
                kube.ensure_namespace(document["metadata"]["name"])
            else:
                kube.create_object(document)


def run(workdir: Path, *, color: bool, keep: bool, stack: contextlib.ExitStack) -> None:
    service = stack.enter_context(SyntheticService(Traffic(rps=50, error_ratio=0.0)))
    rules = workdir / "slo-guard-rules.yaml"
    rules.write_text("groups: []\n", encoding="utf-8")
    prometheus = stack.enter_context(
        PrometheusServer(workdir / "prometheus", scrape_targets=[service.target], rule_files=[rules])
    )
    emulator, api_url = start_emulator(workdir)
    stack.callback(terminate, emulator)
    health_port, gate_port, ui_port = free_port(), free_port(), free_port()
    ui_url = f"http://127.0.0.1:{ui_port}/"
    metrics_url = f"http://127.0.0.1:{health_port}/metrics"
    gate_url = f"http://127.0.0.1:{gate_port}/gate/v1/namespaces/{NAMESPACE}/servicelevelobjectives/{DEMO_SLO}"
    stack.callback(
        terminate,
        start_operator(
            workdir,
            prometheus=prometheus.url,
            api_url=api_url,
            health_port=health_port,
            gate_port=gate_port,
            ui_port=ui_port,
        ),
    )
    kube = KubeClient(api_url)
    narrator = Narrator(kube, color=color)
    removal = f"kept: {KEEP_DIR_ENV} is set" if keep else f"removed at the end; {KEEP_DIR_ENV}=1 keeps it"
    narrator.say(f"Emulated API server {api_url}, Prometheus {prometheus.url}, slo-guard run (metrics: {metrics_url})")
    print(f"Logs, Prometheus data and the rules file: {workdir} ({removal})")
    print(f"Web UI: {ui_url} (open it now and watch; {KEEP_SERVING_ENV}=1 keeps it up after the demo)")
    kube.ensure_namespace(NAMESPACE)
    for name in (TARGET, "search-api", "search-indexer"):
        kube.create_object(deployment_manifest(name, namespace=NAMESPACE, replicas=3))
    apply_examples(kube)
    kube.create_object(demo_slo(service))
    narrator.say(
        "The examples/ SLOs have no metrics here: Unknown/NoData, and they never act. Waiting for checkout-demo."
    )
    narrator.until(lambda _: _demo_state(kube) == "Healthy", "checkout-demo Healthy")
    before, measured_from = read_counters(metrics_url), narrator.elapsed()
    narrator.say(
        "checkout-demo is Healthy. Injecting errors: every checkout request now fails. Watch the budget drain."
    )
    service.set(error_ratio=1.0)
    narrator.until(lambda deployment: bool(deployment["spec"].get("paused")), "the pause")
    service.set(error_ratio=0.0)
    narrator.say(
        "Budget exhausted: slo-guard paused deployment/checkout, so rollouts are blocked. Errors fixed now.\n"
        "    The failed requests stay in the 1-minute window for a minute. The budget may even fall for one more\n"
        "    pass (requests that failed since the last evaluation), then climbs as good requests outweigh them;\n"
        "    slo-guard resumes with more than 5% of the budget back (resumeAbove: 0.05)."
    )
    narrator.say(f"Pipelines, Argo Rollouts and Flagger ask the gate API instead. GET {gate_url}:")
    print(read_gate(gate_url))
    narrator.until(lambda deployment: not deployment["spec"].get("paused"), "the resume")
    narrator.say("Budget recovered: deployment/checkout resumed. The Events slo-guard posted, oldest first:")
    print("\n".join(narrator.events()))
    after = read_counters(metrics_url)
    narrator.say(
        f"What slo-guard asked Prometheus from t+{measured_from:.0f}s to t+{narrator.elapsed():.0f}s, by its own"
        f" /metrics ({after.rule_groups:.0f} recording rule groups managed):"
    )
    print("\n".join(query_lines(after.since(before))))
    if keep_serving(os.environ):
        narrator.say(f"{KEEP_SERVING_ENV} is set: the web UI stays up at {ui_url} until Ctrl-C.")
        with contextlib.suppress(KeyboardInterrupt):
            while True:
                time.sleep(3600)


def main() -> int:
    color = use_color(sys.stdout, os.environ)
    keep = keep_dir(os.environ)
    workdir = Path(tempfile.mkdtemp(prefix="slo-guard-demo-"))
    status = 0
    try:
        with contextlib.ExitStack() as stack:
            run(workdir, color=color, keep=keep, stack=stack)
    except KeyboardInterrupt:
        status = 130
    except BaseException:
        print(f"\ndemo: failed; logs kept in {workdir}", file=sys.stderr, flush=True)
        raise
    else:
        print(heading("Done. `make test` runs the full suite (about 20 minutes on 2 cores).", color=color))
    if keep:
        print(f"Kept {workdir}.", flush=True)
    else:
        shutil.rmtree(workdir)
        print(f"Removed {workdir} ({KEEP_DIR_ENV}=1 keeps it).", flush=True)
    return status


def read_gate(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        answer = json.load(response)
    return f"    open={str(answer['open']).lower()} reason={answer['reason']}: {answer['message']}"


def keep_serving(environ: Mapping[str, str]) -> bool:
    return environ.get(KEEP_SERVING_ENV, "") not in {"", "0"}


def _demo_state(kube: KubeClient) -> str | None:
    body = kube.get_object(*SLO_API, DEMO_SLO, namespace=NAMESPACE)
    return (body.get("status") or {}).get("state")


if __name__ == "__main__":
    sys.exit(main())
