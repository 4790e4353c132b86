"""Reloading the config of a running evaluator: a new evaluator that keeps what still holds.

Theory of operation
-------------------
An evaluator's state only means something for the definitions that made it: an SLO's
window counts are of the events its selector chose, classified by the taxonomy, in
buckets of the window geometry, and its alert state is of its policy rows, evaluated
with the `evaluation:` settings. So a reload (`reload(old, config)`) builds an
evaluator of the new config and carries, SLO by SLO (by name), only what the new config
would have built the same way:

- *Global*: the `evaluation:` settings (tick, lateness, future limit, for,
  keep_firing_for, min_events), the taxonomy and the window set (the windows of every
  policy row and period, which fix the rings' levels) must be unchanged, or no SLO
  keeps anything (`Reloaded.reason` says which): the rings of one geometry do not hold
  the buckets of another, and an alert held under other `for` or thin-window rules
  is not the alert the new rules would hold.
- *Per SLO*: the same `Slo` struct (selector, SLI, objective, period, groups,
  composite members, budget policy...; its annotations `description`, `runbook_url`
  and `labels` may change) and the same policy rows (its own or, without one, the
  top-level ones): then it keeps its window rings and sums, counts, alert state
  (firing, firing row, since-times, pending, keep_firing), budget alerts (matched by
  key, as a snapshot's are), calendar period counts and group assignment. A composite
  SLO keeps its state only if all its members do: its windows are theirs.
- Added SLOs, and SLOs in both whose definition changed (`reset`), start empty.
  Removed ones are gone. Every alert that was firing for a removed or reset SLO ends
  with a `resolved` transition at the last evaluated tick (`Reloaded.ended`), so no
  receiver is left with an alert nobody will ever resolve.

What is not per SLO carries whatever changed: the event-time clock (watermark, next
tick), the stream-wide counts (accepted, unmatched, rejected) and the corrections
added at run time. Corrections in the config and a changed budget policy take effect
from the reload on, like a correction posted to the API: events already counted stay
counted.

The result is what an evaluator of the new config would hold had it seen only the
events of the kept SLOs (tests/unit/core/test_reload.py checks exactly that, going
forward too). The old evaluator is left as it was: a caller that cannot use the result
keeps running the old one. Pure; reused by every role that owns SLOs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import msgspec
import numpy as np

from engine.core.arrays import F64, I64
from engine.core.config import Config, Slo
from engine.core.evaluator import (
    AlertState,
    BudgetAlertState,
    Evaluator,
    EvaluatorState,
    EventCounts,
    Transition,
)
from engine.core.periods import PeriodState
from engine.core.windows import LevelState, WindowState

__all__ = ["ANNOTATIONS", "Reloaded", "carry_blocker", "definition", "ended_alerts", "reload"]


@dataclass(frozen=True, slots=True)
class Reloaded:
    """The outcome of `reload`: the new evaluator and what became of each SLO (names in
    config order: `kept`, `added`, `reset` of the new config, `removed` of the old)."""

    evaluator: Evaluator
    kept: tuple[str, ...]
    """In both configs, state carried."""
    added: tuple[str, ...]
    """Only in the new config: start empty."""
    removed: tuple[str, ...]
    """Only in the old config: gone."""
    reset: tuple[str, ...]
    """In both, but their definition (or a global setting, `reason`) changed: start empty."""
    reason: str | None
    """Why no SLO could keep its state (a global setting changed); None when they could."""
    ended: tuple[Transition, ...]
    """A `resolved` transition for every alert that fired for a removed or reset SLO."""


def carry_blocker(old: Config, new: Config) -> str | None:
    """Why no SLO can carry its state from `old` to `new`, or None when SLOs may."""
    if old.evaluation != new.evaluation:
        return "the evaluation settings changed"
    if old.taxonomy != new.taxonomy:
        return "the taxonomy changed"
    if old.windows_s() != new.windows_s():
        return "the set of windows changed (policy windows and periods)"
    return None


ANNOTATIONS = ("description", "runbook_url", "labels")
"""Fields of an SLO that only annotate its output: changing them keeps its state."""


def definition(config: Config, slo: Slo) -> tuple[Slo, list[tuple[object, ...]]]:
    """What an SLO's state depends on: its entry but for the annotations, and its rows."""
    bare = msgspec.structs.replace(slo, description=None, runbook_url=None, labels={})
    return bare, [r.key for r in config.policy_of(slo)]


