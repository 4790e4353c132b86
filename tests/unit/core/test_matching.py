"""Which SLOs an event counts for, and whether it is bad for each (columns and pairs)."""

from __future__ import annotations

import sys
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.core import matching
from engine.core.config import Slo
from engine.core.decode import MAX_OPERATION_LEN, MAX_SERVICE_LEN, MAX_STATUS_LEN, Event
from engine.core.matching import Classifier, Key, key_cost
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


@settings(deadline=None)
@given(
    st.lists(_events, min_size=1, max_size=8),
    st.lists(st.lists(st.one_of(st.integers(0, 7), _events), max_size=12), min_size=1, max_size=6),
)
def test_key_ids_number_keys_in_order_of_first_sight(
    pool: list[Event], batches: list[list[int | Event]]
) -> None:
    """Key ids are read in one chain of lookups, new keys made as the chain reaches
    them: an event's id is its key's number in the order keys were first seen (a naive
    dict over every event so far). Batches draw mostly from a small pool of events, so
    later ones are often all known, and sometimes mix known and new keys."""
    clf = Classifier(SLOS, DEFAULT_OPTIONS)
    first_seen: dict[Key, int] = {}
    for drawn in batches:
        events = [pool[d % len(pool)] if isinstance(d, int) else d for d in drawn]
        expected = [first_seen.setdefault(_key(e), len(first_seen)) for e in events]
        assert clf.columns(events).key_id.tolist() == expected


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


# --- the key cache is bounded in bytes as well as in keys --------------------------------

WIDE = "\U0001f600"


def _key(e: Event) -> Key:
    return (e.service, e.operation, e.status, e.ok)


def test_key_cost_counts_what_the_strings_take() -> None:
    narrow = ("checkout", "o" * 200, "w" * 60, None)
    wide = ("checkout", WIDE * 200, "w" * 60, None)
    assert key_cost(narrow, 0) >= sum(sys.getsizeof(x) for x in narrow[:3])
    assert key_cost(wide, 0) - key_cost(narrow, 0) >= 3 * 200  # four bytes a character
    assert key_cost(narrow, 100) - key_cost(narrow, 0) >= 100 * 8  # a list slot per SLO
    assert key_cost(("a", None, None, None), 0) < key_cost(("a", None, 200, True), 0)


def test_hostile_keys_of_the_largest_size_stay_within_the_byte_budget() -> None:
    """50,000 distinct keys as large as the decoder lets through (wide characters): the
    cache resets when over MAX_KEY_BYTES, so it holds at most that plus one batch."""
    clf = Classifier(SLOS, DEFAULT_OPTIONS)
    service = "checkout" + "s" * (MAX_SERVICE_LEN - 8)
    status = "x" * MAX_STATUS_LEN
    most = 0
    for batch in range(50):
        events = [
            Event(
                service=service,
                operation=f"{batch:03d}{k:04d}" + WIDE * (MAX_OPERATION_LEN - 7),
                status=status,
            )
            for k in range(1000)
        ]
        before = clf.key_bytes
        clf.pairs(clf.columns(events))
        batch_bytes = sum(key_cost(_key(e), 0) for e in events)
        assert clf.key_bytes <= matching.MAX_KEY_BYTES + batch_bytes
        assert clf.key_bytes in (before + batch_bytes, batch_bytes)  # grown, or reset first
        most = max(most, clf.key_bytes)
    assert most > matching.MAX_KEY_BYTES  # the budget was reached, and the cache reset
    assert clf.key_count < 50_000


_hostile_text = st.builds(
    lambda ch, n, tag: (ch * n)[: max(n - len(tag), 0)] + tag,
    st.sampled_from(["a", "\u00e9", WIDE]),
    st.integers(0, MAX_OPERATION_LEN),
    st.text(alphabet="0123456789", min_size=1, max_size=4),
)
_hostile_events = st.builds(
    Event,
    service=st.sampled_from(["checkout", "catalog", "ledger"]),
    operation=st.one_of(st.none(), _hostile_text, _operations),
    status=st.one_of(_statuses, _hostile_text.map(lambda t: t[:MAX_STATUS_LEN])),
    ok=st.one_of(st.none(), st.booleans()),
    latency_ms=st.one_of(st.none(), st.floats(0, 1000)),
    count=st.integers(1, 1000),
)


