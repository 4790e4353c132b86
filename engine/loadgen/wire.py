"""Generated events as Kafka record values in the wire format (DESIGN section 3)."""

from __future__ import annotations

from typing import Final, Literal

import msgspec
import numpy as np

from engine.loadgen.generator import GeneratedEvents

__all__ = ["RecordFormat", "WireEvent", "encode_records", "wire_events"]

RecordFormat = Literal["json", "msgpack"]


class WireEvent(msgspec.Struct, omit_defaults=True, gc=False):
    """One event as the wire format spells it; `count` omitted when 1, `labels` when
    there are none."""

    service: str
    ts: float
    operation: str
    status: int | str
    latency_ms: float
    count: int = 1
    labels: dict[str, str] | None = None


_ENCODERS: Final[dict[str, msgspec.json.Encoder | msgspec.msgpack.Encoder]] = {
    "json": msgspec.json.Encoder(),
    "msgpack": msgspec.msgpack.Encoder(),
}


def wire_events(cols: GeneratedEvents) -> list[WireEvent]:
    """The slice's events as wire structs (the slow, per-event part of encoding)."""
    services = np.asarray(cols.services, dtype=object)[cols.service].tolist()
    operations = np.asarray(cols.operations, dtype=object)[cols.operation].tolist()
    statuses = np.asarray(cols.statuses, dtype=object)[cols.status].tolist()
    ts = cols.ts.tolist()
    latency = cols.latency_ms.tolist()
    if cols.labels:
        keys = [key for key, _, _ in cols.labels]
        columns = [
            np.asarray(values, dtype=object)[index].tolist() for _, values, index in cols.labels
        ]
        c = cols.count
        return [
            WireEvent(s, t, o, st, lat, c, dict(zip(keys, vals, strict=True)))
            for s, t, o, st, lat, *vals in zip(
                services, ts, operations, statuses, latency, *columns, strict=True
            )
        ]
    if cols.count == 1:
        return [
            WireEvent(s, t, o, st, lat)
            for s, t, o, st, lat in zip(services, ts, operations, statuses, latency, strict=True)
        ]
    c = cols.count
    return [
        WireEvent(s, t, o, st, lat, c)
        for s, t, o, st, lat in zip(services, ts, operations, statuses, latency, strict=True)
    ]


def encode_records(
    cols: GeneratedEvents, fmt: RecordFormat = "json", batch: int = 1
) -> list[bytes]:
    """Kafka record values for the slice's events, in event order.

    `batch=1`: one event object per record. `batch=N`: a JSON/MessagePack array of up
    to N events per record (the last record of the slice may hold fewer).
    """
    if batch < 1:
        raise ValueError(f"batch {batch!r} must be >= 1")
    try:
        encode = _ENCODERS[fmt].encode
    except KeyError:
        raise ValueError(f"format {fmt!r} must be json or msgpack") from None
    events = wire_events(cols)
    if batch == 1:
        return [encode(e) for e in events]
    return [encode(events[i : i + batch]) for i in range(0, len(events), batch)]
