"""Durations as written in configs (`5m`, `1h30m`, `30d`) and the Prometheus-style form back."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.core.durations import format_duration, parse_duration_s

UNITS = ("ms", "s", "m", "h", "d", "w")


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        pytest.param("5m", 300.0, id="five minutes is 300 seconds"),
        pytest.param("1h30m", 5400.0, id="an hour and a half sums its parts"),
        pytest.param("30d", 2_592_000.0, id="thirty days is the default SLO period"),
        pytest.param("28d", 2_419_200.0, id="twenty-eight days"),
        pytest.param("250ms", 0.25, id="milliseconds are fractions of a second"),
        pytest.param("90s", 90.0, id="seconds above a minute stay as given"),
        pytest.param("1w", 604_800.0, id="a week is seven days"),
        pytest.param("0s", 0.0, id="zero is a duration"),
        pytest.param("1.5h", 5400.0, id="a decimal number of hours"),
        pytest.param("1d2h3m4s5ms", 93_784.005, id="every unit in one string"),
        pytest.param("007m", 420.0, id="leading zeros are digits like any other"),
    ],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration_s(text) == pytest.approx(seconds, rel=1e-12)


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("", id="the empty string"),
        pytest.param("5", id="a number without a unit"),
        pytest.param("m", id="a unit without a number"),
        pytest.param("5x", id="an unknown unit"),
        pytest.param("5M", id="units are lower case"),
        pytest.param("-5m", id="a negative duration"),
        pytest.param("+5m", id="a sign"),
        pytest.param("5 m", id="a space between number and unit"),
        pytest.param(" 5m", id="leading whitespace"),
        pytest.param("5m ", id="trailing whitespace"),
        pytest.param("5m\n", id="a trailing newline"),
        pytest.param("1.h", id="a decimal point without decimals"),
        pytest.param(".5h", id="decimals without an integer part"),
        pytest.param("1e3s", id="scientific notation"),
        pytest.param("1h-30m", id="a subtraction"),
        pytest.param("1_000s", id="digit separators"),
        pytest.param("five minutes", id="words"),
        pytest.param("5mm", id="a doubled unit letter"),
    ],
)
def test_parse_duration_rejects_bad_input(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration_s(text)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        pytest.param(300, "5m", id="five minutes in the largest unit"),
        pytest.param(3600, "1h", id="an hour"),
        pytest.param(5400, "1h30m", id="an hour and a half in two units"),
        pytest.param(90, "1m30s", id="ninety seconds as minutes and seconds"),
        pytest.param(2_592_000, "30d", id="thirty days stays in days"),
        pytest.param(604_800, "7d", id="a week is written in days like Prometheus"),
        pytest.param(86_401, "1d1s", id="units that are zero are left out"),
        pytest.param(0.25, "250ms", id="a fraction of a second in milliseconds"),
        pytest.param(1.5, "1s500ms", id="a fractional second count keeps whole seconds"),
        pytest.param(0, "0s", id="zero"),
        pytest.param(-5, "0s", id="a negative number clamps to zero"),
        pytest.param(300.0, "5m", id="a whole float is formatted like the int"),
    ],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


def _part(number: str, unit: str) -> str:
    return f"{number}{unit}"


_whole_second_parts = st.builds(_part, st.integers(0, 100_000).map(str), st.sampled_from(UNITS[1:]))
_int_parts = st.builds(_part, st.integers(0, 100_000).map(str), st.sampled_from(UNITS))
# Up to three decimals of a second or a larger unit is still a whole number of milliseconds,
# the finest unit the formatter writes.
_decimal_parts = st.builds(
    _part,
    st.builds(
        lambda i, f: f"{i}.{f}",
        st.integers(0, 10_000),
        st.integers(0, 999).map(lambda n: f"{n:03d}".rstrip("0") or "0"),
    ),
    st.sampled_from(UNITS[1:]),
)


@given(st.lists(_whole_second_parts, min_size=1, max_size=5).map("".join))
def test_whole_second_durations_round_trip_exactly(text: str) -> None:
    seconds = parse_duration_s(text)
    formatted = format_duration(seconds)
    assert parse_duration_s(formatted) == seconds
    assert format_duration(parse_duration_s(formatted)) == formatted


@given(st.lists(st.one_of(_int_parts, _decimal_parts), min_size=1, max_size=5).map("".join))
def test_millisecond_durations_round_trip(text: str) -> None:
    seconds = parse_duration_s(text)
    again = parse_duration_s(format_duration(seconds))
    assert math.isclose(again, seconds, rel_tol=1e-12, abs_tol=1e-9)
