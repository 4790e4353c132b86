"""Event time passes only what has been consumed, and replay's future limit is relative to
the stream.

Live, the caller (the Kafka source) caps the watermark at the newest event consumed from
the stream furthest behind. Checked against the naive reference fed the same events with
the same cap, for two streams read in any interleaving of any batch sizes: the events of
a lagging stream, each within the allowed lateness of its own stream's newest, are never
too late however far (within the rings' headroom) the other stream runs ahead, and no
tick is evaluated past the cap.

In replay (no wall clock) an event more than the future limit ahead of the watermark is
rejected unless the next line goes on from there: one far-future line is rejected, not
believed, and a recorded gap is a gap. Checked against the naive rule
(`reference.stream_future_rejected`) for any split of the file into blocks.
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import msgspec
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.core.config import Config
from engine.core.decode import Event
from engine.core.evaluator import Evaluator, Transition
from engine.core.ingest import Ingestor
from engine.runtime.replay import replay
from tests.unit.core.reference import NaiveEvaluator, stream_future_rejected
from tests.unit.core.test_evaluator import event, key, make_config

LATENESS_S = 30.0  # make_config's
FUTURE_S = 600.0  # the default future limit
HEADROOM_S = FUTURE_S + LATENESS_S


def headroom(cfg: Config) -> float:
    return cfg.evaluation.future_limit_s + cfg.evaluation.allowed_lateness_s


def timed(start: float, steps: list[tuple[float, Event]]) -> list[Event]:
    """Each event `step` seconds after the newest before it (a negative step: late)."""
    out = []
    newest = start
    for step, e in steps:
        t = newest + step
        newest = max(newest, t)
        out.append(msgspec.structs.replace(e, ts=t))
    return out


def ts_of(e: Event) -> float:
    assert e.ts is not None
    return e.ts


# -- live: the cap -----------------------------------------------------------------------

# Within 0.9 of the allowed lateness of the stream's own newest event, or ahead of it.
own_step = st.floats(-0.9 * LATENESS_S, 5.0)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    start=st.integers(1_600_000_000, 1_700_000_000),
    lag_s=st.floats(0, 200),
    behind=st.lists(st.tuples(own_step, event), min_size=1, max_size=60),
    ahead=st.lists(st.tuples(own_step, event), min_size=1, max_size=60),
    schedule=st.lists(st.tuples(st.integers(0, 8), st.integers(0, 8)), min_size=1, max_size=30),
    tick=st.sampled_from(["5s", "10s", "60s"]),
)
def test_a_stream_behind_is_judged_against_its_own_past_however_the_other_runs_ahead(
    start: int,
    lag_s: float,
    behind: list[tuple[float, Event]],
    ahead: list[tuple[float, Event]],
    schedule: list[tuple[int, int]],
    tick: str,
) -> None:
    """Two streams read like two partitions: each batch takes a few of the next events of
    each (any sizes, one stream often far ahead of the other in what was read), ordered
    by event time, and is ingested with the cap as it stood before the batch: the newest
    event read from each stream that still has events, the lowest of those."""
    cfg = make_config(tick)
    streams = [timed(start, behind), timed(start + lag_s, ahead)]
    ev = Evaluator(cfg)
    ref = NaiveEvaluator(cfg)
    got: list[Transition] = []
    read = [0, 0]
    newest = [-math.inf, -math.inf]
    for take in itertools.cycle(schedule):
        if read[0] == len(streams[0]) and read[1] == len(streams[1]):
            break
        pending = [s for s in (0, 1) if read[s] < len(streams[s])]
        cap = min(newest[s] for s in pending) if pending else None
        if not any(take[s] for s in pending):
            take = (1, 1)  # always read something
        batch: list[Event] = []
        for s in (0, 1):
            chunk = streams[s][read[s] : read[s] + take[s]]
            read[s] += len(chunk)
            if chunk:
                newest[s] = max(newest[s], *map(ts_of, chunk))
            batch += chunk
        batch.sort(key=ts_of)
        watermark_before = ev.watermark_s
        got += ev.ingest(ev.classifier.columns(batch), watermark_cap_s=cap)
        for e in batch:
            ref.feed(e, cap)
        if cap is not None and batch:
            # never past the cap, but for the rings' headroom behind an event
            assert ev.watermark_s <= max(
                watermark_before, cap, max(map(ts_of, batch)) - headroom(cfg)
            )
        if ev.evaluated_at_s is not None:  # no tick is evaluated past the watermark
            assert ev.evaluated_at_s < ev.watermark_s
    got += ev.flush()
    ref.flush()
    assert [key(tr) for tr in got] == ref.transitions
    counts = ev.counts()
    assert counts.rejected.get("too_late", 0) == ref.rejected_late == 0
    for i in range(len(cfg.slos)):
        assert (int(counts.events_total[i]), int(counts.bad_events_total[i])) == ref.totals(i)


def test_a_partition_ahead_does_not_make_the_one_behind_late() -> None:
    """Pinned: the case of the two-partition backlog, with and without the cap."""
    cfg = make_config()
    old = [Event(service="api", ts=1000.0 + i) for i in range(100)]  # 100 s of backlog
    fresh = [Event(service="api", ts=1100.0)]  # a partition already caught up
    capped = Evaluator(cfg)
    capped.ingest(capped.classifier.columns(old[:10]), watermark_cap_s=-math.inf)
    capped.ingest(capped.classifier.columns(fresh), watermark_cap_s=1009.0)
    capped.ingest(capped.classifier.columns(old[10:]), watermark_cap_s=1009.0)
    assert capped.rejected_counts() == {}
    assert int(capped.counts().events_total[0]) == 101
    uncapped = Evaluator(cfg)
    for batch in (old[:10], fresh, old[10:]):
        uncapped.ingest(uncapped.classifier.columns(batch))
    assert uncapped.rejected_counts() == {"too_late": 60}  # older than 1100 - 30 - 10


def test_a_stream_beyond_the_headroom_pushes_event_time_only_as_far_as_the_rings_need() -> None:
    """The rings hold events up to `future_limit + allowed_lateness` (plus two ticks)
    ahead of the evaluation time: a stream further ahead of the cap than that moves
    event time up to its event minus that headroom, no further."""
    cfg = make_config()
    ev = Evaluator(cfg)
    ev.ingest(ev.classifier.columns([Event(service="api", ts=1000.0)]), watermark_cap_s=-math.inf)
    far = 1000.0 + 7200
    ev.ingest(ev.classifier.columns([Event(service="api", ts=far)]), watermark_cap_s=1000.0)
    assert ev.watermark_s == far - HEADROOM_S
    assert int(ev.counts().events_total[0]) == 2
    ev.advance(far + 1)
    assert int(ev.window_sums()[ev.window_index(300), 0, 0]) == 1  # the far event, in place


def test_advance_stops_at_the_cap_and_a_cap_of_minus_infinity_holds_event_time() -> None:
    cfg = make_config()
    ev = Evaluator(cfg)
    ev.ingest(ev.classifier.columns([Event(service="api", ts=1000.0)]))
    assert ev.advance(2000.0, watermark_cap_s=-math.inf) == []
    assert ev.watermark_s == 1000.0
    ev.advance(2000.0, watermark_cap_s=1500.0)
    assert ev.watermark_s == 1500.0
    assert ev.evaluated_at_s is not None
    assert ev.evaluated_at_s < 1500.0
    ev.advance(2000.0, watermark_cap_s=None)
    assert ev.watermark_s == 2000.0


def test_ingest_reports_the_newest_event_time_of_each_stream() -> None:
    """Per stream (a run of records): the newest event time, capped at now, events
    beyond the future limit left out; NaN for a stream that brought no event time."""
    ev = Evaluator(make_config())
    enc = msgspec.json.encode
    values: list[bytes | None] = [
        enc({"service": "api", "ts": 1000.0}),  # stream 0
        enc([{"service": "api", "ts": 1007.0}, {"service": "db", "ts": 1003.0}]),
        b"{oops",  # stream 1: nothing with a time
        enc({"service": "api"}),
        enc({"service": "api", "ts": 1100.0}),  # stream 3 (stream 2 holds no record)
        enc({"service": "api", "ts": 1250.0}),  # ahead of now: counts as now
        enc({"service": "api", "ts": 1200.0 + FUTURE_S + 1}),  # too far: left out
    ]
    result = Ingestor(ev).records(values, now_s=1200.0, stream_starts=[0, 2, 4, 4])
    assert result.stream_times_s is not None
    got = result.stream_times_s.tolist()
    assert got[0] == 1007.0
    assert math.isnan(got[1])
    assert math.isnan(got[2])
    assert got[3] == 1200.0
    assert ev.rejected_counts() == {"malformed": 1, "missing_ts": 1, "too_far_in_future": 1}
    assert Ingestor(ev).records(values[:1], now_s=1200.0).stream_times_s is None


# -- replay: the future limit from the stream --------------------------------------------


def line(events: list[Event]) -> bytes:
    return msgspec.json.encode(events[0] if len(events) == 1 else events)


def replay_blocks(
    cfg: Config, lines: list[bytes], cuts: list[int]
) -> tuple[Evaluator, list[Transition]]:
    """Lines through `Ingestor.json_lines(stream_future=True)` in blocks cut at `cuts`."""
    ev = Evaluator(cfg)
    ing = Ingestor(ev)
    got: list[Transition] = []
    bounds = sorted({0, len(lines), *[c for c in cuts if c < len(lines)]})
    for a, b in itertools.pairwise(bounds):
        block = b"".join(ln + b"\n" for ln in lines[a:b])
        got += ing.json_lines(block, stream_future=True).transitions
    got += ing.flush()
    return ev, got


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    start=st.integers(1_600_000_000, 1_700_000_000),
    steps=st.lists(st.tuples(st.floats(0, 5), event), min_size=2, max_size=100),
    at=st.integers(1, 100),
    beyond_s=st.one_of(st.floats(1, 1e4), st.floats(1e4, 9e10)),
    cuts=st.lists(st.integers(0, 110), max_size=8),
)
def test_one_far_future_line_is_rejected_and_everything_else_counted(
    start: int,
    steps: list[tuple[float, Event]],
    at: int,
    beyond_s: float,
    cuts: list[int],
) -> None:
    cfg = make_config()
    good = timed(start, steps)
    at = min(at, len(good))  # after the first event (which sets the watermark), or last
    wild_ts = min(ts_of(good[at - 1]) + FUTURE_S + beyond_s, 9.9e10)
    wild = msgspec.structs.replace(good[at - 1], ts=wild_ts)
    lines = [line([e]) for e in good]
    with_wild = [*lines[:at], line([wild]), *lines[at:]]
    ev, got = replay_blocks(cfg, with_wild, cuts)
    clean, want = replay_blocks(cfg, lines, [])
    assert ev.rejected_counts() == {"too_far_in_future": 1}
    assert ev.counts().accepted_events == clean.counts().accepted_events
    assert [key(tr) for tr in got] == [key(tr) for tr in want]
    assert ev.counts().events_total.tolist() == clean.counts().events_total.tolist()


# An event's time: the base time moves by `step` (a big one is a gap the stream goes on
# from); `spike` puts the event ahead of it, a little (a later line may go on from
# there) or wildly (WILD: 1e8 s per line index, so no later line ever confirms it --
# the naive reference evaluates every 10 s tick up to a jump it believes).
WILD = -1.0
line_time = st.tuples(
    st.one_of(st.floats(-40, 5), st.sampled_from([700.0, 3600.0])),
    st.one_of(st.just(0.0), st.sampled_from([300.0, 650.0, 5000.0, WILD])),
)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    start=st.integers(1_600_000_000, 1_700_000_000),
    shape=st.lists(
        st.lists(st.tuples(line_time, event), min_size=1, max_size=3), min_size=1, max_size=60
    ),
    cuts=st.lists(st.integers(0, 70), max_size=8),
    tick=st.sampled_from(["10s", "60s"]),
)
def test_replay_rejects_what_the_naive_rule_rejects_for_any_split_into_blocks(
    start: int,
    shape: list[list[tuple[tuple[float, float], Event]]],
    cuts: list[int],
    tick: str,
) -> None:
    cfg = make_config(tick)
    base = float(start)
    lines: list[list[Event]] = []
    for i, items in enumerate(shape):
        events = []
        for (step, spike), e in items:
            base += step
            ahead = 1e8 * (i + 1) if spike == WILD else spike
            events.append(msgspec.structs.replace(e, ts=base + ahead))
        lines.append(events)
    rejected = stream_future_rejected([[ts_of(e) for e in ln] for ln in lines], FUTURE_S)
    ref = NaiveEvaluator(cfg)
    for events, verdicts in zip(lines, rejected, strict=True):
        for e, out in zip(events, verdicts, strict=True):
            if not out:
                ref.feed(e)
    ref.flush()
    ev, got = replay_blocks(cfg, [line(ln) for ln in lines], cuts)
    counts = ev.counts()
    assert counts.rejected.get("too_far_in_future", 0) == sum(map(sum, rejected))
    assert counts.rejected.get("too_late", 0) == ref.rejected_late
    assert [key(tr) for tr in got] == ref.transitions
    for i in range(len(cfg.slos)):
        assert (int(counts.events_total[i]), int(counts.bad_events_total[i])) == ref.totals(i)


def test_a_recorded_gap_longer_than_the_future_limit_is_a_gap() -> None:
    cfg = make_config()
    times = [1000.0 + i for i in range(50)] + [1050.0 + 3600 + i for i in range(50)]
    ev, _ = replay_blocks(cfg, [line([Event(service="api", ts=t)]) for t in times], [50])
    assert ev.rejected_counts() == {}
    assert int(ev.counts().events_total[0]) == 100


def test_a_jump_is_believed_only_when_the_next_line_is_as_far_ahead() -> None:
    """The next line must itself be beyond the limit (and near the jump): one that is
    back within it shows the jump to be a wild timestamp, even when it is close to it."""
    cfg = make_config()

    def rejected(times: list[float]) -> dict[str, int]:
        lines = [line([Event(service="api", ts=t)]) for t in times]
        return replay_blocks(cfg, lines, [])[0].rejected_counts()

    assert rejected([1000.0, 1000.0 + FUTURE_S + 50, 1300.0, 1301.0]) == {"too_far_in_future": 1}
    assert rejected([1000.0, 1000.0 + FUTURE_S + 50, 1000.0 + FUTURE_S + 60]) == {}
    far = 1000.0 + FUTURE_S + 50  # the next line goes on, but not from there
    assert rejected([1000.0, far, far + FUTURE_S + 1]) == {"too_far_in_future": 2}


def test_the_first_event_sets_the_watermark_even_a_wild_one() -> None:
    """The documented exception: nothing comes before the first event to judge it by."""
    cfg = make_config()
    times = [5e9] + [1000.0 + i for i in range(5)]
    ev, _ = replay_blocks(cfg, [line([Event(service="api", ts=t)]) for t in times], [])
    assert ev.rejected_counts() == {"too_late": 5}


def test_the_stream_future_limit_is_for_streams_without_a_wall_clock() -> None:
    ev = Evaluator(make_config())
    cols = ev.classifier.columns([Event(service="api", ts=1000.0)])
    with pytest.raises(ValueError, match="wall clock"):
        ev.ingest(cols, now_s=1000.0, stream_future=True)
    with pytest.raises(ValueError, match="file order"):
        Ingestor(ev).json_lines(
            line([Event(service="api", ts=1.0)]) + b"\n", by_event_time=True, stream_future=True
        )


def test_replaying_a_file_with_one_wild_line_counts_the_rest(tmp_path: Path) -> None:
    """The replay driver: a hundred lines and one far-future one (which, believed, made
    every later event too late and cost a tick evaluation every 10 s up to it)."""
    cfg = make_config()
    times = [1_767_225_600.0 + i for i in range(100)]
    lines = [line([Event(service="api", ts=t, status=200)]) for t in times]
    lines.insert(40, line([Event(service="api", ts=9e10, status=500)]))
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"".join(ln + b"\n" for ln in lines))
    result = replay(cfg, path, lambda tr: None)
    counts = result.evaluator.counts()
    assert result.records == 101
    assert counts.rejected == {"too_far_in_future": 1}
    assert counts.accepted_events == 100
    assert result.evaluator.watermark_s == times[-1]
    assert np.isfinite(result.evaluator.watermark_s)


def test_once_no_cap_holds_it_event_time_reaches_the_newest_event_read() -> None:
    """Events read while a stream was behind move the watermark only to the cap; once
    every stream is caught up (no cap), an idle engine's advance releases it to the
    newest of them, not just to the wall clock minus the lateness."""
    cfg = make_config()
    ev = Evaluator(cfg)
    ev.ingest(
        ev.classifier.columns([Event(service="api", ts=t) for t in (1000.0, 1030.0, 1055.0)]),
        now_s=1060.0,
        watermark_cap_s=-math.inf,
    )
    assert ev.watermark_s < 1000.0
    ev.advance(1000.0, watermark_cap_s=-math.inf)
    assert ev.watermark_s < 1000.0
    ev.advance(1000.0, watermark_cap_s=None)  # wall clock minus lateness is behind
    assert ev.watermark_s == 1055.0
    assert ev.evaluated_at_s == 1050.0
