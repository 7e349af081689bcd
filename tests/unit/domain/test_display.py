"""How the error budget reads to people: percent of the budget remaining, signed, one decimal."""

from __future__ import annotations

import pytest

from slo_guard.domain.display import budget_percent


@pytest.mark.parametrize(
    ("fraction", "shown"),
    [
        (1.0, "+100.0%"),
        (0.5, "+50.0%"),
        (0.03, "+3.0%"),
        (0.0304, "+3.0%"),
        (0.0306, "+3.1%"),
        (-0.506, "-50.6%"),
        (-1.0, "-100.0%"),
        (-149.5, "-14,950.0%"),
    ],
)
def test_remaining_budget_is_a_signed_percent_with_one_decimal(fraction: float, shown: str) -> None:
    assert budget_percent(fraction) == shown


def test_a_sliver_either_side_of_zero_keeps_its_sign_and_zero_has_none() -> None:
    assert (budget_percent(0.0004), budget_percent(-0.0004)) == ("+0.0%", "-0.0%")
    assert budget_percent(0.0) == budget_percent(-0.0) == "0.0%"


@pytest.mark.parametrize("fraction", [None, float("nan"), float("inf")])
def test_no_number_reads_as_not_available(fraction: float | None) -> None:
    assert budget_percent(fraction) == "n/a"
