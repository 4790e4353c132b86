"""Composite SLOs: the weighted average of their members' good ratios (OpenSLO
`compositeWeight`) over the members with events, alerted on like any SLO."""

from __future__ import annotations

import math

import msgspec
import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from engine.core.config import Config, parse_config
from engine.core.decode import Event
from engine.core.evaluator import Evaluator, Transition
from engine.core.snapshot import SnapshotError, dump, load
from engine.errors import ConfigError
from tests.unit.core.reference import against_reference, composite_window, run_engine
from tests.unit.core.test_evaluator import dt, event, key, outage_events

OWN_TICKETS = (
    "[{severity: ticket, long: 15m, short: 3m, burn_rate: 1.5},"
    " {severity: ticket, long: 30m, short: 5m, burn_rate: 1}]"
)


def composite_config(
    weights: tuple[float, ...] = (1, 1, 1, 1, 1),
    own_policy: str | None = None,
    options: str = "",
    tick: str = "10s",
) -> Config:
    """The SLOs of tests.unit.core.test_evaluator.BASE with two composites between and
    after them: `api-both` (api-lat, api-avail) and `all` (the three plain SLOs)."""
    w = weights
    policy = f"\n    policy: {own_policy}" if own_policy is not None else ""
    return parse_config(
        f"""
slos:
  - {{name: api-avail, service: api, sli: availability, objective: 95, period: 1h}}
  - name: api-both
    composite: [{{slo: api-lat, weight: {w[0]}}}, {{slo: api-avail, weight: {w[1]}}}]
    objective: 95
    period: 1h{policy}
  - {{name: api-lat, service: api, sli: latency, threshold_ms: 100, objective: 90, period: 1h}}
  - {{name: db-avail, service: db, operation: "q.*", sli: availability, objective: 99,
      period: 1h}}
  - name: all
    composite:
      - {{slo: api-avail, weight: {w[2]}}}
      - {{slo: api-lat, weight: {w[3]}}}
      - {{slo: db-avail, weight: {w[4]}}}
    objective: 90
    period: 1h
policy:
  - {{severity: page, long: 5m, short: 1m, burn_rate: 4}}
  - {{severity: page, long: 10m, short: 2m, burn_rate: 2}}
  - {{severity: ticket, long: 30m, short: 5m, burn_rate: 1}}
evaluation: {{tick: {tick}, allowed_lateness: 30s{options}}}
"""
    )


COMPOSITES = (1, 4)
weight = st.sampled_from([0.5, 1.0, 2.0, 3.7, 10.0])


def _close(got: float, want: float | None) -> bool:
    if want is None:
        return math.isnan(got)
    return math.isclose(got, want, rel_tol=1e-12, abs_tol=1e-15)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    start=st.integers(1_600_000_000, 1_700_000_000),
    steps=st.lists(st.tuples(dt, event), min_size=1, max_size=80),
    cuts=st.lists(st.integers(0, 120), max_size=6),
    weights=st.tuples(weight, weight, weight, weight, weight),
    own_policy=st.sampled_from([None, OWN_TICKETS]),
    tick=st.sampled_from(["5s", "10s", "60s"]),
    options=st.sampled_from(
        ["", ", for: 30s", ", keep_firing_for: 1m", ", min_events: 5, min_bad_events: 2"]
    ),
)
def test_composites_alert_and_read_as_the_naive_reference_for_any_batch_split(
    start: int,
    steps: list[tuple[float, Event]],
    cuts: list[int],
    weights: tuple[float, ...],
    own_policy: str | None,
    tick: str,
    options: str,
) -> None:
    cfg = composite_config(weights, own_policy, options, tick)
    _, ref, ev, got = against_reference(cfg, start, steps, cuts)
    assume(not ref.near_boundary)
    assert [key(tr) for tr in got] == ref.transitions
    # what the composites read at the last tick, from the members' exact window sums
    assert ev.evaluated_at_s is not None
    ratios, burns, sums = ev.error_ratios(), ev.burn_rates(), ev.window_sums()
    budget = ev.budget_remaining()
    counts = ev.counts()
    for i in COMPOSITES:
        slo = cfg.slos[i]
        b = 1 - slo.objective / 100
        for k, w in enumerate(ev.windows_s):
            total, bad, ratio = composite_window(cfg, ref.events, i, ev.evaluated_at_s, w)
            assert tuple(sums[k, i]) == (total, bad)
            assert _close(float(ratios[k, i]), ratio), (slo.name, w)
            assert _close(float(burns[k, i]), None if ratio is None else ratio / b)
            if w == slo.period_s:
                assert _close(float(budget[i]), None if ratio is None else 1 - ratio / b)
        want = [ref.totals(ev.names.index(m.slo)) for m in slo.composite or ()]
        assert int(counts.events_total[i]) == sum(t for t, _ in want)
        assert int(counts.bad_events_total[i]) == sum(b for _, b in want)
    own = ev.state().counts
    assert not own.events_total[list(COMPOSITES)].any()  # no events of their own


