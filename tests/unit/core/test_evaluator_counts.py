"""`Evaluator.ingest_counts` (buckets classified elsewhere) against `ingest` of the
events behind them, group names read back, and a counts partition fed deltas."""

from __future__ import annotations

import itertools
import math
from dataclasses import fields

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.core.config import OTHER_GROUP, Config, parse_config
from engine.core.decode import Event
from engine.core.deltas import encode_delta, encode_heartbeat
from engine.core.evaluator import Evaluator, Transition
from engine.core.evaluator_counts import parse_group_name
from engine.core.partition_counts import PartitionCounts
from tests.unit.core.reference import split

T0 = 1_000_000_000.0

CONFIG = """
slos:
  - {name: api-avail, service: api, sli: availability, objective: 95, period: 1h}
  - {name: api-lat, service: api, sli: latency, threshold_ms: 100, objective: 90, period: 1h}
  - {name: by-op, service: api, sli: availability, objective: 99, period: 1h,
     group_by: [operation], max_groups: 2}
  - {name: db-avail, service: db, sli: availability, objective: 99, period: 1h,
     policy: [{severity: ticket, long: 10m, short: 1m, burn_rate: 2}]}
policy:
  - {severity: page, long: 5m, short: 1m, burn_rate: 4}
  - {severity: ticket, long: 30m, short: 5m, burn_rate: 1}
"""
CORRECTION = """
corrections:
  - {name: upkeep, start: 1000000060, duration: 5m, services: [api], reason: upkeep}
"""


def make_config(lateness: str, corrections: bool) -> Config:
    return parse_config(
        CONFIG
        + (CORRECTION if corrections else "")
        + f"evaluation: {{tick: 10s, allowed_lateness: {lateness}}}\n"
    )


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=")


def buckets(
    cfg: Config, events: list[Event]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[str | None]]:
    """The (event, SLO) pairs of `events` in event order, as an ingest worker would
    send them: SLO index, time, total, bad and the group's name."""
    classifier = Evaluator(cfg).classifier
    pairs = classifier.pairs(classifier.columns(events))
    slo = pairs.slo.astype(np.int64)
    groups: list[str | None] = [
        f"operation={_escape(events[e].operation or '')}" if cfg.slos[j].group_by else None
        for e, j in zip(pairs.event.tolist(), slo.tolist(), strict=True)
    ]
    ts = np.array([events[e].ts for e in pairs.event.tolist()], dtype=np.float64)
    return slo, ts, pairs.total.astype(np.int64), pairs.bad.astype(np.int64), groups


def assert_same_state(a: Evaluator, b: Evaluator) -> None:
    np.testing.assert_array_equal(a.window_sums(), b.window_sums())
    ca, cb = a.counts(), b.counts()
    np.testing.assert_array_equal(ca.events_total, cb.events_total)
    np.testing.assert_array_equal(ca.bad_events_total, cb.bad_events_total)
    np.testing.assert_array_equal(ca.excluded_events, cb.excluded_events)
    sa, sb = a.alerts(), b.alerts()
    for f in fields(sa):
        np.testing.assert_array_equal(getattr(sa, f.name), getattr(sb, f.name), err_msg=f.name)
    assert (a.watermark_s, a.next_tick_s, a.evaluated_at_s) == (
        b.watermark_s,
        b.next_tick_s,
        b.evaluated_at_s,
    )
    assert a.classifier.group_state() == b.classifier.group_state()
    assert [a.group_of(c) for c in range(len(a.names))] == [
        b.group_of(c) for c in range(len(b.names))
    ]


OPERATIONS = ["GET /a", "GET /b", "POST /a,b=c", "x\\y", ""]