def _kept(old: Config, new: Config) -> set[str]:
    """Names of the SLOs whose definition is the same in both (composites: and whose
    members are all kept)."""
    before = {s.name: definition(old, s) for s in old.slos}
    kept = {s.name for s in new.slos if s.name in before and before[s.name] == definition(new, s)}
    changed = True
    while changed:  # a composite's state is its members'
        changed = False
        for s in new.slos:
            if s.name in kept and any(m.slo not in kept for m in s.composite or ()):
                kept.discard(s.name)
                changed = True
    return kept


def reload(old: Evaluator, config: Config) -> Reloaded:
    """An evaluator of `config` carrying `old`'s state where it still holds (see the
    module docstring). `old` is not changed."""
    new = Evaluator(config)
    old_names = [s.name for s in old.config_slos]
    new_names = [s.name for s in new.config_slos]
    common = set(old_names) & set(new_names)
    reason = carry_blocker(old.config, config)
    kept = set() if reason is not None else _kept(old.config, config)
    dropped = {n for n in old_names if n not in kept}
    _carry(old, new, kept)
    return Reloaded(
        evaluator=new,
        kept=tuple(n for n in new_names if n in kept),
        added=tuple(n for n in new_names if n not in common),
        removed=tuple(n for n in old_names if n not in common),
        reset=tuple(n for n in new_names if n in common and n not in kept),
        reason=reason,
        ended=tuple(ended_alerts(old, dropped)),
    )


def _columns(ev: Evaluator, name: str) -> range:
    j = next(k for k, s in enumerate(ev.config_slos) if s.name == name)
    base = int(ev.column_base[j])
    end = int(ev.column_base[j + 1]) if j + 1 < len(ev.column_base) else len(ev.slos)
    return range(base, end)


def _carry(old: Evaluator, new: Evaluator, kept: set[str]) -> None:
    """Load into `new` the clock and stream-wide counts of `old`, and the per-column state
    of the `kept` SLOs (same columns count: same `Slo`)."""
    o_cols: list[int] = []
    n_cols: list[int] = []
    for name in (s.name for s in new.config_slos if s.name in kept):
        o, n = _columns(old, name), _columns(new, name)
        assert len(o) == len(n)
        o_cols += o
        n_cols += n
    oc = np.array(o_cols, dtype=np.intp)
    nc = np.array(n_cols, dtype=np.intp)
    was = old.state()
    fresh = new.state()
    windows, next_tick, evaluated_at = fresh.windows, None, None
    if old.next_tick_s is not None:
        if _geometry(old) == _geometry(new):
            windows = _windows(was.windows, fresh.windows, oc, nc)
            next_tick, evaluated_at = old.next_tick_s, old.evaluated_at_s
        else:  # nothing carries (carry_blocker): empty rings at the old clock
            windows, next_tick = _empty_windows_at(new, old.watermark_s)
    state = EvaluatorState(
        windows=windows,
        alerts=_alerts(old, new, was.alerts, fresh.alerts, oc, nc),
        counts=_counts(was.counts, fresh.counts, oc, nc),
        watermark_s=was.watermark_s,
        next_tick_s=next_tick,
        evaluated_at_s=evaluated_at,
        max_event_ts_s=was.max_event_ts_s,
        periods=_periods(old, new, was.periods, fresh.periods, oc, nc),
        corrections=was.corrections,
        budget_alerts=_budget(was.budget_alerts, fresh.budget_alerts, oc, nc),
        groups=_groups(old, new, kept),
    )
    new.load_state(state)
    new.hold(old.held_s)  # not in the state: time a cap holds back stays held


