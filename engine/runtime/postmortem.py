"""Postmortems offline: a file of recorded events replayed, its incidents found, and each
one's postmortem computed from the exact counts of the replay.

The replay is `burnrate replay`'s (engine.runtime.replay: the same evaluator, ingest and
event-time rules), and its transitions feed an `IncidentBook` as `burnrate run` feeds
its own (engine.runtime.incidents): each firing transition with its onset estimated
from the rings right after the block that produced it, and `advance` to the evaluated
tick after every block, so incidents open, group and close as they would have live.
A file holds no changes or acknowledgements, so those are absent here. The quiet
period is the config's (`incidents.quiet_period`, its default without the section).

Counts: every (event, SLO) pair the evaluator counts is also gathered per tick-sized
bucket (engine.core.backtest.Series through `Evaluator.on_counted`), so the
postmortem reads exact counts at tick resolution for any interval of the file, where
the engine's rings would hold coarser buckets for older times.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.adapters.store.events_file import EventsFileError, read_chunks
from engine.core.arrays import I64
from engine.core.backtest import Series
from engine.core.config import Config
from engine.core.config_io import DEFAULT_QUIET_PERIOD
from engine.core.durations import parse_duration_s
from engine.core.evaluator import Evaluator, Transition
from engine.core.incidents import Incident, IncidentBook, IncidentUpdate
from engine.core.ingest import Ingestor
from engine.core.onset import onset_of_transition
from engine.core.postmortem import BucketReader, PostmortemIncident, postmortem_of

__all__ = ["OfflinePostmortems", "offline_postmortems", "series_reader"]


@dataclass(frozen=True, slots=True)
class OfflinePostmortems:
    incidents: list[PostmortemIncident]
    records: int
    error: EventsFileError | None = None
    """Why the file could not be read to its end; the incidents are those of the lines
    before the damage."""


def series_reader(series: Series) -> BucketReader:
    """`Evaluator.bucket_sums` over the gathered series: every bucket of (start, end] at
    the series' resolution (`partial`: up to the one holding `end`), zeros where nothing
    was counted."""
    b = series.bucket_s
    cache: dict[int, tuple[I64, I64, I64]] = {}

    def read(
        start_s: float, end_s: float, columns: I64, *, partial: bool = False
    ) -> tuple[I64, float, int]:
        first = math.ceil(start_s / b)
        last = (math.ceil(end_s / b) if partial else math.floor(end_s / b)) - 1
        n = max(0, last - first + 1)
        out = np.zeros((n, len(columns), 2), dtype=np.int64)
        for k, c in enumerate(columns.tolist()):
            if c not in cache:
                cache[c] = series.of(c)
            buckets, total, bad = cache[c]
            lo, hi = np.searchsorted(buckets, [first, last + 1])
            at = buckets[lo:hi] - first
            out[at, k, 0] = total[lo:hi]
            out[at, k, 1] = bad[lo:hi]
        return out, float((first + 1) * b), b

    return read


def offline_postmortems(
    config: Config,
    events_path: Path,
    *,
    service: str | None = None,
    charts: bool = True,
    on_progress: Callable[[int], None] | None = None,
) -> OfflinePostmortems:
    """Replay the file and answer the postmortem of every incident it shows (of
    `service` only, when given), oldest first; one still open at the end of the file
    has its impact up to the last evaluated tick."""
    evaluator = Evaluator(config)
    ingestor = Ingestor(evaluator)
    tick = config.evaluation.tick_s
    series = Series(int(tick) if tick == int(tick) else 1, config.column_count())
    evaluator.on_counted = series.add
    quiet_s = (
        parse_duration_s(DEFAULT_QUIET_PERIOD)
        if config.incidents is None
        else config.incidents.quiet_period_s
    )
    book = IncidentBook(evaluator.config_slos, quiet_s)
    found: dict[str, Incident] = {}

    def take(ups: list[IncidentUpdate]) -> None:
        for u in ups:
            found[u.incident.id] = u.incident

    def feed(transitions: list[Transition]) -> None:
        for tr in transitions:
            take(book.transition(tr, onset_at_s=onset_of_transition(evaluator, tr)))
        if evaluator.evaluated_at_s is not None:
            take(book.advance(evaluator.evaluated_at_s))

    records = 0
    error: EventsFileError | None = None
    try:
        for block, pos in read_chunks(events_path):
            result = ingestor.json_lines(block, stream_future=True)
            records += result.records
            feed(list(result.transitions))
            if on_progress is not None:
                on_progress(pos)
    except EventsFileError as exc:  # what was read before the damage still counts
        error = exc
    feed(list(ingestor.flush()))
    end = evaluator.evaluated_at_s
    read = series_reader(series)
    out = [
        postmortem_of(inc, evaluator, read, inc.opened_at if end is None else end, charts=charts)
        for inc in sorted(found.values(), key=lambda i: (i.opened_at, i.id))
        if service is None or inc.service == service
    ]
    return OfflinePostmortems(out, records, error)
