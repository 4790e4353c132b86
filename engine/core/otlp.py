"""OTLP trace input: records of the OpenTelemetry Collector's Kafka exporter into events.

Theory of operation
-------------------
The Collector's Kafka exporter writes one `ExportTraceServiceRequest` per Kafka record,
as protobuf (`otlp_proto`) or as OTLP/JSON (`otlp_json`). One record holds many spans
of many services (resource spans -> scope spans -> spans), so a record here is what a
batched array record is in the event wire format: the fast path.

A SERVER span is a request the service served, and becomes one `Event`:

- `service`: the resource attribute `service.name`;
- `operation`: `http.route` after the HTTP method (`http.request.method`, older
  `http.method`), e.g. `GET /orders/{id}`; else `rpc.service/rpc.method` (gRPC's full
  method name, as the span names it); else the method alone; else none (attributes
  that are not strings are left out);
- `status`: `http.response.status_code` (older `http.status_code`), else
  `rpc.grpc.status_code`, as numbers the reliability taxonomy judges like the `status`
  of any event; without either, the span status: ERROR is the word `error` (bad), OK is
  `ok`, UNSET no status (both good);
- `latency_ms`: end - start; `ts`: the end, in epoch seconds (a time of 0 is unset: no
  latency, or the Kafka record time).

CLIENT, INTERNAL, PRODUCER and CONSUMER spans (and spans of no kind) describe calls made
or work done inside a request, not requests served: they are not events. Their number
is returned (`DecodedBatch.ignored`) and counted apart from rejections, since they are
no error (`Ingestor.spans_ignored`, exported as `burnrate_spans_ignored_total`). Span
attributes are scanned only for SERVER spans, and only the handful of keys above kept.

A record is accepted or rejected whole, with the reasons of the event wire format: bytes
that do not decode (or decode to no resource spans) are `malformed`, a value of a wrong
type `wrong_type`, a SERVER span whose resource has no `service.name` `missing_service`,
and a span over the event bounds (name lengths, an end before its start) `bad_value`.

Protobuf is decoded with `opentelemetry-proto`'s generated classes (protobuf's upb
backend parses in C; attribute access still costs a Python call each). OTLP/JSON is not
protobuf's canonical JSON (ids are hex, enums integers), so it is decoded with msgspec
into a few Structs that name only the fields used; unknown fields are skipped in C.
64-bit integers may be JSON strings or numbers, enums numbers or names.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import msgspec
import numpy as np
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from engine.core.decode import (
    DECODE_ERRORS,
    MAX_OPERATION_LEN,
    MAX_SERVICE_LEN,
    MAX_STATUS_LEN,
    DecodedBatch,
    Event,
    reason_for,
)
from engine.errors import RecordError

__all__ = ["OtlpDecoder", "OtlpFormat", "span_event"]

OtlpFormat = Literal["otlp_proto", "otlp_json"]

SPAN_KIND_SERVER = 2
_STATUS_OK = 1
_STATUS_ERROR = 2
_MAX_LATENCY_MS = 1e12

_HTTP_CODES = ("http.response.status_code", "http.status_code")
_HTTP_METHODS = ("http.request.method", "http.method")
_WANTED = frozenset(
    {
        *_HTTP_CODES,
        *_HTTP_METHODS,
        "http.route",
        "rpc.service",
        "rpc.method",
        "rpc.grpc.status_code",
    }
)
_STATUS_KEYS = (*_HTTP_CODES, "rpc.grpc.status_code")
_SPAN_STATUS = {_STATUS_ERROR: "error", _STATUS_OK: "ok"}


def span_event(
    service: str | None,
    attrs: Mapping[str, object],
    status_code: int,
    start_ns: int,
    end_ns: int,
) -> Event:
    """The event of one SERVER span; raises RecordError for a span beyond the bounds.

    `attrs` holds the span's wanted attributes as plain values (str, int, ...)."""
    if not service:
        raise RecordError("missing_service", "no `service.name` resource attribute")
    if len(service) > MAX_SERVICE_LEN:
        raise RecordError("bad_value", f"`service.name` over {MAX_SERVICE_LEN} characters")
    status: object = None
    for key in _STATUS_KEYS:
        status = attrs.get(key)
        if status is not None:
            break
    if status is None:
        status = _SPAN_STATUS.get(status_code)
    elif type(status) is str:
        if len(status) > MAX_STATUS_LEN:
            raise RecordError("bad_value", f"status code over {MAX_STATUS_LEN} characters")
    elif type(status) is not int:
        raise RecordError("wrong_type", f"status code of type {type(status).__name__}")
    operation = _operation(attrs)
    if operation is not None and len(operation) > MAX_OPERATION_LEN:
        raise RecordError("bad_value", f"operation over {MAX_OPERATION_LEN} characters")
    if start_ns < 0 or end_ns < 0:  # fixed64 in protobuf; OTLP/JSON could say anything
        raise RecordError("bad_value", "a negative span time")
    latency_ms = math.nan
    if start_ns and end_ns:
        if end_ns < start_ns:
            raise RecordError("bad_value", "a span that ends before it starts")
        latency_ms = (end_ns - start_ns) / 1e6
        if latency_ms > _MAX_LATENCY_MS:
            raise RecordError("bad_value", "a span longer than 10^12 ms")
    ts = end_ns / 1e9 if end_ns else math.nan
    return Event(service, ts, operation, status, latency_ms, None, 1, None)


