"""Backtesting: the one-pass evaluator of several candidates gives each exactly the
transitions of its own replay (hypothesis), episodes from bucket series and scores
against them (tables), and candidate and incident files with their errors."""

from __future__ import annotations

import msgspec
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.core.backtest import (
    Candidate,
    Episode,
    Series,
    bucket_seconds,
    candidate_config,
    combine,
    episodes_of,
    score,
    split_name,
)
from engine.core.backtest_inputs import parse_candidate, parse_incidents
from engine.core.config import Evaluation, PolicyRow, parse_config
from engine.core.decode import Event
from engine.core.evaluator import Evaluator, Transition
from engine.errors import ConfigError
from tests.unit.core.reference import run_engine, split, stamped

T0 = 1_700_000_000.0
CONFIG = """\
slos:
  - {name: api, service: api, sli: availability, objective: 99}
  - name: api-slow
    service: api
    sli: latency
    threshold_ms: 300
    objective: 95
    policy: [{severity: ticket, long: 10m, short: 1m, burn_rate: 2}]
  - {name: web, service: web, sli: availability, objective: 90, group_by: [region], max_groups: 2}
  - {name: web-all, service: web, sli: availability, objective: 90}
  - name: both
    objective: 95
    composite: [{slo: api}, {slo: web-all, weight: 2}]
policy:
  - {severity: page, long: 10m, short: 1m, burn_rate: 5}
  - {severity: ticket, long: 30m, short: 5m, burn_rate: 2}
evaluation: {tick: 10s}
corrections:
  - {name: upkeep, start: 1700000060, duration: 10m, slos: [api], reason: maintenance}
"""

ROWS = st.lists(
    st.builds(
        PolicyRow,
        severity=st.sampled_from(["page", "ticket"]),
        long=st.sampled_from(["5m", "10m", "30m"]),
        short=st.sampled_from(["1m", "2m"]),
        burn_rate=st.sampled_from([1.0, 2.0, 5.0, 10.0]),
    ),
    min_size=1,
    max_size=3,
)
EVALUATIONS = st.builds(
    Evaluation,
    tick=st.sampled_from(["10s", "10s", "5s"]),
    for_=st.sampled_from(["0s", "30s"]),
    keep_firing_for=st.sampled_from(["0s", "1m"]),
    min_events=st.sampled_from([0, 3]),
)
STEPS = st.lists(
    st.tuples(
        st.floats(0, 90),  # seconds after the previous event
        st.builds(
            Event,
            service=st.sampled_from(["api", "web"]),
            status=st.sampled_from([200, 200, 500, 503]),
            latency_ms=st.sampled_from([50.0, 500.0]),
            labels=st.sampled_from([{}, {"region": "eu"}, {"region": "us"}, {"region": "ap"}]),
            count=st.integers(1, 5),
        ),
    ),
    max_size=80,
)


def _by_candidate(members: tuple[int, ...], trs: list[Transition]) -> dict[int, list[Transition]]:
    out: dict[int, list[Transition]] = {i: [] for i in members}
    for tr in trs:
        slo, k = split_name(tr.slo)
        out[members[k]].append(msgspec.structs.replace(tr, slo=slo))
    return out


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(ROWS, EVALUATIONS), min_size=1, max_size=3),
    STEPS,
    st.lists(st.integers(0, 80), max_size=3),
)
def test_each_candidate_gets_the_transitions_of_its_own_replay(
    candidates: list[tuple[list[PolicyRow], Evaluation]],
    steps: list[tuple[float, Event]],
    cuts: list[int],
) -> None:
    cfg = parse_config(CONFIG)
    cands = [Candidate("config", None, cfg.evaluation)] + [
        Candidate(f"c{i}", tuple(rows), evaluation)
        for i, (rows, evaluation) in enumerate(candidates)
    ]
    events = stamped(T0, steps)
    batches = split(events, sorted(cuts))
    got: dict[int, list[Transition]] = {}
    counts: dict[int, tuple[list[int], list[int], list[int]]] = {}
    n = cfg.column_count()
    for combined in combine(cfg, cands):
        ev = combined.evaluator()
        trs = [tr for batch in batches for tr in ev.ingest(ev.classifier.columns(batch))]
        trs += ev.flush()
        got.update(_by_candidate(combined.candidates, trs))
        c = ev.counts()
        for k, i in enumerate(combined.candidates):
            part = slice(k * n, (k + 1) * n)
            counts[i] = (
                c.events_total[part].tolist(),
                c.bad_events_total[part].tolist(),
                c.excluded_events[part].tolist(),
            )
    for i, cand in enumerate(cands):
        ev, alone = run_engine(candidate_config(cfg, cand), batches)
        assert got[i] == alone, cand.name
        c = ev.counts()
        expected = (
            c.events_total.tolist(),
            c.bad_events_total.tolist(),
            c.excluded_events.tolist(),
        )
        assert counts[i] == expected, cand.name


