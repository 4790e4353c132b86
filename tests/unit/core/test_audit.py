"""The audit log's chain (engine.core.audit): the hash over the canonical JSON, a known
answer computed by hand, and hypothesis-generated logs with edits (a changed byte, a
line dropped, two swapped, one inserted, the tail cut) whose first bad line and reason
`verify_lines` must name, with and without an HMAC key."""

from __future__ import annotations

import hashlib
import hmac
import io
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.core.audit import (
    ACTIONS,
    GENESIS,
    AuditChain,
    ChainHead,
    LineError,
    canonical,
    encode_line,
    entry_hash,
    parse_line,
)
from engine.core.audit_verify import verify_lines

KEY = b"k" * 32
OTHER_KEY = b"o" * 32


def naive_line(body: dict[str, Any], key: bytes | None) -> bytes:
    """The line of an entry written the slow, obvious way (the reference)."""
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    data = text.encode("utf-8")
    h = (
        hashlib.sha256(data).hexdigest()
        if key is None
        else hmac.new(key, data, hashlib.sha256).hexdigest()
    )
    full = dict(body, hash=h)
    return (
        json.dumps(full, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"
    )


def test_known_answer() -> None:
    chain = AuditChain()
    e = chain.build(1700000000.1234, "deployer", "gate.decision", "shop", {"b": 1, "a": "é"})
    body = (
        '{"action":"gate.decision","actor":"deployer","at":1700000000.123,'
        '"details":{"a":"é","b":1},"prev":"' + GENESIS + '","seq":1,"subject":"shop"}'
    )
    assert canonical(e.body()) == body.encode("utf-8")
    assert e.hash == hashlib.sha256(body.encode("utf-8")).hexdigest()
    keyed = AuditChain(KEY).build(
        1700000000.1234, "deployer", "gate.decision", "shop", {"b": 1, "a": "é"}
    )
    assert keyed.hash == hmac.new(KEY, body.encode(), hashlib.sha256).hexdigest()
    assert encode_line(e) == naive_line(e.body(), None)


def test_chain_links_and_head() -> None:
    chain = AuditChain()
    lines = []
    for i in range(3):
        e = chain.build(float(i), "burnrate", "alert.firing", "s", {})
        chain.advance(e)
        lines.append(encode_line(e))
    first, second = parse_line(lines[0]), parse_line(lines[1])
    assert (first.seq, first.prev) == (1, GENESIS)
    assert (second.seq, second.prev) == (2, first.hash)
    assert verify_lines(lines) == (True, 3, chain.head.hash, None, None, "")
    assert chain.head == ChainHead(3, parse_line(lines[2]).hash)


def test_advance_refuses_an_entry_off_the_head() -> None:
    chain = AuditChain()
    e = chain.build(1.0, "a", "alert.firing", "s")
    chain.advance(e)
    with pytest.raises(ValueError, match="does not follow"):
        chain.advance(e)


def test_details_are_cleaned_to_plain_json() -> None:
    e = AuditChain().build(1.0, "a\ud800", "x", "s", {"inf": float("inf"), "t": (1, 2), 3: None})
    assert e.details == {"inf": None, "t": [1, 2], "3": None}
    assert "\ud800" not in e.actor
    parse_line(encode_line(e))  # valid UTF-8, canonical
    with pytest.raises(TypeError):
        AuditChain().build(1.0, "a", "x", "s", {"o": object()})
    with pytest.raises(ValueError, match="finite"):
        AuditChain().build(float("nan"), "a", "x", "s")


@pytest.mark.parametrize(
    ("raw", "reason", "text"),
    [
        (b'{"seq":1}', "malformed", "no newline"),
        (b"\n", "malformed", "empty line"),
        (b"[1]\n", "malformed", "not a JSON object"),
        (b"\xff\n", "malformed", "not UTF-8"),
        (b'{"seq":1,"seq":1}\n', "malformed", "twice"),
        (b'{"seq":NaN}\n', "malformed", "not a JSON object"),
        (b'{"seq":1}\n', "malformed", "missing"),
    ],
)
def test_parse_line_says_what_is_wrong(raw: bytes, reason: str, text: str) -> None:
    with pytest.raises(LineError, match=text) as info:
        parse_line(raw)
    assert info.value.reason == reason


def test_parse_line_refuses_a_non_canonical_line_as_edited() -> None:
    e = AuditChain().build(1.0, "a", "alert.firing", "s")
    spaced = json.dumps(e._asdict(), sort_keys=True).encode() + b"\n"
    with pytest.raises(LineError) as info:
        parse_line(spaced)
    assert info.value.reason == "edited"
    huge = encode_line(e).replace(b'"details":{}', b'"details":{"x":1e999}')
    with pytest.raises(LineError, match="out of range"):
        parse_line(huge)


def test_actions_are_the_contract() -> None:
    assert {
        "config.loaded",
        "alert.firing",
        "alert.resolved",
        "gate.decision",
        "gate.override.created",
        "gate.override.ended",
        "change.recorded",
        "incident.opened",
        "incident.acknowledged",
        "incident.closed",
        "correction.created",
        "auth.denied",
    } == ACTIONS


# -- generated logs and edits -------------------------------------------------------------

texts = st.text(st.characters(codec="utf-8"), max_size=12) | st.sampled_from(
    ["prev", ',"prev":"', "hash", '"'],  # what the writer's splice must not be fooled by
)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**60), 2**60)
    | texts
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts, inner, max_size=3),
    max_leaves=6,
)
records = st.tuples(
    st.floats(0, 4e9, allow_nan=False),
    texts,
    st.sampled_from(sorted(ACTIONS)),
    texts,
    st.dictionaries(texts, json_values, max_size=3),
)


