import math
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from slo_guard.domain.evaluation import evaluate, unavailable
from slo_guard.domain.evaluation_types import Evaluation, Measurements, State, UnknownReason, WindowRates
from slo_guard.domain.model import (
    Indicator,
    LatencyIndicator,
    Objective,
    RatioIndicator,
    Selector,
    Severity,
)
from slo_guard.domain.windows import default_tiers, required_windows

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
MINUTE, HOUR, DAY = 60, 3_600, 86_400
WINDOW = 30 * DAY
MAX_STALENESS = 120.0
RATIO = RatioIndicator(errors=Selector("http_errors_total"), total=Selector("http_requests_total"))
LATENCY = LatencyIndicator(histogram=Selector("http_request_duration_seconds"), threshold=0.3)
# With 1 - 0.9375 = 1/16 every burn rate below is an exact float, so "equal to the factor" really is equal.
EXACT_OBJECTIVE = 0.9375
EXACT_BUDGET = 0.0625


def slo(*, objective: float = 0.999, indicator: Indicator = RATIO, tiers: bool = True) -> Objective:
    return Objective(
        name="checkout",
        namespace="shop",
        objective=objective,
        window=WINDOW,
        indicator=indicator,
        tiers=default_tiers(WINDOW, min_step=30) if tiers else (),
    )


def measured(
    rates: Mapping[int, tuple[float | None, float | None]],
    *,
    age: float | None = 15.0,
) -> Measurements:
    return Measurements(
        windows={window: WindowRates(errors=errors, total=total) for window, (errors, total) in rates.items()},
        newest_sample_age=age,
    )


def burning(target: Objective, burns: dict[int, float], *, default: float = 0.0) -> Measurements:
    """Every required window at `default` burn, except those in `burns`; total 1 event/s everywhere."""
    return measured(
        {window: (burns.get(window, default) * target.error_budget, 1.0) for window in required_windows(target)}
    )


def judge(target: Objective, measurements: Measurements) -> Evaluation:
    return evaluate(target, measurements, now=NOW, max_staleness=MAX_STALENESS)


def test_workbook_example_half_the_budget_burnt_at_half_speed() -> None:
    target = slo()
    result = judge(target, measured(dict.fromkeys(required_windows(target), (0.5, 1000.0))))
    # error ratio 0.5/1000 = 5e-4; burn 5e-4 / 1e-3 = 0.5; remaining 1 - 0.5 = 0.5; SLI 1 - 5e-4.
    assert result.state is State.HEALTHY
    assert result.reason is None
    assert result.evaluated_at == NOW
    assert result.sli == pytest.approx(0.9995, rel=1e-12)
    assert result.budget_remaining == pytest.approx(0.5, rel=1e-12)
    assert result.budget_consumed == pytest.approx(0.5, rel=1e-12)
    assert result.burn_rates is not None
    assert set(result.burn_rates) == set(required_windows(target))
    assert all(burn == pytest.approx(0.5, rel=1e-12) for burn in result.burn_rates.values())
    # 0.5 of the budget left, spent at 0.5 budgets per window: one more 30d window.
    assert result.time_to_exhaustion == pytest.approx(WINDOW, rel=1e-12)
    assert result.message == "Healthy: +50.0% of the error budget left over 30d"


def test_healthy_message_reports_the_share_left() -> None:
    target = slo()
    rates = dict.fromkeys(required_windows(target), (0.0, 1000.0))
    rates[WINDOW] = (0.421, 1000.0)
    result = judge(target, measured(rates))
    assert result.state is State.HEALTHY
    assert result.message == "Healthy: +57.9% of the error budget left over 30d"


def test_alerts_follow_the_tiers_in_order() -> None:
    target = slo()
    result = judge(target, burning(target, {}))
    assert [(a.severity, a.long_window, a.short_window, a.factor) for a in result.alerts] == [
        (Severity.PAGE, HOUR, 5 * MINUTE, 14.4),
        (Severity.PAGE, 6 * HOUR, 30 * MINUTE, 6.0),
        (Severity.TICKET, DAY, 2 * HOUR, 3.0),
        (Severity.TICKET, 3 * DAY, 6 * HOUR, 1.0),
    ]
    assert not any(alert.firing for alert in result.alerts)


