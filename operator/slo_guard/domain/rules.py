"""Prometheus recording and alerting rules for SLOs, as plain dicts (the CLI dumps them as YAML).

Per SLO, one rule group `sloguard-<namespace>-<name>`: the error ratio over every window the SLO uses, the
objective, the error budget remaining, one multi-window burn-rate alert per tier and an exhaustion alert.
Rules in a group run in order at one timestamp, so the alerts always read this round's ratios.
Names, labels and the choices behind them are documented in docs/rules.md.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from slo_guard.domain.durations import format_duration
from slo_guard.domain.model import (
    BurnRateTier,
    LabelMatcher,
    MatchOp,
    Objective,
    RatioIndicator,
    Selector,
    Severity,
)
from slo_guard.domain.promql import errors_query, total_query
from slo_guard.domain.selectors import render_selector
from slo_guard.domain.windows import required_windows

SLO_LABEL = "sloguard_slo"
"""Label carrying the SLO's name on every recorded series and alert."""
NAMESPACE_LABEL = "sloguard_namespace"
"""Label carrying the SLO's namespace on every recorded series and alert."""
WINDOW_LABEL = "window"
"""Label carrying the window a recorded series covers (`5m`, `30d`)."""

ERROR_RATIO_RECORD_PREFIX = "sloguard_slo:error_ratio:rate"
"""The error ratio over window `w` is recorded as this prefix followed by `w` (`...:rate5m`)."""
OBJECTIVE_RECORD = "sloguard_slo:objective"
BUDGET_REMAINING_RECORD = "sloguard_slo:error_budget_remaining"

BURN_ALERT = "SLOGuardErrorBudgetBurn"
EXHAUSTED_ALERT = "SLOGuardErrorBudgetExhausted"
EXHAUSTED_SEVERITY = Severity.TICKET
"""A spent budget calls for the error-budget policy (a release freeze), not for waking someone up."""

DEFAULT_RUNBOOK_BASE = "https://github.com/slo-guard/slo-guard/blob/main/docs/runbook.md"
EXHAUSTED_RUNBOOK_ANCHOR = "error-budget-exhausted"

PROMETHEUS_RULE_LABELS: Mapping[str, str] = {
    "app.kubernetes.io/name": "slo-guard",
    "app.kubernetes.io/component": "slo-rules",
    "role": "slo-guard-rules",
}
"""Labels on every generated PrometheusRule, for a prometheus-operator `ruleSelector` to match."""

RuleGroup = dict[str, Any]


def error_ratio_record(window: int) -> str:
    """The recorded series name for the error ratio over `window` seconds."""
    return f"{ERROR_RATIO_RECORD_PREFIX}{format_duration(window)}"


def recorded_error_ratio_query(
    objective: Objective,
    *,
    window: int,
    extra: Sequence[LabelMatcher] = (),
) -> str:
    """`errors / total` as `slo-guard evaluate` reads it: no sample without traffic, 0 when errors are absent.

    For a ratio SLI an absent errors series means nothing failed yet; for a latency SLI an absent bucket
    means the threshold is not a bucket boundary, so the ratio stays absent (unknown).
    """
    indicator = objective.indicator
    errors = errors_query(indicator, window, extra=extra)
    if isinstance(indicator, RatioIndicator):
        errors = f"{errors} or vector(0)"
    return f"({errors}) / ({total_query(indicator, window, extra=extra)} > 0)"


def group_name(objective: Objective) -> str:
    return f"sloguard-{objective.namespace}-{objective.name}"


def burn_runbook_anchor(severity: Severity) -> str:
    return f"error-budget-burn-{severity.value}"


def recording_and_alerting_groups(
    objective: Objective, *, extra: Sequence[LabelMatcher] = (), runbook_base: str = DEFAULT_RUNBOOK_BASE
) -> list[RuleGroup]:
    """The rule groups for one SLO; `extra` matchers are forced into every raw selector (tenant label)."""
    rules = [
        *(_error_ratio_rule(objective, window=window, extra=extra) for window in required_windows(objective)),
        _objective_rule(objective),
        _budget_remaining_rule(objective),
        *(_burn_alert(objective, tier=tier, runbook_base=runbook_base) for tier in objective.tiers),
        _exhausted_alert(objective, runbook_base=runbook_base),
    ]
    interval = format_duration(objective.evaluation_interval)
    return [{"name": group_name(objective), "interval": interval, "rules": rules}]


def rule_file(
    objectives: Sequence[Objective],
    *,
    extra: Sequence[LabelMatcher] = (),
    runbook_base: str = DEFAULT_RUNBOOK_BASE,
) -> dict[str, list[RuleGroup]]:
    """A Prometheus rule file (`{"groups": [...]}`) for `objectives`; ValueError if an SLO repeats."""
    _check_unique(objectives)
    groups = [
        group
        for objective in objectives
        for group in recording_and_alerting_groups(objective, extra=extra, runbook_base=runbook_base)
    ]
    return {"groups": groups}


