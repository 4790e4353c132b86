"""Hostile weights never corrupt counts: `count` is bounded at decode, every sum on the
counting path is an exact int64 (checked against Python ints), and what could still
overflow saturates instead of wrapping, so no negative total reaches a snapshot."""

from __future__ import annotations

import dataclasses

import msgspec
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.core import snapshot
from engine.core.config import parse_config
from engine.core.decode import MAX_COUNT, Event
from engine.core.evaluator import Evaluator
from engine.core.ingest import Ingestor
from engine.core.matching import EventColumns

INT64_MAX = 2**63 - 1
T0 = 1_767_225_600.0

CONFIG = """
slos:
  - {name: api-avail, service: api, sli: availability, objective: 95, period: 1h}
  - {name: web-avail, service: web, sli: availability, objective: 95, period: 1h}
policy:
  - {severity: page, long: 5m, short: 1m, burn_rate: 4}
evaluation: {tick: 10s, allowed_lateness: 30s}
"""


def evaluator() -> Evaluator:
    return Evaluator(parse_config(CONFIG))


def record(service: str, ts: float, status: int, count: int) -> dict[str, object]:
    return {"service": service, "ts": ts, "status": status, "count": count}


def columns(ev: Evaluator, ts: float, count: int, n: int, status: int = 500) -> EventColumns:
    """`n` events of weight `count` at `ts`, built past the decoder (which would reject
    a weight over MAX_COUNT): what the counting path does with weights it never gets."""
    one = ev.classifier.columns([Event(service="api", ts=ts, status=status)])
    cols = one.take(np.zeros(n, dtype=np.intp))
    return dataclasses.replace(cols, count=np.full(n, count, dtype=np.int64))


def totals(ev: Evaluator) -> list[tuple[int, int]]:
    c = ev.counts()
    return [(int(t), int(b)) for t, b in zip(c.events_total, c.bad_events_total, strict=True)]


def assert_sane(ev: Evaluator) -> None:
    """Nothing negative, bad <= total, everywhere a count is kept."""
    c = ev.counts()
    assert (c.events_total >= 0).all()
    assert (c.bad_events_total >= 0).all()
    assert (c.bad_events_total <= c.events_total).all()
    sums = ev.window_sums()
    assert (sums >= 0).all()
    assert (sums[..., 1] <= sums[..., 0]).all()
    for level in ev.state().windows.levels:
        assert (level.buckets >= 0).all()


# --- the weight bound at the wire ---------------------------------------------------------


def test_records_of_100k_events_weighing_2_to_the_40_are_rejected() -> None:
    """Once: 86 such records made `events` -8990944074835951616. Now each is `bad_value`."""
    ev = evaluator()
    heavy = msgspec.json.encode([record("api", T0, 500, 2**40)] * 100_000)
    good = msgspec.json.encode(record("api", T0, 200, 3))
    result = Ingestor(ev).records([heavy] * 86 + [good], now_s=T0 + 10)
    assert [r.reason for r in result.rejections] == ["bad_value"] * 86
    assert ev.rejected_counts() == {"bad_value": 86}
    assert totals(ev) == [(3, 0), (0, 0)]


def test_20000_records_of_2_to_the_40_minus_1_are_rejected() -> None:
    """Once: they were counted, off by thousands (float64 weights). Now `bad_value`."""
    ev = evaluator()
    values = [msgspec.json.encode(record("api", T0, 200, 2**40 - 1))] * 20_000
    Ingestor(ev).records(values, now_s=T0 + 10)
    assert ev.rejected_counts() == {"bad_value": 20_000}
    assert totals(ev) == [(0, 0), (0, 0)]


def test_the_largest_weight_is_counted_exactly() -> None:
    ev = evaluator()
    values = [
        msgspec.json.encode(record("api", T0 + i / 100, 500, MAX_COUNT)) for i in range(20_000)
    ]
    over = msgspec.json.encode(record("api", T0, 500, MAX_COUNT + 1))
    Ingestor(ev).records([*values, over], now_s=T0 + 1000)
    ev.advance(T0 + 300)
    assert totals(ev) == [(20_000 * MAX_COUNT, 20_000 * MAX_COUNT), (0, 0)]
    assert ev.rejected_counts() == {"bad_value": 1}
    assert ev.window_sums()[ev.window_index(3600), 0].tolist() == [20_000 * MAX_COUNT] * 2


# --- exact integer sums past the decoder ---------------------------------------------------