def _geometry(ev: Evaluator) -> tuple[object, ...]:
    """What fixes the rings: the tick, the windows and each level's resolution and length."""
    levels = tuple((lv.resolution_s, lv.length) for lv in ev.windows.state().levels)
    return ev.tick_s, tuple(ev.windows_s), levels


def _empty_windows_at(new: Evaluator, watermark_s: float) -> tuple[WindowState, float | None]:
    """Empty rings of `new`'s geometry and its next tick, as an evaluator of `new`'s
    config has them after moving its clock to `watermark_s` (`Evaluator.advance`)."""
    probe = Evaluator(new.config)
    probe.advance(watermark_s)
    st = probe.windows.state()
    windows = WindowState(
        t_s=st.t_s,
        levels=tuple(replace(lv, buckets=np.array(lv.buckets)) for lv in st.levels),
        sums=np.array(st.sums),
    )
    return windows, probe.next_tick_s


def _windows(was: WindowState, fresh: WindowState, oc: I64, nc: I64) -> WindowState:
    levels = []
    for o, f in zip(was.levels, fresh.levels, strict=True):
        n_old = o.buckets.shape[0] // o.length
        n_new = f.buckets.shape[0] // f.length
        grid = np.zeros((f.length, n_new, 2), dtype=o.buckets.dtype)
        grid[:, nc] = o.buckets.reshape(o.length, n_old, 2)[:, oc]
        levels.append(
            LevelState(
                resolution_s=f.resolution_s,
                length=f.length,
                head=o.head,
                buckets=grid.reshape(f.length * n_new, 2),
            )
        )
    sums = np.zeros_like(fresh.sums)
    sums[:, nc] = was.sums[:, oc]
    return WindowState(t_s=was.t_s, levels=tuple(levels), sums=sums)


def _alerts(
    old: Evaluator, new: Evaluator, was: AlertState, fresh: AlertState, oc: I64, nc: I64
) -> AlertState:
    out = AlertState(
        firing=np.array(fresh.firing),
        firing_row=np.array(fresh.firing_row),
        firing_since_s=np.array(fresh.firing_since_s),
        pending_since_s=np.array(fresh.pending_since_s),
        last_true_s=np.array(fresh.last_true_s),
        budget_at_tick_ratio=np.array(fresh.budget_at_tick_ratio),
    )
    out.budget_at_tick_ratio[nc] = was.budget_at_tick_ratio[oc]
    union = {r.key: u for u, r in enumerate(new.rows)}
    row_of = np.array([union.get(r.key, -1) for r in old.rows] + [-1], dtype=np.int64)
    for j, sev in enumerate(new.severities):
        if sev not in old.severities:
            continue
        jo = old.severities.index(sev)
        out.firing[nc, j] = was.firing[oc, jo]
        out.firing_row[nc, j] = row_of[was.firing_row[oc, jo]]  # -1 indexes the -1 at the end
        out.firing_since_s[nc, j] = was.firing_since_s[oc, jo]
        out.pending_since_s[nc, j] = was.pending_since_s[oc, jo]
        out.last_true_s[nc, j] = was.last_true_s[oc, jo]
    return out


def _counts(was: EventCounts, fresh: EventCounts, oc: I64, nc: I64) -> EventCounts:
    def per_slo(a: I64, b: I64) -> I64:
        out = np.array(b)
        out[nc] = a[oc]
        return out

    return EventCounts(
        events_total=per_slo(was.events_total, fresh.events_total),
        bad_events_total=per_slo(was.bad_events_total, fresh.bad_events_total),
        accepted_events=was.accepted_events,
        unmatched_events=was.unmatched_events,
        unknown_status_events=was.unknown_status_events,
        rejected=dict(was.rejected),
        excluded_events=per_slo(was.excluded_events, fresh.excluded_events),
    )


