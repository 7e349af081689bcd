"""The Prometheus rules `slo-guard rules` writes: names, labels, exact expressions, golden files.

After an intended change, rewrite the golden files with `UPDATE_GOLDEN=1 pytest tests/unit/domain` and review
the diff.
"""

import re
from typing import Any

import promql_parser
import pytest
import yaml
from tests.support.golden import GOLDEN_DIR, assert_matches_golden

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
    DEFAULT_RUNBOOK_BASE,
    EXHAUSTED_ALERT,
    OBJECTIVE_RECORD,
    PROMETHEUS_RULE_LABELS,
    error_ratio_record,
    prometheus_rule,
    recording_and_alerting_groups,
    rule_file,
)
from slo_guard.domain.selectors import METRIC_NAME, parse_selector
from slo_guard.domain.windows import default_tiers, required_windows

TENANT = (LabelMatcher("namespace", MatchOp.EQUAL, "shop"),)
DAY = 86_400

RATIO = RatioIndicator(
    errors=parse_selector('http_requests_total{job="checkout", code=~"5.."}'),
    total=parse_selector('http_requests_total{job="checkout"}'),
)
LATENCY = LatencyIndicator(
    histogram=parse_selector('http_request_duration_seconds{job="checkout", route!="/healthz"}'),
    threshold=0.3,
)
SLO_LABELS = 'sloguard_namespace="shop",sloguard_slo="checkout"'


def objective(
    *,
    name: str = "checkout",
    indicator: RatioIndicator | LatencyIndicator = RATIO,
    window: int = 30 * DAY,
    target: float = 0.999,
    evaluation_interval: int = 30,
) -> Objective:
    return Objective(
        name=name,
        namespace="shop",
        objective=target,
        window=window,
        indicator=indicator,
        tiers=default_tiers(window, min_step=30),
        evaluation_interval=evaluation_interval,
    )


def only_group(slo: Objective, **options: Any) -> dict[str, Any]:
    groups = recording_and_alerting_groups(slo, **options)
    assert len(groups) == 1
    return groups[0]


def recording_rules(slo: Objective, **options: Any) -> dict[str, dict[str, Any]]:
    return {rule["record"]: rule for rule in only_group(slo, **options)["rules"] if "record" in rule}


def alerting_rules(slo: Objective, **options: Any) -> list[dict[str, Any]]:
    return [rule for rule in only_group(slo, **options)["rules"] if "alert" in rule]


def all_expressions(document: dict[str, Any]) -> list[str]:
    return [rule["expr"] for group in document["groups"] for rule in group["rules"]]


def test_one_group_per_slo_named_after_it_and_evaluated_at_its_interval() -> None:
    group = only_group(objective(evaluation_interval=60))
    assert group["name"] == "sloguard-shop-checkout"
    assert group["interval"] == "1m"


def test_the_error_ratio_is_recorded_for_every_window_the_evaluation_reads() -> None:
    slo = objective()
    records = recording_rules(slo)
    windows = ["5m", "30m", "1h", "2h", "6h", "1d", "3d", "30d"]
    assert [f"sloguard_slo:error_ratio:rate{window}" for window in windows] == [
        error_ratio_record(window) for window in required_windows(slo)
    ]
    for window in windows:
        assert records[f"sloguard_slo:error_ratio:rate{window}"]["labels"] == {
            "sloguard_namespace": "shop",
            "sloguard_slo": "checkout",
            "window": window,
        }


def test_the_ratio_is_traffic_weighted_zero_without_errors_and_absent_without_traffic() -> None:
    expr = recording_rules(objective())["sloguard_slo:error_ratio:rate5m"]["expr"]
    assert expr == (
        '(sum(rate(http_requests_total{job="checkout",code=~"5.."}[5m])) or vector(0))'
        ' / (sum(rate(http_requests_total{job="checkout"}[5m])) > 0)'
    )


