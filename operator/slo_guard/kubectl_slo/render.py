"""What `kubectl slo` prints: SLOs read from the API server turned into documents, and documents into text.

Every read command builds one document (the `-o json|yaml` output, with the same keys whether a field is set or
not) and draws its text from that document, so the two never disagree.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from slo_guard.domain.display import NOT_AVAILABLE, budget_percent
from slo_guard.domain.durations import DurationError, format_duration, parse_duration
from slo_guard.domain.evaluation_types import State
from slo_guard.domain.model import Severity
from slo_guard.resources import SpecError, objective_from_resource
from slo_guard.service.gate import HOLDING_STATES, as_number

BAR_WIDTH = 10
ABSENT = "-"
"""Shown in a table cell with nothing to show."""
COLUMN_GAP = "   "
_TWO_UNITS = ((86_400, 3_600), (3_600, 60), (60, 1))
"""(unit, the next smaller unit): a span of at least `unit` is shown to the next smaller one."""
_ANY_MIN_STEP = 1
"""Only the policy is read for display: the lowest floor rejects no spec the operator accepts."""

RED = "31"
GREEN = "32"
YELLOW = "33"
CYAN = "36"
STATE_COLOURS = {State.HEALTHY.value: GREEN, State.BURNING.value: YELLOW, State.EXHAUSTED.value: RED}
SEVERITY_COLOURS = {Severity.PAGE.value: RED, Severity.TICKET.value: YELLOW}
FAILED_RESULTS = frozenset({"Refused", "Failed"})
TIER_HEADER = ("SEVERITY", "LONG", "BURN", "SHORT", "BURN", "FACTOR", "FIRING")


@dataclass(frozen=True, slots=True)
class Style:
    """How the output stream takes text: a budget bar on a terminal, colour there too unless NO_COLOR is set."""

    tty: bool = False
    colour: bool = False

    @classmethod
    def of(cls, *, tty: bool, environ: Mapping[str, str]) -> Style:
        # https://no-color.org: any non-empty value turns colour off.
        return cls(tty=tty, colour=tty and not environ.get("NO_COLOR"))

    def paint(self, text: str, colour: str | None) -> str:
        return f"\x1b[{colour}m{text}\x1b[0m" if self.colour and colour and text else text


@dataclass(frozen=True, slots=True)
class Cell:
    text: str
    colour: str | None = None


def machine(document: Any, output: str) -> str:
    """`-o json` or `-o yaml`, keys in the order the document has them."""
    if output == "json":
        return json.dumps(document, indent=2) + "\n"
    return yaml.safe_dump(document, sort_keys=False, width=1_000_000)


def table(header: Sequence[str], rows: Sequence[Sequence[Cell]], style: Style, *, indent: str = "") -> str:
    """Columns as kubectl aligns them, padded by the text people see (colour codes take no room)."""
    lines = [[Cell(title) for title in header], *rows]
    widths = [max(len(line[column].text) for line in lines) for column in range(len(header))]
    return "".join(
        indent
        + COLUMN_GAP.join(
            style.paint(cell.text, cell.colour) + " " * (width - len(cell.text))
            for cell, width in zip(line, widths, strict=True)
        ).rstrip()
        + "\n"
        for line in lines
    )


def budget(remaining: float | None, style: Style) -> str:
    """`[#####.....] +51.2%` on a terminal (the bar empty once the budget is spent), the number alone otherwise."""
    number = budget_percent(remaining)
    if not style.tty or remaining is None or not math.isfinite(remaining):
        return number
    filled = round(min(max(remaining, 0.0), 1.0) * BAR_WIDTH)
    return f"[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {number}"


def approximate_duration(seconds: float | None) -> str:
    """A time span in its two largest units, as kubectl shows ages: `3d4h`, `5h12m`, `45s`; `-` for None."""
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return ABSENT
    whole = int(seconds)
    if whole == 0:
        return "0s"
    precision = next((finer for unit, finer in _TWO_UNITS if whole >= unit), 1)
    return format_duration(whole - whole % precision)


# --- kubectl slo list


def summary(resource: Mapping[str, Any]) -> dict[str, Any]:
    """One SLO as `kubectl slo list` shows it."""
    metadata: Mapping[str, Any] = resource.get("metadata") or {}
    status: Mapping[str, Any] = resource.get("status") or {}
    remaining = as_number((status.get("errorBudget") or {}).get("remaining"))
    firing = fastest_firing(status.get("alerts") or [])
    tier = None if firing is None else {key: firing.get(key) for key in ("severity", "longWindow", "shortWindow")}
    return {
        "namespace": metadata.get("namespace"),
        "name": metadata.get("name"),
        "state": status.get("state"),
        "reason": status.get("reason"),
        "errorBudget": {"remaining": remaining, "display": budget_percent(remaining)},
        "firing": tier,
        "timeToExhaustion": as_number(status.get("timeToExhaustion")),
        "held": [
            {"kind": row.get("kind"), "name": row.get("name"), "state": row.get("state")}
            for row in status.get("targets") or []
            if row.get("state") in HOLDING_STATES
        ],
        "evaluatedAt": status.get("evaluatedAt"),
    }


def fastest_firing(alerts: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The firing tier with the shortest long window: the one that spends the budget fastest."""
    firing = [alert for alert in alerts if alert.get("firing") is True]
    return min(firing, key=lambda alert: _seconds(alert.get("longWindow")), default=None)


