"""Per-SLO `policy:`: an SLO with its own rows alerts exactly as if they were the only
policy and it the only SLO, while the evaluator still evaluates every SLO at once."""

from __future__ import annotations

import msgspec
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.core.config import Config, PolicyRow, parse_config
from engine.core.decode import Event
from engine.core.evaluator import Evaluator, Transition
from engine.core.snapshot import SnapshotError, dump, load
from tests.unit.core.reference import against_reference, run_engine
from tests.unit.core.test_evaluator import BASE, dt, event, key, outage_events

OWN_POLICIES = {
    "reversed pages": "[{severity: page, long: 10m, short: 2m, burn_rate: 2},"
    " {severity: page, long: 5m, short: 1m, burn_rate: 4}]",
    "tickets only": "[{severity: ticket, long: 15m, short: 3m, burn_rate: 1.5},"
    " {severity: ticket, long: 30m, short: 5m, burn_rate: 1}]",
    "one page row": "[{severity: page, long: 20m, short: 4m, budget_consumed_ratio: 0.2}]",
    "the top-level rows spelled otherwise": "[{severity: page, long: 300s, short: 60s,"
    " burn_rate: 4}, {severity: page, long: 600s, short: 2m, burn_rate: 2},"
    " {severity: ticket, long: 1800s, short: 5m, burn_rate: 1}]",
}
"""Policies for the SLOs of BASE (top-level: pages 5m/1m x4 and 10m/2m x2, ticket
30m/5m x1): the same page rows in the other order, a tier dropped, a window no other
row has, and rows equal to the top-level ones but for their spelling."""


def with_policies(policies: list[str | None], extra: str = "") -> Config:
    """BASE with `policies[i]` (a YAML flow list) as the own policy of SLO i (None: none)."""
    doc = msgspec.yaml.decode(BASE + f"evaluation: {{tick: 10s, allowed_lateness: 30s{extra}}}\n")
    for slo, policy in zip(doc["slos"], policies, strict=True):
        if policy is not None:
            slo["policy"] = msgspec.yaml.decode(policy)
    return parse_config(msgspec.yaml.encode(doc))


def alone(cfg: Config, i: int) -> Config:
    """SLO i by itself, its rows as the top-level policy."""
    slo = cfg.slos[i]
    return msgspec.structs.replace(
        cfg,
        slos=[msgspec.structs.replace(slo, policy=None)],
        policy=list(cfg.policy_of(slo)),
    )


policy_choice = st.sampled_from([None, *OWN_POLICIES.values()])


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    start=st.integers(1_600_000_000, 1_700_000_000),
    steps=st.lists(st.tuples(dt, event), min_size=1, max_size=80),
    cuts=st.lists(st.integers(0, 120), max_size=6),
    policies=st.lists(policy_choice, min_size=3, max_size=3),
    options=st.sampled_from(
        ["", ", for: 30s", ", keep_firing_for: 1m", ", min_events: 5, min_bad_events: 2"]
    ),
)
def test_each_slo_alerts_as_if_its_own_rows_were_the_only_policy_and_it_the_only_slo(
    start: int,
    steps: list[tuple[float, Event]],
    cuts: list[int],
    policies: list[str | None],
    options: str,
) -> None:
    cfg = with_policies(policies, options)
    events, ref, _, got = against_reference(cfg, start, steps, cuts)
    for i, slo in enumerate(cfg.slos):
        _, want = run_engine(alone(cfg, i), [events])
        assert [tr for tr in got if tr.slo == slo.name] == want, slo.name
    assert [key(tr) for tr in got] == ref.transitions


def test_the_rows_are_the_union_and_the_mask_says_whose_they_are() -> None:
    cfg = with_policies([OWN_POLICIES["reversed pages"], None, OWN_POLICIES["tickets only"]])
    ev = Evaluator(cfg)
    assert [(r.severity, r.long_s, r.short_s) for r in ev.rows] == [
        ("page", 300, 60),
        ("page", 600, 120),
        ("ticket", 1800, 300),
        ("ticket", 900, 180),
    ]
    assert ev.row_mask.tolist() == [
        [True, True, False, False],
        [True, True, True, False],
        [False, False, True, True],
    ]
    assert ev.row_rank.tolist() == [[1, 0, 4, 4], [0, 1, 2, 4], [4, 4, 1, 0]]
    assert ev.severities == ("page", "ticket")
    assert not ev.row_mask.flags.writeable
    assert {180, 900} <= set(ev.windows_s)


def test_top_level_rows_no_slo_uses_keep_no_windows() -> None:
    own = OWN_POLICIES["one page row"]
    cfg = with_policies([own, own, own])
    ev = Evaluator(cfg)
    assert [(r.long_s, r.short_s) for r in ev.rows] == [(1200, 240)]
    assert ev.severities == ("page",)
    assert ev.windows_s == (240, 1200, 3600)  # the rows' windows and the 1h periods
    assert cfg.windows_s() == list(ev.windows_s)


