"""The ingest role's pre-aggregation (engine.core.deltas_aggregate) against a dict."""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.core.config import parse_config
from engine.core.deltas import decode_delta, encode_delta
from engine.core.deltas_aggregate import DeltaAggregator, SloDelta
from engine.core.evaluator import Evaluator
from engine.core.ingest import Ingestor

# Three configured SLOs: 0 plain (column 0), 1 grouped (columns 1..3, 3 the overflow),
# 2 plain (column 4).
COLUMN_SLO = [0, 1, 1, 1, 2]
NAMES = ["a", "g", "b"]
GROUPED = [False, True, False]
GROUP_NAMES = {1: "region=eu", 2: "region=us", 3: "__other__"}

Pair = tuple[int, float, int, int]  # column, ts, total, bad


@st.composite
def pair_batches(draw: st.DrawFn) -> list[list[Pair]]:
    base = draw(st.integers(0, 2_000_000_000))
    pair = st.tuples(
        st.integers(0, len(COLUMN_SLO) - 1),
        st.floats(0, 30, allow_nan=False).map(lambda d: base + d),
        st.integers(1, 1000),
    ).flatmap(
        lambda p: st.tuples(st.just(p[0]), st.just(p[1]), st.just(p[2]), st.integers(0, p[2]))
    )
    return draw(st.lists(st.lists(pair, max_size=40), max_size=8))


def _aggregator() -> DeltaAggregator:
    return DeltaAggregator(COLUMN_SLO, NAMES, GROUPED, GROUP_NAMES.get)


def _add(agg: DeltaAggregator, batch: list[Pair]) -> None:
    col = np.array([p[0] for p in batch], dtype=np.int32)
    ts = np.array([p[1] for p in batch], dtype=np.float64)
    total = np.array([p[2] for p in batch], dtype=np.int64)
    bad = np.array([p[3] for p in batch], dtype=np.int64)
    agg.add(col, ts, total, bad)


def _naive(batches: list[list[Pair]]) -> dict[tuple[str, str | None, int], tuple[int, int]]:
    out: dict[tuple[str, str | None, int], list[int]] = defaultdict(lambda: [0, 0])
    for batch in batches:
        for col, ts, total, bad in batch:
            j = COLUMN_SLO[col]
            cell = out[(NAMES[j], GROUP_NAMES.get(col) if GROUPED[j] else None, math.floor(ts))]
            cell[0] += total
            cell[1] += bad
    return {k: (v[0], v[1]) for k, v in out.items()}


def _cells(deltas: list[SloDelta]) -> dict[tuple[str, str | None, int], tuple[int, int]]:
    out: dict[tuple[str, str | None, int], tuple[int, int]] = {}
    for d in deltas:
        groups = d.groups if d.groups is not None else [None] * len(d.seconds)
        for g, s, t, b in zip(groups, d.seconds, d.total, d.bad, strict=True):
            key = (d.slo, g, s)
            assert key not in out, f"cell {key} twice"
            out[key] = (t, b)
    return out


@given(pair_batches())
def test_drain_sums_every_cell_as_a_dict_does(batches: list[list[Pair]]) -> None:
    agg = _aggregator()
    for batch in batches:
        _add(agg, batch)
    deltas = agg.drain()
    assert _cells(deltas) == _naive(batches)
    # one record per SLO, in SLO order, each a valid counts record
    assert [d.slo for d in deltas] == [n for n in NAMES if any(d.slo == n for d in deltas)]
    for d in deltas:
        assert (d.groups is not None) == GROUPED[NAMES.index(d.slo)]
        if d.groups is not None:  # seconds ascend within each group
            for g in set(d.groups):
                secs = [s for s, gg in zip(d.seconds, d.groups, strict=True) if gg == g]
                assert secs == sorted(secs)
        else:
            assert d.seconds == sorted(d.seconds)
        decoded = decode_delta(encode_delta(d.slo, 1.0, d.seconds, d.total, d.bad, d.groups))
        assert decoded.total == d.total
    assert agg.drain() == []