event_st = st.builds(
    lambda service, op, status, latency, count, dt: (
        dt,
        Event(
            service=service,
            operation=op,
            status=status,
            latency_ms=latency,
            count=count,
        ),
    ),
    # every event counts for some SLO (one for none moves the watermark in `ingest`,
    # while its pairs, none, cannot: an ingest worker sends its time as the watermark)
    service=st.sampled_from(["api", "db"]),
    op=st.sampled_from([*OPERATIONS, None]),
    status=st.sampled_from([200, 200, 200, 503, 429, None]),
    latency=st.one_of(st.just(math.nan), st.floats(0, 300)),
    count=st.integers(1, 5),
    dt=st.integers(-90, 120),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    steps=st.lists(event_st, min_size=1, max_size=120),
    cuts=st.lists(st.integers(0, 120), max_size=6),
    cuts_b=st.lists(st.integers(0, 400), max_size=6),
    lateness=st.sampled_from(["0s", "30s", "2m"]),
    corrections=st.booleans(),
    cap=st.one_of(st.none(), st.integers(0, 600)),
)
def test_ingest_counts_of_the_pairs_is_ingest_of_the_events(
    steps: list[tuple[int, Event]],
    cuts: list[int],
    cuts_b: list[int],
    lateness: str,
    corrections: bool,
    cap: int | None,
) -> None:
    """Any batch split on either side: the same transitions, windows, counts, alert
    state, clock and group assignment, with and without corrections and caps."""
    cfg = make_config(lateness, corrections)
    t, events = T0, []
    for dt, e in steps:  # a random walk in whole seconds, late events included
        t = max(T0, t + dt)
        e.ts = t
        events.append(e)
    a, b = Evaluator(cfg), Evaluator(cfg)
    cap_s = None if cap is None else T0 + cap
    got_a: list[Transition] = []
    for batch in split(events, cuts):
        got_a += a.ingest(a.classifier.columns(batch), watermark_cap_s=cap_s)
    slo, ts, total, bad, groups = buckets(cfg, events)
    got_b: list[Transition] = []
    bounds = sorted({0, len(slo), *[c for c in cuts_b if c < len(slo)]})
    for lo, hi in itertools.pairwise(bounds):
        got_b += b.ingest_counts(
            slo[lo:hi], ts[lo:hi], total[lo:hi], bad[lo:hi], groups[lo:hi], watermark_cap_s=cap_s
        )
    assert got_b == got_a
    assert_same_state(a, b)
    later = T0 + 3600 * 2
    assert b.advance(later, watermark_cap_s=cap_s) == a.advance(later, watermark_cap_s=cap_s)
    assert_same_state(a, b)


def test_too_late_buckets_count_their_events_and_take_no_group() -> None:
    cfg = make_config("0s", False)
    ev = Evaluator(cfg)
    j = [s.name for s in cfg.slos].index("by-op")
    ev.ingest_counts(
        np.array([j]), np.array([T0 + 100]), np.array([3]), np.array([1]), ["operation=a"]
    )
    ev.ingest_counts(
        np.array([j, j]),
        np.array([T0, T0 + 100]),
        np.array([7, 2]),
        np.array([0, 0]),
        ["operation=late", "operation=b"],
    )
    assert ev.counts().rejected == {"too_late": 7}
    assert [ev.group_of(c) for c in range(len(ev.names)) if ev.names[c] == "by-op"] == [
        "operation=a",
        "operation=b",
        OTHER_GROUP,
    ]
    assert int(ev.counts().events_total.sum()) == 5


@pytest.mark.parametrize(
    ("slo", "groups", "message"),
    [
        pytest.param(9, None, "outside", id="index"),
        pytest.param(0, ["operation=a"], "which has none", id="group of an ungrouped SLO"),
        pytest.param(2, [None], "without its group", id="no group"),
        pytest.param(2, ["region=eu"], "not a group of by-op", id="another key"),
        pytest.param(2, ["operation=a=b"], "unescaped", id="unescaped"),
    ],
)
def test_bad_buckets_are_refused_and_count_nothing(
    slo: int, groups: list[str | None] | None, message: str
) -> None:
    ev = Evaluator(make_config("0s", False))
    with pytest.raises(ValueError, match=message):
        ev.ingest_counts(np.array([slo]), np.array([T0]), np.array([1]), np.array([0]), groups)
    assert int(ev.counts().events_total.sum()) == 0
    assert ev.next_tick_s is None


def test_impossible_counts_are_refused() -> None:
    ev = Evaluator(make_config("0s", False))
    with pytest.raises(ValueError, match="bad above total"):
        ev.ingest_counts(np.array([0]), np.array([T0]), np.array([1]), np.array([2]))


