"""The ingest pipeline: the same records give the same counts and transitions whichever
caller feeds them (live batches of values, replay blocks of lines) and however the
stream is split; rejected records are counted on the evaluator and named by index."""

from __future__ import annotations

import msgspec
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.core.config import Config, parse_config
from engine.core.evaluator import Evaluator, Transition
from engine.core.ingest import Ingestor, Rejection

CONFIG = """
slos:
  - {name: api-avail, service: api, sli: availability, objective: 95, period: 1h}
  - {name: api-lat, service: api, sli: latency, threshold_ms: 100, objective: 90, period: 1h}
policy:
  - {severity: page, long: 5m, short: 1m, burn_rate: 4}
  - {severity: ticket, long: 30m, short: 5m, burn_rate: 1}
evaluation: {tick: 10s, allowed_lateness: 30s}
"""


def config() -> Config:
    return parse_config(CONFIG)


def record(ts: float, status: int, latency_ms: float = 50.0, count: int = 1) -> bytes:
    return msgspec.json.encode(
        {"service": "api", "ts": ts, "status": status, "latency_ms": latency_ms, "count": count}
    )


def key(tr: Transition) -> tuple[str, str, str, float]:
    return (tr.slo, tr.severity, tr.state, tr.at)


def outcome(ev: Evaluator, transitions: list[Transition]) -> tuple[object, ...]:
    """What a caller can observe: transitions, per-window sums, budget, rejections."""
    return (
        [key(tr) for tr in transitions],
        np.nan_to_num(ev.error_ratios(), nan=-1.0).round(12).tolist(),
        np.nan_to_num(ev.budget_remaining(), nan=-1.0).round(12).tolist(),
        ev.rejected_counts(),
    )


def test_rejected_records_are_named_by_index_and_counted() -> None:
    ev = Evaluator(config())
    ing = Ingestor(ev)
    values = [record(1000.0, 200), b"{not json", None, b'{"ts": 1001}', record(1002.0, 500)]
    result = ing.records(values, now_s=1010.0)
    assert result.records == 5
    assert [(r.record, r.reason) for r in result.rejections] == [
        (1, "malformed"),
        (2, "malformed"),
        (3, "missing_service"),
    ]
    assert all(isinstance(r, Rejection) and r.detail for r in result.rejections)
    assert ev.rejected_counts() == {"malformed": 2, "missing_service": 1}


def test_record_times_are_the_fallback_only_for_events_without_ts() -> None:
    ev = Evaluator(config())
    calls: list[int] = []

    def times() -> np.ndarray:  # type: ignore[type-arg]
        calls.append(1)
        return np.array([2000.0, 2001.0])

    with_ts = [record(1000.0, 200), record(1001.0, 200)]
    Ingestor(ev).records(with_ts, now_s=1010.0, record_times=times)
    assert calls == []
    without_ts = [b'{"service": "api", "status": 500}', record(1002.0, 200)]
    result = Ingestor(ev).records(without_ts, now_s=2010.0, record_times=times)
    assert calls == [1]
    assert result.rejections == []
    assert "missing_ts" not in ev.rejected_counts()


def test_replay_rejects_events_without_ts_it_has_no_record_time_for() -> None:
    ev = Evaluator(config())
    Ingestor(ev).json_lines(b'{"service": "api", "status": 500}\n' + record(5.0, 200) + b"\n")
    assert ev.rejected_counts() == {"missing_ts": 1}


def test_a_live_fetch_is_ordered_by_event_time() -> None:
    """Records of a partition a little behind come later in a fetch than newer ones of
    another: ordered by event time, none of them is judged late."""
    ev = Evaluator(config())
    ahead = [record(1100.0 + i, 200) for i in range(5)]
    behind = [record(1000.0 + i, 500) for i in range(5)]
    Ingestor(ev).records(ahead + behind, now_s=1200.0)
    assert "too_late" not in ev.rejected_counts()
    unordered = Evaluator(config())
    Ingestor(unordered).records(ahead + behind, now_s=1200.0, by_event_time=False)
    assert unordered.rejected_counts() == {"too_late": 5}


stream = st.lists(
    st.tuples(
        st.floats(0, 20),  # time step
        st.sampled_from([200, 404, 500, 503]),
        st.floats(0, 300),
        st.integers(1, 3),
        st.booleans(),  # a bad record in its place
    ),
    min_size=1,
    max_size=120,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stream, st.lists(st.integers(1, 40), min_size=1, max_size=10))
def test_values_and_lines_give_the_same_result_for_any_split(
    items: list[tuple[float, int, float, int, bool]], cuts: list[int]
) -> None:
    t = 10_000.0
    values: list[bytes] = []
    for step, status, latency, count, bad in items:
        t += step
        values.append(b'{"service": 1}' if bad else record(t, status, latency, count))

    whole = Evaluator(config())
    got_whole = Ingestor(whole).records(values, by_event_time=False).transitions
    got_whole += whole.flush()

    split = Evaluator(config())
    ing = Ingestor(split)
    got_split: list[Transition] = []
    start, i = 0, 0
    while start < len(values):
        end = start + cuts[i % len(cuts)]
        got_split += ing.records(values[start:end], by_event_time=False).transitions
        start, i = end, i + 1
    got_split += split.flush()

    lines = Evaluator(config())
    got_lines = Ingestor(lines).json_lines(b"\n".join(values) + b"\n").transitions
    got_lines += lines.flush()

    assert outcome(split, got_split) == outcome(whole, got_whole)
    assert outcome(lines, got_lines) == outcome(whole, got_whole)
