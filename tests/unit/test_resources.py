"""The runtime validation of ServiceLevelObjective objects, their mapping to the domain, and the status they get.

Cases that only CEL rejects at admission (relations between fields) are here: the runtime model is the second line
of defence, and the only one for `slo-guard evaluate` on files.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest
import yaml

from slo_guard.domain.evaluation_types import AlertStatus, Evaluation, State, UnknownReason
from slo_guard.domain.model import (
    BurnRateTier,
    LabelMatcher,
    LatencyIndicator,
    MatchOp,
    Objective,
    Policy,
    PolicyAction,
    PolicyMode,
    PolicyTrigger,
    RatioIndicator,
    Selector,
    Severity,
    Target,
)
from slo_guard.domain.windows import default_tiers
from slo_guard.resources import (
    MAX_TARGETS,
    SPEC_ERROR_LIMIT,
    SpecError,
    objective_from_resource,
    status_from_evaluation,
)

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
MIN_STEP = 30

BASE: dict[str, Any] = {
    "apiVersion": "sloguard.io/v1alpha1",
    "kind": "ServiceLevelObjective",
    "metadata": {"name": "checkout", "namespace": "shop"},
    "spec": {
        "objective": 99.9,
        "window": "30d",
        "indicator": {"ratio": {"errors": 'requests_total{code=~"5.."}', "total": "requests_total"}},
        "targets": [{"kind": "Deployment", "name": "checkout"}, {"kind": "Deployment", "name": "cart"}],
    },
}


def _example(name: str) -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((EXAMPLES / name).read_text(encoding="utf-8"))
    return document


def _changed(change: Callable[[dict[str, Any]], object]) -> dict[str, Any]:
    resource = copy.deepcopy(BASE)
    change(resource)
    return resource


def _spec(**fields: object) -> Callable[[dict[str, Any]], object]:
    return lambda resource: resource["spec"].update(fields)


def _rejection(resource: dict[str, Any]) -> SpecError:
    with pytest.raises(SpecError) as caught:
        objective_from_resource(resource, min_step=MIN_STEP)
    return caught.value


RATIO = BASE["spec"]["indicator"]["ratio"]
PAGE_1H = {"severity": "page", "longWindow": "1h", "shortWindow": "5m", "factor": 14.4}


@pytest.mark.parametrize(
    ("change", "field", "fragment"),
    [
        (
            _spec(indicator={"ratio": {**RATIO, "errors": 'x"} or vector(1) #'}}),
            "spec.indicator.ratio.errors",
            "selector",
        ),
        (
            _spec(indicator={"ratio": {**RATIO, "total": 'requests_total{job="x"} or vector(1) #"}'}}),
            "spec.indicator.ratio.total",
            "no operators",
        ),
        (
            _spec(indicator={"ratio": {**RATIO, "errors": "sum(rate(x[5m]))"}}),
            "spec.indicator.ratio.errors",
            "selector",
        ),
        (_spec(window="30x"), "spec.window", "unknown unit 'x'"),
        (_spec(window=30), "spec.window", "valid string"),
        (_spec(objective=100), "spec.objective", "less than 100"),
        (_spec(objective=0), "spec.objective", "greater than 0"),
        (_spec(objective="99.9"), "spec.objective", "valid number"),
        (_spec(objective=True), "spec.objective", "valid number"),
        (_spec(objective=float("nan")), "spec.objective", "finite"),
        (_spec(foo=1), "spec.foo", "unknown field"),
        (_spec(indicator="ratio"), "spec.indicator", "mapping"),
        (
            _spec(targets=[{"kind": "Deployment", "name": "checkout", "namespace": "kube-system"}]),
            "spec.targets[0].namespace",
            "unknown field",
        ),
        (
            _spec(targets=[{"kind": "Deployment", "name": "ok"}, {"kind": "Deployment", "name": "Not_OK"}]),
            "spec.targets[1].name",
            "DNS subdomain",
        ),
        (_spec(targets=[{"kind": "DaemonSet", "name": "db"}]), "spec.targets[0].kind", "'StatefulSet'"),
        (_spec(targets=[{"kind": "Deployment", "name": f"app-{n}"} for n in range(33)]), "spec.targets", "at most 32"),
        (_spec(indicator={"ratio": {**RATIO, "total": "a" * 1025}}), "spec.indicator.ratio.total", "at most 1024"),
        (_spec(indicator={"ratio": {"errors": "errors_total"}}), "spec.indicator.ratio.total", "required"),
        (
            _spec(indicator={"latency": {"histogram": "latency_seconds", "threshold": 0}}),
            "spec.indicator.latency.threshold",
            "greater than 0",
        ),
        (
            _spec(indicator={"latency": {"histogram": "latency_seconds", "threshold": float("inf")}}),
            "spec.indicator.latency.threshold",
            "finite",
        ),
        (
            _spec(indicator={"latency": {"histogram": "latency_seconds_bucket", "threshold": 0.3}}),
            "spec.indicator.latency.histogram",
            "without _bucket",
        ),
        (
            _spec(indicator={"latency": {"histogram": 'latency_seconds{le="0.3"}', "threshold": 0.3}}),
            "spec.indicator.latency.histogram",
            "'le'",
        ),
        (_spec(evaluationInterval="1d"), "spec.evaluationInterval", "at most 1h"),
        (_spec(evaluationInterval="500ms"), "spec.evaluationInterval", "whole number of seconds"),
        (_spec(burnRateAlerts=[]), "spec.burnRateAlerts", "at least 1 item"),
        (_spec(burnRateAlerts=[{**PAGE_1H, "factor": 0}]), "spec.burnRateAlerts[0].factor", "greater than 0"),
        (_spec(burnRateAlerts=[{**PAGE_1H, "severity": "critical"}]), "spec.burnRateAlerts[0].severity", "'page'"),
        (_spec(policy={"mode": "enforce"}), "spec.policy.mode", "'Enforce' or 'DryRun'"),
        (_spec(policy={"action": "Scale", "scaleTo": -1}), "spec.policy.scaleTo", "greater than or equal to 0"),
        (_spec(policy={"action": "Scale", "scaleTo": "3"}), "spec.policy.scaleTo", "valid integer"),
        (_spec(policy={"resumeAbove": 1}), "spec.policy.resumeAbove", "less than 1"),
        (_spec(policy={"action": "Scale", "scale_to": 3}), "spec.policy.scale_to", "unknown field"),
        (lambda resource: resource.update(apiVersion="sloguard.io/v1"), "apiVersion", "'sloguard.io/v1alpha1'"),
        (lambda resource: resource.update(kind="Deployment"), "kind", "'ServiceLevelObjective'"),
        (lambda resource: resource["metadata"].update(name="Checkout_SLO"), "metadata.name", "DNS subdomain"),
        (lambda resource: resource["metadata"].pop("name"), "metadata.name", "required"),
        (lambda resource: resource["metadata"].update(namespace="a.b"), "metadata.namespace", "DNS label"),
        (lambda resource: resource.pop("spec"), "spec", "required"),
    ],
)
def test_rejections_name_the_field_the_user_wrote(
    change: Callable[[dict[str, Any]], object], field: str, fragment: str
) -> None:
    error = _rejection(_changed(change))
    assert error.field == field
    assert fragment in error.message
    assert str(error) == f"{field}: {error.message}"


@pytest.mark.parametrize(
    ("change", "field", "fragment"),
    [
        (
            _spec(indicator={"ratio": RATIO, "latency": {"histogram": "h", "threshold": 0.3}}),
            "spec.indicator",
            "exactly one of ratio or latency",
        ),
        (_spec(indicator={}), "spec.indicator", "exactly one of ratio or latency"),
        (_spec(policy={"action": "Scale"}), "spec.policy.scaleTo", "required when action is Scale"),
        (_spec(policy={"action": "Pause", "scaleTo": 3}), "spec.policy.scaleTo", "only allowed when action is Scale"),
        (_spec(policy={"scaleTo": 3}), "spec.policy.scaleTo", "only allowed when action is Scale"),
        (
            _spec(burnRateAlerts=[{**PAGE_1H, "shortWindow": "1h"}]),
            "spec.burnRateAlerts[0].shortWindow",
            "shorter than longWindow",
        ),
        (
            _spec(burnRateAlerts=[PAGE_1H, {**PAGE_1H, "longWindow": "1d", "shortWindow": "2d"}]),
            "spec.burnRateAlerts[1].shortWindow",
            "shorter than longWindow",
        ),
        (_spec(window="30s"), "spec.window", "at least 1m"),
        (_spec(evaluationInterval="2h"), "spec.evaluationInterval", "at most 1h"),
        (
            _spec(burnRateAlerts=[{**PAGE_1H, "severity": "ticket"}], policy={"trigger": "FastBurn"}),
            "spec.burnRateAlerts",
            "severity page",
        ),
    ],
)
def test_rules_admission_leaves_to_cel_are_enforced_at_runtime(
    change: Callable[[dict[str, Any]], object], field: str, fragment: str
) -> None:
    error = _rejection(_changed(change))
    assert (error.field, fragment in error.message) == (field, True)


@pytest.mark.parametrize(
    ("change", "field", "fragment"),
    [
        (_spec(window="0d"), "spec.window", "longer than zero"),
        (
            _spec(window="1h", burnRateAlerts=[{**PAGE_1H, "longWindow": "1d", "shortWindow": "2h"}]),
            "spec.burnRateAlerts[0].longWindow",
            "not be longer than window '1h'",
        ),
        (
            _spec(burnRateAlerts=[{**PAGE_1H, "shortWindow": "45s"}]),
            "spec.burnRateAlerts[0].shortWindow",
            "at least 1m, twice the operator's min step",
        ),
        (
            _spec(targets=[{"kind": "Deployment", "name": "cart"}, {"kind": "Deployment", "name": "cart"}]),
            "spec.targets[1]",
            "duplicate target Deployment/cart",
        ),
    ],
)
def test_rules_only_the_runtime_can_check(
    change: Callable[[dict[str, Any]], object], field: str, fragment: str
) -> None:
    error = _rejection(_changed(change))
    assert (error.field, fragment in error.message) == (field, True)


def test_an_error_is_one_line_and_echoes_long_values_shortened() -> None:
    selector = 'requests_total{path="' + "/x" * 400 + '"}\nor vector(1)'
    error = _rejection(_changed(_spec(indicator={"ratio": {**RATIO, "errors": selector}})))
    assert error.field == "spec.indicator.ratio.errors"
    assert "\n" not in str(error)
    assert "requests_total{path=" in str(error)
    assert len(str(error)) < 300


def _renamed(*path: str | int, old: str, new: str) -> Callable[[dict[str, Any]], object]:
    """Move a field to a misspelled name, as a user's typo would."""

    def rename(resource: dict[str, Any]) -> None:
        node: Any = resource
        for part in path:
            node = node[part]
        node[new] = node.pop(old)

    return rename


