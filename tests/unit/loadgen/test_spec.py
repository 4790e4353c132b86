"""The load spec and the incident grammar: parsing, printing back, validation."""

from __future__ import annotations

import math

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from engine.loadgen.spec import (
    MAX_RATE_PER_S,
    MAX_RUN_EVENTS,
    Incident,
    LoadSpec,
    parse_incident,
    parse_label,
    parse_rate,
    parse_ratio,
    parse_run_duration_s,
    parse_services,
)

# --- incident grammar ------------------------------------------------------------------

VALID_INCIDENTS = [
    pytest.param(
        "20%@+60s:5m",
        Incident(start_s=60, duration_s=300, error_ratio=0.2),
        id="a bare percentage hits every service",
    ),
    pytest.param(
        "checkout:20%@+60s:5m",
        Incident(start_s=60, duration_s=300, error_ratio=0.2, service="checkout"),
        id="a service prefix scopes the incident to that service",
    ),
    pytest.param(
        "service=checkout,20%@+60s:5m",
        Incident(start_s=60, duration_s=300, error_ratio=0.2, service="checkout"),
        id="service= is the same as the prefix",
    ),
    pytest.param(
        "20%@60s:5m",
        Incident(start_s=60, duration_s=300, error_ratio=0.2),
        id="the plus before the start offset is optional",
    ),
    pytest.param(
        "0.2@1m:5m",
        Incident(start_s=60, duration_s=300, error_ratio=0.2),
        id="a fraction is an error ratio like a percentage",
    ),
    pytest.param(
        "errors=0.5%@0s:90s",
        Incident(start_s=0, duration_s=90, error_ratio=0.005),
        id="errors= takes a percentage and an incident may start at once",
    ),
    pytest.param(
        "latency=800ms@+60s:5m",
        Incident(start_s=60, duration_s=300, latency_median_ms=800),
        id="a latency incident sets the median latency",
    ),
    pytest.param(
        "search:latency=1.5s@+1h30m",
        Incident(start_s=5400, latency_median_ms=1500, service="search"),
        id="latency in seconds and an incident without duration lasts to the end",
    ),
    pytest.param(
        "checkout:50%,latency=2s@10m:30m",
        Incident(
            start_s=600,
            duration_s=1800,
            error_ratio=0.5,
            latency_median_ms=2000,
            service="checkout",
        ),
        id="errors and latency combine in one incident",
    ),
    pytest.param(
        "  svc-1 : 100% @ +2m : 30s ",
        Incident(start_s=120, duration_s=30, error_ratio=1.0, service="svc-1"),
        id="spaces around the parts are ignored and 100 percent is allowed",
    ),
]


@pytest.mark.parametrize(("text", "expected"), VALID_INCIDENTS)
def test_parse_incident_reads_the_grammar(text: str, expected: Incident) -> None:
    assert parse_incident(text) == expected


