"""Onset estimation (engine.core.onset): the rule on constructed buckets, and on the
buckets of a real evaluator's rings."""

from __future__ import annotations

import math

import msgspec
import numpy as np
import pytest

from engine.core.config import parse_config
from engine.core.decode import Event
from engine.core.evaluator import Evaluator
from engine.core.onset import estimate_onset, onset_of_buckets, onset_of_transition

B = 0.25  # an error budget ratio exact in binary: objective 75%
END = 1000.0  # the first bucket ends here; buckets are 10 s


def buckets(*cells: tuple[int, int]) -> np.ndarray[tuple[int, int], np.dtype[np.int64]]:
    return np.array(cells, dtype=np.int64).reshape(len(cells), 2)


@pytest.mark.parametrize(
    ("cells", "onset"),
    [
        pytest.param([(4, 0), (4, 1), (4, 4)], 990.0 + 10, id="burn from the second bucket on"),
        pytest.param([(4, 2), (4, 1), (4, 4)], 990.0, id="burning since the first bucket read"),
        pytest.param([(4, 1), (4, 0), (4, 4)], 1010.0, id="only the last bucket burns"),
        pytest.param([(4, 2), (0, 0), (4, 4)], 990.0, id="an empty bucket does not end the run"),
        pytest.param([(0, 0), (0, 0), (4, 4)], 1010.0, id="leading empty buckets start nothing"),
        pytest.param([(4, 4), (4, 0), (0, 0)], None, id="no burning bucket at the end of the run"),
        pytest.param([(4, 0), (4, 0)], None, id="nothing burns"),
        pytest.param([], None, id="no buckets"),
        pytest.param([(100, 25)], 990.0, id="exactly 1x burns"),
        pytest.param([(100, 24), (100, 25)], 1000.0, id="just under 1x does not"),
    ],
)
def test_onset_is_the_start_of_the_run_of_burning_buckets(
    cells: list[tuple[int, int]], onset: float | None
) -> None:
    assert onset_of_buckets(buckets(*cells), END, 10.0, B) == onset


def test_onset_honours_the_resolution() -> None:
    assert onset_of_buckets(buckets((1, 0), (1, 1), (1, 1)), 3600.0, 60.0, 0.5) == 3600.0


CONFIG = """
slos:
  - {name: api, service: api, sli: availability, objective: 75, period: 1h}
policy:
  - {severity: page, long: 5m, short: 1m, burn_rate: 2}
evaluation: {tick: 10s, allowed_lateness: 30s}
"""
T0 = 1_700_000_000.0


def feed(ev: Evaluator, ts: float, status: int, n: int) -> None:
    e = Event(service="api", operation="GET /", status=status, latency_ms=5, count=n, ts=ts)
    ev.ingest(ev.classifier.columns([e]))


def test_the_evaluator_pages_after_the_onset_it_estimates() -> None:
    ev = Evaluator(parse_config(CONFIG))
    for k in range(30):  # 5 minutes good
        feed(ev, T0 + k * 10 + 1, 200, 8)
    fired = []
    for k in range(30, 60):  # then half bad (2x), from T0 + 300 on
        fired += ev.ingest(ev.classifier.columns([]))
        feed(ev, T0 + k * 10 + 1, 200, 4)
        feed(ev, T0 + k * 10 + 2, 500, 4)
    fired += ev.advance(T0 + 700)
    page = next(t for t in fired if t.state == "firing")
    assert page.at > T0 + 300
    assert onset_of_transition(ev, page) == T0 + 300
    assert estimate_onset(ev, 0, page.at, 60.0) == pytest.approx(page.at - 60)  # cut short
    assert onset_of_transition(ev, msgspec.structs.replace(page, state="resolved")) is None


def test_no_estimate_before_the_first_evaluation() -> None:
    ev = Evaluator(parse_config(CONFIG))
    assert estimate_onset(ev, 0, T0, 300.0) is None


LONG = """
slos:
  - {name: api, service: api, sli: availability, objective: 99, period: 1d}
policy:
  - {severity: page, long: 6h, short: 30m, burn_rate: 6}
evaluation: {tick: 10s, allowed_lateness: 30s}
"""


def test_a_long_windows_onset_counts_the_coarse_bucket_still_filling() -> None:
    """A 6h window's ring has coarse buckets: trouble that began inside the newest one,
    not yet whole at the fired time, is in the estimate (to that bucket's start)."""
    ev = Evaluator(parse_config(LONG))
    start = T0 - 7 * 3600
    for k in range(7 * 360):  # 7 hours good, a request every 10 s
        feed(ev, start + k * 10 + 1, 200, 1)
    ev.advance(T0 + 1)
    r = ev.bucket_sums(T0 - 6 * 3600, T0, np.array([0], dtype=np.int64))
    assert r is not None
    res = r[2]
    assert res > 10  # a coarse ring
    # the outage begins a quarter into a coarse bucket, the page fires before it ends
    out = (math.floor(T0 / res) + 1.25) * res
    for k in range(4):
        feed(ev, out + k * 5 + 1, 500, 5)
    fired_at = out + 0.5 * res
    ev.advance(fired_at + 1)
    onset = estimate_onset(ev, 0, fired_at, 6 * 3600)
    assert onset is not None
    assert out - res <= onset <= out
