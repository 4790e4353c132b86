"""The replay driver: a JSON Lines file of recorded events through the core, in event time.

The file holds records in the wire format (one event object or an array of them per
line), plain or gzip-compressed. Time is event time only, so the same file and config
always give the same transitions. Events without `ts` have no record timestamp to fall
back on here and are rejected as `missing_ts`. There is no wall clock, so the future
limit counts from the stream itself: after the first event (which sets the watermark),
an event more than `future_limit` ahead of the watermark is `too_far_in_future` unless
the next line goes on from there. So one line with a wild `ts` is rejected rather than
believed (believing it would make every later event `too_late`), while a recorded
silence longer than the limit is just a gap.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from engine.adapters.store.events_file import EventsFileError, read_chunks
from engine.core.config import Config
from engine.core.evaluator import Evaluator, Transition
from engine.core.ingest import Ingestor
from engine.core.summary import RunSummary, summarize

__all__ = ["ReplayResult", "replay"]


@dataclass(frozen=True, slots=True)
class ReplayResult:
    records: int
    transitions: list[Transition]
    evaluator: Evaluator
    error: EventsFileError | None = None
    """Why the file could not be read to its end (a damaged gzip file); the counts
    and transitions are then those of the whole lines before the damage."""

    def summary(self) -> RunSummary:
        return summarize(self.evaluator, self.transitions, self.records)


def replay(
    config: Config,
    events_path: Path,
    on_transition: Callable[[Transition], None],
    on_progress: Callable[[int], None] | None = None,
) -> ReplayResult:
    """Run the evaluator over a file; transitions go to `on_transition` as they happen."""
    evaluator = Evaluator(config)
    ingestor = Ingestor(evaluator)
    records = 0
    transitions: list[Transition] = []
    error: EventsFileError | None = None
    try:
        for block, pos in read_chunks(events_path):
            result = ingestor.json_lines(block, stream_future=True)
            records += result.records
            for tr in result.transitions:
                transitions.append(tr)
                on_transition(tr)
            if on_progress is not None:
                on_progress(pos)
    except EventsFileError as exc:  # what was read before the damage still counts
        error = exc
    for tr in ingestor.flush():  # the last line waited for a next one
        transitions.append(tr)
        on_transition(tr)
    return ReplayResult(records, transitions, evaluator, error)
