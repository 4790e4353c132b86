"""Naive reference implementations the core is checked against: plain Python, full re-sums.

They share the *specification* with the engine (bucket edges, tick grid, lateness, alert
rules) and nothing of its implementation: no numpy, no ring buffers, no incremental sums.
The harness at the end (`against_reference`) runs the engine beside them, to compare.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from datetime import datetime
from zoneinfo import ZoneInfo

import msgspec

from engine.core.config import Config, Correction, PolicyRow
from engine.core.decode import Event
from engine.core.evaluator import Evaluator, Transition
from engine.core.taxonomy import Outcome, SliKind, classify, latency_is_bad
from engine.core.windows import resolution_for


def bucket(ts: float, r: int) -> int:
    return math.ceil(ts / r) - 1


def window_sum(
    events: list[tuple[int, float, int, int]], slo: int, t: float, w: int, tick_s: float
) -> tuple[int, int]:
    """(total, bad) of `slo` over the window of length w ending at t, by the bucket rule
    (the resolution depends on the evaluation tick)."""
    r = resolution_for(w, tick_s)
    hi = bucket(t, r)
    lo = hi - w // r + 1
    total = bad = 0
    for s, ts, tot, bd in events:
        if s == slo and lo <= bucket(ts, r) <= hi:
            total += tot
            bad += bd
    return total, bad


def composite_window(
    cfg: Config, events: list[tuple[int, float, int, int]], i: int, t: float, w: int
) -> tuple[int, int, float | None]:
    """(total, bad, error ratio) of composite SLO i over the window of length w ending at
    t: the counts summed over its members; the error ratio 1 - the weighted average of
    the good ratios of the members with events (OpenSLO `compositeWeight`), None when no
    member has events."""
    members = cfg.slos[i].composite
    assert members is not None
    index = {s.name: k for k, s in enumerate(cfg.slos)}
    total = bad = 0
    num = den = 0.0
    for m in members:
        tot, bd = window_sum(events, index[m.slo], t, w, cfg.evaluation.tick_s)
        total += tot
        bad += bd
        if tot:
            num += m.weight * (1 - bd / tot)
            den += m.weight
    return total, bad, (1 - num / den) if den else None


def event_pairs(cfg: Config, e: Event) -> list[tuple[int, int, int]]:
    """(slo index, total, bad) for every SLO the event counts for, by the taxonomy directly."""
    out = []
    outcome = classify(e.status, e.ok, cfg.taxonomy)
    for i, slo in enumerate(cfg.slos):
        if slo.composite is not None:
            continue  # no events of its own
        if slo.service != e.service or not slo.matches_operation(e.operation):
            continue
        if slo.sli == SliKind.AVAILABILITY:
            out.append((i, e.count, e.count if outcome == Outcome.BAD else 0))
        else:
            assert slo.threshold_ms is not None
            verdict = latency_is_bad(e.latency_ms, slo.threshold_ms, outcome, slo.failed_counts_bad)
            if verdict is not None:
                out.append((i, e.count, e.count if verdict else 0))
    return out


WEEK_S = 604800


def corrected(
    corrections: list[Correction], slos: list[str], services: list[str], slo: int, ts: float
) -> bool:
    """Is the event time `ts` inside some correction for SLO `slo` (by index)? Checked
    one correction at a time, straight from the definition."""
    for c in corrections:
        if c.slos is not None and slos[slo] not in c.slos:
            continue
        if c.services is not None and services[slo] not in c.services:
            continue
        start, end = c.start_s, c.end_s
        if c.recurrence == "weekly":
            if ts >= start and (ts - start) % WEEK_S < end - start:
                return True
        elif start <= ts < end:
            return True
    return False


@dataclass
class NaiveEvaluator:
    cfg: Config
    events: list[tuple[int, float, int, int]] = field(default_factory=list)
    watermark: float = -math.inf
    next_tick: float | None = None
    transitions: list[tuple[str, str, str, float, int, int]] = field(default_factory=list)
    rejected_late: int = 0
    excluded: dict[int, int] = field(default_factory=dict)
    """Per SLO index, events a correction left out (count-weighted)."""
    corrections: list[Correction] | None = None
    """The corrections in force (default: the config's)."""
    state: dict[tuple[int, str], dict[str, float | int | bool | None]] = field(default_factory=dict)
    near_boundary: bool = False
    """A composite's burn rate came within 1e-9 of a factor: its ratio is computed here
    in another order than the engine's, so the comparison may round either way."""

    def feed(self, e: Event, cap: float | None = None) -> None:
        """One event; `cap` bounds the watermark (the newest event time of the stream
        furthest behind), except that it never trails an event by more than the future
        limit plus the lateness (the engine's ring headroom)."""
        ev = self.cfg.evaluation
        assert e.ts is not None
        if e.ts < self.watermark - ev.allowed_lateness_s:
            self.rejected_late += 1
            return
        if self.next_tick is None:
            self.next_tick = math.ceil(e.ts / ev.tick_s) * ev.tick_s
        moved_to = e.ts
        if cap is not None:
            headroom = ev.future_limit_s + ev.allowed_lateness_s
            moved_to = max(min(e.ts, cap), e.ts - headroom)
        new_wm = max(self.watermark, moved_to)
        while self.next_tick < new_wm:
            self.evaluate(self.next_tick)
            self.next_tick += ev.tick_s
        self.watermark = new_wm
        corrections = self.cfg.corrections if self.corrections is None else self.corrections
        names = [s.name for s in self.cfg.slos]
        services = [s.service for s in self.cfg.slos]
        for slo, tot, bad in event_pairs(self.cfg, e):
            if corrections and corrected(corrections, names, services, slo, e.ts):
                self.excluded[slo] = self.excluded.get(slo, 0) + tot
                continue
            self.events.append((slo, e.ts, tot, bad))

    def flush(self) -> None:
        if self.next_tick is not None:
            self.evaluate(self.next_tick)

    def totals(self, slo: int) -> tuple[int, int]:
        return (
            sum(t for s, _, t, _ in self.events if s == slo),
            sum(b for s, _, _, b in self.events if s == slo),
        )

    def evaluate(self, t: float) -> None:
        ev = self.cfg.evaluation
        for i, slo in enumerate(self.cfg.slos):
            budget = 1.0 - slo.objective / 100.0
            policy = self.cfg.policy_of(slo)  # its own rows, or the top-level ones
            for sev in ("page", "ticket"):
                rows = [(k, r) for k, r in enumerate(policy) if r.severity == sev]
                if not rows:
                    continue
                holding = None
                for k, row in rows:
                    f = row.factor_for(slo.period_s)
                    ok = True
                    for w in (row.long_s, row.short_s):
                        ratio: float | None
                        if slo.composite is not None:
                            tot, bad, ratio = composite_window(self.cfg, self.events, i, t, w)
                        else:
                            tot, bad = window_sum(self.events, i, t, w, ev.tick_s)
                            ratio = bad / tot if tot else None
                        if ratio is None or tot < ev.min_events or bad < ev.min_bad_events:
                            ok = False
                            break
                        burn = ratio / budget
                        if slo.composite is not None and abs(burn - f) <= 1e-9 * max(f, 1.0):
                            self.near_boundary = True
                        if not burn >= f:
                            ok = False
                            break
                    if ok:
                        holding = k
                        break
                st = self.state.setdefault(
                    (i, sev), {"firing": False, "row": None, "pending": None, "last_true": None}
                )
                if holding is not None:
                    if st["pending"] is None:
                        st["pending"] = t
                    st["last_true"] = t
                else:
                    st["pending"] = None
                firing = bool(st["firing"])
                ready = holding is not None and t - float(st["pending"] or 0) >= ev.for_s
                kept = (
                    firing
                    and holding is None
                    and st["last_true"] is not None
                    and t - float(st["last_true"]) < ev.keep_firing_for_s
                )
                should = ready or (firing and holding is not None) or kept
                if should and not firing:
                    st["row"] = holding
                    self._emit(slo.name, sev, "firing", t, policy, holding)
                elif firing and not should:
                    self._emit(slo.name, sev, "resolved", t, policy, st["row"])
                if should and holding is not None:
                    st["row"] = holding
                st["firing"] = should

    def _emit(
        self, name: str, sev: str, state: str, t: float, policy: list[PolicyRow], row: object
    ) -> None:
        assert isinstance(row, int)
        r = policy[row]
        self.transitions.append((name, sev, state, t, r.long_s, r.short_s))


def stream_future_rejected(lines: list[list[float]], future_s: float) -> list[list[bool]]:
    """Replay's future limit, event by event in file order: after the first event, one
    more than `future_s` ahead of the watermark (the newest event accepted) is rejected
    unless the first event of the next line with any is too and lies within `future_s`
    of it (the stream goes on from there: a gap). Lateness plays no part: a late event
    never moves the watermark anyway."""
    out: list[list[bool]] = []
    wm = -math.inf
    for i, line in enumerate(lines):
        verdicts = []
        for t in line:
            rejected = False
            if wm > -math.inf and t > wm + future_s:
                later = [ln[0] for ln in lines[i + 1 :] if ln]
                nxt = later[0] if later else None
                if nxt is not None and nxt > wm + future_s and abs(nxt - t) <= future_s:
                    wm = t
                else:
                    rejected = True
            else:
                wm = max(wm, t)
            verdicts.append(rejected)
        out.append(verdicts)
    return out


def calendar_key(unit: str, zone: str, ts: float) -> tuple[int, int]:
    """Which calendar period the instant `ts` is in, read off the local date in `zone`:
    (ISO year, ISO week), (year, month) or (year, quarter). Two instants share a period
    exactly when their keys are equal; no boundary is ever computed."""
    local = datetime.fromtimestamp(math.floor(ts), ZoneInfo(zone))
    if unit == "week":
        iso = local.isocalendar()
        return iso.year, iso.week
    if unit == "month":
        return local.year, local.month
    assert unit == "quarter"
    return local.year, (local.month - 1) // 3


def calendar_sums(
    events: list[tuple[int, float, int, int]], slo: int, unit: str, zone: str, t: float
) -> tuple[int, int]:
    """(total, bad) of `slo` over the events in the calendar period holding `t`."""
    want = calendar_key(unit, zone, t)
    total = bad = 0
    for s, ts, tot, bd in events:
        if s == slo and calendar_key(unit, zone, ts) == want:
            total += tot
            bad += bd
    return total, bad


# -- the harness: the engine beside the reference ------------------------------------


def stamped(start: float, steps: list[tuple[float, Event]]) -> list[Event]:
    """Each event `d` seconds after the one before it (the first `d` after `start`; a
    negative `d`: earlier, so possibly late)."""
    t = float(start)
    events = []
    for d, e in steps:
        t += d
        events.append(msgspec.structs.replace(e, ts=t))
    return events


def split(events: list[Event], cuts: list[int]) -> list[list[Event]]:
    """`events` cut into consecutive batches at the indices `cuts` (those in range)."""
    bounds = sorted({0, len(events), *[c for c in cuts if c < len(events)]})
    return [events[a:b] for a, b in itertools.pairwise(bounds)]


def naive_run(cfg: Config, events: list[Event]) -> NaiveEvaluator:
    """The reference fed every event, in order, then flushed."""
    ref = NaiveEvaluator(cfg)
    for e in events:
        ref.feed(e)
    ref.flush()
    return ref


def run_engine(cfg: Config, batches: list[list[Event]]) -> tuple[Evaluator, list[Transition]]:
    """The engine fed the batches, then flushed: itself and every transition."""
    ev = Evaluator(cfg)
    out: list[Transition] = []
    for batch in batches:
        out += ev.ingest(ev.classifier.columns(batch))
    out += ev.flush()
    return ev, out


def against_reference(
    cfg: Config, start: float, steps: list[tuple[float, Event]], cuts: list[int]
) -> tuple[list[Event], NaiveEvaluator, Evaluator, list[Transition]]:
    """The events `steps` make from `start`, the reference run on them all at once, and
    the engine run on them in the batches `cuts` makes (with its transitions)."""
    events = stamped(start, steps)
    ref = naive_run(cfg, events)
    ev, got = run_engine(cfg, split(events, cuts))
    return events, ref, ev, got