def _text(attrs: Mapping[str, object], key: str) -> str | None:
    """A string attribute, or None (absent, empty, or of another type: a route that is
    a number or a list names no operation)."""
    value = attrs.get(key)
    return value if type(value) is str and value else None


def _operation(attrs: Mapping[str, object]) -> str | None:
    method = _text(attrs, "http.request.method") or _text(attrs, "http.method")
    route = _text(attrs, "http.route")
    if route:
        return f"{method} {route}" if method else route
    rpc_service, rpc_method = _text(attrs, "rpc.service"), _text(attrs, "rpc.method")
    if rpc_service and rpc_method:
        return f"{rpc_service}/{rpc_method}"
    return rpc_method or rpc_service or method


# -- protobuf --------------------------------------------------------------------------


def _proto_value(value: Any) -> object:
    """A protobuf AnyValue as a plain value (None when unset)."""
    which = value.WhichOneof("value")
    return None if which is None else getattr(value, which)


def _proto_spans(data: bytes, out: list[Event]) -> int:
    """Append the events of one protobuf record to `out`; the number of ignored spans.

    The innermost loop is written out (no helper call per attribute): with upb, reading
    a field costs about as much as a Python call, and it runs for every attribute of
    every SERVER span."""
    try:
        request = ExportTraceServiceRequest.FromString(data)
    except DecodeError as exc:
        raise RecordError("malformed", f"not an OTLP ExportTraceServiceRequest: {exc}") from None
    if not request.resource_spans:
        raise RecordError("malformed", "no resource spans")
    ignored = 0
    wanted = _WANTED
    append = out.append
    for rs in request.resource_spans:
        service: str | None = None
        for kv in rs.resource.attributes:
            if kv.key == "service.name":
                v = _proto_value(kv.value)
                service = v if isinstance(v, str) else None
        for ss in rs.scope_spans:
            for span in ss.spans:
                if span.kind != SPAN_KIND_SERVER:
                    ignored += 1
                    continue
                attrs = {}
                for kv in span.attributes:
                    key = kv.key
                    if key in wanted:
                        value = kv.value
                        which = value.WhichOneof("value")
                        if which is not None:
                            attrs[key] = getattr(value, which)
                append(
                    span_event(
                        service,
                        attrs,
                        span.status.code,
                        span.start_time_unix_nano,
                        span.end_time_unix_nano,
                    )
                )
    return ignored


# -- OTLP/JSON -------------------------------------------------------------------------

_Int = int | str
"""An OTLP/JSON integer: 64-bit ones are written as strings, enums may be names."""


class _JValue(msgspec.Struct, rename="camel", gc=False):
    string_value: str | None = None
    int_value: _Int | None = None
    bool_value: bool | None = None
    double_value: float | None = None
    array_value: msgspec.Raw = msgspec.Raw()
    kvlist_value: msgspec.Raw = msgspec.Raw()
    bytes_value: msgspec.Raw = msgspec.Raw()
    """Kept raw (never read): only that they are there, so that a status code that is a
    list reads as the wrong type it is, as in protobuf, and not as no status at all."""


class _JKeyValue(msgspec.Struct, gc=False):
    key: str
    value: _JValue | None = None


class _JStatus(msgspec.Struct, gc=False):
    code: _Int = 0


class _JSpan(msgspec.Struct, rename="camel", gc=False):
    kind: _Int = 0
    start_time_unix_nano: _Int = 0
    end_time_unix_nano: _Int = 0
    attributes: list[_JKeyValue] = []
    status: _JStatus | None = None


class _JScopeSpans(msgspec.Struct, gc=False):
    spans: list[_JSpan] = []


class _JResource(msgspec.Struct, gc=False):
    attributes: list[_JKeyValue] = []


