"""The postmortem core: burn-rate series against a naive sum, interval counts read from
a real evaluator's rings against the events themselves (the coarse ring's newest
bucket included), and the Markdown draft parsed back."""

from __future__ import annotations

import json
import math

import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from markdown_it import MarkdownIt

from engine.core.config import parse_config
from engine.core.evaluator import Evaluator
from engine.core.incident_values import Incident, TimelineEntry
from engine.core.ingest import Ingestor
from engine.core.postmortem import (
    MAX_POINTS,
    Postmortem,
    burn_series,
    postmortem_of,
    range_total,
)
from engine.core.postmortem_markdown import markdown

T0 = 1_767_225_600


@given(
    cells=st.lists(st.tuples(st.integers(0, 50), st.integers(0, 50)), min_size=1, max_size=60),
    r=st.sampled_from([1, 10, 60]),
    buckets=st.integers(1, 20),
    since=st.integers(0, 59),
)
def test_burn_series_is_the_sum_over_each_window(
    cells: list[tuple[int, int]], r: int, buckets: int, since: int
) -> None:
    a = np.array([(t + b, b) for t, b in cells], dtype=np.int64)  # bad <= total
    first_end = T0 + r
    times, values = burn_series(a, first_end, r, buckets * r, first_end + since * r, 0.01)
    want_times = [first_end + k * r for k in range(since, len(a))]
    assert times == want_times
    for t, got in zip(times, values, strict=True):
        k = int((t - first_end) / r)
        window = a[max(0, k + 1 - buckets) : k + 1]
        total, bad = int(window[:, 0].sum()), int(window[:, 1].sum())
        if total == 0:
            assert got is None
        else:
            assert got is not None
            assert math.isclose(got, bad / total / 0.01)


def test_burn_series_keeps_at_most_max_points() -> None:
    a = np.ones((3 * MAX_POINTS, 2), dtype=np.int64)
    times, values = burn_series(a, 10.0, 10, 60, 0.0, 0.5)
    assert len(times) == len(values) <= MAX_POINTS
    assert times == sorted(times)
    assert set(values) == {2.0}


def evaluator_with(seconds: int) -> tuple[Evaluator, list[float]]:
    """An evaluator of a 1-minute and a 30-day window (rings of 1 s and 1 h buckets)
    that took one shop event a second (every 7th failing) for `seconds`."""
    ev = Evaluator(
        parse_config(
            "slos:\n"
            "  - {name: shop-avail, service: shop, sli: availability, objective: 99}\n"
            "policy:\n"
            "  - {severity: page, long: 1m, short: 10s, burn_rate: 14.4}\n"
            "evaluation: {tick: 1s}\n"
        )
    )
    ts = [T0 + s + 0.5 for s in range(seconds)]
    lines = [
        json.dumps({"service": "shop", "ts": t, "status": 500 if k % 7 == 0 else 200})
        for k, t in enumerate(ts)
    ]
    Ingestor(ev).json_lines(("\n".join(lines) + "\n").encode(), stream_future=True)
    return ev, ts


def naive(ts: list[float], start: float, end: float) -> tuple[int, int]:
    inside = [k for k, t in enumerate(ts) if start < t <= end]
    return len(inside), sum(k % 7 == 0 for k in inside)


def test_range_total_counts_the_coarse_rings_newest_bucket_up_to_the_end() -> None:
    ev, ts = evaluator_with(2 * 3600 + 1234)
    cols = np.array([0], dtype=np.int64)
    assert ev.evaluated_at_s is not None
    end = ev.evaluated_at_s - 20  # the 1 s ring still reaches back here
    got = range_total(ev.bucket_sums, end - 30 * 86400, end, cols)
    assert got is not None
    total, bad, r = got
    assert r == 3600
    assert (total, bad) == naive(ts, end - 30 * 86400, end)
    # an hour back, no finer ring reaches the end: rounded up to the hour bucket
    end = ev.evaluated_at_s - 3600 - 20
    got = range_total(ev.bucket_sums, end - 30 * 86400, end, cols)
    assert got is not None
    assert got[:2] == naive(ts, end - 30 * 86400, math.ceil(end / 3600) * 3600)
    # nothing reaches back further than the longest ring
    assert range_total(ev.bucket_sums, end - 40 * 86400, end, cols) is None


def test_an_open_incidents_impact_runs_to_the_end_of_the_data() -> None:
    ev, ts = evaluator_with(600)
    assert ev.evaluated_at_s is not None
    inc = Incident(id="1-a", service="shop", state="open", opened_at=T0 + 300, slos=("shop-avail",))
    pm = postmortem_of(inc, ev, ev.bucket_sums, ev.evaluated_at_s)
    assert (pm.impact_start_s, pm.impact_end_s) == (T0 + 300, ev.evaluated_at_s)
    [slo] = pm.slos
    assert (slo.total_events, slo.bad_events) == naive(ts, T0 + 300, ev.evaluated_at_s)
    assert slo.resolution_s == 1
    [charts] = pm.charts
    assert [s.label for s in charts.burn_rates] == ["page long 60s", "page short 10s"]


def test_markdown_escapes_and_fills_the_template() -> None:
    inc = Incident(
        id="1767229300-abc",
        service="shop",
        state="closed",
        opened_at=T0 + 600,
        closed_at=T0 + 1800,
        onset_at=T0 + 500,
        acknowledged_at=T0 + 660,
        acknowledged_by="alice",
        resolved_at=T0 + 900,
        slos=("shop-avail",),
        timeline=(
            TimelineEntry(at=T0 + 400, kind="change", text="deploy v1|2"),
            TimelineEntry(at=T0 + 600, kind="opened", text="opened by page shop-avail firing"),
            TimelineEntry(at=T0 + 700, kind="change", text="rollback v1"),
        ),
    )
    ev, _ = evaluator_with(2000)
    pm = postmortem_of(inc, ev, ev.bucket_sums, T0 + 2000, charts=False)
    assert [c.text for c in pm.changes] == ["deploy v1|2"]  # the one before the onset
    text = markdown(Postmortem(incidents=[pm], source="live"), "the engine", {}, "no charts")
    tokens = MarkdownIt("commonmark").enable("table").parse(text)
    rows: list[list[str]] = []
    for t in tokens:
        if t.type == "tr_open":
            rows.append([])
        elif t.type == "inline" and rows and t.level > 0:
            rows[-1].append(t.content)
    assert ["2026-01-01 00:06:40Z", "deploy v1|2"] in rows  # one cell despite the pipe
    assert ["Acknowledged", "2026-01-01 00:11:00Z", "1m to acknowledge"] in rows
    assert ["Onset (estimated)", "2026-01-01 00:08:20Z", "-"] in rows
    assert ["Detected (first page)", "2026-01-01 00:10:00Z", "1m40s to detect"] in rows
    assert "no charts" in text
    assert text.count("<!--") == 4  # the human sections' prompts
