"""What the HTTP sinks share, without a network: backoff, Retry-After, URL checks and
redaction, counts, and the queue's refusals (each logged and counted, never quiet)."""

from __future__ import annotations

import logging
import math
import random
from email.utils import formatdate
from typing import Any

import pytest

from engine.adapters.alerts.http_sink import (
    OUTCOMES,
    RetryPolicy,
    check_url,
    redact_url,
    retry_after_s,
)
from engine.adapters.alerts.webhook import WebhookSink
from engine.errors import ConfigError
from tests.unit.adapters.alerts.factories import EXTERNAL, SLOS, T0, FixedClock, firing, resolved

NOW = 1_700_000_000.0
"""Tue, 14 Nov 2023 22:13:20 GMT."""


# -- RetryPolicy ----------------------------------------------------------------------


def test_the_default_policy_backs_off_from_1s_up_to_5min_and_waits_at_most_5min() -> None:
    policy = RetryPolicy()
    assert (policy.initial_backoff_s, policy.max_backoff_s, policy.max_retry_after_s) == (
        1.0,
        300.0,
        300.0,
    )


@pytest.mark.parametrize("seed", [0, 1, 7, 2024])
def test_backoff_is_full_jitter_under_a_doubling_ceiling_capped_at_the_max(seed: int) -> None:
    policy = RetryPolicy(initial_backoff_s=0.5, max_backoff_s=30.0)
    rng = random.Random(seed)
    for attempt in range(12):
        ceiling = min(30.0, 0.5 * 2**attempt)
        delays = [policy.backoff_s(attempt, rng) for _ in range(400)]
        assert all(0.0 <= d <= ceiling for d in delays), attempt
        # Full jitter: the delays spread over the whole of [0, ceiling].
        assert min(delays) < 0.05 * ceiling
        assert max(delays) > 0.95 * ceiling


def test_backoff_stays_capped_for_any_number_of_attempts() -> None:
    policy = RetryPolicy(initial_backoff_s=1.0, max_backoff_s=300.0)
    rng = random.Random(3)
    for attempt in (62, 63, 64, 1_000, 10**9):
        delays = [policy.backoff_s(attempt, rng) for _ in range(200)]
        assert all(math.isfinite(d) and 0.0 <= d <= 300.0 for d in delays)
        assert max(delays) > 250.0  # the ceiling is the max, not something that overflowed


def test_backoff_is_reproducible_from_the_seed() -> None:
    policy = RetryPolicy()

    def delays(seed: int) -> list[float]:
        rng = random.Random(seed)
        return [policy.backoff_s(attempt, rng) for attempt in range(10)]

    assert delays(42) == delays(42)
    assert delays(42) != delays(43)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"initial_backoff_s": 0.0}, "0 < initial_backoff_s <= max_backoff_s"),
        ({"initial_backoff_s": -1.0}, "0 < initial_backoff_s <= max_backoff_s"),
        ({"initial_backoff_s": 10.0, "max_backoff_s": 5.0}, "got 10.0 and 5.0"),
        ({"initial_backoff_s": math.nan}, "0 < initial_backoff_s"),
        ({"max_retry_after_s": 0.0}, "max_retry_after_s must be > 0, got 0.0"),
        ({"max_retry_after_s": math.nan}, "max_retry_after_s must be > 0"),
    ],
)
def test_an_unusable_policy_is_refused(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RetryPolicy(**kwargs)


def test_a_policy_with_equal_initial_and_max_backoff_is_fine() -> None:
    policy = RetryPolicy(initial_backoff_s=2.0, max_backoff_s=2.0)
    rng = random.Random(5)
    assert all(0.0 <= policy.backoff_s(a, rng) <= 2.0 for a in range(20))


# -- Retry-After ----------------------------------------------------------------------


def test_retry_after_is_read_as_seconds_or_an_http_date() -> None:
    now = 1_700_000_000.0
    assert retry_after_s("120", now) == 120.0
    assert retry_after_s(" 3 ", now) == 3.0
    assert retry_after_s(formatdate(now + 30, usegmt=True), now) == 30.0
    assert retry_after_s(formatdate(now - 30, usegmt=True), now) == 0.0
    assert retry_after_s("soon", now) is None
    assert retry_after_s(None, now) is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0", 0.0),
        ("1.5", 1.5),  # not RFC 9110, tolerated
        ("3600", 3600.0),  # not capped here: the sink caps it at max_retry_after_s
        ("\t7\r\n", 7.0),
        # The three HTTP-date forms RFC 9110 says a recipient must accept:
        ("Tue, 14 Nov 2023 22:13:50 GMT", 30.0),  # IMF-fixdate
        ("Tuesday, 14-Nov-23 22:13:50 GMT", 30.0),  # obsolete RFC 850
        ("Tue Nov 14 22:13:50 2023", 30.0),  # obsolete asctime
        ("Tue, 14 Nov 2023 22:13:50", 30.0),  # no zone: read as UTC
        ("Tue, 14 Nov 2023 23:13:50 +0100", 30.0),  # an offset is applied
        ("Tue, 14 Nov 2023 22:13:20 GMT", 0.0),  # now
        ("Thu, 01 Jan 1970 00:00:00 GMT", 0.0),  # long past: no wait, never negative
    ],
)
def test_retry_after_edge_cases_that_are_usable(value: str, expected: float) -> None:
    assert retry_after_s(value, NOW) == expected


