"""The backtest driver: one pass over a file of recorded events, every candidate policy
evaluated side by side (engine.core.backtest has the rules), then scored per SLO.

Like `replay` it works in event time only, so the same file, config and candidates
always give the same result. The file is read once; each evaluator (one per distinct
evaluation setting among the candidates) counts every block, and the first also feeds
the per-bucket series the episodes are found in.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import msgspec

from engine.adapters.store.events_file import EventsFileError, read_chunks
from engine.core.backtest import (
    DEFAULT_MIN_CONSUMED,
    Candidate,
    Episode,
    PolicyScore,
    Series,
    bucket_seconds,
    combine,
    episodes_of,
    score,
    split_name,
)
from engine.core.config import Config
from engine.core.evaluator import Evaluator, Transition
from engine.core.ingest import Ingestor

__all__ = ["BacktestResult", "SloResult", "backtest"]


class SloResult(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One SLO (group): its episodes and each candidate's score against them."""

    slo: str
    episodes: list[Episode]
    policies: list[PolicyScore]
    group: str | None = None


@dataclass(frozen=True, slots=True)
class BacktestResult:
    candidates: tuple[Candidate, ...]
    slos: list[SloResult]
    records: int
    bucket_s: int
    episodes_from: str
    """`events` (found in the recording) or `incidents` (given)."""
    start_s: float | None
    end_s: float | None
    evaluator: Evaluator
    """The first evaluator (the config's own policy among its copies), for the counts."""
    error: EventsFileError | None = None


def backtest(
    config: Config,
    candidates: Sequence[Candidate],
    events_path: Path,
    *,
    incidents: Mapping[tuple[str, str | None], list[Episode]] | None = None,
    min_consumed: float = DEFAULT_MIN_CONSUMED,
    on_progress: Callable[[int], None] | None = None,
) -> BacktestResult:
    """Evaluate `candidates` (the first: the config's own policy) over the file and
    score each per SLO (group) against the episodes the events show, or `incidents`."""
    groups = combine(config, candidates)
    evaluators = [g.evaluator() for g in groups]
    ingestors = [Ingestor(ev) for ev in evaluators]
    columns = config.column_count()
    series = Series(bucket_seconds(config.evaluation.tick_s), columns)
    evaluators[0].on_counted = series.add
    transitions: list[list[Transition]] = [[] for _ in groups]
    records = 0
    error: EventsFileError | None = None
    try:
        for block, pos in read_chunks(events_path):
            for k, ing in enumerate(ingestors):
                result = ing.json_lines(block, stream_future=True)
                transitions[k] += result.transitions
                if k == 0:
                    records += result.records
            if on_progress is not None:
                on_progress(pos)
    except EventsFileError as exc:  # what was read before the damage still counts
        error = exc
    for k, ing in enumerate(ingestors):
        transitions[k] += ing.flush()

    # transitions by (candidate, SLO, group)
    by_key: dict[tuple[int, str, str | None], list[Transition]] = {}
    for g, trs in zip(groups, transitions, strict=True):
        for tr in trs:
            slo, copy = split_name(tr.slo)
            by_key.setdefault((g.candidates[copy], slo, tr.group), []).append(tr)

    ev = evaluators[0]
    span = series.span()
    start_s = None if span is None else float(span[0] * series.bucket_s)
    end_s = None if span is None else float((span[1] + 1) * series.bucket_s)
    if math.isfinite(ev.watermark_s):
        end_s = max(end_s or ev.watermark_s, ev.watermark_s)
    used = ev.column_in_use()
    rows: list[SloResult] = []
    for c in range(columns):
        if not used[c]:
            continue
        slo_name, _ = split_name(ev.slos[c].name)
        group = ev.group_of(c)
        if incidents is not None:
            episodes = list(incidents.get((slo_name, group), []))
        elif span is None:
            episodes = []
        else:
            buckets, total, bad = series.of(c)
            episodes = episodes_of(
                buckets,
                total,
                bad,
                bucket_s=series.bucket_s,
                budget_ratio=float(ev.budget_ratio[c]),
                period_s=float(ev.period_s[c]),
                span_buckets=span[1] - span[0] + 1,
                min_consumed=min_consumed,
            )
        scores = [
            score(cand.name, by_key.get((i, slo_name, group), []), episodes, end_s or 0.0)
            for i, cand in enumerate(candidates)
        ]
        rows.append(SloResult(slo=slo_name, group=group, episodes=episodes, policies=scores))
    return BacktestResult(
        candidates=tuple(candidates),
        slos=rows,
        records=records,
        bucket_s=series.bucket_s,
        episodes_from="events" if incidents is None else "incidents",
        start_s=start_s,
        end_s=end_s,
        evaluator=ev,
        error=error,
    )
