"""A naive pure-Python SLO engine (dicts and deques): the second baseline of bench_core.

The same semantics as the engine for the benchmark's traffic (availability and latency
SLOs, the multi-window rule, ticks on the event-time grid), written the obvious way:
one Python object per event and a deque of per-bucket counts per SLO and window.
"""

from __future__ import annotations

import math
from collections import deque
from pathlib import Path

import msgspec

from engine.core.config import Config
from engine.core.decode import Event
from engine.core.taxonomy import Outcome, SliKind, classify
from engine.core.windows import resolution_for


class NaiveWindow:
    def __init__(self, window_s: int, tick_s: float) -> None:
        self.r = resolution_for(window_s, tick_s)
        self.n = window_s // self.r
        self.buckets: deque[list[int]] = deque()  # [bucket, total, bad]
        self.total = 0
        self.bad = 0

    def add(self, ts: float, total: int, bad: int) -> None:
        b = math.ceil(ts / self.r) - 1
        if self.buckets and self.buckets[-1][0] == b:
            self.buckets[-1][1] += total
            self.buckets[-1][2] += bad
        else:
            self.buckets.append([b, total, bad])
        self.total += total
        self.bad += bad

    def expire(self, t: float) -> None:
        oldest = math.ceil(t / self.r) - self.n
        while self.buckets and self.buckets[0][0] < oldest:
            _, tot, bd = self.buckets.popleft()
            self.total -= tot
            self.bad -= bd


def naive_replay(config: Config, path: Path, limit: int) -> int:
    """Replay up to `limit` lines; returns the number of alert transitions."""
    dec = msgspec.json.Decoder(Event)
    windows_s = config.windows_s()
    tick = config.evaluation.tick_s
    state = [
        {"slo": slo, "w": {w: NaiveWindow(w, tick) for w in windows_s}, "firing": {}}
        for slo in config.slos
    ]
    by_service: dict[str, list[dict[str, object]]] = {}
    for st in state:
        by_service.setdefault(st["slo"].service, []).append(st)  # type: ignore[union-attr]
    next_tick: float | None = None
    transitions = 0
    with path.open("rb") as f:
        for n, line in enumerate(f):
            if n >= limit:
                break
            e = dec.decode(line)
            assert e.ts is not None
            if next_tick is None:
                next_tick = math.ceil(e.ts / tick) * tick
            while next_tick < e.ts:
                transitions += _evaluate(config, state, next_tick)
                next_tick += tick
            failed = classify(e.status, e.ok, config.taxonomy) == Outcome.BAD
            for st in by_service.get(e.service, ()):
                slo = st["slo"]
                if slo.sli == SliKind.LATENCY:  # type: ignore[attr-defined]
                    if e.latency_ms is None or math.isnan(e.latency_ms):
                        continue
                    bad = e.latency_ms > slo.threshold_ms or (failed and slo.failed_counts_bad)  # type: ignore[attr-defined]
                else:
                    bad = failed
                for w in st["w"].values():  # type: ignore[attr-defined]
                    w.add(e.ts, e.count, e.count if bad else 0)
    return transitions


def _evaluate(config: Config, state: list[dict[str, object]], t: float) -> int:
    out = 0
    for st in state:
        slo = st["slo"]
        budget = slo.error_budget_ratio  # type: ignore[attr-defined]
        windows = st["w"]
        for w in windows.values():  # type: ignore[attr-defined]
            w.expire(t)
        firing: dict[str, bool] = st["firing"]  # type: ignore[assignment]
        for sev in ("page", "ticket"):
            holds = False
            for row in config.policy:
                if row.severity != sev:
                    continue
                f = row.factor_for(slo.period_s)  # type: ignore[attr-defined]
                lw, sw = windows[row.long_s], windows[row.short_s]  # type: ignore[index]
                if (
                    lw.total
                    and sw.total
                    and lw.bad / lw.total / budget >= f
                    and (sw.bad / sw.total / budget >= f)
                ):
                    holds = True
                    break
            if holds != firing.get(sev, False):
                firing[sev] = holds
                out += 1
    return out
