"""Corrections: config checks, the vectorised index against a naive reference, and the
evaluator leaving corrected events out of windows, budget and alerts (counted apart)."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta, timezone

import msgspec
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.core import snapshot
from engine.core.config import Config, Correction, parse_config, time_s
from engine.core.corrections import CorrectionIndex, parse_correction
from engine.core.decode import Event
from engine.core.evaluator import Evaluator
from engine.errors import ConfigError
from tests.unit.core.reference import WEEK_S, against_reference, corrected, run_engine
from tests.unit.core.test_evaluator import BASE, event, key

NAMES = ["api-avail", "api-lat", "db-avail"]
SERVICES = ["api", "api", "db"]


def config(corrections: str = "", tick: str = "10s") -> Config:
    text = BASE + f"evaluation: {{tick: {tick}, allowed_lateness: 30s}}\n"
    if corrections:
        text += "corrections:\n" + corrections
    return parse_config(text)


def errors_of(text: str) -> list[str]:
    with pytest.raises(ConfigError) as exc:
        config(text)
    return exc.value.errors


# -- config -----------------------------------------------------------------------


def test_times_are_rfc3339_with_an_offset_or_epoch_seconds_in_yaml_either_way() -> None:
    cfg = config(
        "  - {name: a, start: 2024-05-01T02:00:00Z, duration: 1h, slos: [api-avail], reason: x}\n"
        '  - {name: b, start: "2024-05-01T04:00:00.25+02:00", end: 1714532400,'
        " services: [db], reason: y}\n"
    )
    t0 = datetime(2024, 5, 1, 2, tzinfo=UTC).timestamp()
    assert (cfg.corrections[0].start_s, cfg.corrections[0].end_s) == (t0, t0 + 3600)
    assert (cfg.corrections[1].start_s, cfg.corrections[1].end_s) == (t0 + 0.25, 1714532400.0)


@pytest.mark.parametrize(
    "dt",
    [
        datetime(1970, 1, 1, tzinfo=UTC),
        datetime(2000, 2, 29, 23, 59, 59, 999999, tzinfo=UTC),
        datetime(2024, 12, 31, 12, tzinfo=timezone(timedelta(hours=-7, minutes=-30))),
        datetime(2100, 3, 1, tzinfo=timezone(timedelta(hours=14))),
    ],
)
def test_rfc3339_strings_read_as_datetime_reads_them(dt: datetime) -> None:
    assert time_s(dt.isoformat()) == pytest.approx(dt.timestamp(), abs=1e-6)
    assert time_s(dt.isoformat().replace("+00:00", "Z")) == pytest.approx(dt.timestamp(), abs=1e-6)
    assert time_s(dt) == dt.timestamp()


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("start: yesterday, duration: 1h", "$.corrections[0].start: expected an RFC 3339 time"),
        ('start: "2024-05-01T02:00:00", duration: 1h', "$.corrections[0].start: expected"),
        ("start: 2024-05-01T02:00:00, duration: 1h", "$.corrections[0].start: 2024-05-01 02:00"),
        ('start: "2024-02-30T00:00:00Z", duration: 1h', "$.corrections[0].start: not a valid"),
        ("start: -5, duration: 1h", "$.corrections[0].start: must be from 1970 to 9999"),
        (
            "start: 1000000000000000, duration: 1h",
            "$.corrections[0].start: must be from 1970 to 9999",
        ),
        ("start: 100, end: 50", "$.corrections[0].end: must be after start"),
        ("start: 100, end: 100", "$.corrections[0].end: must be after start"),
        ("start: 100, end: nope", "$.corrections[0].end: expected an RFC 3339 time"),
        ("start: 100", "$.corrections[0]: give exactly one of end or duration"),
        ("start: 100, end: 200, duration: 1h", "$.corrections[0]: give exactly one of end or"),
        ("start: 100, duration: 0s", "$.corrections[0].duration: must be longer than 0s"),
        ("start: 100, duration: 8d, recurrence: weekly", "$.corrections[0].duration: at most 7d"),
        ("start: 0, end: 604801, recurrence: weekly", "$.corrections[0].end: at most 7d"),
    ],
)
def test_time_problems_are_refused_at_their_path(entry: str, message: str) -> None:
    errors = errors_of(f"  - {{name: m, {entry}, slos: [api-avail], reason: x}}\n")
    assert any(e.startswith(message) for e in errors), errors


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("slos: [nope]", "$.corrections[0].slos[0]: no SLO named 'nope'"),
        ("slos: [api-avail, nope]", "$.corrections[0].slos[1]: no SLO named 'nope'"),
        ("services: [web]", "$.corrections[0].services[0]: no SLO has the service 'web'"),
        ("slos: []", "$.corrections[0].slos: at least one is required"),
        (
            "slos: [api-avail], services: [api]",
            "$.corrections[0]: give exactly one of slos or services",
        ),
        ("reason: x", "$.corrections[0]: give exactly one of slos or services"),
    ],
)
def test_target_problems_are_refused_at_their_path(entry: str, message: str) -> None:
    reason = "" if "reason" in entry else ", reason: x"
    errors = errors_of(f"  - {{name: m, start: 0, duration: 1h, {entry}{reason}}}\n")
    assert message in errors, errors


def test_a_composite_slo_is_refused_as_a_target_its_members_are_corrected() -> None:
    """A composite has no events of its own: a correction naming it would exclude none."""
    text = BASE.replace(
        "slos:\n", "slos:\n  - {name: both, composite: [{slo: api-avail}], objective: 99}\n", 1
    )
    text += "corrections:\n  - {name: m, start: 0, duration: 1h, slos: [both], reason: x}\n"
    with pytest.raises(ConfigError) as exc:
        parse_config(text)
    assert exc.value.errors == [
        "$.corrections[0].slos[0]: 'both' is a composite SLO, which has no events of its "
        "own: correct its members"
    ]


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("recurrence: daily", "$.corrections[0].recurrence: Invalid enum value 'daily'"),
        ("reason: ''", "$.corrections[0].reason: Expected `str` of length >= 1"),
        ("color: red", "$.corrections[0]: Object contains unknown field `color`"),
    ],
)
def test_decode_problems_are_refused_at_their_path(entry: str, message: str) -> None:
    reason = "" if "reason" in entry else ", reason: x"
    errors = errors_of(
        f"  - {{name: m, start: 0, duration: 1h, slos: [db-avail], {entry}{reason}}}\n"
    )
    assert errors == [message]


def test_every_problem_of_every_correction_is_reported_at_once() -> None:
    errors = errors_of(
        "  - {name: a, start: 100, end: 50, slos: [api-avail], reason: x}\n"
        "  - {name: b, start: 100, duration: 1h, services: [web], reason: y}\n"
    )
    assert errors == [
        "$.corrections[0].end: must be after start",
        "$.corrections[1].services[0]: no SLO has the service 'web'",
    ]


def test_a_posted_body_is_checked_by_the_same_code_at_the_document_root() -> None:
    slos = config().slos
    good = parse_correction(
        b'{"name": "m", "start": "2024-05-01T02:00:00Z", "duration": "2h",'
        b' "services": ["db"], "reason": "failover"}',
        slos,
    )
    assert good.targets(slos) == [2]
    for body, message in [
        (b'{"name": "m", "start": 10, "end": 5, "slos": ["db-avail"], "reason": "r"}', "$.end:"),
        (b'{"name": "m", "start": 10, "end": 50, "reason": "r"}', "$: give exactly one of slos"),
        (b'{"name": "m", "start": 10, "end": 50, "slos": "db", "reason": "r"}', "$.slos: Expected"),
        (b'{"start": 10, "end": 50, "slos": ["db-avail"], "reason": "r"}', "$: Object missing"),
        (b"{nope", "$: not valid JSON"),
        (b"[]", "$: Expected `object`"),
    ]:
        with pytest.raises(ConfigError) as exc:
            parse_correction(body, slos)
        assert exc.value.errors[0].startswith(message), (body, exc.value.errors)


# -- the index against the reference ----------------------------------------------

base_t = 1_700_000_000.0
correction = st.builds(
    lambda name, start, length, weekly, targets: Correction(
        name=name,
        start=start,
        end=start + length,
        recurrence="weekly" if weekly else None,
        **targets,
        reason="test",
    ),
    st.sampled_from(["a", "b"]),
    st.one_of(st.integers(-3 * WEEK_S, 3 * WEEK_S), st.floats(-3 * WEEK_S, 3 * WEEK_S)).map(
        lambda d: base_t + d
    ),
    st.one_of(st.sampled_from([0.5, 60, 3600, 86400, WEEK_S]), st.floats(0.001, WEEK_S)),
    st.booleans(),
    st.one_of(
        st.lists(st.sampled_from(NAMES), min_size=1, max_size=3).map(lambda s: {"slos": s}),
        st.lists(st.sampled_from(["api", "db"]), min_size=1, max_size=2).map(
            lambda s: {"services": s}
        ),
    ),
)


@settings(max_examples=200, deadline=None)
@given(
    corrections=st.lists(correction, max_size=6),
    pairs=st.lists(st.tuples(st.integers(0, 2), st.floats(-5 * WEEK_S, 5 * WEEK_S)), max_size=60),
    data=st.data(),
)
def test_the_index_agrees_with_the_naive_reference(
    corrections: list[Correction], pairs: list[tuple[int, float]], data: st.DataObject
) -> None:
    slos = config().slos
    # times at and around the bounds, where an off-by-one would show
    edges = [
        t
        for c in corrections
        for b in (c.start_s, c.end_s, c.start_s + WEEK_S, c.end_s + 2 * WEEK_S)
        for t in (b, math.nextafter(b, -math.inf), math.nextafter(b, math.inf))
    ]
    edge_pairs = [(data.draw(st.integers(0, 2)), t) for t in edges]
    all_pairs = [(s, base_t + d) for s, d in pairs] + edge_pairs
    slo = np.array([s for s, _ in all_pairs], dtype=np.int32)
    ts = np.array([t for _, t in all_pairs], dtype=np.float64)
    got = CorrectionIndex(corrections, slos).excluded(slo, ts)
    want = [corrected(corrections, NAMES, SERVICES, s, t) for s, t in all_pairs]
    assert got.tolist() == want


def test_no_corrections_is_inactive_and_the_evaluator_never_asks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert not CorrectionIndex([], config().slos).active

    def boom(*_: object) -> None:
        raise AssertionError("excluded() called without corrections")

    monkeypatch.setattr(CorrectionIndex, "excluded", boom)
    ev, _ = run_engine(config(), [[Event(service="api", ts=base_t, status=500)]])
    assert ev.counts().events_total.tolist() == [1, 0, 0]
    assert ev.counts().excluded_events.tolist() == [0, 0, 0]


# -- the evaluator against the reference ------------------------------------------

dt = st.one_of(st.floats(0, 5), st.floats(-45, 0), st.sampled_from([60.0, 600.0, 3600.0]))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    steps=st.lists(st.tuples(dt, event), min_size=1, max_size=80),
    windows=st.lists(
        st.tuples(
            st.floats(-60, 4000),
            st.sampled_from([5.0, 60.0, 300.0, 1800.0]),
            st.booleans(),
            st.sampled_from(
                [{"slos": ["api-avail"]}, {"slos": ["db-avail", "api-lat"]}, {"services": ["api"]}]
            ),
        ),
        max_size=4,
    ),
    cuts=st.lists(st.integers(0, 120), max_size=8),
)
def test_corrected_events_leave_windows_budget_and_alerts_and_are_counted_apart(
    steps: list[tuple[float, Event]],
    windows: list[tuple[float, float, bool, dict[str, list[str]]]],
    cuts: list[int],
) -> None:
    entries = "".join(
        f"  - {{name: c{k}, start: {base_t + off!r}, duration: {int(length)}s,"
        f" {'recurrence: weekly, ' if weekly else ''}"
        f"{next(iter(targets))}: {next(iter(targets.values()))}, reason: test}}\n".replace("'", "")
        for k, (off, length, weekly, targets) in enumerate(windows)
    )
    cfg = config(entries)
    _, ref, ev, got = against_reference(cfg, base_t, steps, cuts)
    assert [key(tr) for tr in got] == ref.transitions
    counts = ev.counts()
    for i in range(len(cfg.slos)):
        assert (int(counts.events_total[i]), int(counts.bad_events_total[i])) == ref.totals(i)
        assert int(counts.excluded_events[i]) == ref.excluded.get(i, 0)


def outage(start: float, seconds: int) -> list[Event]:
    return [
        Event(service="api", ts=start + s + k / 10, status=503, latency_ms=10.0)
        for s in range(seconds)
        for k in range(10)
    ]


def test_an_outage_inside_a_maintenance_window_never_pages_and_is_counted_apart() -> None:
    plain = config()
    _, fired = run_engine(plain, [outage(base_t, 600)])
    assert any(tr.slo == "api-avail" and tr.state == "firing" for tr in fired)
    cfg = config(
        f"  - {{name: deploy, start: {base_t - 1}, duration: 15m, services: [api], reason: x}}\n"
    )
    ev, got = run_engine(cfg, [outage(base_t, 600)])
    assert got == []
    counts = ev.counts()
    assert counts.events_total.tolist() == [0, 0, 0]
    assert counts.excluded_events.tolist() == [6000, 6000, 0]
    assert counts.accepted_events == 6000
    assert math.isnan(ev.budget_remaining()[0])


def test_a_correction_added_at_run_time_applies_from_then_on_and_survives_a_snapshot() -> None:
    cfg = config()
    ev = Evaluator(cfg)
    ev.ingest(ev.classifier.columns(outage(base_t, 10)))  # counted before the correction
    added = parse_correction(
        f'{{"name": "bad-data", "start": {base_t}, "end": {base_t + 3600},'
        f' "slos": ["api-avail"], "reason": "replayed traffic"}}'.encode(),
        cfg.slos,
    )
    ev.add_correction(added)
    ev.ingest(ev.classifier.columns(outage(base_t + 10, 10)))
    counts = ev.counts()
    assert counts.events_total.tolist() == [100, 200, 0]  # the first 100 stay counted
    assert counts.excluded_events.tolist() == [100, 0, 0]
    assert ev.corrections == (added,)

    restored = Evaluator(cfg)
    snapshot.load(restored, snapshot.dump(ev))
    assert restored.runtime_corrections == (added,)
    assert restored.counts().excluded_events.tolist() == [100, 0, 0]
    restored.ingest(restored.classifier.columns(outage(base_t + 20, 10)))
    assert restored.counts().excluded_events.tolist() == [200, 0, 0]
    assert restored.counts().events_total.tolist() == [100, 300, 0]


def test_a_snapshot_from_before_corrections_loads_with_nothing_excluded() -> None:
    ev, _ = run_engine(config(), [outage(base_t, 5)])
    blob = msgspec.msgpack.decode(snapshot.dump(ev))
    del blob["excluded_events"], blob["corrections"]
    restored = Evaluator(config())
    snapshot.load(restored, msgspec.msgpack.encode(blob))
    assert restored.counts().events_total.tolist() == [50, 50, 0]
    assert restored.counts().excluded_events.tolist() == [0, 0, 0]
    assert restored.runtime_corrections == ()
