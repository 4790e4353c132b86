"""Changes: request checks, the log (cap, duplicates, state), and the budget attributed
to each change against a naive count of the events after it."""

from __future__ import annotations

import math

import hypothesis
import msgspec
import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from engine.core import budget
from engine.core.changes import (
    MAX_KIND_LABELS,
    ChangeLog,
    ChangeRequest,
    parse_change,
)
from engine.core.config import Config, parse_config
from engine.core.decode import Event
from engine.core.evaluator import Evaluator, Transition
from engine.errors import ConfigError
from tests.unit.core.reference import NaiveEvaluator, stamped
from tests.unit.core.test_evaluator import BASE, event

T0 = 1_700_000_000.0


def config(extra: str = "changes: {attribution_window: 5m, max_kept: 20}\n") -> Config:
    return parse_config(BASE + "evaluation: {tick: 10s, allowed_lateness: 30s}\n" + extra)


def parse(body: object, **kw: float) -> ChangeRequest:
    args = {"wall_s": T0, "event_time_s": T0 - 100, "future_s": 600.0, **kw}
    return parse_change(msgspec.json.encode(body), ["api", "db"], **args)


def errors_of(body: object | bytes, **kw: float) -> list[str]:
    data = body if isinstance(body, bytes) else msgspec.json.encode(body)
    args = {"wall_s": T0, "event_time_s": T0 - 100, "future_s": 600.0, **kw}
    with pytest.raises(ConfigError) as exc:
        parse_change(data, ["api", "db"], **args)
    return exc.value.errors


def request(service: str = "api", kind: str = "deploy", **kw: object) -> ChangeRequest:
    return ChangeRequest(service=service, kind=kind, **kw)  # type: ignore[arg-type]


# -- requests ---------------------------------------------------------------------


def test_a_full_request_is_read_as_given() -> None:
    req = parse(
        {
            "service": "api",
            "kind": "deploy",
            "version": "4.2.1",
            "at": T0 - 60,
            "description": "canary",
            "url": "https://ci.example/1",
        }
    )
    assert (req.service, req.kind, req.version, req.at) == ("api", "deploy", "4.2.1", T0 - 60)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"kind": "deploy"}, "$: Object missing required field `service`"),
        ({"service": "api"}, "$: Object missing required field `kind`"),
        ({"service": 3, "kind": "deploy"}, "$.service: Expected `str`"),
        ({"service": "api", "kind": "Deploy!"}, "$.kind: Expected `str` matching regex"),
        ({"service": "api", "kind": "deploy", "at": -1}, "$.at: Expected `float` >= 0"),
        ({"service": "api", "kind": "deploy", "at": "now"}, "$.at: Expected `float | null`"),
        ({"service": "api", "kind": "deploy", "version": "v" * 129}, "$.version: Expected `str`"),
        ({"service": "api", "kind": "deploy", "x": 1}, "$: Object contains unknown field `x`"),
        ({"service": "nope", "kind": "deploy"}, "$.service: no SLO has service 'nope'"),
        ({"service": "api", "kind": "deploy", "url": "ftp://x"}, "$.url: must be an http"),
        ({"service": "api", "kind": "deploy", "at": T0 + 601}, "$.at: 1700000601 is more"),
        ([1], "$: Expected `object`"),
    ],
)
def test_a_bad_request_names_the_field(body: object, message: str) -> None:
    errors = errors_of(body)
    assert errors[0].startswith(message), errors


def test_invalid_json_is_an_error_at_the_root() -> None:
    assert errors_of(b"{")[0].startswith("$: not valid JSON")


def test_at_may_be_ahead_of_a_lagging_event_time_up_to_the_wall_clock() -> None:
    assert parse({"service": "api", "kind": "deploy", "at": T0 + 600}).at == T0 + 600
    errors = errors_of({"service": "api", "kind": "deploy", "at": T0 + 700}, wall_s=T0 - 1000)
    assert errors[0].startswith("$.at:")


def test_config_checks_the_attribution_window_and_the_topic() -> None:
    for extra, message in [
        ("changes: {attribution_window: 1500ms}\n", "$.changes.attribution_window: must be whole"),
        ("changes: {attribution_window: 2d}\n", "$.changes.attribution_window: at most 1d"),
        ("changes: {attribution_window: 2h}\n", "at most the longest window kept (1h)"),
        ("changes: {max_kept: 0}\n", "$.changes.max_kept"),
        ("kafka: {changes_topic: request-events}\n", "$.kafka.changes_topic: 'request-events'"),
    ]:
        with pytest.raises(ConfigError) as exc:
            config(extra)
        assert any(message in e for e in exc.value.errors), exc.value.errors
    assert parse_config(BASE).changes.attribution_window_s == 3600


# -- the log ----------------------------------------------------------------------