def build_log(recs: list[Any], key: bytes | None) -> list[bytes]:
    chain = AuditChain(key)
    out = []
    for at, actor, action, subject, details in recs:
        e = chain.build(at, actor, action, subject, details)
        chain.advance(e)
        line = encode_line(e, chain.last_body)  # the writer's way: the body spliced
        assert line == encode_line(e) == naive_line(e.body(), key)
        out.append(line)
    return out


def forged(lines: list[bytes], k: int, key: bytes | None) -> bytes:
    """An entry chained on line k-1 (1-based) as a forger would build it, with `key`."""
    head = ChainHead() if k == 1 else ChainHead(k - 1, parse_line(lines[k - 2]).hash)
    chain = AuditChain(key, head)
    return encode_line(chain.build(123.0, "mallory", "gate.override.created", "shop", {"x": 1}))


keys = st.sampled_from([None, KEY])
logs = st.tuples(st.lists(records, min_size=1, max_size=8), keys)
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(logs)
def test_an_untouched_log_verifies(log: tuple[list[Any], bytes | None]) -> None:
    recs, key = log
    lines = build_log(recs, key)
    v = verify_lines(lines, key, expect_head=parse_line(lines[-1]).hash)
    assert v.ok
    assert v.entries == len(lines)
    assert v.head == parse_line(lines[-1]).hash
    if len(lines) > 1:  # an earlier head: the log went on since it was exported
        assert verify_lines(lines, key, expect_head=parse_line(lines[0]).hash).ok


@SETTINGS
@given(logs, st.data())
def test_a_changed_byte_is_found_on_its_line(
    log: tuple[list[Any], bytes | None], data: st.DataObject
) -> None:
    recs, key = log
    lines = build_log(recs, key)
    k = data.draw(st.integers(1, len(lines)), label="line")
    line = bytearray(lines[k - 1])
    pos = data.draw(st.integers(0, len(line) - 1), label="byte")
    line[pos] = data.draw(st.integers(0, 255).filter(lambda b: b != line[pos]), label="value")
    edited = [*lines[: k - 1], bytes(line), *lines[k:]]
    v = verify_lines(io.BytesIO(b"".join(edited)), key)  # split as a file is
    assert not v.ok
    assert (v.bad_line, v.entries) == (k, k - 1)
    assert v.reason in ("edited", "malformed")


@SETTINGS
@given(logs, st.data())
def test_a_dropped_line_is_removed_or_a_cut_tail(
    log: tuple[list[Any], bytes | None], data: st.DataObject
) -> None:
    recs, key = log
    lines = build_log(recs, key)
    n = len(lines)
    k = data.draw(st.integers(1, n), label="line")
    head = parse_line(lines[-1]).hash
    v = verify_lines([*lines[: k - 1], *lines[k:]], key, expect_head=head)
    if k < n:
        assert (v.ok, v.bad_line, v.reason) == (False, k, "removed")
        assert f"seq {k} missing" in v.message
    else:  # the last line: only the exported head shows it
        assert verify_lines(lines[:-1], key).ok
        assert (v.ok, v.bad_line, v.reason) == (False, n, "truncated")


