"""Evaluator snapshots: a restored evaluator carries on exactly like one never stopped."""

from __future__ import annotations

import re

import msgspec
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.core import snapshot as snapshot_module
from engine.core.config import parse_config
from engine.core.decode import Event
from engine.core.evaluator import Evaluator, Transition
from engine.core.snapshot import SnapshotError, dump, load
from engine.errors import BurnrateError
from tests.unit.core.reference import naive_run, split, stamped
from tests.unit.core.test_evaluator import BASE, dt, event, key, make_config


def feed(ev: Evaluator, batches: list[list[Event]]) -> list[Transition]:
    out: list[Transition] = []
    for batch in batches:
        out += ev.ingest(ev.classifier.columns(batch))
    return out


def assert_same_state(a: Evaluator, b: Evaluator) -> None:
    ca, cb = a.counts(), b.counts()
    np.testing.assert_array_equal(a.window_sums(), b.window_sums())
    np.testing.assert_array_equal(ca.events_total, cb.events_total)
    np.testing.assert_array_equal(ca.bad_events_total, cb.bad_events_total)
    np.testing.assert_array_equal(a.alerts().firing, b.alerts().firing)
    assert a.rejected_counts() == b.rejected_counts()
    assert (ca.accepted_events, ca.unmatched_events, ca.unknown_status_events) == (
        cb.accepted_events,
        cb.unmatched_events,
        cb.unknown_status_events,
    )
    assert (a.watermark_s, a.next_tick_s, a.evaluated_at_s) == (
        b.watermark_s,
        b.next_tick_s,
        b.evaluated_at_s,
    )
    assert dump(a) == dump(b)  # every array, bit for bit


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    start=st.integers(1_600_000_000, 1_700_000_000),
    steps=st.lists(st.tuples(dt, event), min_size=1, max_size=80),
    cuts=st.lists(st.integers(0, 120), max_size=6),
    at=st.integers(0, 80),
    tick=st.sampled_from(["5s", "10s", "60s"]),
    options=st.sampled_from(
        ["", ", for: 30s", ", keep_firing_for: 1m", ", min_events: 5, min_bad_events: 2"]
    ),
    idle_s=st.one_of(st.none(), st.floats(0, 4000)),
)
def test_snapshot_restore_at_any_point_continues_like_one_uninterrupted_evaluator(
    start: int,
    steps: list[tuple[float, Event]],
    cuts: list[int],
    at: int,
    tick: str,
    options: str,
    idle_s: float | None,
) -> None:
    cfg = make_config(tick, options)
    events = stamped(start, steps)
    at = min(at, len(events))
    head, tail = split(events[:at], cuts), split(events[at:], cuts)

    whole = Evaluator(cfg)
    want = feed(whole, head)
    first = Evaluator(cfg)
    got = feed(first, head)
    if idle_s is not None and first.watermark_s > -float("inf"):
        # an idle spell before the restart (the runtime advances with the wall clock)
        want += whole.advance(whole.watermark_s + idle_s)
        got += first.advance(first.watermark_s + idle_s)
    blob = dump(first)
    second = Evaluator(cfg)  # a new process: same config, nothing else shared
    load(second, blob)
    assert_same_state(first, second)
    want += feed(whole, tail) + whole.flush()
    got += feed(second, tail) + second.flush()
    assert [key(tr) for tr in got] == [key(tr) for tr in want]
    assert got == want
    assert_same_state(whole, second)
    if idle_s is None:  # the naive model knows nothing of idle advances
        ref = naive_run(cfg, events)
        assert [key(tr) for tr in got] == ref.transitions
        counts = second.counts()
        for i in range(len(cfg.slos)):
            assert (int(counts.events_total[i]), int(counts.bad_events_total[i])) == ref.totals(i)


def busy_evaluator() -> Evaluator:
    ev = Evaluator(make_config())
    evs = [
        Event(service="api", ts=1_000_000.0 + i, status=503 if i % 3 else 200, latency_ms=150.0)
        for i in range(900)
    ]
    ev.ingest(ev.classifier.columns(evs))
    assert ev.alerts().firing.any()
    return ev