def test_the_log_keeps_the_newest_by_time_and_each_change_once() -> None:
    log = ChangeLog(300, max_kept=3)
    for at in (50, 10, 40, 30):
        log.add(request(version=str(at)), source="api", at_s=at, received_at_s=T0)
    assert [c.at_s for c in log.changes()] == [50, 40, 30]
    again, added = log.add(request(version="40"), source="kafka", at_s=40, received_at_s=T0 + 1)
    assert not added
    assert again.source == "api"
    assert len(log) == 3
    assert [c.version for c in log.changes("api", limit=2)] == ["50", "40"]
    assert log.changes("db") == []
    assert log.counts() == {("api", "deploy"): 4}


def test_kinds_past_the_label_limit_are_counted_as_other() -> None:
    log = ChangeLog(300, max_kept=1000)
    for i in range(MAX_KIND_LABELS + 3):
        log.add(request(kind=f"k{i}"), source="api", at_s=i, received_at_s=T0)
    counts = log.counts()
    assert counts[("api", "other")] == 3
    assert len(counts) == MAX_KIND_LABELS + 1


def test_the_log_round_trips_through_its_encoding() -> None:
    log = ChangeLog(300, max_kept=10)
    assert log.encode() == b""
    log.add(request(version="1", url="https://x/1"), source="api", at_s=5, received_at_s=T0)
    log.add(request(service="db", kind="flag"), source="kafka", at_s=7, received_at_s=T0)
    back = ChangeLog(300, max_kept=1)
    assert back.load(log.encode()) == 1
    assert back.changes() == log.changes()[:1]
    new, _ = back.add(request(), source="api", at_s=9, received_at_s=T0)
    assert new.id == 3  # ids are never reused
    with pytest.raises(ValueError, match="changes"):
        back.load(b"\x01garbage")
    assert len(back) == 1


# -- attribution ------------------------------------------------------------------


def feed(ev: Evaluator, ts: float, status: int, n: int = 1, service: str = "api") -> None:
    e = Event(service=service, operation="GET /", status=status, latency_ms=5, count=n, ts=ts)
    ev.ingest(ev.classifier.columns([e]))


def test_a_change_is_charged_with_the_bad_events_after_it_then_frozen() -> None:
    ev = Evaluator(config())
    log = ChangeLog(300, max_kept=10)
    feed(ev, T0 - 600, 200, 900)  # the period's good traffic
    feed(ev, T0 - 300, 500, 7)  # bad, but before the change
    ev.advance(T0 + 0.5)
    log.add(request(version="1"), source="api", at_s=T0, received_at_s=T0)
    feed(ev, T0 + 60, 500, 10)
    feed(ev, T0 + 120, 200, 90)
    ev.advance(T0 + 200.5)
    log.update(ev)
    (ch,) = log.changes()
    avail = next(a for a in ch.attribution if a.slo == "api-avail")
    assert (avail.events, avail.bad_events) == (100, 10)
    assert avail.error_budget_consumed_ratio == pytest.approx(10 / (0.05 * 1007))
    assert not ch.complete
    assert ch.evaluated_at_s == T0 + 200
    feed(ev, T0 + 280, 500, 5)
    feed(ev, T0 + 320, 500, 50)  # after the window
    ev.advance(T0 + 400.5)
    log.update(ev)
    (ch,) = log.changes()
    avail = next(a for a in ch.attribution if a.slo == "api-avail")
    assert ch.complete
    assert ch.evaluated_at_s == T0 + 300
    assert avail.bad_events == 15
    frozen = avail.error_budget_consumed_ratio
    assert frozen == pytest.approx(15 / (0.05 * 1062))
    ev.advance(T0 + 5 * 86400)  # every ring has moved on
    feed(ev, T0 + 5 * 86400 + 1, 200)
    log.update(ev)
    assert log.changes()[0].attribution == ch.attribution


def test_a_change_whose_start_left_every_ring_is_frozen_without_attribution() -> None:
    ev = Evaluator(config())
    feed(ev, T0, 200)
    ev.advance(T0 + 2 * 86400)
    log = ChangeLog(300, max_kept=10)
    log.add(request(), source="api", at_s=T0, received_at_s=T0)
    log.update(ev)
    (ch,) = log.changes()
    assert ch.complete
    assert ch.attribution == ()


def test_alerts_in_a_change_window_name_it() -> None:
    ev = Evaluator(config())
    log = ChangeLog(300, max_kept=10)
    feed(ev, T0 - 60, 200, 100)
    ev.advance(T0 + 0.5)
    log.add(request(version="9"), source="api", at_s=T0, received_at_s=T0)
    log.add(request(service="db"), source="api", at_s=T0, received_at_s=T0)
    transitions: list[Transition] = []
    for k in range(1, 30):
        e = Event(service="api", operation="GET /", status=500, latency_ms=5, count=5, ts=T0 + k)
        transitions += ev.ingest(ev.classifier.columns([e]))
    transitions += ev.advance(T0 + 40.5)
    firing = [tr for tr in transitions if tr.state == "firing" and tr.slo == "api-avail"]
    assert firing
    log.update(ev)
    noted = log.annotate(firing[0], "api")
    (note,) = noted.changes
    assert (note.kind, note.version, note.at) == ("deploy", "9", T0)
    assert note.error_budget_consumed_ratio is not None
    assert note.error_budget_consumed_ratio > 0
    late = msgspec.structs.replace(firing[0], at=T0 + 301)
    assert log.annotate(late, "api").changes == ()
    assert log.annotate(firing[0], "db").changes[0].version is None
    resolved = msgspec.structs.replace(firing[0], state="resolved")
    assert log.annotate(resolved, "api") is resolved


