"""Liveness: an idle loop stalls after 3 intervals; a pass in progress (e.g. throttled writes) gets longer."""

from slo_guard.service.health import IN_PASS_GRACE, EvaluationHeartbeats


def test_an_slo_without_a_pass_for_three_intervals_is_stalled() -> None:
    heartbeats = EvaluationHeartbeats()
    heartbeats.beat("shop/checkout", interval=30, now=0)
    assert heartbeats.stalled(now=90) == []
    assert heartbeats.stalled(now=91) == ["shop/checkout"]


def test_a_pass_waiting_for_write_tokens_is_alive_until_the_in_pass_grace() -> None:
    heartbeats = EvaluationHeartbeats()
    heartbeats.beat("shop/fleet", interval=1, now=0, in_pass=True)
    assert heartbeats.stalled(now=60) == []
    assert heartbeats.stalled(now=IN_PASS_GRACE + 1) == ["shop/fleet"]
