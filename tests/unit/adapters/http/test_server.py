"""The HTTP server's pure parts: readiness from consumption progress, and `listen` parsing."""

from __future__ import annotations

from typing import Any

import pytest

from engine.adapters.http.server import READY_FETCH_AGE_S, Readiness, parse_listen, readiness
from engine.adapters.kafka.status import SourceStatus

ASSIGNED = (("events", 0), ("events", 1))


def status(**changes: Any) -> SourceStatus:
    """A consumer that runs, has two partitions and heard from the broker 1 s ago."""
    fields: dict[str, Any] = {
        "assigned": ASSIGNED,
        "last_fetch_age_s": 1.0,
        "last_fetch_at": 1_700_000_000.0,
        "lag": {("events", 0): 0, ("events", 1): 3},
        "records_consumed": 120,
        "running": True,
    }
    fields.update(changes)
    return SourceStatus(**fields)


# -- readiness ------------------------------------------------------------------------


def test_a_running_assigned_consumer_with_a_recent_fetch_is_ready() -> None:
    assert readiness(status()) == Readiness(True, "ok")
    assert readiness(status(last_fetch_age_s=0.0)) == Readiness(True, "ok")


def test_no_source_yet_is_not_ready() -> None:
    assert readiness(None) == Readiness(False, "not consuming")


def test_a_stopped_consumer_is_not_ready_whatever_its_last_progress() -> None:
    assert readiness(status(running=False)) == Readiness(False, "not consuming")
    assert readiness(status(running=False, assigned=(), last_fetch_age_s=None)) == Readiness(
        False, "not consuming"
    )


def test_a_consumer_without_partitions_is_not_ready() -> None:
    assert readiness(status(assigned=())) == Readiness(False, "no partitions assigned")
    # Even while fetches still come back (a member in its group that was given nothing).
    assert readiness(status(assigned=(), last_fetch_age_s=0.1)) == Readiness(
        False, "no partitions assigned"
    )


def test_an_assigned_consumer_that_has_not_fetched_yet_is_not_ready() -> None:
    got = readiness(status(last_fetch_age_s=None, last_fetch_at=None))
    assert got == Readiness(False, "no fetch response from the broker yet")


@pytest.mark.parametrize(("age", "shown"), [(15.001, "15"), (20.4, "20"), (3600.0, "3600")])
def test_a_fetch_older_than_the_limit_means_the_broker_is_unreachable(
    age: float, shown: str
) -> None:
    assert READY_FETCH_AGE_S == 15.0
    got = readiness(status(last_fetch_age_s=age))
    assert got == Readiness(False, f"broker unreachable: no fetch response for {shown}s")


def test_a_fetch_exactly_at_the_limit_is_still_ready() -> None:
    assert readiness(status(last_fetch_age_s=READY_FETCH_AGE_S)).ready


def test_the_limit_can_be_set() -> None:
    assert readiness(status(last_fetch_age_s=5.0), max_fetch_age_s=60.0).ready
    assert readiness(status(last_fetch_age_s=5.0), max_fetch_age_s=4.0) == Readiness(
        False, "broker unreachable: no fetch response for 5s"
    )


def test_readiness_does_not_look_at_lag_or_counts() -> None:
    # Lag is a metric, not a reason to leave the load balancer: a ready consumer catches up.
    lagging = status(lag={("events", 0): 10**9}, records_consumed=0)
    assert readiness(lagging) == Readiness(True, "ok")


# -- parse_listen ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0.0.0.0:9464", ("0.0.0.0", 9464)),
        ("127.0.0.1:0", ("127.0.0.1", 0)),
        ("localhost:65535", ("localhost", 65535)),
        ("metrics.internal:8080", ("metrics.internal", 8080)),
        (":9464", ("0.0.0.0", 9464)),  # no host: every interface
        ("[::1]:8080", ("::1", 8080)),
        ("[::]:80", ("::", 80)),
        ("[fe80::1%eth0]:9464", ("fe80::1%eth0", 9464)),
        ("host:0080", ("host", 80)),
    ],
)
def test_parse_listen_splits_host_and_port(text: str, expected: tuple[str, int]) -> None:
    assert parse_listen(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        ":",
        "9464",
        "host",
        "host:",
        "host:abc",
        "host:65536",
        "host:99999999999999999999",
        "host:-1",
        "host:+80",
        "host: 80",
        "host:80 ",
        "host:8o",
        "[::1]",
        "[::1]:",
    ],
)
def test_parse_listen_refuses_what_is_not_host_colon_port(text: str) -> None:
    with pytest.raises(ValueError, match=r"expected HOST:PORT, got "):
        parse_listen(text)


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("host:\u0663", id="arabic-indic 3"),
        pytest.param("[::1]:\u0668\u0660\u0668\u0660", id="arabic-indic 8080"),
        pytest.param("host:\uff18\uff10", id="fullwidth 80"),
    ],
)
def test_parse_listen_takes_only_ascii_digits_as_a_port(text: str) -> None:
    """A port is ASCII digits: anything else is malformed, refused like the rest."""
    with pytest.raises(ValueError, match=r"expected HOST:PORT, got "):
        parse_listen(text)