def _with_alerts(*alerts: dict[str, Any]) -> Callable[[dict[str, Any]], object]:
    return _spec(burnRateAlerts=[dict(alert) for alert in alerts])


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (_renamed("spec", old="objective", new="objectve"), "spec.objectve: unknown field; did you mean 'objective'?"),
        (_renamed(old="spec", new="specc"), "specc: unknown field; did you mean 'spec'?"),
        (
            lambda resource: resource["spec"].update(policy={"resumeAbov": 0.1}),
            "spec.policy.resumeAbov: unknown field; did you mean 'resumeAbove'?",
        ),
        (
            _spec(policy={"action": "Scale", "scale_to": 3}),
            "spec.policy.scale_to: unknown field; did you mean 'scaleTo'?",
        ),
        (
            _with_alerts({"severity": "page", "longwindow": "1h", "shortWindow": "5m", "factor": 14.4}),
            "spec.burnRateAlerts[0].longwindow: unknown field; did you mean 'longWindow'?",
        ),
    ],
    ids=["required-field", "top-level", "optional-field", "snake-case", "in-a-list"],
)
def test_a_misspelled_field_is_named_with_the_field_it_nearly_matches(
    change: Callable[[dict[str, Any]], object], expected: str
) -> None:
    error = _rejection(_changed(change))
    assert [str(problem) for problem in error.errors] == [expected]
    assert str(error) == expected


