"""Config reload: the reloaded evaluator equals one of the new config that saw only the
events of the SLOs it kept, now and going forward."""

from __future__ import annotations

import math

import msgspec
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.core.config import Config, parse_config
from engine.core.decode import Event
from engine.core.evaluator import Evaluator, Transition
from engine.core.reload import carry_blocker, definition, reload
from tests.unit.core.reference import split, stamped

SERVICES = ("a", "b", "c", "d")

VARIANTS = {
    "avail": "sli: availability, objective: 95, period: 1h",
    "strict": "sli: availability, objective: 99, period: 1h",
    "latency": "sli: latency, threshold_ms: 100, objective: 90, period: 1h",
    "own-policy": "sli: availability, objective: 95, period: 1h, "
    "policy: [{severity: page, long: 5m, short: 1m, burn_rate: 3}]",
    "grouped": "sli: availability, objective: 95, period: 1h, group_by: [operation], max_groups: 2",
    "calendar": "sli: availability, objective: 95, period: {calendar: week, time_zone: UTC}",
    "long-period": "sli: availability, objective: 95, period: 2h",
    "annotated": "sli: availability, objective: 95, period: 1h, runbook_url: https://rb/a, "
    "labels: {team: x}",
}

POLICIES = {
    "one": "[{severity: page, long: 5m, short: 1m, burn_rate: 4},"
    " {severity: ticket, long: 30m, short: 5m, burn_rate: 1}]",
    "two": "[{severity: page, long: 5m, short: 1m, burn_rate: 2},"
    " {severity: ticket, long: 30m, short: 5m, burn_rate: 1}]",
    "page-only": "[{severity: page, long: 5m, short: 1m, burn_rate: 4}]",
}

slos = st.dictionaries(
    st.sampled_from(SERVICES),
    st.sampled_from(sorted(VARIANTS)),
    min_size=1,
)
configs = st.tuples(
    slos,
    st.sampled_from(sorted(POLICIES)),
    st.sampled_from(["10s", "10s", "10s", "60s"]),
    st.booleans(),  # a composite of a and b, when both are there
)


def make(spec: tuple[dict[str, str], str, str, bool], budget_alerts: bool = False) -> Config:
    chosen, policy, tick, composite = spec
    lines = [f"  - {{name: {s}, service: {s}, {VARIANTS[v]}}}" for s, v in chosen.items()]
    if composite and {chosen.get("a"), chosen.get("b")} <= set(VARIANTS) - {"grouped"}:
        lines.append(
            "  - {name: ab, objective: 95, period: 1h,"
            " composite: [{slo: a, weight: 1}, {slo: b, weight: 2}]}"
        )
    return parse_config(
        "slos:\n"
        + "\n".join(lines)
        + f"\npolicy: {POLICIES[policy]}\nevaluation: {{tick: {tick}, allowed_lateness: 30s}}\n"
        + "changes: {attribution_window: 5m}\n"
        + ("budget_alerts: {horizon: 2h}\n" if budget_alerts else "")
    )


event = st.builds(
    lambda service, op, status, count: Event(
        service=service, operation=op, status=status, latency_ms=50.0, count=count
    ),
    st.sampled_from([*SERVICES, "other"]),
    st.sampled_from(["x", "y", "z"]),
    st.sampled_from([200, 200, 500, 503]),
    st.integers(1, 3),
)
dt = st.one_of(st.floats(0, 5), st.floats(-45, 0), st.sampled_from([30.0, 300.0, 1800.0]))


def feed(ev: Evaluator, batches: list[list[Event]]) -> list[Transition]:
    out: list[Transition] = []
    for batch in batches:
        out += ev.ingest(ev.classifier.columns(batch))
    return out


def services_of(cfg: Config, names: tuple[str, ...]) -> set[str]:
    return {s.service for s in cfg.slos if s.name in names and s.service is not None}


def alert_rows(ev: Evaluator) -> list[tuple[object, ...]]:
    """Every alert's state, its firing row by key (row indices are per evaluator)."""
    a = ev.alerts()
    out: list[tuple[object, ...]] = []
    for i, name in enumerate(ev.names):
        for j, sev in enumerate(ev.severities):
            r = int(a.firing_row[i, j])
            out.append(
                (
                    name,
                    ev.group_of(i),
                    sev,
                    bool(a.firing[i, j]),
                    ev.rows[r].key if r >= 0 else None,
                    *(
                        None if math.isnan(x[i, j]) else float(x[i, j])
                        for x in (a.firing_since_s, a.pending_since_s, a.last_true_s)
                    ),
                )
            )
    return out


