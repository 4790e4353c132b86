"""Recordings and the prefix-sum baseline of the multi-tick rows of `bench_core`.

Two generated recordings (cached under `benchmarks/data`):

- `sparse_recording`: `days` days of sparse, count-weighted traffic for 2 services with
  an availability and a latency SLO each (4 SLOs): about 1.7 lines a second, each line
  one event with a `count` of 1 to 50 requests, and a 20-minute outage (40 % of
  requests fail) a day per service, at its own hour. Four days: about 580,000 lines
  and 15 M requests, the shape of the recording the work was measured on.
- `month_recording`: `days` days of single events for 50 services with an
  availability and a latency SLO each (100 SLOs), about 5 M events in 30 days,
  with a 30-minute outage a day at one service in turn. Day d is generated from its
  own seed, so a shorter recording is the same traffic as the start of a longer one.

`prefix_sum_alerts` is the baseline the issue names: what a plain numpy program does
to find the same alert intervals, with no engine: stdlib `json` per line, per-second
(total, bad) arrays per SLO, cumulative sums, and every policy row checked at every
10 s tick from differences of the cumulative sums (exact windows (T - W, T] of whole
seconds, where the engine's long windows use coarser buckets within max(W/600, 1 s) of
their length, so a few intervals may start or end a tick apart).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from benchmarks.common import DATA, best_of
from engine.core.config import Config, parse_config
from engine.core.evaluator import Evaluator
from engine.runtime.replay import replay

START = 1_767_225_600
DAY_S = 86_400
LATENCY_MS = 300
"""The latency SLOs' threshold."""


def config_text(services: int, *, objective: float = 99.5) -> str:
    """An availability and a latency SLO per service, the default policy and tick."""
    lines = ["slos:"]
    for i in range(services):
        lines.append(
            f"  - {{name: svc-{i}-avail, service: svc-{i}, sli: availability, "
            f"objective: {objective}}}"
        )
        lines.append(
            f"  - {{name: svc-{i}-lat, service: svc-{i}, sli: latency, "
            f"threshold_ms: {LATENCY_MS}, objective: {objective}}}"
        )
    return "\n".join(lines) + "\n"


def _write_lines(
    f: BinaryIO,
    ts: np.ndarray,
    svc: np.ndarray,
    status: np.ndarray,
    lat: np.ndarray,
    count: np.ndarray,
) -> None:
    out = [
        f'{{"service":"svc-{s}","ts":{t:.3f},"status":{st},"latency_ms":{la:.1f},"count":{c}}}\n'
        for t, s, st, la, c in zip(
            ts.tolist(), svc.tolist(), status.tolist(), lat.tolist(), count.tolist(), strict=True
        )
    ]
    f.write("".join(out).encode())


def sparse_recording(days: int) -> tuple[Path, int, int]:
    """The sparse recording: (path, lines, requests)."""
    DATA.mkdir(parents=True, exist_ok=True)
    path = DATA / f"sparse-{days}d.jsonl"
    rng = np.random.default_rng(17)
    n = rng.poisson(1.68 * days * DAY_S)
    ts = np.sort(START + rng.random(n) * days * DAY_S)
    svc = rng.integers(0, 2, n)
    count = rng.integers(1, 51, n)
    in_day = (ts - START) % DAY_S
    down = (in_day >= (3 + 7 * svc) * 3600) & (in_day < (3 + 7 * svc) * 3600 + 1200)
    fail = rng.random(n) < np.where(down, 0.4, 0.0005)
    status = np.where(fail, 503, 200)
    slow = rng.random(n) < np.where(down, 0.4, 0.002)
    lat = np.where(slow, 900.0, np.round(rng.lognormal(4.0, 0.4, n), 1))
    if not path.exists():
        with path.open("wb") as f:
            _write_lines(f, ts, svc, status, lat, count)
    return path, n, int(count.sum())