@pytest.mark.parametrize(
    ("long_burn", "short_burn", "firing"),
    [
        (15.0, 15.0, True),
        (15.0, 1.0, False),
        (1.0, 15.0, False),
        (1.0, 1.0, False),
        (14.4, 14.4, False),
        (15.0, 14.4, False),
        (14.4, 15.0, False),
        (14.5, 14.5, True),
    ],
    ids=["both", "long-only", "short-only", "neither", "both-equal", "short-equal", "long-equal", "just-above"],
)
def test_page_tier_fires_only_when_both_windows_burn_strictly_above_the_factor(
    long_burn: float, short_burn: float, firing: bool
) -> None:
    target = slo(objective=EXACT_OBJECTIVE)
    result = judge(target, burning(target, {HOUR: long_burn, 5 * MINUTE: short_burn}))
    assert result.burn_rates is not None
    assert (result.burn_rates[HOUR], result.burn_rates[5 * MINUTE]) == (long_burn, short_burn)
    assert result.alerts[0].firing is firing
    assert result.page_firing is firing
    assert result.state is (State.BURNING if firing else State.HEALTHY)


@pytest.mark.parametrize("index", range(4))
def test_each_tier_fires_on_its_own_windows(index: int) -> None:
    target = slo(objective=EXACT_OBJECTIVE)
    tier = target.tiers[index]
    result = judge(target, burning(target, {tier.long_window: tier.factor + 0.5, tier.short_window: tier.factor + 0.5}))
    assert [alert.firing for alert in result.alerts] == [i == index for i in range(4)]
    assert result.page_firing is (tier.severity is Severity.PAGE)
    assert result.state is State.BURNING


def test_burning_message_names_the_first_firing_tier() -> None:
    target = slo()
    rates = dict.fromkeys(required_windows(target), (0.0, 1000.0))
    rates[HOUR] = rates[5 * MINUTE] = (15.2, 1000.0)
    rates[6 * HOUR] = rates[30 * MINUTE] = (7.0, 1000.0)
    result = judge(target, measured(rates))
    assert result.state is State.BURNING
    assert [alert.firing for alert in result.alerts] == [True, True, False, False]
    assert result.message == "Burning: page tier 1h/5m at 15.2x (> 14.4x)"


def short_slo() -> Objective:
    """A 10m SLO: all its default tiers read 1m windows (2 * min_step 30s)."""
    return Objective(
        name="checkout",
        namespace="shop",
        objective=EXACT_OBJECTIVE,
        window=10 * MINUTE,
        indicator=RATIO,
        tiers=default_tiers(10 * MINUTE, min_step=30),
    )


@pytest.mark.parametrize("burn", [0.25, 1.0])
def test_a_short_window_slo_burning_at_most_its_budget_rate_is_healthy(burn: float) -> None:
    target = short_slo()
    result = judge(target, burning(target, {MINUTE: burn, 10 * MINUTE: 0.5}))
    assert result.burn_rates == {MINUTE: burn, 10 * MINUTE: 0.5}
    assert [alert.firing for alert in result.alerts] == [False] * 4
    assert not result.page_firing
    assert result.state is State.HEALTHY


def test_an_slo_spending_exactly_its_budget_rate_in_float_arithmetic_never_fires() -> None:
    # 0.1 errors/s over 1/s against an objective of 0.9 reads as burn rate 1.0000000000000002.
    target = replace(short_slo(), objective=0.9)
    rates = dict.fromkeys(required_windows(target), (0.1, 1.0))
    rates[10 * MINUTE] = (0.05, 1.0)
    result = judge(target, measured(rates))
    assert result.burn_rates[MINUTE] == pytest.approx(1.0)
    assert result.burn_rates[MINUTE] > 1.0, "the float rounding this test is about"
    assert [alert.firing for alert in result.alerts] == [False] * 4
    assert result.state is State.HEALTHY


def test_a_short_window_slo_burning_above_its_budget_rate_fires_every_tier() -> None:
    target = short_slo()
    result = judge(target, burning(target, {MINUTE: 1.0625, 10 * MINUTE: 0.5}))
    assert [alert.firing for alert in result.alerts] == [True] * 4
    assert result.page_firing
    assert result.state is State.BURNING


def test_window_without_traffic_has_unknown_burn_and_cannot_fire() -> None:
    target = slo(objective=EXACT_OBJECTIVE)
    rates = burning(target, {HOUR: 16.0}).windows
    quiet = measured({**{w: (r.errors, r.total) for w, r in rates.items()}, 5 * MINUTE: (0.0, 0.0)})
    result = judge(target, quiet)
    assert result.burn_rates is not None
    assert result.burn_rates[5 * MINUTE] is None
    assert result.burn_rates[HOUR] == 16.0
    assert not result.alerts[0].firing


