"""Core benchmarks: replay throughput vs msgspec decode alone, tick time, memory per SLO,
and ingest with grouped SLOs vs plain ones.

    python -m benchmarks.bench_core [--events 1000000] [--slos 10000]
                                    [--groups 1000] [--ingest-events 200000]
                                    [--sparse-days 4] [--month-days 30] [--tick-days 3]
                                    [--only replay|tick|memory|ingest|multitick ...]

Every figure is printed next to a baseline measured in the same run. Nothing here is
asserted; the goals (replay >= 0.5x decode-only, tick <= 10 ms at 10k SLOs, <= 64 KiB
per SLO, ingest with 1,000 groups per SLO >= 0.8x plain SLOs) are printed beside the
measurements.

The multi-tick rows (`benchmarks.multitick`) replay generated recordings that span
many ticks: a sparse, count-weighted 4-SLO one against a numpy prefix-sum evaluator of
the same alert intervals, a 30-day 100-SLO one against msgspec decoding the same file,
and the first days of the latter against the same evaluator ticking one tick at a
time (goals: >= 2x, >= 0.5x, >= 5x). The month row's *ceiling* is its ratio with, in
place of the replay, the least any replay built on msgspec's structs does: decode, then
read every event's fields into arrays (`decode_and_extract`); no such replay can reach
a goal above it.

The grouped ingest rows time decode (msgspec) + classify + count into the evaluator
(`Ingestor`, the path of `burnrate run` per fetch and of `burnrate replay` per block)
for the same events: with a `customer` label of `--groups` distinct values into
`INGEST_SLOS` SLOs grouped by it (`max_groups` = `--groups`, so every value is a
group), and without labels into the same SLOs ungrouped (the baseline). A third run,
the same labelled events into the ungrouped SLOs, shows the grouping apart from the
labels' decoding. The evaluators first see one event of every (service, customer),
untimed, so the timed part is the steady state (every group assigned, every key
cached). Event time runs at `INGEST_RATE` events per second, so tick evaluations
(`bench_evaluate`) are a negligible part of it.
"""

from __future__ import annotations

import argparse
import gc
import operator
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import count
from pathlib import Path
from typing import Any

import msgspec
import numpy as np

from benchmarks.common import DATA, best_of, current_rss_bytes, report
from benchmarks.multitick import bench_multitick
from benchmarks.naive import naive_replay
from engine.adapters.store.events_file import CHUNK_BYTES, read_chunks
from engine.core.config import Config, parse_config
from engine.core.decode import Event, RecordDecoder
from engine.core.evaluator import Evaluator
from engine.core.ingest import Ingestor
from engine.core.ladder import BUCKET_BYTES
from engine.runtime.replay import replay

SERVICES = [f"svc-{i}" for i in range(20)]
START = 1_767_225_600.0
LABEL = "customer"
"""The label grouped benchmark configs group by (`bench_config(group_by=True)`)."""

INGEST_SLOS = 10
"""SLOs of the grouped-vs-plain ingest comparison (one per service, half of them
latency SLOs), each with `--groups` groups when grouped."""
INGEST_RATE = 100_000
"""Events per second of event time in the ingest comparison."""
FETCH_RECORDS = 10_000
"""Records per `Ingestor.records` call: one Kafka fetch (`burnrate run` asks for up to
50,000)."""


def bench_config(n_slos: int, *, group_by: bool = False, max_groups: int | None = None) -> str:
    """`n_slos` SLOs, alternately availability and latency, on 20 services (2 SLOs per
    service beyond 40). `group_by`: each grouped by the `LABEL` label, with `max_groups`."""
    group = f", group_by: [{LABEL}]" if group_by else ""
    if group_by and max_groups is not None:
        group += f", max_groups: {max_groups}"
    lines = ["slos:"]
    for i in range(n_slos):
        svc = SERVICES[i % len(SERVICES)] if n_slos <= 2 * len(SERVICES) else f"svc-{i // 2}"
        if i % 2 == 0:
            lines.append(
                f"  - {{name: s{i}, service: {svc}, sli: availability, objective: 99.9{group}}}"
            )
        else:
            lines.append(
                f"  - {{name: s{i}, service: {svc}, sli: latency, threshold_ms: 250,"
                f" objective: 99{group}}}"
            )
    return "\n".join(lines) + "\n"