def month_recording(days: int) -> tuple[Path, int]:
    """The 100-SLO recording: (path, events)."""
    DATA.mkdir(parents=True, exist_ok=True)
    path = DATA / f"month-{days}d.jsonl"
    total = 0
    with_file = not path.exists()
    f = path.open("wb") if with_file else None
    try:
        for d in range(days):
            rng = np.random.default_rng(1000 + d)
            n = rng.poisson(5_000_000 / 30)
            total += n
            if f is None:
                continue
            ts = np.sort(START + d * DAY_S + rng.random(n) * DAY_S)
            svc = rng.integers(0, 50, n)
            in_day = ts - START - d * DAY_S
            down = (svc == d % 50) & (in_day >= 10 * 3600) & (in_day < 10 * 3600 + 1800)
            status = np.where(rng.random(n) < np.where(down, 0.5, 0.0005), 500, 200)
            lat = np.round(rng.lognormal(4.0, 0.4, n), 1)
            _write_lines(f, ts, svc, status, lat, np.ones(n, dtype=np.int64))
    finally:
        if f is not None:
            f.close()
    return path, total


def prefix_sum_alerts(config: Config, path: Path) -> list[tuple[str, str, int, int]]:
    """The baseline: every (SLO, severity, start tick, end tick) interval in which some
    policy row holds (long and short window both burn at >= its factor), with nothing
    but `json`, per-second arrays and cumulative sums. Availability SLOs count a 5xx as
    bad, latency SLOs a latency over the threshold (`config_text`'s SLOs)."""
    slos = list(config.slos)
    index = {s.service: i for i, s in enumerate(slos) if s.sli == "availability"}
    ts_l: list[float] = []
    svc_l: list[int] = []
    status_l: list[int] = []
    lat_l: list[float] = []
    count_l: list[int] = []
    with path.open("rb") as f:
        for line in f:
            e = json.loads(line)
            ts_l.append(e["ts"])
            svc_l.append(index[e["service"]])
            status_l.append(e["status"])
            lat_l.append(e["latency_ms"])
            count_l.append(e.get("count", 1))
    ts = np.array(ts_l)
    col = np.array(svc_l)
    count = np.array(count_l, dtype=np.int64)
    t0 = int(ts.min())
    sec = np.ceil(ts).astype(np.int64) - t0  # second s holds (s - 1, s]
    n_sec = int(sec.max()) + 1
    n = len(slos)
    total = np.zeros((n, n_sec), dtype=np.int64)
    bad = np.zeros((n, n_sec), dtype=np.int64)
    bad_avail = np.where(np.array(status_l) >= 500, count, 0)
    bad_lat = np.where(np.array(lat_l) > LATENCY_MS, count, 0)
    np.add.at(total, (col, sec), count)
    np.add.at(bad, (col, sec), bad_avail)
    np.add.at(total, (col + 1, sec), count)
    np.add.at(bad, (col + 1, sec), bad_lat)
    cs_t = np.concatenate([np.zeros((n, 1), dtype=np.int64), np.cumsum(total, axis=1)], axis=1)
    cs_b = np.concatenate([np.zeros((n, 1), dtype=np.int64), np.cumsum(bad, axis=1)], axis=1)
    tick = int(config.evaluation.tick_s)
    ticks = np.arange(-(t0 % tick) + tick, n_sec, tick)  # seconds since t0 on the grid
    budget = np.array([s.error_budget_ratio for s in slos])[:, None]

    def burn(w: int) -> np.ndarray:
        hi = ticks + 1
        lo = np.maximum(hi - w, 0)
        t = cs_t[:, hi] - cs_t[:, lo]
        b = cs_b[:, hi] - cs_b[:, lo]
        with np.errstate(invalid="ignore", divide="ignore"):
            out: np.ndarray = (b / t) / budget
        return out

    out: list[tuple[str, str, int, int]] = []
    cache: dict[int, np.ndarray] = {}
    for sev in ("page", "ticket"):
        holds = np.zeros((n, len(ticks)), dtype=bool)
        for row in config.policy:
            if row.severity != sev:
                continue
            f = row.factor_for(slos[0].period_s)
            long_b = cache.setdefault(row.long_s, burn(row.long_s))
            short_b = cache.setdefault(row.short_s, burn(row.short_s))
            holds |= (long_b >= f) & (short_b >= f)
        edge = np.diff(holds.astype(np.int8), axis=1, prepend=0, append=0)
        for i in range(n):
            starts = np.flatnonzero(edge[i] == 1)
            ends = np.flatnonzero(edge[i] == -1)
            for a, b in zip(starts.tolist(), ends.tolist(), strict=True):
                out.append(
                    (slos[i].name, sev, t0 + int(ticks[a]), t0 + int(ticks[min(b, len(ticks) - 1)]))
                )
    return out


