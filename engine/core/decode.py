"""Wire decoding: Kafka record values (or JSON lines) into request events, in batches.

A record is one event object or an array of them (DESIGN section 3), JSON or
MessagePack. JSON records of a batch are decoded with a single msgspec call on
the records joined into one array; only when that fails (some record is bad) are
the records of the batch decoded one by one to find which ones to reject. Records
are rejected whole, with one of the reasons in `DECODE_REASONS`; nothing but
`engine.errors.RecordError` leaves this module, and `decode_batch` raises nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Literal

import msgspec

from engine.errors import RecordError

DECODE_REASONS = ("malformed", "wrong_type", "missing_service", "bad_value")
TIME_REASONS = ("too_far_in_future", "too_late", "missing_ts")
REJECT_REASONS = DECODE_REASONS + TIME_REASONS

WireFormat = Literal["json", "msgpack"]

_MAX_TS_S = 1e11  # year 5138: anything later is a unit mistake (ms or us sent as seconds)
_MAX_LATENCY_MS = 1e12


class Event(msgspec.Struct, gc=False):
    """One request event. Unknown fields are ignored; constraints reject bad numbers."""

    service: Annotated[str, msgspec.Meta(min_length=1)]
    ts: Annotated[float, msgspec.Meta(ge=0, le=_MAX_TS_S)] | None = None
    operation: str | None = None
    status: int | str | None = None
    latency_ms: Annotated[float, msgspec.Meta(ge=0, le=_MAX_LATENCY_MS)] | None = None
    ok: bool | None = None
    count: Annotated[int, msgspec.Meta(ge=1, le=2**40)] = 1


Record = Event | list[Event]


class DecodedBatch(msgspec.Struct):
    """Events of a batch in record order, the record each came from, and the rejects."""

    events: list[Event]
    record_index: list[int] | None
    """For each event, the index of its record in the input batch (None: event i is
    record i, the common case of single-event records)."""
    rejected: list[tuple[int, str, str]]
    """(record index, reason, detail) for every rejected record."""
    n_records: int
    """Records in the input, accepted or not."""


# What msgspec may raise on hostile input: its own errors, invalid UTF-8 in a string
# field, and nesting deeper than the interpreter's recursion limit in an ignored field.
DECODE_ERRORS = (msgspec.MsgspecError, UnicodeDecodeError, RecursionError)


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

    def __init__(self, fmt: WireFormat = "json") -> None:
        self.format = fmt
        self._json_one = msgspec.json.Decoder(Record)
        self._json_many = msgspec.json.Decoder(list[Record])
        self._msgpack_one = msgspec.msgpack.Decoder(Record)
        self._json_event = msgspec.json.Decoder(Event)
        self._json_raws = msgspec.json.Decoder(list[msgspec.Raw])
        self._single_events = True

    def decode_one(self, value: bytes) -> list[Event]:
        """Events of one record; raises RecordError with the rejection reason."""
        try:
            if self.format == "json":
                rec = self._json_one.decode(value)
            else:
                rec = self._msgpack_one.decode(value)
        except DECODE_ERRORS as exc:
            raise RecordError(reason_for(exc), str(exc)) from None
        return rec if isinstance(rec, list) else [rec]

    def json_lines(self, block: bytes) -> DecodedBatch | None:
        """Every line of a JSON Lines block in one msgspec call; None if any line is bad.

        Streams are usually uniform, so single-event lines are first decoded as plain
        events (no per-record type check afterwards); arrays take the general path."""
        if self._single_events:
            try:
                events = self._json_event.decode_lines(block)
                if len(events) == block.count(b"\n"):
                    return DecodedBatch(events, None, [], len(events))
                return None
            except msgspec.ValidationError:
                self._single_events = False
            except DECODE_ERRORS:
                return None
        try:
            recs = self._json_one.decode_lines(block)
        except DECODE_ERRORS:
            return None
        if len(recs) != block.count(b"\n"):
            return None  # a line with two values, or one value over two lines
        batch = _flatten(recs)
        self._single_events = len(batch.events) == len(recs) and not any(
            isinstance(r, list) for r in recs
        )
        return batch

    def decode_batch(self, values: Sequence[bytes | None]) -> DecodedBatch:
        """Decode many records; a bad record is rejected alone, the others are kept."""
        if self.format == "json" and values and _joinable(values):
            joined = b"[" + b",".join(values) + b"]"  # type: ignore[arg-type]
            try:
                # Each element must span exactly its own record, or a record that
                # splits in two could cancel out two that merge into one.
                raws = self._json_raws.decode(joined)
                if len(raws) == len(values) and all(
                    len(r) == len(v)  # type: ignore[arg-type]
                    for r, v in zip(raws, values, strict=True)
                ):
                    return _flatten(self._json_many.decode(joined))
            except DECODE_ERRORS:
                pass
        return self._decode_each(values)

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
        return DecodedBatch(events, index, rejected, len(values))


def _joinable(values: Sequence[bytes | None]) -> bool:
    """Each value must be a bracketed JSON object/array (no surrounding whitespace), so
    that the element lengths of the joined array can be compared with the records'."""
    for v in values:
        if not v:
            return False
        first, last = v[0], v[-1]
        if not ((first == 0x7B and last == 0x7D) or (first == 0x5B and last == 0x5D)):
            return False
    return True


def _flatten(recs: list[Event | list[Event]]) -> DecodedBatch:
    events: list[Event] = []
    index: list[int] = []
    for i, r in enumerate(recs):
        if isinstance(r, list):
            events.extend(r)
            index.extend([i] * len(r))
        else:
            events.append(r)
            index.append(i)
    return DecodedBatch(events, index, [], len(recs))
