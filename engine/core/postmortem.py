"""Postmortems: an incident with its impact, detection times and chart series, as values.

Theory of operation
-------------------
A postmortem is built from an `Incident` (engine.core.incidents) and a *bucket reader*:
a function with the signature of `Evaluator.bucket_sums` that answers the (total, bad)
counts of some columns in the whole buckets of (start, end], oldest first, with the
end of the first bucket and the resolution r (or None when it holds nothing that far
back). The running engine reads its window rings (`Evaluator.bucket_sums`, at the
resolution of the finest ring that still reaches back); an offline replay reads the
exact counts it gathered per tick (engine.runtime.postmortem). So both forms are the
same computation over different counts, and agree wherever the resolutions do.

The numbers, per SLO of the incident (all the columns of a grouped SLO together):

- Impact interval: (start, end] with start = `onset_at` (the opening page's
  `opened_at` when no onset was estimated) and end = `closed_at`, or the end of the
  data (the last evaluated tick) for an incident still open.
- Counts over an interval (`range_total`) are the reader's whole buckets at the
  resolution r of the ring that reaches back to its start, over (ceil(start/r) * r,
  floor(end/r) * r], then the rest up to `end`: from a finer ring when one still
  reaches back there; else the next bucket of r as counted so far less its part after
  `end`, read from a finer ring reaching back to `end` (the whole bucket, rounded
  outward, when none does). Offline r is the tick, which divides onset and close:
  exact. Live, the older the interval, the coarser r (an hour for a 30-day period);
  the start is rounded inward to r, and the end is exact while a finer ring reaches
  back to it (the 1 s or 10 s ring of the shortest windows: minutes to an hour).
- `bad_events`, `total_events`: the events of the SLO in the impact interval.
- `error_budget_consumed_ratio`: bad_events / (error_budget_ratio x period_events),
  where period_events are the SLO's events in the period of its length ending at the
  impact's end, (end - period, end] (for a calendar SLO the period's nominal length):
  the share of a whole period's budget, at the traffic that period held, that the
  incident burnt. None when the period holds no events or the reader no longer
  reaches back that far.
- `resolution_s`: r of the impact counts' start (the period's may be coarser: the
  budget consumed is then a ratio of counts at two resolutions).

Chart series, per SLO, from (start - pad) to (end + pad) with pad = max(5 min, a
quarter of the impact interval), clipped to the end of the data: for each of the SLO's
policy rows its long and short window's burn rate at each bucket end t, (bad / total)
/ error_budget_ratio over the whole buckets of (t - W, t] (W rounded up to whole
buckets; None where the window holds no events), with the row's factor as threshold;
and the budget remaining, 1 - bad / (error_budget_ratio x total) over (t - period, t].
Each series has its own times (its reader's resolution) and at most MAX_POINTS points
(every k-th bucket end beyond that). These are the windows' exact sums at each time,
not a record of what the evaluator computed then (whose long windows are exact only
to within a bucket of their ring, engine.core.windows).

Contributing changes are the incident's timeline entries of kind `change` at or before
the impact's start (changes the attribution window linked to its alerts, or taken in
while it was open).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Final, Literal, Protocol

import msgspec
import numpy as np

from engine.core.arrays import I64
from engine.core.config_types import Severity
from engine.core.evaluator import Evaluator
from engine.core.incident_values import EntryKind, Incident, Scalar, TimelineEntry

__all__ = [
    "MAX_POINTS",
    "PAD_MIN_S",
    "BucketReader",
    "ChartLine",
    "Detection",
    "Entry",
    "Postmortem",
    "PostmortemIncident",
    "SloCharts",
    "SloImpact",
    "burn_series",
    "impact_interval",
    "postmortem_of",
    "range_total",
    "selected",
]

MAX_POINTS: Final = 2000
PAD_MIN_S: Final = 300.0


class BucketReader(Protocol):
    """`Evaluator.bucket_sums`' signature: (start, end, columns) -> ((n_buckets,
    len(columns), 2) (total, bad), end of the first bucket, resolution), or None."""

    def __call__(
        self, start_s: float, end_s: float, columns: I64, *, partial: bool = False
    ) -> tuple[I64, float, int] | None: ...


Source = Literal["live", "replay"]


class SloImpact(msgspec.Struct, frozen=True, kw_only=True):
    slo: str
    bad_events: int
    total_events: int
    error_budget_consumed_ratio: float | None
    period_events: int | None
    resolution_s: int


class Detection(msgspec.Struct, frozen=True, kw_only=True):
    onset_at: float | None
    fired_at: float
    acknowledged_at: float | None
    resolved_at: float | None
    time_to_detect_s: float | None
    time_to_acknowledge_s: float | None
    time_to_resolve_s: float | None


class ChartLine(msgspec.Struct, frozen=True, kw_only=True):
    """One line of a chart: values (None: no data) at times (epoch seconds)."""

    label: str
    times: list[float]
    values: list[float | None]
    threshold: float | None = None
    severity: Severity | None = None
    window_s: int | None = None


class SloCharts(msgspec.Struct, frozen=True, kw_only=True):
    slo: str
    burn_rates: list[ChartLine]
    budget_remaining: ChartLine | None


class Entry(msgspec.Struct, frozen=True, kw_only=True):
    """A timeline entry with every field present (as the incidents API shows them)."""

    at: float
    kind: EntryKind
    text: str
    data: dict[str, Scalar]


def _entries(entries: Sequence[TimelineEntry]) -> list[Entry]:
    return [Entry(at=e.at, kind=e.kind, text=e.text, data=e.data) for e in entries]


class PostmortemIncident(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    service: str
    state: str
    opened_at: float
    closed_at: float | None
    impact_start_s: float
    impact_end_s: float
    slos: list[SloImpact]
    detection: Detection
    timeline: list[Entry]
    changes: list[Entry]
    charts: list[SloCharts]
    timeline_dropped: int = 0


class Postmortem(msgspec.Struct, frozen=True, kw_only=True):
    """The JSON form: `source` is `live` (the engine's rings) or `replay` (a file)."""

    incidents: list[PostmortemIncident]
    source: Source


def _columns(ev: Evaluator, slo: str) -> I64:
    return np.array([c for c, name in enumerate(ev.names) if name == slo], dtype=np.int64)


def _summed(read: BucketReader, start: float, end: float, cols: I64) -> tuple[I64, float, int]:
    """(n_buckets, 2) over all `cols`; raises LookupError when `read` has nothing."""
    got = read(start, end, cols)
    if got is None:
        raise LookupError
    cells, first_end, r = got
    return cells.sum(axis=1, dtype=np.int64).reshape(-1, 2), first_end, r


def _sums(got: tuple[I64, float, int]) -> tuple[int, int]:
    total, bad = got[0].sum(axis=(0, 1), dtype=np.int64).tolist()
    return int(total), int(bad)


def range_total(
    read: BucketReader, start: float, end: float, cols: I64
) -> tuple[int, int, int] | None:
    """(total, bad, r) of `cols` in (start, end]: the whole buckets `read` gives at its
    resolution r for the start, then the rest (`_rest`). None when `read` holds nothing
    that far back."""
    got = read(start, end, cols)
    if got is None:
        return None
    cells, first_end, r = got
    total, bad = _sums(got)
    covered = first_end + (len(cells) - 1) * r if len(cells) else math.ceil(start / r) * r
    if covered < end:
        rest = _rest(read, max(covered, start), end, cols, r)
        total, bad = total + rest[0], bad + rest[1]
    return total, bad, r


def _rest(read: BucketReader, a: float, end: float, cols: I64, r: int) -> tuple[int, int]:
    """(total, bad) in (a, end], `a` the end of a whole bucket of resolution r and `end`
    inside the next one: from a finer ring when one reaches back to `a`; else that
    bucket as counted so far, less its part after `end` read from a finer ring reaching
    back to `end` (without one, the whole bucket: rounded outward)."""
    finer = read(a, end, cols)
    if finer is not None and finer[2] < r:
        got = range_total(read, a, end, cols)
        return (0, 0) if got is None else got[:2]
    whole = read(a, a + r, cols, partial=True)
    if whole is None:
        return 0, 0
    total, bad = _sums(whole)
    after = read(end, a + r, cols, partial=True)
    if after is not None and after[2] < r and end % after[2] == 0:
        t_after, b_after = _sums(after)
        total, bad = total - t_after, bad - b_after
    return total, bad


def _impact(
    ev: Evaluator, slo: str, cols: I64, read: BucketReader, start: float, end: float
) -> SloImpact | None:
    got = range_total(read, start, end, cols)
    if got is None:
        return None
    total, bad, r = got
    c = int(cols[0])
    ratio, period = float(ev.budget_ratio[c]), float(ev.period_s[c])
    in_period = range_total(read, end - period, end, cols)
    period_events = None if in_period is None else in_period[0]
    consumed = bad / (ratio * period_events) if period_events else None
    return SloImpact(
        slo=slo,
        bad_events=bad,
        total_events=total,
        error_budget_consumed_ratio=consumed,
        period_events=period_events,
        resolution_s=r,
    )


def burn_series(
    cells: I64, first_end_s: float, r: int, window_s: float, since_s: float, budget: float
) -> tuple[list[float], list[float | None]]:
    """Burn rate over the window of `window_s` at each bucket end at or after `since_s`,
    from consecutive buckets `cells` (n, 2) (total, bad) at resolution `r` (the first
    ending at `first_end_s`): (times, values), at most MAX_POINTS of them."""
    n = max(1, math.ceil(window_s / r))
    acc = np.zeros((len(cells) + 1, 2), dtype=np.int64)
    np.cumsum(cells, axis=0, out=acc[1:])
    ends = first_end_s + r * np.arange(len(cells))
    idx = np.flatnonzero(ends >= since_s)
    if len(idx) > MAX_POINTS:
        idx = idx[:: math.ceil(len(idx) / MAX_POINTS)]
    lo = np.maximum(idx + 1 - n, 0)
    total = (acc[idx + 1, 0] - acc[lo, 0]).astype(np.float64)
    bad = (acc[idx + 1, 1] - acc[lo, 1]).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        rate = bad / total / budget
    values = [None if math.isnan(v) else float(v) for v in rate.tolist()]
    return [float(t) for t in ends[idx].tolist()], values


def _line(
    read: BucketReader, cols: I64, start: float, end: float, window_s: float, budget: float
) -> tuple[list[float], list[float | None]] | None:
    try:
        cells, first_end, r = _summed(read, start - window_s, end, cols)
    except LookupError:
        return None
    return burn_series(cells, first_end, r, window_s, start, budget)


def _charts(
    ev: Evaluator, slo: str, cols: I64, read: BucketReader, start: float, end: float
) -> SloCharts:
    c = int(cols[0])
    budget = float(ev.budget_ratio[c])
    lines: list[ChartLine] = []
    for u, row in enumerate(ev.rows):
        if not ev.row_mask[c, u]:
            continue
        for which, window_s in (("long", row.long_s), ("short", row.short_s)):
            got = _line(read, cols, start, end, window_s, budget)
            if got is None:
                continue
            lines.append(
                ChartLine(
                    label=f"{row.severity} {which} {window_s}s",
                    times=got[0],
                    values=got[1],
                    threshold=float(ev.factor[c, u]),
                    severity=row.severity,
                    window_s=int(window_s),
                )
            )
    period = float(ev.period_s[c])
    got = _line(read, cols, start, end, period, budget)
    remaining = None
    if got is not None:
        # burn rate b over the period = consumed share of its budget: remaining = 1 - b
        values = [None if v is None else 1.0 - v for v in got[1]]
        remaining = ChartLine(label="budget remaining", times=got[0], values=values)
    return SloCharts(slo=slo, burn_rates=lines, budget_remaining=remaining)


def impact_interval(inc: Incident, end_of_data_s: float) -> tuple[float, float]:
    """(start, end] of the incident's impact (module docstring)."""
    start = inc.opened_at if inc.onset_at is None else inc.onset_at
    end = inc.closed_at if inc.closed_at is not None else max(end_of_data_s, start)
    return start, end


def postmortem_of(
    inc: Incident,
    ev: Evaluator,
    read: BucketReader,
    end_of_data_s: float,
    *,
    charts: bool = True,
) -> PostmortemIncident:
    """The postmortem of `inc` with counts from `read` (module docstring); `ev` gives the
    SLOs' columns, budgets, periods and policy rows. SLOs the config no longer has (or
    whose counts `read` no longer holds) are left out of the impact and charts."""
    start, end = impact_interval(inc, end_of_data_s)
    pad = max(PAD_MIN_S, (end - start) / 4)
    chart_end = min(end + pad, max(end_of_data_s, end))
    impacts: list[SloImpact] = []
    drawn: list[SloCharts] = []
    for slo in inc.slos:
        cols = _columns(ev, slo)
        if not len(cols):
            continue
        got = _impact(ev, slo, cols, read, start, end)
        if got is not None:
            impacts.append(got)
        if charts:
            drawn.append(_charts(ev, slo, cols, read, start - pad, chart_end))
    return PostmortemIncident(
        id=inc.id,
        service=inc.service,
        state=inc.state,
        opened_at=inc.opened_at,
        closed_at=inc.closed_at,
        impact_start_s=start,
        impact_end_s=end,
        slos=impacts,
        detection=Detection(
            onset_at=inc.onset_at,
            fired_at=inc.opened_at,
            acknowledged_at=inc.acknowledged_at,
            resolved_at=inc.resolved_at,
            time_to_detect_s=inc.time_to_detect_s,
            time_to_acknowledge_s=inc.time_to_acknowledge_s,
            time_to_resolve_s=inc.time_to_resolve_s,
        ),
        timeline=_entries(inc.timeline),
        changes=_entries([e for e in inc.timeline if e.kind == "change" and e.at <= start]),
        charts=drawn,
        timeline_dropped=inc.timeline_dropped,
    )


def selected(
    incidents: Sequence[PostmortemIncident], from_s: float | None, to_s: float | None
) -> list[PostmortemIncident]:
    """The incidents opened in [from_s, to_s) (None: unbounded), oldest first."""
    return sorted(
        (
            i
            for i in incidents
            if (from_s is None or i.opened_at >= from_s) and (to_s is None or i.opened_at < to_s)
        ),
        key=lambda i: (i.opened_at, i.id),
    )
