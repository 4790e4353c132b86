"""Key ids and columns per event, in process: the one-chain lookup against the list path.

    python -m benchmarks.bench_columns [--events 50000] [--repeat 40]

The single-event records of `bench_kafka` (its services and config) are decoded afresh
before every timed call, so every string is a new object whose hash is not cached yet,
as in a live fetch. Timed, in shuffled order, CPU time (`time.process_time`, steadier
than wall time on a shared machine), best of `--repeat`:

- list path: key tuples into a list, `dict.get` into a list of ids, into an array (how
  `Classifier.columns` read key ids before);
- chain: `Classifier._known_ids`, one `map` chain into `np.fromiter`;
- `Classifier.columns` (key ids and the ts, latency and count columns) and
  `RecordDecoder.decode_batch` of the same records, for scale.

Every key is known (a warm classifier), as in a steady stream. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from collections.abc import Callable, Sequence
from operator import attrgetter
from typing import Any

import numpy as np

from benchmarks.bench_kafka import SERVICES, bench_config
from benchmarks.common import machine, report
from engine.core.decode import Event, RecordDecoder
from engine.core.evaluator import Evaluator
from engine.loadgen.generator import generate
from engine.loadgen.spec import LoadSpec
from engine.loadgen.wire import encode_records
from engine.runtime.tuning import tune_gc

_KEY_OF = attrgetter("service", "operation", "status", "ok")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=40)
    args = parser.parse_args()
    tune_gc()
    print(f"machine: {json.dumps(machine())}", flush=True)
    n = args.events
    now = time.time()
    spec = LoadSpec(rate_per_s=n / 600, duration_s=600, services=SERVICES)
    values = encode_records(generate(spec, now - 600, 0, 600), "json", 1)
    decoder = RecordDecoder("json")
    classifier = Evaluator(bench_config("localhost:9092", "t")).classifier
    classifier.columns(decoder.decode_batch(values).events)  # warm: every key known
    ids = dict(classifier._ids)

    def list_path(events: Sequence[Event]) -> Any:
        found = list(map(ids.get, list(map(_KEY_OF, events))))
        return np.array(found, dtype=np.int32)

    cases: dict[str, Callable[[Sequence[Event]], object]] = {
        "key ids, list path": list_path,
        "key ids, one chain": classifier._known_ids,
        "Classifier.columns": classifier.columns,
    }
    best = dict.fromkeys([*cases, "decode_batch"], float("inf"))
    for _ in range(args.repeat):
        order = list(cases.items())
        random.shuffle(order)
        for name, fn in order:
            events = decoder.decode_batch(values).events  # fresh strings, hashes not cached
            t0 = time.process_time()
            fn(events)
            best[name] = min(best[name], time.process_time() - t0)
        t0 = time.process_time()
        decoder.decode_batch(values)
        best["decode_batch"] = min(best["decode_batch"], time.process_time() - t0)
    ns = {k: v / n * 1e9 for k, v in best.items()}
    rows = [
        {
            "measure": "key ids of single-event records (warm)",
            "events": n,
            "baseline": "list path (key list, dict.get list, array)",
            "baseline_ns_per_event": ns["key ids, list path"],
            "burnrate_ns_per_event": ns["key ids, one chain"],
            "ratio": ns["key ids, list path"] / ns["key ids, one chain"],
        },
        {
            "measure": "Classifier.columns vs decode_batch, same records",
            "events": n,
            "baseline": "RecordDecoder.decode_batch",
            "baseline_ns_per_event": ns["decode_batch"],
            "burnrate_ns_per_event": ns["Classifier.columns"],
            "ratio": ns["decode_batch"] / ns["Classifier.columns"],
        },
    ]
    report("bench_columns", rows)


if __name__ == "__main__":
    main()
