"""The console sink: one readable line per transition, colored on a terminal only."""

from __future__ import annotations

import io
import re

import pytest

from engine.adapters.alerts.console import ConsoleSink, format_transition
from tests.unit.adapters.alerts.factories import T0, firing, resolved

ANSI = re.compile(r"\033\[[0-9;]*m")


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.asyncio
async def test_console_prints_one_readable_line_per_transition() -> None:
    out = io.StringIO()
    sink = ConsoleSink(out)
    await sink.start()
    await sink.deliver(firing())
    await sink.deliver(resolved(at=T0 + 60, burn_rate_short=None))
    await sink.close(timeout_s=0)
    assert out.getvalue().splitlines() == [
        "FIRING   page   checkout-availability  burn 1h=25.3x 5m=41.0x (>= 14.4x)  "
        "budget left 87.2%  at 2023-11-14T22:13:20Z",
        "RESOLVED page   checkout-availability  burn 6h=4.0x 30m=n/a (threshold 6x)  "
        "budget left 80.0%  at 2023-11-14T22:14:20Z",
    ]
    assert sink.stats() == {}


def test_console_colors_only_when_asked_or_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    colored = format_transition(firing(), color=True)
    assert colored.startswith("\033[1;31mFIRING")
    assert "\033[0m" in colored
    assert "\033" not in format_transition(firing())

    monkeypatch.delenv("NO_COLOR", raising=False)
    assert ConsoleSink(Tty())._color(Tty())
    assert not ConsoleSink()._color(io.StringIO())
    monkeypatch.setenv("NO_COLOR", "1")
    assert not ConsoleSink()._color(Tty())


# -- format_transition, field by field ------------------------------------------------


def test_a_ticket_line_names_its_severity_padded_like_a_page() -> None:
    line = format_transition(firing(severity="ticket", factor=1.0))
    assert line.startswith("FIRING   ticket checkout-availability  ")
    assert "(>= 1x)" in line


@pytest.mark.parametrize(
    ("long_s", "short_s", "shown"),
    [
        (3600, 300, "burn 1h=25.3x 5m=41.0x"),
        (21600, 1800, "burn 6h=25.3x 30m=41.0x"),
        (259200, 21600, "burn 3d=25.3x 6h=41.0x"),
        (5400, 90, "burn 1h30m=25.3x 1m30s=41.0x"),
    ],
)
def test_windows_are_written_as_prometheus_durations(long_s: int, short_s: int, shown: str) -> None:
    line = format_transition(firing(long_window_s=long_s, short_window_s=short_s))
    assert f"  {shown} (" in line


@pytest.mark.parametrize(
    ("rate", "shown"),
    [(None, "n/a"), (0.0, "0.0x"), (0.04, "0.0x"), (14.44, "14.4x"), (1234.56, "1234.6x")],
)
def test_burn_rates_have_one_decimal_or_read_n_a(rate: float | None, shown: str) -> None:
    line = format_transition(firing(burn_rate_long=rate, burn_rate_short=rate))
    assert f"burn 1h={shown} 5m={shown} " in line


@pytest.mark.parametrize(
    ("state", "factor", "shown"),
    [
        ("firing", 14.4, "(>= 14.4x)"),
        ("firing", 6.0, "(>= 6x)"),
        ("resolved", 14.4, "(threshold 14.4x)"),
        ("resolved", 1.0, "(threshold 1x)"),
    ],
)
def test_the_threshold_reads_as_a_bound_when_firing_and_a_reference_when_resolved(
    state: str, factor: float, shown: str
) -> None:
    assert f"x {shown}  budget" in format_transition(firing(state=state, factor=factor))


@pytest.mark.parametrize(
    ("left", "shown"),
    [(None, "n/a"), (1.0, "100.0%"), (0.0, "0.0%"), (0.12345, "12.3%"), (-0.5, "-50.0%")],
)
def test_the_budget_left_is_a_percentage_or_n_a(left: float | None, shown: str) -> None:
    line = format_transition(firing(error_budget_remaining_ratio=left))
    assert f"  budget left {shown}  at " in line


def test_the_time_is_utc_rfc3339_with_milliseconds_only_when_there_are_some() -> None:
    assert format_transition(firing(at=T0)).endswith("  at 2023-11-14T22:13:20Z")
    assert format_transition(firing(at=T0 + 0.25)).endswith("  at 2023-11-14T22:13:20.250Z")


@pytest.mark.parametrize(
    ("state", "severity", "code"),
    [
        ("firing", "page", "\033[1;31m"),
        ("firing", "ticket", "\033[1;33m"),
        ("resolved", "page", "\033[32m"),
        ("resolved", "ticket", "\033[32m"),
    ],
)
def test_color_marks_only_the_state_and_changes_nothing_else(
    state: str, severity: str, code: str
) -> None:
    tr = firing(state=state, severity=severity)
    colored = format_transition(tr, color=True)
    plain = format_transition(tr)
    assert colored.startswith(f"{code}{state.upper():<8}\033[0m ")
    assert len(ANSI.findall(colored)) == 2
    assert ANSI.sub("", colored) == plain


# -- where the console sink writes, and when it colors ------------------------------


@pytest.mark.asyncio
async def test_the_sink_writes_to_stdout_by_default(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    sink = ConsoleSink()
    await sink.deliver(firing())
    out = capsys.readouterr().out
    assert out == format_transition(firing()) + "\n"


@pytest.mark.asyncio
async def test_forced_color_wins_over_the_stream_and_no_color(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("NO_COLOR", "1")
    forced_on, forced_off = io.StringIO(), Tty()
    await ConsoleSink(forced_on, color=True).deliver(firing())
    monkeypatch.delenv("NO_COLOR")
    await ConsoleSink(forced_off, color=False).deliver(firing())
    assert forced_on.getvalue() == format_transition(firing(), color=True) + "\n"
    assert forced_off.getvalue() == format_transition(firing()) + "\n"


@pytest.mark.asyncio
async def test_a_terminal_stream_gets_color_unless_no_color_is_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    tty = Tty()
    await ConsoleSink(tty).deliver(firing())
    assert tty.getvalue().startswith("\033[1;31mFIRING")
    monkeypatch.setenv("NO_COLOR", "")  # empty: not set, per no-color.org
    tty = Tty()
    await ConsoleSink(tty).deliver(firing())
    assert tty.getvalue().startswith("\033[1;31mFIRING")
    monkeypatch.setenv("NO_COLOR", "1")
    tty = Tty()
    await ConsoleSink(tty).deliver(firing())
    assert tty.getvalue() == format_transition(firing()) + "\n"
