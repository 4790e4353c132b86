"""Calendar SLO periods: boundaries in time zones across DST, and the budget over the
period to date against the naive reference (which never computes a boundary: it reads
each instant's local date)."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import msgspec
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.core.config import Config, parse_config
from engine.core.decode import Event
from engine.core.evaluator import Evaluator
from engine.core.periods import is_calendar_start, period_bounds, time_zone
from engine.core.snapshot import SnapshotError, dump, load
from engine.errors import ConfigError
from engine.runtime.replay import replay
from tests.unit.core.reference import NaiveEvaluator, calendar_key, calendar_sums, split, stamped

ZONES = ["UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata"]
UNITS = ["week", "month", "quarter"]


def utc(text: str) -> int:
    return int(datetime.fromisoformat(text).timestamp())


def calendar_config(
    unit_a: str, zone_a: str, unit_b: str, zone_b: str, lateness: str = "1h"
) -> Config:
    """Two calendar SLOs (so two groups of boundaries) and a rolling one."""
    return parse_config(f"""
slos:
  - name: cal-a
    service: api
    sli: availability
    objective: 95
    period: {{calendar: {unit_a}, time_zone: {zone_a}}}
  - name: cal-b
    service: api
    sli: latency
    threshold_ms: 100
    objective: 90
    period: {{calendar: {unit_b}, time_zone: {zone_b}}}
  - {{name: roll, service: api, sli: availability, objective: 99, period: 1h}}
policy:
  - {{severity: page, long: 1h, short: 5m, burn_rate: 4}}
  - {{severity: ticket, long: 6h, short: 30m, budget_consumed_ratio: 0.05}}
evaluation: {{tick: 5m, allowed_lateness: {lateness}}}
""")


def evaluation_time(ev: Evaluator) -> float:
    """The time the periods are those of: the last tick, or before any the windows' start."""
    if ev.evaluated_at_s is not None:
        return ev.evaluated_at_s
    assert ev.next_tick_s is not None
    return ev.next_tick_s - ev.tick_s


def assert_like_reference(ev: Evaluator, ref: NaiveEvaluator) -> None:
    cfg = ev.config
    t = evaluation_time(ev)
    sums = ev.period_sums()
    starts, ends = ev.period_bounds()
    remaining = ev.budget_remaining()
    for i, slo in enumerate(cfg.slos):
        cal = slo.calendar
        if cal is None:
            assert np.isnan(starts[i])
            assert np.isnan(ends[i])
            continue
        unit, zone = cal.calendar, cal.time_zone
        total, bad = calendar_sums(ref.events, i, unit, zone, t)
        assert tuple(sums[i]) == (total, bad), (slo.name, t)
        if total:
            assert remaining[i] == 1.0 - (bad / total) / slo.error_budget_ratio
        else:
            assert np.isnan(remaining[i])
        start, end = float(starts[i]), float(ends[i])
        key = calendar_key(unit, zone, t)
        assert start <= t < end
        assert calendar_key(unit, zone, start) == key == calendar_key(unit, zone, end - 1)
        assert calendar_key(unit, zone, start - 1) != key != calendar_key(unit, zone, end)


class AcceptingReference(NaiveEvaluator):
    """The reference's event acceptance (lateness, cap) without its alert evaluation,
    which re-sums every window at every tick: far too slow over days of ticks, and
    alerts are not what is checked here."""

    def evaluate(self, t: float) -> None:
        pass


def local_anchor(zone: str, year: int, month: int, day: int) -> int:
    return int(datetime(year, month, day, tzinfo=ZoneInfo(zone)).timestamp())


DST_INSTANTS = [
    utc("2026-03-29T01:00:00+00:00"),  # Berlin springs forward
    utc("2026-10-25T01:00:00+00:00"),  # Berlin falls back
    utc("2026-03-08T07:00:00+00:00"),  # New York springs forward
    utc("2026-11-01T06:00:00+00:00"),  # New York falls back
    utc("2026-04-04T15:00:00+00:00"),  # Lord Howe: 02:00 -> 01:30
    utc("2026-10-03T15:30:00+00:00"),  # Lord Howe: 02:00 -> 02:30
]

