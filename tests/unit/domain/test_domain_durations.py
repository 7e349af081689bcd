import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from slo_guard.domain.durations import DurationError, format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("1s", 1),
        ("90s", 90),
        ("5m", 300),
        ("1h30m", 5_400),
        ("30d", 2_592_000),
        ("2w", 1_209_600),
        ("1y", 31_536_000),
        ("1y2w3d4h5m6s", 31_536_000 + 1_209_600 + 259_200 + 14_400 + 300 + 6),
        ("2000ms", 2),
        ("1s1000ms", 2),
        ("1d0h", 86_400),
        ("007m", 420),
    ],
)
def test_parses_prometheus_durations_to_whole_seconds(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "it is empty"),
        ("0s", "longer than zero"),
        ("0h0m", "longer than zero"),
        ("-1h", "signs are not allowed"),
        ("+1h", "signs are not allowed"),
        ("1.5h", "fractions are not allowed"),
        ("1,5h", "fractions are not allowed"),
        (" 1h", "whitespace is not allowed"),
        ("1h ", "whitespace is not allowed"),
        ("1h 30m", "whitespace is not allowed"),
        ("30", "the number has no unit"),
        ("h", "expected a whole number followed by a unit"),
        ("1x", "unknown unit 'x'"),
        ("5M", "unknown unit 'M'"),
        ("1hm", "unknown unit 'hm'"),
        ("1m1h", "unit 'h' must come before 'm'"),
        ("1s1d", "unit 'd' must come before 's'"),
        ("1h1h", "unit 'h' appears more than once"),
        ("1h30m1h", "unit 'h' appears more than once"),
        ("1500ms", "not a whole number of seconds"),
        ("1s1ms", "not a whole number of seconds"),
        ("300000000y", "longer than Prometheus can represent"),
    ],
)
def test_rejects_what_prometheus_or_slo_guard_cannot_use(text: str, problem: str) -> None:
    with pytest.raises(DurationError) as caught:
        parse_duration(text)
    message = str(caught.value)
    assert problem in message
    assert repr(text) in message


def test_error_points_at_the_offending_offset() -> None:
    with pytest.raises(DurationError, match=r"found ' 30m' at offset 2"):
        parse_duration("1h 30m")


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (1, "1s"),
        (90, "1m30s"),
        (300, "5m"),
        (3_600, "1h"),
        (5_400, "1h30m"),
        (86_399, "23h59m59s"),
        (259_200, "3d"),
        (1_209_600, "14d"),
        (2_592_000, "30d"),
        (31_536_000, "365d"),
        (90_061, "1d1h1m1s"),
    ],
)
def test_formats_with_days_hours_minutes_seconds_only(seconds: int, text: str) -> None:
    assert format_duration(seconds) == text


@pytest.mark.parametrize("seconds", [0, -1])
def test_format_refuses_non_positive_durations(seconds: int) -> None:
    with pytest.raises(DurationError, match="positive"):
        format_duration(seconds)


@settings(deadline=None)
@given(st.integers(min_value=1, max_value=10**12))
def test_format_round_trips_through_parse(seconds: int) -> None:
    assert parse_duration(format_duration(seconds)) == seconds


@pytest.mark.parametrize(
    ("text", "canonical"),
    [("90m", "1h30m"), ("3600s", "1h"), ("2w", "14d"), ("1y", "365d"), ("120000ms", "2m"), ("0d1h", "1h")],
)
def test_equivalent_spellings_share_one_canonical_key(text: str, canonical: str) -> None:
    assert format_duration(parse_duration(text)) == canonical