def test_window_missing_from_measurements_has_unknown_burn() -> None:
    target = slo()
    rates = {window: (0.5, 1000.0) for window in required_windows(target) if window != 2 * HOUR}
    result = judge(target, measured(rates))
    assert result.burn_rates is not None
    assert result.burn_rates[2 * HOUR] is None
    assert result.state is State.HEALTHY


def test_overspent_budget_is_negative_and_exhausted() -> None:
    target = slo()
    result = judge(target, measured(dict.fromkeys(required_windows(target), (1.12, 1000.0))))
    # ratio 1.12e-3 over a 1e-3 budget: 112 % consumed, -12 % remaining.
    assert result.state is State.EXHAUSTED
    assert result.budget_remaining == pytest.approx(-0.12, rel=1e-9)
    assert result.budget_consumed == pytest.approx(1.12, rel=1e-12)
    assert result.time_to_exhaustion == 0.0
    assert result.message == "Error budget exhausted: -12.0% of the error budget left over 30d"


def test_exactly_spent_budget_is_exhausted() -> None:
    target = slo(objective=EXACT_OBJECTIVE)
    result = judge(target, burning(target, {WINDOW: 1.0}))
    assert result.budget_remaining == 0.0
    assert result.state is State.EXHAUSTED
    assert result.time_to_exhaustion == 0.0


def test_exhausted_wins_over_burning() -> None:
    target = slo(objective=EXACT_OBJECTIVE)
    result = judge(target, burning(target, {WINDOW: 1.5, HOUR: 15.0, 5 * MINUTE: 15.0}))
    assert result.alerts[0].firing
    assert result.state is State.EXHAUSTED


def test_ratio_sli_with_no_error_series_means_no_errors() -> None:
    target = slo()
    result = judge(target, measured(dict.fromkeys(required_windows(target), (None, 1000.0))))
    assert result.state is State.HEALTHY
    assert result.sli == 1.0
    assert result.budget_remaining == 1.0
    assert result.burn_rates is not None
    assert set(result.burn_rates.values()) == {0.0}
    assert result.time_to_exhaustion is None


def test_latency_sli_without_the_threshold_bucket_is_no_data_not_all_good() -> None:
    target = slo(indicator=LATENCY)
    result = judge(target, measured(dict.fromkeys(required_windows(target), (None, 1000.0))))
    assert result.state is State.UNKNOWN
    assert result.reason is UnknownReason.NO_DATA
    assert result.message == (
        "No bucket with le equal to 0.3 in histogram http_request_duration_seconds: "
        "the threshold must be one of its bucket boundaries"
    )
    assert (result.sli, result.budget_remaining, result.burn_rates) == (None, None, None)


def test_latency_window_without_the_bucket_has_unknown_burn() -> None:
    target = slo(indicator=LATENCY)
    rates: dict[int, tuple[float | None, float]] = dict.fromkeys(required_windows(target), (0.5, 1000.0))
    rates[HOUR] = (None, 1000.0)
    result = judge(target, measured(rates))
    assert result.burn_rates is not None
    assert result.burn_rates[HOUR] is None
    assert result.time_to_exhaustion is None


@pytest.mark.parametrize("indicator", [RATIO, LATENCY], ids=["ratio", "latency"])
@pytest.mark.parametrize(
    ("errors", "burn"),
    [(-0.5, 0.0), (120.0, 16.0), (100.0, 16.0)],
    ids=["good-above-count", "errors-above-total", "all-errors"],
)
def test_error_ratio_is_clamped_to_zero_and_one(indicator: Indicator, errors: float, burn: float) -> None:
    target = slo(objective=EXACT_OBJECTIVE, indicator=indicator)
    rates = dict.fromkeys(required_windows(target), (0.0, 100.0))
    rates[HOUR] = (errors, 100.0)
    result = judge(target, measured(rates))
    assert result.burn_rates is not None
    assert result.burn_rates[HOUR] == burn


def test_clamped_slo_window_gives_sli_zero_not_negative() -> None:
    target = slo(objective=EXACT_OBJECTIVE)
    result = judge(target, measured(dict.fromkeys(required_windows(target), (150.0, 100.0))))
    assert result.sli == 0.0
    assert result.budget_remaining == 1.0 - 16.0


def unknown_fields(result: Evaluation) -> tuple[object, ...]:
    return (result.sli, result.budget_remaining, result.burn_rates, result.alerts, result.time_to_exhaustion)


