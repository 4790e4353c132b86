"""OTLP trace records through a real broker: exact counts per SLO, ignored spans, dead letters.

The records are what the Collector's Kafka exporter sends: SDK spans encoded by the
SDK's OTLP encoder, one ExportTraceServiceRequest per record, on a topic whose
per-topic `formats` entry says `otlp_proto` or `otlp_json`, next to a topic of JSON
wire events read by the same consumer.
"""

from __future__ import annotations

import time
import uuid

import msgspec
import pytest
from opentelemetry.trace import SpanKind

from engine.adapters.kafka.embedded_broker import create_topic
from engine.adapters.kafka.source import KafkaSource
from engine.core.config import Config, parse_config
from engine.core.evaluator import Evaluator
from tests.integration.test_source import (
    no_more_records,
    produce,
    read_dead_letters,
    running,
    wait_until,
)
from tests.unit.core.otlp_spans import ENCODERS, SpanSpec

RECORDS = 30
SERVER_SPANS = 20
"""SERVER spans of `checkout` per record; each record also has 3 ignored spans and one
SERVER span of `search`, which no SLO selects."""
JSON_EVENTS = 50


def make_config(bootstrap: str, events: str, traces: str, fmt: str, dlq: str) -> Config:
    return parse_config(
        "slos:\n"
        "  - {name: checkout-availability, service: checkout, sli: availability,"
        " objective: 99}\n"
        "  - {name: checkout-latency, service: checkout, sli: latency, threshold_ms: 300,"
        " objective: 99}\n"
        '  - {name: pay-availability, service: checkout, operation: "POST /pay",'
        " sli: availability, objective: 99}\n"
        "kafka:\n"
        f"  bootstrap_servers: {bootstrap}\n"
        f"  topics: [{events}, {traces}]\n"
        f"  group_id: g-{uuid.uuid4().hex[:10]}\n"
        f"  formats: {{{traces}: {fmt}}}\n"
        f"  dead_letter_topic: {dlq}\n"
        "http:\n"
        "  listen: 127.0.0.1:0\n"
    )


def trace_record(fmt: str, k: int, now_ns: int) -> bytes:
    """Record `k`: span i of checkout is POST /pay when i is even, else GET /cart; failed
    (HTTP 503) when i % 5 == 0, slow when i % 4 == 1; ends a little before now."""
    specs = []
    for i in range(SERVER_SPANS):
        end = now_ns - 5 * 10**9 + (k * SERVER_SPANS + i) * 10**6
        method, route = ("POST", "/pay") if i % 2 == 0 else ("GET", "/cart")
        attrs = {
            "http.request.method": method,
            "http.route": route,
            "http.response.status_code": 503 if i % 5 == 0 else 200,
        }
        latency_ns = 900 * 10**6 if i % 4 == 1 else 20 * 10**6
        specs.append(SpanSpec(start_ns=end - latency_ns, end_ns=end, attributes=attrs))
    end = now_ns - 10**9
    others = [
        SpanSpec(start_ns=end - 10**6, end_ns=end, kind=kind)
        for kind in (SpanKind.CLIENT, SpanKind.INTERNAL, SpanKind.PRODUCER)
    ]
    search = [SpanSpec(start_ns=end - 10**6, end_ns=end)]
    return ENCODERS[fmt](("checkout", specs + others), ("search", search))


def expected_counts() -> list[tuple[int, int]]:
    """(total, bad) of the three SLOs over every record."""
    idx = range(SERVER_SPANS)
    failed = {i for i in idx if i % 5 == 0}
    slow = {i for i in idx if i % 4 == 1}
    pay = [i for i in idx if i % 2 == 0]
    json_bad = JSON_EVENTS // 10  # JSON events: every 10th failed, none slow
    return [
        (RECORDS * SERVER_SPANS + JSON_EVENTS, RECORDS * len(failed) + json_bad),
        (RECORDS * SERVER_SPANS + JSON_EVENTS, RECORDS * len(failed | slow) + json_bad),
        (RECORDS * len(pay), RECORDS * sum(1 for i in pay if i in failed)),
    ]


@pytest.mark.asyncio
@pytest.mark.parametrize("fmt", ["otlp_proto", "otlp_json"])
async def test_otlp_topic_next_to_a_json_topic(
    kafka_bootstrap: str, unique_topic: str, fmt: str
) -> None:
    traces, dlq = f"{unique_topic}-traces", f"{unique_topic}-dlq"
    await create_topic(kafka_bootstrap, traces, 2)
    await create_topic(kafka_bootstrap, dlq, 1)
    now = time.time()
    now_ns = int(now * 1e9)
    values = [trace_record(fmt, k, now_ns) for k in range(RECORDS)]
    poison = {
        7: b"\x0a\xff\x01not a protobuf" if fmt == "otlp_proto" else b'{"resourceSpans": [',
        19: b"",
    }
    for at, value in sorted(poison.items()):
        values.insert(at, value)
    await produce(kafka_bootstrap, traces, values, partitions=1)
    events = [
        msgspec.json.encode(
            {
                "service": "checkout",
                "ts": now - 3,
                "status": 500 if i % 10 == 0 else 200,
                "latency_ms": 20.0,
            }
        )
        for i in range(JSON_EVENTS)
    ]
    await produce(kafka_bootstrap, unique_topic, events)

    cfg = make_config(kafka_bootstrap, unique_topic, traces, fmt, dlq)
    ev = Evaluator(cfg)
    source = KafkaSource(cfg, ev)
    _, _, shutdown = await running(source)
    try:
        await wait_until(
            lambda: source.records_consumed >= len(values) + len(events), "every record"
        )
        await no_more_records(source)
    finally:
        await shutdown()

    counts = ev.counts()
    got = list(zip(counts.events_total.tolist(), counts.bad_events_total.tolist(), strict=True))
    assert got == expected_counts()
    assert counts.unmatched_events == RECORDS  # one search span per record
    assert source.status().spans_ignored == 3 * RECORDS
    assert ev.rejected_counts() == {"malformed": 2}
    assert source.dead_lettered == 2
    dead = {}
    for rec in await read_dead_letters(kafka_bootstrap, dlq, len(poison)):
        headers = {k: v.decode() for k, v in rec.headers}
        assert headers["source_topic"] == traces
        dead[int(headers["source_offset"])] = (rec.value, headers["reason"])
    assert dead == {at: (value, "malformed") for at, value in poison.items()}
