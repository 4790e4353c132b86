"""OTLP trace records (SDK-encoded) into events: the span mapping, ignored spans, rejects."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.trace import SpanKind, StatusCode

from engine.core.config import parse_config
from engine.core.decode import DECODE_REASONS, Event
from engine.core.evaluator import Evaluator
from engine.core.ingest import Ingestor
from engine.core.otlp import OtlpDecoder, OtlpFormat
from engine.core.taxonomy import Outcome, classify
from tests.unit.core.otlp_spans import ENCODERS, SpanSpec, canonical_json

FORMATS: list[OtlpFormat] = ["otlp_proto", "otlp_json"]
T0_NS = 1_767_225_600 * 10**9


def span(i: int = 0, latency_ms: float = 20.0, **kw: object) -> SpanSpec:
    end = T0_NS + i * 10**9
    return SpanSpec(start_ns=end - int(latency_ms * 1e6), end_ns=end, **kw)  # type: ignore[arg-type]


def decode(fmt: OtlpFormat, *values: bytes) -> tuple[list[Event], list[int], list[str], int]:
    batch = OtlpDecoder(fmt).decode_batch(list(values))
    return batch.events, batch.indices(), [r for _, r, _ in batch.rejected], batch.ignored


@pytest.mark.parametrize("fmt", FORMATS)
def test_an_http_server_span_becomes_one_event(fmt: OtlpFormat) -> None:
    attrs = {
        "http.request.method": "GET",
        "http.route": "/orders/{id}",
        "http.response.status_code": 503,
        "url.path": "/orders/42",
    }
    value = ENCODERS[fmt](("checkout", [span(3, latency_ms=41.5, attributes=attrs)]))
    events, index, rejected, ignored = decode(fmt, value)
    assert (index, rejected, ignored) == ([0], [], 0)
    (e,) = events
    assert e.service == "checkout"
    assert e.operation == "GET /orders/{id}"
    assert e.status == 503
    assert e.latency_ms == pytest.approx(41.5)
    assert e.ts == pytest.approx(T0_NS / 1e9 + 3)
    assert (e.ok, e.count, e.labels) == (None, 1, None)
    assert classify(e.status, e.ok) is Outcome.BAD


@pytest.mark.parametrize("fmt", FORMATS)
def test_older_http_conventions_and_rpc_spans(fmt: OtlpFormat) -> None:
    old_http = {"http.method": "POST", "http.route": "/pay", "http.status_code": 404}
    grpc = {"rpc.service": "shop.Payments", "rpc.method": "Charge", "rpc.grpc.status_code": 14}
    method_only = {"http.request.method": "DELETE", "http.response.status_code": 204}
    value = ENCODERS[fmt](
        (
            "payments",
            [
                span(0, attributes=old_http),
                span(1, attributes=grpc),
                span(2, attributes=method_only),
                span(3, attributes={"http.route": "/health"}),
            ],
        )
    )
    events, _, _, _ = decode(fmt, value)
    assert [(e.operation, e.status) for e in events] == [
        ("POST /pay", 404),
        ("shop.Payments/Charge", 14),
        ("DELETE", 204),
        ("/health", None),
    ]
    # through the taxonomy like any event: 404 is the client's, UNAVAILABLE the server's
    assert [classify(e.status, e.ok) for e in events] == [
        Outcome.GOOD,
        Outcome.BAD,
        Outcome.GOOD,
        Outcome.GOOD,
    ]


@pytest.mark.parametrize("fmt", FORMATS)
def test_without_a_status_code_the_span_status_decides(fmt: OtlpFormat) -> None:
    value = ENCODERS[fmt](
        (
            "api",
            [
                span(0, status=StatusCode.ERROR),
                span(1, status=StatusCode.OK),
                span(2),
                # a code wins over the span status
                span(3, status=StatusCode.ERROR, attributes={"http.response.status_code": 200}),
            ],
        )
    )
    events, _, _, _ = decode(fmt, value)
    assert [classify(e.status, e.ok) for e in events] == [
        Outcome.BAD,
        Outcome.GOOD,
        Outcome.GOOD,
        Outcome.GOOD,
    ]


@pytest.mark.parametrize("fmt", FORMATS)
def test_spans_that_are_not_server_spans_are_ignored_and_counted(fmt: OtlpFormat) -> None:
    others = [SpanKind.CLIENT, SpanKind.INTERNAL, SpanKind.PRODUCER, SpanKind.CONSUMER]
    value = ENCODERS[fmt](
        ("api", [span(i, kind=k) for i, k in enumerate(others)] + [span(9)]),
        ("worker", [span(0, kind=SpanKind.CONSUMER)]),
    )
    events, index, rejected, ignored = decode(fmt, value)
    assert [e.service for e in events] == ["api"]
    assert (index, rejected, ignored) == ([0], [], 5)


@pytest.mark.parametrize("fmt", FORMATS)
def test_many_services_in_one_record(fmt: OtlpFormat) -> None:
    value = ENCODERS[fmt](("a", [span(0), span(1)]), ("b", [span(2)]))
    events, index, _, _ = decode(fmt, value, value)
    assert [e.service for e in events] == ["a", "a", "b"] * 2
    assert index == [0, 0, 0, 1, 1, 1]


def test_protobufs_canonical_json_reads_the_same() -> None:
    """Enum names and base64 ids (protobuf's JSON mapping) as well as the Collector's."""
    specs = [span(0, attributes={"http.response.status_code": 500}), span(1, kind=SpanKind.CLIENT)]
    a = decode("otlp_json", canonical_json(("api", specs)))
    b = decode("otlp_json", ENCODERS["otlp_json"](("api", specs)))
    assert a == b
    assert len(a[0]) == 1
    assert a[3] == 1


@pytest.mark.parametrize("fmt", FORMATS)
def test_bad_records_are_rejected_whole_and_alone(fmt: OtlpFormat) -> None:
    enc = ENCODERS[fmt]
    good = enc(("api", [span(0)]))
    no_service = enc((None, [span(0)]), ("api", [span(1)]))
    backwards = enc(("api", [span(0), SpanSpec(start_ns=T0_NS, end_ns=T0_NS - 1)]))
    long_service = enc(("x" * 129, [span(0)]))
    long_route = enc(("api", [span(0, attributes={"http.route": "/" + "r" * 300})]))
    garbage = b"\x0a\xff\xff" if fmt == "otlp_proto" else b'{"resourceSpans": [{'
    values = [good, no_service, backwards, b"", long_service, garbage, long_route, b"{}", good]
    _, index, rejected, ignored = decode(fmt, *values)
    assert index == [0, 8]
    assert rejected == [
        "missing_service",
        "bad_value",
        "malformed",
        "bad_value",
        "malformed",
        "bad_value",
        "malformed",  # decodes (or not) to no resource spans
    ]
    assert ignored == 0


def test_a_resource_without_service_name_is_fine_when_it_has_no_server_span() -> None:
    value = ENCODERS["otlp_proto"]((None, [span(0, kind=SpanKind.CLIENT)]), ("api", [span(1)]))
    events, _, rejected, ignored = decode("otlp_proto", value)
    assert ([e.service for e in events], rejected, ignored) == (["api"], [], 1)


def test_otlp_json_integers_may_be_strings_numbers_or_names() -> None:
    doc = (
        b'{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":'
        b'{"stringValue":"api"}}]},"scopeSpans":[{"spans":['
        b'{"kind":"SPAN_KIND_SERVER","startTimeUnixNano":1000000000,"endTimeUnixNano":'
        b'"3000000000","attributes":[{"key":"http.response.status_code","value":{"intValue":"502"}}]},'
        b'{"kind":2,"startTimeUnixNano":"x","endTimeUnixNano":"1"}]}]}]}'
    )
    events, _, rejected, _ = decode("otlp_json", doc)
    assert (events, rejected) == ([], ["wrong_type"])  # "x" is no integer: record rejected
    events, _, rejected, _ = decode("otlp_json", doc.replace(b'"x"', b'"0"'))
    assert rejected == []
    assert [(e.status, e.latency_ms, e.ts) for e in events[:1]] == [(502, 2000.0, 3.0)]
    assert math.isnan(events[1].latency_ms)  # type: ignore[arg-type]  # start 0: unset
    events, _, rejected, _ = decode("otlp_json", doc.replace(b'"x"', b'"2"'))
    assert (events, rejected) == ([], ["bad_value"])  # ends (at 1 ns) before it starts


@pytest.mark.parametrize(
    ("status", "time", "reason"),
    [
        ('"-1"', '"5"', None),  # an int64 may be negative: a status the taxonomy does not know
        ('"' + "9" * 5000 + '"', '"5"', "wrong_type"),  # past int()'s digit limit: no crash
        ('"200"', "-5", "bad_value"),
        ('"200"', '"-5"', "bad_value"),
        ("99999999999999999999999", '"5"', "bad_value"),  # over 64 bits
    ],
)
def test_otlp_json_integers_out_of_bounds(status: str, time: str, reason: str | None) -> None:
    doc = (
        '{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":'
        '{"stringValue":"api"}}]},"scopeSpans":[{"spans":[{"kind":2,"startTimeUnixNano":'
        f'{time},"endTimeUnixNano":"9","attributes":[{{"key":"http.status_code","value":'
        f'{{"intValue":{status}}}}}]}}]}}]}}]}}'
    )
    events, _, rejected, _ = decode("otlp_json", doc.encode())
    if reason is None:
        assert rejected == []
        assert [e.status for e in events] == [-1]
    else:
        assert (events, rejected) == ([], [reason])


@pytest.mark.parametrize("fmt", FORMATS)
def test_unset_times_give_no_latency_and_the_record_time(fmt: OtlpFormat) -> None:
    value = ENCODERS[fmt](("api", [SpanSpec(start_ns=0, end_ns=0)]))
    (e,), _, _, _ = decode(fmt, value)
    assert math.isnan(e.latency_ms)  # type: ignore[arg-type]
    assert math.isnan(e.ts)  # type: ignore[arg-type]


CONFIG = """
slos:
  - {name: checkout-availability, service: checkout, sli: availability, objective: 99}
  - {name: checkout-latency, service: checkout, sli: latency, threshold_ms: 300, objective: 99}
  - {name: orders-availability, service: checkout, operation: "POST /orders",
     sli: availability, objective: 99}
"""


@pytest.mark.parametrize("fmt", FORMATS)
def test_ingest_counts_server_spans_per_slo(fmt: OtlpFormat) -> None:
    """Exact counts per SLO through the ingest pipeline `run` uses."""
    enc = ENCODERS[fmt]
    orders = {"http.request.method": "POST", "http.route": "/orders"}
    values = []
    for k in range(10):
        specs = [
            span(
                k * 10 + i,
                latency_ms=900.0 if i % 7 == 0 else 20.0,
                attributes={**orders, "http.response.status_code": 500 if i % 5 == 0 else 201},
            )
            for i in range(10)
        ] + [span(k, kind=SpanKind.CLIENT), span(k, kind=SpanKind.INTERNAL)]
        values.append(enc(("checkout", specs), ("cart", [span(k)])))
    values.insert(3, b"not otlp at all \xff")
    ev = Evaluator(parse_config(CONFIG))
    ingestor = Ingestor(ev)
    result = ingestor.records(values, fmt, now_s=T0_NS / 1e9 + 200)
    assert [(r.record, r.reason) for r in result.rejections] == [(3, "malformed")]
    counts = ev.counts()
    # per record: 10 checkout spans, 2 bad (i = 0, 5), 2 slow (i = 0, 7) -> 3 latency-bad
    assert counts.events_total.tolist() == [100, 100, 100]
    assert counts.bad_events_total.tolist() == [20, 30, 20]
    assert counts.unmatched_events == 10  # the cart spans
    assert ingestor.spans_ignored == 20
    assert ev.rejected_counts() == {"malformed": 1}


@pytest.mark.parametrize("fmt", FORMATS)
@settings(max_examples=300, deadline=None)
@given(values=st.lists(st.binary(max_size=200), max_size=8))
def test_random_bytes_never_crash(fmt: OtlpFormat, values: list[bytes]) -> None:
    """Any bytes: rejected with a decode reason, or read; every record accounted once."""
    ev = Evaluator(parse_config(CONFIG))
    result = Ingestor(ev).records(values, fmt, now_s=T0_NS / 1e9)
    rejected = [r.record for r in result.rejections]
    assert rejected == sorted(set(rejected))
    assert all(r.reason in DECODE_REASONS for r in result.rejections)
    assert sum(ev.rejected_counts().get(r, 0) for r in DECODE_REASONS) == len(rejected)
    assert result.records == len(values)
    # empty records and, for JSON, anything that is not an object are always rejected
    assert {i for i, v in enumerate(values) if not v} <= set(rejected)


@pytest.mark.parametrize("fmt", FORMATS)
@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_damaged_records_never_crash(fmt: OtlpFormat, data: st.DataObject) -> None:
    """A real record with bytes flipped, cut or inserted: rejected or read, never raised."""
    value = bytearray(ENCODERS[fmt](("api", [span(0), span(1, kind=SpanKind.CLIENT)])))
    for _ in range(data.draw(st.integers(1, 4))):
        pos = data.draw(st.integers(0, len(value) - 1))
        op = data.draw(st.sampled_from(["flip", "cut", "insert"]))
        if op == "flip":
            value[pos] = data.draw(st.integers(0, 255))
        elif op == "cut":
            del value[pos:]
            if not value:
                break
        else:
            value[pos:pos] = data.draw(st.binary(min_size=1, max_size=8))
    batch = OtlpDecoder(fmt).decode_batch([bytes(value)])
    assert len(batch.rejected) + (1 if batch.events or batch.ignored else 0) <= 1
    assert all(reason in DECODE_REASONS for _, reason, _ in batch.rejected)


_JSON_LEAF = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False),
    st.text(max_size=30),
    st.sampled_from(["SPAN_KIND_SERVER", "2", "-3", "STATUS_CODE_ERROR", "9" * 30]),
)
_ANY_JSON = _JSON_LEAF | st.lists(_JSON_LEAF, max_size=2) | st.just({"a": 1})


def _maybe(value: st.SearchStrategy[object]) -> st.SearchStrategy[object]:
    """`value`, or (one time in about eight) any JSON value: a wrong type where a field
    is expected."""
    return st.tuples(st.integers(0, 7), value, _ANY_JSON).map(lambda t: t[2] if t[0] == 7 else t[1])


_INT = st.integers(-(2**70), 2**70) | st.integers(0, 2**64).map(str)
_TEXT = st.text(max_size=300)
_ATTR = st.fixed_dictionaries(
    {
        "key": st.sampled_from(
            ["http.route", "http.method", "http.status_code", "rpc.grpc.status_code", "x"]
        ),
        "value": st.one_of(
            st.fixed_dictionaries({"stringValue": _maybe(_TEXT)}),
            st.fixed_dictionaries({"intValue": _maybe(_INT)}),
            st.fixed_dictionaries({"boolValue": st.booleans()}),
            st.fixed_dictionaries({"doubleValue": st.floats(allow_nan=False)}),
        ),
    }
)
_SERVICE = st.fixed_dictionaries(
    {"key": st.just("service.name"), "value": st.fixed_dictionaries({"stringValue": _maybe(_TEXT)})}
)
_SPAN = st.fixed_dictionaries(
    {"kind": _maybe(st.sampled_from([2, 2, 1, "SPAN_KIND_SERVER", "2"]))},
    optional={
        "startTimeUnixNano": _maybe(_INT),
        "endTimeUnixNano": _maybe(_INT),
        "attributes": st.lists(_ATTR, max_size=4),
        "status": st.fixed_dictionaries({"code": _maybe(st.integers(-3, 3))}),
    },
)
_RESOURCE_SPANS = st.fixed_dictionaries(
    {
        "resource": st.fixed_dictionaries(
            {"attributes": st.lists(_ATTR, max_size=2).map(list) | st.tuples(_SERVICE).map(list)}
        ),
        "scopeSpans": st.lists(
            st.fixed_dictionaries({"spans": st.lists(_SPAN, max_size=3)}), max_size=2
        ),
    }
)
_DOC = st.fixed_dictionaries({"resourceSpans": st.lists(_RESOURCE_SPANS, max_size=3)})


@settings(max_examples=300, deadline=None)
@given(docs=st.lists(_DOC, min_size=1, max_size=3))
def test_otlp_shaped_json_with_any_values_never_crashes(docs: list[object]) -> None:
    """Documents shaped like OTLP/JSON with wrong types, huge integers and odd enum
    spellings in their fields: each record is read (its events and ignored spans) or
    rejected with a decode reason, never raised."""
    values = [json.dumps(d).encode() for d in docs]
    batch = OtlpDecoder("otlp_json").decode_batch(values)
    assert all(reason in DECODE_REASONS for _, reason, _ in batch.rejected)
    assert len(batch.events) == len(batch.indices())
    assert not set(batch.indices()) & {i for i, _, _ in batch.rejected}


@pytest.mark.parametrize("fmt", FORMATS)
def test_attributes_of_other_types(fmt: OtlpFormat) -> None:
    """A route or method that is not a string names no operation; a status code that is
    neither an integer nor a string rejects the record."""
    odd = {"http.route": 42, "http.request.method": True, "rpc.service": ("a", "b")}
    value = ENCODERS[fmt](("api", [span(0, attributes=odd)]))
    events, _, rejected, _ = decode(fmt, value)
    assert ([e.operation for e in events], rejected) == ([None], [])
    for code in (200.0, False, (200,)):
        value = ENCODERS[fmt](("api", [span(0, attributes={"http.status_code": code})]))
        assert decode(fmt, value)[:3] == ([], [], ["wrong_type"])
