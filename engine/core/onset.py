"""When did it start? The onset of an incident, estimated from the evaluator's windows.

The rule
--------
An alert fires at tick T once its windows have burnt fast enough for long enough, so
the trouble began earlier. The estimate looks at the buckets of the window rings
before T, one SLO (one group) at a time, newest first, and takes the *run* of buckets
ending at T in which the SLO burnt its error budget at least as fast as it refills:

    burning(bucket) = total > 0 and (bad / total) / error_budget_ratio >= 1

(burn rate >= 1x, computed as the evaluator computes burn rates). Buckets without
events are passed over: they neither end the run nor start it. The run ends, going
back, at the first bucket with events that did not burn; the onset is the start of
the oldest burning bucket of the run. No burning bucket at all before T (the alert
fired on a window whose burn lies further back than the buckets read): no estimate
(None).

Resolution: the buckets are those of the finest window ring that still reaches back
`lookback_s` before T (`Evaluator.bucket_sums`), so the onset is a bucket boundary of
that ring: 10 s for lookbacks up to 2 h at the default tick, coarser for longer ones.
The newest bucket read is the one holding T, whole or still filling: on a coarse ring,
trouble that began less than a bucket before T is in it and in no older one.
The lookback is the alert's long window by default (the window it fired on), so the
onset is never earlier than T - long window, and a run that reaches that far is cut
there (the onset is then "at least that early").
"""

from __future__ import annotations

import numpy as np

from engine.core.arrays import I64
from engine.core.evaluator import Evaluator
from engine.core.transitions import Transition

__all__ = ["estimate_onset", "onset_of_buckets", "onset_of_transition"]


def onset_of_buckets(
    sums: I64, first_end_s: float, resolution_s: float, error_budget_ratio: float
) -> float | None:
    """The onset rule on consecutive buckets: `sums` (n, 2) (total, bad), oldest first,
    the first ending at `first_end_s`, each `resolution_s` long. The start of the oldest
    burning bucket of the run that ends with the newest bucket, or None."""
    total = sums[:, 0].astype(np.float64)
    bad = sums[:, 1].astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        burn = (bad / total) / error_budget_ratio
    has_events = total > 0
    burning = has_events & (burn >= 1.0)
    breaking = np.flatnonzero(has_events & ~burning)
    start = int(breaking[-1]) + 1 if len(breaking) else 0
    run = np.flatnonzero(burning[start:])
    if not len(run):
        return None
    oldest = start + int(run[0])
    return first_end_s + (oldest - 1) * resolution_s


def estimate_onset(
    ev: Evaluator, column: int, fired_at_s: float, lookback_s: float
) -> float | None:
    """The onset (module docstring) of the burn of the evaluator's `column` (an SLO, or
    one group of a grouped SLO) before `fired_at_s`, looking back at most `lookback_s`;
    None when the rings hold nothing to judge by, or the column is a composite's (its
    own ring columns stay empty: no burning bucket)."""
    # with the bucket holding the fired time, whole or not: on a coarse ring trouble
    # that began inside it is there and nowhere else (events counted after the fired
    # time, up to the tick, are in it too)
    got = ev.bucket_sums(
        fired_at_s - lookback_s,
        fired_at_s,
        np.array([column], dtype=np.int64),
        partial=True,
    )
    if got is None:
        return None
    cells, first_end_s, r = got
    onset = onset_of_buckets(cells[:, 0, :], first_end_s, r, float(ev.budget_ratio[column]))
    return None if onset is None else min(onset, fired_at_s)


def onset_of_transition(ev: Evaluator, tr: Transition) -> float | None:
    """`estimate_onset` for a firing transition: of its SLO (group), looking back over
    its long window (at least one bucket); None for a resolution or an unknown SLO."""
    if tr.state != "firing":
        return None
    for c, name in enumerate(ev.names):
        if name == tr.slo and ev.group_of(c) == tr.group:
            return estimate_onset(ev, c, tr.at, max(float(tr.long_window_s), 1.0))
    return None
