"""An evaluate worker's partition applying count deltas, against the single process
ingesting the events behind them.

    python -m benchmarks.bench_counts [--slos 100] [--seconds 900] [--rate 20]
                                      [--fetch 1000]

`--slos` availability SLOs on as many services, each with `--rate` events a second for
`--seconds` seconds of event time. The baseline, measured in the same run, is
`Evaluator.ingest` of those events, one batch per second of event time (what
`burnrate run` does with them, decoding aside). The measured path is
`PartitionCounts.apply_records` of the count deltas an ingest worker flushing every
second writes for them (one MessagePack record per SLO per second, decoded, counted with
`Evaluator.ingest_counts`, time advanced by the watermarks), `--fetch` records a call
as the worker applies a fetch; and, for scale, one record a call. Both evaluate every tick
on the way. `ratio`: the baseline's time over the deltas' (above 1: the deltas are
cheaper for the same traffic).
"""

from __future__ import annotations

import argparse

from benchmarks.common import best_of, report
from engine.core.config import parse_config
from engine.core.decode import Event
from engine.core.deltas import encode_delta
from engine.core.evaluator import Evaluator
from engine.core.partition_counts import PartitionCounts

START = 1_767_225_600


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--slos", type=int, default=100)
    parser.add_argument("--seconds", type=int, default=900)
    parser.add_argument("--rate", type=int, default=20, help="events a second per SLO")
    parser.add_argument("--fetch", type=int, default=1000, help="records a call")
    args = parser.parse_args()
    n, seconds, rate = args.slos, args.seconds, args.rate
    text = "slos:\n" + "".join(
        f"  - {{name: s{i}, service: svc{i}, sli: availability, objective: 99.9}}\n"
        for i in range(n)
    )
    config = parse_config(text.encode())
    batches = [
        [
            Event(service=f"svc{i}", ts=START + t + k / rate, status=500 if k == 0 else 200)
            for i in range(n)
            for k in range(rate)
        ]
        for t in range(seconds)
    ]
    records = [
        encode_delta(f"s{i}", START + t + 1, [START + t], [rate], [1])
        for t in range(seconds)
        for i in range(n)
    ]

    def events() -> None:
        ev = Evaluator(config)
        for batch in batches:
            ev.ingest(ev.classifier.columns(batch))

    def deltas() -> None:
        part = PartitionCounts(config, [s.name for s in config.slos])
        for k in range(0, len(records), args.fetch):
            part.apply_records(records[k : k + args.fetch])

    def one_by_one() -> None:
        part = PartitionCounts(config, [s.name for s in config.slos])
        for value in records:
            part.apply_record(value)

    base = best_of(events, repeat=2)
    got = best_of(deltas, repeat=2)
    single = best_of(one_by_one, repeat=1)
    n_events = n * seconds * rate
    report(
        "bench_counts",
        [
            {
                "slos": n,
                "seconds": seconds,
                "events": n_events,
                "delta_records": len(records),
                "ingest_s": base,
                "fetch": args.fetch,
                "deltas_s": got,
                "one_by_one_s": single,
                "events_per_s_ingest": n_events / base,
                "records_per_s_deltas": len(records) / got,
                "ratio": base / got,
            }
        ],
    )


if __name__ == "__main__":
    main()
