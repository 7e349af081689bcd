"""`kubectl slo override`: the kinds kubectl's spellings name, the ceiling, and the annotations it writes."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from slo_guard.domain.policy import OVERRIDE_REASON, OVERRIDE_UNTIL
from slo_guard.kubectl_slo.override import (
    OverrideRefused,
    check_ceiling,
    display_name,
    override_annotations,
    workload,
)


@pytest.mark.parametrize(
    ("text", "resource"),
    [
        ("deploy/checkout", "deployment.apps/checkout"),
        ("Deployment/checkout", "deployment.apps/checkout"),
        ("DEPLOYMENTS/checkout", "deployment.apps/checkout"),
        ("deployment.apps/checkout", "deployment.apps/checkout"),
        ("sts/db", "statefulset.apps/db"),
        ("StatefulSet/db", "statefulset.apps/db"),
        ("statefulsets.apps/db", "statefulset.apps/db"),
        ("ro/web", "rollout.argoproj.io/web"),
        ("Rollout/web", "rollout.argoproj.io/web"),
        ("rollouts.argoproj.io/web", "rollout.argoproj.io/web"),
    ],
)
def test_kinds_are_named_as_kubectl_names_them_in_any_case(text: str, resource: str) -> None:
    assert display_name(*workload(text)) == resource


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("cronjob/nightly", "cannot override 'cronjob': slo-guard targets Deployments, StatefulSets and Rollouts"),
        ("deployment.argoproj.io/web", "cannot override 'deployment.argoproj.io'"),
        ("checkout", "'checkout' is not KIND/NAME (e.g. deployment/checkout)"),
        ("deploy/", "'deploy/' is not KIND/NAME"),
        ("deploy/a/b", "'deploy/a/b' is not KIND/NAME"),
    ],
)
def test_anything_but_a_target_kind_and_a_name_is_refused_saying_why(text: str, why: str) -> None:
    with pytest.raises(OverrideRefused, match=f"^{why}".replace("(", r"\(").replace(")", r"\)")):
        workload(text)


def test_the_ceiling_lets_an_override_of_exactly_its_length_through() -> None:
    check_ceiling(24 * 3600, 24 * 3600)


def test_a_duration_above_the_ceiling_is_refused_in_one_line_naming_both() -> None:
    with pytest.raises(OverrideRefused) as refused:
        check_ceiling(24 * 3600 + 1, 24 * 3600)
    assert str(refused.value) == "--for 1d1s is longer than the ceiling of 1d (--max)"


def test_the_override_ends_duration_after_now_in_rfc3339_utc_with_a_z() -> None:
    now = datetime(2026, 11, 1, 23, 30, 15, 999_000, tzinfo=UTC)
    assert override_annotations(now=now, duration=2 * 3600, reason="hotfix INC-42") == {
        OVERRIDE_UNTIL: "2026-11-02T01:30:15Z",
        OVERRIDE_REASON: "hotfix INC-42",
    }