value_st = st.text(alphabet="ab,=\\ /", max_size=6)


@given(st.lists(st.tuples(value_st, value_st), min_size=1, max_size=4))
def test_group_names_read_back_to_their_keys(keys: list[tuple[str, str]]) -> None:
    cfg = parse_config(
        "slos:\n  - {name: g, service: api, sli: availability, objective: 99,"
        " group_by: [region, operation], max_groups: 10}\n"
    )
    ev = Evaluator(cfg)
    events = [Event(service="api", ts=T0, operation=op, labels={"region": r}) for r, op in keys]
    ev.ingest(ev.classifier.columns(events))
    for c in range(len(ev.names)):
        name = ev.group_of(c)
        if name is None:
            continue
        gk = ev.group_key_of(0, name)
        if name == OTHER_GROUP:
            assert gk is None
        else:
            assert gk == ev.classifier.column_group[c]


def test_a_name_of_another_shape_is_refused() -> None:
    slo = parse_config(
        "slos:\n  - {name: g, service: api, sli: availability, objective: 99, group_by: [region]}\n"
    ).slos[0]
    assert parse_group_name(slo, "region=eu") == ("eu",)
    assert parse_group_name(slo, "region=") == (None,)
    for bad in ("eu", "region=eu,region=us", "zone=eu", "region=eu\\"):
        with pytest.raises(ValueError, match="group name"):
            parse_group_name(slo, bad)


def test_a_partition_moves_only_by_its_records() -> None:
    """Time advances to a flush's watermark minus the lateness when the next flush
    starts; heartbeats resolve; records it cannot use are counted as rejections."""
    cfg = make_config("30s", False)
    part = PartitionCounts(cfg, ["api-avail", "db-avail"])
    assert [s.name for s in part.evaluator.config_slos] == ["api-avail", "db-avail"]
    fired: list[Transition] = []
    for k in range(60):  # every request of api fails for ten minutes
        t = int(T0) + 10 * k
        fired += part.apply_record(encode_delta("api-avail", t + 10, [t], [10], [10]))
        fired += part.apply_record(encode_delta("db-avail", t + 10, [t], [10], [0]))
    # the buckets up to T0 + 590 are in, time at the flush before's watermark - lateness
    assert part.evaluator.watermark_s == T0 + 590 - 30
    assert part.pending_watermark_s == T0 + 600
    assert {(tr.slo, tr.severity, tr.state) for tr in fired} == {
        ("api-avail", "page", "firing"),
        ("api-avail", "ticket", "firing"),
    }
    assert part.apply_record(encode_delta("by-op", T0 + 600, [int(T0) + 600], [1], [0])) == []
    assert part.apply_record(b"\x93junk") == []
    assert part.apply_record(None) == []
    assert part.evaluator.counts().rejected == {"unknown_slo": 1, "bad_delta": 2}
    assert part.apply_record(encode_heartbeat(T0 + 3 * 3600)) == []  # its flush is not over
    resolved = part.apply_record(encode_heartbeat(T0 + 3 * 3600 + 1))
    assert {(tr.slo, tr.state) for tr in resolved} == {("api-avail", "resolved")}
    assert part.evaluator.counts().events_total.tolist() == [600, 600]


def test_the_deltas_of_one_flush_are_not_late_against_each_other() -> None:
    """One flush writes its SLOs' deltas one after the other, each over the whole flush:
    the second's first buckets are older than the first's last. Not too late."""
    cfg = make_config("0s", False)
    part = PartitionCounts(cfg, ["api-avail", "db-avail"])
    t = int(T0)
    for flush in range(3):
        t0 = t + 30 * flush
        seconds = list(range(t0, t0 + 30))
        for slo in ("api-avail", "db-avail"):
            part.apply_record(encode_delta(slo, t0 + 30, seconds, [2] * 30, [1] * 30))
    assert part.evaluator.counts().rejected == {}
    assert part.evaluator.counts().events_total.tolist() == [180, 180]
    # once the next flush starts, older than its watermark minus the lateness is too late
    part.apply_record(encode_delta("db-avail", t + 120, [t + 89, t + 90], [5, 1], [0, 0]))
    assert part.evaluator.counts().rejected == {"too_late": 5}