def test_an_slo_without_ticket_rows_never_opens_a_ticket() -> None:
    cfg = with_policies([OWN_POLICIES["reversed pages"], None, None])
    _, trs = run_engine(cfg, [outage_events(1_000_000, 3600, 2, 600, 2400)])
    fired = {(tr.slo, tr.severity) for tr in trs if tr.state == "firing"}
    assert ("api-avail", "page") in fired
    assert ("api-avail", "ticket") not in fired
    assert ("api-lat", "ticket") in fired  # the same failures, under the top-level policy


def test_the_row_reported_is_the_first_that_holds_in_the_slos_own_order() -> None:
    cfg = with_policies([OWN_POLICIES["reversed pages"], None, None])
    _, trs = run_engine(cfg, [outage_events(1_000_000, 1800, 2, 0, 900)])
    pages = {
        tr.slo: (tr.long_window_s, tr.short_window_s)
        for tr in trs
        if tr.severity == "page" and tr.state == "firing"
    }
    # all failing from the first event: both page rows hold at once; each SLO names
    # the first in its own order
    assert pages == {"api-avail": (600, 120), "api-lat": (300, 60)}


def test_the_memory_estimate_counts_the_windows_of_the_slos_own_rows() -> None:
    plain = with_policies([None, None, None])
    own = with_policies([None, None, OWN_POLICIES["tickets only"]])
    assert own.window_bytes_per_slo() > plain.window_bytes_per_slo()
    for cfg in (plain, own):
        assert cfg.window_bytes() == Evaluator(cfg).windows.nbytes()


def _firing_evaluator(cfg: Config) -> Evaluator:
    ev = Evaluator(cfg)
    ev.ingest(ev.classifier.columns(outage_events(1_000_000, 900, 2, 0, 900)))
    assert ev.alerts().firing.any()
    return ev


def test_a_snapshot_with_own_policies_restores_and_carries_on_alike() -> None:
    policies = [OWN_POLICIES["reversed pages"], None, OWN_POLICIES["tickets only"]]
    first = _firing_evaluator(with_policies(policies))
    second = Evaluator(with_policies(policies))
    load(second, dump(first))
    assert dump(second) == dump(first)
    tail = outage_events(1_000_900, 900, 2, 0, 300)
    want: list[Transition] = first.ingest(first.classifier.columns(tail)) + first.flush()
    got = second.ingest(second.classifier.columns(tail)) + second.flush()
    assert got == want
    assert dump(second) == dump(first)


@pytest.mark.parametrize(
    ("saved", "here"),
    [
        pytest.param(
            [OWN_POLICIES["reversed pages"], None, None],
            [None, None, None],
            id="an own policy removed",
        ),
        pytest.param(
            [None, None, None],
            [OWN_POLICIES["reversed pages"], None, None],
            id="an own policy added with rows the config has already",
        ),
        pytest.param(
            [OWN_POLICIES["reversed pages"], None, None],
            [None, OWN_POLICIES["reversed pages"], None],
            id="the same own policy on another SLO",
        ),
        pytest.param(
            [OWN_POLICIES["reversed pages"], None, None],
            [OWN_POLICIES["reversed pages"].replace("burn_rate: 2", "burn_rate: 3"), None, None],
            id="a factor of an own row changed",
        ),
    ],
)
def test_a_snapshot_taken_with_other_own_policies_is_refused(
    saved: list[str | None], here: list[str | None]
) -> None:
    blob = dump(_firing_evaluator(with_policies(saved)))
    other = Evaluator(with_policies(here))
    before = dump(other)
    with pytest.raises(SnapshotError, match="per-SLO policies differ"):
        load(other, blob)
    assert dump(other) == before


def test_a_config_without_own_policies_writes_the_shape_it_wrote_before() -> None:
    """Old state files (no per-SLO field) still load, and new ones read in old engines."""
    data = msgspec.msgpack.decode(dump(_firing_evaluator(with_policies([None, None, None]))))
    assert set(data["shape"]) == {"slos", "windows_s", "levels", "policy", "tick_s"}


def test_a_firing_row_the_slo_does_not_have_is_refused_as_corrupt() -> None:
    cfg = with_policies([OWN_POLICIES["reversed pages"], None, OWN_POLICIES["tickets only"]])
    ev = _firing_evaluator(cfg)
    data = msgspec.msgpack.decode(dump(ev))
    rows = np.frombuffer(data["firing_row"]["data"], dtype=np.int64).copy().reshape(3, 2)
    rows[2, 1] = 0  # SLO 2's ticket alert on row 0, a page row of the other SLOs
    data["firing_row"]["data"] = rows.tobytes()
    other = Evaluator(cfg)
    before = dump(other)
    with pytest.raises(SnapshotError, match="a row the SLO does not have"):
        load(other, msgspec.msgpack.encode(data))
    assert dump(other) == before


def test_the_row_key_ignores_the_spelling_of_the_windows() -> None:
    a = PolicyRow(severity="page", long="1h", short="5m", burn_rate=14.4)
    b = PolicyRow(severity="page", long="60m", short="300s", burn_rate=14.4)
    assert a != b
    assert a.key == b.key