@pytest.mark.parametrize(("text", "expected"), VALID_INCIDENTS)
def test_an_incident_prints_as_text_that_parses_back_to_it(text: str, expected: Incident) -> None:
    assert parse_incident(str(expected)) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param("20%+60s:5m", "exactly one '@'", id="the @ is required"),
        pytest.param("20%@1m@2m", "exactly one '@'", id="two @ are refused"),
        pytest.param("20%@", "missing the start offset", id="a start offset is required"),
        pytest.param("20%@60:5m", "needs a unit, e.g. 60s", id="a start without unit is refused"),
        pytest.param("20%@1m:", "not a duration", id="an empty duration after the colon"),
        pytest.param("20%@1m:0s", "longer than 0s", id="a zero duration is refused"),
        pytest.param("20%@soon", "not a duration", id="a start that is no duration"),
        pytest.param("20%@-1m:5m", "not a duration", id="a negative start is refused"),
        pytest.param("20@1m", "write 20% for a percentage", id="a ratio above 1 needs a percent"),
        pytest.param("120%@1m", "between 0 and 100%", id="a percentage above 100 is refused"),
        pytest.param("lots%@1m", "not a number", id="a percentage must be a number"),
        pytest.param("latency=800@1m", "needs a unit, e.g. 800ms", id="latency needs a unit"),
        pytest.param("latency=0ms@1m", "more than 0ms", id="a zero latency is refused"),
        pytest.param("slow@1m", "unknown effect 'slow'", id="a bare word is not an effect"),
        pytest.param("color=red@1m", "unknown effect 'color'", id="an unknown key is refused"),
        pytest.param("@1m:5m", "missing an effect", id="an effect is required"),
        pytest.param("checkout:@1m", "missing an effect", id="a service alone is not an incident"),
        pytest.param("20%,@1m", "missing an effect", id="a trailing comma is refused"),
        pytest.param("10%,20%@1m", "errors is given more than once", id="two error ratios"),
        pytest.param(
            "a:service=b,20%@1m", "service is given more than once", id="service named twice"
        ),
        pytest.param("service=a@1m", "give an error ratio", id="a service without an effect"),
        pytest.param("check out:20%@1m", "bad service name", id="a service name with a space"),
    ],
)
def test_parse_incident_rejects_bad_text_saying_why(text: str, message: str) -> None:
    with pytest.raises(ValueError, match="bad incident") as info:
        parse_incident(text)
    assert message in str(info.value)
    assert "expected [SERVICE:]EFFECT" in str(info.value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("0.001", 0.001, id="a fraction"),
        pytest.param("0.1%", 0.001, id="a percentage"),
        pytest.param("0", 0.0, id="zero"),
        pytest.param("1", 1.0, id="one"),
    ],
)
def test_parse_ratio_reads_fractions_and_percentages(text: str, expected: float) -> None:
    assert parse_ratio(text) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param("5", "write 5% for a percentage", id="a bare number above one"),
        pytest.param("-0.1", "between 0 and 100%", id="a negative ratio"),
        pytest.param("nan", "not a finite number", id="not a number"),
        pytest.param("a lot", "not a number", id="words"),
    ],
)
def test_parse_ratio_rejects_bad_text(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_ratio(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("500", 500.0, id="a whole number"),
        pytest.param(" 2.5e4 ", 25_000.0, id="scientific notation"),
        pytest.param("0.5", 0.5, id="less than one a second"),
        pytest.param("1e7", MAX_RATE_PER_S, id="the highest rate"),
    ],
)
def test_parse_rate_reads_events_per_second(text: str, expected: float) -> None:
    assert parse_rate(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param("1e12", "rate '1e12' is more than 10,000,000 events per second", id="absurd"),
        pytest.param("10000001", "more than 10,000,000", id="just over the bound"),
        pytest.param("inf", "rate 'inf' must be a number > 0", id="infinite"),
        pytest.param("nan", "rate 'nan' must be a number > 0", id="not a number"),
        pytest.param("0", "rate '0' must be a number > 0", id="zero"),
        pytest.param("fast", "rate 'fast' is not a number", id="words"),
    ],
)
def test_parse_rate_rejects_what_no_run_can_honour(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_rate(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("3", ("svc-0", "svc-1", "svc-2"), id="a count names svc-0 onwards"),
        pytest.param("checkout", ("checkout",), id="a single name"),
        pytest.param("checkout, search", ("checkout", "search"), id="a comma-separated list"),
    ],
)
def test_parse_services(text: str, expected: tuple[str, ...]) -> None:
    assert parse_services(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param("0", "between 1 and 10000", id="no services"),
        pytest.param("a,b,a", "repeated: a", id="a repeated name"),
        pytest.param("a,,b", "bad service name ''", id="an empty name"),
        pytest.param("käse/1", "bad service name", id="a name with a slash"),
    ],
)
def test_parse_services_rejects_bad_lists(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_services(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("90s", 90.0, id="seconds"),
        pytest.param("1h30m", 5400.0, id="hours and minutes"),
        pytest.param(" Forever ", math.inf, id="forever, in any case, is endless"),
        pytest.param("inf", math.inf, id="inf is endless too"),
    ],
)
def test_parse_run_duration_s_reads_durations_and_forever(text: str, expected: float) -> None:
    assert parse_run_duration_s(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param("10", "not a duration like 90s", id="a number without unit"),
        pytest.param("0s", "longer than 0s", id="an empty run"),
    ],
)
def test_parse_run_duration_s_rejects_bad_text(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_run_duration_s(text)


# --- the load spec ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        pytest.param(
            {"incidents": (parse_incident("checkout:20%@1m"),)},
            "names service 'checkout', which is not one of the services",
            id="an incident for an unknown service",
        ),
        pytest.param(
            {"duration_s": 60.0, "incidents": (parse_incident("20%@2m"),)},
            "starts after the end of the 1m run",
            id="an incident after the end of the run",
        ),
        pytest.param(
            {"latency_median_ms": 100.0, "latency_p99_ms": 50.0},
            "must be >= the median",
            id="a p99 below the median",
        ),
        pytest.param({"rate_per_s": 0.0}, "rate", id="a zero rate"),
        pytest.param(
            {"rate_per_s": 1e12, "duration_s": 1.0},
            "is more than 10,000,000 events per second",
            id="a rate no producer can send",
        ),
        pytest.param(
            {"rate_per_s": MAX_RATE_PER_S, "duration_s": 1e10},
            f"is more than {MAX_RUN_EVENTS:,} events",
            id="a run too long for exact event offsets",
        ),
        pytest.param({"services": ()}, "at least one service", id="no services"),
        pytest.param({"error_ratio": 1.5}, "error ratio", id="an error ratio above one"),
        pytest.param(
            {"labels": tuple((f"l{i}", ("v",)) for i in range(17))},
            "at most 16 labels",
            id="more labels than an event carries",
        ),
        pytest.param(
            {"labels": (("region", ("eu",)), ("region", ("us",)))},
            "repeated: region",
            id="a label given twice",
        ),
        pytest.param(
            {"labels": (("region", ("eu", "eu")),)}, "values must be unique", id="a value twice"
        ),
        pytest.param({"labels": (("region", ()),)}, "needs 1 to 10000 values", id="no values"),
        pytest.param({"labels": (("region", ("",)),)}, "an empty value", id="an empty value"),
        pytest.param(
            {"labels": (("region", ("€" * 43,)),)},
            "over 128 bytes",
            id="a value the wire refuses",
        ),
    ],
)
def test_load_spec_rejects_inconsistent_settings(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        LoadSpec(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("offset_s", "expected"),
    [
        pytest.param(0.0, 0, id="the first event is at the start"),
        pytest.param(0.7, 7, id="float noise does not move an exact boundary"),
        pytest.param(0.71, 8, id="between two events, the next one"),
    ],
)
def test_index_at_is_the_first_event_at_or_after_an_offset(offset_s: float, expected: int) -> None:
    assert LoadSpec(rate_per_s=10.0).index_at(offset_s) == expected


@given(
    start_ms=st.integers(0, 10**9),
    duration_ms=st.none() | st.integers(1, 10**9),
    error_percent=st.none() | st.floats(0, 100),
    latency_ms=st.none() | st.integers(1, 10**7),
    service=st.none() | st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,20}", fullmatch=True),
)
def test_any_incident_prints_as_text_that_parses_back_to_it(
    start_ms: int,
    duration_ms: int | None,
    error_percent: float | None,
    latency_ms: int | None,
    service: str | None,
) -> None:
    assume(error_percent is not None or latency_ms is not None)
    incident = Incident(
        start_s=start_ms / 1000,
        duration_s=math.inf if duration_ms is None else duration_ms / 1000,
        error_ratio=None if error_percent is None else error_percent / 100,
        latency_median_ms=latency_ms,
        service=service,
    )
    back = parse_incident(str(incident))
    assert back.start_s == pytest.approx(incident.start_s, abs=1e-9)
    assert back.duration_s == pytest.approx(incident.duration_s, rel=1e-12)
    if incident.error_ratio is None:
        assert back.error_ratio is None
    else:
        assert back.error_ratio == pytest.approx(incident.error_ratio, rel=1e-9, abs=1e-15)
    assert back.latency_median_ms == incident.latency_median_ms
    assert back.service == incident.service