def services_of(config: Config) -> list[str]:
    """The services the config's SLOs select, in config order."""
    return list(dict.fromkeys(s.service for s in config.slos if s.service is not None))


def labelled_events(
    services: Sequence[str],
    n_values: int,
    n: int,
    *,
    start: float = START,
    span_s: float = 3600.0,
    seed: int = 17,
    error_rate: float = 0.001,
    cover: bool = True,
) -> list[dict[str, Any]]:
    """`n` events (JSON-ready dicts) over `span_s` seconds from `start`, in time order,
    each with a `LABEL` label of one of `n_values` values. With `cover`, the first
    `len(services) * n_values` are one of every (service, value), so a config grouped by
    `LABEL` with `max_groups=n_values` has every group assigned by them; the rest are
    random. `error_rate` of them are 503s."""
    first = len(services) * n_values if cover else 0
    if n < first:
        raise ValueError(f"{n} events cannot cover {first} (service, value) pairs")
    rng = np.random.default_rng(seed)
    svc = np.concatenate(
        (np.arange(first) % len(services), rng.integers(0, len(services), n - first))
    )
    value = np.concatenate(
        (np.arange(first) // len(services), rng.integers(0, n_values, n - first))
    )
    ts = np.round(start + np.sort(rng.random(n)) * span_s, 6)
    bad = rng.random(n) < error_rate
    lat = np.round(rng.lognormal(4.0, 0.5, n), 1)
    values = [f"cust-{k:05d}" for k in range(n_values)]
    return [
        {
            "service": services[svc[i]],
            "ts": float(ts[i]),
            "operation": "GET /items",
            "status": 503 if bad[i] else 200,
            "latency_ms": float(lat[i]),
            "labels": {LABEL: values[value[i]]},
        }
        for i in range(n)
    ]


def groups_assigned(ev: Evaluator) -> int:
    """Groups assigned so far, over all grouped SLOs (the `__other__` ones not counted)."""
    return sum(len(g) for g in ev.classifier.groups)


def make_events_file(n: int) -> Path:
    """n single-event JSON lines over ~n/2000 seconds, 20 services, 0.1% errors."""
    DATA.mkdir(parents=True, exist_ok=True)
    path = DATA / f"events-{n}.jsonl"
    if path.exists():
        return path
    rng = np.random.default_rng(7)
    ts = START + np.sort(rng.random(n)) * (n / 2000)
    svc = rng.integers(0, len(SERVICES), n)
    bad = rng.random(n) < 0.001
    lat = np.round(rng.lognormal(4.0, 0.5, n), 1)
    enc = msgspec.json.Encoder()
    with path.open("wb") as f:
        for i in range(n):
            f.write(
                enc.encode(
                    {
                        "service": SERVICES[svc[i]],
                        "ts": round(float(ts[i]), 3),
                        "operation": "GET /items",
                        "status": 503 if bad[i] else 200,
                        "latency_ms": float(lat[i]),
                    }
                )
                + b"\n"
            )
    return path


def decode_only(path: Path) -> int:
    """Baseline: read the same chunks and decode every line with msgspec, nothing else."""
    dec = msgspec.json.Decoder(Event | list[Event])
    n = 0
    for block, _ in read_chunks(path):
        n += len(dec.decode_lines(block))
    return n


_KEY = operator.attrgetter("service", "operation", "status", "ok")
_NUMBERS = [operator.attrgetter(f) for f in ("ts", "latency_ms", "count")]


def decode_and_extract(path: Path) -> int:
    """The floor under any replay built on msgspec's structs: `decode_only` (of single
    events), then every event's fields into arrays: its key (service, operation, status,
    ok) as a number from a dict of the keys seen, its time, latency and weight as
    numbers. Written plainly here, not the engine's code."""
    dec = msgspec.json.Decoder(Event)
    ids: dict[Any, int] = defaultdict(count().__next__)  # a new key: the next id
    n = 0
    for block, _ in read_chunks(path):
        events = dec.decode_lines(block)
        k = len(events)
        np.fromiter(map(ids.__getitem__, map(_KEY, events)), np.int32, k)
        for f in _NUMBERS:
            np.fromiter(map(f, events), np.float64, k)
        n += k
    return n


def bench_replay(n_events: int) -> list[dict[str, object]]:
    path = make_events_file(n_events)
    cfg = parse_config(bench_config(40))
    decode_s = best_of(lambda: decode_only(path))
    replay_s = best_of(lambda: replay(cfg, path, lambda tr: None))
    naive_n = min(n_events, 200_000)
    naive_s = best_of(lambda: naive_replay(cfg, path, naive_n), repeat=1)
    return [
        {
            "measure": "replay vs naive Python (dicts, deques)",
            "events": naive_n,
            "baseline": "naive pure-Python engine",
            "baseline_per_s": naive_n / naive_s,
            "burnrate_per_s": n_events / replay_s,
            "ratio": (n_events / replay_s) / (naive_n / naive_s),
            "goal": ">= 10",
        },
        {
            "measure": "replay throughput",
            "events": n_events,
            "baseline": "msgspec decode only",
            "baseline_per_s": n_events / decode_s,
            "burnrate_per_s": n_events / replay_s,
            "ratio": decode_s / replay_s,
            "goal": ">= 0.5",
        },
    ]


def filled_evaluator(n_slos: int) -> Evaluator:
    """An evaluator with traffic in every SLO's windows so ticks do real work."""
    ev = Evaluator(parse_config(bench_config(n_slos)))
    rng = np.random.default_rng(3)
    events = [
        Event(
            service=f"svc-{int(s)}",
            ts=START + float(t),
            status=503 if rng.random() < 0.01 else 200,
            latency_ms=100.0,
        )
        for s, t in zip(
            rng.integers(0, max(n_slos // 2, 1), 200_000),
            np.sort(rng.random(200_000) * 3600),
            strict=True,
        )
    ]
    for i in range(0, len(events), 20_000):
        ev.ingest(ev.classifier.columns(events[i : i + 20_000]))
    return ev


def bench_tick(n_slos: int, ticks: int = 200) -> dict[str, object]:
    ev = filled_evaluator(n_slos)
    assert ev.next_tick_s is not None
    t0 = ev.next_tick_s
    gc.collect()
    start = time.perf_counter()
    for k in range(ticks):
        ev.advance(t0 + (k + 1) * ev.tick_s + 0.001)
    per_tick = (time.perf_counter() - start) / ticks
    # Baseline: a naive full re-sum of every window's buckets per tick, vectorised numpy.
    grids = [lv.grid() for lv in ev.windows.levels]
    naive_start = time.perf_counter()
    for _ in range(20):
        for lv, grid in zip(ev.windows.levels, grids, strict=True):
            for wi in lv.windows:
                grid[: ev.windows.buckets[wi]].sum(axis=0)
    naive = (time.perf_counter() - naive_start) / 20
    return {
        "measure": "evaluation tick",
        "slos": n_slos,
        "baseline": "full re-sum of windows (numpy)",
        "baseline_ms": naive * 1000,
        "burnrate_ms": per_tick * 1000,
        "ratio": naive / per_tick,
        "goal": "<= 10 ms at 10,000",
    }


def bench_memory(n_slos: int) -> dict[str, object]:
    gc.collect()
    before = current_rss_bytes()
    ev = Evaluator(parse_config(bench_config(n_slos)))
    for lv in ev.windows.levels:
        lv.data[:] = 1  # touch every page so RSS counts it
    after = current_rss_bytes()
    return {
        "measure": "memory per SLO (30d period, default policy)",
        "slos": n_slos,
        "baseline": "5 s buckets for 30 days (flat ring)",
        "baseline_kib": 30 * 86400 / 5 * BUCKET_BYTES / 1024,
        "burnrate_kib": (after - before) / n_slos / 1024,
        "arrays_kib": ev.windows.nbytes() / n_slos / 1024,
        "goal": "<= 64 KiB",
    }


def _ingest_once(
    config: Config,
    warm: Sequence[Any],
    chunks: Sequence[Any],
    feed: Callable[[Ingestor, Any], object],
    events: int,
    groups: int,
) -> float:
    """Seconds to `feed` every chunk to a fresh ingestor of `config` that was first fed
    `warm` (untimed), then flush it; checks that every event was counted and that
    `groups` groups were assigned."""
    ing = Ingestor(Evaluator(config))
    for c in warm:
        feed(ing, c)
    gc.collect()
    start = time.perf_counter()
    for c in chunks:
        feed(ing, c)
    ing.flush()
    seconds = time.perf_counter() - start
    counts = ing.evaluator.counts()
    if counts.accepted_events != events or counts.rejected or counts.unmatched_events:
        raise RuntimeError(f"ingest benchmark: not every event counted: {counts}")
    if groups_assigned(ing.evaluator) != groups:
        raise RuntimeError(
            f"ingest benchmark: {groups_assigned(ing.evaluator)} groups, not {groups}"
        )
    return seconds


def blocks(values: list[bytes], size: int = CHUNK_BYTES) -> list[bytes]:
    """JSON Lines blocks of about `size` bytes (as `burnrate replay` reads a file)."""
    out: list[bytes] = []
    lines: list[bytes] = []
    n = 0
    for v in values:
        lines.append(v)
        n += len(v) + 1
        if n >= size:
            out.append(b"\n".join(lines) + b"\n")
            lines, n = [], 0
    if lines:
        out.append(b"\n".join(lines) + b"\n")
    return out


def fetches(values: list[bytes]) -> list[list[bytes]]:
    """Kafka fetches of `FETCH_RECORDS` record values."""
    return [values[i : i + FETCH_RECORDS] for i in range(0, len(values), FETCH_RECORDS)]


def _feed_records(ing: Ingestor, fetch: list[bytes]) -> object:
    return ing.records(fetch)


def _feed_lines(ing: Ingestor, block: bytes) -> object:
    return ing.json_lines(block, stream_future=True)


def _decode_records(dec: RecordDecoder, fetch: list[bytes]) -> object:
    return dec.decode_batch(fetch)


def _decode_lines(dec: RecordDecoder, block: bytes) -> object:
    return dec.json_lines(block)


@dataclass(frozen=True)
class IngestCase:
    """The grouped-vs-plain ingest comparison's configs and JSON records: the first
    `cover` records (one of every (service, customer)) warm up, the rest are timed."""

    plain_config: Config
    grouped_config: Config
    cover: int
    plain: list[bytes]
    labelled: list[bytes]


def ingest_case(n_events: int, groups: int) -> IngestCase:
    """`n_events` timed records (after the warm-up ones) for `INGEST_SLOS` SLOs with
    `groups` customers, at `INGEST_RATE` events per second of event time."""
    plain_cfg = parse_config(bench_config(INGEST_SLOS))
    grouped_cfg = parse_config(bench_config(INGEST_SLOS, group_by=True, max_groups=groups))
    services = services_of(plain_cfg)
    cover = len(services) * groups
    total = cover + n_events
    dicts = labelled_events(services, groups, total, span_s=total / INGEST_RATE, seed=13)
    enc = msgspec.json.Encoder()
    labelled = [enc.encode(e) for e in dicts]
    for e in dicts:
        del e["labels"]
    plain = [enc.encode(e) for e in dicts]
    return IngestCase(plain_cfg, grouped_cfg, cover, plain, labelled)


def _ingest_row(
    shape: str, n_events: int, measure: str, baseline: str, base_s: float, ours_s: float
) -> dict[str, object]:
    """A row of `bench_ingest`: `n_events` in `ours_s` against `base_s` seconds."""
    return {
        "measure": f"{measure}: {shape}",
        "events": n_events,
        "slos": None if "decoding" in measure else INGEST_SLOS,
        "baseline": baseline,
        "baseline_per_s": n_events / base_s,
        "burnrate_per_s": n_events / ours_s,
        "ratio": base_s / ours_s,
    }


def bench_ingest(n_events: int, groups: int, repeat: int = 3) -> list[dict[str, object]]:
    """Ingest of the same events with a label into grouped SLOs vs without into plain ones
    (see the module docstring), as Kafka fetches and as replay blocks; and decoding
    alone, the part of it that is msgspec's (and the labels' byte check)."""
    case = ingest_case(n_events, groups)
    plain_cfg, grouped_cfg, cover = case.plain_config, case.grouped_config, case.cover
    plain, labelled = case.plain, case.labelled
    total = cover + n_events
    variants = (
        ("plain", plain, plain_cfg, 0),
        ("labelled", labelled, plain_cfg, 0),
        ("grouped", labelled, grouped_cfg, len(grouped_cfg.slos) * groups),
    )
    cases: list[tuple[str, Callable[[list[bytes]], Sequence[Any]], Any, Any]] = [
        (f"Kafka records, {FETCH_RECORDS:,} per fetch", fetches, _feed_records, _decode_records),
        ("JSON lines, 4 MiB blocks (replay)", blocks, _feed_lines, _decode_lines),
    ]
    rows: list[dict[str, object]] = []
    for shape, split, feed, decode in cases:
        best = {name: float("inf") for name, *_ in variants}
        decode_best = dict(best)
        for _ in range(repeat):  # interleaved, so a change in machine load hits both
            for name, values, cfg, n_groups in variants:
                warm, main = split(values[:cover]), split(values[cover:])
                t = _ingest_once(cfg, warm, main, feed, total, n_groups)
                best[name] = min(best[name], t)
                dec = RecordDecoder("json")
                t0 = time.perf_counter()
                for c in main:
                    decode(dec, c)
                decode_best[name] = min(decode_best[name], time.perf_counter() - t0)
                del warm, main
                gc.collect()

        rows += [
            {
                **_ingest_row(
                    shape,
                    n_events,
                    f"ingest, {groups:,} groups per SLO vs plain SLOs",
                    "same events without labels, ungrouped SLOs",
                    best["plain"],
                    best["grouped"],
                ),
                "goal": ">= 0.8",
            },
            _ingest_row(
                shape,
                n_events,
                "  the grouping alone: same labelled events, plain SLOs",
                "same events with labels, ungrouped SLOs",
                best["labelled"],
                best["grouped"],
            ),
            _ingest_row(
                shape,
                n_events,
                "  of which decoding alone, labelled vs not",
                "decoding the events without labels",
                decode_best["plain"],
                decode_best["grouped"],
            ),
        ]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--slos", type=int, default=10_000)
    parser.add_argument(
        "--groups", type=int, default=1_000, help="groups per SLO in the ingest rows (0: skip)"
    )
    parser.add_argument("--ingest-events", type=int, default=200_000)
    parser.add_argument(
        "--sparse-days", type=int, default=4, help="multi-tick: sparse 4-SLO recording (0: skip)"
    )
    parser.add_argument(
        "--month-days", type=int, default=30, help="multi-tick: 100-SLO recording (0: skip)"
    )
    parser.add_argument(
        "--tick-days",
        type=int,
        default=3,
        help="multi-tick vs tick by tick on the first days of the 100-SLO recording (0: skip)",
    )
    parser.add_argument(
        "--only",
        choices=["replay", "tick", "memory", "ingest", "multitick"],
        action="append",
        help="run only these rows (repeatable; default: all)",
    )
    parser.add_argument("--repeat", type=int, default=3, help="best of, for the multi-tick rows")
    args = parser.parse_args()
    only = set(args.only or ["replay", "tick", "memory", "ingest", "multitick"])
    rows: list[dict[str, object]] = []
    if "replay" in only:
        rows += bench_replay(args.events)
    if "tick" in only:
        rows.append(bench_tick(args.slos))
    if "memory" in only:
        rows.append(bench_memory(args.slos))
    if "ingest" in only and args.groups:
        rows += bench_ingest(args.ingest_events, args.groups)
    if "multitick" in only:
        rows += bench_multitick(args.sparse_days, args.month_days, args.tick_days, args.repeat)
    # a partial run keeps its own results file, not overwriting the full run's
    partial = "" if args.only is None else "-" + "-".join(sorted(only))
    report(f"bench_core{partial}", rows)


if __name__ == "__main__":
    main()
