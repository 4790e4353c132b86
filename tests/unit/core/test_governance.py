"""Budget policy and the release gate: the default rows and their thresholds pinned, each
condition as a table, rows combined against a naive reference, services rolled up."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.core.budget_policy import DEFAULT_BUDGET_POLICY, BudgetPolicyRow, Decision
from engine.core.config import Config, parse_config
from engine.core.decode import Event
from engine.core.evaluator import Evaluator
from engine.core.governance import (
    GateBook,
    SloFacts,
    all_gates,
    decide_slo,
    service_gate,
    services,
    worst,
)
from engine.core.overrides import Override
from engine.errors import ConfigError

DAY_S = 86400
PERIOD_S = 30 * DAY_S


def facts(
    remaining: float | None = 1.0,
    firing: tuple[str, ...] = (),
    burn: dict[int, float | None] | None = None,
    group: str | None = None,
) -> SloFacts:
    return SloFacts(
        slo="api",
        group=group,
        remaining_ratio=remaining,
        burn_rates=burn or {},
        period_s=PERIOD_S,
        firing=firing,  # type: ignore[arg-type]
    )


def test_the_default_budget_policy_is_pinned() -> None:
    assert [msgspec.structs.asdict(r) for r in DEFAULT_BUDGET_POLICY] == [
        {**_EMPTY, "budget_remaining_at_most": 0.0, "decision": "fail"},
        {**_EMPTY, "alert_firing": "page", "decision": "fail"},
        {**_EMPTY, "budget_remaining_below": 0.25, "decision": "warn"},
        {**_EMPTY, "alert_firing": "ticket", "decision": "warn"},
    ]
    assert parse_config(MINIMAL).budget_policy == list(DEFAULT_BUDGET_POLICY)


_EMPTY = {
    "budget_remaining_below": None,
    "budget_remaining_at_most": None,
    "exhaustion_within": None,
    "lookback": None,
    "alert_firing": None,
    "escalate": [],
}

MINIMAL = "slos: [{name: api, service: shop, sli: availability, objective: 99}]\n"


@pytest.mark.parametrize(
    ("remaining", "firing", "want"),
    [
        (1.0, (), "pass"),
        (0.25, (), "pass"),  # warn is strictly below a quarter
        (0.2499999, (), "warn"),
        (1e-12, (), "warn"),
        (0.0, (), "fail"),  # fail at or below 0
        (-0.5, (), "fail"),
        (None, (), "pass"),  # no data is neither good nor bad
        (1.0, ("ticket",), "warn"),
        (1.0, ("page",), "fail"),
        (1.0, ("page", "ticket"), "fail"),
        (None, ("page",), "fail"),
        (0.1, ("ticket",), "warn"),
    ],
)
def test_default_policy_decisions(
    remaining: float | None, firing: tuple[str, ...], want: Decision
) -> None:
    assert decide_slo(DEFAULT_BUDGET_POLICY, facts(remaining, firing)).decision == want


def test_reasons_name_every_holding_row_and_its_decision() -> None:
    got = decide_slo(DEFAULT_BUDGET_POLICY, facts(-0.04, ("ticket",), group="region=eu"))
    assert got.reasons == (
        "api{region=eu}: error budget remaining -4% is at or below 0% -> fail",
        "api{region=eu}: error budget remaining -4% is below 25% -> warn",
        "api{region=eu}: ticket alert firing -> warn",
    )


EXHAUST = BudgetPolicyRow(exhaustion_within="2d", lookback="6h", decision="warn")
SIX_H = 6 * 3600


@pytest.mark.parametrize(
    ("remaining", "burn", "holds"),
    [
        (0.5, 10.0, True),  # 0.5 * 30d / 10 = 1.5d <= 2d
        (0.5, 7.5, True),  # exactly 2d
        (0.5, 7.4, False),  # a little over 2d
        (0.5, 1.0, False),  # 15d
        (0.5, 0.0, False),  # nothing burns
        (0.5, None, False),  # no data in the lookback
        (None, 100.0, False),  # no data over the period
        (0.0, None, True),  # spent: exhausted now, whatever burns
        (-1.0, 0.0, True),
    ],
)
def test_exhaustion_within_a_horizon_at_the_lookback_burn_rate(
    remaining: float | None, burn: float | None, holds: bool
) -> None:
    got = decide_slo([EXHAUST], facts(remaining, burn={SIX_H: burn, 3600: 1000.0}))
    assert got.decision == ("warn" if holds else "pass")


def test_an_exhaustion_reason_gives_the_time_left_and_the_burn_rate() -> None:
    got = decide_slo([EXHAUST], facts(0.5, burn={SIX_H: 10.0}))
    assert got.reasons == (
        "api: error budget exhausted in 1d12h at the 6h burn rate 10 (within 2d) -> warn",
    )


def test_escalation_is_every_holding_rows_receivers_in_row_order_once() -> None:
    rows = [
        BudgetPolicyRow(budget_remaining_below=0.5, decision="warn", escalate=["chat", "mail"]),
        BudgetPolicyRow(alert_firing="page", decision="fail", escalate=["pager"]),
        BudgetPolicyRow(budget_remaining_at_most=0, decision="fail", escalate=["pager", "chat"]),
        BudgetPolicyRow(alert_firing="ticket", decision="warn", escalate=["tickets"]),
    ]
    got = decide_slo(rows, facts(-0.1, ("page",)))
    assert got.decision == "fail"
    assert got.escalate == ("chat", "mail", "pager")
    assert decide_slo(rows, facts(1.0)).escalate == ()


def test_worst_orders_pass_warn_fail() -> None:
    assert worst([]) == "pass"
    assert worst(["pass", "warn", "pass"]) == "warn"
    assert worst(["warn", "fail", "pass"]) == "fail"


# -- against a naive reference ------------------------------------------------------------

LOOKBACKS = (300, 3600, SIX_H)
ratio = st.one_of(st.none(), st.floats(-2, 1, allow_nan=False))
rows_strategy = st.lists(
    st.one_of(
        st.builds(
            lambda t, d: BudgetPolicyRow(budget_remaining_below=t, decision=d),
            st.floats(-1, 1),
            st.sampled_from(["pass", "warn", "fail"]),
        ),
        st.builds(
            lambda t, d: BudgetPolicyRow(budget_remaining_at_most=t, decision=d),
            st.floats(-1, 1),
            st.sampled_from(["pass", "warn", "fail"]),
        ),
        st.builds(
            lambda s, d: BudgetPolicyRow(alert_firing=s, decision=d),
            st.sampled_from(["page", "ticket"]),
            st.sampled_from(["pass", "warn", "fail"]),
        ),
        st.builds(
            lambda h, lb, d, e: BudgetPolicyRow(
                exhaustion_within=f"{h}h", lookback=f"{lb}s", decision=d, escalate=e
            ),
            st.integers(1, 2000),
            st.sampled_from(LOOKBACKS),
            st.sampled_from(["pass", "warn", "fail"]),
            st.lists(st.sampled_from(["a", "b", "c"]), max_size=2, unique=True),
        ),
    ),
    max_size=8,
)


def naive(rows: list[BudgetPolicyRow], f: SloFacts) -> tuple[str, set[str]]:
    """Each condition spelled out from its definition; decisions ranked by name."""
    rank = {"pass": 0, "warn": 1, "fail": 2}
    best, receivers = 0, set()
    r = f.remaining_ratio
    for row in rows:
        if row.budget_remaining_below is not None:
            holds = r is not None and r < row.budget_remaining_below
        elif row.budget_remaining_at_most is not None:
            holds = r is not None and r <= row.budget_remaining_at_most
        elif row.alert_firing is not None:
            holds = row.alert_firing in f.firing
        else:
            assert row.exhaustion_within is not None
            assert row.lookback is not None
            horizon = float(row.exhaustion_within[:-1]) * 3600
            burn = f.burn_rates[int(row.lookback[:-1])]
            if r is None:
                holds = False
            elif r <= 0:
                holds = True
            else:
                holds = burn is not None and burn > 0 and r * f.period_s / burn <= horizon
        if holds:
            best = max(best, rank[row.decision])
            receivers |= set(row.escalate)
    return ["pass", "warn", "fail"][best], receivers


@given(
    rows=rows_strategy,
    remaining=ratio,
    firing=st.lists(st.sampled_from(["page", "ticket"]), unique=True),
    burns=st.lists(
        st.one_of(st.none(), st.floats(0, 1e6, allow_nan=False)),
        min_size=len(LOOKBACKS),
        max_size=len(LOOKBACKS),
    ),
    order=st.randoms(use_true_random=False),
)
def test_decisions_match_a_naive_reference_whatever_the_row_order(
    rows: list[BudgetPolicyRow],
    remaining: float | None,
    firing: list[str],
    burns: list[float | None],
    order: object,
) -> None:
    f = facts(remaining, tuple(firing), dict(zip(LOOKBACKS, burns, strict=True)))
    got = decide_slo(rows, f)
    want_decision, want_receivers = naive(rows, f)
    assert got.decision == want_decision
    assert set(got.escalate) == want_receivers
    assert len(got.reasons) == sum(1 for r in got.reasons if r.startswith("api: "))
    shuffled = list(rows)
    order.shuffle(shuffled)  # type: ignore[attr-defined]
    again = decide_slo(shuffled, f)
    assert (again.decision, sorted(again.reasons)) == (got.decision, sorted(got.reasons))


# -- config --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "error"),
    [
        (
            "budget_policy: [{decision: warn}]",
            "$.budget_policy[0]: give exactly one of budget_remaining_below, "
            "budget_remaining_at_most, exhaustion_within, alert_firing",
        ),
        (
            "budget_policy: [{budget_remaining_below: 0.1, alert_firing: page, decision: fail}]",
            "$.budget_policy[0]: give exactly one of budget_remaining_below, "
            "budget_remaining_at_most, exhaustion_within, alert_firing",
        ),
        (
            "budget_policy: [{budget_remaining_below: 1.5, decision: warn}]",
            "$.budget_policy[0].budget_remaining_below: must be a finite ratio <= 1, got 1.5",
        ),
        (
            "budget_policy: [{budget_remaining_at_most: .nan, decision: warn}]",
            "$.budget_policy[0].budget_remaining_at_most: must be a finite ratio <= 1, got nan",
        ),
        (
            "budget_policy: [{alert_firing: page, lookback: 1h, decision: fail}]",
            "$.budget_policy[0].lookback: only with exhaustion_within",
        ),
        (
            "budget_policy: [{exhaustion_within: 0s, decision: warn}]",
            "$.budget_policy[0].exhaustion_within: must be longer than 0s",
        ),
        (
            "budget_policy: [{exhaustion_within: 1d, lookback: 5s, decision: warn}]",
            "$.budget_policy[0].lookback: must be whole seconds and at least the evaluation "
            "tick (10s), got 5s",
        ),
        (
            "budget_policy: [{exhaustion_within: 1d, lookback: 1000d, decision: warn}]",
            "$.budget_policy[0].lookback: at most 400d, got 1000d",
        ),
        (
            "budget_policy: [{alert_firing: page, decision: fail, escalate: [a, a]}]",
            "$.budget_policy[0].escalate[1]: 'a' twice",
        ),
        ("gate: {override_max_ttl: 0s}", "$.gate.override_max_ttl: must be longer than 0s"),
        ("gate: {override_max_ttl: 8d}", "$.gate.override_max_ttl: at most 7d, got 8d"),
    ],
)
def test_budget_policy_config_errors_carry_their_path(extra: str, error: str) -> None:
    with pytest.raises(ConfigError) as exc:
        parse_config(MINIMAL + extra + "\n")
    assert error in exc.value.errors


def test_an_slos_own_budget_policy_errors_carry_its_path() -> None:
    text = (
        "slos: [{name: api, service: shop, sli: availability, objective: 99,"
        " budget_policy: [{budget_remaining_below: 0.1, decision: maybe}]}]\n"
    )
    with pytest.raises(ConfigError) as exc:
        parse_config(text)
    assert exc.value.errors[0].startswith("$.slos[0].budget_policy[0].decision: ")
    text = (
        "slos: [{name: api, service: shop, sli: availability, objective: 99,"
        " budget_policy: [{decision: warn}]}]\n"
    )
    with pytest.raises(ConfigError) as exc:
        parse_config(text)
    assert exc.value.errors[0].startswith("$.slos[0].budget_policy[0]: give exactly one")


def test_lookbacks_become_windows_the_evaluator_keeps() -> None:
    cfg = parse_config(
        MINIMAL + "budget_policy: [{exhaustion_within: 1d, lookback: 45m, decision: warn},"
        " {exhaustion_within: 1d, decision: warn}]\n"
    )
    assert {2700, 3600} <= set(cfg.windows_s())
    assert 2700 not in parse_config(MINIMAL).windows_s()


# -- services ------------------------------------------------------------------------------

T0 = 1_700_000_000.0
GATED = """\
slos:
  - {name: shop-avail, service: shop, sli: availability, objective: 90}
  - name: shop-by-region
    service: shop
    sli: availability
    objective: 90
    group_by: [region]
    budget_policy: [{budget_remaining_at_most: 0, decision: fail, escalate: [pager]}]
  - {name: blog-avail, service: blog, sli: availability, objective: 90, budget_policy: []}
  - name: both
    objective: 90
    composite: [{slo: shop-avail}, {slo: blog-avail}]
