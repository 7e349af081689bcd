"""`make demo`: the whole error-budget loop on this machine, every part a real process, narrated in under 3 minutes.

Parts: the emulated Kubernetes API server (tests/support/emulator.py), a real Prometheus scraping a synthetic
checkout service, and `slo-guard run`. The SLOs from examples/ are applied as they are; their services do not exist
here, so they stay Unknown/NoData and never act. A demo SLO with a 1-minute window shows the loop: the budget drains,
the Deployment is paused, errors stop, the budget recovers and the Deployment is resumed.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from tests.support.exporter import SyntheticService, Traffic
from tests.support.kube import KubeClient, deployment_manifest, write_kubeconfig
from tests.support.prometheus import PrometheusServer, free_port

REPO = Path(__file__).resolve().parents[1]
NAMESPACE = "shop"
DEMO_SLO = "checkout-demo"
STEP_TIMEOUT = 150.0


def say(text: str) -> None:
    print(f"\n\033[1m==> {text}\033[0m", flush=True)


def demo_slo(service: SyntheticService) -> dict[str, Any]:
    instance = f'job="synthetic",instance="{service.target}"'
    return {
        "apiVersion": "sloguard.io/v1alpha1",
        "kind": "ServiceLevelObjective",
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
            "evaluationInterval": "2s",
            "targets": [{"kind": "Deployment", "name": "checkout"}],
            "policy": {"mode": "Enforce", "action": "Pause", "resumeAbove": 0.05},
        },
    }


class Narrator:
    """Prints a `kubectl get slo`-style table plus the Deployment's spec.paused whenever something changes."""

    def __init__(self, kube: KubeClient, started: float) -> None:
        self.kube = kube
        self.started = started
        self.last = ""

    def rows(self) -> list[tuple[str, ...]]:
        slos = self.kube.list_objects("sloguard.io/v1alpha1", "ServiceLevelObjective", namespace=NAMESPACE)["items"]
        rows = [("NAME", "OBJECTIVE", "WINDOW", "SLI", "BUDGET", "STATE", "REASON")]
        for item in sorted(slos, key=lambda body: body["metadata"]["name"]):
            status = item.get("status") or {}
            budget = (status.get("errorBudget") or {}).get("remaining")
            rows.append(
                (
                    item["metadata"]["name"],
                    str(item["spec"]["objective"]),
                    item["spec"]["window"],
                    "-" if status.get("sli") is None else f"{status['sli']:.4f}",
                    "-" if budget is None else f"{budget:+.2f}",
                    status.get("state", "-"),
                    status.get("reason") or "",
                )
            )
        return rows

    def show(self) -> dict[str, Any]:
        deployment = self.kube.get_object("apps/v1", "Deployment", "checkout", namespace=NAMESPACE)
        rows = self.rows()
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        table = "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)) for row in rows)
        annotations = deployment["metadata"].get("annotations") or {}
        paused = (
            f"deployment/checkout  spec.paused={str(bool(deployment['spec'].get('paused'))).lower()}"
            f"  paused-by={annotations.get('sloguard.io/paused-by', '-')}"
        )
        screen = f"{table}\n{paused}"
        if screen != self.last:
            print(f"\n[t+{time.monotonic() - self.started:5.1f}s]\n{screen}", flush=True)
            self.last = screen
        return deployment

    def until(self, condition: Callable[[dict[str, Any]], bool], what: str) -> None:
        deadline = time.monotonic() + STEP_TIMEOUT
        while not condition(self.show()):
            if time.monotonic() > deadline:
                raise SystemExit(f"demo: gave up waiting for {what}")
            time.sleep(1)


def events(kube: KubeClient) -> None:
    items = kube.list_objects("v1", "Event", namespace=NAMESPACE)["items"]
    for event in items:
        involved = event["involvedObject"]
        if involved.get("name") in (DEMO_SLO, "checkout"):
            print(
                f"  {event['type']:<8} {event['reason']:<16} {involved['kind']}/{involved['name']}: {event['message']}"
            )