def prometheus_rule(
    objectives: Sequence[Objective],
    *,
    name: str,
    namespace: str,
    extra: Sequence[LabelMatcher] = (),
    runbook_base: str = DEFAULT_RUNBOOK_BASE,
    labels: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """A monitoring.coreos.com/v1 PrometheusRule holding the same groups as `rule_file`.

    `labels` are added to PROMETHEUS_RULE_LABELS, e.g. `release: kube-prometheus-stack` for that chart.
    """
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {**PROMETHEUS_RULE_LABELS, **(labels or {})},
        },
        "spec": rule_file(objectives, extra=extra, runbook_base=runbook_base),
    }


def _check_unique(objectives: Sequence[Objective]) -> None:
    repeated = sorted(key for key, count in Counter(o.key for o in objectives).items() if count > 1)
    if repeated:
        raise ValueError(f"each SLO may appear only once; repeated: {', '.join(repeated)}")


def _error_ratio_rule(objective: Objective, *, window: int, extra: Sequence[LabelMatcher]) -> dict[str, Any]:
    return {
        "record": error_ratio_record(window),
        "expr": recorded_error_ratio_query(objective, window=window, extra=extra),
        "labels": _series_labels(objective, window=window),
    }


def _objective_rule(objective: Objective) -> dict[str, Any]:
    return {
        "record": OBJECTIVE_RECORD,
        "expr": f"vector({_number(objective.objective)})",
        "labels": _series_labels(objective, window=objective.window),
    }


def _budget_remaining_rule(objective: Objective) -> dict[str, Any]:
    ratio = _recorded(objective, window=objective.window)
    return {
        "record": BUDGET_REMAINING_RECORD,
        "expr": f"1 - {ratio} / {_error_budget(objective)}",
        "labels": _series_labels(objective, window=objective.window),
    }


def _burn_alert(objective: Objective, *, tier: BurnRateTier, runbook_base: str) -> dict[str, Any]:
    threshold = f"{_number(tier.factor)} * {_error_budget(objective)}"
    long_burning, short_burning = (
        f"max without ({WINDOW_LABEL}) ({_recorded(objective, window=window)} > {threshold})"
        for window in (tier.long_window, tier.short_window)
    )
    long_span, short_span = format_duration(tier.long_window), format_duration(tier.short_window)
    return {
        "alert": BURN_ALERT,
        "expr": f"{long_burning} and {short_burning}",
        "labels": {
            **_slo_labels(objective),
            "severity": tier.severity.value,
            "long_window": long_span,
            "short_window": short_span,
        },
        "annotations": {
            "summary": (
                f"SLO {objective.key}: error budget burn rate above {_number(tier.factor)} "
                f"over {long_span} and {short_span}"
            ),
            "description": _burn_description(objective, tier=tier),
            "runbook_url": f"{runbook_base}#{burn_runbook_anchor(tier.severity)}",
        },
    }


def _burn_description(objective: Objective, *, tier: BurnRateTier) -> str:
    long_span, short_span = format_duration(tier.long_window), format_duration(tier.short_window)
    threshold = tier.factor * objective.error_budget
    consumed = tier.factor * tier.long_window / objective.window
    return (
        f"The error ratio is above {_percent(threshold)} ({_number(tier.factor)}x the error budget) over "
        f"both the last {long_span} and the last {short_span}: at least {_percent(consumed)} of the "
        f"{format_duration(objective.window)} error budget was spent in {long_span}. "
        f"Error ratio over {long_span}: {{{{ $value | humanizePercentage }}}}."
    )


def _exhausted_alert(objective: Objective, *, runbook_base: str) -> dict[str, Any]:
    span = format_duration(objective.window)
    return {
        "alert": EXHAUSTED_ALERT,
        "expr": f"{_render(BUDGET_REMAINING_RECORD, objective)} <= 0",
        "labels": {**_slo_labels(objective), "severity": EXHAUSTED_SEVERITY.value},
        "annotations": {
            "summary": f"SLO {objective.key} has spent its whole {span} error budget",
            "description": (
                f"Error budget remaining over {span}: {{{{ $value | humanizePercentage }}}}. "
                "The error-budget policy applies: no changes but P0 and security fixes until it recovers."
            ),
            "runbook_url": f"{runbook_base}#{EXHAUSTED_RUNBOOK_ANCHOR}",
        },
    }


def _slo_labels(objective: Objective) -> dict[str, str]:
    return {NAMESPACE_LABEL: objective.namespace, SLO_LABEL: objective.name}


def _series_labels(objective: Objective, *, window: int) -> dict[str, str]:
    return {**_slo_labels(objective), WINDOW_LABEL: format_duration(window)}


def _recorded(objective: Objective, *, window: int) -> str:
    return _render(error_ratio_record(window), objective)


def _render(metric: str, objective: Objective) -> str:
    """A selector for one SLO's recorded series; names and namespaces are re-quoted, never spliced."""
    labels = _slo_labels(objective)
    matchers = tuple(LabelMatcher(name, MatchOp.EQUAL, value) for name, value in labels.items())
    return render_selector(Selector(metric=metric, matchers=matchers))


def _error_budget(objective: Objective) -> str:
    """`(1 - objective)`, computed by Prometheus exactly as the evaluation computes it."""
    return f"(1 - {_number(objective.objective)})"


def _number(value: float) -> str:
    """Shortest text that reads back as `value`; whole numbers without `.0`."""
    return str(int(value)) if value.is_integer() else repr(value)


def _percent(fraction: float) -> str:
    return f"{fraction * 100:.4g}%"