def test_an_unknown_field_suggests_only_fields_not_already_set() -> None:
    error = _rejection(_changed(_spec(windw="7d")))
    assert str(error) == "spec.windw: unknown field (field names are camelCase, as in docs/spec.md)"


def test_every_problem_is_reported_unknown_fields_first() -> None:
    def four_mistakes(resource: dict[str, Any]) -> None:
        spec = resource["spec"]
        spec["objectve"] = spec.pop("objective")
        spec.update(window="30x", policy={"mode": "enforce"})
        spec["targets"][1]["name"] = "Cart_v2"

    error = _rejection(_changed(four_mistakes))
    assert [str(problem) for problem in error.errors] == [
        "spec.objectve: unknown field; did you mean 'objective'?",
        "spec.window: invalid duration '30x': unknown unit 'x' (use y w d h m s ms)",
        "spec.targets[1].name: must be a DNS subdomain: lowercase letters, digits, '-' and '.', alphanumeric at both"
        " ends (got 'Cart_v2')",
        "spec.policy.mode: must be 'Enforce' or 'DryRun' (got 'enforce')",
    ]
    assert (error.field, error.message) == ("spec.objectve", "unknown field; did you mean 'objective'?")
    assert str(error) == "; ".join(str(problem) for problem in error.errors)


