"""Wire decoding: msgspec per record vs batched, JSON vs MessagePack, vs stdlib json and orjson;
and OTLP trace records (100 SERVER spans each) vs 100-event JSON records, decoded to counts.

    python -m benchmarks.bench_decode [--records 200000]

All decoders read the same record values (single-event records and 100-event batched
records); rates are events per second. The baseline is stdlib `json.loads` per record.

The OTLP rows (`benchmarks.otlp_records`) carry the same events as spans with the
attributes an HTTP server instrumentation sets, in `ExportTraceServiceRequest`s as the
Collector's Kafka exporter writes them. The `decode to counts` rows time the whole
`Ingestor.records` path (decode, classify, count into an evaluator with an SLO per
service) in fetches of 100 records; their ratio is against the 100-event JSON records.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable

import msgspec
import numpy as np

from benchmarks.common import best_of, report
from benchmarks.otlp_records import otlp_json_records, otlp_proto_records
from engine.core.config import parse_config
from engine.core.decode import Event, RecordDecoder, WireFormat
from engine.core.evaluator import Evaluator
from engine.core.ingest import Ingestor
from engine.core.otlp import OtlpDecoder

try:
    import orjson
except ImportError:  # orjson is a test extra; the row is left out without it
    orjson = None


def make_events(n: int) -> list[dict[str, object]]:
    rng = np.random.default_rng(11)
    return [
        {
            "service": f"svc-{int(s)}",
            "ts": 1_767_225_600.0 + i / 1000,
            "operation": "GET /items",
            "status": 503 if b else 200,
            "latency_ms": float(lat),
        }
        for i, (s, b, lat) in enumerate(
            zip(
                rng.integers(0, 20, n),
                rng.random(n) < 0.001,
                np.round(rng.lognormal(4, 0.5, n), 1),
                strict=True,
            )
        )
    ]


def to_counts(values: list[bytes], fmt: WireFormat) -> Callable[[], object]:
    """Decode, classify and count `values` into a fresh evaluator, 100 records a call."""
    services = "".join(
        f"  - {{name: svc-{i}, service: svc-{i}, sli: availability, objective: 99.9}}\n"
        for i in range(20)
    )
    config = parse_config(f"slos:\n{services}")

    def run() -> object:
        ingestor = Ingestor(Evaluator(config))
        return [ingestor.records(values[i : i + 100], fmt) for i in range(0, len(values), 100)]

    return run


def otlp_rows(
    events: list[dict[str, object]], batched_json: list[bytes]
) -> list[dict[str, object]]:
    """OTLP protobuf and OTLP/JSON against the 100-event JSON records, to counts."""
    n = len(events)
    proto, otlp_json = otlp_proto_records(events), otlp_json_records(events)
    dec_proto, dec_otlp_json = OtlpDecoder("otlp_proto"), OtlpDecoder("otlp_json")
    cases: list[tuple[str, str, Callable[[], object]]] = [
        ("decode to counts (Ingestor)", "100-event JSON", to_counts(batched_json, "json")),
        ("OtlpDecoder", "100-span OTLP protobuf", lambda: dec_proto.decode_batch(proto)),
        ("decode to counts (Ingestor)", "100-span OTLP protobuf", to_counts(proto, "otlp_proto")),
        ("OtlpDecoder", "100-span OTLP/JSON", lambda: dec_otlp_json.decode_batch(otlp_json)),
        ("decode to counts (Ingestor)", "100-span OTLP/JSON", to_counts(otlp_json, "otlp_json")),
    ]
    rows: list[dict[str, object]] = []
    json_rate = None
    for name, shape, fn in cases:
        rate = n / best_of(fn)
        if json_rate is None:
            json_rate = rate
        rows.append(
            {
                "decoder": name,
                "records": shape,
                "events_per_s": rate,
                "vs_json_to_counts": rate / json_rate if name.startswith("decode to") else None,
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description="wire decoding benchmark")
    parser.add_argument("--records", type=int, default=200_000)
    args = parser.parse_args()
    events = make_events(args.records)
    single_json = [msgspec.json.encode(e) for e in events]
    single_mp = [msgspec.msgpack.encode(e) for e in events]
    batched_json = [msgspec.json.encode(events[i : i + 100]) for i in range(0, len(events), 100)]
    batched_mp = [msgspec.msgpack.encode(events[i : i + 100]) for i in range(0, len(events), 100)]
    n = len(events)
    one_json = msgspec.json.Decoder(Event | list[Event])
    one_mp = msgspec.msgpack.Decoder(Event | list[Event])
    dec_json, dec_mp = RecordDecoder("json"), RecordDecoder("msgpack")

    def chunks(values: list[bytes], size: int = 1000) -> list[list[bytes]]:
        return [values[i : i + size] for i in range(0, len(values), size)]

    cases: list[tuple[str, str, Callable[[], object]]] = [
        (
            "stdlib json.loads per record",
            "single JSON",
            lambda: [json.loads(v) for v in single_json],
        ),
        ("msgspec per record", "single JSON", lambda: [one_json.decode(v) for v in single_json]),
        (
            "msgspec batched (RecordDecoder)",
            "single JSON",
            lambda: [dec_json.decode_batch(c) for c in chunks(single_json)],
        ),
        ("msgspec per record", "single MessagePack", lambda: [one_mp.decode(v) for v in single_mp]),
        (
            "msgspec batched (RecordDecoder)",
            "single MessagePack",
            lambda: [dec_mp.decode_batch(c) for c in chunks(single_mp)],
        ),
        (
            "stdlib json.loads per record",
            "100-event JSON",
            lambda: [json.loads(v) for v in batched_json],
        ),
        (
            "msgspec batched (RecordDecoder)",
            "100-event JSON",
            lambda: [dec_json.decode_batch(c) for c in chunks(batched_json, 10)],
        ),
        (
            "msgspec batched (RecordDecoder)",
            "100-event MessagePack",
            lambda: [dec_mp.decode_batch(c) for c in chunks(batched_mp, 10)],
        ),
    ]
    if orjson is not None:
        cases.insert(
            1,
            (
                "orjson.loads per record",
                "single JSON",
                lambda: [orjson.loads(v) for v in single_json],
            ),
        )
        cases.insert(
            6,
            (
                "orjson.loads per record",
                "100-event JSON",
                lambda: [orjson.loads(v) for v in batched_json],
            ),
        )
    baseline: dict[str, float] = {}
    rows = []
    for name, shape, fn in cases:
        seconds = best_of(fn)
        rate = n / seconds
        if name.startswith("stdlib"):
            baseline[shape.split()[0]] = rate
        base = baseline.get(shape.split()[0])
        rows.append(
            {
                "decoder": name,
                "records": shape,
                "events_per_s": rate,
                "vs_stdlib_json": None if base is None else rate / base,
            }
        )
    rows += otlp_rows(events, batched_json)
    report("bench_decode", rows)


if __name__ == "__main__":
    main()
