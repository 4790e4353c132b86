"""The load generator: incident grammar, reproducibility, error ratios, wire encoding."""

from __future__ import annotations

import itertools
import math

import msgspec
import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from engine.core.decode import RecordDecoder
from engine.core.taxonomy import Outcome, classify
from engine.loadgen import (
    BLOCK_EVENTS,
    EventColumns,
    Incident,
    LoadGenerator,
    LoadSpec,
    Tally,
    encode_records,
    generate,
    parse_incident,
    parse_ratio,
    parse_services,
)

START_TS = 1_700_000_000.0


def same_events(a: EventColumns, b: EventColumns) -> None:
    assert a.first_index == b.first_index
    for name in ("ts", "service", "operation", "status", "bad", "latency_ms"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)


def concat(parts: list[EventColumns]) -> dict[str, np.ndarray]:
    return {
        name: np.concatenate([getattr(p, name) for p in parts])
        for name in ("ts", "service", "operation", "status", "bad", "latency_ms")
    }


def binomial_bounds(n: int, p: float, sigmas: float = 5.0) -> tuple[float, float]:
    """Bounds on the observed ratio of n draws at p; 5 sigma keeps a fixed seed far from them."""
    spread = sigmas * math.sqrt(p * (1 - p) / n)
    return p - spread, p + spread


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
        pytest.param({"rate": 0.0}, "rate", id="a zero rate"),
        pytest.param({"services": ()}, "at least one service", id="no services"),
        pytest.param({"error_ratio": 1.5}, "error ratio", id="an error ratio above one"),
    ],
)
def test_load_spec_rejects_inconsistent_settings(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        LoadSpec(**kwargs)  # type: ignore[arg-type]


# --- time and reproducibility ------------------------------------------------------------


@pytest.mark.parametrize(
    ("rate", "duration_s", "expected"),
    [
        pytest.param(1000.0, 60.0, 60_000, id="a whole number of events per second"),
        pytest.param(10.0, 0.7, 7, id="float noise does not add an event at the end"),
        pytest.param(3.0, 1.0, 3, id="a rate that is no power of ten"),
        pytest.param(0.5, 5.0, 3, id="less than one event per second"),
    ],
)
def test_a_run_has_rate_times_duration_events(
    rate: float, duration_s: float, expected: int
) -> None:
    spec = LoadSpec(rate=rate, duration_s=duration_s)
    assert spec.total_events == expected
    assert len(generate(spec, START_TS, 0, duration_s)) == expected
    assert LoadGenerator(spec).tally().total_events == expected


def test_events_are_spread_evenly_from_the_start() -> None:
    cols = generate(LoadSpec(rate=4.0, duration_s=2.0), START_TS, 0, 2)
    assert cols.ts.tolist() == [START_TS + i / 4 for i in range(8)]


def test_the_same_seed_gives_the_same_events() -> None:
    spec = LoadSpec(rate=5000.0, duration_s=10.0, incidents=(parse_incident("20%@2s:3s"),))
    same_events(generate(spec, START_TS, 0, 10), generate(spec, START_TS, 0, 10))


def test_another_seed_gives_other_events() -> None:
    a = generate(LoadSpec(rate=5000.0, duration_s=2.0, seed=1), START_TS, 0, 2)
    b = generate(LoadSpec(rate=5000.0, duration_s=2.0, seed=2), START_TS, 0, 2)
    assert not np.array_equal(a.latency_ms, b.latency_ms)
    assert not np.array_equal(a.service, b.service)


def test_slices_of_any_size_give_the_events_of_the_whole_run() -> None:
    spec = LoadSpec(rate=7919.0, duration_s=3.0, incidents=(parse_incident("svc-1:30%@1s:1s"),))
    whole = generate(spec, START_TS, 0, 3)
    rng = np.random.default_rng(7)
    cuts = np.sort(rng.uniform(0, 3, 40)).tolist()
    bounds = [0.0, *cuts, 3.0]
    generator = LoadGenerator(spec)
    parts = [generator.columns(START_TS, a, b) for a, b in itertools.pairwise(bounds)]
    joined = concat(parts)
    assert sum(map(len, parts)) == len(whole) == 23_757
    for name, column in joined.items():
        np.testing.assert_array_equal(column, getattr(whole, name), err_msg=name)


def test_a_later_start_shifts_the_timestamps_only() -> None:
    spec = LoadSpec(rate=1000.0, duration_s=2.0, incidents=(parse_incident("50%@1s"),))
    early, late = generate(spec, START_TS, 0, 2), generate(spec, START_TS + 3600, 0, 2)
    np.testing.assert_allclose(late.ts - early.ts, 3600, atol=1e-6)
    np.testing.assert_array_equal(late.bad, early.bad)
    np.testing.assert_array_equal(late.latency_ms, early.latency_ms)


def test_a_longer_run_starts_with_the_events_of_a_shorter_one() -> None:
    short = generate(LoadSpec(rate=3000.0, duration_s=2.0), START_TS, 0, 2)
    long = generate(LoadSpec(rate=3000.0, duration_s=10.0), START_TS, 0, 2)
    same_events(short, long)


def test_an_endless_run_yields_slices_until_asked_to_stop() -> None:
    spec = LoadSpec(rate=100.0, duration_s=math.inf)
    assert spec.total_events is None
    slices = LoadGenerator(spec).slices(START_TS, slice_events=BLOCK_EVENTS + 1)
    firsts = [next(slices).first_index for _ in range(3)]
    assert firsts == [0, BLOCK_EVENTS + 1, 2 * BLOCK_EVENTS + 2]


def test_slices_outside_the_run_are_empty() -> None:
    spec = LoadSpec(rate=100.0, duration_s=1.0)
    assert len(generate(spec, START_TS, 1, 2)) == 0
    assert len(generate(spec, START_TS, -5, 0)) == 0
    assert len(generate(spec, START_TS, 0.5, 0.5)) == 0


# --- error ratios, incidents, statuses, latency -----------------------------------------


def test_error_ratio_follows_the_baseline_outside_incidents_and_the_incident_inside() -> None:
    spec = LoadSpec(
        rate=2000.0,
        duration_s=600.0,
        error_ratio=0.001,
        incidents=(parse_incident("20%@+60s:5m"),),
        seed=42,
    )
    cols = generate(spec, START_TS, 0, 600)
    offset_s = cols.ts - START_TS
    inside = (offset_s >= 60) & (offset_s < 360)
    outside_ratio = cols.bad[~inside].mean()
    inside_ratio = cols.bad[inside].mean()
    low, high = binomial_bounds(int((~inside).sum()), 0.001)
    assert low <= outside_ratio <= high
    low, high = binomial_bounds(int(inside.sum()), 0.2)
    assert low <= inside_ratio <= high


def test_a_scoped_incident_leaves_the_other_services_at_the_baseline() -> None:
    spec = LoadSpec(
        rate=3000.0,
        duration_s=120.0,
        services=("checkout", "search", "cart"),
        error_ratio=0.01,
        incidents=(parse_incident("checkout:50%@30s:60s"),),
        seed=3,
    )
    cols = generate(spec, START_TS, 0, 120)
    offset_s = cols.ts - START_TS
    window = (offset_s >= 30) & (offset_s < 90)
    checkout = cols.service == spec.services.index("checkout")
    for mask, p in [(window & checkout, 0.5), (window & ~checkout, 0.01), (~window, 0.01)]:
        low, high = binomial_bounds(int(mask.sum()), p)
        assert low <= cols.bad[mask].mean() <= high


def test_an_incident_changes_only_the_events_inside_its_window() -> None:
    base = LoadSpec(rate=1000.0, duration_s=60.0, error_ratio=0.01, seed=9)
    hit = msgspec.structs.replace(base, incidents=(parse_incident("svc-2:40%@10s:20s"),))
    a, b = generate(base, START_TS, 0, 60), generate(hit, START_TS, 0, 60)
    offset_s = a.ts - START_TS
    affected = (offset_s >= 10) & (offset_s < 30) & (a.service == 2)
    np.testing.assert_array_equal(a.bad[~affected], b.bad[~affected])
    np.testing.assert_array_equal(a.status[~affected], b.status[~affected])
    assert (b.bad[affected] >= a.bad[affected]).all()  # the same requests fail, and more
    np.testing.assert_array_equal(a.latency_ms, b.latency_ms)


def test_overlapping_incidents_take_the_worst_error_ratio() -> None:
    spec = LoadSpec(
        rate=5000.0,
        duration_s=20.0,
        error_ratio=0.0,
        incidents=(parse_incident("10%@0s:20s"), parse_incident("svc-0:60%@0s:20s")),
        seed=5,
    )
    cols = generate(spec, START_TS, 0, 20)
    svc0 = cols.service == 0
    low, high = binomial_bounds(int(svc0.sum()), 0.6)
    assert low <= cols.bad[svc0].mean() <= high
    low, high = binomial_bounds(int((~svc0).sum()), 0.1)
    assert low <= cols.bad[~svc0].mean() <= high


@pytest.mark.parametrize("statuses", ["http", "grpc"])
def test_the_engine_taxonomy_judges_exactly_the_events_flagged_bad(statuses: str) -> None:
    spec = LoadSpec(rate=2000.0, duration_s=30.0, error_ratio=0.3, statuses=statuses)  # type: ignore[arg-type]
    cols = generate(spec, START_TS, 0, 30)
    verdicts = np.array([classify(cols.statuses[i], None) for i in cols.status.tolist()])
    assert not (verdicts == Outcome.UNKNOWN).any()
    np.testing.assert_array_equal(verdicts == Outcome.BAD, cols.bad)
    # Good traffic includes client errors, which the server's SLO must not count.
    good_statuses = {cols.statuses[i] for i in cols.status[~cols.bad].tolist()}
    assert good_statuses & {404, 400, "NOT_FOUND", "INVALID_ARGUMENT"}


def test_latency_has_the_median_and_p99_asked_for() -> None:
    spec = LoadSpec(rate=5000.0, duration_s=60.0, latency_median_ms=40.0, latency_p99_ms=250.0)
    latency = generate(spec, START_TS, 0, 60).latency_ms
    assert np.median(latency) == pytest.approx(40.0, rel=0.02)
    assert np.quantile(latency, 0.99) == pytest.approx(250.0, rel=0.05)
    assert (latency > 0).all()


def test_a_latency_incident_moves_the_median_inside_its_window() -> None:
    spec = LoadSpec(
        rate=5000.0, duration_s=60.0, incidents=(parse_incident("latency=800ms@20s:20s"),)
    )
    cols = generate(spec, START_TS, 0, 60)
    offset_s = cols.ts - START_TS
    inside = (offset_s >= 20) & (offset_s < 40)
    assert np.median(cols.latency_ms[inside]) == pytest.approx(800.0, rel=0.03)
    assert np.median(cols.latency_ms[~inside]) == pytest.approx(40.0, rel=0.03)
    low, high = binomial_bounds(len(cols), 0.001)
    assert low <= cols.bad.mean() <= high  # a latency incident adds no errors


def test_operations_belong_to_their_service() -> None:
    spec = LoadSpec(rate=1000.0, duration_s=10.0, services=("checkout", "search"), statuses="grpc")
    cols = generate(spec, START_TS, 0, 10)
    for service, operation in zip(cols.service.tolist(), cols.operation.tolist(), strict=True):
        assert cols.operations[operation].startswith(f"{cols.services[service]}.")
    assert len(set(cols.operation.tolist())) == 2 * spec.operations_per_service


# --- counting and encoding ---------------------------------------------------------------


def test_the_tally_counts_events_and_bad_events_per_service() -> None:
    spec = LoadSpec(rate=1000.0, duration_s=30.0, error_ratio=0.05, count=3)
    cols = generate(spec, START_TS, 0, 30)
    tally = Tally(spec.services)
    tally.add(cols, records=7)
    for i, service in enumerate(spec.services):
        assert tally.events[service] == 3 * int((cols.service == i).sum())
        assert tally.bad[service] == 3 * int((cols.bad & (cols.service == i)).sum())
    assert tally.total_events == 3 * len(cols) == 90_000
    assert tally.event_objects == len(cols)
    assert tally.records == 7
    assert LoadGenerator(spec).tally().bad == tally.bad


@pytest.mark.parametrize("fmt", ["json", "msgpack"])
@pytest.mark.parametrize(
    "batch",
    [
        pytest.param(1, id="one event per record"),
        pytest.param(64, id="arrays of 64 events"),
        pytest.param(1000, id="arrays with a short last record"),
    ],
)
def test_records_decode_as_the_wire_format_to_the_events_generated(fmt: str, batch: int) -> None:
    spec = LoadSpec(rate=2500.0, duration_s=1.0, error_ratio=0.2, statuses="grpc")
    cols = generate(spec, START_TS, 0, 1)
    values = encode_records(cols, fmt, batch)  # type: ignore[arg-type]
    assert len(values) == math.ceil(len(cols) / batch)

    decoded = RecordDecoder(fmt).decode_batch(values)  # type: ignore[arg-type]
    assert decoded.rejected == []
    events = decoded.events
    assert len(events) == len(cols) == 2500
    assert [e.service for e in events] == [cols.services[i] for i in cols.service.tolist()]
    assert [e.operation for e in events] == [cols.operations[i] for i in cols.operation.tolist()]
    assert [e.status for e in events] == [cols.statuses[i] for i in cols.status.tolist()]
    assert [e.ts for e in events] == cols.ts.tolist()
    assert [e.latency_ms for e in events] == cols.latency_ms.tolist()
    assert {e.count for e in events} == {1}
    bad = [classify(e.status, e.ok) == Outcome.BAD for e in events]
    assert bad == cols.bad.tolist()


def test_a_single_event_record_is_one_json_object_without_a_default_count() -> None:
    cols = generate(LoadSpec(rate=1.0, duration_s=1.0), START_TS, 0, 1)
    (value,) = encode_records(cols)
    obj = msgspec.json.decode(value)
    assert isinstance(obj, dict)
    assert set(obj) == {"service", "ts", "operation", "status", "latency_ms"}
    assert obj["ts"] == START_TS


def test_the_count_field_is_sent_when_events_stand_for_several_requests() -> None:
    cols = generate(LoadSpec(rate=10.0, duration_s=1.0, count=5), START_TS, 0, 1)
    records = encode_records(cols, "json", batch=4)
    events = RecordDecoder("json").decode_batch(records).events
    assert [e.count for e in events] == [5] * 10


@pytest.mark.parametrize(
    ("fmt", "batch", "message"),
    [
        pytest.param("xml", 1, "json or msgpack", id="an unknown format"),
        pytest.param("json", 0, "must be >= 1", id="an empty batch"),
    ],
)
def test_encode_records_rejects_bad_options(fmt: str, batch: int, message: str) -> None:
    cols = generate(LoadSpec(rate=1.0, duration_s=1.0), START_TS, 0, 1)
    with pytest.raises(ValueError, match=message):
        encode_records(cols, fmt, batch)  # type: ignore[arg-type]


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
