"""Wire decoding: Kafka record values (or JSON lines) into request events, in batches.

A record is one event object or an array of them (the wire contract), JSON or
MessagePack. A batch is decoded with one reusable typed decoder in a tight list
comprehension (measured faster than joining the records into one document, which
also needs a check that no record split or merged). Streams are usually uniform, so
single-event records are first decoded straight into `Event`s, with no per-record
type check afterwards; arrays take the general path. Only when a batch holds a bad
record are its records decoded one by one with error handling, to find which ones to
reject. Records are rejected whole, with one of the reasons in `DECODE_REASONS`;
nothing but `engine.errors.RecordError` leaves this module, and `decode_batch`
raises nothing. The strings that become cache keys and the weight are bounded
(`MAX_SERVICE_LEN`, `MAX_OPERATION_LEN`, `MAX_STATUS_LEN`, `MAX_COUNT`, and for the
optional `labels` `MAX_LABELS` and `MAX_LABEL_BYTES`): an event over a bound makes its
record `bad_value`. Labels are usually absent: a batch pays one scan for whether any
event has them, and only events that do are checked for their byte lengths.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from itertools import chain
from operator import attrgetter
from typing import Annotated, Literal

import msgspec
import numpy as np
import numpy.typing as npt

from engine.errors import RecordError

DECODE_REASONS = ("malformed", "wrong_type", "missing_service", "bad_value")
TIME_REASONS = ("too_far_in_future", "too_late", "missing_ts")
REJECT_REASONS = DECODE_REASONS + TIME_REASONS

WireFormat = Literal["json", "msgpack", "otlp_proto", "otlp_json"]
"""The event wire format (`json`, `msgpack`: this module) or OTLP traces (`otlp_proto`,
`otlp_json`: `engine.core.otlp`)."""

_MAX_TS_S = 1e11  # year 5138: anything later is a unit mistake (ms or us sent as seconds)
_MAX_LATENCY_MS = 1e12

# Bounds on what one event may carry; beyond them the record is `bad_value`. They keep
# hostile input from corrupting counts or growing memory (docs/design.md, "Bounds").
MAX_COUNT = 1_000_000
"""Largest `count` (weight) of one event. Counters are exact int64s: at 1 M events/s
(about the engine's ceiling per core) all of this weight, 2^63 - 1 requests take 107
days to reach; at 1 M real requests/s, 292,000 years. Beyond, they saturate."""
MAX_SERVICE_LEN = 128
"""Longest `service`, in characters (a service name; SLO names are at most 128 too)."""
MAX_OPERATION_LEN = 256
"""Longest `operation`, in characters (a route template or RPC method name)."""
MAX_STATUS_LEN = 64
"""Longest string `status`, in characters (a status word or code name)."""
MAX_LABELS = 16
"""Most `labels` one event may carry."""
MAX_LABEL_BYTES = 128
"""Longest label key or value, in UTF-8 bytes. msgspec bounds characters, so the
decoder bounds them at this many characters and then checks the bytes of labels that
are not ASCII (`labels_error`)."""

_LabelStr = Annotated[str, msgspec.Meta(max_length=MAX_LABEL_BYTES)]
Labels = Annotated[dict[_LabelStr, _LabelStr], msgspec.Meta(max_length=MAX_LABELS)]


class Event(msgspec.Struct, gc=False):
    """One request event. Unknown fields are ignored; constraints reject bad numbers."""

    service: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_SERVICE_LEN)]
    # Absent numbers default to NaN (not None) so columns are built with a fast float
    # conversion; an explicit JSON null still decodes (to None) and means absent too.
    ts: Annotated[float, msgspec.Meta(ge=0, le=_MAX_TS_S)] | None = math.nan
    operation: Annotated[str, msgspec.Meta(max_length=MAX_OPERATION_LEN)] | None = None
    status: int | Annotated[str, msgspec.Meta(max_length=MAX_STATUS_LEN)] | None = None
    latency_ms: Annotated[float, msgspec.Meta(ge=0, le=_MAX_LATENCY_MS)] | None = math.nan
    ok: bool | None = None
    count: Annotated[int, msgspec.Meta(ge=1, le=MAX_COUNT)] = 1
    labels: Labels | None = None


Record = Event | list[Event]


class DecodedBatch(msgspec.Struct):
    """Events of a batch in record order, the record each came from, and the rejects."""

    events: list[Event]
    record_index: npt.NDArray[np.int32] | None
    """For each event, the index of its record in the input batch (None: event i is
    record i, the common case of single-event records)."""
    rejected: list[tuple[int, str, str]]
    """(record index, reason, detail) for every rejected record."""
    n_records: int
    """Records in the input, accepted or not."""
    ignored: int = 0
    """Items of accepted records that are not request events (OTLP spans that are not
    SERVER spans): counted, neither events nor rejections."""

    def indices(self) -> list[int]:
        """The record index of every event as a plain list."""
        if self.record_index is None:
            return list(range(len(self.events)))
        return [int(i) for i in self.record_index]


# What msgspec may raise on hostile input: its own errors, invalid UTF-8 in a string
# field, and nesting deeper than the interpreter's recursion limit in an ignored field.
DECODE_ERRORS = (msgspec.MsgspecError, UnicodeDecodeError, RecursionError)


_LABELS_OF = attrgetter("labels")


def labels_error(labels: dict[str, str]) -> str | None:
    """Why `labels` (within the character bounds already) is over `MAX_LABEL_BYTES`, or
    None. Only strings that are not ASCII can be: `str.isascii` is O(1) in CPython."""
    for k, v in labels.items():
        for s, what in ((k, "key"), (v, "value")):
            if not s.isascii() and len(s.encode("utf-8", "surrogatepass")) > MAX_LABEL_BYTES:
                return f"label {what} over {MAX_LABEL_BYTES} bytes - at `$.labels`"
    return None


def _ascii_json(data: bytes) -> bool:
    """Whether every string decoded from this JSON is ASCII: the bytes are, and hold no
    `\\u` escape (the only way JSON spells a character beyond ASCII in ASCII bytes)."""
    return data.isascii() and b"\\u" not in data


def _labels_ok(events: list[Event], ascii_input: Callable[[], bool] | None = None) -> bool:
    """Whether every event's labels are within the byte bound: one C-level scan when no
    event has labels (the usual case); then a C-level scan of the input when
    `ascii_input` says all its strings are ASCII (JSON), else C-level joins of the
    labels' strings to see whether they are; for ASCII strings the length in
    characters, already bounded, is the length in bytes."""
    if not any(map(_LABELS_OF, events)):
        return True
    if ascii_input is not None and ascii_input():
        return True
    maps = [m for m in map(_LABELS_OF, events) if m]
    if (
        "".join(chain.from_iterable(maps)).isascii()
        and "".join(chain.from_iterable(map(dict.values, maps))).isascii()
    ):
        return True
    return all(labels_error(m) is None for m in maps)


def reason_for(exc: BaseException) -> str:
    """Map a msgspec error onto a rejection reason."""
    if not isinstance(exc, msgspec.ValidationError):
        return "malformed"
    msg = str(exc)
    if "missing required field `service`" in msg or (
        "length >=" in msg and msg.endswith(".service`")
    ):
        return "missing_service"
    if "out of range" in msg or ">=" in msg or "<=" in msg:
        return "bad_value"
    return "wrong_type"


class RecordDecoder:
    """Reusable decoder for one wire format. Create once; call `decode_batch` per fetch."""

    def __init__(self, fmt: Literal["json", "msgpack"] = "json") -> None:
        self.format = fmt
        if fmt == "json":
            self._record: Callable[[bytes], Record] = msgspec.json.Decoder(Record).decode
            self._event: Callable[[bytes], Event] = msgspec.json.Decoder(Event).decode
        else:
            self._record = msgspec.msgpack.Decoder(Record).decode
            self._event = msgspec.msgpack.Decoder(Event).decode
        self._json_record_lines = msgspec.json.Decoder(Record).decode_lines
        self._json_event_lines = msgspec.json.Decoder(Event).decode_lines
        self._single_events = True

    def decode_one(self, value: bytes) -> list[Event]:
        """Events of one record; raises RecordError with the rejection reason."""
        try:
            rec = self._record(value)
        except DECODE_ERRORS as exc:
            raise RecordError(reason_for(exc), str(exc)) from None
        events = rec if isinstance(rec, list) else [rec]
        for e in events:
            if e.labels:
                err = labels_error(e.labels)
                if err is not None:
                    raise RecordError("bad_value", err)
        return events

    def json_lines(self, block: bytes) -> DecodedBatch | None:
        """Every line of a JSON Lines block in one msgspec call; None if any line is bad.

        msgspec splits on any whitespace, so the count of values is compared with the
        count of lines: a line with two values, or a value over two lines, sends the
        block to the line-by-line path (which rejects them). Two such lines in one block
        could cancel out; both are then read as values instead of being rejected."""
        n_lines = block.count(b"\n")
        if self._single_events:
            try:
                events = self._json_event_lines(block)
            except msgspec.ValidationError:
                self._single_events = False
            except DECODE_ERRORS:
                return None
            else:
                if len(events) != n_lines or not _labels_ok(events, lambda: _ascii_json(block)):
                    return None
                return DecodedBatch(events, None, [], n_lines)
        try:
            recs = self._json_record_lines(block)
        except DECODE_ERRORS:
            return None
        if len(recs) != n_lines:
            return None
        batch = self._flatten(recs)
        return batch if _labels_ok(batch.events, lambda: _ascii_json(block)) else None

    def decode_batch(self, values: Sequence[bytes | None]) -> DecodedBatch:
        """Decode many records; a bad record is rejected alone, the others are kept."""
        n = len(values)
        dec = self._event
        ascii_input = (
            (lambda: _ascii_json(b"".join(values)))  # type: ignore[arg-type]
            if self.format == "json"
            else None
        )
        if self._single_events:
            try:
                events = [dec(v) for v in values]  # type: ignore[arg-type]
            except msgspec.ValidationError:
                self._single_events = False  # maybe arrays; the general path tells
            except (*DECODE_ERRORS, TypeError):
                return self._decode_each(values)
            else:
                if not _labels_ok(events, ascii_input):
                    return self._decode_each(values)
                return DecodedBatch(events, None, [], n)
        rec = self._record
        try:
            recs = [rec(v) for v in values]  # type: ignore[arg-type]
        except (*DECODE_ERRORS, TypeError):
            return self._decode_each(values)
        batch = self._flatten(recs)
        return batch if _labels_ok(batch.events, ascii_input) else self._decode_each(values)

    def _flatten(self, recs: list[Record]) -> DecodedBatch:
        n = len(recs)
        kinds = set(map(type, recs))
        if kinds == {Event}:
            self._single_events = True
            return DecodedBatch(recs, None, [], n)  # type: ignore[arg-type]
        self._single_events = False
        if kinds == {list}:
            events = list(chain.from_iterable(recs))  # type: ignore[arg-type]
            lens = np.fromiter(map(len, recs), dtype=np.int64, count=n)  # type: ignore[arg-type]
        else:
            events = list(chain.from_iterable(r if type(r) is list else (r,) for r in recs))  # type: ignore[misc]
            lens = np.fromiter(
                (len(r) if type(r) is list else 1 for r in recs), dtype=np.int64, count=n
            )
        index = np.repeat(np.arange(n, dtype=np.int32), lens)
        return DecodedBatch(events, index, [], n)

    def _decode_each(self, values: Sequence[bytes | None]) -> DecodedBatch:
        events: list[Event] = []
        index: list[int] = []
        rejected: list[tuple[int, str, str]] = []
        for i, value in enumerate(values):
            if not value:
                rejected.append((i, "malformed", "empty record"))
                continue
            try:
                evs = self.decode_one(value)
            except RecordError as exc:
                rejected.append((i, exc.reason, exc.detail))
                continue
            events.extend(evs)
            index.extend([i] * len(evs))
        return DecodedBatch(events, np.array(index, dtype=np.int32), rejected, len(values))