def test_candidates_with_one_tick_share_one_evaluator() -> None:
    cfg = parse_config(CONFIG)
    rows = (PolicyRow(severity="page", long="5m", short="1m", burn_rate=3),)
    slower = msgspec.structs.replace(cfg.evaluation, for_="1m")
    finer = msgspec.structs.replace(cfg.evaluation, tick="5s")
    cands = [
        Candidate("config", None, cfg.evaluation),
        Candidate("a", rows, slower),
        Candidate("b", rows, finer),
    ]
    groups = combine(cfg, cands)
    assert [g.candidates for g in groups] == [(0, 1), (2,)]
    # 7 columns a copy: web has 2 groups and __other__
    assert groups[0].evaluator().for_s.tolist() == [0.0] * 7 + [60.0] * 7
    names = [s.name for s in groups[0].config.slos]
    assert names == [
        *("api@0", "api-slow@0", "web@0", "web-all@0", "both@0"),
        *("api@1", "api-slow@1", "web@1", "web-all@1", "both@1"),
    ]
    both1 = groups[0].config.slos[9]
    assert [m.slo for m in both1.composite or []] == ["api@1", "web-all@1"]
    # the candidate's rows replace every SLO's, its own included; the config keeps its own
    assert groups[0].config.slos[1].policy == list(cfg.slos[1].policy or [])
    assert groups[0].config.slos[6].policy == list(rows)
    assert groups[0].config.corrections[0].slos == ["api@0", "api@1"]
    assert groups[0].config.budget_policy == []
    assert Evaluator(groups[0].config).slos  # a config the evaluator takes


@pytest.mark.parametrize(
    ("tick_s", "bucket_s"), [(10, 60), (7, 63), (60, 60), (30, 60), (120, 120), (0.5, 60)]
)
def test_the_episode_bucket_is_the_tick_rounded_up_to_a_minute(
    tick_s: float, bucket_s: int
) -> None:
    assert bucket_seconds(tick_s) == bucket_s


def _episodes(
    rows: list[tuple[int, int, int]], span: int, min_consumed: float = 0.02
) -> list[Episode]:
    b = np.array([r[0] for r in rows], dtype=np.int64)
    t = np.array([r[1] for r in rows], dtype=np.int64)
    bad = np.array([r[2] for r in rows], dtype=np.int64)
    # budget 1 %, period 100 buckets of 60 s: a period's budget is 1 % of its events
    return episodes_of(
        b,
        t,
        bad,
        bucket_s=60,
        budget_ratio=0.01,
        period_s=6000,
        span_buckets=span,
        min_consumed=min_consumed,
    )


def test_an_episode_is_a_run_burning_at_1x_that_consumed_enough_budget() -> None:
    # buckets of 100 events, the period 100 buckets long
    rows = [(k, 100, 0) for k in range(100)]
    rows[10] = (10, 100, 5)  # 5x, 5 % of the budget: an episode
    rows[11] = (11, 100, 1)  # exactly 1x: still burning, the run goes on
    rows[40] = (40, 100, 1)  # 1x alone: 1 % of the budget, under 2 %
    rows[70] = (70, 100, 3)  # 3 % ...
    del rows[71:73]  # ... then two buckets without events (no break) ...
    rows[71] = (73, 100, 2)  # ... and more: one run of 5 %
    got = _episodes(rows, 100)
    # 98 buckets with events: 9,800 a period at that rate, a budget of 98 bad events
    assert [(e.start, e.end, e.bad_events, e.total_events) for e in got] == [
        (600, 720, 6, 200),
        (4200, 4440, 5, 200),
    ]
    assert [e.budget_consumed_ratio for e in got] == [6 / 98, 5 / 98]
    assert _episodes(rows, 100, min_consumed=0.06)[0].bad_events == 6
    assert len(_episodes(rows, 100, min_consumed=0.01)) == 3
    # a bucket under 1x ends a run: 0.9 % bad between two hot buckets
    rows2 = [(0, 100, 5), (1, 1000, 9), (2, 100, 5)]
    assert [e.start for e in _episodes(rows2, 100)] == [0, 120]