def test_every_broken_rule_between_fields_is_reported() -> None:
    def tangled(resource: dict[str, Any]) -> None:
        cart = {"kind": "Deployment", "name": "cart"}
        too_long = {"severity": "ticket", "longWindow": "1d", "shortWindow": "2h", "factor": 3}
        resource["spec"].update(
            window="12h",
            targets=[cart, cart, cart],
            burnRateAlerts=[too_long, too_long],
            policy={"trigger": "FastBurn"},
        )

    error = _rejection(_changed(tangled))
    assert [problem.field for problem in error.errors] == [
        "spec.targets[1]",
        "spec.targets[2]",
        "spec.burnRateAlerts[0].longWindow",
        "spec.burnRateAlerts[1].longWindow",
        "spec.burnRateAlerts",
    ]


def test_every_window_under_the_operator_min_step_is_reported() -> None:
    fast = {**PAGE_1H, "shortWindow": "45s"}
    error = _rejection(_changed(_with_alerts(PAGE_1H, fast, fast)))
    assert [problem.field for problem in error.errors] == [
        "spec.burnRateAlerts[1].shortWindow",
        "spec.burnRateAlerts[2].shortWindow",
    ]


def test_the_joined_message_stays_short_enough_for_an_event_and_counts_the_rest() -> None:
    bad_names = [{"kind": "Deployment", "name": f"App_{index}"} for index in range(MAX_TARGETS)]
    error = _rejection(_changed(_spec(targets=bad_names)))
    text = str(error)
    shown = text.split("; and ", maxsplit=1)[0].split("; ")
    assert len(error.errors) == MAX_TARGETS
    assert len(text) <= SPEC_ERROR_LIMIT
    assert shown == [str(problem) for problem in error.errors[: len(shown)]]
    assert text.endswith(f"; and {MAX_TARGETS - len(shown)} more")
    assert 1 < len(shown) < MAX_TARGETS


def test_one_huge_problem_is_cut_to_the_bound_too() -> None:
    error = _rejection(_changed(_spec(**{"x" * 2 * SPEC_ERROR_LIMIT: 1})))
    assert len(str(error)) == SPEC_ERROR_LIMIT
    assert str(error).startswith("spec.xxx")
    assert str(error).endswith("…")


def test_a_statefulset_and_a_rollout_are_targets_too() -> None:
    targets = [{"kind": "StatefulSet", "name": "db"}, {"kind": "Rollout", "name": "web"}]
    objective = objective_from_resource(_changed(lambda r: r["spec"].update(targets=targets)), min_step=MIN_STEP)
    assert objective.targets == (Target("StatefulSet", "db"), Target("Rollout", "web"))
    assert [target.api_version for target in objective.targets] == ["apps/v1", "argoproj.io/v1alpha1"]


def test_namespace_defaults_like_kubectl() -> None:
    objective = objective_from_resource(_changed(lambda r: r["metadata"].pop("namespace")), min_step=MIN_STEP)
    assert objective.key == "default/checkout"