event = st.builds(
    lambda status, lat, count: Event(service="api", status=status, latency_ms=lat, count=count),
    st.sampled_from([200, 500, 503, 404]),
    st.one_of(st.none(), st.floats(0, 300)),
    st.integers(1, 3),
)
# Mostly forward in small steps, sometimes back (late: within the lateness or beyond),
# sometimes a jump of hours to days (across boundaries, or past a whole week).
step = st.one_of(
    st.floats(0, 120),
    st.floats(-4000, 0),
    st.floats(3000, 3 * 86400),
    st.floats(6 * 86400, 9 * 86400),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    units=st.tuples(st.sampled_from(UNITS), st.sampled_from(UNITS)),
    zones=st.tuples(st.sampled_from(ZONES), st.sampled_from(ZONES)),
    anchor=st.one_of(
        st.builds(
            local_anchor,
            st.sampled_from(ZONES),
            st.integers(2024, 2027),
            st.integers(1, 12),
            st.integers(1, 7),
        ),
        st.sampled_from(DST_INSTANTS),
    ),
    offset=st.integers(-7200, 7200),
    steps=st.lists(st.tuples(step, event), min_size=1, max_size=60),
    cuts=st.lists(st.integers(0, 60), max_size=6),
    caps=st.lists(st.one_of(st.none(), st.floats(-600, 0)), min_size=7, max_size=7),
)
def test_the_period_to_date_equals_the_reference_in_any_zone_across_dst_and_boundaries(
    units: tuple[str, str],
    zones: tuple[str, str],
    anchor: int,
    offset: int,
    steps: list[tuple[float, Event]],
    cuts: list[int],
    caps: list[float | None],
) -> None:
    cfg = calendar_config(units[0], zones[0], units[1], zones[1])
    ev = Evaluator(cfg)
    ref = AcceptingReference(cfg)
    events = stamped(anchor + offset, steps)
    for n, batch in enumerate(split(events, cuts)):
        # Live-like batches hold the watermark behind their newest event (early events
        # are counted ahead of the evaluation time, in the next period when they are).
        rel = caps[n % len(caps)]
        cap = None if rel is None else max(e.ts or 0.0 for e in batch) + rel
        ev.ingest(ev.classifier.columns(batch), watermark_cap_s=cap)
        for e in batch:
            ref.feed(e, cap)
        assert_like_reference(ev, ref)
    ev.flush()
    assert_like_reference(ev, ref)


@pytest.mark.parametrize(
    ("unit", "zone", "at", "start", "end"),
    [
        # March in Berlin: 31 days less the hour DST takes on the 29th
        (
            "month",
            "Europe/Berlin",
            "2026-03-15T12:00:00+00:00",
            "2026-02-28T23:00:00+00:00",
            "2026-03-31T22:00:00+00:00",
        ),
        # the first instant of a period is in it, the last one before it is not
        (
            "month",
            "Europe/Berlin",
            "2026-02-28T23:00:00+00:00",
            "2026-02-28T23:00:00+00:00",
            "2026-03-31T22:00:00+00:00",
        ),
        (
            "month",
            "Europe/Berlin",
            "2026-02-28T22:59:59+00:00",
            "2026-01-31T23:00:00+00:00",
            "2026-02-28T23:00:00+00:00",
        ),
        # the ISO week of New York's fall back: 7 days and an hour
        (
            "week",
            "America/New_York",
            "2026-11-01T12:00:00+00:00",
            "2026-10-26T04:00:00+00:00",
            "2026-11-02T05:00:00+00:00",
        ),
        # Lord Howe shifts by 30 minutes: the week of 5 April 2026 is 7 days and 30 min
        (
            "week",
            "Australia/Lord_Howe",
            "2026-04-02T00:00:00+00:00",
            "2026-03-29T13:00:00+00:00",
            "2026-04-05T13:30:00+00:00",
        ),
        # ISO weeks cross years: Monday 29 December 2025 starts week 1 of 2026
        (
            "week",
            "UTC",
            "2026-01-01T00:00:00+00:00",
            "2025-12-29T00:00:00+00:00",
            "2026-01-05T00:00:00+00:00",
        ),
        (
            "quarter",
            "Asia/Kolkata",
            "2026-12-31T18:29:59+00:00",
            "2026-09-30T18:30:00+00:00",
            "2026-12-31T18:30:00+00:00",
        ),
    ],
)
def test_period_bounds(unit: str, zone: str, at: str, start: str, end: str) -> None:
    got = period_bounds(unit, time_zone(zone), utc(at))
    assert got[:2] == (utc(start), utc(end))
    assert period_bounds(unit, time_zone(zone), got[1])[0] == got[1]  # next_end follows on
    assert period_bounds(unit, time_zone(zone), got[1])[1] == got[2]