def list_table(summaries: Sequence[Mapping[str, Any]], style: Style, *, all_namespaces: bool) -> str:
    header = ["NAME", "STATE", "BUDGET", "FIRING", "EXHAUSTION", "HELD"]
    rows = []
    for item in summaries:
        state = state_cell(item["state"], item["reason"])
        row = [
            Cell(str(item["name"])),
            state,
            Cell(budget(item["errorBudget"]["remaining"], style), state.colour),
            _firing_cell(item["firing"]),
            Cell(approximate_duration(item["timeToExhaustion"])),
            Cell(", ".join(f"{held['kind']}/{held['name']}" for held in item["held"]) or ABSENT),
        ]
        rows.append([Cell(str(item["namespace"])), *row] if all_namespaces else row)
    return table(["NAMESPACE", *header] if all_namespaces else header, rows, style)


def _firing_cell(tier: Mapping[str, Any] | None) -> Cell:
    if tier is None:
        return Cell(ABSENT)
    text = f"{tier['severity']} {tier['longWindow']}/{tier['shortWindow']}"
    return Cell(text, SEVERITY_COLOURS.get(tier["severity"]))


def state_cell(state: str | None, reason: str | None) -> Cell:
    """`Exhausted`, or `Unknown/NoData` with the reason; `-` before the first evaluation."""
    if state is None:
        return Cell(ABSENT)
    return Cell(f"{state}/{reason}" if reason else state, STATE_COLOURS.get(state, CYAN))


# --- kubectl slo describe


def description(resource: Mapping[str, Any]) -> dict[str, Any]:
    """One SLO as `kubectl slo describe` shows it: spec essentials, the status, tiers, targets and the timeline."""
    metadata: Mapping[str, Any] = resource.get("metadata") or {}
    spec: Mapping[str, Any] = resource.get("spec") or {}
    status: Mapping[str, Any] = resource.get("status") or {}
    budget_fields: Mapping[str, Any] = status.get("errorBudget") or {}
    remaining = as_number(budget_fields.get("remaining"))
    rates: Mapping[str, Any] = status.get("burnRates") or {}
    return {
        "namespace": metadata.get("namespace"),
        "name": metadata.get("name"),
        "objective": spec.get("objective"),
        "window": spec.get("window"),
        "indicator": spec.get("indicator"),
        "policy": _policy(resource),
        "state": status.get("state"),
        "reason": status.get("reason"),
        "message": status.get("message"),
        "sli": as_number(status.get("sli")),
        "errorBudget": {
            "remaining": remaining,
            "consumed": as_number(budget_fields.get("consumed")),
            "display": budget_percent(remaining),
        },
        "timeToExhaustion": as_number(status.get("timeToExhaustion")),
        "evaluatedAt": status.get("evaluatedAt"),
        "tiers": [
            {
                "severity": alert.get("severity"),
                "longWindow": alert.get("longWindow"),
                "longBurnRate": as_number(rates.get(str(alert.get("longWindow")))),
                "shortWindow": alert.get("shortWindow"),
                "shortBurnRate": as_number(rates.get(str(alert.get("shortWindow")))),
                "factor": as_number(alert.get("factor")),
                "firing": alert.get("firing") is True,
            }
            for alert in status.get("alerts") or []
        ],
        "conditions": [
            {key: condition.get(key) for key in ("type", "status", "reason", "message", "lastTransitionTime")}
            for condition in status.get("conditions") or []
        ],
        "targets": [
            {key: row.get(key) for key in ("kind", "name", "state", "since", "reason", "message")}
            for row in status.get("targets") or []
        ],
        "actions": timeline(status.get("actions") or []),
    }


