"""Budget alerts and escalations in the core: each condition as a table, the vectorised
conditions against a naive reference, transitions at ticks, state across a snapshot."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.core import budget
from engine.core.budget_alerts import exhausted, projected, row_holds, row_reason
from engine.core.budget_policy import BudgetPolicyRow
from engine.core.config import parse_config
from engine.core.decode import Event
from engine.core.evaluator import Evaluator, Transition
from engine.core.snapshot import SnapshotError, dump, load
from engine.errors import ConfigError

T0 = 1_700_000_000.0
HOUR_S = 3600
DAY_S = 86400
PERIOD_S = 30 * DAY_S

BASE = """\
slos:
  - {name: api, service: shop, sli: availability, objective: 90}
evaluation: {tick: 10s}
"""


def run(config: str, bad: int, *, until: float = T0 + 1) -> tuple[Evaluator, list[Transition]]:
    """100 events of `api` at T0 - 5, `bad` of them failed, evaluated to `until`."""
    ev = Evaluator(parse_config(config))
    batch = [Event(service="shop", ts=T0 - 5, status=500 if i < bad else 200) for i in range(100)]
    out = ev.ingest(ev.classifier.columns(batch))
    out += ev.advance(until)
    return ev, out


def budget_kinds(transitions: list[Transition], state: str = "firing") -> list[str]:
    return [t.kind for t in transitions if t.kind != "burn" and t.state == state]


# -- the two budget alerts -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("bad", "horizon", "want"),
    [
        # budget 10%: 20 bad of 100 spends it twice over
        (20, "3d", ["budget_exhausted"]),
        (10, "3d", ["budget_exhausted"]),  # exactly spent: remaining 0 is exhausted
        # 9 bad: 10% of the budget left, burning at 0.9x over the last hour: gone in 3.33d
        (9, "3d", []),
        (9, "4d", ["budget_exhaustion_projected"]),
        (0, "400d", []),  # nothing burns: never exhausted
        (1, "400d", ["budget_exhaustion_projected"]),  # 0.1x: 90% lasts 270d
    ],
)
def test_budget_alerts_fire_on_their_condition(bad: int, horizon: str, want: list[str]) -> None:
    _, out = run(BASE + f"budget_alerts: {{horizon: {horizon}}}\n", bad)
    assert budget_kinds(out) == want


def test_without_the_section_there_are_no_budget_alerts() -> None:
    ev, out = run(BASE, 20)
    assert budget_kinds(out) == []
    assert ev.budget_alert_columns == []
    assert ev.state().budget_alerts is None


def test_each_alert_can_be_turned_off_and_given_a_severity() -> None:
    cfg = BASE + "budget_alerts: {exhausted: false, projected_severity: page, horizon: 400d}\n"
    _, out = run(cfg, 20)
    assert budget_kinds(out) == []
    _, out = run(cfg, 1)
    [tr] = [t for t in out if t.kind != "burn"]
    assert (tr.kind, tr.severity) == ("budget_exhaustion_projected", "page")


def test_a_projection_resolves_when_its_lookback_has_no_data_and_exhausted_stays() -> None:
    ev, out = run(BASE + "budget_alerts: {horizon: 400d}\n", 1, until=T0 + HOUR_S + 20)
    assert budget_kinds(out) == ["budget_exhaustion_projected"]
    assert budget_kinds(out, "resolved") == ["budget_exhaustion_projected"]
    resolved = next(t for t in out if t.kind != "burn" and t.state == "resolved")
    assert resolved.at == T0 + HOUR_S  # the first tick whose hour holds no event
    assert resolved.burn_rate_long is None
    ev, out = run(BASE + "budget_alerts: {}\n", 20, until=T0 + HOUR_S + 20)
    assert budget_kinds(out) == ["budget_exhausted"]
    assert budget_kinds(out, "resolved") == []  # the period still holds the events
    assert ev.budget_alerts().firing.tolist() == [[True, False]]


def test_a_budget_transition_carries_its_numbers() -> None:
    _, out = run(BASE + "budget_alerts: {horizon: 4d, lookback: 30m}\n", 9)
    [tr] = [t for t in out if t.kind != "burn"]
    assert tr.kind == "budget_exhaustion_projected"
    assert tr.alert_key == ("api", None, "budget_exhaustion_projected")
    assert (tr.long_window_s, tr.short_window_s) == (1800, 1800)
    assert tr.burn_rate_long == pytest.approx(0.9)
    assert tr.error_budget_remaining_ratio == pytest.approx(0.1)
    assert tr.time_to_exhaustion_s == budget.time_to_exhaustion_s(
        tr.error_budget_remaining_ratio, tr.burn_rate_long, PERIOD_S
    )
    assert tr.horizon_s == 4 * DAY_S
    # the burn rate at which what is left lasts exactly the horizon
    assert tr.factor == pytest.approx(0.1 * PERIOD_S / (4 * DAY_S))
    assert tr.at == T0


def test_grouped_slos_have_budget_alerts_per_group() -> None:
    cfg = """\
