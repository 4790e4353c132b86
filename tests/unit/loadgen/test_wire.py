"""Generated events as Kafka record values: they decode as the wire format to the same events."""

from __future__ import annotations

import math

import msgspec
import numpy as np
import pytest

from engine.core.decode import RecordDecoder
from engine.core.taxonomy import Outcome, classify
from engine.loadgen.generator import generate
from engine.loadgen.spec import LoadSpec
from engine.loadgen.wire import encode_records

START_TS = 1_700_000_000.0


@pytest.mark.parametrize("fmt", ["json", "msgpack"])
@pytest.mark.parametrize(
    "batch",
    [
        pytest.param(1, id="one event per record"),
        pytest.param(64, id="arrays of 64 events"),
        pytest.param(1000, id="arrays with a short last record"),
    ],
)
def test_records_decode_as_the_wire_format_to_the_events_generated(fmt: str, batch: int) -> None:
    spec = LoadSpec(rate_per_s=2500.0, duration_s=1.0, error_ratio=0.2, statuses="grpc")
    cols = generate(spec, START_TS, 0, 1)
    values = encode_records(cols, fmt, batch)  # type: ignore[arg-type]
    assert len(values) == math.ceil(len(cols) / batch)

    decoded = RecordDecoder(fmt).decode_batch(values)  # type: ignore[arg-type]
    assert decoded.rejected == []
    events = decoded.events
    assert len(events) == len(cols) == 2500
    assert [e.service for e in events] == [cols.services[i] for i in cols.service.tolist()]
    assert [e.operation for e in events] == [cols.operations[i] for i in cols.operation.tolist()]
    assert [e.status for e in events] == [cols.statuses[i] for i in cols.status.tolist()]
    assert [e.ts for e in events] == cols.ts.tolist()
    assert [e.latency_ms for e in events] == cols.latency_ms.tolist()
    assert {e.count for e in events} == {1}
    bad = [classify(e.status, e.ok) == Outcome.BAD for e in events]
    assert bad == cols.bad.tolist()


def test_a_single_event_record_is_one_json_object_without_a_default_count() -> None:
    cols = generate(LoadSpec(rate_per_s=1.0, duration_s=1.0), START_TS, 0, 1)
    (value,) = encode_records(cols)
    obj = msgspec.json.decode(value)
    assert isinstance(obj, dict)
    assert set(obj) == {"service", "ts", "operation", "status", "latency_ms"}
    assert obj["ts"] == START_TS


def test_the_count_field_is_sent_when_events_stand_for_several_requests() -> None:
    cols = generate(LoadSpec(rate_per_s=10.0, duration_s=1.0, count=5), START_TS, 0, 1)
    records = encode_records(cols, "json", batch=4)
    events = RecordDecoder("json").decode_batch(records).events
    assert [e.count for e in events] == [5] * 10


@pytest.mark.parametrize(
    ("fmt", "batch", "message"),
    [
        pytest.param("xml", 1, "json or msgpack", id="an unknown format"),
        pytest.param("json", 0, "must be >= 1", id="an empty batch"),
    ],
)
def test_encode_records_rejects_bad_options(fmt: str, batch: int, message: str) -> None:
    cols = generate(LoadSpec(rate_per_s=1.0, duration_s=1.0), START_TS, 0, 1)
    with pytest.raises(ValueError, match=message):
        encode_records(cols, fmt, batch)  # type: ignore[arg-type]


@pytest.mark.parametrize("fmt", ["json", "msgpack"])
def test_labels_are_sent_and_decode_as_the_wire_format(fmt: str) -> None:
    spec = LoadSpec(
        rate_per_s=100.0,
        duration_s=1.0,
        count=2,
        labels=(("region", ("eu", "us")), ("customer", ("customer-0", "customer-1"))),
    )
    cols = generate(spec, START_TS, 0, 1)
    decoded = RecordDecoder(fmt).decode_batch(encode_records(cols, fmt, batch=8))  # type: ignore[arg-type]
    assert decoded.rejected == []
    region, customer = (np.asarray(values)[index].tolist() for _, values, index in cols.labels)
    assert [e.labels for e in decoded.events] == [
        {"region": r, "customer": c} for r, c in zip(region, customer, strict=True)
    ]
    assert {e.count for e in decoded.events} == {2}
    assert [e.service for e in decoded.events] == [cols.services[i] for i in cols.service.tolist()]


def test_without_labels_no_labels_field_is_sent() -> None:
    cols = generate(LoadSpec(rate_per_s=10.0, duration_s=1.0), START_TS, 0, 1)
    assert all("labels" not in msgspec.json.decode(v) for v in encode_records(cols))