@settings(deadline=None, max_examples=100)
@given(
    batches=st.lists(st.lists(_hostile_events, max_size=10), min_size=1, max_size=12),
    budget=st.integers(0, 20_000),
    max_keys=st.integers(0, 30),
)
def test_the_key_cache_accounting_follows_a_naive_model(
    batches: list[list[Event]], budget: int, max_keys: int
) -> None:
    """The cache against a model (a dict of key -> cost, emptied before a batch when
    over either bound): same keys, same bytes, within budget plus one batch's keys, and
    the pairs stay right through every reset."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(matching, "MAX_KEY_BYTES", budget)
        mp.setattr(matching, "MAX_KEYS", max_keys)
        clf = Classifier(SLOS, DEFAULT_OPTIONS)
        model: dict[Key, int] = {}
        names = [s.name for s in SLOS]
        for events in batches:
            if len(model) > max_keys or sum(model.values()) > budget:
                model.clear()
            new: dict[Key, int] = {}
            for e in events:
                k = _key(e)
                if k not in model and k not in new:
                    n_slos = sum(
                        1
                        for s in SLOS
                        if s.service == e.service and s.matches_operation(e.operation)
                    )
                    new[k] = key_cost(k, n_slos)
            model.update(new)
            p = clf.pairs(clf.columns(events))
            assert clf.key_count == len(model)
            assert clf.key_bytes == sum(model.values())
            assert clf.key_bytes <= budget + sum(new.values())
            got = [
                (int(e), names[int(s)], int(t), int(b))
                for e, s, t, b in zip(p.event, p.slo, p.total, p.bad, strict=True)
            ]
            assert got == _reference(events, SLOS, DEFAULT_OPTIONS)


# --- match_labels -----------------------------------------------------------------------

LABEL_SLOS = [
    _slo("eu", "checkout", match_labels={"region": "eu"}),
    _slo("eu-gold", "checkout", LAT, match_labels={"region": "eu", "tier": "gold"}),
    _slo("all", "checkout"),
    _slo("us-orders", "checkout", operation="POST /orders", match_labels={"region": "us"}),
]


def test_match_labels_select_events_that_carry_every_label() -> None:
    events = [
        Event(service="checkout", latency_ms=10.0),
        Event(service="checkout", latency_ms=10.0, labels={"region": "eu"}),
        Event(service="checkout", latency_ms=10.0, labels={"region": "eu", "tier": "gold"}),
        Event(service="checkout", operation="POST /orders", labels={"region": "us", "x": "y"}),
        Event(service="checkout", labels={"other": "eu"}),
    ]
    got = [(e, name) for e, name, _, _ in _pairs(events, LABEL_SLOS)]
    assert got == [
        (0, "all"),
        (1, "eu"),
        (1, "all"),
        (2, "eu"),
        (2, "eu-gold"),
        (2, "all"),
        (3, "all"),
        (3, "us-orders"),
        (4, "all"),
    ]


def test_without_label_selectors_labels_are_not_part_of_the_key() -> None:
    clf = Classifier(SLOS, DEFAULT_OPTIONS)
    assert clf.label_names == ()
    clf.columns([Event(service="checkout", labels={"region": str(i)}) for i in range(50)])
    assert clf.key_count == 1


def test_labels_the_slos_do_not_use_do_not_grow_the_cache() -> None:
    clf = Classifier(LABEL_SLOS, DEFAULT_OPTIONS)
    assert clf.label_names == ("region", "tier")
    clf.columns([Event(service="checkout", labels={"pod": str(i)}) for i in range(50)])
    assert clf.key_count == 1


def test_key_cost_counts_the_label_values() -> None:
    plain: Key = ("a", None, None, None)
    labelled: Key = ("a", None, None, None, ("x" * 100, None))
    assert key_cost(labelled, 0) - key_cost(plain, 0) >= 100 + sys.getsizeof(())


_label_values = st.one_of(st.none(), st.sampled_from(["eu", "us", "gold", ""]))


@settings(deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["checkout", "catalog"]),
            st.sampled_from([None, "POST /orders", "GET /x"]),
            st.dictionaries(st.sampled_from(["region", "tier", "pod"]), _label_values),
            st.booleans(),
        ),
        max_size=30,
    ),
    st.integers(1, 3),
)
def test_label_selection_follows_a_naive_reference(
    rows: list[tuple[str, str | None, dict[str, str | None], bool]], splits: int
) -> None:
    events = [
        Event(
            service=svc,
            operation=op,
            latency_ms=5.0,
            labels={k: v for k, v in labels.items() if v is not None} or None,
            ok=ok,
        )
        for svc, op, labels, ok in rows
    ]
    clf = Classifier(LABEL_SLOS, DEFAULT_OPTIONS)
    got: list[tuple[int, int]] = []
    size = max(1, len(events) // splits)
    for start in range(0, len(events), size):  # the cache carries over between batches
        part = events[start : start + size]
        p = clf.pairs(clf.columns(part))
        got += [(start + int(e), int(s)) for e, s in zip(p.event, p.slo, strict=True)]
    expected = [
        (i, j)
        for i, e in enumerate(events)
        for j, slo in enumerate(LABEL_SLOS)
        if e.service == slo.service
        and slo.matches_operation(e.operation)
        and all((e.labels or {}).get(k) == v for k, v in slo.match_labels.items())
    ]
    assert got == expected
