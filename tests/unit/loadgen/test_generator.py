"""The generator: reproducibility, error ratios, incidents, statuses, latency, tallies."""

from __future__ import annotations

import itertools
import math

import msgspec
import numpy as np
import pytest

from engine.core.taxonomy import Outcome, classify
from engine.loadgen.generator import (
    BLOCK_EVENTS,
    GeneratedEvents,
    LoadGenerator,
    Tally,
    generate,
)
from engine.loadgen.spec import LoadSpec, parse_incident

START_TS = 1_700_000_000.0


def same_events(a: GeneratedEvents, b: GeneratedEvents) -> None:
    assert a.first_index == b.first_index
    for name in ("ts", "service", "operation", "status", "bad", "latency_ms"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)


def concat(parts: list[GeneratedEvents]) -> dict[str, np.ndarray]:
    return {
        name: np.concatenate([getattr(p, name) for p in parts])
        for name in ("ts", "service", "operation", "status", "bad", "latency_ms")
    }


def binomial_bounds(n: int, p: float, sigmas: float = 5.0) -> tuple[float, float]:
    """Bounds on the observed ratio of n draws at p; 5 sigma keeps a fixed seed far from them."""
    spread = sigmas * math.sqrt(p * (1 - p) / n)
    return p - spread, p + spread


# --- time and reproducibility ------------------------------------------------------------


@pytest.mark.parametrize(
    ("rate_per_s", "duration_s", "expected"),
    [
        pytest.param(1000.0, 60.0, 60_000, id="a whole number of events per second"),
        pytest.param(10.0, 0.7, 7, id="float noise does not add an event at the end"),
        pytest.param(3.0, 1.0, 3, id="a rate that is no power of ten"),
        pytest.param(0.5, 5.0, 3, id="less than one event per second"),
    ],
)
def test_a_run_has_rate_times_duration_events(
    rate_per_s: float, duration_s: float, expected: int
) -> None:
    spec = LoadSpec(rate_per_s=rate_per_s, duration_s=duration_s)
    assert spec.total_events == expected
    assert len(generate(spec, START_TS, 0, duration_s)) == expected
    assert LoadGenerator(spec).tally().total_events == expected


def test_events_are_spread_evenly_from_the_start() -> None:
    cols = generate(LoadSpec(rate_per_s=4.0, duration_s=2.0), START_TS, 0, 2)
    assert cols.ts.tolist() == [START_TS + i / 4 for i in range(8)]


def test_the_same_seed_gives_the_same_events() -> None:
    spec = LoadSpec(rate_per_s=5000.0, duration_s=10.0, incidents=(parse_incident("20%@2s:3s"),))
    same_events(generate(spec, START_TS, 0, 10), generate(spec, START_TS, 0, 10))


def test_another_seed_gives_other_events() -> None:
    a = generate(LoadSpec(rate_per_s=5000.0, duration_s=2.0, seed=1), START_TS, 0, 2)
    b = generate(LoadSpec(rate_per_s=5000.0, duration_s=2.0, seed=2), START_TS, 0, 2)
    assert not np.array_equal(a.latency_ms, b.latency_ms)
    assert not np.array_equal(a.service, b.service)


def test_slices_of_any_size_give_the_events_of_the_whole_run() -> None:
    spec = LoadSpec(
        rate_per_s=7919.0, duration_s=3.0, incidents=(parse_incident("svc-1:30%@1s:1s"),)
    )
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
    spec = LoadSpec(rate_per_s=1000.0, duration_s=2.0, incidents=(parse_incident("50%@1s"),))
    early, late = generate(spec, START_TS, 0, 2), generate(spec, START_TS + 3600, 0, 2)
    np.testing.assert_allclose(late.ts - early.ts, 3600, atol=1e-6)
    np.testing.assert_array_equal(late.bad, early.bad)
    np.testing.assert_array_equal(late.latency_ms, early.latency_ms)


def test_a_longer_run_starts_with_the_events_of_a_shorter_one() -> None:
    short = generate(LoadSpec(rate_per_s=3000.0, duration_s=2.0), START_TS, 0, 2)
    long = generate(LoadSpec(rate_per_s=3000.0, duration_s=10.0), START_TS, 0, 2)
    same_events(short, long)


def test_an_endless_run_yields_slices_until_asked_to_stop() -> None:
    spec = LoadSpec(rate_per_s=100.0, duration_s=math.inf)
    assert spec.total_events is None
    slices = LoadGenerator(spec).slices(START_TS, slice_events=BLOCK_EVENTS + 1)
    firsts = [next(slices).first_index for _ in range(3)]
    assert firsts == [0, BLOCK_EVENTS + 1, 2 * BLOCK_EVENTS + 2]


def test_slices_outside_the_run_are_empty() -> None:
    spec = LoadSpec(rate_per_s=100.0, duration_s=1.0)
    assert len(generate(spec, START_TS, 1, 2)) == 0
    assert len(generate(spec, START_TS, -5, 0)) == 0
    assert len(generate(spec, START_TS, 0.5, 0.5)) == 0