def test_20000_events_of_2_to_the_40_minus_1_sum_exactly() -> None:
    """The float64 weights of np.bincount were off by +3,615 here; int64 adds are exact.
    The batch is split over two 10 s buckets (1.1e16 each, still past 2^53): one bucket
    of the 10 s ring, 428 buckets long, holds at most (2^63 - 1) / 428 = 2.15e16."""
    ev = evaluator()
    cols = columns(ev, T0, 2**40 - 1, 20_000, status=200)
    ev.ingest(dataclasses.replace(cols, ts_s=np.repeat([T0 - 10, T0], 10_000)))
    ev.advance(T0 + 60)
    exact = 20_000 * (2**40 - 1)
    assert totals(ev) == [(exact, 0), (0, 0)]
    assert ev.window_sums()[ev.window_index(3600), 0].tolist() == [exact, 0]


def test_86_batches_that_overflow_int64_saturate_instead_of_wrapping() -> None:
    """The scenario that wrapped to -8990944074835951616 (86 x 100,000 x 2^40 = 1.02
    x 2^63), with the same overflow from 1,000-event batches of 2^47: the totals stop at
    2^63 - 1, windows stay non-negative, and the state saves and loads."""
    ev = evaluator()
    for k in range(86):
        ev.ingest(columns(ev, T0 + k / 100, 2**47, 1_000))
        assert_sane(ev)
    ev.advance(T0 + 60)
    assert totals(ev) == [(INT64_MAX, INT64_MAX), (0, 0)]
    assert_sane(ev)
    assert (ev.window_sums()[:, 0, 0] > 2**50).all()
    restored = evaluator()
    snapshot.load(restored, snapshot.dump(ev))
    assert totals(restored) == totals(ev)
    np.testing.assert_array_equal(restored.window_sums(), ev.window_sums())
    assert_sane(restored)


batch_st = st.lists(
    st.tuples(
        st.sampled_from(["api", "web"]),
        st.sampled_from([200, 404, 500, 503]),
        st.one_of(st.integers(1, MAX_COUNT), st.just(MAX_COUNT)),
    ),
    min_size=1,
    max_size=20,
)


@settings(max_examples=60, deadline=None)
@given(st.lists(batch_st, min_size=1, max_size=8))
def test_counts_of_the_heaviest_records_equal_python_int_sums(
    batches: list[list[tuple[str, int, int]]],
) -> None:
    ev = evaluator()
    ing = Ingestor(ev)
    expected = {"api": [0, 0], "web": [0, 0]}
    ts = T0
    for batch in batches:
        values = []
        for service, status, count in batch:
            ts += 0.25
            values.append(msgspec.json.encode(record(service, ts, status, count)))
            expected[service][0] += count
            expected[service][1] += count if status >= 500 else 0
        ing.records(values, now_s=ts)
    ev.advance(ts + 20)
    want = [tuple(expected["api"]), tuple(expected["web"])]
    assert totals(ev) == want
    hour = ev.window_sums()[ev.window_index(3600)]
    assert [tuple(int(x) for x in row) for row in hour] == want


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(1, 2**58), st.integers(1, 16), st.booleans()),
        min_size=1,
        max_size=30,
    )
)
def test_hostile_weights_saturate_the_totals_like_a_python_model(
    batches: list[tuple[int, int, bool]],
) -> None:
    """Weights the decoder would refuse, fed straight to the evaluator (each batch still
    sums below 2^63): totals follow min(total + batch, 2^63 - 1), bad <= total."""
    ev = evaluator()
    total = bad = 0
    for k, (weight, n, failed) in enumerate(batches):
        ev.ingest(columns(ev, T0 + k, weight, n, status=500 if failed else 200))
        total = min(total + weight * n, INT64_MAX)
        bad = min(bad + (weight * n if failed else 0), total)
        assert totals(ev) == [(total, bad), (0, 0)]
        assert_sane(ev)


# --- strings: bounded at the wire, so the key cache cannot grow by their size -----------


def test_3000_operations_of_100_kb_are_rejected_and_not_cached() -> None:
    """Once: 3,000 distinct 100 KB operations took the key cache from 139 to 430 MB RSS."""
    ev = evaluator()
    values = [
        msgspec.json.encode({"service": "api", "ts": T0, "operation": f"{k:04d}" + "o" * 100_000})
        for k in range(3000)
    ]
    Ingestor(ev).records(values, now_s=T0 + 10)
    assert ev.rejected_counts() == {"bad_value": 3000}
    assert ev.classifier.key_count == 0
    assert ev.classifier.key_bytes == 0


def test_3000_operations_at_the_length_bound_cost_little() -> None:
    ev = evaluator()
    values = [
        msgspec.json.encode(
            {"service": "api", "ts": T0, "operation": f"{k:04d}" + "\U0001f600" * 252}
        )
        for k in range(3000)
    ]
    Ingestor(ev).records(values, now_s=T0 + 10)
    assert ev.rejected_counts() == {}
    assert ev.classifier.key_count == 3000
    assert ev.classifier.key_bytes < 3000 * 2000  # under 2 KB a key, wide characters
