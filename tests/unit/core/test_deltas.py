"""Count deltas (engine.core.deltas): round trip, strict decoding, partition keys."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.core.config import parse_config
from engine.core.deltas import (
    DELTA_VERSION,
    DeltaError,
    decode_delta,
    encode_delta,
    encode_heartbeat,
    partition_keys,
)


@st.composite
def buckets(draw: st.DrawFn) -> tuple[list[int], list[int], list[int], list[str] | None]:
    n = draw(st.integers(1, 30))
    seconds = sorted(draw(st.lists(st.integers(0, 2**40), min_size=n, max_size=n)))
    total = draw(st.lists(st.integers(1, 2**40), min_size=n, max_size=n))
    bad = [draw(st.integers(0, t)) for t in total]
    groups = draw(st.none() | st.lists(st.text(), min_size=n, max_size=n))
    return seconds, total, bad, groups


@given(buckets(), st.text(min_size=1), st.floats(0, 2e9))
def test_a_delta_decodes_to_what_was_encoded(
    b: tuple[list[int], list[int], list[int], list[str] | None], slo: str, wm: float
) -> None:
    seconds, total, bad, groups = b
    d = decode_delta(encode_delta(slo, wm, seconds, total, bad, groups))
    assert (d.version, d.slo, d.watermark, d.seconds, d.total, d.bad, d.groups) == (
        DELTA_VERSION,
        slo,
        wm,
        seconds,
        total,
        bad,
        groups,
    )


@given(st.floats(0, 2e9))
def test_a_heartbeat_carries_only_the_watermark(wm: float) -> None:
    d = decode_delta(encode_heartbeat(wm))
    assert (d.slo, d.watermark, d.seconds, d.total, d.bad) == ("", wm, [], [], [])


def raw(*fields: object) -> bytes:
    return msgspec.msgpack.encode(list(fields))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (raw(2, "a", 5.0, [1], [1], [0], None), "delta version 2"),
        (raw(2, "a", 5.0, "whatever shape"), "delta version 2"),
        (raw(1, "a", 5.0, [1], [1], [0], None, "extra"), "not a count delta"),
        (raw(1, "a", 5.0, [1], [1.5], [0], None), "not a count delta"),
        (raw(1, "a", 5.0, [], [], [], None), "no buckets"),
        (raw(1, "a", 5.0, [1, 2], [1], [0], None), "differ in length"),
        (raw(1, "a", 5.0, [1], [1], [0], ["x", "y"]), "groups and seconds differ"),
        (raw(1, "a", 5.0, [1], [1], [2], None), "impossible counts"),
        (raw(1, "a", 5.0, [1], [0], [0], None), "impossible counts"),
        (raw(1, "a", 5.0, [1], [1], [-1], None), "impossible counts"),
        (raw(1, "a", float("nan"), [1], [1], [0], None), "not a finite time"),
        (raw(1, "", 5.0, [1], [1], [0], None), "heartbeat .* with counts"),
        (b"\xc1", "not a count delta"),
        (msgspec.msgpack.encode({"version": 1}), "not a count delta"),
    ],
)
def test_a_bad_record_is_refused_with_what_is_wrong(data: bytes, message: str) -> None:
    with pytest.raises(DeltaError, match=message):
        decode_delta(data)


def test_encoding_refuses_what_decoding_would_refuse() -> None:
    with pytest.raises(DeltaError, match="impossible counts"):
        encode_delta("a", 0.0, [1], [1], [3])


def test_a_composite_family_shares_the_key_of_its_first_service() -> None:
    plain = "sli: availability, objective: 99"
    config = parse_config(
        f"""
slos:
  - {{name: lone, service: solo, {plain}}}
  - {{name: a, service: sa, {plain}}}
  - {{name: b, service: sb, {plain}}}
  - {{name: c, service: sc, {plain}}}
  - {{name: c2, service: sc, {plain}}}
  - {{name: ab, composite: [{{slo: b}}, {{slo: a}}], objective: 99}}
  - {{name: bc, composite: [{{slo: c}}, {{slo: b}}], objective: 99}}
"""
    )
    assert partition_keys(config) == {
        "lone": "solo",
        "a": "sa",
        "b": "sa",
        "c": "sa",
        "c2": "sa",  # with c, its service's other SLO
        "ab": "sa",
        "bc": "sa",
    }


def test_a_service_is_one_key_whatever_its_slos() -> None:
    plain = "sli: availability, objective: 99"
    config = parse_config(
        f"""
slos:
  - {{name: shop-a, service: shop, {plain}}}
  - {{name: blog-a, service: blog, {plain}}}
  - {{name: shop-b, service: shop, {plain}}}
"""
    )
    assert partition_keys(config) == {"shop-a": "shop", "blog-a": "blog", "shop-b": "shop"}


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.sampled_from(["s0", "s1", "s2", "s3"]), min_size=1, max_size=8),
    st.lists(st.tuples(st.integers(0, 7), st.integers(0, 7)), max_size=4),
)
def test_a_service_and_a_composite_family_each_share_one_key(
    services: list[str], composites: list[tuple[int, int]]
) -> None:
    """Against a naive closure: SLOs of one service, and a composite with its members,
    always get the same key, and SLOs not so linked keep their own services' keys."""
    n = len(services)
    lines = [
        f"  - {{name: p{i}, service: {s}, sli: availability, objective: 99}}"
        for i, s in enumerate(services)
    ]
    links = [(i, i) for i in range(n)]
    for k, (a, b) in enumerate(composites):
        a, b = a % n, b % n
        if a == b:
            b = (a + 1) % n
        if a == b:
            continue
        lines.append(
            f"  - {{name: c{k}, composite: [{{slo: p{a}}}, {{slo: p{b}}}], objective: 99}}"
        )
        links += [(n + k, a), (n + k, b)]
    names = [f"p{i}" for i in range(n)] + [f"c{k}" for k in range(len(lines) - n)]
    svc = services + [None] * (len(lines) - n)
    for i in range(n):
        for j in range(n):
            if services[i] == services[j]:
                links.append((i, j))
    linked = {(i, i) for i in range(len(names))} | set(links) | {(j, i) for i, j in links}
    while True:  # transitive closure, the slow way
        more = {(i, k) for i, j in linked for j2, k in linked if j == j2} - linked
        if not more:
            break
        linked |= more
    keys = partition_keys(parse_config("slos:\n" + "\n".join(lines) + "\n"))
    for i, a in enumerate(names):
        family = sorted(j for j in range(len(names)) if (i, j) in linked)
        first = next((svc[j] for j in family if svc[j] is not None), names[family[0]])
        assert keys[a] == first
