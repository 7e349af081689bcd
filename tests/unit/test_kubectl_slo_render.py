"""What `kubectl slo` draws: the budget bar, durations, the fastest firing tier, tables, colour rules, timelines.

Statuses are built with the operator's own `build_status`, so the formatting reads exactly what the operator writes.
tests/e2e/test_kubectl_slo.py runs the real command against the emulator.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import yaml

from slo_guard.domain.evaluation_types import AlertStatus, Evaluation, State, UnknownReason
from slo_guard.domain.model import Severity
from slo_guard.kubectl_slo.render import (
    Cell,
    Style,
    approximate_duration,
    budget,
    describe_text,
    description,
    fastest_firing,
    list_table,
    machine,
    summary,
    table,
    timeline,
)
from slo_guard.service.status import ActionRecord, TargetReport, build_status

NOW = datetime(2026, 11, 1, tzinfo=UTC)
TTY = Style(tty=True, colour=False)
COLOUR = Style(tty=True, colour=True)
PIPE = Style()
ANSI = re.compile(r"\x1b\[[0-9;]*m")
TIERS = (
    AlertStatus(Severity.PAGE, 3600, 300, 14.4, firing=True),
    AlertStatus(Severity.PAGE, 21600, 1800, 6.0, firing=True),
    AlertStatus(Severity.TICKET, 86400, 7200, 3.0, firing=True),
    AlertStatus(Severity.TICKET, 259200, 21600, 1.0, firing=False),
)
RATES = {300: 16.1, 3600: 15.2, 1800: 8.0, 21600: 7.3, 7200: 5.0, 86400: 4.1, 259200: 2.2}


def slo(name: str, status: dict[str, Any] | None, *, namespace: str = "shop") -> dict[str, Any]:
    return {
        "apiVersion": "sloguard.io/v1alpha1",
        "kind": "ServiceLevelObjective",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "objective": 99.9,
            "window": "30d",
            "indicator": {"ratio": {"errors": 'http_requests_total{code=~"5.."}', "total": "http_requests_total"}},
            "targets": [{"kind": "Deployment", "name": "checkout"}, {"kind": "StatefulSet", "name": "db"}],
        },
        **({"status": status} if status is not None else {}),
    }


def status(
    state: State,
    remaining: float | None,
    *,
    targets: dict[str, str] | None = None,
    alerts: tuple[AlertStatus, ...] = TIERS,
    actions: tuple[ActionRecord, ...] = (),
    time_to_exhaustion: float | None = None,
) -> dict[str, Any]:
    unknown = UnknownReason.NO_DATA if state is State.UNKNOWN else None
    evaluation = Evaluation(
        state,
        unknown,
        f"{state.value} in test",
        NOW,
        sli=None if remaining is None else 0.99849,
        budget_remaining=remaining,
        burn_rates=None if remaining is None else RATES,
        alerts=alerts,
        time_to_exhaustion=time_to_exhaustion,
    )
    reports = [
        TargetReport(kind=kind, name=name, state=target_state, reason=target_state, message=f"{name} {target_state}")
        for (kind, name), target_state in (
            (tuple(key.split("/")), value) for key, value in (targets or {"Deployment/checkout": "Untouched"}).items()
        )
    ]
    return build_status(previous={}, generation=1, evaluation=evaluation, targets=reports, actions=actions, now=NOW)


EXHAUSTED = status(
    State.EXHAUSTED,
    -0.506,
    targets={"Deployment/checkout": "Paused", "StatefulSet/db": "Overridden"},
    time_to_exhaustion=0.0,
    actions=(
        ActionRecord(
            NOW - timedelta(hours=2), "Deployment", "checkout", "Pause", "Applied", "BudgetExhausted", "paused"
        ),
        ActionRecord(NOW - timedelta(hours=1), "StatefulSet", "db", "Resume", "Refused", "OverrideActive", "released"),
    ),
)


@pytest.mark.parametrize(
    ("remaining", "shown"),
    [
        (0.512, "[#####.....] +51.2%"),
        (1.0, "[##########] +100.0%"),
        (0.04, "[..........] +4.0%"),
        (0.0, "[..........] 0.0%"),
        (-0.506, "[..........] -50.6%"),
        (None, "n/a"),
    ],
)
def test_on_a_terminal_the_budget_is_a_ten_cell_bar_and_the_signed_percent(remaining: float | None, shown: str) -> None:
    assert budget(remaining, TTY) == shown


def test_piped_the_budget_is_the_number_alone() -> None:
    assert [budget(value, PIPE) for value in (0.512, -0.506, None)] == ["+51.2%", "-50.6%", "n/a"]


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (None, "-"),
        (0.0, "0s"),
        (45.7, "45s"),
        (90, "1m30s"),
        (3725, "1h2m"),
        (99_000, "1d3h"),
        (3_570_000, "41d7h"),
        (86_400 + 59, "1d"),
    ],
)
def test_time_to_exhaustion_reads_like_a_kubectl_age_in_its_two_largest_units(
    seconds: float | None, shown: str
) -> None:
    assert approximate_duration(seconds) == shown


def test_the_fastest_firing_tier_is_the_one_with_the_shortest_long_window() -> None:
    alerts = EXHAUSTED["alerts"]
    assert fastest_firing(list(reversed(alerts))) == alerts[0]
    assert fastest_firing([{**alert, "firing": False} for alert in alerts]) is None


def test_a_garbled_window_never_hides_a_readable_firing_tier() -> None:
    alerts = [{"severity": "page", "longWindow": "soon", "firing": True}, {**EXHAUSTED["alerts"][2]}]
    assert fastest_firing(alerts) == EXHAUSTED["alerts"][2]


@pytest.mark.parametrize(
    ("tty", "no_color", "expected"),
    [
        (True, None, Style(tty=True, colour=True)),
        (True, "", Style(tty=True, colour=True)),
        (True, "1", Style(tty=True, colour=False)),
        (False, None, Style(tty=False, colour=False)),
    ],
)
def test_colour_only_on_a_terminal_and_never_with_a_non_empty_no_color(
    tty: bool, no_color: str | None, expected: Style
) -> None:
    environ = {} if no_color is None else {"NO_COLOR": no_color}
    assert Style.of(tty=tty, environ=environ) == expected


def test_colour_codes_take_no_room_in_the_columns() -> None:
    rows = [
        [Cell("checkout", "31"), Cell("Exhausted", "31"), Cell("x")],
        [Cell("cart-availability"), Cell("-"), Cell("")],
    ]
    plain = table(["NAME", "STATE", "HELD"], rows, TTY)
    painted = table(["NAME", "STATE", "HELD"], rows, COLOUR)
    assert "\x1b[31mExhausted\x1b[0m" in painted
    assert ANSI.sub("", painted) == plain
    assert plain.splitlines() == [
        "NAME                STATE       HELD",
        "checkout            Exhausted   x",
        "cart-availability   -",
    ]


def test_list_rows_name_state_budget_fastest_tier_exhaustion_and_only_the_targets_held() -> None:
    healthy = status(State.HEALTHY, 0.512, alerts=(), time_to_exhaustion=3_570_000.0)
    unknown = status(State.UNKNOWN, None, targets={"Deployment/checkout": "WouldPause"}, alerts=())
    summaries = [summary(slo("checkout", EXHAUSTED)), summary(slo("cart", healthy)), summary(slo("search", unknown))]
    summaries.append(summary(slo("fresh", None)))
    assert list_table(summaries, PIPE, all_namespaces=False).splitlines() == [
        "NAME       STATE            BUDGET   FIRING       EXHAUSTION   HELD",
        "checkout   Exhausted        -50.6%   page 1h/5m   0s           Deployment/checkout",
        "cart       Healthy          +51.2%   -            41d7h        -",
        "search     Unknown/NoData   n/a      -            -            Deployment/checkout",
        "fresh      -                n/a      -            -            -",
    ]


def test_all_namespaces_adds_the_namespace_column_first() -> None:
    text = list_table([summary(slo("payments", EXHAUSTED, namespace="pay"))], TTY, all_namespaces=True)
    assert text.splitlines()[0].split() == ["NAMESPACE", "NAME", "STATE", "BUDGET", "FIRING", "EXHAUSTION", "HELD"]
    assert text.splitlines()[1].startswith("pay         payments   Exhausted   [..........] -50.6%   page 1h/5m")


def test_machine_output_has_the_same_keys_whether_or_not_the_slo_was_evaluated() -> None:
    evaluated, fresh = summary(slo("checkout", EXHAUSTED)), summary(slo("fresh", None))
    assert list(evaluated) == list(fresh)
    assert fresh["firing"] is None
    assert fresh["errorBudget"] == {"remaining": None, "display": "n/a"}
    assert evaluated["firing"] == {"severity": "page", "longWindow": "1h", "shortWindow": "5m"}
    assert evaluated["held"] == [{"kind": "Deployment", "name": "checkout", "state": "Paused"}]
    assert list(description(slo("checkout", EXHAUSTED))) == list(description(slo("fresh", None)))


def test_machine_output_is_json_or_yaml_of_the_same_document() -> None:
    document = {"items": [summary(slo("checkout", EXHAUSTED))]}
    assert json.loads(machine(document, "json")) == document
    assert yaml.safe_load(machine(document, "yaml")) == document


def test_every_tier_shows_both_windows_burn_rates_its_factor_and_whether_it_fires() -> None:
    tiers = description(slo("checkout", EXHAUSTED))["tiers"]
    assert tiers[0] == {
        "severity": "page",
        "longWindow": "1h",
        "longBurnRate": 15.2,
        "shortWindow": "5m",
        "shortBurnRate": 16.1,
        "factor": 14.4,
        "firing": True,
    }
    assert [tier["firing"] for tier in tiers] == [True, True, True, False]


def test_the_timeline_is_oldest_first_keeping_the_order_of_equal_times() -> None:
    actions = [
        {"time": "2026-11-01T02:00:00Z", "action": "Resume"},
        {"time": "2026-11-01T01:00:00Z", "action": "Pause"},
        {"time": "2026-11-01T02:00:00Z", "action": "Restore"},
    ]
    assert [row["action"] for row in timeline(actions)] == ["Pause", "Resume", "Restore"]


def test_describe_shows_spec_status_tiers_conditions_targets_and_the_timeline() -> None:
    text = describe_text(description(slo("checkout", EXHAUSTED)), PIPE)
    lines = text.splitlines()
    assert lines[:11] == [
        "Name:       checkout",
        "Namespace:  shop",
        "Objective:  99.9% over 30d",
        'Indicator:  errors http_requests_total{code=~"5.."} / total http_requests_total',
        "Policy:     Pause (Enforce) when Exhausted; undone with more than 5% of the budget left",
        "State:      Exhausted",
        "Message:    Exhausted in test",
        "SLI:        99.849%",
        "Budget:     -50.6% left",
        "Exhaustion: spent",
        "Evaluated:  2026-11-01T00:00:00Z",
    ]
    tiers = lines.index("Tiers:")
    assert lines[tiers + 1 : tiers + 3] == [
        "  SEVERITY   LONG   BURN    SHORT   BURN    FACTOR   FIRING",
        "  page       1h     15.2x   5m      16.1x   14.4x    yes",
    ]
    assert "  BudgetExhausted   True     BudgetSpent" in text
    assert "  StatefulSet/db        Overridden   2026-11-01T00:00:00Z   Overridden   db Overridden" in lines
    actions = lines.index("Actions:")
    assert lines[actions + 1 :] == [
        "  TIME                   ACTION   TARGET                RESULT    REASON            MESSAGE",
        "  2026-10-31T22:00:00Z   Pause    Deployment/checkout   Applied   BudgetExhausted   paused",
        "  2026-10-31T23:00:00Z   Resume   StatefulSet/db        Refused   OverrideActive    released",
    ]


def test_describe_of_an_slo_never_evaluated_says_so_and_shows_empty_sections_as_none() -> None:
    lines = describe_text(description(slo("fresh", None)), PIPE).splitlines()
    assert "State:      not evaluated yet" in lines
    assert "Budget:     n/a" in lines
    assert lines[-4:] == ["Tiers:      <none>", "Conditions: <none>", "Targets:    <none>", "Actions:    <none>"]


def test_describe_on_a_terminal_draws_the_bar_and_colours_state_firing_holds_and_failures() -> None:
    text = describe_text(description(slo("checkout", EXHAUSTED)), COLOUR)
    assert "State:      \x1b[31mExhausted\x1b[0m" in text
    assert "Budget:     \x1b[31m[..........] -50.6% left\x1b[0m" in text
    assert "\x1b[31myes\x1b[0m" in text  # a firing page tier
    assert "\x1b[33myes\x1b[0m" in text  # a firing ticket tier
    assert "\x1b[33mPaused\x1b[0m" in text  # a target held
    assert "\x1b[31mRefused\x1b[0m" in text  # an action that did not happen
    assert ANSI.sub("", text) == describe_text(description(slo("checkout", EXHAUSTED)), TTY)