@pytest.mark.parametrize(
    "value",
    [
        "",
        "   ",
        "-5",  # a negative delay is not delay-seconds
        "+5",
        "1e3",
        ".5",
        "1.",
        "0x10",
        "5 s",
        "12345678901",  # more than 10 digits
        "Tue, 14 Nov 2023 25:13:50 GMT",  # hour 25
        "Mon, 31 Feb 2023 00:00:00 GMT",  # no such day
        "Mon, 01 Jan 99999 00:00:00 GMT",  # beyond datetime's range
        "GMT",
        "\x00",
    ],
)
def test_retry_after_that_is_unusable_is_none(value: str) -> None:
    assert retry_after_s(value, NOW) is None


def test_an_http_date_is_measured_from_the_given_now_to_the_millisecond() -> None:
    assert retry_after_s("Tue, 14 Nov 2023 22:13:50 GMT", NOW + 0.25) == 29.75


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("\u0661\u0662", id="arabic-indic 12"),
        pytest.param("\uff11\uff12", id="fullwidth 12"),
    ],
)
def test_delay_seconds_are_ascii_digits_only(value: str) -> None:
    """RFC 9110: delay-seconds = 1*DIGIT, and DIGIT is %x30-39. Other Unicode digits
    (Arabic-Indic, fullwidth) are not a delay: the header is unusable."""
    assert retry_after_s(value, NOW) is None


# -- URLs -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://user:pw@hooks.example/T0/B0/SECRET?token=x#frag", "https://hooks.example"),
        ("http://token@hooks.example/x", "http://hooks.example"),
        ("https://hooks.example/services/T0/B0/XYZ", "https://hooks.example"),
        ("http://b.example:8080/x?sig=abc", "http://b.example:8080"),
        ("https://h.example:443/x", "https://h.example"),  # the default port goes
        ("http://h.example:80/x", "http://h.example"),
        ("http://[::1]:9093/api/v2/alerts", "http://[::1]:9093"),
        ("HTTP://Hooks.Example/Path", "http://hooks.example"),
        ("http://am1:9093", "http://am1:9093"),
    ],
)
def test_redact_url_keeps_only_scheme_host_and_port(url: str, shown: str) -> None:
    assert redact_url(url) == shown


@pytest.mark.parametrize(
    "url",
    [
        "https://user:hunter2@hooks.example/T0/B0/hunter2?token=hunter2",
        "https://hooks.example/hunter2#hunter2",
        "https://hooks.example/?api_key=hunter2&sig=hunter2",
    ],
)
def test_redact_url_never_shows_a_credential(url: str) -> None:
    shown = redact_url(url)
    assert "hunter2" not in shown
    assert "user" not in shown
    assert shown == "https://hooks.example"


@pytest.mark.parametrize(
    "url", ["", "/relative/path", "hooks.example/T0", "http://[::1", "http://h.example:99999/"]
)
def test_redact_url_of_something_that_is_not_an_absolute_url(url: str) -> None:
    assert redact_url(url) == "<invalid url>"


