"""Calendar SLO periods: which month, ISO week or quarter an instant falls in, and the
exact per-SLO counts of the period to date.

Theory of operation
-------------------
A calendar SLO (`period: {calendar: month, time_zone: Europe/Berlin}`) budgets over the
calendar period that holds the evaluation time t, from its start up to now, and starts
afresh at the next one. Periods are half-open, [start, end): local midnight of the 1st
of the month (of the quarter; the Monday of an ISO week) in the SLO's zone, as an epoch
instant, to the next such midnight. The zone decides the instants, so a Berlin month
may be 31 days less an hour (March) and an ISO week 7 days and 30 minutes (Lord Howe);
a local midnight that does not exist (a DST gap at 00:00) starts the day at the
transition, and one that happens twice starts it at the first.

Event time decides everything: the period is the one holding the evaluation tick, never
the wall clock. Boundaries are computed with `zoneinfo` per distinct (calendar, zone)
only when the evaluation time crosses one (`PeriodCounts.roll`), never per event; the
counting is vectorised over SLOs with numpy.

Counts are exact int64 (total, bad) per SLO for the current period and for the next
one: events up to `future_limit + allowed_lateness` ahead of the evaluation time may
already belong to the next period, and they must be there when it starts. An event
before the current period's start (late, from the previous period) does not count for
the budget (it still counts in the rolling windows and the totals); one past the next
period's end cannot be accepted (the rings' headroom is at most a day and an hour plus
two ticks, a period at least a week less an hour).

This module is the one in the core that imports `datetime`: zoneinfo's offsets are only
reachable through it. It converts given instants and never reads the clock (the
purity test checks that no `now`/`today`/`utcnow` is called).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Literal, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import numpy.typing as npt

from engine.core.arrays import F64, I64, read_only_copy
from engine.core.windows import check_like, sum_by

__all__ = [
    "CALENDAR_UNITS",
    "NOMINAL_PERIOD_S",
    "CalendarUnit",
    "PeriodCounts",
    "PeriodState",
    "format_utc",
    "period_bounds",
    "time_zone",
]

CalendarUnit = Literal["week", "month", "quarter"]
CALENDAR_UNITS: tuple[str, ...] = get_args(CalendarUnit)

NOMINAL_PERIOD_S: dict[str, int] = {"week": 7 * 86400, "month": 30 * 86400, "quarter": 91 * 86400}
"""The length a calendar period stands for wherever a constant length is needed: policy
factors from `budget_consumed_ratio` and time to exhaustion (docs/design.md says why
nominal rather than the actual length of the current period)."""


def is_calendar_start(value: object, unit: str) -> bool | None:
    """Whether `value` (an RFC 3339 / ISO 8601 text or a datetime, as a YAML reader
    gives it) is local midnight on the first day of a calendar `unit` (the Monday of a
    week, the 1st of a month, the 1st of January, April, July or October for a
    quarter), read in its own offset or without one; None when it is not a time.
    Importers use it to say when a source's period start is not where burnrate's
    periods start."""
    if isinstance(value, datetime):
        when = value
    else:
        try:
            when = datetime.fromisoformat(str(value) if value is not None else "")
        except ValueError:
            return None
    if (when.hour, when.minute, when.second, when.microsecond) != (0, 0, 0, 0):
        return False
    if unit == "week":
        return when.weekday() == 0
    return when.day == 1 and (unit == "month" or when.month in (1, 4, 7, 10))


def format_utc(t_s: float) -> str:
    """An instant as `YYYY-MM-DD HH:MM:SSZ` in UTC (to the second, rounded down)."""
    return datetime.fromtimestamp(math.floor(t_s), UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def time_zone(key: str) -> ZoneInfo:
    """The zone named `key` (IANA, e.g. `Europe/Berlin`); ValueError naming it if unknown.
    zoneinfo raises a KeyError subclass for a missing zone and ValueError for a key that
    is not a zone name at all (an absolute path, `..`): both are an unknown zone here."""
    try:
        return ZoneInfo(key)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ValueError(f"unknown time zone {key!r} (an IANA name, e.g. Europe/Berlin)") from None


def _first_day(unit: str, day: date) -> date:
    if unit == "week":
        return day - timedelta(days=day.weekday())  # ISO: weeks start on Monday
    if unit == "month":
        return day.replace(day=1)
    return date(day.year, 3 * ((day.month - 1) // 3) + 1, 1)


def _following(unit: str, first: date) -> date:
    """The first day of the period after the one starting on `first`."""
    if unit == "week":
        return first + timedelta(days=7)
    months = first.year * 12 + first.month - 1 + (1 if unit == "month" else 3)
    return date(months // 12, months % 12 + 1, 1)


def _midnight_s(day: date, tz: ZoneInfo) -> int:
    """Epoch seconds of the first instant of `day` in `tz`. fold=0 gives the earlier of
    two 00:00s, and for a 00:00 inside a DST gap the instant of the transition itself
    (the offset before it applies), which is when the day begins."""
    return int(datetime(day.year, day.month, day.day, tzinfo=tz).timestamp())


def period_bounds(unit: str, tz: ZoneInfo, t_s: float) -> tuple[int, int, int]:
    """(start, end, next_end) in epoch seconds: the period of `unit` in `tz` holding the
    instant `t_s` is [start, end), the one after it [end, next_end)."""
    local = datetime.fromtimestamp(math.floor(t_s), tz).date()
    first = _first_day(unit, local)
    second = _following(unit, first)
    return (
        _midnight_s(first, tz),
        _midnight_s(second, tz),
        _midnight_s(_following(unit, second), tz),
    )


@dataclass(frozen=True, slots=True)
class PeriodState:
    """`PeriodCounts` as values, for snapshots. Arrays per SLO in config order; rolling
    SLOs and periods not known yet (before the first event) have NaN bounds and zero
    counts."""

    start_s: F64
    end_s: F64
    next_end_s: F64
    current: I64
    """(n_slo, 2) (total, bad) over [start, end)."""
    next: I64
    """(n_slo, 2) (total, bad) over [end, next_end)."""

    def check_like(self, like: PeriodState) -> None:
        """Raise ValueError unless every array fits `like`'s and the counts are sane."""
        for name in ("start_s", "end_s", "next_end_s", "current", "next"):
            check_like(name, getattr(self, name), getattr(like, name))
        for counts in (self.current, self.next):
            if (counts < 0).any() or (counts[:, 1] > counts[:, 0]).any():
                raise ValueError("calendar period counts out of range")


