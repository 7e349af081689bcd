"""The rule file the operator writes for Prometheus: atomic, only when changed, followed by a reload."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from tests.support.faults import FaultProxy

from slo_guard.adapters.prometheus import PrometheusSettings
from slo_guard.adapters.rulesink import FileRuleSink, ReloadTimedOut, RuleFileSettings, RuleSinkError

GROUP = {"name": "g", "interval": "30s", "rules": [{"record": "a:b", "expr": "vector(1)"}]}
RULES = {"shop/checkout": json.dumps([GROUP])}
FAST = PrometheusSettings(url="http://127.0.0.1:9", retries=1, backoff_base=0.01, backoff_max=0.01, timeout=2)


def reloads(proxy: FaultProxy) -> list[str]:
    return [request.path for request in proxy.requests if request.method == "POST"]


async def test_writes_the_rules_then_reloads_once_and_skips_unchanged_rules(tmp_path: Path) -> None:
    with FaultProxy(None, fail_with=200) as prometheus:
        path = tmp_path / "rules" / "slo-guard.yaml"
        sink = FileRuleSink(RuleFileSettings(path=path, reload_url=f"{prometheus.url}/-/reload"), FAST)
        await sink.write(RULES)
        await sink.write(RULES)
        sink.close()
        assert yaml.safe_load(path.read_text()) == {"groups": [GROUP]}
        assert reloads(prometheus) == ["/-/reload"]
        assert [p.name for p in path.parent.iterdir()] == ["slo-guard.yaml"], "no temporary file is left behind"


async def test_a_failed_reload_raises_and_the_next_write_tries_again(tmp_path: Path) -> None:
    with FaultProxy(None, fail_with=500) as prometheus:
        sink = FileRuleSink(RuleFileSettings(path=tmp_path / "r.yaml", reload_url=f"{prometheus.url}/-/reload"), FAST)
        with pytest.raises(RuleSinkError, match="answered 500"):
            await sink.write(RULES)
        assert len(reloads(prometheus)) == 2, "one retry"
        prometheus.fail_with = 200
        await sink.write(RULES)
        sink.close()
        assert len(reloads(prometheus)) == 3, "unchanged text is still reloaded after a failure"


async def test_a_reload_waits_for_its_own_timeout_not_the_query_timeout_and_one_that_times_out_is_not_repeated(
    tmp_path: Path,
) -> None:
    """Prometheus answers a reload only after rereading every rule file, longer than a query takes at scale;
    a reload that timed out is still running there, and a retry would queue a second one behind it."""
    quick_queries = PrometheusSettings(url="http://127.0.0.1:9", retries=2, backoff_base=0.01, timeout=0.1)
    with FaultProxy(None, fail_with=200, delay=0.5) as prometheus:
        url = f"{prometheus.url}/-/reload"
        sink = FileRuleSink(RuleFileSettings(path=tmp_path / "r.yaml", reload_url=url, reload_timeout=5), quick_queries)
        await sink.write(RULES)
        assert len(reloads(prometheus)) == 1, "a 0.5 s reload is not cut off by the 0.1 s query timeout"
        sink.close()

        impatient = FileRuleSink(RuleFileSettings(path=tmp_path / "r.yaml", reload_url=url, reload_timeout=0.2), FAST)
        with pytest.raises(ReloadTimedOut, match=r"longer than 0\.2 s"):
            await impatient.write({"shop/other": json.dumps([GROUP])})
        impatient.close()
        assert len(reloads(prometheus)) == 2, "the timed-out reload was not sent again"