class _JResourceSpans(msgspec.Struct, rename="camel", gc=False):
    resource: _JResource | None = None
    scope_spans: list[_JScopeSpans] = []


class _JRequest(msgspec.Struct, rename="camel", gc=False):
    resource_spans: list[_JResourceSpans] = []


_ENUMS = {"SPAN_KIND_SERVER": SPAN_KIND_SERVER, "STATUS_CODE_OK": 1, "STATUS_CODE_ERROR": 2}


_INT_MIN, _UINT_MAX = -(2**63), 2**64 - 1
_MAX_INT_DIGITS = 20
"""Digits of the longest 64-bit integer; a longer string is no OTLP integer (and would
cost int() quadratic time, or its digit limit's ValueError)."""


def _int(value: _Int, what: str) -> int:
    """An OTLP/JSON integer (int64 or uint64, as a number or a string) or enum name."""
    if type(value) is int:
        number = value
    else:
        text = str(value)
        digits = text[1:] if text.startswith("-") else text
        if not (digits.isascii() and digits.isdigit() and len(digits) <= _MAX_INT_DIGITS):
            if text in _ENUMS or text.startswith(("SPAN_KIND_", "STATUS_CODE_")):
                return _ENUMS.get(text, 0)
            raise RecordError("wrong_type", f"`{what}` is not an integer: {text[:40]!r}")
        number = int(text)
    if not _INT_MIN <= number <= _UINT_MAX:
        raise RecordError("bad_value", f"`{what}` beyond 64 bits")
    return number


def _json_value(value: _JValue | None, key: str) -> object:
    if value is None:
        return None
    if value.string_value is not None:
        return value.string_value
    if value.int_value is not None:
        return _int(value.int_value, key)
    if value.bool_value is not None:
        return value.bool_value
    if value.double_value is not None:
        return value.double_value
    return value.array_value or value.kvlist_value or value.bytes_value or None


def _json_spans(decode: Callable[[bytes], _JRequest], data: bytes, out: list[Event]) -> int:
    """Append the events of one OTLP/JSON record to `out`; the number of ignored spans."""
    try:
        request = decode(data)
    except DECODE_ERRORS as exc:
        raise RecordError(reason_for(exc), str(exc)) from None
    if not request.resource_spans:
        raise RecordError("malformed", "no resource spans")
    ignored = 0
    for rs in request.resource_spans:
        service: str | None = None
        for kv in rs.resource.attributes if rs.resource is not None else ():
            if kv.key == "service.name":
                v = _json_value(kv.value, kv.key)
                service = v if isinstance(v, str) else None
        for ss in rs.scope_spans:
            for span in ss.spans:
                if _int(span.kind, "kind") != SPAN_KIND_SERVER:
                    ignored += 1
                    continue
                attrs = {
                    kv.key: _json_value(kv.value, kv.key)
                    for kv in span.attributes
                    if kv.key in _WANTED
                }
                status = 0 if span.status is None else _int(span.status.code, "status.code")
                out.append(
                    span_event(
                        service,
                        attrs,
                        status,
                        _int(span.start_time_unix_nano, "startTimeUnixNano"),
                        _int(span.end_time_unix_nano, "endTimeUnixNano"),
                    )
                )
    return ignored


# -- batches ---------------------------------------------------------------------------


class OtlpDecoder:
    """Reusable decoder of OTLP trace records (`otlp_proto` or `otlp_json`); same
    `decode_batch` contract as `engine.core.decode.RecordDecoder`."""

    def __init__(self, fmt: OtlpFormat = "otlp_proto") -> None:
        self.format = fmt
        if fmt == "otlp_json":
            decode = msgspec.json.Decoder(_JRequest).decode
            self._spans: Callable[[bytes, list[Event]], int] = lambda data, out: _json_spans(
                decode, data, out
            )
        else:
            self._spans = _proto_spans

    def decode_batch(self, values: Sequence[bytes | None]) -> DecodedBatch:
        """Decode many records; a bad record is rejected alone, the others are kept."""
        events: list[Event] = []
        lengths: list[int] = []
        rejected: list[tuple[int, str, str]] = []
        ignored = 0
        spans = self._spans
        for i, value in enumerate(values):
            if not value:
                rejected.append((i, "malformed", "empty record"))
                lengths.append(0)
                continue
            before = len(events)
            try:
                ignored += spans(value, events)
            except RecordError as exc:
                del events[before:]  # a record is rejected whole
                rejected.append((i, exc.reason, exc.detail))
            lengths.append(len(events) - before)
        index = np.repeat(np.arange(len(values), dtype=np.int32), lengths)
        return DecodedBatch(events, index, rejected, len(values), ignored)