def _replay_s(
    config: Config, path: Path, *, multi_tick: bool, repeat: int, dense: bool = False
) -> float:
    """Best wall time of `burnrate replay`'s function over the file, with the multi-tick
    pass or (`multi_tick=False`) every tick one by one, as before it; `dense`: the pass
    summing every tick, as before it bounded blocks of ticks (`engine.core.eventdriven`)."""
    saved, saved_block = Evaluator.multi_tick_from, Evaluator.multi_tick_block
    Evaluator.multi_tick_from = saved if multi_tick else None
    Evaluator.multi_tick_block = None if dense else saved_block
    try:
        return best_of(lambda: replay(config, path, lambda tr: None), repeat=repeat)
    finally:
        Evaluator.multi_tick_from, Evaluator.multi_tick_block = saved, saved_block


def bench_multitick(
    sparse_days: int, month_days: int, tick_days: int, repeat: int
) -> list[dict[str, Any]]:
    """The rows of the multi-tick pass (see the module docstring)."""
    from benchmarks.bench_core import decode_and_extract, decode_only

    rows: list[dict[str, Any]] = []
    if sparse_days:
        path, lines, requests = sparse_recording(sparse_days)
        cfg = parse_config(config_text(2))
        base_s = best_of(lambda: prefix_sum_alerts(cfg, path), repeat=repeat)
        replay_s = _replay_s(cfg, path, multi_tick=True, repeat=repeat)
        rows.append(
            {
                "measure": f"replay, {sparse_days} days x 4 SLOs, sparse count-weighted",
                "events": requests,
                "lines": lines,
                "baseline": "numpy prefix sums of the same intervals (json per line)",
                "baseline_s": base_s,
                "burnrate_s": replay_s,
                "ratio": base_s / replay_s,
                "goal": ">= 2 (times faster)",
            }
        )
    if month_days:
        path, events = month_recording(month_days)
        cfg = parse_config(config_text(50))
        decode_s = best_of(lambda: decode_only(path), repeat=repeat)
        floor_s = best_of(lambda: decode_and_extract(path), repeat=repeat)
        replay_s = _replay_s(cfg, path, multi_tick=True, repeat=1)
        rows.append(
            {
                "measure": f"replay, {month_days} days x 100 SLOs",
                "events": events,
                "baseline": "msgspec decode only",
                "baseline_per_s": events / decode_s,
                "burnrate_per_s": events / replay_s,
                "burnrate_s": replay_s,
                "ratio": decode_s / replay_s,
                "floor_s": floor_s,
                "ceiling": decode_s / floor_s,
                "goal": ">= 0.5",
            }
        )
    if tick_days:
        # the tick-by-tick evaluator takes minutes over a month: both on its first days
        path, events = month_recording(tick_days)
        cfg = parse_config(config_text(50))
        old_s = _replay_s(cfg, path, multi_tick=False, repeat=1)
        new_s = _replay_s(cfg, path, multi_tick=True, repeat=1)
        dense_s = _replay_s(cfg, path, multi_tick=True, repeat=1, dense=True)
        rows.append(
            {
                "measure": f"replay, first {tick_days} days of it: multi-tick vs tick by tick",
                "events": events,
                "baseline": "the same evaluator, every tick one by one",
                "baseline_s": old_s,
                "burnrate_s": new_s,
                "ratio": old_s / new_s,
                "goal": ">= 5 (times faster)",
            }
        )
        rows.append(
            {
                "measure": f"replay, first {tick_days} days: bounded blocks vs every tick",
                "events": events,
                "baseline": "the multi-tick pass summing every tick (no block bounds)",
                "baseline_s": dense_s,
                "burnrate_s": new_s,
                "ratio": dense_s / new_s,
                "goal": "> 1 (times faster)",
            }
        )
    return rows