@given(pair_batches(), st.data())
def test_drains_anywhere_add_up_to_one_drain(
    batches: list[list[Pair]], data: st.DataObject
) -> None:
    agg = _aggregator()
    summed: dict[tuple[str, str | None, int], tuple[int, int]] = {}
    for batch in batches:
        _add(agg, batch)
        if data.draw(st.booleans()):
            for k, (t, b) in _cells(agg.drain()).items():
                t0, b0 = summed.get(k, (0, 0))
                summed[k] = (t0 + t, b0 + b)
    for k, (t, b) in _cells(agg.drain()).items():
        t0, b0 = summed.get(k, (0, 0))
        summed[k] = (t0 + t, b0 + b)
    assert summed == _naive(batches)


def test_many_batches_are_merged_not_kept_one_by_one() -> None:
    agg = _aggregator()
    for i in range(200):
        _add(agg, [(0, 100.0 + (i % 3), 1, 0)])
    assert agg.cells <= 64 * 3
    assert agg.drain() == [SloDelta("a", [100, 101, 102], [67, 67, 66], [0, 0, 0], None)]


def test_an_unassigned_group_column_is_an_error() -> None:
    agg = DeltaAggregator(COLUMN_SLO, NAMES, GROUPED, lambda c: None)
    _add(agg, [(1, 5.0, 1, 0)])
    with pytest.raises(ValueError, match="no group"):
        agg.drain()


CONFIG = """
slos:
  - {name: avail, service: checkout, sli: availability, objective: 99.9}
  - {name: lat, service: checkout, sli: latency, threshold_ms: 300, objective: 99}
  - name: by-region
    service: checkout
    sli: availability
    objective: 99
    group_by: [region]
    max_groups: 2
"""


@given(
    st.lists(
        st.tuples(
            st.integers(0, 120),
            st.sampled_from([200, 500, 503, 404]),
            st.one_of(st.none(), st.floats(1, 1000)),
            st.sampled_from(["eu", "us", "ap", "sa"]),
            st.integers(1, 5),
        ),
        max_size=60,
    )
)
def test_fed_by_the_evaluator_it_holds_the_evaluators_counts(
    events: list[tuple[int, int, float | None, str, int]],
) -> None:
    """On `Evaluator.on_counted`, the aggregator's sums are the evaluator's own per-SLO
    (and per-group) totals: every counted pair reaches it once, groups by name."""
    import msgspec

    config = parse_config(CONFIG)
    ev = Evaluator(config)
    agg = DeltaAggregator(
        ev.column_slo,
        [s.name for s in ev.config_slos],
        [bool(s.group_by) for s in ev.config_slos],
        ev.group_of,
    )
    ev.on_counted = agg.add
    ingestor = Ingestor(ev)
    records = [
        msgspec.json.encode(
            {
                "service": "checkout",
                "ts": 1_700_000_000 + t,
                "status": status,
                "labels": {"region": region},
                "count": count,
                **({} if latency is None else {"latency_ms": latency}),
            }
        )
        for t, status, latency, region, count in events
    ]
    for i in range(0, len(records), 7):
        ingestor.records(records[i : i + 7], now_s=1_700_000_200.0)
    totals: dict[tuple[str, str | None], list[int]] = defaultdict(lambda: [0, 0])
    for d in agg.drain():
        groups = d.groups if d.groups is not None else [None] * len(d.seconds)
        for g, t, b in zip(groups, d.total, d.bad, strict=True):
            totals[(d.slo, g)][0] += t
            totals[(d.slo, g)][1] += b
    counts = ev.counts()
    expected: dict[tuple[str, str | None], list[int]] = {}
    for col, name in enumerate(ev.names):
        t, b = int(counts.events_total[col]), int(counts.bad_events_total[col])
        if t:
            expected[(name, ev.group_of(col))] = [t, b]
    assert dict(totals) == expected