def _periods(
    old: Evaluator,
    new: Evaluator,
    was: PeriodState | None,
    fresh: PeriodState | None,
    oc: I64,
    nc: I64,
) -> PeriodState | None:
    """Kept SLOs keep their counts. Every calendar column takes the bounds its calendar
    has in `old` (the columns of one calendar and zone share them), so an added SLO
    joins the current period rather than waiting for the next one."""
    if fresh is None:
        return None
    out = {k: np.array(getattr(fresh, k)) for k in ("start_s", "end_s", "next_end_s")}
    current, nxt = np.array(fresh.current), np.array(fresh.next)
    if was is not None:
        bounds: dict[object, int] = {}
        for i, s in enumerate(old.slos):
            if s.calendar is not None:
                bounds.setdefault(s.calendar, i)
        for i, s in enumerate(new.slos):
            src = bounds.get(s.calendar) if s.calendar is not None else None
            if src is not None:
                for k, a in out.items():
                    a[i] = getattr(was, k)[src]
        current[nc], nxt[nc] = was.current[oc], was.next[oc]
    return PeriodState(current=current, next=nxt, **out)


def _budget(
    was: BudgetAlertState | None, fresh: BudgetAlertState | None, oc: I64, nc: I64
) -> BudgetAlertState | None:
    """Kept columns keep the alerts of the keys both have (matched by key on load)."""
    if fresh is None:
        return None
    firing = np.zeros((fresh.firing.shape[0], len(fresh.keys)), dtype=bool)
    since: F64 = np.full(firing.shape, np.nan)
    if was is not None:
        at = {k: a for a, k in enumerate(was.keys)}
        for a, key in enumerate(fresh.keys):
            b = at.get(key)
            if b is not None:
                firing[nc, a] = was.firing[oc, b]
                since[nc, a] = was.firing_since_s[oc, b]
    return BudgetAlertState(keys=fresh.keys, firing=firing, firing_since_s=since)


def _groups(
    old: Evaluator, new: Evaluator, kept: set[str]
) -> tuple[tuple[tuple[str | None, ...], ...], ...]:
    before = dict(
        zip(
            (s.name for s in old.config_slos if s.group_by),
            old.classifier.group_state(),
            strict=True,
        )
    )
    return tuple(before[s.name] if s.name in kept else () for s in new.config_slos if s.group_by)


def ended_alerts(old: Evaluator, dropped: set[str]) -> list[Transition]:
    """`resolved` for every alert (burn rate and budget) firing for a `dropped` SLO, at
    the last tick evaluated, with the row it fired on and the last burn rates."""
    at = old.evaluated_at_s
    if at is None or not dropped:
        return []
    alerts = old.alerts()
    burn = old.burn_rates()
    out: list[Transition] = []
    for i, name in enumerate(old.names):
        if name not in dropped:
            continue
        for j, severity in enumerate(old.severities):
            r = int(alerts.firing_row[i, j])
            if not alerts.firing[i, j] or r < 0:
                continue
            long_s, short_s = old.row_windows_s[r]
            out.append(
                Transition(
                    slo=name,
                    severity=severity,
                    state="resolved",
                    at=at,
                    long_window_s=long_s,
                    short_window_s=short_s,
                    burn_rate_long=_finite(burn[old.row_long[r], i]),
                    burn_rate_short=_finite(burn[old.row_short[r], i]),
                    factor=float(old.factor[i, r]),
                    error_budget_remaining_ratio=_finite(alerts.budget_at_tick_ratio[i]),
                    group=old.group_of(i),
                )
            )
    out += [
        msgspec.structs.replace(tr, state="resolved", at=at)
        for tr in old.firing_budget_alerts()
        if tr.slo in dropped
    ]
    return out


def _finite(x: float) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None
