"""Which SLOs an event counts for, and whether it is bad for each (columns and pairs)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.core.config import Slo
from engine.core.decode import Event
from engine.core.matching import Classifier
from engine.core.taxonomy import (
    DEFAULT_OPTIONS,
    Outcome,
    SliKind,
    TaxonomyOptions,
    classify,
    latency_is_bad,
)

AVAIL, LAT = SliKind.AVAILABILITY, SliKind.LATENCY


def _slo(name: str, service: str, sli: SliKind = AVAIL, **kw: Any) -> Slo:
    if sli is LAT:
        kw.setdefault("threshold_ms", 300.0)
    return Slo(name=name, service=service, sli=sli, objective=99.0, **kw)


SLOS = [
    _slo("checkout-availability", "checkout"),
    _slo("checkout-latency", "checkout", LAT),
    _slo("orders-availability", "checkout", operation="POST /orders"),
    _slo("products-availability", "catalog", operation="GET /products/*"),
    _slo("ledger-latency-lenient", "ledger", LAT, threshold_ms=100.0, failed_counts_bad=False),
    _slo("ledger-latency", "ledger", LAT, threshold_ms=100.0),
]


def _pairs(
    events: list[Event], slos: list[Slo] = SLOS, options: TaxonomyOptions = DEFAULT_OPTIONS
) -> list[tuple[int, str, int, int]]:
    """(event index, SLO name, total, bad) for every pair that counts, in pair order."""
    clf = Classifier(slos, options)
    p = clf.pairs(clf.columns(events))
    names = [s.name for s in slos]
    return [
        (int(e), names[int(s)], int(t), int(b))
        for e, s, t, b in zip(p.event, p.slo, p.total, p.bad, strict=True)
    ]


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        pytest.param(
            Event(service="checkout", status=200, latency_ms=50),
            [("checkout-availability", 1, 0), ("checkout-latency", 1, 0)],
            id="a good fast request counts for the service's availability and latency SLOs",
        ),
        pytest.param(
            Event(service="checkout", status=503, latency_ms=50),
            [("checkout-availability", 1, 1), ("checkout-latency", 1, 1)],
            id="a failed request is bad for availability and, by default, for latency",
        ),
        pytest.param(
            Event(service="checkout", status=200, latency_ms=301),
            [("checkout-availability", 1, 0), ("checkout-latency", 1, 1)],
            id="a slow success is good for availability and bad for latency",
        ),
        pytest.param(
            Event(service="checkout", status=200, latency_ms=300),
            [("checkout-availability", 1, 0), ("checkout-latency", 1, 0)],
            id="a latency equal to the threshold is good",
        ),
        pytest.param(
            Event(service="checkout", status=404, latency_ms=20),
            [("checkout-availability", 1, 0), ("checkout-latency", 1, 0)],
            id="a client error is good for both",
        ),
        pytest.param(
            Event(service="checkout", status=500),
            [("checkout-availability", 1, 1)],
            id="an event without latency does not count for a latency SLO",
        ),
        pytest.param(
            Event(service="checkout", operation="POST /orders", status=500, latency_ms=10),
            [
                ("checkout-availability", 1, 1),
                ("checkout-latency", 1, 1),
                ("orders-availability", 1, 1),
            ],
            id="an exact operation adds the operation's SLO to the service-wide ones",
        ),
        pytest.param(
            Event(service="checkout", operation="POST /orders/1", status=200),
            [("checkout-availability", 1, 0)],
            id="an exact operation does not match a longer one",
        ),
        pytest.param(
            Event(service="catalog", operation="GET /products/238", status=502),
            [("products-availability", 1, 1)],
            id="a glob operation selects matching operations",
        ),
        pytest.param(
            Event(service="catalog", operation="GET /categories/1", status=502),
            [],
            id="a glob operation ignores operations outside it",
        ),
        pytest.param(
            Event(service="catalog", status=502),
            [],
            id="an event without operation does not match an operation SLO",
        ),
        pytest.param(
            Event(service="search", status=500, latency_ms=10),
            [],
            id="an unknown service gives no pairs",
        ),
        pytest.param(
            Event(service="Checkout", status=500),
            [],
            id="service names are case sensitive",
        ),
        pytest.param(
            Event(service="ledger", status="INTERNAL", latency_ms=50),
            [("ledger-latency-lenient", 1, 0), ("ledger-latency", 1, 1)],
            id="a fast failure is good for latency only when failed_counts_bad is false",
        ),
        pytest.param(
            Event(service="ledger", status="INTERNAL", latency_ms=150),
            [("ledger-latency-lenient", 1, 1), ("ledger-latency", 1, 1)],
            id="a slow failure is bad for latency either way",
        ),
        pytest.param(
            Event(service="ledger", ok=False, latency_ms=5),
            [("ledger-latency-lenient", 1, 0), ("ledger-latency", 1, 1)],
            id="ok false is a failure for failed_counts_bad",
        ),
        pytest.param(
            Event(service="checkout", status=500, ok=True, latency_ms=5),
            [("checkout-availability", 1, 0), ("checkout-latency", 1, 0)],
            id="ok true overrides a failing status",
        ),
        pytest.param(
            Event(service="checkout", status="teapot", latency_ms=5),
            [("checkout-availability", 1, 0), ("checkout-latency", 1, 0)],
            id="an unknown status counts as good",
        ),
        pytest.param(
            Event(service="checkout", status=503, latency_ms=900, count=250),
            [("checkout-availability", 250, 250), ("checkout-latency", 250, 250)],
            id="count weights both total and bad",
        ),
        pytest.param(
            Event(service="checkout", status=200, latency_ms=10, count=40),
            [("checkout-availability", 40, 0), ("checkout-latency", 40, 0)],
            id="count weights the total of good events",
        ),
    ],
)
def test_one_event_against_the_slos(event: Event, expected: list[tuple[str, int, int]]) -> None:
    assert _pairs([event]) == [(0, name, total, bad) for name, total, bad in expected]


def test_pairs_of_a_batch_are_in_event_order() -> None:
    events = [
        Event(service="catalog", operation="GET /products/1", status=200),
        Event(service="nobody", status=500),
        Event(service="checkout", status=500, latency_ms=400),
        Event(service="catalog", operation="GET /products/2", status=500, count=3),
        Event(service="checkout", status=200),
    ]
    assert _pairs(events) == [
        (0, "products-availability", 1, 0),
        (2, "checkout-availability", 1, 1),
        (2, "checkout-latency", 1, 1),
        (3, "products-availability", 3, 3),
        (4, "checkout-availability", 1, 0),
    ]


def test_slo_count_says_how_many_slos_select_each_event() -> None:
    clf = Classifier(SLOS, DEFAULT_OPTIONS)
    cols = clf.columns(
        [
            Event(service="checkout", operation="POST /orders"),
            Event(service="search"),
            Event(service="catalog", operation="GET /products/9"),
        ]
    )
    assert clf.slo_count(cols).tolist() == [3, 0, 1]


@pytest.mark.parametrize(
    ("options", "bad"),
    [
        pytest.param(DEFAULT_OPTIONS, 0, id="http 429 is good by default"),
        pytest.param(
            TaxonomyOptions(http_429_is_error=True), 1, id="http 429 is bad when configured"
        ),
    ],
)
def test_taxonomy_options_reach_the_pairs(options: TaxonomyOptions, bad: int) -> None:
    assert _pairs([Event(service="checkout", status=429)], SLOS[:1], options) == [
        (0, "checkout-availability", 1, bad)
    ]


def test_unknown_statuses_are_reported_apart() -> None:
    clf = Classifier(SLOS, DEFAULT_OPTIONS)
    cols = clf.columns(
        [Event(service="checkout", status="teapot"), Event(service="checkout", status=200)]
    )
    assert clf.unknown_status(cols).tolist() == [True, False]


# --- columns -----------------------------------------------------------------------------


def test_columns_mark_absent_values_with_nan() -> None:
    clf = Classifier(SLOS, DEFAULT_OPTIONS)
    cols = clf.columns([Event(service="a", ts=10.5, latency_ms=3.0, count=2), Event(service="a")])
    assert len(cols) == 2
    np.testing.assert_array_equal(cols.ts_s, [10.5, np.nan])
    np.testing.assert_array_equal(cols.latency_ms, [3.0, np.nan])
    assert cols.count.tolist() == [2, 1]
    assert cols.record.tolist() == [0, 1]
    assert cols.key_id[0] == cols.key_id[1]


def test_columns_read_explicit_nulls_as_absent_too() -> None:
    clf = Classifier(SLOS, DEFAULT_OPTIONS)
    cols = clf.columns([Event(service="a", ts=None, latency_ms=None), Event(service="a", ts=2.0)])
    np.testing.assert_array_equal(cols.ts_s, [np.nan, 2.0])
    np.testing.assert_array_equal(cols.latency_ms, [np.nan, np.nan])


def test_missing_ts_falls_back_to_the_record_timestamp() -> None:
    clf = Classifier(SLOS, DEFAULT_OPTIONS)
    events = [
        Event(service="checkout", ts=100.0),
        Event(service="checkout"),
        Event(service="checkout"),
        Event(service="checkout", ts=105.0),
    ]
    cols = clf.columns(events, record_index=[0, 0, 1, 1], record_ts_s=np.array([200.0, 300.0]))
    assert cols.ts_s.tolist() == [100.0, 200.0, 300.0, 105.0]
    assert cols.record.tolist() == [0, 0, 1, 1]


def test_without_record_timestamps_a_missing_ts_stays_missing() -> None:
    clf = Classifier(SLOS, DEFAULT_OPTIONS)
    cols = clf.columns([Event(service="checkout")], record_index=[4])
    assert np.isnan(cols.ts_s[0])
    assert cols.record.tolist() == [4]


def test_take_selects_rows_of_every_column() -> None:
    clf = Classifier(SLOS, DEFAULT_OPTIONS)
    cols = clf.columns([Event(service="a", ts=float(i), count=i + 1) for i in range(4)])
    part = cols.take(np.array([1, 3]))
    assert part.ts_s.tolist() == [1.0, 3.0]
    assert part.count.tolist() == [2, 4]
    assert part.record.tolist() == [1, 3]


def test_an_empty_batch_has_no_pairs() -> None:
    clf = Classifier(SLOS, DEFAULT_OPTIONS)
    cols = clf.columns([])
    assert len(cols) == 0
    assert len(clf.pairs(cols).event) == 0


def test_the_key_cache_gives_the_same_answer_on_later_batches() -> None:
    clf = Classifier(SLOS, DEFAULT_OPTIONS)
    first = [Event(service="checkout", status=500, latency_ms=1)]
    second = [Event(service="ledger", status=200, latency_ms=500), *first]
    clf.pairs(clf.columns(first))
    p = clf.pairs(clf.columns(second))
    assert p.event.tolist() == [0, 0, 1, 1]
    assert p.bad.tolist() == [1, 1, 1, 1]


# --- the vectorised pairs agree with the scalar taxonomy ---------------------------------

_services = st.sampled_from(["checkout", "catalog", "ledger", "search"])
_operations = st.one_of(
    st.none(), st.sampled_from(["POST /orders", "GET /products/1", "GET /x", "ledger.Post"])
)
_statuses = st.one_of(
    st.none(),
    st.sampled_from([200, 404, 429, 500, 503, 0, 2, 8, 14, "OK", "error", "teapot", "503"]),
)
_events = st.builds(
    Event,
    service=_services,
    operation=_operations,
    status=_statuses,
    ok=st.one_of(st.none(), st.booleans()),
    latency_ms=st.one_of(st.none(), st.floats(0, 1000)),
    count=st.integers(1, 1000),
)
_slo_specs = st.builds(
    lambda service, operation, latency, threshold, failed_bad: (
        service,
        operation,
        LAT if latency else AVAIL,
        threshold if latency else None,
        failed_bad,
    ),
    _services,
    st.one_of(st.none(), st.sampled_from(["POST /orders", "GET /products/*", "GET /?"])),
    st.booleans(),
    st.floats(1, 999),
    st.booleans(),
)


def _reference(
    events: list[Event], slos: list[Slo], options: TaxonomyOptions
) -> list[tuple[int, str, int, int]]:
    out = []
    for i, e in enumerate(events):
        outcome = classify(e.status, e.ok, options)
        for slo in slos:
            if slo.service != e.service or not slo.matches_operation(e.operation):
                continue
            if slo.sli is LAT:
                assert slo.threshold_ms is not None
                verdict = latency_is_bad(
                    e.latency_ms, slo.threshold_ms, outcome, slo.failed_counts_bad
                )
                if verdict is None:
                    continue
                bad = verdict
            else:
                bad = outcome is Outcome.BAD
            out.append((i, slo.name, e.count, e.count * int(bad)))
    return out


@settings(deadline=None)
@given(
    st.lists(_slo_specs, min_size=1, max_size=6),
    st.lists(st.lists(_events, max_size=12), min_size=1, max_size=3),
    st.booleans(),
)
def test_pairs_match_the_scalar_taxonomy(
    specs: list[tuple[str, str | None, SliKind, float | None, bool]],
    batches: list[list[Event]],
    strict_429: bool,
) -> None:
    slos = [
        Slo(
            name=f"slo-{i}",
            service=service,
            operation=operation,
            sli=sli,
            threshold_ms=threshold,
            failed_counts_bad=failed_bad,
            objective=99.0,
        )
        for i, (service, operation, sli, threshold, failed_bad) in enumerate(specs)
    ]
    options = TaxonomyOptions(http_429_is_error=strict_429)
    clf = Classifier(slos, options)
    names = [s.name for s in slos]
    for events in batches:  # one classifier over several batches: the key cache must hold
        p = clf.pairs(clf.columns(events))
        got = [
            (int(e), names[int(s)], int(t), int(b))
            for e, s, t, b in zip(p.event, p.slo, p.total, p.bad, strict=True)
        ]
        assert got == _reference(events, slos, options)


def test_the_key_cache_reset_keeps_answers_right(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("engine.core.matching.MAX_KEYS", 2)
    clf = Classifier(SLOS, DEFAULT_OPTIONS)
    names = [s.name for s in SLOS]
    for start in (200, 500, 200):
        events = [
            Event(service="checkout", status=start + k, latency_ms=float(k)) for k in range(5)
        ]
        p = clf.pairs(clf.columns(events))
        got = [
            (int(e), names[int(s)], int(t), int(b))
            for e, s, t, b in zip(p.event, p.slo, p.total, p.bad, strict=True)
        ]
        assert got == _reference(events, SLOS, DEFAULT_OPTIONS)