def test_a_latency_ratio_counts_requests_above_the_bucket_and_stays_absent_without_the_bucket() -> None:
    expr = recording_rules(objective(indicator=LATENCY))["sloguard_slo:error_ratio:rate5m"]["expr"]
    count = 'sum(rate(http_request_duration_seconds_count{job="checkout",route!="/healthz"}[5m]))'
    bucket = r'le=~"0?\\.30*|3(?:\\.0*)?[eE]-0*1"'
    fast = f'sum(rate(http_request_duration_seconds_bucket{{job="checkout",route!="/healthz",{bucket}}}[5m]))'
    assert expr == f"({count} - {fast}) / ({count} > 0)"


def test_objective_and_budget_remaining_are_recorded_over_the_slo_window() -> None:
    records = recording_rules(objective(target=0.995, window=28 * DAY))
    assert records[OBJECTIVE_RECORD]["expr"] == "vector(0.995)"
    assert records[BUDGET_REMAINING_RECORD]["expr"] == (
        f"1 - sloguard_slo:error_ratio:rate28d{{{SLO_LABELS}}} / (1 - 0.995)"
    )
    for record in (OBJECTIVE_RECORD, BUDGET_REMAINING_RECORD):
        assert records[record]["labels"]["window"] == "28d"


def test_the_tenant_matcher_reaches_every_raw_selector_and_no_recorded_one() -> None:
    expressions = [rule["expr"] for rule in only_group(objective(), extra=TENANT)["rules"]]
    for expr in expressions:
        for metric, matchers in re.findall(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\{([^}]*)\}", expr):
            forced = 'namespace="shop"' in matchers.split(",")
            assert forced == metric.startswith("http_requests"), expr


def test_one_burn_alert_per_tier_reads_both_windows_recorded_ratios() -> None:
    alerts = alerting_rules(objective())
    page = alerts[0]
    assert page["alert"] == BURN_ALERT
    assert page["expr"] == (
        f"max without (window) (sloguard_slo:error_ratio:rate1h{{{SLO_LABELS}}} > 14.4 * (1 - 0.999))"
        f" and max without (window) (sloguard_slo:error_ratio:rate5m{{{SLO_LABELS}}} > 14.4 * (1 - 0.999))"
    )
    assert "for" not in page
    burns = [alert for alert in alerts if alert["alert"] == BURN_ALERT]
    labels = [alert["labels"] for alert in burns]
    assert [(label["severity"], label["long_window"], label["short_window"]) for label in labels] == [
        ("page", "1h", "5m"),
        ("page", "6h", "30m"),
        ("ticket", "1d", "2h"),
        ("ticket", "3d", "6h"),
    ]


def test_alert_label_sets_are_distinct_so_alertmanager_keeps_every_tier_apart() -> None:
    alerts = alerting_rules(objective())
    label_sets = {(alert["alert"], *sorted(alert["labels"].items())) for alert in alerts}
    assert len(label_sets) == len(alerts) == 5
    for alert in alerts:
        assert alert["labels"]["sloguard_slo"] == "checkout"
        assert alert["labels"]["sloguard_namespace"] == "shop"


def test_burn_annotations_give_factor_windows_and_budget_consumed() -> None:
    page, second_page, *_ = alerting_rules(objective())
    summary = page["annotations"]["summary"]
    assert summary == "SLO shop/checkout: error budget burn rate above 14.4 over 1h and 5m"
    assert page["annotations"]["description"] == (
        "The error ratio is above 1.44% (14.4x the error budget) over both the last 1h and the last 5m: "
        "at least 2% of the 30d error budget was spent in 1h. "
        "Error ratio over 1h: {{ $value | humanizePercentage }}."
    )
    assert "at least 5% of the 30d error budget was spent in 6h" in second_page["annotations"]["description"]