def assert_same_slo_state(got: Evaluator, want: Evaluator, fresh: set[str]) -> None:
    """Equal, but for the alerts of `fresh` composites (see `started`)."""
    np.testing.assert_array_equal(got.window_sums(), want.window_sums())
    gc, wc = got.counts(), want.counts()
    np.testing.assert_array_equal(gc.events_total, wc.events_total)
    np.testing.assert_array_equal(gc.bad_events_total, wc.bad_events_total)
    np.testing.assert_array_equal(got.period_sums(), want.period_sums())
    assert [r for r in alert_rows(got) if r[0] not in fresh] == [
        r for r in alert_rows(want) if r[0] not in fresh
    ]
    assert got.classifier.group_state() == want.classifier.group_state()
    gb, wb = got.budget_alerts(), want.budget_alerts()
    assert gb.keys == wb.keys
    keep = np.array([n not in fresh for n in got.names], dtype=bool)
    np.testing.assert_array_equal(gb.firing[keep], wb.firing[keep])
    np.testing.assert_array_equal(gb.firing_since_s[keep], wb.firing_since_s[keep])
    assert (got.watermark_s, got.next_tick_s) == (want.watermark_s, want.next_tick_s)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    start=st.integers(1_600_000_000, 1_700_000_000),
    before=configs,
    after=configs,
    head=st.lists(st.tuples(st.floats(0, 20), event), max_size=60),
    tail=st.lists(st.tuples(dt, event), max_size=60),
    cuts=st.lists(st.integers(0, 60), max_size=5),
    idle_s=st.floats(0, 600),
    budget_alerts=st.booleans(),
)
def test_reloaded_evaluator_equals_one_that_saw_only_the_kept_slos_events(
    start: int,
    before: tuple[dict[str, str], str, str, bool],
    after: tuple[dict[str, str], str, str, bool],
    head: list[tuple[float, Event]],
    tail: list[tuple[float, Event]],
    cuts: list[int],
    idle_s: float,
    budget_alerts: bool,
) -> None:
    old_cfg, new_cfg = make(before, budget_alerts), make(after, budget_alerts)
    # The head is in time order (no late events, whose verdict would depend on the
    # other SLOs' events the reference does not see); the tail is anything.
    first = stamped(start, head)
    t = (first[-1].ts if first else float(start)) + idle_s
    assert t is not None
    old = Evaluator(old_cfg)
    feed(old, split(first, cuts))
    old.advance(t)

    result = reload(old, new_cfg)
    got = result.evaluator
    ref = Evaluator(new_cfg)
    kept_services = services_of(new_cfg, result.kept)
    feed(ref, split([e for e in first if e.service in kept_services], cuts))
    ref.advance(t)

    old_names = {s.name for s in old_cfg.slos}
    new_names = {s.name for s in new_cfg.slos}
    assert set(result.removed) == old_names - new_names
    assert set(result.added) == new_names - old_names
    assert set(result.kept) | set(result.reset) == old_names & new_names
    assert result.reason == carry_blocker(old_cfg, new_cfg)
    if result.reason is not None:
        assert result.kept == ()
    for name in result.kept:  # kept means the same definition
        o = next(s for s in old_cfg.slos if s.name == name)
        n = next(s for s in new_cfg.slos if s.name == name)
        assert definition(old_cfg, o) == definition(new_cfg, n)
    # A composite added or reset over kept members: its windows are its members', so
    # the reference has alert history for it; the reloaded one starts its alerts afresh.
    started = {
        s.name for s in new_cfg.slos if s.composite is not None and s.name not in result.kept
    }
    assert_same_slo_state(got, ref, started)

    dropped = set(result.removed) | set(result.reset)
    firing = [
        (name, sev)
        for name, _, sev, on, *_ in alert_rows(old)
        if on and name in dropped  # type: ignore[operator]
    ]
    burn = [tr for tr in result.ended if tr.kind == "burn"]
    assert sorted((tr.slo, tr.severity) for tr in burn) == sorted(firing)
    budget = old.budget_alerts()
    dropped_cols = np.array([n in dropped for n in old.names], dtype=bool)
    assert len(result.ended) - len(burn) == int(budget.firing[dropped_cols].sum())
    assert all(tr.state == "resolved" and tr.at == old.evaluated_at_s for tr in result.ended)

    rest = split(stamped(t, tail), cuts)
    transitions = [
        [tr for tr in trs if tr.slo not in started]
        for trs in (feed(got, rest) + got.flush(), feed(ref, rest) + ref.flush())
    ]
    assert transitions[0] == transitions[1]
    assert_same_slo_state(got, ref, started)
    assert got.rejected_counts() == {
        k: v + old.rejected_counts().get(k, 0) for k, v in ref.rejected_counts().items()
    }


