"""Wire decoding: records in, events or exactly one rejection per record out, never a crash."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.core.decode import (
    DECODE_REASONS,
    MAX_COUNT,
    MAX_LABEL_BYTES,
    MAX_LABELS,
    MAX_OPERATION_LEN,
    MAX_SERVICE_LEN,
    MAX_STATUS_LEN,
    Event,
    RecordDecoder,
    WireFormat,
)
from engine.errors import BurnrateError, RecordError

DECODERS: dict[str, RecordDecoder] = {
    "json": RecordDecoder("json"),
    "msgpack": RecordDecoder("msgpack"),
}
NAN, INF = float("nan"), float("inf")
WIDE = "\U0001f600"  # one character, four bytes in UTF-8


def _mp(obj: Any) -> bytes:
    return msgspec.msgpack.encode(obj)


def _one_by_one(
    decoder: RecordDecoder, values: Sequence[bytes | None]
) -> tuple[list[Event], list[int], list[tuple[int, str, str]]]:
    """The reference: every record decoded alone with `decode_one`."""
    events: list[Event] = []
    index: list[int] = []
    rejected: list[tuple[int, str, str]] = []
    for i, value in enumerate(values):
        if not value:
            rejected.append((i, "malformed", "empty record"))
            continue
        try:
            evs = decoder.decode_one(value)
        except RecordError as exc:
            rejected.append((i, exc.reason, exc.detail))
            continue
        events.extend(evs)
        index.extend([i] * len(evs))
    return events, index, rejected


def _check_batch(decoder: RecordDecoder, values: Sequence[bytes | None]) -> None:
    """decode_batch never raises, agrees with decoding one by one, and accounts for every
    record exactly once: either its events are there (under its index) or one rejection."""
    batch = decoder.decode_batch(values)
    rejected_ix = [i for i, _, _ in batch.rejected]
    assert rejected_ix == sorted(set(rejected_ix)), "a record was rejected twice"
    assert all(reason in DECODE_REASONS for _, reason, _ in batch.rejected)
    assert len(batch.events) == len(batch.indices())
    assert batch.indices() == sorted(batch.indices())
    assert not set(batch.indices()) & set(rejected_ix), "a record both accepted and rejected"
    assert all(0 <= i < len(values) for i in [*rejected_ix, *batch.indices()])
    events, index, rejected = _one_by_one(decoder, values)
    assert (batch.events, batch.indices(), batch.rejected) == (events, index, rejected)


# --- accepted records --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "value", "expected"),
    [
        pytest.param(
            "json",
            b'{"service":"checkout"}',
            [Event(service="checkout")],
            id="json a single object with only service",
        ),
        pytest.param(
            "json",
            b'{"service":"checkout","ts":1767225600.5,"operation":"POST /orders",'
            b'"status":503,"latency_ms":12.5,"ok":false,"count":7}',
            [
                Event(
                    service="checkout",
                    ts=1767225600.5,
                    operation="POST /orders",
                    status=503,
                    latency_ms=12.5,
                    ok=False,
                    count=7,
                )
            ],
            id="json every field of the contract",
        ),
        pytest.param(
            "json",
            b'[{"service":"a","status":"UNAVAILABLE"},{"service":"b","ts":1}]',
            [Event(service="a", status="UNAVAILABLE"), Event(service="b", ts=1.0)],
            id="json an array record is a batch of events",
        ),
        pytest.param("json", b"[]", [], id="json an empty array record holds no events"),
        pytest.param(
            "json",
            b' {"service":"a"}\n',
            [Event(service="a")],
            id="json whitespace around a record is fine",
        ),
        pytest.param(
            "json",
            b'{"service":"a","user":{"id":[1,2,{"x":null}]},"trace_id":"abc","ts":5}',
            [Event(service="a", ts=5.0)],
            id="json unknown fields of any shape are ignored",
        ),
        pytest.param(
            "json",
            b'{"service":"a","ts":0,"latency_ms":0}',
            [Event(service="a", ts=0.0, latency_ms=0.0)],
            id="json zero time and zero latency are valid",
        ),
        pytest.param(
            "json",
            b'{"service":"a","ts":null,"status":null,"ok":null,"latency_ms":null}',
            # null numbers stay None (the columns read None and NaN alike as absent)
            [Event(service="a", ts=None, latency_ms=None)],
            id="json explicit nulls are absent fields",
        ),
        pytest.param(
            "json",
            b'{"service":"a","ts":1767225600}',
            [Event(service="a", ts=1767225600.0)],
            id="json an integer ts is a float",
        ),
        pytest.param(
            "json",
            msgspec.json.encode(
                {
                    "service": "s" * MAX_SERVICE_LEN,
                    "operation": WIDE * MAX_OPERATION_LEN,
                    "status": "w" * MAX_STATUS_LEN,
                    "count": MAX_COUNT,
                }
            ),
            [
                Event(
                    service="s" * MAX_SERVICE_LEN,
                    operation=WIDE * MAX_OPERATION_LEN,
                    status="w" * MAX_STATUS_LEN,
                    count=MAX_COUNT,
                )
            ],
            id="json strings and count at their bounds (lengths in characters)",
        ),
        pytest.param(
            "msgpack",
            _mp({"service": "ledger", "status": "OK", "latency_ms": 9.5, "count": 3}),
            [Event(service="ledger", status="OK", latency_ms=9.5, count=3)],
            id="msgpack a single map",
        ),
        pytest.param(
            "msgpack",
            _mp([{"service": "a", "ts": 1.5}, {"service": "b", "status": 500}]),
            [Event(service="a", ts=1.5), Event(service="b", status=500)],
            id="msgpack an array record",
        ),
        pytest.param(
            "msgpack",
            _mp(
                {
                    "service": "a",
                    "extra": {"nested": [1, b"bin"]},
                    "ext": msgspec.msgpack.Ext(1, b"x"),
                }
            ),
            [Event(service="a")],
            id="msgpack unknown fields, binaries and extension types are ignored",
        ),
    ],
)
def test_accepted_records(fmt: str, value: bytes, expected: list[Event]) -> None:
    decoder = DECODERS[fmt]
    assert decoder.decode_one(value) == expected
    batch = decoder.decode_batch([value])
    assert (batch.events, batch.indices(), batch.rejected) == (
        expected,
        [0] * len(expected),
        [],
    )


# --- rejected records --------------------------------------------------------------------


def _deep_json(depth: int) -> bytes:
    return b'{"service":"a","junk":' + b"[" * depth + b"]" * depth + b"}"


def _deep_msgpack(depth: int) -> bytes:
    # {"service": "a", "junk": [[[...[]...]]]}
    return b"\x82\xa7service\xa1a\xa4junk" + b"\x91" * depth + b"\x90"


REJECTIONS = [
    # malformed
    pytest.param("json", b"{", "malformed", id="json truncated bytes are malformed"),
    pytest.param("json", b"\xff\xfe\x00", "malformed", id="json binary garbage is malformed"),
    pytest.param("json", b"service=a", "malformed", id="json text that is not JSON is malformed"),
    pytest.param(
        "json",
        b'{"service":"a"},{"service":"b"}',
        "malformed",
        id="json two objects separated by a comma are not one record",
    ),
    pytest.param(
        "json", b'{"service":"a"}{"service":"b"}', "malformed", id="json two glued objects"
    ),
    pytest.param(
        "json",
        b'{"service":"a","latency_ms":NaN}',
        "malformed",
        id="json NaN is not JSON and is malformed",
    ),
    pytest.param("json", b'{"service":"\xff"}', "malformed", id="json invalid utf-8 is malformed"),
    pytest.param(
        "json",
        b'{"service":"a","operation":"\xc3"}',
        "malformed",
        id="json a truncated utf-8 sequence in operation is malformed",
    ),
    pytest.param(
        "msgpack",
        b"\x81\xa7service\xa1\xff",
        "malformed",
        id="msgpack invalid utf-8 in service is malformed",
    ),
    pytest.param("json", b"", "malformed", id="json an empty record is malformed"),
    pytest.param("msgpack", b"", "malformed", id="msgpack an empty record is malformed"),
    pytest.param("msgpack", b"\xc1", "malformed", id="msgpack a reserved opcode is malformed"),
    pytest.param("msgpack", _mp({"service": "a"})[:-1], "malformed", id="msgpack truncated bytes"),
    # wrong types
    pytest.param("json", b"null", "wrong_type", id="json null is not a record"),
    pytest.param("json", b'"checkout"', "wrong_type", id="json a string is not a record"),
    pytest.param("json", b"42", "wrong_type", id="json a number is not a record"),
    pytest.param(
        "json", b'[[{"service":"a"}]]', "wrong_type", id="json an array of arrays is not a record"
    ),
    pytest.param("json", b'{"service":42}', "wrong_type", id="json a numeric service"),
    pytest.param("json", b'{"service":"a","ts":"1767225600"}', "wrong_type", id="json ts as text"),
    pytest.param("json", b'{"service":"a","status":true}', "wrong_type", id="json a bool status"),
    pytest.param("json", b'{"service":"a","status":200.0}', "wrong_type", id="json float status"),
    pytest.param("json", b'{"service":"a","count":1.0}', "wrong_type", id="json a float count"),
    pytest.param("json", b'{"service":"a","count":true}', "wrong_type", id="json a bool count"),
    pytest.param("json", b'{"service":"a","ok":"yes"}', "wrong_type", id="json ok as text"),
    pytest.param("json", b'{"service":"a","operation":7}', "wrong_type", id="json int operation"),
    pytest.param(
        "json", b'{"service":"a","latency_ms":"12ms"}', "wrong_type", id="json latency as text"
    ),
    pytest.param(
        "msgpack", _mp({"service": "a", "ts": b"\x01"}), "wrong_type", id="msgpack binary ts"
    ),
    pytest.param("msgpack", _mp(["a"]), "wrong_type", id="msgpack an array of strings"),
    # service
    pytest.param("json", b"{}", "missing_service", id="json an empty object has no service"),
    pytest.param(
        "json", b'{"ts":1,"status":500}', "missing_service", id="json an event without service"
    ),
    pytest.param("json", b'{"service":""}', "missing_service", id="json an empty service"),
    pytest.param(
        "json",
        b'[{"service":"a"},{"status":500}]',
        "missing_service",
        id="json the second event of an array without service rejects the record",
    ),
    pytest.param(
        "json",
        b'[{"service":"a"},{"service":""}]',
        "missing_service",
        id="json the second event of an array with an empty service",
    ),
    pytest.param("msgpack", _mp({"ts": 1.0}), "missing_service", id="msgpack without service"),
    pytest.param("msgpack", _mp({"service": ""}), "missing_service", id="msgpack empty service"),
    # values
    pytest.param(
        "json", b'{"service":"a","latency_ms":-1}', "bad_value", id="json a negative latency"
    ),
    pytest.param(
        "json", b'{"service":"a","latency_ms":1e13}', "bad_value", id="json an absurd latency"
    ),
    pytest.param("json", b'{"service":"a","count":0}', "bad_value", id="json a count of 0"),
    pytest.param("json", b'{"service":"a","count":-3}', "bad_value", id="json a negative count"),
    pytest.param(
        "json", b'{"service":"a","count":2199023255552}', "bad_value", id="json a count above 2^40"
    ),
    pytest.param(
        "json",
        b'{"service":"a","count":%d}' % (MAX_COUNT + 1),
        "bad_value",
        id="json a count above MAX_COUNT",
    ),
    pytest.param(
        "json", b'{"service":"a","count":1099511627776}', "bad_value", id="json a count of 2^40"
    ),
    pytest.param(
        "msgpack",
        _mp({"service": "a", "count": MAX_COUNT + 1}),
        "bad_value",
        id="msgpack a count above MAX_COUNT",
    ),
    # strings over their bounds: bad_value (an empty service stays missing_service)
    pytest.param(
        "json",
        msgspec.json.encode({"service": "s" * (MAX_SERVICE_LEN + 1)}),
        "bad_value",
        id="json a service one character too long",
    ),
    pytest.param(
        "json",
        msgspec.json.encode({"service": WIDE * (MAX_SERVICE_LEN + 1)}),
        "bad_value",
        id="json a service of wide characters one too long",
    ),
    pytest.param(
        "json",
        msgspec.json.encode({"service": "a", "operation": "o" * (MAX_OPERATION_LEN + 1)}),
        "bad_value",
        id="json an operation one character too long",
    ),
    pytest.param(
        "json",
        msgspec.json.encode({"service": "a", "operation": "o" * 100_000}),
        "bad_value",
        id="json a 100 KB operation",
    ),
    pytest.param(
        "json",
        msgspec.json.encode({"service": "a", "status": "x" * (MAX_STATUS_LEN + 1)}),
        "bad_value",
        id="json a status word one character too long",
    ),
    pytest.param(
        "json",
        msgspec.json.encode([{"service": "a"}, {"service": "a", "operation": "o" * 300}]),
        "bad_value",
        id="json the second event of an array with an over-long operation",
    ),
    pytest.param(
        "msgpack",
        _mp({"service": "s" * (MAX_SERVICE_LEN + 1)}),
        "bad_value",
        id="msgpack a service one character too long",
    ),
    pytest.param(
        "msgpack",
        _mp({"service": "a", "operation": "o" * (MAX_OPERATION_LEN + 1)}),
        "bad_value",
        id="msgpack an operation one character too long",
    ),
    pytest.param(
        "msgpack",
        _mp({"service": "a", "status": "x" * (MAX_STATUS_LEN + 1)}),
        "bad_value",
        id="msgpack a status word one character too long",
    ),
    pytest.param("json", b'{"service":"a","ts":-1}', "bad_value", id="json a ts before 1970"),
    pytest.param(
        "json",
        b'{"service":"a","ts":1767225600000}',
        "bad_value",
        id="json a ts in milliseconds is out of range",
    ),
    pytest.param("json", b'{"service":"a","ts":1e400}', "bad_value", id="json a ts beyond float"),
    pytest.param("msgpack", _mp({"service": "a", "ts": NAN}), "bad_value", id="msgpack a NaN ts"),
    pytest.param(
        "msgpack", _mp({"service": "a", "ts": INF}), "bad_value", id="msgpack an infinite ts"
    ),
    pytest.param("msgpack", _mp({"service": "a", "ts": -INF}), "bad_value", id="msgpack a -inf ts"),
    pytest.param(
        "msgpack",
        _mp({"service": "a", "latency_ms": NAN}),
        "bad_value",
        id="msgpack a NaN latency",
    ),
    pytest.param(
        "msgpack",
        _mp({"service": "a", "latency_ms": INF}),
        "bad_value",
        id="msgpack an infinite latency",
    ),
    pytest.param(
        "msgpack", _mp({"service": "a", "count": 0}), "bad_value", id="msgpack a count of 0"
    ),
    # hostile nesting inside an ignored field
    pytest.param(
        "json",
        _deep_json(5000),
        "malformed",
        id="json an unknown field nested 5000 deep is rejected, not a crash",
    ),
    pytest.param(
        "msgpack",
        _deep_msgpack(5000),
        "malformed",
        id="msgpack an unknown field nested 5000 deep is rejected, not a crash",
    ),
]


@pytest.mark.parametrize(("fmt", "value", "reason"), REJECTIONS)
def test_decode_one_rejects_with_a_reason(fmt: str, value: bytes, reason: str) -> None:
    with pytest.raises(RecordError) as info:
        DECODERS[fmt].decode_one(value)
    assert info.value.reason == reason
    assert isinstance(info.value, BurnrateError)


@pytest.mark.parametrize(("fmt", "value", "reason"), REJECTIONS)
def test_decode_batch_rejects_the_record_alone(fmt: str, value: bytes, reason: str) -> None:
    good = _mp({"service": "ok"}) if fmt == "msgpack" else b'{"service":"ok"}'
    batch = DECODERS[fmt].decode_batch([good, value, good])
    assert batch.events == [Event(service="ok"), Event(service="ok")]
    assert batch.indices() == [0, 2]
    assert [(i, r) for i, r, _ in batch.rejected] == [(1, reason)]


@pytest.mark.parametrize(
    "fmt",
    [pytest.param("json", id="json"), pytest.param("msgpack", id="msgpack")],
)
def test_a_batch_keeps_the_good_records_around_bad_ones(fmt: WireFormat) -> None:
    enc = _mp if fmt == "msgpack" else msgspec.json.encode
    values: list[bytes | None] = [
        enc({"service": "a", "ts": 1}),
        b"\xc1{",  # neither JSON nor MessagePack
        enc([{"service": "b", "ts": 2}, {"service": "c", "ts": 3}]),
        b"",
        None,
        enc({"service": 5}),
        enc({"service": "d", "count": 0}),
        enc({"status": 500}),
        enc({"service": "e", "ts": 4, "unknown": [1, 2]}),
    ]
    batch = DECODERS[fmt].decode_batch(values)
    assert [e.service for e in batch.events] == ["a", "b", "c", "e"]
    assert batch.indices() == [0, 2, 2, 8]
    assert [(i, reason) for i, reason, _ in batch.rejected] == [
        (1, "malformed"),
        (3, "malformed"),
        (4, "malformed"),
        (5, "wrong_type"),
        (6, "bad_value"),
        (7, "missing_service"),
    ]
    assert batch.rejected[1][2] == "empty record"


def test_an_empty_batch_is_empty() -> None:
    batch = DECODERS["json"].decode_batch([])
    assert (batch.events, batch.indices(), batch.rejected) == ([], [], [])


def test_record_error_names_reason_and_detail() -> None:
    with pytest.raises(RecordError) as info:
        DECODERS["json"].decode_one(b'{"service":"a","count":0}')
    assert info.value.detail == "Expected `int` >= 1 - at `$.count`"
    assert str(info.value) == "bad_value: Expected `int` >= 1 - at `$.count`"


# --- the joined fast path must agree with one by one -------------------------------------


@pytest.mark.parametrize(
    "values",
    [
        pytest.param(
            [b'{"service":"a"},{"service":"b"}'],
            id="one record that looks like two objects is rejected, not split in two",
        ),
        pytest.param(
            [b'{"service":"a"},{"service":"b"}', b'{"service":"c"}'],
            id="a comma-joined record next to a good one",
        ),
        pytest.param(
            [b'{"service":"a","junk":[{}', b"{}]}"],
            id="two halves of one object are not merged into one record",
        ),
        pytest.param(
            [b'{"service":"b"},{"service":"c"}', b'{"service":"a","x":"}', b'{"}'],
            id="a record split in two and two records merged into one do not cancel out",
        ),
        pytest.param(
            [b'[{"service":"a"}', b'{"service":"b"}]'],
            id="an array opened in one record and closed in the next",
        ),
        pytest.param(
            [b'[{"service":"a"}]', b'{"service":"b"}', b"[]"],
            id="arrays, objects and empty arrays mixed",
        ),
        pytest.param(
            [b'{"service":"a"}', b'{"service":"a"} '],
            id="a record with trailing whitespace next to a plain one",
        ),
    ],
)
def test_the_joined_json_path_agrees_with_one_by_one(values: list[bytes]) -> None:
    _check_batch(DECODERS["json"], values)


# --- properties: nothing raises, every record is accounted for ---------------------------

_bounded_ints = st.integers(-(2**63), 2**64 - 1)
_floats = st.floats(allow_nan=True, allow_infinity=True)
_scalars = st.one_of(st.none(), st.booleans(), _bounded_ints, _floats, st.text(max_size=8))
_keys = st.one_of(
    st.sampled_from(["service", "ts", "operation", "status", "latency_ms", "ok", "count"]),
    st.text(max_size=6),
)
json_values = st.recursive(
    _scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(_keys, inner, max_size=5)),
    max_leaves=20,
)
_numbers = st.one_of(st.integers(-5, 2**41), st.floats(-10, 2e11), _floats)
event_like = st.fixed_dictionaries(
    {"service": st.one_of(st.sampled_from(["checkout", "ledger"]), st.just(""), _bounded_ints)},
    optional={
        "ts": _numbers,
        "operation": st.one_of(st.text(max_size=5), _bounded_ints),
        "status": st.one_of(
            st.integers(-5, 700), st.sampled_from(["OK", "error", "UNAVAILABLE"]), st.booleans()
        ),
        "latency_ms": _numbers,
        "ok": st.one_of(st.booleans(), st.none(), st.text(max_size=2)),
        "count": _numbers,
        "labels": st.one_of(
            st.dictionaries(st.text(max_size=3), st.text(max_size=3), max_size=3),
            json_values,
        ),
        "junk": json_values,
    },
)
records = st.one_of(json_values, event_like, st.lists(event_like, max_size=4))


def _json_encode(obj: Any, how: str) -> bytes:
    if how == "msgspec":
        return msgspec.json.encode(obj)
    return json.dumps(obj, separators=(",", ":")).encode()  # NaN and Infinity tokens too


json_records = st.builds(_json_encode, records, st.sampled_from(["msgspec", "stdlib"]))


def _splice(data: bytes, at: int, cut: int, insert: bytes) -> bytes:
    """Damage an encoding: replace `cut` bytes at a relative position with `insert`."""
    i = at % (len(data) + 1)
    return data[:i] + insert + data[i + cut :]


def damaged(encodings: st.SearchStrategy[bytes]) -> st.SearchStrategy[bytes]:
    return st.builds(
        _splice,
        encodings,
        st.integers(0, 200),
        st.integers(0, 3),
        st.one_of(st.binary(max_size=3), st.sampled_from([b"\xff", b"\xc3", b",", b"}", b"]"])),
    )


maybe_empty = st.one_of(st.none(), st.just(b""))


@settings(deadline=None)
@given(st.lists(st.binary(max_size=40), max_size=8), st.sampled_from(["json", "msgpack"]))
def test_random_bytes_never_crash_decode_batch(values: list[bytes], fmt: str) -> None:
    _check_batch(DECODERS[fmt], values)


@settings(deadline=None)
@given(st.lists(st.one_of(json_records, damaged(json_records), maybe_empty), max_size=8))
def test_random_json_records_are_each_accepted_or_rejected_once(values: list[bytes]) -> None:
    _check_batch(DECODERS["json"], values)


@settings(deadline=None)
@given(st.lists(st.one_of(records.map(_mp), damaged(records.map(_mp)), maybe_empty), max_size=8))
def test_random_msgpack_records_are_each_accepted_or_rejected_once(values: list[bytes]) -> None:
    _check_batch(DECODERS["msgpack"], values)


@settings(deadline=None)
@given(
    st.one_of(
        st.binary(max_size=64),
        json_records,
        records.map(_mp),
        damaged(json_records),
        damaged(records.map(_mp)),
    ),
    st.sampled_from(["json", "msgpack"]),
)
def test_decode_one_raises_only_record_error(value: bytes, fmt: str) -> None:
    reason: str | None
    try:
        events = DECODERS[fmt].decode_one(value)
    except RecordError as exc:
        reason = exc.reason
        events = []
    else:
        reason = None
    assert reason is None or reason in DECODE_REASONS
    assert all(type(e) is Event and e.service and e.count >= 1 for e in events)


@settings(deadline=None)
@given(st.lists(event_like, min_size=1, max_size=6))
def test_an_array_record_decodes_like_its_events_one_by_one(events: list[dict[str, Any]]) -> None:
    decoder = DECODERS["json"]
    singles = _one_by_one(decoder, [msgspec.json.encode(e) for e in events])
    as_array = _one_by_one(decoder, [msgspec.json.encode(events)])
    if singles[2]:
        assert [r for _, r, _ in as_array[2]] == [singles[2][0][1]]
    else:
        assert as_array[0] == singles[0]


# --- bounds: strings and weights over their maxima are bad values ------------------------

_lengths = st.integers(0, 2 * MAX_OPERATION_LEN)
_chars = st.sampled_from(["a", "\u00e9", "\u4e2d", WIDE])


@settings(deadline=None)
@given(
    service_len=st.integers(1, 2 * MAX_SERVICE_LEN),
    operation_len=_lengths,
    status_len=st.integers(0, 2 * MAX_STATUS_LEN),
    count=st.integers(1, 2 * MAX_COUNT),
    char=_chars,
    fmt=st.sampled_from(["json", "msgpack"]),
)
def test_an_event_is_accepted_exactly_when_within_every_bound(
    service_len: int,
    operation_len: int,
    status_len: int,
    count: int,
    char: str,
    fmt: WireFormat,
) -> None:
    event = {
        "service": char * service_len,
        "operation": char * operation_len,
        "status": char * status_len,
        "count": count,
    }
    value = _mp(event) if fmt == "msgpack" else msgspec.json.encode(event)
    within = (
        service_len <= MAX_SERVICE_LEN
        and operation_len <= MAX_OPERATION_LEN
        and status_len <= MAX_STATUS_LEN
        and count <= MAX_COUNT
    )
    if within:
        assert DECODERS[fmt].decode_one(value) == [Event(**event)]  # type: ignore[arg-type]
    else:
        with pytest.raises(RecordError) as info:
            DECODERS[fmt].decode_one(value)
        assert info.value.reason == "bad_value"
    _check_batch(DECODERS[fmt], [value, value])


# --- labels: optional, bounded in number and in bytes ------------------------------------

_label_text = st.text(st.sampled_from(["a", "z", "-", "\u00e9", "\u4e2d", WIDE]), max_size=40)
_label_maps = st.dictionaries(_label_text, _label_text, max_size=MAX_LABELS)


def _label_bytes(s: str) -> int:
    return len(s.encode())


@settings(deadline=None)
@given(_label_maps, st.sampled_from(["json", "msgpack"]))
def test_label_maps_within_the_bounds_round_trip(labels: dict[str, str], fmt: WireFormat) -> None:
    event = {"service": "checkout", "labels": labels}
    encode = _mp if fmt == "msgpack" else msgspec.json.encode
    within = all(
        _label_bytes(k) <= MAX_LABEL_BYTES and _label_bytes(v) <= MAX_LABEL_BYTES
        for k, v in labels.items()
    )
    values = [encode(event), encode([event, event]), encode({"service": "x"})]
    if within:
        (got,) = DECODERS[fmt].decode_one(values[0])
        assert got.labels == labels
    _check_batch(DECODERS[fmt], values)
    batch = DECODERS[fmt].decode_batch(values)
    assert [e.labels for e in batch.events] == ([labels] * 3 + [None] if within else [None])


@settings(deadline=None)
@given(
    n=st.integers(0, 2 * MAX_LABELS),
    key_len=st.integers(1, 2 * MAX_LABEL_BYTES),
    value_len=st.integers(0, 2 * MAX_LABEL_BYTES),
    char=_chars,
    fmt=st.sampled_from(["json", "msgpack"]),
)
def test_labels_are_accepted_exactly_within_their_bounds(
    n: int, key_len: int, value_len: int, char: str, fmt: WireFormat
) -> None:
    labels = {f"{i:02d}" + char * (key_len - 1): char * value_len for i in range(n)}
    event = {"service": "checkout", "labels": labels}
    value = _mp(event) if fmt == "msgpack" else msgspec.json.encode(event)
    within = n <= MAX_LABELS and (
        n == 0
        or (
            _label_bytes(next(iter(labels))) <= MAX_LABEL_BYTES
            and _label_bytes(char * value_len) <= MAX_LABEL_BYTES
        )
    )
    if within:
        assert DECODERS[fmt].decode_one(value) == [Event(service="checkout", labels=labels)]
    else:
        with pytest.raises(RecordError) as info:
            DECODERS[fmt].decode_one(value)
        assert info.value.reason == "bad_value"
    _check_batch(
        DECODERS[fmt], [value, b'{"service":"a"}' if fmt == "json" else _mp({"service": "a"})]
    )


@pytest.mark.parametrize("fmt", ["json", "msgpack"])
def test_an_oversize_label_rejects_only_its_record_in_every_path(fmt: WireFormat) -> None:
    encode = _mp if fmt == "msgpack" else msgspec.json.encode
    good = encode({"service": "a", "labels": {"region": "eu"}})
    wide = encode({"service": "a", "labels": {"region": WIDE * 33}})  # 33 chars, 132 bytes
    many = encode({"service": "a", "labels": {str(i): "" for i in range(MAX_LABELS + 1)}})
    values = [good, wide, encode([{"service": "b"}]), many, good]
    batch = DECODERS[fmt].decode_batch(values)
    assert [(i, r) for i, r, _ in batch.rejected] == [(1, "bad_value"), (3, "bad_value")]
    assert batch.indices() == [0, 2, 4]
    _check_batch(DECODERS[fmt], values)
    _check_batch(RecordDecoder(fmt), [good, wide])  # fresh decoder: the single-event path
    if fmt == "json":
        dec = RecordDecoder("json")
        assert dec.json_lines(good + b"\n" + wide + b"\n") is None  # to the line-by-line path
        ok = dec.json_lines(good + b"\n" + good + b"\n")
        assert ok is not None
        assert [e.labels for e in ok.events] == [{"region": "eu"}] * 2


@pytest.mark.parametrize(
    ("labels", "reason"),
    [
        pytest.param({"a": 1}, "wrong_type", id="a value that is not a string"),
        pytest.param(["a"], "wrong_type", id="not a map"),
        pytest.param({"k" * (MAX_LABEL_BYTES + 1): "v"}, "bad_value", id="key over the bound"),
    ],
)
def test_bad_labels_are_rejected_with_a_reason(labels: object, reason: str) -> None:
    with pytest.raises(RecordError) as info:
        DECODERS["json"].decode_one(msgspec.json.encode({"service": "a", "labels": labels}))
    assert info.value.reason == reason


def test_null_labels_mean_none() -> None:
    assert DECODERS["json"].decode_one(b'{"service":"a","labels":null}') == [Event(service="a")]
