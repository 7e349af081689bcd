"""The gates in memory: what the gate API and the Flagger webhook answer after each pass, without any query."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from slo_guard.domain.evaluation_types import Evaluation, State, UnknownReason
from slo_guard.domain.model import Target
from slo_guard.resources import objective_from_resource
from slo_guard.service.gate_board import GateBoard, GateEntry, entry_after_pass, entry_from_resource, flagger_gate
from slo_guard.service.ports import ObjectRef
from slo_guard.service.reconcile import Outcome
from slo_guard.service.status import TargetReport

NOW = datetime(2026, 11, 1, 12, tzinfo=UTC)
NAMESPACE = "shop"


def resource(
    name: str, *targets: str, status: dict[str, Any] | None = None, policy: dict[str, Any] | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": "sloguard.io/v1alpha1",
        "kind": "ServiceLevelObjective",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "objective": 99,
            "window": "30d",
            "indicator": {"ratio": {"errors": 'http_requests_total{code="500"}', "total": "http_requests_total"}},
            "targets": [
                {"kind": kind, "name": target} for kind, _, target in (item.partition("/") for item in targets)
            ],
        },
    }
    if status is not None:
        body["status"] = status
    if policy is not None:
        body["spec"]["policy"] = policy
    return body


def ref(name: str) -> ObjectRef:
    return ObjectRef("sloguard.io/v1alpha1", "ServiceLevelObjective", NAMESPACE, name)


def after_pass(
    name: str, *targets: str, remaining: float, held: bool = False, policy: dict[str, Any] | None = None
) -> GateEntry:
    objective = objective_from_resource(resource(name, *targets, policy=policy), min_step=30)
    state = State.EXHAUSTED if remaining <= 0 else State.HEALTHY
    evaluation = Evaluation(state, None, "test", NOW, budget_remaining=remaining)
    reports = [
        TargetReport(target.kind, target.name, "Paused" if held else "Untouched", "r", "m")
        for target in objective.targets
    ]
    entry = entry_after_pass(ref(name), Outcome(evaluation, (), objective, reports))
    assert entry is not None
    return entry


def board(*entries: GateEntry) -> GateBoard:
    found = GateBoard()
    for entry in entries:
        found.put(entry)
    return found


def test_the_get_answer_is_the_pass_s_verdict_as_json() -> None:
    entry = after_pass("checkout", "Deployment/checkout", remaining=-0.25)
    assert json.loads(entry.document) == {
        "open": False,
        "slo": "shop/checkout",
        "state": "Exhausted",
        "reason": "BudgetExhausted",
        "message": entry.verdict.message,
        "errorBudget": {"remaining": -0.25, "display": "-25.0%"},
        "evaluatedAt": "2026-11-01T12:00:00Z",
    }


def test_hysteresis_keeps_the_gate_closed_while_the_pass_held_a_target() -> None:
    assert not after_pass("checkout", "Deployment/checkout", remaining=0.03, held=True).verdict.open
    assert after_pass("checkout", "Deployment/checkout", remaining=0.03, held=False).verdict.open


def test_an_invalid_spec_is_open_and_unknown_and_a_deleting_pass_changes_nothing() -> None:
    entry = entry_after_pass(ref("broken"), Outcome(None, (), invalid="spec.window: too short"))
    assert entry is not None
    assert (entry.verdict.open, entry.state, entry.targets) == (True, "Unknown", ())
    assert "InvalidSpec: spec.window: too short" in entry.verdict.message
    assert entry_after_pass(ref("gone"), Outcome(None, ())) is None


def test_before_its_first_pass_an_slo_s_gate_is_read_from_its_stored_status() -> None:
    status = {
        "state": "Exhausted",
        "evaluatedAt": "2026-11-01T11:59:30Z",
        "errorBudget": {"remaining": -0.5},
        "targets": [{"kind": "Deployment", "name": "checkout", "state": "Paused"}],
    }
    entry = entry_from_resource(ref("checkout"), resource("checkout", "Deployment/checkout", status=status))
    assert (entry.verdict.open, entry.state, entry.budget_remaining) == (False, "Exhausted", -0.5)
    assert entry.targets == (Target("Deployment", "checkout"),)
    never = entry_from_resource(ref("new"), resource("new", "Deployment/checkout"))
    assert (never.verdict.open, never.state, never.evaluated_at) == (True, "Unknown", None)


def test_the_board_finds_slos_by_target_and_forgets_old_targets() -> None:
    gates = board(after_pass("a", "Deployment/web", remaining=0.5), after_pass("b", "StatefulSet/web", remaining=0.5))
    assert [entry.key for entry in gates.targeting(NAMESPACE, "web")] == ["shop/a", "shop/b"]
    assert [entry.key for entry in gates.targeting(NAMESPACE, "web", kind="StatefulSet")] == ["shop/b"]
    gates.put(after_pass("a", "Deployment/api", remaining=0.5))
    assert [entry.key for entry in gates.targeting(NAMESPACE, "web")] == ["shop/b"]
    gates.forget("shop/b")
    assert (gates.targeting(NAMESPACE, "web"), len(gates)) == ([], 1)


def flagger(name: str = "web", **metadata: str) -> dict[str, Any]:
    return {"name": name, "namespace": NAMESPACE, "phase": "Progressing", "checksum": "abc", "metadata": metadata}


GATES = board(
    after_pass("web-availability", "Deployment/web", remaining=0.5),
    after_pass("web-latency", "Deployment/web", remaining=-0.1),
    after_pass("api-availability", "Deployment/api", remaining=0.7),
)


def test_flagger_is_halted_by_a_closed_slo_targeting_the_canary_and_told_which() -> None:
    answer = flagger_gate(GATES, flagger("web"))
    assert answer.status == 403
    assert answer.message.startswith("closed: canary shop/web is held by shop/web-latency: error budget exhausted")
    assert "web-availability" not in answer.message
    assert "\n" not in answer.message


def test_flagger_goes_on_when_every_slo_named_in_metadata_is_open() -> None:
    answer = flagger_gate(GATES, flagger("web", slos="web-availability, api-availability"))
    assert answer.status == 200
    assert answer.message.startswith("open: shop/web-availability: healthy, +50.0% left; shop/api-availability")


def test_flagger_target_metadata_picks_the_workload_and_a_typo_in_it_is_404() -> None:
    assert flagger_gate(GATES, flagger("web-canary", target="Deployment/api")).status == 200
    assert flagger_gate(GATES, flagger("web-canary", target="web")).status == 403
    answer = flagger_gate(GATES, flagger("web-canary", target="Deployment/wbe"))
    assert (answer.status, answer.message) == (
        404,
        "no ServiceLevelObjective in shop targets Deployment wbe (metadata.target)",
    )


def test_a_payload_from_an_older_flagger_without_phase_checksum_or_metadata_is_answered() -> None:
    assert flagger_gate(GATES, {"name": "web", "namespace": NAMESPACE}).status == 403


def test_flagger_with_no_slo_gating_the_canary_goes_on_and_says_so() -> None:
    answer = flagger_gate(GATES, flagger("search"))
    assert (answer.status, answer.message) == (
        200,
        "open: no ServiceLevelObjective in shop targets search, so none gates canary search",
    )


def test_flagger_naming_a_missing_slo_gets_404_naming_it() -> None:
    answer = flagger_gate(GATES, flagger("web", slos="web-availability,nope"))
    assert (answer.status, answer.message) == (404, "no ServiceLevelObjective shop/nope (named in metadata.slos)")


@pytest.mark.parametrize(
    ("payload", "problem"),
    [
        (None, "expected a JSON object"),
        ([], "expected a JSON object"),
        ({"namespace": "shop", "phase": "Progressing"}, "'name' must be a non-empty string"),
        ({"name": "web", "namespace": 7}, "'namespace' must be a non-empty string"),
        ({**flagger(), "metadata": {"slos": ["a"]}}, "'metadata' must map names to strings"),
    ],
)
def test_a_payload_that_is_not_flagger_s_gets_400_saying_why(payload: object, problem: str) -> None:
    answer = flagger_gate(GATES, payload)
    assert (answer.status, answer.message) == (400, f"not a Flagger webhook payload: {problem}")


def test_an_unknown_slo_never_halts_flagger() -> None:
    objective = objective_from_resource(resource("nodata", "Deployment/db"), min_step=30)
    evaluation = Evaluation(State.UNKNOWN, UnknownReason.NO_DATA, "no series", NOW)
    entry = entry_after_pass(ref("nodata"), Outcome(evaluation, (), objective, ()))
    assert entry is not None
    answer = flagger_gate(board(entry), flagger("db"))
    assert answer.status == 200
    assert "missing data never blocks" in answer.message
