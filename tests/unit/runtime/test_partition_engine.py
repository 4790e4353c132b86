"""A partition engine restored from its snapshot and fed the records after it gives the
transitions and counts of one that never stopped: what makes a moved or killed
partition exact and its alerts neither lost nor repeated."""

from __future__ import annotations

import itertools

import msgspec
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.core.changes import ChangeRequest
from engine.core.config import parse_config
from engine.core.deltas import encode_delta, encode_heartbeat
from engine.core.evaluator import Transition
from engine.core.overrides import Override
from engine.runtime.partition_engine import PartitionEngine, PartitionSnapshot

T0 = 1_700_000_000
CONFIG = parse_config(
    b"""
slos:
  - {name: a, service: a, sli: availability, objective: 99, period: 1h}
  - {name: b, service: b, sli: availability, objective: 99, period: 1h,
     group_by: [region], max_groups: 2}
policy:
  - {severity: page, long: 5m, short: 1m, burn_rate: 4}
evaluation: {tick: 10s, allowed_lateness: 20s}
"""
)


def records() -> list[bytes | None]:
    """Ten minutes of a failing, then an hour of nothing (heartbeats), a bad record and
    a few late buckets."""
    out: list[bytes | None] = []
    for k in range(80):
        t = T0 + 10 * k
        bad = 10 if 20 <= k < 50 else 0
        out.append(encode_delta("a", t, [t], [10], [bad]))
        region = ["eu", "us", "ap"][k % 3]
        out.append(
            encode_delta("b", t, [t - 30, t], [1, 5], [0, bad // 2], [f"region={region}"] * 2)
        )
        if k % 7 == 0:
            out.append(encode_heartbeat(t + 5))
        if k % 11 == 0:  # refused: another partition's SLO, a group not of b's, a group of a's
            out.append(encode_delta("elsewhere", t, [t], [1], [0]))
            out.append(encode_delta("b", t, [t], [1], [0], ["zone=x"]))
            out.append(encode_delta("a", t, [t], [1], [0], ["region=eu"]))
    out.append(b"not a delta")
    out.append(None)
    out += [encode_heartbeat(T0 + 800 + 600 * k) for k in range(7)]
    return out


def run(engine: PartitionEngine, values: list[bytes | None], start: int) -> list[Transition]:
    out: list[Transition] = []
    for offset, value in enumerate(values[start:], start):
        out += engine.apply(offset, value)
    return out


@settings(max_examples=25, deadline=None)
@given(cut=st.integers(0, 300))
def test_a_restored_engine_reads_on_as_if_it_never_stopped(cut: int) -> None:
    values = records()
    cut = min(cut, len(values))
    whole = PartitionEngine(3, CONFIG, ["a", "b"], [])
    expected = run(whole, values, 0)
    assert {(t.slo, t.state) for t in expected} >= {("a", "firing"), ("a", "resolved")}
    before = PartitionEngine(3, CONFIG, ["a", "b"], [])
    got = run(before, values[:cut], 0)
    after = PartitionEngine(3, CONFIG, ["a", "b"], [])
    assert after.restore(before.snapshot())
    assert after.offset == cut
    assert run(after, values[:cut], 0) == []  # records before the snapshot: already in
    got += run(after, values, cut)
    assert got == expected
    a, b = whole.evaluator, after.evaluator
    np.testing.assert_array_equal(a.counts().events_total, b.counts().events_total)
    np.testing.assert_array_equal(a.counts().bad_events_total, b.counts().bad_events_total)
    assert a.counts().rejected == b.counts().rejected
    np.testing.assert_array_equal(a.window_sums(), b.window_sums())
    assert a.watermark_s == b.watermark_s


def test_a_snapshot_of_another_partition_or_config_is_ignored() -> None:
    engine = PartitionEngine(1, CONFIG, ["a", "b"], [])
    run(engine, records()[:20], 0)
    data = engine.snapshot()
    other = PartitionEngine(2, CONFIG, ["a", "b"], [])
    assert not other.restore(data)
    assert (other.offset, other.restored) == (0, False)
    fewer = PartitionEngine(1, CONFIG, ["a"], [])
    assert not fewer.restore(data)
    assert fewer.offset == 0
    assert not PartitionEngine(1, CONFIG, ["a", "b"], []).restore(b"\x00junk")
    saved = msgspec.msgpack.decode(data, type=PartitionSnapshot)
    assert (saved.partition, saved.offset) == (1, 20)


@settings(max_examples=25, deadline=None)
@given(cuts=st.lists(st.integers(0, 300), max_size=8))
def test_batches_give_what_records_one_by_one_give(cuts: list[int]) -> None:
    values = records()
    one = PartitionEngine(0, CONFIG, ["a", "b"], [])
    expected = run(one, values, 0)
    batched = PartitionEngine(0, CONFIG, ["a", "b"], [])
    got: list[Transition] = []
    bounds = sorted({0, len(values), *[c for c in cuts if c < len(values)]})
    for lo, hi in itertools.pairwise(bounds):
        got += batched.apply_batch(list(enumerate(values[lo:hi], lo)))
    got += batched.apply_batch(list(enumerate(values[:5])))  # already applied: nothing
    assert got == expected
    assert batched.offset == one.offset == len(values)
    a, b = one.evaluator, batched.evaluator
    assert a.counts().rejected == b.counts().rejected == {"bad_delta": 18, "unknown_slo": 8}
    np.testing.assert_array_equal(a.counts().events_total, b.counts().events_total)
    np.testing.assert_array_equal(a.window_sums(), b.window_sums())
    assert a.classifier.group_state() == b.classifier.group_state()
    assert batched.snapshot() == one.snapshot()


def test_the_overrides_move_with_the_snapshot_and_expire_on_the_wall_clock() -> None:
    now = [1_800_000_000.0]
    engine = PartitionEngine(0, CONFIG, ["a", "b"], [], clock=lambda: now[0])
    run(engine, records()[:10], 0)
    assert engine.edits == 0
    engine.overrides.set(
        Override(service="a", reason="hotfix", set_at_s=now[0], expires_at_s=now[0] + 60)
    )
    engine.overrides.set(
        Override(service="b", reason="long", set_at_s=now[0], expires_at_s=now[0] + 600)
    )
    engine.edited()
    assert engine.edits == 1
    data = engine.snapshot()
    now[0] += 120  # a's expired meanwhile
    moved = PartitionEngine(0, CONFIG, ["a", "b"], [], clock=lambda: now[0])
    assert moved.restore(data)
    assert [(o.service, o.reason) for o in moved.overrides.all(now[0])] == [("b", "long")]
    assert moved.offset == 10
    # a snapshot without overrides restores with none
    old = msgspec.msgpack.decode(data, type=PartitionSnapshot)
    legacy = msgspec.msgpack.encode(msgspec.structs.replace(old, overrides=b""))
    again = PartitionEngine(0, CONFIG, ["a", "b"], [])
    assert again.restore(legacy)
    assert again.overrides.all(now[0]) == []
    # overrides that cannot be read: the snapshot is ignored, not half loaded
    broken = msgspec.msgpack.encode(msgspec.structs.replace(old, overrides=b"\xc1"))
    fresh = PartitionEngine(0, CONFIG, ["a", "b"], [])
    assert not fresh.restore(broken)
    assert fresh.offset == 0


def test_changes_name_the_alerts_in_their_window_and_move_with_the_snapshot() -> None:
    """A deploy of `a` just before its failing minutes: the page names it; the change
    log moves with the snapshot and goes on numbering the partition's own ids."""
    engine = PartitionEngine(2, CONFIG, ["a", "b"], [], partitions=4)
    req = ChangeRequest(service="a", kind="deploy", version="v7")
    change, added = engine.changes.add(req, source="api", at_s=T0 + 190.0, received_at_s=T0 + 190.0)
    assert (added, change.id) == (True, 3)  # partition 2 of 4: ids 3, 7, 11, ...
    fired = [t for t in run(engine, records(), 0) if t.state == "firing"]
    page = next(t for t in fired if t.slo == "a")
    assert [(n.id, n.kind, n.version) for n in page.changes] == [(3, "deploy", "v7")]
    assert all(not t.changes for t in fired if t.slo == "b")  # another service
    moved = PartitionEngine(2, CONFIG, ["a", "b"], [], partitions=4)
    assert moved.restore(engine.snapshot())
    assert [c.id for c in moved.changes.changes()] == [3]
    again, _ = moved.changes.add(
        ChangeRequest(service="a", kind="deploy", version="v8"),
        source="api",
        at_s=T0 + 9000.0,
        received_at_s=T0 + 9000.0,
    )
    assert again.id == 7