slos:
  - {name: api, service: shop, sli: availability, objective: 90, group_by: [region]}
evaluation: {tick: 10s}
budget_alerts: {}
"""
    ev = Evaluator(parse_config(cfg))
    batch = [
        Event(service="shop", ts=T0 - 5, status=500 if r == "eu" else 200, labels={"region": r})
        for _ in range(10)
        for r in ("eu", "us")
    ]
    out = ev.ingest(ev.classifier.columns(batch))
    out += ev.advance(T0 + 1)
    fired = [(t.group, t.kind) for t in out if t.kind != "burn"]
    assert ("region=eu", "budget_exhausted") in fired
    assert ("region=us", "budget_exhausted") not in fired


# -- escalations ------------------------------------------------------------------------------

ESCALATING = (
    BASE
    + """\
receivers: [{type: console, name: oncall}, {type: console, name: chat}]
budget_policy:
  - {budget_remaining_at_most: 0, decision: fail, escalate: [oncall]}
  - {budget_remaining_below: 0.25, decision: warn, escalate: [chat, oncall]}
  - {alert_firing: ticket, decision: warn}
"""
)


def test_an_escalation_names_its_row_decision_reason_and_receivers() -> None:
    _, out = run(ESCALATING, 20)
    esc = [t for t in out if t.kind == "escalation"]
    assert [(t.policy_row, t.decision, t.receivers, t.severity) for t in esc] == [
        ("$.budget_policy[0]", "fail", ("oncall",), "page"),
        ("$.budget_policy[1]", "warn", ("chat", "oncall"), "ticket"),
    ]
    assert esc[0].reason == "error budget remaining -100% is at or below 0%"
    assert esc[0].alert_key == ("api", None, "escalation:$.budget_policy[0]")


def test_an_escalation_resolves_when_its_row_stops_holding() -> None:
    ev = Evaluator(parse_config(ESCALATING))
    batch = [Event(service="shop", ts=T0 - 5, status=500 if i < 8 else 200) for i in range(100)]
    out = ev.ingest(ev.classifier.columns(batch))
    out += ev.advance(T0 + 1)
    assert [t.policy_row for t in out if t.kind == "escalation"] == ["$.budget_policy[1]"]
    # 800 good events later the budget left is back over 25%
    good = [Event(service="shop", ts=T0 + 10 + i, status=200) for i in range(800)]
    out = ev.ingest(ev.classifier.columns(good))
    out += ev.advance(T0 + 900)
    [tr] = [t for t in out if t.kind == "escalation"]
    assert (tr.state, tr.policy_row) == ("resolved", "$.budget_policy[1]")
    assert tr.reason == "no longer holds: error budget remaining below 25% -> warn"


def test_an_slos_own_rows_escalate_for_that_slo_only() -> None:
    cfg = """\