def test_kubernetes_metadata_and_status_are_ignored() -> None:
    def add_server_fields(resource: dict[str, Any]) -> None:
        resource["metadata"].update(uid="1234", resourceVersion="7", labels={"team": "shop"}, generation=3)
        resource["status"] = {"state": "Healthy", "sli": 0.9995}

    assert objective_from_resource(_changed(add_server_fields), min_step=MIN_STEP) == objective_from_resource(
        BASE, min_step=MIN_STEP
    )


def test_a_read_only_mapping_is_accepted_like_a_kopf_body() -> None:
    objective = objective_from_resource(MappingProxyType(copy.deepcopy(BASE)), min_step=MIN_STEP)
    assert objective.name == "checkout"


def _selector(metric: str, *matchers: tuple[str, MatchOp, str]) -> Selector:
    return Selector(metric, tuple(LabelMatcher(name, op, value) for name, op, value in matchers))


def test_the_availability_example_maps_to_the_domain_with_default_tiers() -> None:
    assert objective_from_resource(_example("checkout-availability.yaml"), min_step=MIN_STEP) == Objective(
        name="checkout-availability",
        namespace="shop",
        objective=0.999,
        window=30 * 86_400,
        indicator=RatioIndicator(
            errors=_selector("http_requests_total", ("job", MatchOp.EQUAL, "checkout"), ("code", MatchOp.REGEX, "5..")),
            total=_selector("http_requests_total", ("job", MatchOp.EQUAL, "checkout")),
        ),
        tiers=(
            BurnRateTier(Severity.PAGE, long_window=3_600, short_window=300, factor=14.4),
            BurnRateTier(Severity.PAGE, long_window=21_600, short_window=1_800, factor=6.0),
            BurnRateTier(Severity.TICKET, long_window=86_400, short_window=7_200, factor=3.0),
            BurnRateTier(Severity.TICKET, long_window=259_200, short_window=21_600, factor=1.0),
        ),
        evaluation_interval=30,
        targets=(Target("Deployment", "checkout"),),
        policy=Policy(PolicyMode.ENFORCE, PolicyAction.PAUSE, PolicyTrigger.EXHAUSTED, None, 0.05),
    )


def test_the_latency_example_maps_to_a_scale_policy_with_scaled_tiers() -> None:
    objective = objective_from_resource(_example("checkout-latency.yaml"), min_step=MIN_STEP)
    assert objective.objective == 0.99
    assert objective.window == 28 * 86_400
    assert objective.indicator == LatencyIndicator(
        _selector("http_request_duration_seconds", ("job", MatchOp.EQUAL, "checkout")), threshold=0.3
    )
    assert objective.tiers == default_tiers(28 * 86_400, min_step=MIN_STEP)
    assert objective.evaluation_interval == 60
    assert objective.policy == Policy(PolicyMode.ENFORCE, PolicyAction.SCALE, PolicyTrigger.EXHAUSTED, 6, 0.1)


def test_the_dry_run_example_keeps_its_own_tiers_and_targets_in_order() -> None:
    objective = objective_from_resource(_example("search-dryrun.yaml"), min_step=MIN_STEP)
    assert objective.tiers == (
        BurnRateTier(Severity.PAGE, long_window=3_600, short_window=300, factor=14.4),
        BurnRateTier(Severity.PAGE, long_window=21_600, short_window=1_800, factor=6.0),
        BurnRateTier(Severity.TICKET, long_window=86_400, short_window=7_200, factor=3.0),
    )
    assert objective.targets == (Target("Deployment", "search-api"), Target("Deployment", "search-indexer"))
    assert objective.policy == Policy(PolicyMode.DRY_RUN, PolicyAction.PAUSE, PolicyTrigger.FAST_BURN, None, 0.05)


def test_defaults_apply_when_optional_fields_are_absent() -> None:
    resource = _changed(lambda r: r["spec"].pop("targets"))
    objective = objective_from_resource(resource, min_step=MIN_STEP)
    assert (objective.targets, objective.policy, objective.evaluation_interval) == ((), Policy(), 30)


@pytest.mark.parametrize(("percent", "fraction"), [(99.9, 0.999), (99.95, 0.9995), (99, 0.99), (50.5, 0.505)])
def test_objective_percent_becomes_the_exact_fraction(percent: float, fraction: float) -> None:
    objective = objective_from_resource(_changed(_spec(objective=percent)), min_step=MIN_STEP)
    assert objective.objective == fraction