def timeline(actions: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """`status.actions`, oldest first (the status appends, but a stable sort keeps equal times in that order)."""
    keys = ("time", "kind", "name", "action", "result", "reason", "message")
    rows = [{key: action.get(key) for key in keys} for action in actions]
    return sorted(rows, key=lambda row: str(row["time"] or ""))


def describe_text(document: Mapping[str, Any], style: Style) -> str:
    state = state_cell(document["state"], document["reason"])
    remaining = document["errorBudget"]["remaining"]
    fields = [
        ("Name", document["name"]),
        ("Namespace", document["namespace"]),
        ("Objective", f"{document['objective']}% over {document['window']}"),
        ("Indicator", _indicator(document["indicator"])),
        ("Policy", _policy_text(document["policy"])),
        ("State", style.paint(state.text, state.colour) if document["state"] else "not evaluated yet"),
        ("Message", document["message"] or ABSENT),
        ("SLI", NOT_AVAILABLE if document["sli"] is None else f"{document['sli'] * 100:.3f}%"),
        (
            "Budget",
            NOT_AVAILABLE if remaining is None else style.paint(f"{budget(remaining, style)} left", state.colour),
        ),
        ("Exhaustion", _exhaustion(document["timeToExhaustion"], remaining)),
        ("Evaluated", document["evaluatedAt"] or "never"),
    ]
    sections = [
        ("Tiers", TIER_HEADER, _tier_rows(document["tiers"])),
        ("Conditions", ("TYPE", "STATUS", "REASON", "SINCE", "MESSAGE"), _condition_rows(document["conditions"])),
        ("Targets", ("TARGET", "STATE", "SINCE", "REASON", "MESSAGE"), _target_rows(document["targets"])),
        ("Actions", ("TIME", "ACTION", "TARGET", "RESULT", "REASON", "MESSAGE"), _action_rows(document["actions"])),
    ]
    width = max(len(label) for label, *_ in fields + sections) + 2
    text = "".join(f"{label + ':':<{width}}{value}\n" for label, value in fields)
    for title, header, rows in sections:
        if rows:
            text += f"{title}:\n" + table(header, rows, style, indent="  ")
        else:
            text += f"{title + ':':<{width}}<none>\n"
    return text


def _tier_rows(tiers: Sequence[Mapping[str, Any]]) -> list[list[Cell]]:
    return [
        [
            Cell(str(tier["severity"])),
            Cell(str(tier["longWindow"])),
            Cell(_rate(tier["longBurnRate"])),
            Cell(str(tier["shortWindow"])),
            Cell(_rate(tier["shortBurnRate"])),
            Cell(_rate(tier["factor"])),
            Cell("yes", SEVERITY_COLOURS.get(tier["severity"])) if tier["firing"] else Cell("no"),
        ]
        for tier in tiers
    ]


def _condition_rows(conditions: Sequence[Mapping[str, Any]]) -> list[list[Cell]]:
    return [
        [
            Cell(str(item["type"])),
            Cell(str(item["status"])),
            Cell(str(item["reason"] or ABSENT)),
            Cell(str(item["lastTransitionTime"] or ABSENT)),
            Cell(str(item["message"] or "")),
        ]
        for item in conditions
    ]


def _target_rows(targets: Sequence[Mapping[str, Any]]) -> list[list[Cell]]:
    return [
        [
            Cell(f"{item['kind']}/{item['name']}"),
            Cell(str(item["state"]), YELLOW if item["state"] in HOLDING_STATES else None),
            Cell(str(item["since"] or ABSENT)),
            Cell(str(item["reason"] or ABSENT)),
            Cell(str(item["message"] or "")),
        ]
        for item in targets
    ]


def _action_rows(actions: Sequence[Mapping[str, Any]]) -> list[list[Cell]]:
    return [
        [
            Cell(str(item["time"])),
            Cell(str(item["action"])),
            Cell(f"{item['kind']}/{item['name']}"),
            Cell(str(item["result"]), RED if item["result"] in FAILED_RESULTS else None),
            Cell(str(item["reason"] or ABSENT)),
            Cell(str(item["message"] or "")),
        ]
        for item in actions
    ]


def _rate(value: float | None) -> str:
    return NOT_AVAILABLE if value is None else f"{value:g}x"


def _exhaustion(seconds: float | None, remaining: float | None) -> str:
    if remaining is None:
        return NOT_AVAILABLE
    if seconds is None:
        return "not burning"
    return "spent" if seconds == 0 else f"in {approximate_duration(seconds)} at the current burn rate"


def _indicator(indicator: Any) -> str:
    if not isinstance(indicator, Mapping):
        return ABSENT
    ratio, latency = indicator.get("ratio"), indicator.get("latency")
    if isinstance(ratio, Mapping):
        return f"errors {ratio.get('errors')} / total {ratio.get('total')}"
    if isinstance(latency, Mapping):
        return f"{latency.get('histogram')} at or under {latency.get('threshold')}s"
    return ABSENT


def _policy(resource: Mapping[str, Any]) -> dict[str, Any] | None:
    """The policy with its defaults filled in; None when the spec is invalid (the status message says why)."""
    try:
        policy = objective_from_resource(resource, min_step=_ANY_MIN_STEP).policy
    except SpecError:
        return None
    return {
        "mode": policy.mode.value,
        "action": policy.action.value,
        "trigger": policy.trigger.value,
        "scaleTo": policy.scale_to,
        "resumeAbove": policy.resume_above,
    }


def _policy_text(policy: Mapping[str, Any] | None) -> str:
    if policy is None:
        return "invalid spec"
    action = policy["action"] if policy["scaleTo"] is None else f"{policy['action']} to {policy['scaleTo']}"
    return (
        f"{action} ({policy['mode']}) when {policy['trigger']}; "
        f"undone with more than {policy['resumeAbove'] * 100:g}% of the budget left"
    )


def _seconds(window: object) -> int:
    """A tier's window in seconds; a garbled one sorts last rather than hiding the other tiers."""
    try:
        return parse_duration(str(window))
    except DurationError:
        return 2**63