evaluation: {tick: 10s}
receivers: [{type: console, name: pager}]
"""


def gated(bad_eu: int, bad_shop: int = 0) -> Evaluator:
    """100 shop events per region (eu with `bad_eu` failures, us all good, `bad_shop` of
    all shop events failed), 100 failed blog events, over (T0 - 100, T0]."""
    ev = Evaluator(parse_config(GATED))
    batch = []
    for i in range(100):
        for region, bad in (("eu", bad_eu), ("us", 0)):
            failed = i < bad or (region == "us" and i < bad_shop)
            batch.append(
                Event(
                    service="shop",
                    ts=T0 - 99 + i,
                    status=500 if failed else 200,
                    labels={"region": region},
                )
            )
        batch.append(Event(service="blog", ts=T0 - 99 + i, status=500))
    ev.ingest(ev.classifier.columns(batch))
    ev.advance(T0 + 1)
    return ev


def test_a_service_is_as_bad_as_its_worst_slo_and_every_group_counts() -> None:
    ev = gated(bad_eu=20)
    gate = service_gate(ev, "shop")
    assert gate is not None
    assert services(ev) == ["shop", "blog"]
    by = {(g.slo, g.group): g.decision for g in gate.slos}
    # 20 of 200 shop events bad: exactly the 10% budget, none left; eu alone: 20% bad
    assert by == {
        ("shop-avail", None): "fail",
        ("shop-by-region", "region=eu"): "fail",
        ("shop-by-region", "region=us"): "pass",
        ("shop-by-region", "__other__"): "pass",
    }
    assert gate.decision == "fail"
    assert "shop-by-region{region=eu}: error budget remaining -100% is at or below 0% -> fail" in (
        gate.reasons
    )
    assert gate.escalate == ("pager",)
    assert gate.evaluated_at == T0


def test_a_healthy_service_passes_and_an_empty_policy_never_holds_a_gate_back() -> None:
    ev = gated(bad_eu=0)
    shop = service_gate(ev, "shop")
    assert shop is not None
    assert shop.decision == "pass"
    assert shop.reasons == ()
    blog = service_gate(ev, "blog")  # every event failed, but its policy is empty
    assert blog is not None
    assert blog.decision == "pass"
    assert blog.slos[0].error_budget_remaining_ratio == pytest.approx(-9.0)
    assert service_gate(ev, "nobody") is None
    assert service_gate(ev, "both") is None  # a composite SLO has no service


def test_an_override_in_force_passes_and_keeps_the_reasons_it_sets_aside() -> None:
    ev = gated(bad_eu=20)
    o = Override(service="shop", reason="hotfix", ticket="OPS-1", set_at_s=50, expires_at_s=100)
    gate = service_gate(ev, "shop", o, now_s=40.5)
    assert gate is not None
    assert gate.decision == "pass"
    assert gate.override == o
    assert gate.reasons[0] == "override: hotfix (ticket OPS-1), expires in 1m; without it: fail"
    assert gate.reasons[1:] == service_gate(ev, "shop").reasons  # type: ignore[union-attr]
    expired = service_gate(ev, "shop", o, now_s=100)
    assert expired is not None
    assert expired.decision == "fail"
    assert expired.override is None


def test_no_data_passes() -> None:
    ev = Evaluator(parse_config(GATED))
    gate = service_gate(ev, "shop")
    assert gate is not None
    assert gate.decision == "pass"
    assert all(g.error_budget_remaining_ratio is None for g in gate.slos)
    assert gate.evaluated_at is None


def test_per_slo_budget_policy_replaces_the_top_level_one() -> None:
    cfg: Config = parse_config(GATED)
    assert cfg.budget_policy_of(cfg.slos[0]) == list(DEFAULT_BUDGET_POLICY)
    assert [r.decision for r in cfg.budget_policy_of(cfg.slos[1])] == ["fail"]
    assert cfg.budget_policy_of(cfg.slos[2]) == []


def test_all_gates_are_each_services_gate_read_at_once() -> None:
    ev = gated(bad_eu=20)
    o = Override(service="blog", reason="x", set_at_s=0, expires_at_s=10)
    got = all_gates(ev, {"blog": o}.get, now_s=5)
    assert [g.service for g in got] == services(ev) == ["shop", "blog"]
    assert got == [service_gate(ev, "shop"), service_gate(ev, "blog", o, now_s=5)]
    assert [g.decision for g in got] == ["fail", "pass"]
    assert got[1].override == o


MIXED = """\
slos:
  - {name: api-avail, service: api, sli: availability, objective: 99}
  - {name: api-slow, service: api, sli: latency, threshold_ms: 300, objective: 95}
  - name: api-by-region
    service: api
    sli: availability
    objective: 98
    group_by: [region]
    max_groups: 2
    budget_policy:
      - {exhaustion_within: 1d, lookback: 5m, decision: fail, escalate: [pager]}
      - {budget_remaining_below: 0.5, decision: warn}
  - {name: web-avail, service: web, sli: availability, objective: 90, period: 1d}
