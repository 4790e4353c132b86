"""The UI's downsampled history: tiers against a naive model, and sampling a real evaluator."""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.core.config import parse_config
from engine.core.decode import Event
from engine.core.evaluator import Evaluator
from engine.core.history import DEFAULT_TIERS, F16_MAX, History, HistoryTier, Tier

N_SLO, N_WIN = 2, 3

Sample = tuple[float, list[float], list[list[float]], list[int], list[int]]
"""(t, budget per SLO, burn per SLO per window, good per SLO, bad per SLO)"""

finite_or_nan = st.one_of(
    st.just(math.nan), st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)
)


@st.composite
def samples(draw: st.DrawFn) -> list[Sample]:
    t = draw(st.floats(0, 1e6, allow_nan=False))
    out: list[Sample] = []
    for _ in range(draw(st.integers(1, 60))):
        t += draw(st.one_of(st.just(0.0), st.floats(0, 50), st.floats(0, 5000)))
        out.append(
            (
                t,
                [draw(finite_or_nan) for _ in range(N_SLO)],
                [[draw(finite_or_nan) for _ in range(N_WIN)] for _ in range(N_SLO)],
                [draw(st.integers(0, 1000)) for _ in range(N_SLO)],
                [draw(st.integers(0, 1000)) for _ in range(N_SLO)],
            )
        )
    return out


def f16(x: float) -> float:
    return float(np.float16(min(max(x, -F16_MAX), F16_MAX))) if not math.isnan(x) else math.nan


def naive(tier: Tier, data: list[Sample], column: int) -> dict[str, Any]:
    """Group by bucket, keep the newest `points` buckets; last time, last budget with
    data, highest burn with data, summed counts."""
    buckets: dict[int, list[Sample]] = defaultdict(list)
    for s in data:
        buckets[math.floor(s[0] / tier.resolution_s)].append(s)
    newest = max(buckets)
    kept = sorted(b for b in buckets if b > newest - tier.points)
    out: dict[str, Any] = {"t": [], "budget": [], "good": [], "bad": [], "burn": []}
    for b in kept:
        group = buckets[b]
        out["t"].append(group[-1][0])
        budgets = [f16(s[1][column]) for s in group if not math.isnan(s[1][column])]
        out["budget"].append(budgets[-1] if budgets else None)
        out["good"].append(float(sum(s[3][column] for s in group)))
        out["bad"].append(float(sum(s[4][column] for s in group)))
        burns = []
        for w in range(N_WIN):
            vals = [f16(s[2][column][w]) for s in group if not math.isnan(s[2][column][w])]
            burns.append(max(vals) if vals else None)
        out["burn"].append(burns)
    return out


@settings(max_examples=200, deadline=None)
@given(
    data=samples(),
    resolution_s=st.sampled_from([1, 7, 60, 3600]),
    points=st.integers(1, 12),
)
def test_a_tier_keeps_what_the_naive_model_keeps(
    data: list[Sample], resolution_s: int, points: int
) -> None:
    tier = Tier(resolution_s, points)
    ring = HistoryTier(tier, N_SLO, N_WIN)
    for t, budget, burn, good, bad in data:
        ring.add(
            t,
            np.clip(np.array(budget), -F16_MAX, F16_MAX).astype(np.float16),
            np.clip(np.array(burn), -F16_MAX, F16_MAX).astype(np.float16),
            np.array(good, dtype=np.float32),
            np.array(bad, dtype=np.float32),
        )
    for column in range(N_SLO):
        got = ring.series(column)
        want = naive(tier, data, column)
        assert got.t_s == want["t"]
        assert got.budget_remaining == want["budget"]
        assert got.good == want["good"]
        assert got.bad == want["bad"]
        assert [list(p) for p in zip(*got.burn_rates, strict=True)] == want["burn"]
        assert len(got.t_s) <= points


def test_a_gap_longer_than_the_tier_leaves_only_the_new_point() -> None:
    ring = HistoryTier(Tier(60, 5), 1, 1)
    one = np.ones(1, dtype=np.float16), np.ones((1, 1), dtype=np.float16)
    counts = np.ones(1, dtype=np.float32), np.zeros(1, dtype=np.float32)
    ring.add(0.0, *one, *counts)
    ring.add(60.0 * 100, *one, *counts)
    assert ring.series(0).t_s == [6000.0]


def test_tiers_need_a_resolution_and_points() -> None:
    with pytest.raises(ValueError, match="resolution_s >= 1"):
        Tier(0, 10)
    with pytest.raises(ValueError, match="points >= 1"):
        Tier(60, 0)


CONFIG = """\
slos:
  - {name: shop, service: shop, sli: availability, objective: 99}
  - {name: blog, service: blog, sli: availability, objective: 99.9}
"""


def test_it_samples_a_real_evaluator_budget_burn_rates_and_events() -> None:
    ev = Evaluator(parse_config(CONFIG))
    history = History(ev)
    assert history.windows_s == (300, 1800, 3600, 7200, 21600, 86400, 259200)
    t0 = 1_700_000_040.0
    history.observe(ev)  # before the first evaluation: nothing
    assert history.series(0)[0].t_s == []
    batch = [Event(service="shop", ts=t0 + i, status=500 if i % 4 == 0 else 200) for i in range(40)]
    ev.ingest(ev.classifier.columns(batch))
    ev.advance(t0 + 50)
    history.observe(ev)
    fine = history.series(0)[0]
    assert fine.t_s == [ev.evaluated_at_s]
    assert fine.good == [30.0]
    assert fine.bad == [10.0]
    assert fine.budget_remaining == [pytest.approx(float(ev.budget_remaining()[0]), abs=1e-3)]
    burn = ev.burn_rates()[:, 0]
    for w, series in zip(history.windows_s, fine.burn_rates, strict=True):
        assert series == [pytest.approx(burn[ev.window_index(w)], rel=1e-3)]
    blog = history.series(1)[0]
    assert blog.budget_remaining == [None]
    assert blog.burn_rates[0] == [None]
    assert blog.good == [0.0]
    # the next minute: a new point, with only the events counted since
    ev.ingest(ev.classifier.columns([Event(service="shop", ts=t0 + 70, status=200)]))
    ev.advance(t0 + 80)
    history.observe(ev)
    fine = history.series(0)[0]
    assert fine.good == [30.0, 1.0]
    assert fine.bad == [10.0, 0.0]
    # after a restore, the loaded counts are not new events
    history.rebase(ev)
    history.observe(ev)
    assert history.series(0)[0].good == [30.0, 1.0]


def test_memory_per_slo_is_within_8_kib_for_30_days_with_the_default_policy() -> None:
    ev = Evaluator(parse_config(CONFIG))
    history = History(ev)
    assert max(t.span_s for t in DEFAULT_TIERS) == 30 * 86400
    assert history.bytes_per_slo == 312 * (10 + 2 * 7) == 7488
    shared = sum(t.t_s.nbytes for t in history.tiers)
    assert history.nbytes == shared + 2 * history.bytes_per_slo