def start_emulator(workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    url_file = workdir / "emulator.url"
    crd = REPO / "crds" / "servicelevelobjectives.yaml"
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.support.emulator", "--crd", str(crd), "--url-file", str(url_file)],
        cwd=REPO,
        stdout=(workdir / "emulator.log").open("wb"),
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 30
    while not (url_file.exists() and url_file.read_text().strip()):
        if time.monotonic() > deadline or process.poll() is not None:
            raise SystemExit(f"demo: the emulator did not start; see {workdir / 'emulator.log'}")
        time.sleep(0.1)
    return process, url_file.read_text().strip()


def apply_examples(kube: KubeClient) -> None:
    for path in sorted((REPO / "examples").glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            if document["kind"] == "Namespace":
                kube.ensure_namespace(document["metadata"]["name"])
            else:
                kube.create_object(document)


def main() -> int:
    workdir = Path(tempfile.mkdtemp(prefix="slo-guard-demo-"))
    service = SyntheticService(Traffic(rps=50, error_ratio=0.0)).start()
    # slo-guard writes its recording rules here and asks Prometheus to reload them (`--rules-file`).
    rules = workdir / "slo-guard-rules.yaml"
    rules.write_text("groups: []\n", encoding="utf-8")
    prometheus = PrometheusServer(workdir / "prometheus", scrape_targets=[service.target], rule_files=[rules]).start()
    emulator, api_url = start_emulator(workdir)
    kubeconfig = write_kubeconfig(workdir / "kubeconfig", api_url)
    operator_log = workdir / "operator.log"
    operator = subprocess.Popen(
        [
            sys.executable, "-m", "slo_guard", "run",
            "--prometheus", prometheus.url,
            "--min-step", "1s",
            "--max-staleness", "15s",
            "--standalone",
            "--health-port", str(free_port()),
            "--rules-file", str(rules),
        ],
        env={"KUBECONFIG": str(kubeconfig), "PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)},
        stdout=operator_log.open("wb"),
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        kube = KubeClient(api_url)
        say(f"Emulated API server {api_url}, Prometheus {prometheus.url}, slo-guard run (logs: {operator_log})")
        kube.ensure_namespace(NAMESPACE)
        for name in ("checkout", "search-api", "search-indexer"):
            kube.create_object(deployment_manifest(name, namespace=NAMESPACE, replicas=3))
        apply_examples(kube)
        kube.create_object(demo_slo(service))
        narrator = Narrator(kube, time.monotonic())
        say("The examples/ SLOs have no metrics here: Unknown/NoData, and they never act. checkout-demo is healthy.")
        narrator.until(lambda _: _demo_state(kube) == "Healthy", "checkout-demo Healthy")
        say("Injecting errors: every checkout request now fails. Watch the budget drain.")
        service.set(error_ratio=1.0)
        narrator.until(lambda deployment: bool(deployment["spec"].get("paused")), "the pause")
        say("Budget exhausted: slo-guard paused deployment/checkout. Rollouts are blocked. Fixing the errors now.")
        service.set(error_ratio=0.0)
        say("The bad minute slides out of the window; slo-guard resumes only with > 5 % of the budget back.")
        narrator.until(lambda deployment: not deployment["spec"].get("paused"), "the resume")
        say("Budget recovered: deployment/checkout resumed. Events slo-guard posted:")
        events(kube)
        groups = len((yaml.safe_load(rules.read_text()) or {}).get("groups") or [])
        say(f"slo-guard kept {groups} recording rule groups in {rules}; each cycle read them back in two queries.")
        say("Done. Run `make test` for the full suite.")
        return 0
    finally:
        operator.terminate()
        operator.wait(timeout=30)
        emulator.terminate()
        emulator.wait(timeout=30)
        prometheus.stop()
        service.stop()


def _demo_state(kube: KubeClient) -> str | None:
    body = kube.get_object("sloguard.io/v1alpha1", "ServiceLevelObjective", DEMO_SLO, namespace=NAMESPACE)
    return (body.get("status") or {}).get("state")


if __name__ == "__main__":
    sys.exit(main())
