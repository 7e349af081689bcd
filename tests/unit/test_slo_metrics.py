"""Per-SLO series: what a dashboard sums over. Stale values go, a forgotten SLO leaves nothing behind, and another
SLO's series are untouched (a replica handing a shard over drops exactly that shard's SLOs)."""

from datetime import UTC, datetime

from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from slo_guard.domain.evaluation_types import Evaluation, State, UnknownReason
from slo_guard.telemetry import OperatorMetrics

NOW = datetime(2026, 12, 5, tzinfo=UTC)
PER_SLO = ("slo_guard_sli", "slo_guard_error_budget_remaining", "slo_guard_burn_rate", "slo_guard_state")


def series(metrics: OperatorMetrics) -> set[tuple[str, tuple[tuple[str, str], ...]]]:
    exposed = text_string_to_metric_families(generate_latest(metrics.registry).decode())
    return {
        (sample.name, tuple(sorted(sample.labels.items())))
        for family in exposed
        if family.name in PER_SLO
        for sample in family.samples
    }


def of(found: set[tuple[str, tuple[tuple[str, str], ...]]], name: str) -> set[tuple[str, tuple[tuple[str, str], ...]]]:
    return {item for item in found if ("slo", name) in item[1]}


def healthy(burns: dict[int, float | None]) -> Evaluation:
    return Evaluation(State.HEALTHY, None, "ok", NOW, sli=0.999, budget_remaining=0.5, burn_rates=burns)


def test_a_window_no_longer_evaluated_and_an_unknown_pass_drop_their_stale_values() -> None:
    metrics = OperatorMetrics()
    metrics.record_evaluation(namespace="shop", name="checkout", evaluation=healthy({300: 2.0, 3600: 1.0}))
    metrics.record_evaluation(namespace="shop", name="checkout", evaluation=healthy({300: 2.0, 3600: None}))
    windows = {dict(labels)["window"] for name, labels in series(metrics) if name == "slo_guard_burn_rate"}
    assert windows == {"5m"}

    unknown = Evaluation(State.UNKNOWN, UnknownReason.NO_DATA, "no data", NOW)
    metrics.record_evaluation(namespace="shop", name="checkout", evaluation=unknown)
    names = {name for name, _ in series(metrics)}
    assert names == {"slo_guard_state"}, "an Unknown pass shows its state and no stale numbers"


def test_forgetting_an_slo_removes_all_its_series_and_none_of_another() -> None:
    metrics = OperatorMetrics()
    for name in ("checkout", "search"):
        metrics.record_evaluation(namespace="shop", name=name, evaluation=healthy({300: 2.0, 3600: 1.0}))
    kept = of(series(metrics), "search")

    metrics.forget_slo(namespace="shop", name="checkout")

    assert of(series(metrics), "checkout") == set()
    assert of(series(metrics), "search") == kept
    assert len(kept) == 2 + 2 + len(State)


def test_the_state_series_say_1_for_the_current_state_and_0_for_the_others() -> None:
    metrics = OperatorMetrics()
    metrics.record_evaluation(namespace="shop", name="checkout", evaluation=healthy({300: 2.0}))
    exposed = text_string_to_metric_families(generate_latest(metrics.registry).decode())
    states = {
        sample.labels["state"]: sample.value
        for family in exposed
        if family.name == "slo_guard_state"
        for sample in family.samples
    }
    assert states == {state.value: (1.0 if state is State.HEALTHY else 0.0) for state in State}