slos:
  - {name: api, service: shop, sli: availability, objective: 90,
     budget_policy: [{budget_remaining_at_most: 0, decision: fail, escalate: [oncall]}]}
  - {name: web, service: shop, sli: availability, objective: 90}
evaluation: {tick: 10s}
receivers: [{type: console, name: oncall}]
"""
    _, out = run(cfg, 20)
    esc = [(t.slo, t.policy_row) for t in out if t.kind == "escalation"]
    assert esc == [("api", "$.slos[0].budget_policy[0]")]


# -- the conditions against a naive reference -----------------------------------------------

ratios = st.one_of(st.none(), st.floats(-5, 1, allow_nan=False))
rates = st.one_of(st.none(), st.floats(0, 1000, allow_nan=False))


def _arr(xs: list[float | None]) -> np.ndarray:
    return np.array([math.nan if x is None else x for x in xs], dtype=np.float64)


@given(
    cells=st.lists(
        st.tuples(ratios, rates, st.sampled_from([HOUR_S, 28 * DAY_S, 30 * DAY_S])),
        min_size=1,
        max_size=20,
    ),
    horizon_s=st.floats(1, 400 * DAY_S),
)
def test_budget_alert_conditions_match_a_naive_model(
    cells: list[tuple[float | None, float | None, int]], horizon_s: float
) -> None:
    remaining = _arr([c[0] for c in cells])
    burn = _arr([c[1] for c in cells])
    period = np.array([c[2] for c in cells], dtype=np.float64)
    got_exhausted = exhausted(remaining).tolist()
    got_projected = projected(remaining, burn, period, horizon_s).tolist()
    for k, (r, b, p) in enumerate(cells):
        assert got_exhausted[k] == (r is not None and r <= 0)
        naive = r is not None and r > 0 and b is not None and b > 0 and r * p / b <= horizon_s
        assert got_projected[k] == naive
        assert not (got_exhausted[k] and got_projected[k])


rows = st.one_of(
    st.builds(
        lambda x: BudgetPolicyRow(budget_remaining_below=x, decision="warn"), st.floats(-2, 1)
    ),
    st.builds(
        lambda x: BudgetPolicyRow(budget_remaining_at_most=x, decision="fail"), st.floats(-2, 1)
    ),
    st.builds(
        lambda s: BudgetPolicyRow(alert_firing=s, decision="fail"),
        st.sampled_from(["page", "ticket"]),
    ),
    st.builds(
        lambda h: BudgetPolicyRow(exhaustion_within=f"{h}h", lookback="1h", decision="warn"),
        st.integers(1, 2000),
    ),
)


@given(
    row=rows,
    cells=st.lists(st.tuples(ratios, rates, st.booleans(), st.booleans()), min_size=1, max_size=20),
)
def test_row_holds_is_where_the_gate_gives_a_reason(
    row: BudgetPolicyRow, cells: list[tuple[float | None, float | None, bool, bool]]
) -> None:
    remaining = _arr([c[0] for c in cells])
    burn = _arr([c[1] for c in cells])
    period = np.full(len(cells), float(PERIOD_S))
    firing = {"page": np.array([c[2] for c in cells]), "ticket": np.array([c[3] for c in cells])}
    got = row_holds(row, remaining, burn, period, firing).tolist()  # type: ignore[arg-type]
    for k, (r, b, page, ticket) in enumerate(cells):
        sevs = tuple(s for s, on in (("page", page), ("ticket", ticket)) if on)
        want = row_reason(row, r, b, PERIOD_S, sevs) is not None  # type: ignore[arg-type]
        assert got[k] == want, (row, r, b, sevs)


def test_vectorised_time_to_exhaustion_is_the_scalar_one_bit_for_bit() -> None:
    r = np.array([0.5, 0.0, -1.0, math.nan, 0.3, 0.7])
    b = np.array([2.0, 3.0, math.nan, 1.0, 0.0, math.nan])
    got = budget.times_to_exhaustion_s(r, b, np.full(6, float(PERIOD_S)))
    for k in range(6):
        want = budget.time_to_exhaustion_s(float(r[k]), float(b[k]), PERIOD_S)
        assert (math.isnan(got[k]) and want is None) or got[k] == want


# -- restarts ----------------------------------------------------------------------------------


def test_budget_alert_state_survives_a_snapshot_and_fires_nothing_twice() -> None:
    ev, out = run(ESCALATING + "budget_alerts: {}\n", 20)
    assert budget_kinds(out) == ["budget_exhausted", "escalation", "escalation"]
    data = dump(ev)
    again = Evaluator(parse_config(ESCALATING + "budget_alerts: {}\n"))
    load(again, data)
    np.testing.assert_array_equal(again.budget_alerts().firing, ev.budget_alerts().firing)
    assert budget_kinds(again.advance(T0 + 60)) == []
    fired = again.firing_budget_alerts()
    assert [(t.kind, t.at, t.state) for t in fired] == [
        ("budget_exhausted", T0, "firing"),
        ("escalation", T0, "firing"),
        ("escalation", T0, "firing"),
    ]


def test_a_snapshot_from_before_budget_alerts_loads_and_they_start_not_firing() -> None:
    old, _ = run(BASE, 20)
    data = dump(old)  # no budget alerts: the version and bytes of before
    assert Evaluator(parse_config(BASE)).state().budget_alerts is None
    new = Evaluator(parse_config(BASE + "budget_alerts: {}\n"))
    load(new, data)
    assert not new.budget_alerts().firing.any()
    out = new.advance(T0 + 20)
    assert budget_kinds(out) == ["budget_exhausted"]  # at the next tick, as it holds


def test_budget_alerts_are_matched_by_key_when_the_config_changes() -> None:
    ev, _ = run(BASE + "budget_alerts: {}\n", 20)
    data = dump(ev)
    fewer = Evaluator(parse_config(BASE + "budget_alerts: {projected: false}\n"))
    load(fewer, data)
    assert fewer.budget_alerts().keys == ("budget_exhausted",)
    assert fewer.budget_alerts().firing.tolist() == [[True]]
    plain = Evaluator(parse_config(BASE))
    load(plain, data)  # dropped: the config has none
    assert plain.state().budget_alerts is None


def test_an_older_engine_refuses_a_snapshot_with_budget_alerts_by_its_version() -> None:
    import msgspec

    ev, _ = run(BASE + "budget_alerts: {}\n", 20)
    raw = msgspec.msgpack.decode(dump(ev))
    assert raw["version"] == 4
    raw_old, _ = run(BASE, 20)
    assert msgspec.msgpack.decode(dump(raw_old))["version"] == 2
    raw["budget_alerts"]["keys"] = ["a", "a"]
    with pytest.raises(SnapshotError, match="key twice"):
        load(Evaluator(parse_config(BASE + "budget_alerts: {}\n")), msgspec.msgpack.encode(raw))


# -- config ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "error"),
    [
        ("budget_alerts: {horizon: 0s}\n", "$.budget_alerts.horizon: must be longer than 0s"),
        (
            "budget_alerts: {lookback: 5s}\n",
            "$.budget_alerts.lookback: must be whole seconds and at least the evaluation "
            "tick (10s), got 5s",
        ),
        ("budget_alerts: {lookback: 1000d}\n", "$.budget_alerts.lookback: at most 400d, got 1000d"),
        (
            "budget_policy: [{alert_firing: page, decision: fail, escalate: [pager]}]\n",
            "$.budget_policy[0].escalate[0]: no receiver is named 'pager' (receiver names: "
            "none is named)",
        ),
        (
            "receivers: [{type: console, name: chat}, {type: console}]\n"
            "budget_policy: [{alert_firing: page, decision: fail, escalate: [chat, pager]}]\n",
            "$.budget_policy[0].escalate[1]: no receiver is named 'pager' (receiver names: chat)",
        ),
        ("budget_alerts: {exhausted_severity: urgent}\n", "$.budget_alerts.exhausted_severity"),
        ("receivers: [{type: console, escalations: some}]\n", "$.receivers[0].escalations"),
    ],
)
def test_budget_alert_and_escalation_config_errors_carry_their_path(extra: str, error: str) -> None:
    with pytest.raises(ConfigError) as exc:
        parse_config(BASE + extra)
    assert any(e.startswith(error) for e in exc.value.errors), exc.value.errors


def test_an_slos_own_escalation_names_are_checked_too() -> None:
    cfg = BASE.replace(
        "objective: 90}",
        "objective: 90, budget_policy: [{budget_remaining_at_most: 0, decision: fail,"
        " escalate: [nobody]}]}",
    )
    with pytest.raises(ConfigError) as exc:
        parse_config(cfg)
    assert exc.value.errors == [
        "$.slos[0].budget_policy[0].escalate[0]: no receiver is named 'nobody' (receiver "
        "names: none is named)"
    ]


def test_a_budget_alert_lookback_is_a_window_the_evaluator_keeps() -> None:
    cfg = parse_config(BASE + "budget_alerts: {lookback: 45m}\n")
    assert 2700 in cfg.windows_s()
    assert Evaluator(cfg).budget_lookback_s == 2700
    assert Evaluator(parse_config(BASE + "budget_alerts: {}\n")).budget_lookback_s == HOUR_S


# -- any split, any restart: the same budget transitions --------------------------------------

PROPERTY_CONFIG = (
    BASE.replace("objective: 90}", "objective: 90, period: 1h}")
    + """\