@pytest.mark.parametrize(
    ("rates", "age", "reason", "message"),
    [
        ({}, 15.0, UnknownReason.NO_DATA, "No samples for the total series over 30d"),
        ({WINDOW: (None, None)}, 15.0, UnknownReason.NO_DATA, "No samples for the total series over 30d"),
        ({WINDOW: (1.0, None)}, 15.0, UnknownReason.NO_DATA, "No samples for the total series over 30d"),
        ({WINDOW: (0.0, math.nan)}, 15.0, UnknownReason.NO_DATA, "No samples for the total series over 30d"),
        ({}, None, UnknownReason.NO_DATA, "No samples for the total series over 30d"),
        (
            {WINDOW: (0.5, 1000.0)},
            None,
            UnknownReason.STALE_DATA,
            "No recent sample of the total series (the newest must be at most 120s old)",
        ),
        (
            {WINDOW: (0.5, 1000.0)},
            300.4,
            UnknownReason.STALE_DATA,
            "The newest sample of the total series is 300s old (at most 120s allowed)",
        ),
        (
            {WINDOW: (0.0, 0.0)},
            300.0,
            UnknownReason.STALE_DATA,
            "The newest sample of the total series is 300s old (at most 120s allowed)",
        ),
        ({WINDOW: (0.0, 0.0)}, 15.0, UnknownReason.NO_TRAFFIC, "No traffic over 30d: the total rate is 0"),
        ({WINDOW: (None, 0.0)}, 15.0, UnknownReason.NO_TRAFFIC, "No traffic over 30d: the total rate is 0"),
        ({WINDOW: (math.nan, 1000.0)}, 15.0, UnknownReason.NO_DATA, "The errors rate over 30d is not a number"),
    ],
    ids=[
        "window-missing",
        "total-absent",
        "only-errors",
        "total-nan",
        "absent-beats-stale",
        "no-recent-sample",
        "too-old",
        "stale-beats-no-traffic",
        "no-traffic",
        "no-traffic-no-errors",
        "errors-nan",
    ],
)
def test_unknown_states_carry_a_reason_and_no_numbers(
    rates: dict[int, tuple[float | None, float | None]], age: float | None, reason: UnknownReason, message: str
) -> None:
    result = judge(slo(), measured(rates, age=age))
    assert result.state is State.UNKNOWN
    assert result.reason is reason
    assert result.message == message
    assert result.evaluated_at == NOW
    assert unknown_fields(result) == (None, None, None, (), None)
    assert not result.page_firing


def test_sample_exactly_at_max_staleness_is_still_fresh() -> None:
    target = slo()
    rates = dict.fromkeys(required_windows(target), (0.5, 1000.0))
    assert judge(target, measured(rates, age=MAX_STALENESS)).state is State.HEALTHY


def test_prometheus_unavailable() -> None:
    result = unavailable(now=NOW, message="Prometheus at http://prometheus:9090 did not answer in 10s")
    assert result.state is State.UNKNOWN
    assert result.reason is UnknownReason.PROMETHEUS_UNAVAILABLE
    assert result.message == "Prometheus at http://prometheus:9090 did not answer in 10s"
    assert result.evaluated_at == NOW
    assert unknown_fields(result) == (None, None, None, (), None)


def test_time_to_exhaustion_uses_the_burn_over_the_shortest_long_window() -> None:
    target = slo(objective=EXACT_OBJECTIVE)
    result = judge(target, burning(target, {WINDOW: 0.5, HOUR: 2.0, 6 * HOUR: 8.0}))
    # Half the budget left, burning 2 budgets per 30 d over the last hour: 0.5 * 30 d / 2 = 7.5 d.
    assert result.time_to_exhaustion == 7.5 * DAY


@pytest.mark.parametrize(
    "hour_rates",
    [(0.0, 1.0), (0.0, 0.0), (None, None)],
    ids=["not-burning", "no-traffic-in-the-hour", "hour-absent"],
)
def test_time_to_exhaustion_is_unknown_without_a_positive_burn(hour_rates: tuple[float | None, float | None]) -> None:
    target = slo(objective=EXACT_OBJECTIVE)
    rates = {w: (r.errors, r.total) for w, r in burning(target, {WINDOW: 0.5}, default=3.0).windows.items()}
    rates[HOUR] = hour_rates
    assert judge(target, measured(rates)).time_to_exhaustion is None


def test_time_to_exhaustion_is_unknown_without_tiers() -> None:
    target = slo(objective=EXACT_OBJECTIVE, tiers=False)
    result = judge(target, burning(target, {WINDOW: 0.5}))
    assert result.state is State.HEALTHY
    assert result.alerts == ()
    assert result.time_to_exhaustion is None
