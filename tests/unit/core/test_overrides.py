"""Gate overrides: the request body checked with `$.path` errors, the TTL bounded, expiry
by the wall clock passed in, and the set to bytes and back for the state file."""

from __future__ import annotations

import json

import pytest

from engine.core.overrides import Override, Overrides, parse_override_request
from engine.errors import ConfigError

DAY_S = 86400.0
NOW = 1_800_000_000.0


def parse(body: object, max_ttl_s: float = DAY_S) -> Override:
    return parse_override_request(json.dumps(body).encode(), "shop", NOW, max_ttl_s)


def test_a_request_sets_an_override_until_now_plus_its_ttl() -> None:
    o = parse({"reason": " hotfix for INC-7 ", "ttl": "2h", "ticket": "OPS-1"})
    assert o == Override(
        service="shop",
        reason="hotfix for INC-7",
        ticket="OPS-1",
        set_at_s=NOW,
        expires_at_s=NOW + 7200,
    )


def test_without_a_ttl_an_override_lasts_the_maximum() -> None:
    assert parse({"reason": "x"}).expires_at_s == NOW + DAY_S
    assert parse({"reason": "x"}, max_ttl_s=3600).expires_at_s == NOW + 3600
    assert parse({"reason": "x", "ttl": "24h"}).expires_at_s == NOW + DAY_S


@pytest.mark.parametrize(
    ("body", "errors"),
    [
        ({}, ["$.reason: required (why the gate is overridden)"]),
        ({"reason": "  "}, ["$.reason: required (why the gate is overridden)"]),
        ({"reason": "x", "ttl": "25h"}, ["$.ttl: at most 1d, got 25h"]),
        ({"reason": "x", "ttl": "0s"}, ["$.ttl: must be longer than 0s, got 0s"]),
        (
            {"ttl": "2d"},
            ["$.reason: required (why the gate is overridden)", "$.ttl: at most 1d, got 2d"],
        ),
        ({"reason": 5}, ["$.reason: Expected `str | null`, got `int`"]),
        ({"reason": "x", "ttl": "soon"}, None),
        ({"reason": "x", "by": "me"}, ["$: Object contains unknown field `by`"]),
        ([], ["$: Expected `object`, got `array`"]),
    ],
)
def test_bad_requests_say_what_is_wrong_where(body: object, errors: list[str] | None) -> None:
    with pytest.raises(ConfigError) as exc:
        parse(body)
    if errors is None:
        assert exc.value.errors[0].startswith("$.ttl: Expected `str` matching regex")
    else:
        assert exc.value.errors == errors


def test_a_body_that_is_not_json_is_refused() -> None:
    with pytest.raises(ConfigError) as exc:
        parse_override_request(b"{", "shop", NOW, DAY_S)
    assert exc.value.errors[0].startswith("$: not valid JSON")


def test_overrides_expire_by_the_clock_passed_in() -> None:
    overrides = Overrides()
    o = Override(service="shop", reason="x", set_at_s=NOW, expires_at_s=NOW + 10)
    assert overrides.set(o) is None
    assert overrides.active("shop", NOW + 9.999) == o
    assert overrides.active("blog", NOW) is None
    assert overrides.active("shop", NOW + 10) is None  # expired at its end, and dropped
    assert overrides.all(NOW) == []


def test_a_new_override_replaces_the_old_and_ending_returns_the_one_in_force() -> None:
    overrides = Overrides()
    first = Override(service="shop", reason="a", set_at_s=NOW, expires_at_s=NOW + 10)
    second = Override(service="shop", reason="b", set_at_s=NOW + 1, expires_at_s=NOW + 20)
    overrides.set(first)
    assert overrides.set(second) == first
    assert overrides.end("shop", NOW + 2) == second
    assert overrides.end("shop", NOW + 2) is None
    overrides.set(first)
    assert overrides.end("shop", NOW + 10) is None  # already expired: nothing to end


def test_the_set_round_trips_through_bytes_without_the_expired() -> None:
    overrides = Overrides()
    assert overrides.encode() == b""
    keep = Override(service="shop", reason="a", ticket="T", set_at_s=NOW, expires_at_s=NOW + 100)
    gone = Override(service="blog", reason="b", set_at_s=NOW, expires_at_s=NOW + 5)
    overrides.set(keep)
    overrides.set(gone)
    data = overrides.encode()
    again = Overrides()
    assert again.load(data, NOW + 50) == 1
    assert again.all(NOW + 50) == [keep]
    assert again.load(b"", NOW) == 0


def test_loading_damaged_bytes_raises_and_changes_nothing() -> None:
    overrides = Overrides()
    keep = Override(service="shop", reason="a", set_at_s=NOW, expires_at_s=NOW + 100)
    overrides.set(keep)
    with pytest.raises(ValueError, match="overrides"):
        overrides.load(b"\x93\x01", NOW)
    assert overrides.all(NOW) == [keep]
