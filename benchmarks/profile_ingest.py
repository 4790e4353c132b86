"""Where ingest spends its time with grouped SLOs: cProfile over `bench_core`'s ingest case.

    python -m benchmarks.profile_ingest [--groups 1000] [--events 200000] [--plain]
                                        [--lines] [--top 14] [--sort tottime]

The same events and configs as the grouped-vs-plain ingest rows of `bench_core`: a fresh
evaluator is warmed up with one event of every (service, customer), untimed, then the
timed events go through `Ingestor.records` in Kafka fetches (`--lines`: through
`Ingestor.json_lines` in replay blocks) under cProfile. `--plain` profiles the baseline
(no labels, ungrouped SLOs). Prints the wall time and the top functions by `--sort`
(own time by default).
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import time

from benchmarks.bench_core import blocks, fetches, ingest_case
from engine.core.evaluator import Evaluator
from engine.core.ingest import Ingestor


def main() -> None:
    parser = argparse.ArgumentParser(description="profile of ingest with grouped SLOs")
    parser.add_argument("--groups", type=int, default=1_000, help="groups per SLO")
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--plain", action="store_true", help="the baseline instead")
    parser.add_argument("--lines", action="store_true", help="replay blocks, not fetches")
    parser.add_argument("--top", type=int, default=14)
    parser.add_argument("--sort", default="tottime", help="a pstats sort key, e.g. cumulative")
    args = parser.parse_args()
    case = ingest_case(args.events, args.groups)
    values = case.plain if args.plain else case.labelled
    ing = Ingestor(Evaluator(case.plain_config if args.plain else case.grouped_config))
    chunks: list[bytes] | list[list[bytes]]
    if args.lines:
        chunks = blocks(values[case.cover :])
        for block in blocks(values[: case.cover]):
            ing.json_lines(block, stream_future=True)
    else:
        chunks = fetches(values[case.cover :])
        for fetch in fetches(values[: case.cover]):
            ing.records(fetch)
    prof = cProfile.Profile()
    start = time.perf_counter()
    prof.enable()
    for c in chunks:
        if isinstance(c, bytes):
            ing.json_lines(c, stream_future=True)
        else:
            ing.records(c)
    ing.flush()
    prof.disable()
    wall = time.perf_counter() - start
    what = "plain" if args.plain else f"{args.groups:,} groups per SLO"
    print(f"{args.events:,} events, {what}: {wall:.2f} s under cProfile")
    pstats.Stats(prof).sort_stats(args.sort).print_stats(args.top)


if __name__ == "__main__":
    main()