# --- error ratios, incidents, statuses, latency -----------------------------------------


def test_error_ratio_follows_the_baseline_outside_incidents_and_the_incident_inside() -> None:
    spec = LoadSpec(
        rate_per_s=2000.0,
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
        rate_per_s=3000.0,
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
    base = LoadSpec(rate_per_s=1000.0, duration_s=60.0, error_ratio=0.01, seed=9)
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
        rate_per_s=5000.0,
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
    spec = LoadSpec(rate_per_s=2000.0, duration_s=30.0, error_ratio=0.3, statuses=statuses)  # type: ignore[arg-type]
    cols = generate(spec, START_TS, 0, 30)
    verdicts = np.array([classify(cols.statuses[i], None) for i in cols.status.tolist()])
    assert not (verdicts == Outcome.UNKNOWN).any()
    np.testing.assert_array_equal(verdicts == Outcome.BAD, cols.bad)
    # Good traffic includes client errors, which the server's SLO must not count.
    good_statuses = {cols.statuses[i] for i in cols.status[~cols.bad].tolist()}
    assert good_statuses & {404, 400, "NOT_FOUND", "INVALID_ARGUMENT"}


def test_latency_has_the_median_and_p99_asked_for() -> None:
    spec = LoadSpec(
        rate_per_s=5000.0, duration_s=60.0, latency_median_ms=40.0, latency_p99_ms=250.0
    )
    latency = generate(spec, START_TS, 0, 60).latency_ms
    assert np.median(latency) == pytest.approx(40.0, rel=0.02)
    assert np.quantile(latency, 0.99) == pytest.approx(250.0, rel=0.05)
    assert (latency > 0).all()


def test_a_latency_incident_moves_the_median_inside_its_window() -> None:
    spec = LoadSpec(
        rate_per_s=5000.0, duration_s=60.0, incidents=(parse_incident("latency=800ms@20s:20s"),)
    )
    cols = generate(spec, START_TS, 0, 60)
    offset_s = cols.ts - START_TS
    inside = (offset_s >= 20) & (offset_s < 40)
    assert np.median(cols.latency_ms[inside]) == pytest.approx(800.0, rel=0.03)
    assert np.median(cols.latency_ms[~inside]) == pytest.approx(40.0, rel=0.03)
    low, high = binomial_bounds(len(cols), 0.001)
    assert low <= cols.bad.mean() <= high  # a latency incident adds no errors


def test_operations_belong_to_their_service() -> None:
    spec = LoadSpec(
        rate_per_s=1000.0, duration_s=10.0, services=("checkout", "search"), statuses="grpc"
    )
    cols = generate(spec, START_TS, 0, 10)
    for service, operation in zip(cols.service.tolist(), cols.operation.tolist(), strict=True):
        assert cols.operations[operation].startswith(f"{cols.services[service]}.")
    assert len(set(cols.operation.tolist())) == 2 * spec.operations_per_service


# --- counting ----------------------------------------------------------------------------


def test_the_tally_counts_events_and_bad_events_per_service() -> None:
    spec = LoadSpec(rate_per_s=1000.0, duration_s=30.0, error_ratio=0.05, count=3)
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


# --- labels ----------------------------------------------------------------------------


LABELS = (("region", ("eu", "us", "ap")), ("tier", ("gold", "free")))


def test_labels_are_drawn_evenly_and_change_nothing_else() -> None:
    plain = LoadSpec(rate_per_s=3000.0, duration_s=10.0, error_ratio=0.1, seed=3)
    labelled = msgspec.structs.replace(plain, labels=LABELS)
    a, b = generate(plain, START_TS, 0, 10), generate(labelled, START_TS, 0, 10)
    same_events(a, b)
    assert a.labels == ()
    assert [(key, values) for key, values, _ in b.labels] == list(LABELS)
    for (_, values, index), p in zip(b.labels, (1 / 3, 1 / 2), strict=True):
        assert index.shape == (30_000,)
        for k in range(len(values)):
            low, high = binomial_bounds(30_000, p)
            assert low < float(np.mean(index == k)) < high
    # the two labels are drawn apart, not one from the other
    region, tier = b.labels[0][2], b.labels[1][2]
    assert len({(int(r), int(t)) for r, t in zip(region, tier, strict=True)}) == 6


def test_labels_are_the_same_in_slices_of_any_size_and_follow_the_seed() -> None:
    spec = LoadSpec(rate_per_s=1000.0, duration_s=2 * BLOCK_EVENTS / 1000.0 + 1, labels=LABELS)
    gen = LoadGenerator(spec)
    whole = gen.columns_for(START_TS, 0, spec.total_events or 0)
    parts = list(LoadGenerator(spec).slices(START_TS, slice_events=777))
    for k in range(len(LABELS)):
        np.testing.assert_array_equal(
            np.concatenate([p.labels[k][2] for p in parts]), whole.labels[k][2]
        )
    other = generate(msgspec.structs.replace(spec, seed=1), START_TS, 0, 1)
    assert not np.array_equal(other.labels[0][2], whole.labels[0][2][: len(other)])