@SETTINGS
@given(logs, st.data())
def test_swapped_lines_are_reordered(
    log: tuple[list[Any], bytes | None], data: st.DataObject
) -> None:
    recs, key = log
    lines = build_log(recs, key)
    if len(lines) < 2:
        return
    k = data.draw(st.integers(1, len(lines) - 1), label="line")
    swapped = [*lines[: k - 1], lines[k], lines[k - 1], *lines[k + 1 :]]
    v = verify_lines(swapped, key)
    assert (v.ok, v.bad_line, v.reason) == (False, k, "reordered")


@SETTINGS
@given(logs, st.data())
def test_an_inserted_entry_is_found(
    log: tuple[list[Any], bytes | None], data: st.DataObject
) -> None:
    recs, key = log
    lines = build_log(recs, key)
    n = len(lines)
    k = data.draw(st.integers(1, n + 1), label="position")
    forger_key = None if key is None else OTHER_KEY
    inserted = [*lines[: k - 1], forged(lines, k, forger_key), *lines[k - 1 :]]
    v = verify_lines(inserted, key)
    if k == n + 1 and key is None:
        # appended by someone who can recompute SHA-256: a valid chain (the key is what
        # stops this)
        assert v.ok
        assert v.entries == n + 1
    elif k == n + 1:
        assert (v.ok, v.bad_line, v.reason) == (False, k, "edited")
    else:
        assert (v.ok, v.bad_line, v.reason) == (False, k, "inserted")


@SETTINGS
@given(logs, st.data())
def test_a_copied_line_is_inserted(
    log: tuple[list[Any], bytes | None], data: st.DataObject
) -> None:
    recs, key = log
    lines = build_log(recs, key)
    k = data.draw(st.integers(1, len(lines)), label="line")
    v = verify_lines([*lines[:k], lines[k - 1], *lines[k:]], key)
    assert (v.ok, v.bad_line, v.reason) == (False, k + 1, "inserted")


@SETTINGS
@given(logs, st.data())
def test_a_cut_tail_needs_the_exported_head(
    log: tuple[list[Any], bytes | None], data: st.DataObject
) -> None:
    recs, key = log
    lines = build_log(recs, key)
    n = len(lines)
    keep = data.draw(st.integers(0, n - 1), label="kept")
    head = parse_line(lines[-1]).hash
    assert verify_lines(lines[:keep], key).ok
    v = verify_lines(lines[:keep], key, expect_head=head)
    assert (v.ok, v.bad_line, v.reason, v.entries) == (False, keep + 1, "truncated", keep)


@SETTINGS
@given(logs)
def test_the_wrong_key_fails_at_the_first_line(log: tuple[list[Any], bytes | None]) -> None:
    recs, key = log
    lines = build_log(recs, key)
    wrong = OTHER_KEY if key is not None else KEY
    v = verify_lines(lines, wrong)
    assert (v.ok, v.bad_line, v.reason) == (False, 1, "edited")
    if key is not None:
        unkeyed = verify_lines(lines, None)
        assert (unkeyed.bad_line, unkeyed.reason) == (1, "edited")
        assert "--key-env" in unkeyed.message


def test_a_rewritten_and_rehashed_line_is_named() -> None:
    """Line 2 rewritten with its hash recomputed (no key): line 3's prev gives it away."""
    lines = build_log([(float(i), "a", "alert.firing", "s", {"i": i}) for i in range(4)], None)
    e2 = parse_line(lines[1])
    body = dict(e2.body(), subject="other")
    rewritten = (
        json.dumps(
            dict(body, hash=entry_hash(body)), sort_keys=True, separators=(",", ":")
        ).encode()
        + b"\n"
    )
    v = verify_lines([lines[0], rewritten, *lines[2:]])
    assert (v.ok, v.bad_line, v.reason) == (False, 2, "edited")
    assert "line 3" in v.message
