"""Backtesting alert policies: several candidate policies over one recording, side by side.

Theory of operation
-------------------
A *candidate* is a policy to try: rows in the format of the config's top-level
`policy:` that replace every SLO's rows (its own included), and optionally
`evaluation:` fields that replace the config's (`for`, `keep_firing_for`,
`min_events`, ...). The config's own policy is always the first candidate, named
`config` (engine.core.backtest_files reads candidates from files).

*One pass.* Candidates with the same stream settings (tick, allowed lateness, future
limit) share one evaluator (`combine`): its config holds every SLO once per candidate,
each copy with the candidate's alert settings (`for`, `keep_firing_for`, `min_events`,
`min_bad_events`: `Evaluator.set_alert_settings`), copy k of SLO `s` named
`s@k` (a name no config can give, so copies never collide with a real SLO), with that
candidate's rows; composite members and corrections that name SLOs name the copies of
the same candidate. A row that several candidates share is evaluated once (the
evaluator keeps one row per distinct row), and one tick evaluates every copy in the
same array operations; the copies of an SLO count the same events into the same
windows, so the multi-tick pass sums each SLO's windows once and shares the sums among
its copies (`engine.core.shared_columns`). Trying four policies costs about one
evaluation, not four.
The budget policy, budget alerts and escalations are left out of the copies: a backtest
scores the burn-rate alerts. Each copy sees exactly the events, order and ticks a
replay of the config with that candidate's policy would see, so its transitions are
that replay's (tested).

*Episodes* are what the alerts are scored against: the stretches of the recording in
which an SLO (or a group of a grouped SLO) burnt its budget significantly, found from
the counted events themselves, not from any policy. Counts are kept per bucket of
`bucket_s` (the tick rounded up to a whole minute); an episode is a maximal run of
buckets in which the SLO burnt at >= 1x (bad / total >= its error budget ratio),
buckets without events neither breaking nor extending a run, whose bad events consumed
at least `min_consumed` (default 2 %) of the budget of a whole period. A period's
budget is the error budget ratio times the events a period holds at the recording's
mean rate for that SLO (the events counted over the recording, scaled from its span to
the SLO's period), so a short recording is judged by the traffic it shows. An episode
spans from its first bucket's start to its last bucket's end. Episodes may instead come
from a file of known incidents (`Episode` values with no counts).

*Scores*, per SLO (group) and candidate, from its burn-rate alerts (every severity; an
alert is one firing, from `firing` to `resolved` or the end of the recording):
- an episode is *detected* when an alert is firing at some time within it; its
  *detection delay* is from its start to the first such alert's firing (0 when one
  already fired before it began), its *reset* from its end to the resolution of the
  last alert firing within it (None while that alert still fires at the end);
- *recall*: detected episodes / episodes; *precision*: alerts firing at some time
  within an episode / alerts (None without alerts, or without episodes to be right
  about);
- alerts, pages (alerts of severity `page`) and the time any alert fired.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import msgspec
import numpy as np

from engine.core.arrays import F64, I32, I64
from engine.core.config import CompositeMember, Config, Evaluation, PolicyRow, Slo
from engine.core.evaluator import Evaluator, Transition
from engine.core.shared_columns import copies_of

__all__ = [
    "COPY_MARK",
    "DEFAULT_MIN_CONSUMED",
    "Candidate",
    "Combined",
    "Episode",
    "EpisodeScore",
    "PolicyScore",
    "Series",
    "bucket_seconds",
    "combine",
    "episodes_of",
    "score",
]

COPY_MARK = "@"
"""Between an SLO's name and its candidate's number in a combined config."""
DEFAULT_MIN_CONSUMED = 0.02
"""An episode consumed at least this share of a period's budget (the SRE Workbook's
fast-burn page: 2 % in an hour)."""


@dataclass(frozen=True, slots=True)
class Candidate:
    """A policy to try: its rows (None: each SLO's rows in the config) and evaluation."""

    name: str
    policy: tuple[PolicyRow, ...] | None
    evaluation: Evaluation


@dataclass(frozen=True, slots=True)
class Combined:
    """One evaluator's config for candidates with the same stream settings (tick,
    allowed lateness, future limit)."""

    config: Config
    candidates: tuple[int, ...]
    """Their indices among all candidates, in copy order (copy k is candidates[k])."""
    evaluations: tuple[Evaluation, ...]
    """Each copy's evaluation settings (its alert settings may differ)."""
    columns: int
    """Columns of one copy: copy k has columns [k * columns, (k + 1) * columns)."""

    def evaluator(self) -> Evaluator:
        """The evaluator, each copy with its own alert settings."""
        ev = Evaluator(self.config)
        n = self.columns
        for k, evaluation in enumerate(self.evaluations):
            ev.set_alert_settings(slice(k * n, (k + 1) * n), evaluation)
        ev.column_source = copies_of(len(self.evaluations), n)
        return ev


def copy_name(slo: str, k: int) -> str:
    return f"{slo}{COPY_MARK}{k}"


def split_name(name: str) -> tuple[str, int]:
    """(SLO name, copy number) of a copy's name."""
    slo, _, k = name.rpartition(COPY_MARK)
    return slo, int(k)


def candidate_config(config: Config, candidate: Candidate) -> Config:
    """The config as a replay with this candidate's policy would read it."""
    if candidate.policy is None:
        return msgspec.structs.replace(config, evaluation=candidate.evaluation)
    return msgspec.structs.replace(
        config,
        policy=list(candidate.policy),
        evaluation=candidate.evaluation,
        slos=[msgspec.structs.replace(s, policy=None) for s in config.slos],
    )


def combine(config: Config, candidates: Sequence[Candidate]) -> list[Combined]:
    """The configs of the evaluators that run `candidates` in one pass: one per distinct
    stream setting (tick, allowed lateness, future limit), every SLO copied once per
    candidate of that setting."""
    by_stream: dict[tuple[str, str, str], list[int]] = {}
    for i, c in enumerate(candidates):
        e = c.evaluation
        by_stream.setdefault((e.tick, e.allowed_lateness, e.future_limit), []).append(i)
    out: list[Combined] = []
    for members in by_stream.values():
        evaluation = candidates[members[0]].evaluation
        slos: list[Slo] = []
        for k, i in enumerate(members):
            cfg = candidate_config(config, candidates[i])
            slos += [_copy(s, k, cfg.policy_of(s)) for s in cfg.slos]
        corrections = [
            c
            if c.slos is None
            else msgspec.structs.replace(
                c, slos=[copy_name(n, k) for k in range(len(members)) for n in c.slos]
            )
            for c in config.corrections
        ]
        combined = msgspec.structs.replace(
            config,
            slos=slos,
            evaluation=evaluation,
            corrections=corrections,
            budget_policy=[],
            budget_alerts=None,
        )
        out.append(
            Combined(
                combined,
                tuple(members),
                tuple(candidates[i].evaluation for i in members),
                config.column_count(),
            )
        )
    return out


def _copy(slo: Slo, k: int, rows: list[PolicyRow]) -> Slo:
    composite = (
        None
        if slo.composite is None
        else [CompositeMember(slo=copy_name(m.slo, k), weight=m.weight) for m in slo.composite]
    )
    return msgspec.structs.replace(
        slo,
        name=copy_name(slo.name, k),
        policy=list(rows),
        budget_policy=None,
        composite=composite,
    )


# -- episodes ------------------------------------------------------------------------


def bucket_seconds(tick_s: float) -> int:
    """The episode bucket: the tick rounded up to a whole minute."""
    return int(math.ceil(60 / tick_s) * tick_s) if tick_s < 60 else math.ceil(tick_s)


_MERGE_AT = 1 << 20
"""Pairs gathered before they are summed per (column, bucket)."""
_OFFSET = 1 << 31


@dataclass(slots=True)
class Series:
    """(total, bad) per (column, bucket) of the counted events, gathered batch by batch:
    each (column, bucket) is one int64 key (column in the high 32 bits, the bucket
    relative to the first one met in the low), summed with one sort whenever a million
    pairs have gathered, so memory follows the (column, bucket) pairs with events."""

    bucket_s: int
    columns: int
    """Columns kept: those below (one candidate's copy)."""
    _base: int | None = None
    _parts: list[tuple[I64, I64, I64]] = field(default_factory=list)
    _pending: int = 0

    def add(self, column: I32, ts_s: F64, total: I64, bad: I64) -> None:
        keep = column < self.columns
        if not keep.any():
            return
        bucket = (np.ceil(ts_s[keep] / self.bucket_s) - 1).astype(np.int64)
        if self._base is None:
            self._base = int(bucket.min()) - _OFFSET
        key = (column[keep].astype(np.int64) << 32) | (bucket - self._base)
        self._parts.append((key, total[keep].astype(np.int64), bad[keep].astype(np.int64)))
        self._pending += len(key)
        if self._pending >= _MERGE_AT:
            self._merge()

    def _merge(self) -> tuple[I64, I64, I64]:
        if not self._parts:
            empty = np.zeros(0, dtype=np.int64)
            return empty, empty, empty
        if len(self._parts) > 1:
            key, total, bad = (np.concatenate(a) for a in zip(*self._parts, strict=True))
            uniq, inverse = np.unique(key, return_inverse=True)
            t = np.zeros(len(uniq), dtype=np.int64)
            b = np.zeros(len(uniq), dtype=np.int64)
            np.add.at(t, inverse, total)
            np.add.at(b, inverse, bad)
            self._parts = [(uniq, t, b)]
        self._pending = 0
        return self._parts[0]

    def of(self, column: int) -> tuple[I64, I64, I64]:
        """(buckets, totals, bads) of one column, buckets ascending."""
        key, total, bad = self._merge()
        lo, hi = np.searchsorted(key, [column << 32, (column + 1) << 32])
        assert self._base is not None or lo == hi
        buckets = (key[lo:hi] & 0xFFFFFFFF) + (self._base or 0)
        return buckets, total[lo:hi], bad[lo:hi]

    def span(self) -> tuple[int, int] | None:
        """(first, last) bucket with events in any column; None without events."""
        key, _, _ = self._merge()
        if not len(key) or self._base is None:
            return None
        rel = key & 0xFFFFFFFF
        return int(rel.min()) + self._base, int(rel.max()) + self._base


class Episode(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """A stretch of significant burn, [start, end) in epoch seconds."""

    start: float
    end: float
    bad_events: int | None = None
    total_events: int | None = None
    budget_consumed_ratio: float | None = None
    """Of a whole period's budget (None for an episode from an incidents file)."""


def episodes_of(
    buckets: I64,
    total: I64,
    bad: I64,
    *,
    bucket_s: int,
    budget_ratio: float,
    period_s: float,
    span_buckets: int,
    min_consumed: float = DEFAULT_MIN_CONSUMED,
) -> list[Episode]:
    """The episodes of one column's buckets (ascending, each with events); see the
    module docstring. `span_buckets`: how many buckets the recording spans."""
    if not len(buckets) or span_buckets <= 0:
        return []
    per_period = float(total.sum()) * period_s / (span_buckets * bucket_s)
    budget = budget_ratio * per_period
    if budget <= 0:
        return []
    hot = bad >= budget_ratio * total  # burning at >= 1x (exact: no division)
    out: list[Episode] = []
    # the runs of hot buckets, [i, j] each (a loop over every bucket was most of the time)
    edges = np.diff(np.concatenate(([0], hot.view(np.int8), [0])))
    starts, ends = np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist()
    for i, end in zip(starts, ends, strict=True):
        j = end - 1
        run_bad, run_total = int(bad[i : j + 1].sum()), int(total[i : j + 1].sum())
        consumed = run_bad / budget
        if consumed >= min_consumed:
            out.append(
                Episode(
                    start=float(buckets[i] * bucket_s),
                    end=float((buckets[j] + 1) * bucket_s),
                    bad_events=run_bad,
                    total_events=run_total,
                    budget_consumed_ratio=consumed,
                )
            )
    return out


# -- scores --------------------------------------------------------------------------


class EpisodeScore(msgspec.Struct, frozen=True, kw_only=True):
    detected: bool
    detection_delay_s: float | None
    reset_s: float | None


class PolicyScore(msgspec.Struct, frozen=True, kw_only=True):
    policy: str
    alerts: int
    pages: int
    time_firing_s: float
    recall: float | None
    precision: float | None
    episodes: list[EpisodeScore]


@dataclass(frozen=True, slots=True)
class _Firing:
    severity: str
    start: float
    end: float | None  # None: still firing at the end


def _firings(transitions: Iterable[Transition]) -> list[_Firing]:
    """The alerts (one per firing) of one SLO (group)'s burn-rate transitions."""
    open_at: dict[str, float] = {}
    out: list[_Firing] = []
    for tr in transitions:
        if tr.kind != "burn":
            continue
        if tr.state == "firing":
            open_at[tr.severity] = tr.at
        elif tr.severity in open_at:
            out.append(_Firing(tr.severity, open_at.pop(tr.severity), tr.at))
    out += [_Firing(sev, t, None) for sev, t in open_at.items()]
    out.sort(key=lambda f: f.start)
    return out


def _overlaps(f: _Firing, e: Episode) -> bool:
    return f.start < e.end and (f.end is None or f.end > e.start)


def _union_s(firings: Sequence[_Firing], end_s: float) -> float:
    total, cur_start, cur_end = 0.0, None, 0.0
    for f in firings:  # sorted by start
        end = end_s if f.end is None else f.end
        if cur_start is None or f.start > cur_end:
            if cur_start is not None:
                total += cur_end - cur_start
            cur_start, cur_end = f.start, end
        else:
            cur_end = max(cur_end, end)
    if cur_start is not None:
        total += cur_end - cur_start
    return total


def score(
    policy: str,
    transitions: Iterable[Transition],
    episodes: Sequence[Episode],
    end_s: float,
) -> PolicyScore:
    """Score one candidate's alerts of one SLO (group) against its episodes; `end_s`:
    the end of the recording (an alert still firing counts up to it)."""
    firings = _firings(transitions)
    scores: list[EpisodeScore] = []
    for e in episodes:
        hits = [f for f in firings if _overlaps(f, e)]
        if not hits:
            scores.append(EpisodeScore(detected=False, detection_delay_s=None, reset_s=None))
            continue
        ends = [f.end for f in hits]
        reset = None if None in ends else max(x for x in ends if x is not None) - e.end
        scores.append(
            EpisodeScore(
                detected=True,
                detection_delay_s=max(0.0, hits[0].start - e.start),
                reset_s=reset,
            )
        )
    right = sum(1 for f in firings if any(_overlaps(f, e) for e in episodes))
    return PolicyScore(
        policy=policy,
        alerts=len(firings),
        pages=sum(1 for f in firings if f.severity == "page"),
        time_firing_s=_union_s(firings, end_s),
        recall=sum(s.detected for s in scores) / len(scores) if scores else None,
        precision=right / len(firings) if firings else None,
        episodes=scores,
    )