def test_the_old_evaluator_is_left_as_it_was() -> None:
    cfg = make(({"a": "avail", "b": "latency"}, "one", "10s", True))
    old = Evaluator(cfg)
    events = [Event(service="a", status=500, ts=1_700_000_000.0 + k) for k in range(100)]
    feed(old, [events])
    old.advance(1_700_000_200.0)
    before = old.state()
    sums = np.array(old.window_sums())
    reload(old, make(({"a": "strict"}, "two", "60s", False)))
    np.testing.assert_array_equal(old.window_sums(), sums)
    assert old.state().watermark_s == before.watermark_s
    assert old.config is cfg


def test_a_firing_alert_of_a_removed_slo_ends_resolved() -> None:
    old = Evaluator(make(({"a": "avail", "b": "avail"}, "one", "10s", False)))
    t0 = 1_700_000_000.0
    feed(old, [[Event(service="a", status=500, ts=t0 + k) for k in range(400)]])
    old.advance(t0 + 400)
    assert old.alerts().firing[0].any()
    result = reload(old, make(({"b": "avail"}, "one", "10s", False)))
    assert result.removed == ("a",)
    assert result.kept == ("b",)
    assert {(tr.slo, tr.state) for tr in result.ended} == {("a", "resolved")}
    assert all(math.isclose(tr.at, t0 + 390) for tr in result.ended)
    assert result.evaluator.names == ["b"]


def test_a_changed_tick_resets_every_slo_and_says_why() -> None:
    old = Evaluator(make(({"a": "avail"}, "one", "10s", False)))
    feed(old, [[Event(service="a", status=200, ts=1_700_000_000.0 + k) for k in range(50)]])
    result = reload(old, make(({"a": "avail"}, "one", "60s", False)))
    assert result.kept == ()
    assert result.reset == ("a",)
    assert result.reason == "the evaluation settings changed"
    assert int(result.evaluator.counts().events_total[0]) == 0
    assert result.evaluator.watermark_s == old.watermark_s
    assert result.evaluator.counts().accepted_events == 50


def test_a_new_window_resets_every_slo() -> None:
    cfg = make(({"a": "avail", "b": "avail"}, "one", "10s", False))
    longer = make(({"a": "avail", "b": "long-period"}, "one", "10s", False))
    assert carry_blocker(cfg, longer) == "the set of windows changed (policy windows and periods)"
    assert carry_blocker(cfg, msgspec.structs.replace(cfg, slos=cfg.slos[:1])) is None


def test_annotations_change_and_the_state_stays() -> None:
    old = Evaluator(make(({"a": "avail"}, "one", "10s", False)))
    feed(old, [[Event(service="a", status=500, ts=1_700_000_000.0 + k) for k in range(50)]])
    result = reload(old, make(({"a": "annotated"}, "one", "10s", False)))
    assert result.kept == ("a",)
    assert result.evaluator.config_slos[0].runbook_url == "https://rb/a"
    assert int(result.evaluator.counts().events_total[0]) == 50


def test_time_a_cap_holds_back_stays_held_across_a_reload() -> None:
    """Events read while a lagging stream capped the watermark: once the streams catch
    up, the engine evaluates up to them, reloaded or not."""
    text = (
        "slos: [{name: a, service: a, sli: availability, objective: 99}]\n"
        "evaluation: {tick: 10s, allowed_lateness: 0s}\n"
    )
    t0 = 1_700_000_000.0
    runs = []
    for reloaded in (False, True):
        ev = Evaluator(parse_config(text))
        ev.ingest(ev.classifier.columns([Event(service="a", ts=t0, status=200)]))
        late = [Event(service="a", ts=t0 + 100 + k, status=200) for k in range(5)]
        ev.ingest(ev.classifier.columns(late), watermark_cap_s=t0 + 1)
        assert ev.held_s == t0 + 104
        if reloaded:
            ev = reload(
                ev, parse_config(text.replace("objective: 99", "objective: 99.5"))
            ).evaluator
            assert ev.held_s == t0 + 104
        ev.advance(t0 + 2)  # no cap: caught up
        runs.append(ev.evaluated_at_s)
    assert runs[0] == runs[1] == t0 + 100