def test_short_windows_follow_the_operator_min_step() -> None:
    resource = _changed(_spec(window="1h"))
    tiers = objective_from_resource(resource, min_step=15).tiers
    assert min(tier.short_window for tier in tiers) == 30


AT = datetime(2025, 3, 1, 12, 30, 15, 987_654, tzinfo=UTC)
BURNING = Evaluation(
    state=State.BURNING,
    reason=None,
    message="Burning 14.7x over 1h",
    evaluated_at=AT,
    sli=0.99951234,
    budget_remaining=0.51234567,
    burn_rates={300: 16.123456, 3_600: 14.654321, 2_592_000: None},
    alerts=(
        AlertStatus(Severity.PAGE, long_window=3_600, short_window=300, factor=14.4, firing=True),
        AlertStatus(Severity.TICKET, long_window=259_200, short_window=21_600, factor=0.9333333, firing=False),
    ),
    time_to_exhaustion=1_234_567.8,
)


def test_status_field_names_and_rounding_to_three_digits() -> None:
    assert status_from_evaluation(BURNING, digits=3) == {
        "state": "Burning",
        "reason": None,
        "message": "Burning 14.7x over 1h",
        "sli": 0.999512,
        "errorBudget": {"remaining": 0.512, "consumed": 0.488, "display": "+51.2%"},
        "burnRates": {"5m": 16.1, "1h": 14.7, "30d": None},
        "alerts": [
            {"severity": "page", "longWindow": "1h", "shortWindow": "5m", "factor": 14.4, "firing": True},
            {"severity": "ticket", "longWindow": "3d", "shortWindow": "6h", "factor": 0.933, "firing": False},
        ],
        "timeToExhaustion": 1_230_000.0,
        "evaluatedAt": "2025-03-01T12:30:15Z",
    }


def test_six_digits_for_the_cli() -> None:
    status = status_from_evaluation(BURNING, digits=6)
    assert (status["sli"], status["errorBudget"], status["timeToExhaustion"]) == (
        0.99951234,
        {"remaining": 0.512346, "consumed": 0.487654, "display": "+51.2%"},
        1_234_570.0,
    )


def test_sli_keeps_its_digits_in_the_error_ratio_not_in_the_nines() -> None:
    status = status_from_evaluation(
        Evaluation(State.HEALTHY, None, "ok", evaluated_at=AT, sli=0.99998761, budget_remaining=0.99), digits=3
    )
    assert status["sli"] == 0.9999876


def test_unknown_status_keeps_reason_and_nulls_every_number() -> None:
    unknown = Evaluation(State.UNKNOWN, UnknownReason.STALE_DATA, "Newest sample is 10m old", evaluated_at=AT)
    status = status_from_evaluation(unknown, digits=3)
    assert status["reason"] == "StaleData"
    assert [status[key] for key in ("sli", "burnRates", "timeToExhaustion")] == [None, None, None]
    assert status["errorBudget"] == {"remaining": None, "consumed": None, "display": "n/a"}
    assert status["alerts"] == []


def test_status_is_strict_json_even_for_non_finite_numbers() -> None:
    weird = Evaluation(
        State.EXHAUSTED,
        None,
        "spent",
        evaluated_at=AT,
        sli=0.9,
        budget_remaining=float("-inf"),
        burn_rates={60: float("nan")},
    )
    status = status_from_evaluation(weird, digits=3)
    json.dumps(status, allow_nan=False)
    assert status["burnRates"] == {"1m": None}
    assert status["errorBudget"] == {"remaining": None, "consumed": None, "display": "n/a"}


def test_evaluated_at_is_utc_with_z() -> None:
    local = datetime(2025, 3, 1, 14, 30, 15, tzinfo=timezone(timedelta(hours=2)))
    status = status_from_evaluation(Evaluation(State.UNKNOWN, UnknownReason.NO_DATA, "none", local), digits=3)
    assert status["evaluatedAt"] == "2025-03-01T12:30:15Z"


def test_naive_times_and_zero_digits_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        status_from_evaluation(Evaluation(State.UNKNOWN, UnknownReason.NO_DATA, "none", datetime(2025, 3, 1)), digits=3)
    with pytest.raises(ValueError, match="digits"):
        status_from_evaluation(BURNING, digits=0)
