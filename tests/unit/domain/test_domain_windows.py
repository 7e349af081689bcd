import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from slo_guard.domain.model import BurnRateTier, Objective, RatioIndicator, Selector, Severity
from slo_guard.domain.windows import GOOGLE_30D_TIERS, GOOGLE_30D_WINDOW, default_tiers, required_windows

DAY = 86_400
HOUR = 3_600
MINUTE = 60


def test_the_workbook_table_is_kept_as_data() -> None:
    rows = [
        (float(spec.budget_consumed), spec.long_window, spec.short_window, spec.severity) for spec in GOOGLE_30D_TIERS
    ]
    assert rows == [
        (0.02, HOUR, 5 * MINUTE, Severity.PAGE),
        (0.05, 6 * HOUR, 30 * MINUTE, Severity.PAGE),
        (0.10, DAY, 2 * HOUR, Severity.TICKET),
        (0.10, 3 * DAY, 6 * HOUR, Severity.TICKET),
    ]


def test_a_30_day_window_gets_exactly_the_workbook_tiers() -> None:
    assert default_tiers(30 * DAY, min_step=60) == (
        BurnRateTier(Severity.PAGE, long_window=HOUR, short_window=5 * MINUTE, factor=14.4),
        BurnRateTier(Severity.PAGE, long_window=6 * HOUR, short_window=30 * MINUTE, factor=6.0),
        BurnRateTier(Severity.TICKET, long_window=DAY, short_window=2 * HOUR, factor=3.0),
        BurnRateTier(Severity.TICKET, long_window=3 * DAY, short_window=6 * HOUR, factor=1.0),
    )


def test_a_28_day_window_scales_windows_and_keeps_the_factors() -> None:
    tiers = default_tiers(28 * DAY, min_step=60)
    assert [(tier.long_window, tier.short_window) for tier in tiers] == [
        (56 * MINUTE, 4 * MINUTE + 40),
        (5 * HOUR + 36 * MINUTE, 28 * MINUTE),
        (22 * HOUR + 24 * MINUTE, HOUR + 52 * MINUTE),
        (2 * DAY + 19 * HOUR + 12 * MINUTE, 5 * HOUR + 36 * MINUTE),
    ]
    assert [tier.factor for tier in tiers] == pytest.approx([14.4, 6.0, 3.0, 1.0], rel=1e-12)


def test_a_7_day_window_scales_windows_by_seven_thirtieths() -> None:
    tiers = default_tiers(7 * DAY, min_step=15)
    assert [(tier.long_window, tier.short_window) for tier in tiers] == [
        (14 * MINUTE, 70),
        (HOUR + 24 * MINUTE, 7 * MINUTE),
        (5 * HOUR + 36 * MINUTE, 28 * MINUTE),
        (16 * HOUR + 48 * MINUTE, HOUR + 24 * MINUTE),
    ]
    assert [tier.factor for tier in tiers] == pytest.approx([14.4, 6.0, 3.0, 1.0], rel=1e-12)


def test_short_windows_are_clamped_to_two_steps_and_factors_keep_their_budget_meaning() -> None:
    tiers = default_tiers(HOUR, min_step=5)
    # 1h/30d = 1/720: 1h -> 5s, 5m -> 0.42s, 6h -> 30s, 30m -> 2.5s, 1d -> 120s, 2h -> 10s, 3d -> 360s.
    assert [(tier.long_window, tier.short_window) for tier in tiers] == [(10, 10), (30, 10), (120, 10), (360, 30)]
    # factor = budget consumed * SLO window / long window.
    assert [tier.factor for tier in tiers] == pytest.approx(
        [0.02 * 3600 / 10, 0.05 * 3600 / 30, 0.10 * 3600 / 120, 0.10 * 3600 / 360], rel=1e-12
    )


def test_a_10_minute_window_gets_no_factor_below_one() -> None:
    tiers = default_tiers(10 * MINUTE, min_step=30)
    # 10m/30d = 1/4320: every window scales to at most 60s and is clamped to 2 * 30s.
    assert [(tier.long_window, tier.short_window) for tier in tiers] == [(MINUTE, MINUTE)] * 4
    # Budget consumed * 10m / 1m would be 0.2, 0.5, 1 and 1: the page tiers would fire at a fifth of the
    # budget rate, on an SLO that ends its window with budget to spare.
    assert [tier.factor for tier in tiers] == [1.0, 1.0, 1.0, 1.0]


def test_only_factors_below_one_are_raised_to_one() -> None:
    tiers = default_tiers(30 * MINUTE, min_step=30)
    # 0.02 * 30m / 1m = 0.6 -> 1; 0.05 * 30m / 1m = 1.5; 0.1 * 30m / 1m = 3; 0.1 * 30m / 3m = 1.
    assert [(tier.long_window, tier.short_window, tier.factor) for tier in tiers] == [
        (MINUTE, MINUTE, 1.0),
        (MINUTE, MINUTE, 1.5),
        (MINUTE, MINUTE, 3.0),
        (3 * MINUTE, MINUTE, 1.0),
    ]


def test_scaled_windows_round_halves_up() -> None:
    # 30m * 1d/30d = 60s exactly; 30m * 1.5h/30d = 3.75s -> 4s; 30m * 1h/30d = 2.5s -> 3s.
    short_windows = [default_tiers(window, min_step=1)[1].short_window for window in (DAY, 5_400, HOUR)]
    assert short_windows == [60, 4, 3]


@settings(deadline=None)
@given(window=st.integers(min_value=60, max_value=400 * DAY), min_step=st.integers(min_value=1, max_value=300))
def test_every_scaled_tier_keeps_its_budget_consumed_unless_it_would_fire_on_track(window: int, min_step: int) -> None:
    for spec, tier in zip(GOOGLE_30D_TIERS, default_tiers(window, min_step=min_step), strict=True):
        assert tier.long_window >= tier.short_window >= 2 * min_step
        assert tier.factor >= 1.0
        # Burning at the factor over the long window spends the workbook's share of the budget, or, when that
        # share needs a factor below 1, the long window's share of the whole window (burn 1).
        spent = tier.factor * tier.long_window / window
        assert spent == pytest.approx(max(float(spec.budget_consumed), tier.long_window / window), rel=1e-12)


@pytest.mark.parametrize(("window", "min_step"), [(0, 30), (-DAY, 30), (DAY, 0)])
def test_rejects_non_positive_inputs(window: int, min_step: int) -> None:
    with pytest.raises(ValueError, match="positive"):
        default_tiers(window, min_step=min_step)


def objective(window: int, tiers: tuple[BurnRateTier, ...]) -> Objective:
    indicator = RatioIndicator(errors=Selector("errors_total"), total=Selector("requests_total"))
    return Objective(name="api", namespace="shop", objective=0.999, window=window, indicator=indicator, tiers=tiers)


def test_required_windows_are_the_slo_window_and_every_tier_window_sorted() -> None:
    required = required_windows(objective(GOOGLE_30D_WINDOW, default_tiers(GOOGLE_30D_WINDOW, min_step=60)))
    assert required == (5 * MINUTE, 30 * MINUTE, HOUR, 2 * HOUR, 6 * HOUR, DAY, 3 * DAY, 30 * DAY)


def test_required_windows_are_deduplicated() -> None:
    assert required_windows(objective(HOUR, default_tiers(HOUR, min_step=5))) == (10, 30, 120, 360, HOUR)


def test_required_windows_without_tiers_is_the_slo_window() -> None:
    assert required_windows(objective(DAY, ())) == (DAY,)