def test_a_short_recording_is_scaled_to_a_whole_period() -> None:
    # 10 buckets of 100 events, period 100 buckets: 10,000 events a period at that rate
    rows = [(k, 100, 3 if k == 5 else 0) for k in range(10)]
    (e,) = _episodes(rows, 10)
    assert e.budget_consumed_ratio == pytest.approx(0.03)


def test_series_keeps_one_candidates_columns_by_bucket() -> None:
    s = Series(bucket_s=60, columns=2)
    s.add(
        np.array([0, 1, 2, 0], dtype=np.int32),
        np.array([T0 + 1, T0 + 2, T0 + 3, T0 + 61]),
        np.array([1, 2, 4, 8], dtype=np.int64),
        np.array([0, 1, 4, 8], dtype=np.int64),
    )
    s.add(
        np.array([0], dtype=np.int32),
        np.array([T0 + 30]),
        np.array([16], dtype=np.int64),
        np.array([0], dtype=np.int64),
    )
    b, t, bad = s.of(0)
    first = int(np.ceil((T0 + 1) / 60)) - 1
    assert (b.tolist(), t.tolist(), bad.tolist()) == ([first, first + 1], [17, 8], [0, 8])
    assert s.of(2)[0].tolist() == []  # the next candidate's copy is not kept
    assert s.span() == (first, first + 1)


def _tr(sev: str, state: str, at: float) -> Transition:
    return Transition(
        slo="api",
        severity=sev,  # type: ignore[arg-type]
        state=state,  # type: ignore[arg-type]
        at=at,
        long_window_s=3600,
        short_window_s=300,
        burn_rate_long=None,
        burn_rate_short=None,
        factor=1.0,
        error_budget_remaining_ratio=None,
    )


def test_scores_detection_reset_recall_and_precision() -> None:
    episodes = [
        Episode(start=100, end=200),
        Episode(start=500, end=600),
        Episode(start=900, end=950),
    ]
    trs = [
        _tr("ticket", "firing", 50),  # before the first episode, into it: delay 0
        _tr("page", "firing", 130),
        _tr("page", "resolved", 260),
        _tr("ticket", "resolved", 230),
        _tr("page", "firing", 300),  # a false alarm
        _tr("page", "resolved", 320),
        _tr("ticket", "firing", 940),  # the last episode, firing at the end
    ]
    got = score("p", trs, episodes, end_s=1000)
    assert (got.alerts, got.pages) == (4, 2)
    assert got.time_firing_s == (260 - 50) + (320 - 300) + (1000 - 940)
    assert [(e.detected, e.detection_delay_s, e.reset_s) for e in got.episodes] == [
        (True, 0.0, 60.0),
        (False, None, None),
        (True, 40.0, None),
    ]
    assert got.recall == pytest.approx(2 / 3)
    assert got.precision == pytest.approx(3 / 4)
    none = score("p", [], episodes, end_s=1000)
    assert (none.recall, none.precision, none.time_firing_s) == (0.0, None, 0.0)
    # alerts without episodes are all false alarms
    assert score("p", trs, [], end_s=1000).precision == 0.0


def test_budget_alerts_and_escalations_are_not_scored() -> None:
    tr = msgspec.structs.replace(_tr("page", "firing", 10), kind="budget_exhausted")
    assert score("p", [tr], [], end_s=100).alerts == 0