budget_policy:
  - {budget_remaining_at_most: 0, decision: fail}
  - {alert_firing: page, decision: fail, escalate: [pager]}
  - {budget_remaining_below: 0.8, decision: warn}
  - {alert_firing: ticket, decision: warn}
  - {exhaustion_within: 3d, lookback: 1h, decision: warn}
  - {exhaustion_within: 2h, decision: fail}
evaluation: {tick: 10s}
receivers: [{type: console, name: pager}]
"""


@settings(deadline=None)  # builds an evaluator per example: time is not what is tested
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["api", "web"]),
            st.integers(0, 3599),  # seconds before T0
            st.sampled_from([200, 500, 503]),
            st.integers(1, 2000),  # latency, ms
            st.sampled_from(["eu", "us", "ap", None]),
        ),
        max_size=120,
    ),
    st.integers(0, 4000),  # seconds after T0 the gate is read at
)
def test_a_gate_book_answers_as_every_row_applied_to_every_slo(
    events: list[tuple[str, int, int, int, str | None]], later_s: int
) -> None:
    """The book writes reasons only for the rows its vectorised check says hold: its
    answers equal `decide_slo` over every row of every SLO (group) in use."""
    ev = Evaluator(parse_config(MIXED))
    batch = [
        Event(
            service=svc,
            ts=T0 - ago,
            status=status,
            latency_ms=ms,
            labels={} if region is None else {"region": region},
        )
        for svc, ago, status, ms, region in events
    ]
    ev.ingest(ev.classifier.columns(batch))
    ev.advance(T0 + later_s)
    book = GateBook(ev)
    reading = book.read()
    assert book.services() == ["api", "web"]
    for service in book.services():
        gate = book.gate(service, reading)
        assert gate is not None
        columns = book.columns(service)
        assert columns is not None
        expected = tuple(
            decide_slo(ev.config.budget_policy_of(ev.slos[c]), book.facts(reading, c))
            for c in columns
        )
        assert gate.slos == expected
        assert gate.decision == worst([g.decision for g in expected])