policy: [{severity: page, long: 5m, short: 1m, burn_rate: 2}]
budget_alerts: {horizon: 20m, lookback: 5m}
receivers: [{type: console, name: oncall}]
budget_policy:
  - {budget_remaining_below: 0.5, decision: warn, escalate: [oncall]}
  - {alert_firing: page, decision: fail, escalate: [oncall]}
  - {exhaustion_within: 30m, lookback: 1m, decision: warn, escalate: [oncall]}
"""
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    steps=st.lists(
        st.tuples(st.integers(0, 120), st.integers(0, 4), st.integers(0, 4)),
        min_size=1,
        max_size=60,
    ),
    cut=st.integers(0, 60),
)
def test_budget_transitions_do_not_depend_on_batches_or_a_restart(
    steps: list[tuple[int, int, int]], cut: int
) -> None:
    """`steps`: (seconds after the previous, good, bad) events at that time."""
    cfg = parse_config(PROPERTY_CONFIG)
    t = T0
    batches: list[list[Event]] = []
    for dt_s, good, bad in steps:
        t += dt_s
        batches.append(
            [Event(service="shop", ts=t, status=200) for _ in range(good)]
            + [Event(service="shop", ts=t, status=500) for _ in range(bad)]
        )
    one = Evaluator(cfg)
    want = one.ingest(one.classifier.columns([e for b in batches for e in b]))
    want += one.advance(t + 7200)
    first = Evaluator(cfg)
    got: list[Transition] = []
    for b in batches[:cut]:
        got += first.ingest(first.classifier.columns(b)) if b else []
    second = Evaluator(cfg)
    load(second, dump(first))
    for b in batches[cut:]:
        got += second.ingest(second.classifier.columns(b)) if b else []
    got += second.advance(t + 7200)
    assert [x for x in got if x.kind != "burn"] == [x for x in want if x.kind != "burn"]
    # and each state is what the conditions say at the last tick: nothing fires
    assert not second.budget_alerts().firing.any()
    # transitions of one alert alternate, starting with a firing
    last: dict[object, str] = {}
    for x in got:
        if x.kind != "burn":
            assert last.get(x.alert_key, "resolved") != x.state
            last[x.alert_key] = x.state
