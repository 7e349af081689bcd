"""What an operator gets without configuring anything, and the settings the client refuses."""

from __future__ import annotations

from datetime import datetime

import pytest

from slo_guard.adapters.prometheus import PrometheusClient, PrometheusSettings


def test_defaults_are_the_documented_ones() -> None:
    settings = PrometheusSettings(url="http://prometheus:9090")
    assert (settings.timeout, settings.retries, settings.max_concurrency) == (10.0, 3, 8)
    assert (settings.breaker_failure_threshold, settings.breaker_reset_timeout) == (5, 30.0)
    assert settings.bearer_token_file is None
    assert settings.ca_file is None
    assert settings.insecure_skip_verify is False


@pytest.mark.parametrize(
    ("overrides", "complaint"),
    [
        ({"url": "prometheus:9090"}, "must start with http"),
        ({"timeout": 0}, "timeout"),
        ({"retries": -1}, "retries"),
    ],
)
def test_nonsense_settings_are_refused(overrides: dict[str, object], complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint):
        PrometheusSettings(**{"url": "http://prometheus:9090", **overrides})  # type: ignore[arg-type]


def test_base_url_drops_a_trailing_slash() -> None:
    assert PrometheusSettings(url="https://metrics.example/prometheus/").base_url == (
        "https://metrics.example/prometheus"
    )


async def test_a_time_without_zone_is_refused_before_anything_is_sent() -> None:
    async with PrometheusClient(PrometheusSettings(url="http://127.0.0.1:9")) as client:
        with pytest.raises(ValueError, match="timezone-aware"):
            await client.query("up", at=datetime(2026, 11, 1))