def test_the_bounds_leave_the_longest_useful_runs_possible() -> None:
    # A month at the highest rate, or a century at 1000 events/s, is still a valid run,
    # and its last event's offset is exact.
    month = LoadSpec(rate_per_s=MAX_RATE_PER_S, duration_s=30 * 86400.0)
    assert month.total_events == 30 * 86400 * 10_000_000
    century = LoadSpec(rate_per_s=1000.0, duration_s=100 * 365 * 86400.0)
    last = (century.total_events or 0) - 1
    assert century.index_at(last / century.rate_per_s) == last
    assert LoadSpec(rate_per_s=MAX_RATE_PER_S, duration_s=math.inf).total_events is None


def test_a_spec_weights_events_only_as_far_as_the_wire_accepts() -> None:
    from engine.core.decode import MAX_COUNT

    assert LoadSpec(rate_per_s=10.0, count=MAX_COUNT).count == MAX_COUNT
    with pytest.raises(ValueError, match="count"):
        LoadSpec(rate_per_s=10.0, count=MAX_COUNT + 1)


# --- labels ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("region=eu,us,ap", ("region", ("eu", "us", "ap")), id="values"),
        pytest.param(" tier = gold ", ("tier", ("gold",)), id="one value, spaces"),
        pytest.param(
            "customer=3", ("customer", ("customer-0", "customer-1", "customer-2")), id="a count"
        ),
    ],
)
def test_parse_label_reads_values_or_a_count(
    text: str, expected: tuple[str, tuple[str, ...]]
) -> None:
    assert parse_label(text) == expected
    assert LoadSpec(labels=(expected,)).labels == (expected,)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param("region", "expected KEY=VALUE", id="no values"),
        pytest.param("=eu", "expected KEY=VALUE", id="no key"),
        pytest.param("region=", "expected KEY=VALUE", id="empty values"),
        pytest.param("customer=0", "count 0 must be between 1 and 10000", id="a zero count"),
        pytest.param("customer=10001", "must be between 1 and 10000", id="too many values"),
    ],
)
def test_parse_label_rejects_bad_text(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_label(text)