# -- config ------------------------------------------------------------------------------

SLO = "slos:\n  - {{name: a, service: s, sli: availability, objective: 99, period: {}}}\n"


def config_error(period: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(SLO.format(period))
    return info.value.errors


@pytest.mark.parametrize(
    ("period", "error"),
    [
        (
            "{calendar: month, time_zone: Europe/Berln}",
            "$.slos[0].period.time_zone: unknown time zone 'Europe/Berln'",
        ),
        (
            "{calendar: week, time_zone: ../../etc/passwd}",
            "$.slos[0].period.time_zone: unknown time zone '../../etc/passwd'",
        ),
        ("{calendar: fortnight}", "$.slos[0].period.calendar: Invalid enum value 'fortnight'"),
        ("{calendar: month, zone: UTC}", "$.slos[0].period: Object contains unknown field `zone`"),
        ("{time_zone: UTC}", "$.slos[0].period: Object missing required field `calendar`"),
        ('{calendar: month, time_zone: ""}', "$.slos[0].period.time_zone: Expected `str`"),
    ],
)
def test_bad_calendar_periods_are_refused_with_their_path(period: str, error: str) -> None:
    errors = config_error(period)
    assert len(errors) == 1
    assert errors[0].startswith(error)


def test_a_calendar_period_defaults_to_utc_and_a_nominal_length() -> None:
    slo = parse_config(SLO.format("{calendar: quarter}")).slos[0]
    assert slo.calendar is not None
    assert slo.calendar.time_zone == "UTC"
    assert slo.period_s == 91 * 86400
    assert slo.period_text == "calendar quarter (UTC)"
    rolling = parse_config(SLO.format("30d"))
    assert rolling.slos[0].calendar is None
    assert rolling.slos[0].period_s == 30 * 86400
    month = parse_config(SLO.format("{calendar: month}"))
    # the factors of a month are those of 30d; the period is not a rolling window
    assert month.policy == rolling.policy
    assert 30 * 86400 in rolling.windows_s()
    assert 30 * 86400 not in month.windows_s()


# -- snapshots ---------------------------------------------------------------------------


def boundary_events(start: float, n: int = 200) -> list[Event]:
    """Events every 17 minutes from `start`, some late, some bad."""
    out = []
    for i in range(n):
        ts = start + i * 1020.0 - (1800.0 if i % 7 == 3 else 0.0)
        out.append(Event(service="api", ts=ts, status=500 if i % 5 == 0 else 200, latency_ms=150))
    return out


@pytest.mark.parametrize("at", [0, 1, 37, 90, 120, 199])
def test_a_snapshot_restores_the_calendar_counts_and_carries_on_like_no_restart(
    at: int,
) -> None:
    cfg = calendar_config("week", "Australia/Lord_Howe", "month", "Europe/Berlin")
    events = boundary_events(utc("2026-03-30T10:00:00+00:00"))  # a week and a month end
    whole = Evaluator(cfg)
    whole.ingest(whole.classifier.columns(events))
    whole.flush()
    first = Evaluator(cfg)
    first.ingest(first.classifier.columns(events[:at]))
    second = Evaluator(cfg)
    load(second, dump(first))
    np.testing.assert_array_equal(second.period_sums(), first.period_sums())
    np.testing.assert_array_equal(second.period_bounds()[0], first.period_bounds()[0])
    second.ingest(second.classifier.columns(events[at:]))
    second.flush()
    assert dump(second) == dump(whole)
    np.testing.assert_array_equal(second.period_sums(), whole.period_sums())


def test_a_snapshot_of_another_calendar_or_zone_is_refused() -> None:
    ev = Evaluator(calendar_config("week", "UTC", "month", "Europe/Berlin"))
    ev.ingest(ev.classifier.columns(boundary_events(utc("2026-03-30T10:00:00+00:00"), 20)))
    blob = dump(ev)
    for other in (
        calendar_config("week", "UTC", "month", "America/New_York"),
        calendar_config("month", "UTC", "month", "Europe/Berlin"),
    ):
        with pytest.raises(SnapshotError, match="calendar periods differ"):
            load(Evaluator(other), blob)


def test_a_version_1_snapshot_of_a_rolling_config_is_still_read() -> None:
    cfg = parse_config(SLO.format("1h"))
    ev = Evaluator(cfg)
    ev.ingest(
        ev.classifier.columns([Event(service="s", ts=1e9 + i, status=200) for i in range(50)])
    )
    data = msgspec.msgpack.decode(dump(ev))
    data["version"] = 1
    del data["periods"]
    assert "calendars" not in data["shape"]  # no calendar SLO: left out, as in version 1
    restored = Evaluator(cfg)
    load(restored, msgspec.msgpack.encode(data))
    assert dump(restored) == dump(ev)


# -- replay ------------------------------------------------------------------------------

REPLAY_CONFIG = """
slos:
  - name: month
    service: api
    sli: availability
    objective: 99
    period: {calendar: month, time_zone: Europe/Berlin}
  - {name: rolling, service: api, sli: availability, objective: 99, period: 30d}
evaluation: {future_limit: 2h, tick: 5m}
"""


def test_replay_of_a_month_gives_the_period_to_date_budget_of_the_reference(
    tmp_path: Path,
) -> None:
    """Five weeks of sparse traffic across Berlin's DST change (29 March) and the end of
    March (22:00 UTC on the 31st), with events on both sides of the boundary and late
    ones from March after it."""
    start = utc("2026-03-05T00:00:00+00:00")
    end = utc("2026-04-09T00:00:00+00:00")
    boundary = utc("2026-03-31T22:00:00+00:00")
    times = list(range(start, end, 3600 + 17))
    times += [boundary - 1, boundary, boundary + 1]
    times.sort()
    lines = []
    for n, ts in enumerate(times):
        events = [{"service": "api", "ts": ts, "status": 500 if n % 9 == 0 else 200}]
        if ts == boundary + 1:  # late, from March: not April's
            events.append({"service": "api", "ts": boundary - 30, "status": 500})
        lines.append(json.dumps(events))
    path = tmp_path / "month.jsonl"
    path.write_text("\n".join(lines) + "\n")
    cfg = parse_config(REPLAY_CONFIG)
    out = replay(cfg, path, on_transition=lambda tr: None)
    ev = out.evaluator
    t = ev.evaluated_at_s
    assert t is not None
    assert t >= times[-1]
    # the late March event was within the lateness: accepted, counted in the rolling
    # windows, but not in April
    assert ev.rejected_counts() == {}
    ref = [(0, float(e["ts"]), 1, int(e["status"] == 500)) for ln in lines for e in json.loads(ln)]
    total, bad = calendar_sums(ref, 0, "month", "Europe/Berlin", t)
    assert tuple(ev.period_sums()[0]) == (total, bad)
    assert total == sum(1 for ts in times if ts >= boundary)
    assert ev.budget_remaining()[0] == 1.0 - (bad / total) / cfg.slos[0].error_budget_ratio
    starts, ends = ev.period_bounds()
    assert (starts[0], ends[0]) == (boundary, utc("2026-04-30T22:00:00+00:00"))
    # the rolling SLO still counts its 30 days, March and April alike
    assert ev.period_sums()[1][0] > total


@pytest.mark.parametrize(
    ("value", "unit", "expected"),
    [
        ("2026-01-05 00:00:00", "week", True),  # a Monday
        ("2026-01-06T00:00:00+02:00", "week", False),
        ("2026-03-01T00:00:00Z", "month", True),
        ("2026-03-01T00:30:00Z", "month", False),
        ("2026-04-01", "quarter", True),
        ("2026-05-01", "quarter", False),
        (datetime(2026, 7, 1), "quarter", True),
        ("yesterday", "month", None),
        (None, "month", None),
    ],
)
def test_is_calendar_start(value: object, unit: str, expected: bool | None) -> None:
    assert is_calendar_start(value, unit) is expected