@pytest.mark.parametrize(
    "url",
    [
        "http://hooks.example/x",
        "https://user:pw@hooks.example:8443/T0/B0/XYZ?token=x",
        "http://127.0.0.1:9093",
        "http://[::1]:9093/",
    ],
)
def test_check_url_returns_a_usable_url_unchanged(url: str) -> None:
    assert check_url(url, "$.receivers[0].url") == url


@pytest.mark.parametrize(
    "url",
    [
        "ftp://hooks.example/x",
        "file:///etc/passwd",
        "mailto:ops@example.com",
        "ws://hooks.example/x",
        "/relative",
        "hooks.example/x",
        "",
        "http://",
        "http:///no-host",
        "http://h.example:99999/",
        "http://[::1",
    ],
)
def test_check_url_refuses_anything_but_absolute_http_and_names_the_path(url: str) -> None:
    path = "$.receivers[3].urls[1]"
    with pytest.raises(ConfigError) as info:
        check_url(url, path)
    assert info.value.errors == [f"{path}: must be an absolute http:// or https:// URL"]


# -- counts and the queue, without a worker ------------------------------------------


def unstarted(url: str = "https://user:pw@hooks.example/T0/SECRET", **kwargs: Any) -> WebhookSink:
    return WebhookSink(url, SLOS, external_url=EXTERNAL, clock=FixedClock(), **kwargs)


def test_every_outcome_is_counted_from_the_start_under_the_redacted_receiver() -> None:
    sink = unstarted()
    assert sink.receiver == "https://hooks.example"
    assert sink.stats() == {("https://hooks.example", outcome): 0 for outcome in OUTCOMES}
    assert OUTCOMES == ("delivered", "retried", "failed", "dropped_queue_full")
    named = unstarted(receiver="team-hook")
    assert set(named.stats()) == {("team-hook", outcome) for outcome in OUTCOMES}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"queue_size": 0}, "queue_size must be >= 1, got 0"),
        ({"timeout_s": 0.0}, "timeout_s must be > 0, got 0.0"),
        ({"timeout_s": math.nan}, "timeout_s must be > 0"),
    ],
)
def test_an_unusable_queue_size_or_timeout_is_refused(
    kwargs: dict[str, float], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        unstarted(**kwargs)


def test_a_full_queue_drops_counts_and_logs_each_transition(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sink = unstarted(queue_size=2)  # never started: nothing takes from the queue
    for i in range(5):
        sink.enqueue(firing(at=T0 + i))
    assert sink.pending == 2
    assert sink.stats()[("https://hooks.example", "dropped_queue_full")] == 3
    dropped = [r for r in caplog.records if "DROPPED" in r.getMessage()]
    assert [r.levelno for r in dropped] == [logging.ERROR] * 3
    assert "checkout-availability/page firing at 2023-11-14T22:13:22Z" in dropped[0].getMessage()


def test_a_transition_of_an_unknown_slo_is_counted_failed_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sink = unstarted()
    sink.enqueue(firing(slo="no-such-slo"))
    assert sink.pending == 0
    assert sink.stats()[("https://hooks.example", "failed")] == 1
    [error] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert "unknown SLO 'no-such-slo'" in error.getMessage()


def test_a_resolve_without_its_firing_is_queued_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sink = unstarted()
    sink.enqueue(resolved(at=T0))
    assert sink.pending == 1
    [warning] = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert "firing was not seen" in warning.getMessage()
    caplog.clear()
    sink.enqueue(firing(at=T0 + 1))
    sink.enqueue(resolved(at=T0 + 2))
    assert sink.pending == 3
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


@pytest.mark.asyncio
async def test_close_logs_what_was_never_delivered_and_refuses_more(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sink = unstarted()
    await sink.deliver(firing(at=T0))
    await sink.deliver(resolved(at=T0 + 60))
    await sink.close(timeout_s=0)
    [left] = [r for r in caplog.records if "not delivered before shutdown" in r.getMessage()]
    assert left.levelno == logging.ERROR
    assert "2 alert transitions" in left.getMessage()
    assert "checkout-availability/page resolved at 2023-11-14T22:14:20Z" in left.getMessage()
    assert sink.pending == 0
    caplog.clear()
    await sink.deliver(firing(at=T0 + 120))
    [refused] = caplog.records
    assert "is closed" in refused.getMessage()
    assert sink.pending == 0
    with pytest.raises(RuntimeError, match="already started"):
        await sink.start()