dt = st.one_of(st.floats(0, 5), st.floats(-20, 0), st.sampled_from([60.0, 600.0]))


@example(  # a late event lands in a window that has just ended: not frozen before it
    start=1_600_000_000,
    steps=[
        *[(0.0, Event(service="api", status=200))] * 7,
        (1.0, Event(service="api", status=200)),
        (-1.0, Event(service="api", status=200)),
    ],
    changes=[(0.0, -300.0, "api")],
)
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    start=st.integers(1_600_000_000, 1_700_000_000),
    steps=st.lists(st.tuples(dt, event), min_size=1, max_size=60),
    changes=st.lists(
        st.tuples(st.floats(0, 1), st.floats(-400, 100), st.sampled_from(["api", "db"])),
        min_size=1,
        max_size=6,
    ),
)
def test_attribution_matches_a_naive_count(
    start: int, steps: list[tuple[float, Event]], changes: list[tuple[float, float, str]]
) -> None:
    """Fed one event at a time, with changes added along the way (some of them before
    events already counted), each change's counts are those of the events after it in
    whole buckets, and its share is bad / (b * period events) at the update it was last
    computed at (the one that froze it, for a complete one)."""
    cfg = config()
    window = cfg.changes.attribution_window_s
    ev = Evaluator(cfg)
    r = min(lv.r for lv in ev.windows.levels)
    ref = NaiveEvaluator(cfg)
    log = ChangeLog(window, max_kept=100)
    events = stamped(float(start), steps)
    frozen: dict[int, np.ndarray[tuple[int, int], np.dtype[np.int64]]] = {}
    for k, e in enumerate(events):
        for where, offset, service in changes:
            if int(where * (len(events) - 1)) == k:
                assert e.ts is not None
                req = request(service=service, description=str(offset))
                log.add(req, source="api", at_s=e.ts + offset, received_at_s=0)
        ev.ingest(ev.classifier.columns([e]))
        ref.feed(e)
        log.update(ev)
        for ch in log.changes():
            if ch.complete and ch.id not in frozen:
                frozen[ch.id] = ev.period_sums().copy()
    ev.flush()
    ref.flush()
    log.update(ev)
    t = ev.evaluated_at_s
    period_now = ev.period_sums()
    for ch in log.changes():
        if ch.complete and ch.id not in frozen:
            frozen[ch.id] = period_now.copy()
        if ch.evaluated_at_s is None:
            assert t is None or t <= ch.at_s
            continue
        end = ch.at_s + window if ch.complete else min(ch.at_s + window, t or -math.inf)
        assert ch.evaluated_at_s == end
        lo, hi = math.ceil(ch.at_s / r) * r, math.floor(end / r) * r
        period = frozen[ch.id] if ch.complete else period_now
        cols = [c for c, s in enumerate(ev.slos) if s.service == ch.service]
        assert [a.slo for a in ch.attribution] == [ev.names[c] for c in cols]
        hypothesis.event("complete" if ch.complete else "open")
        for a, c in zip(ch.attribution, cols, strict=True):
            if a.bad_events:
                hypothesis.event("bad events after a change")
            mine = [(tot, bad) for s, ts, tot, bad in ref.events if s == c and lo < ts <= hi]
            assert a.events == sum(x for x, _ in mine)
            assert a.bad_events == sum(b for _, b in mine)
            want = budget.consumed_ratio(
                np.array([period[c, 0]]), np.array([a.bad_events]), ev.budget_ratio[c : c + 1]
            )[0]
            if math.isnan(want):
                assert a.error_budget_consumed_ratio is None
            else:
                assert a.error_budget_consumed_ratio == want


@settings(max_examples=50, deadline=None)
@given(
    st.integers(1, 12).flatmap(lambda n: st.tuples(st.just(n), st.integers(1, n))),
    st.lists(st.integers(0, 5), min_size=1, max_size=20),
    st.integers(0, 19),
)
def test_partition_logs_number_their_changes_apart(
    step: tuple[int, int], versions: list[int], cut: int
) -> None:
    """Each of `n` logs numbers `first_id + k * n`: no two logs give one id, even after
    a log is saved and loaded part way (a partition moving to another worker)."""
    n, first = step
    log = ChangeLog(3600, 100, first_id=first, id_step=n)
    ids = []
    for k, v in enumerate(versions):
        if k == cut:
            again = ChangeLog(3600, 100, first_id=first, id_step=n)
            again.load(log.encode())
            log = again
        req = ChangeRequest(service="api", kind="deploy", version=f"v{k}.{v}")
        change, added = log.add(req, source="api", at_s=1000.0 + k, received_at_s=1000.0 + k)
        assert added
        ids.append(change.id)
    assert ids == [first + k * n for k in range(len(versions))]
    with pytest.raises(ValueError, match="first id"):
        ChangeLog(3600, 100, first_id=n + 1, id_step=n)