def test_a_restored_evaluator_keeps_firing_alerts_and_counters() -> None:
    ev = busy_evaluator()
    other = Evaluator(make_config())
    load(other, dump(ev))
    np.testing.assert_array_equal(other.alerts().firing, ev.alerts().firing)
    np.testing.assert_array_equal(other.alerts().firing_since_s, ev.alerts().firing_since_s)
    assert int(other.counts().events_total[0]) == 900
    np.testing.assert_array_equal(other.budget_remaining(), ev.budget_remaining())


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        pytest.param(
            BASE.replace("api-avail", "api-availability"),
            "SLOs (name, period_s, objective) differ",
            id="renamed SLO",
        ),
        pytest.param(
            BASE.replace("objective: 95", "objective: 96"),
            "SLOs (name, period_s, objective) differ",
            id="objective changed",
        ),
        pytest.param(
            BASE.replace("period: 1h}\n  - {name: api-lat", "period: 2h}\n  - {name: api-lat"),
            "windows differ",
            id="period changed",
        ),
        pytest.param(
            BASE.replace("burn_rate: 4", "burn_rate: 5"), "policy rows differ", id="policy factor"
        ),
        pytest.param(BASE, "tick differs", id="tick changed"),
    ],
)
def test_a_snapshot_of_another_config_is_refused_with_the_reason(text: str, reason: str) -> None:
    ev = busy_evaluator()
    blob = dump(ev)
    tick = "20s" if reason == "tick differs" else "10s"
    other = Evaluator(parse_config(text + f"evaluation: {{tick: {tick}, allowed_lateness: 30s}}\n"))
    before = dump(other)
    with pytest.raises(SnapshotError, match=re.escape(reason)) as info:
        load(other, blob)
    assert isinstance(info.value, BurnrateError)
    assert "another config" in str(info.value)
    assert dump(other) == before  # nothing half-restored


def test_a_changed_lateness_changes_the_rings_and_is_refused() -> None:
    blob = dump(busy_evaluator())
    other = Evaluator(parse_config(BASE + "evaluation: {tick: 10s, allowed_lateness: 5m}\n"))
    with pytest.raises(SnapshotError, match="ring buffers differ"):
        load(other, blob)


def test_a_snapshot_of_another_version_is_refused() -> None:
    blob = dump(busy_evaluator())
    data = msgspec.msgpack.decode(blob)
    data["version"] = snapshot_module.SNAPSHOT_VERSION + 1
    other = Evaluator(make_config())
    with pytest.raises(
        SnapshotError, match=rf"version {snapshot_module.SNAPSHOT_VERSION + 1} is not supported"
    ):
        load(other, msgspec.msgpack.encode(data))


@pytest.mark.parametrize(
    "mangle",
    [
        pytest.param(lambda b: b[: len(b) // 2], id="truncated"),
        pytest.param(lambda b: b"", id="empty"),
        pytest.param(lambda b: b"\xc1" + b[1:], id="invalid msgpack"),
        pytest.param(lambda b: msgspec.msgpack.encode({"hello": 1}), id="not a snapshot"),
        pytest.param(lambda b: msgspec.msgpack.encode([1, 2, 3]), id="wrong type"),
    ],
)
def test_corrupt_bytes_raise_snapshot_error_and_change_nothing(mangle: object) -> None:
    blob = dump(busy_evaluator())
    other = Evaluator(make_config())
    before = dump(other)
    with pytest.raises(SnapshotError):
        load(other, mangle(blob))  # type: ignore[operator]
    assert dump(other) == before


def test_an_array_of_the_wrong_size_is_refused_before_anything_is_assigned() -> None:
    ev = busy_evaluator()
    data = msgspec.msgpack.decode(dump(ev))
    data["events_total"]["data"] = data["events_total"]["data"][:-8]  # the last array restored
    other = Evaluator(make_config())
    before = dump(other)
    with pytest.raises(SnapshotError, match="corrupt snapshot: events_total"):
        load(other, msgspec.msgpack.encode(data))
    assert dump(other) == before


def test_a_negative_rejection_count_is_refused_as_corrupt() -> None:
    data = msgspec.msgpack.decode(dump(busy_evaluator()))
    data["rejected"] = {"too_late": -1}
    other = Evaluator(make_config())
    before = dump(other)
    with pytest.raises(SnapshotError, match="corrupt snapshot: negative rejection count"):
        load(other, msgspec.msgpack.encode(data))
    assert dump(other) == before


def test_a_promoted_ring_round_trips_and_int64_rings_that_fit_load_compact() -> None:
    """Rings are uint32 until a bucket would pass 2^32 - 1 (engine.core.windows): a
    snapshot keeps a promoted level int64, and int64 rings of an older snapshot whose
    counts fit are held as uint32 again, with the same counts."""
    ev = busy_evaluator()
    heavy = [Event(service="api", ts=1_000_899.5, status=200, count=1_000_000)] * 4_300
    ev.ingest(ev.classifier.columns(heavy))
    assert "int64" in {lv.buckets.dtype.name for lv in ev.windows.state().levels}
    other = Evaluator(make_config())
    load(other, dump(ev))
    assert_same_state(ev, other)

    plain = busy_evaluator()
    data = msgspec.msgpack.decode(dump(plain))
    for level in data["levels"]:
        wide = np.frombuffer(level["data"]["data"], dtype=level["data"]["dtype"]).astype("<i8")
        level["data"] = {**level["data"], "dtype": "<i8", "data": wide.tobytes()}
    restored = Evaluator(make_config())
    load(restored, msgspec.msgpack.encode(data))
    assert {lv.buckets.dtype.name for lv in restored.windows.state().levels} == {"uint32"}
    assert_same_state(plain, restored)