def _saturating_add(acc: I64, slo: npt.NDArray[np.int32], total: I64, bad: I64) -> None:
    """Add (total, bad) per SLO into `acc`, saturating at 2^63 - 1 with bad <= total kept,
    like the evaluator's totals (docs/design.md, "Bounds")."""
    if len(slo) == 0:
        return
    n = acc.shape[0]
    add_total, add_bad = sum_by(slo, total, n), sum_by(slo, bad, n)
    acc[:, 0] += np.minimum(add_total, np.iinfo(np.int64).max - acc[:, 0])
    acc[:, 1] += np.minimum(add_bad, acc[:, 0] - acc[:, 1])


class PeriodCounts:
    """The period-to-date counts of every calendar SLO, vectorised over SLOs.

    `calendars[i]` is (unit, zone name) for a calendar SLO, None for a rolling one (which
    keeps NaN bounds and zero counts, so callers can mask with `is_calendar`)."""

    def __init__(self, calendars: Sequence[tuple[str, str] | None]) -> None:
        n = len(calendars)
        self.is_calendar = np.array([c is not None for c in calendars], dtype=bool)
        self.is_calendar.flags.writeable = False
        self.any = bool(self.is_calendar.any())
        groups: dict[tuple[str, str], list[int]] = {}
        for i, cal in enumerate(calendars):
            if cal is not None:
                groups.setdefault(cal, []).append(i)
        self._groups = [
            (unit, time_zone(zone), np.array(idx, dtype=np.intp))
            for (unit, zone), idx in groups.items()
        ]
        self.start_s = np.full(n, np.nan)
        self.end_s = np.full(n, np.nan)
        self.next_end_s = np.full(n, np.nan)
        self.current = np.zeros((n, 2), dtype=np.int64)
        self.next = np.zeros((n, 2), dtype=np.int64)
        self._roll_at = -math.inf if self._groups else math.inf
        """The earliest period end: below it `roll` has nothing to do (one compare a tick)."""

    def roll(self, t_s: float) -> None:
        """Make the periods those holding the evaluation time `t_s` (which only moves
        forward): where it has reached a period's end, the next period's counts become
        the current ones (or both start empty after a gap longer than a period)."""
        if t_s < self._roll_at:
            return
        for unit, tz, idx in self._groups:
            first = idx[0]  # a group shares its bounds
            if t_s < self.end_s[first]:  # False while NaN: not started yet
                continue
            if t_s < self.next_end_s[first]:
                self.current[idx] = self.next[idx]
            else:
                self.current[idx] = 0
            self.next[idx] = 0
            start, end, next_end = period_bounds(unit, tz, t_s)
            self.start_s[idx], self.end_s[idx], self.next_end_s[idx] = start, end, next_end
        self._roll_at = float(self.end_s[self.is_calendar].min())

    def add(self, slo: npt.NDArray[np.int32], ts: F64, total: I64, bad: I64) -> None:
        """Count (event, SLO) pairs of calendar SLOs into the period they fall in."""
        if not self.any or len(slo) == 0:
            return
        sel = self.is_calendar[slo]
        if not sel.any():
            return
        slo, ts, total, bad = slo[sel], ts[sel], total[sel], bad[sel]
        end = self.end_s[slo]
        cur = (ts >= self.start_s[slo]) & (ts < end)
        nxt = (ts >= end) & (ts < self.next_end_s[slo])
        _saturating_add(self.current, slo[cur], total[cur], bad[cur])
        _saturating_add(self.next, slo[nxt], total[nxt], bad[nxt])

    def state(self) -> PeriodState:
        """Read-only copies of everything."""
        return PeriodState(
            start_s=read_only_copy(self.start_s),
            end_s=read_only_copy(self.end_s),
            next_end_s=read_only_copy(self.next_end_s),
            current=read_only_copy(self.current),
            next=read_only_copy(self.next),
        )

    def load_state(self, state: PeriodState | None, t_s: float | None) -> None:
        """Continue from `state()`; None (a snapshot from before calendar periods) starts
        every period empty at the evaluation time `t_s` (None: no evaluation yet).
        Call `check` first: this cannot fail."""
        if state is None:
            self.start_s[...] = self.end_s[...] = self.next_end_s[...] = np.nan
            self.current[...] = 0
            self.next[...] = 0
        else:
            self.start_s[...] = state.start_s
            self.end_s[...] = state.end_s
            self.next_end_s[...] = state.next_end_s
            self.current[...] = state.current
            self.next[...] = state.next
        self._roll_at = -math.inf if self._groups else math.inf
        if t_s is not None:
            self.roll(t_s)

    def check(self, state: PeriodState | None) -> None:
        """Raise ValueError unless `state` fits these SLOs."""
        if state is not None:
            state.check_like(self.state())
