"""What the evaluator hands out is read-only or a copy; state goes in all or nothing."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from engine.core.config import parse_config
from engine.core.decode import Event
from engine.core.evaluator import Evaluator, EvaluatorState
from engine.core.snapshot import dump
from tests.unit.core.test_evaluator import BASE, make_config, outage_events
from tests.unit.core.test_snapshot import busy_evaluator


def test_reject_counts_records_by_reason_next_to_the_time_rejections() -> None:
    ev = Evaluator(make_config())
    ev.reject("malformed")
    ev.reject("malformed", 2)
    ev.reject("wrong_type", 0)  # nothing to count: no reason appears
    ev.ingest(ev.classifier.columns([Event(service="api")]))  # no time: missing_ts
    assert ev.rejected_counts() == {"malformed": 3, "missing_ts": 1}
    assert ev.counts().rejected == {"malformed": 3, "missing_ts": 1}
    with pytest.raises(ValueError, match="negative"):
        ev.reject("malformed", -1)
    assert ev.rejected_counts() == {"malformed": 3, "missing_ts": 1}


def test_rejected_counts_is_a_copy() -> None:
    ev = Evaluator(make_config())
    ev.reject("malformed")
    ev.rejected_counts()["malformed"] = 100
    ev.rejected_counts().clear()
    assert ev.rejected_counts() == {"malformed": 1}


def test_arrays_handed_out_are_read_only() -> None:
    ev = busy_evaluator()
    alerts, counts, state = ev.alerts(), ev.counts(), ev.state()
    arrays = [
        *(getattr(alerts, f.name) for f in dataclasses.fields(alerts)),
        counts.events_total,
        counts.bad_events_total,
        ev.window_sums(),
        state.windows.sums,
        *(lv.buckets for lv in state.windows.levels),
        ev.factor,
        ev.budget_ratio,
    ]
    before = dump(ev)
    for array in arrays:
        with pytest.raises(ValueError, match="read-only"):
            array[...] = 0
    assert dump(ev) == before


def test_the_clock_cannot_be_set_from_outside() -> None:
    ev = busy_evaluator()
    for name in ("watermark_s", "next_tick_s", "evaluated_at_s"):
        with pytest.raises(AttributeError):
            setattr(ev, name, 0.0)


def test_alerts_and_counts_are_values_of_the_moment_they_were_taken() -> None:
    ev = Evaluator(make_config())
    trs = ev.ingest(ev.classifier.columns(outage_events(5000, 400, 2, 0, 400)))
    assert any(tr.state == "firing" for tr in trs)
    alerts, counts = ev.alerts(), ev.counts()
    ev.advance(5000 + 400 + 4000)  # everything resolves
    assert alerts.firing.any()
    assert not ev.alerts().firing.any()
    ev.ingest(ev.classifier.columns([Event(service="api", ts=9500.0)]))
    assert int(ev.counts().events_total[0]) == int(counts.events_total[0]) + 1


def test_firing_row_and_since_describe_the_firing_alerts() -> None:
    ev = Evaluator(make_config())
    trs = ev.ingest(ev.classifier.columns(outage_events(5000, 400, 2, 0, 400)))
    alerts = ev.alerts()
    fired = {(tr.slo, tr.severity): tr for tr in trs if tr.state == "firing"}
    for i, name in enumerate(ev.names):
        for j, sev in enumerate(ev.severities):
            tr = fired.get((name, sev))
            assert bool(alerts.firing[i, j]) == (tr is not None)
            if tr is not None:
                assert alerts.firing_since_s[i, j] == tr.at
                r = int(alerts.firing_row[i, j])
                assert ev.row_windows_s[r] == (tr.long_window_s, tr.short_window_s)


def test_state_loaded_into_a_new_evaluator_carries_on_identically() -> None:
    ev = busy_evaluator()
    other = Evaluator(make_config())
    other.load_state(ev.state())
    assert dump(other) == dump(ev)
    more = outage_events(1_000_900, 300, 2, 0, 100)
    assert ev.ingest(ev.classifier.columns(more)) == other.ingest(other.classifier.columns(more))
    assert dump(other) == dump(ev)


def state_with(state: EvaluatorState, part: str, **changes: object) -> EvaluatorState:
    inner = dataclasses.replace(getattr(state, part), **changes)
    return dataclasses.replace(state, **{part: inner})


@pytest.mark.parametrize(
    ("part", "changes", "match"),
    [
        pytest.param(
            "alerts", {"firing": np.zeros((3, 1), dtype=bool)}, "firing", id="alert shape"
        ),
        pytest.param(
            "alerts",
            {"firing_row": np.zeros((3, 2), dtype=np.int32)},
            "firing_row",
            id="alert dtype",
        ),
        pytest.param(
            "counts", {"events_total": np.zeros(4, dtype=np.int64)}, "events_total", id="counts"
        ),
        pytest.param("counts", {"rejected": {"too_late": -1}}, "negative", id="rejections"),
        pytest.param("counts", {"accepted_events": -1}, "negative", id="accepted"),
        pytest.param(
            "windows", {"sums": np.zeros((1, 3, 2), dtype=np.int64)}, "window sums", id="sums"
        ),
        pytest.param("windows", {"levels": ()}, "levels", id="levels"),
    ],
)
def test_a_state_that_does_not_fit_is_refused_and_changes_nothing(
    part: str, changes: dict[str, object], match: str
) -> None:
    state = state_with(busy_evaluator().state(), part, **changes)
    other = Evaluator(make_config())
    other.ingest(other.classifier.columns(outage_events(2000, 100, 1, 0, 50)))
    before = dump(other)
    with pytest.raises(ValueError, match=match):
        other.load_state(state)
    assert dump(other) == before


def test_state_of_an_evaluator_with_other_policy_rows_does_not_fit() -> None:
    one_row = parse_config(
        BASE.split("policy:")[0]
        + "policy:\n  - {severity: page, long: 5m, short: 1m, burn_rate: 4}\n"
        + "evaluation: {tick: 10s, allowed_lateness: 30s}\n"
    )
    other = Evaluator(one_row)
    before = dump(other)
    with pytest.raises(ValueError, match="expected"):
        other.load_state(busy_evaluator().state())
    assert dump(other) == before
