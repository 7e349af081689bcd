"""The rule by which kopf pauses a replica for its peers, restated so the scheduler pauses with kopf."""

from datetime import UTC, datetime, timedelta

from slo_guard.handlers.peering import paused_by_peers

NOW = datetime(2026, 12, 5, 3, 0, tzinfo=UTC)


def keepalive(*, priority: int, seen_ago: float, lifetime: int = 60) -> dict[str, object]:
    return {"priority": priority, "lifetime": lifetime, "lastseen": (NOW - timedelta(seconds=seen_ago)).isoformat()}


def test_a_live_peer_of_higher_priority_pauses_this_replica() -> None:
    status = {"me": keepalive(priority=0, seen_ago=1), "dev-laptop": keepalive(priority=100, seen_ago=5)}
    assert paused_by_peers([status], identity="me", priority=0, now=NOW)


def test_a_live_peer_of_equal_priority_pauses_both_as_kopf_does() -> None:
    status = {"me": keepalive(priority=0, seen_ago=1), "other": keepalive(priority=0, seen_ago=5)}
    assert paused_by_peers([status], identity="me", priority=0, now=NOW)


def test_lower_priority_and_expired_peers_do_not_pause() -> None:
    status = {
        "me": keepalive(priority=10, seen_ago=1),
        "standby": keepalive(priority=0, seen_ago=1),
        "crashed": keepalive(priority=100, seen_ago=61),
    }
    assert not paused_by_peers([status], identity="me", priority=10, now=NOW)


def test_any_watched_namespace_peering_pauses_the_whole_replica() -> None:
    calm = {"me": keepalive(priority=5, seen_ago=1)}
    contested = {"me": keepalive(priority=5, seen_ago=1), "dev": keepalive(priority=9, seen_ago=1, lifetime=30)}
    assert paused_by_peers([calm, contested], identity="me", priority=5, now=NOW)
    assert not paused_by_peers([calm], identity="me", priority=5, now=NOW)


def test_junk_in_the_peering_status_does_not_crash_the_rule() -> None:
    status = {"me": keepalive(priority=0, seen_ago=1), "weird": "not a mapping", "odd": {"priority": "high"}}
    assert paused_by_peers([status], identity="me", priority=0, now=NOW), "a peer without a time counts as alive"
    assert not paused_by_peers([{"weird": "x"}], identity="me", priority=0, now=NOW)