def test_a_candidate_file_with_name_rows_and_evaluation() -> None:
    cfg = parse_config(CONFIG)
    data = b"""\
name: fast
policy:
  - {severity: page, long: 5m, short: 1m, burn_rate: 3}
evaluation: {for: 1m}
"""
    c = parse_candidate(data, "file-stem", cfg)
    assert c.name == "fast"
    assert c.policy == (PolicyRow(severity="page", long="5m", short="1m", burn_rate=3),)
    assert c.evaluation.for_s == 60
    assert c.evaluation.tick_s == cfg.evaluation.tick_s  # the rest is the config's
    stem = parse_candidate(
        b"policy: [{severity: ticket, long: 1h, short: 5m, burn_rate: 1}]", "x", cfg
    )
    assert (stem.name, stem.evaluation) == ("x", cfg.evaluation)


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"policy: []", "$.policy: at least one row is required"),
        (b"rows: []", "$: Object contains unknown field `rows`"),
        (b"name: config\npolicy: [{severity: page, long: 1h, short: 5m, burn_rate: 1}]", "$.name:"),
        (
            b"policy: [{severity: page, long: 1h, short: 5m, burn_rate: 1}]\nevaluation: {for: x}",
            "$.evaluation.for:",
        ),
        (
            b"policy: [{severity: page, long: 1h, short: 2h, burn_rate: 1}]",
            "$.policy[0]",
        ),
        (b"policy: [", "$: not valid YAML"),
    ],
)
def test_a_bad_candidate_file_names_the_path(data: bytes, error: str) -> None:
    with pytest.raises(ConfigError) as exc:
        parse_candidate(data, "x", parse_config(CONFIG))
    assert any(e.startswith(error) for e in exc.value.errors), exc.value.errors


def test_incidents_by_slo_and_group_and_their_errors() -> None:
    data = b"""[
      {"slo": "web", "group": "region=eu", "start": "2023-11-14T22:13:20Z", "end": 1700000600},
      {"slo": "api", "start": 1700000000, "end": 1700000060}
    ]"""
    got = parse_incidents(data, ["api", "web"])
    assert got == {
        ("web", "region=eu"): [Episode(start=T0, end=T0 + 600)],
        ("api", None): [Episode(start=T0, end=T0 + 60)],
    }
    bad = b"""[{"slo": "nope", "start": 1, "end": 2}, {"slo": "api", "start": 5, "end": 5},
               {"slo": "api", "start": "yesterday", "end": 5}]"""
    with pytest.raises(ConfigError) as exc:
        parse_incidents(bad, ["api"])
    assert exc.value.errors[0] == "$[0].slo: no SLO of the config is named 'nope'"
    assert exc.value.errors[1] == "$[1].end: must be after start"
    assert exc.value.errors[2].startswith("$[2]: ")
    with pytest.raises(ConfigError, match=r"\$\[0\]"):
        parse_incidents(b'[{"slo": "api"}]', ["api"])


def _naive_episodes(
    total: list[int], bad: list[int], ratio: float, budget: float, least: float
) -> list[tuple[int, int, int, int]]:
    """(first, last bucket index, bad, total) of each run of buckets burning at >= 1x
    that consumed at least `least` of `budget`, one bucket at a time."""
    out, run = [], []
    for i, (t, b) in enumerate([*zip(total, bad, strict=True), (0, -1)]):
        if b >= ratio * t:
            run.append(i)
            continue
        if run:
            rb, rt = sum(bad[j] for j in run), sum(total[j] for j in run)
            if rb / budget >= least:
                out.append((run[0], run[-1], rb, rt))
            run = []
    return out


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.integers(1, 50), st.integers(0, 50)), max_size=40),
    st.sampled_from([0.0, 0.01, 0.1]),
)
def test_episodes_are_the_runs_a_bucket_by_bucket_scan_finds(
    counts: list[tuple[int, int]], least: float
) -> None:
    total = [t for t, _ in counts]
    bad = [min(b, t) for t, b in counts]
    buckets = np.arange(len(counts), dtype=np.int64) * 2 + 7  # gaps: buckets without events
    got = episodes_of(
        buckets,
        np.array(total, dtype=np.int64),
        np.array(bad, dtype=np.int64),
        bucket_s=60,
        budget_ratio=0.1,
        period_s=3600.0,
        span_buckets=2 * len(counts) + 1,
        min_consumed=least,
    )
    if not counts:
        assert got == []
        return
    budget = 0.1 * sum(total) * 3600.0 / ((2 * len(counts) + 1) * 60)
    want = _naive_episodes(total, bad, 0.1, budget, least)
    assert [(e.start, e.end, e.bad_events, e.total_events) for e in got] == [
        (float(buckets[i] * 60), float((buckets[j] + 1) * 60), b, t) for i, j, b, t in want
    ]