def test_runbook_urls_have_an_anchor_per_severity_under_a_configurable_base() -> None:
    burns = alerting_rules(objective())[:4]
    default = {alert["labels"]["severity"]: alert["annotations"]["runbook_url"] for alert in burns}
    assert default == {
        "page": f"{DEFAULT_RUNBOOK_BASE}#error-budget-burn-page",
        "ticket": f"{DEFAULT_RUNBOOK_BASE}#error-budget-burn-ticket",
    }
    custom = alerting_rules(objective(), runbook_base="https://wiki.example/slo")
    assert custom[-1]["annotations"]["runbook_url"] == "https://wiki.example/slo#error-budget-exhausted"


def test_the_exhausted_alert_fires_on_a_spent_budget_as_a_ticket() -> None:
    exhausted = alerting_rules(objective())[-1]
    assert exhausted["alert"] == EXHAUSTED_ALERT
    assert exhausted["expr"] == f"sloguard_slo:error_budget_remaining{{{SLO_LABELS}}} <= 0"
    assert exhausted["labels"]["severity"] == Severity.TICKET
    assert exhausted["annotations"]["summary"] == "SLO shop/checkout has spent its whole 30d error budget"


def test_a_rule_file_holds_one_group_per_slo() -> None:
    document = rule_file([objective(name="checkout"), objective(name="search", indicator=LATENCY)])
    assert [group["name"] for group in document["groups"]] == [
        "sloguard-shop-checkout",
        "sloguard-shop-search",
    ]


def test_a_rule_file_refuses_the_same_slo_twice() -> None:
    with pytest.raises(ValueError, match="shop/checkout"):
        rule_file([objective(), objective(indicator=LATENCY)])


def test_a_prometheus_rule_carries_the_same_groups_and_selectable_labels() -> None:
    slos = [objective(name="checkout"), objective(name="search")]
    resource = prometheus_rule(
        slos,
        name="slo-rules",
        namespace="monitoring",
        extra=TENANT,
        labels={"release": "kube-prometheus-stack"},
    )
    assert resource["apiVersion"] == "monitoring.coreos.com/v1"
    assert resource["kind"] == "PrometheusRule"
    assert resource["metadata"] == {
        "name": "slo-rules",
        "namespace": "monitoring",
        "labels": {**PROMETHEUS_RULE_LABELS, "release": "kube-prometheus-stack"},
    }
    assert resource["metadata"]["labels"]["role"] == "slo-guard-rules"
    assert resource["spec"] == rule_file(slos, extra=TENANT)


def test_recorded_names_are_valid_metric_names_at_the_slo_level() -> None:
    records = list(recording_rules(objective(window=28 * DAY)))
    assert "sloguard_slo:error_ratio:rate2d19h12m" in records
    for record in records:
        assert METRIC_NAME.fullmatch(record)
        assert record.startswith("sloguard_slo:")


GOLDEN = {
    "rules-ratio-30d.yaml": objective(indicator=RATIO, window=30 * DAY),
    "rules-latency-28d.yaml": objective(
        indicator=LATENCY,
        window=28 * DAY,
        target=0.99,
        evaluation_interval=60,
    ),
}


def render(slo: Objective) -> str:
    """The rule file as the CLI writes it: keys in rule order, one expression per line."""
    header = f"# Rules for a {slo.window // DAY}d SLO; regenerate with UPDATE_GOLDEN=1.\n"
    return header + yaml.safe_dump(rule_file([slo], extra=TENANT), sort_keys=False, width=1_000_000)


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_rules_match_the_golden_file(name: str) -> None:
    assert_matches_golden(name, render(GOLDEN[name]))


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_every_golden_expression_parses_with_promql_parser(name: str) -> None:
    document = yaml.safe_load((GOLDEN_DIR / name).read_text(encoding="utf-8"))
    expressions = all_expressions(document)
    assert len(expressions) == len(required_windows(GOLDEN[name])) + 2 + len(GOLDEN[name].tiers) + 1
    for expr in expressions:
        promql_parser.parse(expr)