@settings(max_examples=200, deadline=None)
@given(
    counts=st.lists(st.tuples(st.integers(0, 50), st.integers(0, 50)), min_size=3, max_size=3),
    weights=st.tuples(weight, weight, weight, weight, weight),
)
def test_the_composite_ratio_is_the_weighted_average_over_the_members_with_events(
    counts: list[tuple[int, int]], weights: tuple[float, ...]
) -> None:
    """One window's counts per member: api-avail (status), api-lat (latency), db-avail."""
    cfg = composite_config(weights)
    ts = 1_000_000.0
    events: list[Event] = []
    for (n, nbad), make in zip(
        counts,
        [
            lambda bad: Event(service="api", ts=ts, status=500 if bad else 200),
            lambda bad: Event(
                service="api", operation="x", ts=ts, status=200, latency_ms=500 if bad else 5
            ),
            lambda bad: Event(service="db", operation="q.r", ts=ts, status=500 if bad else 200),
        ],
        strict=True,
    ):
        events += [make(k < min(nbad, n)) for k in range(n)]
    ev = Evaluator(cfg)
    ev.advance(ts - 1)
    if events:
        ev.ingest(ev.classifier.columns(events))
    ev.advance(ts + 5)
    assert ev.evaluated_at_s is not None
    plain = [0, 2, 3]
    for i in COMPOSITES:
        for k in range(len(ev.windows_s)):
            member_sums = {j: tuple(int(x) for x in ev.window_sums()[k, j]) for j in plain}
            num = den = 0.0
            for m in cfg.slos[i].composite or ():
                tot, bad = member_sums[ev.names.index(m.slo)]
                if tot:
                    num += m.weight * (1 - bad / tot)
                    den += m.weight
            want = 1 - num / den if den else None
            assert _close(float(ev.error_ratios()[k, i]), want)
    # api-avail counts every api event (bad: the failed ones), api-lat those with a
    # latency (bad: the slow ones), db-avail the db ones: members with and without events
    (n0, b0), (n1, b1), (n2, b2) = ((n, min(n, b)) for n, b in counts)
    got = ev.counts()
    assert got.events_total[plain].tolist() == [n0 + n1, n1, n2]
    assert got.bad_events_total[plain].tolist() == [b0, b1, b2]


def test_a_window_where_no_member_has_events_is_no_data() -> None:
    cfg = composite_config()
    ev = Evaluator(cfg)
    ev.ingest(ev.classifier.columns([Event(service="db", operation="q.r", ts=1e6, status=500)]))
    ev.advance(1e6 + 5)
    ratios = ev.error_ratios()
    assert np.isnan(ratios[:, 1]).all()  # api-both: no api events
    assert (ratios[:, 4] == 1.0).all()  # all: db-avail alone, all bad
    assert math.isnan(ev.budget_remaining()[1])
    assert ev.budget_remaining()[4] == pytest.approx(1 - 1.0 / 0.1)
    assert ev.counts().events_total.tolist() == [0, 0, 0, 1, 1]


def test_a_composite_pages_on_the_weighted_average_of_its_members() -> None:
    """Requests are slow but succeed for 5 minutes: api-lat burns at up to 1 / 0.1 =
    10x, api-avail not at all, and api-both (weights 1:1, objective 95) at up to
    (1 + 0) / 2 / 0.05 = 10x."""
    slow = [
        msgspec.structs.replace(e, status=200, latency_ms=500.0 if e.status == 503 else 10.0)
        for e in outage_events(1_000_000, 900, 2, 300, 600)
    ]
    _, trs = run_engine(composite_config(), [slow])
    assert not [tr for tr in trs if tr.slo == "api-avail"]
    pages = [tr for tr in trs if tr.slo == "api-both" and tr.severity == "page"]
    assert [tr.state for tr in pages] == ["firing", "resolved"]
    fired = pages[0]
    assert fired.burn_rate_short is not None
    assert fired.burn_rate_long is not None
    assert fired.factor <= fired.burn_rate_long <= fired.burn_rate_short <= 10 + 1e-9


