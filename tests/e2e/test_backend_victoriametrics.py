"""The operator end to end on VictoriaMetrics instead of Prometheus, with vmalert running its recording rules.

`slo-guard run --prometheus <VictoriaMetrics> --rules-file F --rules-reload-url <vmalert>/-/reload`: VictoriaMetrics
scrapes the synthetic service, vmalert evaluates the rule file the operator writes and remote-writes the results
back to VictoriaMetrics, and the operator reads them there. The SLO has a 1-minute window and a 90 % objective,
as in test_operator.py: 100 % errors spend the budget in seconds, and recovery takes about one window.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from tests.e2e.conftest import PrivateClusters, World, wait_for
from tests.e2e.scenario import (
    ACT_TIMEOUT,
    HEALTHY,
    RECOVER_TIMEOUT,
    SLO_API,
    SLO_KIND,
    guard,
    is_paused,
    matching_samples,
    metric_families,
    wait_healthy,
    wait_target_state,
)
from tests.support.victoriametrics import VictoriaMetricsServer, VMAlert

pytestmark = [pytest.mark.e2e, pytest.mark.prometheus]


def test_exhausted_budget_pauses_and_recovery_resumes_on_victoriametrics_with_vmalert_rules(
    world: World, private_clusters: PrivateClusters, tmp_path: Path
) -> None:
    namespace = "e2e-victoriametrics"
    service = world.take_service(HEALTHY)
    rules_file = tmp_path / "rules" / "slo-guard.yaml"
    rules_file.parent.mkdir()
    rules_file.write_text("groups: []\n")
    with (
        VictoriaMetricsServer(tmp_path / "victoriametrics", scrape_targets=[service.target]) as victoriametrics,
        VMAlert(
            tmp_path / "vmalert",
            datasource=victoriametrics.url,
            remote_write=victoriametrics.url,
            rule_files=[rules_file],
        ) as vmalert,
        private_clusters.cluster("victoriametrics", watched_namespace=None, manifests=[]) as cluster,
    ):
        # After the shared flags, so VictoriaMetrics replaces the shared Prometheus.
        operator = cluster.operator(
            "victoriametrics",
            *("--standalone", "--prometheus", victoriametrics.url),
            *("--rules-file", str(rules_file), "--rules-reload-url", vmalert.reload_url),
        )
        operator.start()
        guard(cluster, namespace, "checkout", service)
        wait_healthy(cluster, namespace, "checkout")
        wait_for(
            lambda: any(group["name"].startswith(f"sloguard-operator-{namespace}-") for group in vmalert.groups()),
            timeout=ACT_TIMEOUT,
            what="vmalert running the operator's rules",
        )

        service.set(error_ratio=1.0)
        wait_for(lambda: is_paused(cluster, namespace, "checkout"), timeout=ACT_TIMEOUT, what="checkout paused")
        service.set(error_ratio=0.0)
        wait_for(lambda: not is_paused(cluster, namespace, "checkout"), timeout=RECOVER_TIMEOUT, what="resume")

        status = wait_target_state(cluster, namespace, "checkout", "Untouched")
        assert status["errorBudget"]["remaining"] > 0.05
        assert [action["action"] for action in status["actions"]] == ["Pause", "Resume"]
        [recorded] = matching_samples(metric_families(operator), "slo_guard_recorded_reads_total", source="recorded")
        assert recorded.value > 0, "the operator read what vmalert recorded"

        # Rules are rebuilt when the spec's generation moves, not at every pass: an edit must still reach them.
        ratio = cluster.kube.get_object(SLO_API, SLO_KIND, "checkout", namespace=namespace)["spec"]["indicator"][
            "ratio"
        ]
        edited = {key: selector.replace("}", ',path!="/edited"}') for key, selector in ratio.items()}
        cluster.kube.patch_object(
            SLO_API, SLO_KIND, "checkout", {"spec": {"indicator": {"ratio": edited}}}, namespace=namespace
        )
        wait_for(
            lambda: edited["errors"] in rule_expressions(rules_file),
            timeout=ACT_TIMEOUT,
            what="the rule file following the edited indicator",
        )
        assert ratio["errors"] not in rule_expressions(rules_file), "the old indicator's rules are gone"


def rule_expressions(rules_file: Path) -> str:
    return "\n".join(
        rule["expr"] for group in yaml.safe_load(rules_file.read_text())["groups"] for rule in group["rules"]
    )