# -- config ----------------------------------------------------------------------------

VALID = """
slos:
  - {name: a, service: api, sli: availability, objective: 99}
  - {name: b, service: db, sli: latency, threshold_ms: 100, objective: 99}
"""


@pytest.mark.parametrize(
    ("entry", "path", "message"),
    [
        pytest.param(
            "{name: c, composite: [{slo: a}, {slo: x}], objective: 99}",
            "$.slos[2].composite[1].slo",
            'unknown SLO "x"',
            id="an unknown member",
        ),
        pytest.param(
            "{name: c, composite: [{slo: a}], objective: 99, period: {calendar: month}}",
            "$.slos[2].period",
            "a composite SLO's period is rolling",
            id="a calendar period on a composite",
        ),
        pytest.param(
            "{name: c, composite: [{slo: a, weight: 0}], objective: 99}",
            "$.slos[2].composite[0].weight",
            "must be > 0",
            id="a zero weight",
        ),
        pytest.param(
            "{name: c, composite: [{slo: a}, {slo: b, weight: -1}], objective: 99}",
            "$.slos[2].composite[1].weight",
            "must be > 0",
            id="a negative weight",
        ),
        pytest.param(
            "{name: c, composite: [{slo: a, weight: .inf}], objective: 99}",
            "$.slos[2].composite[0].weight",
            "must be finite",
            id="an infinite weight",
        ),
        pytest.param(
            "{name: c, composite: [{slo: a}, {slo: b}, {slo: a}], objective: 99}",
            "$.slos[2].composite[2].slo",
            'duplicate member "a" (first at composite[0])',
            id="a member twice",
        ),
        pytest.param(
            "{name: c, composite: [{slo: a}], objective: 99, match_labels: {region: eu}}",
            "$.slos[2].match_labels",
            "a composite SLO has no match_labels of its own",
            id="a composite with match_labels",
        ),
        pytest.param(
            "{name: c, composite: [], objective: 99}",
            "$.slos[2].composite",
            "at least one member is required",
            id="no members",
        ),
        pytest.param(
            "{name: c, service: api, composite: [{slo: a}], objective: 99}",
            "$.slos[2].service",
            "a composite SLO has no service of its own",
            id="a composite with a service",
        ),
        pytest.param(
            "{name: c, sli: availability, composite: [{slo: a}], objective: 99}",
            "$.slos[2].sli",
            "a composite SLO has no sli of its own",
            id="a composite with an sli",
        ),
        pytest.param(
            "{name: c, operation: GET, composite: [{slo: a}], objective: 99}",
            "$.slos[2].operation",
            "a composite SLO has no operation of its own",
            id="a composite with an operation",
        ),
        pytest.param(
            "{name: c, threshold_ms: 5, composite: [{slo: a}], objective: 99}",
            "$.slos[2].threshold_ms",
            "a composite SLO has no threshold_ms of its own",
            id="a composite with a threshold",
        ),
        pytest.param(
            "{name: c, composite: [{slo: a}], objective: 100}",
            "$.slos[2].objective",
            "must be > 0 and < 100",
            id="a composite's objective is checked like any",
        ),
        pytest.param(
            "{name: c, composite: [{slo: a}], objective: 99, period: 1m}",
            "$.slos[2].period",
            "must be at least 1h",
            id="a composite's period is checked like any",
        ),
        pytest.param(
            "{name: c, composite: [{slo: a}], objective: 99, policy: []}",
            "$.slos[2].policy",
            "at least one row is required",
            id="a composite's own policy is checked like any",
        ),
        pytest.param(
            "{name: c, composite: [{slo: a, wieght: 2}], objective: 99}",
            "$.slos[2].composite[0]",
            "unknown field `wieght`",
            id="a misspelt member field",
        ),
        pytest.param(
            "{name: c, objective: 99}",
            "$.slos[2].service",
            "required (or give `composite` for a composite SLO)",
            id="neither a selector nor members",
        ),
        pytest.param(
            "{name: c, service: api, objective: 99}",
            "$.slos[2].sli",
            "required (or give `composite` for a composite SLO)",
            id="a plain SLO without an sli",
        ),
    ],
)
def test_composite_mistakes_are_reported_at_their_path(entry: str, path: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(VALID + f"  - {entry}\n")
    errors = info.value.errors
    assert any(line.startswith(f"{path}: ") and message in line for line in errors), errors


def test_a_composite_of_a_composite_is_refused() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(
            VALID + "  - {name: c, composite: [{slo: a}], objective: 99}\n"
            "  - {name: d, composite: [{slo: c}, {slo: b}], objective: 99}\n"
        )
    assert info.value.errors == [
        '$.slos[3].composite[0].slo: "c" is a composite SLO; members must be plain SLOs'
    ]


def test_a_valid_composite_is_accepted_with_a_default_weight_of_1_in_yaml_and_toml() -> None:
    cfg = parse_config(
        VALID + "  - {name: c, composite: [{slo: b}, {slo: a, weight: 3}], objective: 99.5}\n"
    )
    toml = parse_config(
        """
[[slos]]
name = "a"
service = "api"
sli = "availability"
objective = 99
[[slos]]
name = "c"
objective = 99.5
composite = [{slo = "a", weight = 2.5}]
""",
        fmt="toml",
    )
    c = cfg.slos[2]
    assert c.composite is not None
    assert [(m.slo, m.weight) for m in c.composite] == [("b", 1.0), ("a", 3.0)]
    assert (c.service, c.sli, c.is_composite) == (None, None, True)
    assert toml.slos[1].composite is not None
    assert toml.slos[1].composite[0].weight == 2.5


def test_the_classifier_gives_a_composite_no_events() -> None:
    cfg = composite_config()
    ev = Evaluator(cfg)
    cols = ev.classifier.columns(outage_events(1_000_000, 10, 2, 0, 5))
    pairs = ev.classifier.pairs(cols)
    assert set(pairs.slo.tolist()) == {0, 2}


# -- snapshots -------------------------------------------------------------------------


def _firing(cfg: Config) -> Evaluator:
    ev = Evaluator(cfg)
    ev.ingest(ev.classifier.columns(outage_events(1_000_000, 900, 2, 0, 900)))
    assert ev.alerts().firing[list(COMPOSITES)].any()
    return ev


def test_a_snapshot_with_composites_restores_and_carries_on_alike() -> None:
    first = _firing(composite_config(own_policy=OWN_TICKETS))
    second = Evaluator(composite_config(own_policy=OWN_TICKETS))
    load(second, dump(first))
    assert dump(second) == dump(first)
    assert np.array_equal(second.alerts().firing, first.alerts().firing)
    tail = outage_events(1_000_900, 900, 2, 0, 300)
    want: list[Transition] = first.ingest(first.classifier.columns(tail)) + first.flush()
    got = second.ingest(second.classifier.columns(tail)) + second.flush()
    assert got == want
    assert any(tr.slo in ("api-both", "all") for tr in got)
    assert dump(second) == dump(first)


def _without_the_last_member_of_all(cfg: Config) -> Config:
    slos = [
        s
        if s.composite is None or s.name != "all"
        else msgspec.structs.replace(s, composite=s.composite[:2])
        for s in cfg.slos
    ]
    return msgspec.structs.replace(cfg, slos=slos)


@pytest.mark.parametrize(
    "here",
    [
        pytest.param(composite_config(weights=(1, 2, 1, 1, 1)), id="a weight changed"),
        pytest.param(_without_the_last_member_of_all(composite_config()), id="a member removed"),
    ],
)
def test_a_snapshot_of_another_composite_definition_is_refused(here: Config) -> None:
    blob = dump(_firing(composite_config()))
    other = Evaluator(here)
    before = dump(other)
    with pytest.raises(SnapshotError, match="composite SLOs differ"):
        load(other, blob)
    assert dump(other) == before


def test_a_config_without_composites_writes_the_shape_it_wrote_before() -> None:
    cfg = parse_config(VALID)
    ev = Evaluator(cfg)
    data = msgspec.msgpack.decode(dump(ev))
    assert set(data["shape"]) == {"slos", "windows_s", "levels", "policy", "tick_s"}
