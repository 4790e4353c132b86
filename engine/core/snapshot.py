"""Evaluator snapshots: every piece of evaluator state to and from bytes (MessagePack).

Theory of operation
-------------------
A snapshot is what a restarted engine needs to carry on as if it had never stopped:
the ring buffers and incremental window sums, the alert state machine, the counters,
the corrections added at run time and the event-time clock, i.e. the evaluator's
`state()`. Arrays travel as raw bytes
with their dtype and shape. `dump(ev)` writes one; `load(ev, data)` reads one into `ev`
through `ev.load_state()`. This module uses only the evaluator's public methods, and
the evaluator does not know it exists.

Arrays only make sense for the config that shaped them (SLOs in order, windows, ring
lengths, policy rows, the SLOs' own policies, the composite SLOs' members and weights,
tick), so the snapshot carries that
*shape*, readable rather than hashed, and `load` refuses a snapshot of another shape
with a `SnapshotError` saying what differs. A calendar SLO's period (calendar and zone)
is part of the shape: its counts mean nothing for another calendar or zone.

Version 2 added the calendar periods' bounds and counts (`engine.core.periods`);
version 1 snapshots (no calendar SLOs could exist then) are still read, for configs
without calendar periods, whose shape they share. Version 3 adds grouped SLOs: their
`group_by` and `max_groups` in the shape and the group -> column assignment (`groups`);
it is written only for configs with grouped SLOs, so the snapshots of other configs
stay version 2 and an older engine still reads them. Version 4 adds the budget alerts
and escalations (`budget_alerts`: their keys and firing state, engine.core.budget_alerts);
it is written only for configs that have some, and an older engine refuses it by its
number. The budget alerts are not part of the shape: they are matched by key on load,
so turning them on, or naming receivers in a budget policy row, keeps the windows of an
older snapshot (the new alerts start not firing and fire at the next tick if they hold).

Everything is decoded and checked before anything is assigned, so a failed load leaves
the evaluator exactly as it was. Pure: bytes in, bytes out.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec
import numpy as np

from engine.core.config import Correction
from engine.core.evaluator import (
    AlertState,
    BudgetAlertState,
    Evaluator,
    EvaluatorState,
    EventCounts,
)
from engine.core.periods import PeriodState
from engine.core.windows import RING_DTYPES, LevelState, WindowState
from engine.errors import BurnrateError

__all__ = ["SNAPSHOT_VERSION", "Shape", "SnapshotError", "dump", "load", "shape_of"]

SNAPSHOT_VERSION = 4
READABLE_VERSIONS = (1, 2, 3, 4)
_GROUPED_VERSION = 3
"""What a config with grouped SLOs and no budget alerts writes."""
_UNGROUPED_VERSION = 2
"""What a config without grouped SLOs writes (its snapshots are as before groups)."""


class SnapshotError(BurnrateError):
    """A snapshot cannot be restored: corrupt, of another version, or taken with a config
    of another shape. The message says which; the evaluator is left unchanged."""


class _Struct(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    pass


class Array(_Struct, frozen=True, kw_only=True):
    dtype: str
    shape: list[int]
    data: bytes


Row = tuple[str, int, int, float | None, float | None]
"""(severity, long_s, short_s, burn_rate, budget_consumed_ratio): `PolicyRow.key`."""


class Shape(_Struct, frozen=True, kw_only=True, omit_defaults=True):
    """The parts of the config that shape the evaluator's arrays. Fields with their
    default are left out of the bytes, so a config without per-SLO policies writes the
    shape it wrote before they existed, and the snapshots of either read alike."""

    slos: list[tuple[str, int, float]]
    """(name, period_s, objective percent) in config order."""
    windows_s: list[int]
    levels: list[tuple[int, int]]
    """(bucket resolution s, ring length) per level: the ring length follows the
    allowed lateness and future limit."""
    policy: list[Row]
    """The top-level rows, as written."""
    tick_s: float
    slo_policies: list[tuple[str, list[Row]]] = []
    """(SLO name, its rows) for each SLO with its own `policy:`, in config order: with
    `slos` and `policy` they fix the evaluator's rows (`Config.policy_rows`), which row
    applies to which SLO, and so what `firing_row` means."""
    calendars: list[tuple[str, str] | None] | None = None
    """Per SLO (calendar, time zone) of a calendar period, None for a rolling one; None
    as a whole when no SLO has one (so version 1 snapshots compare equal)."""
    composites: list[tuple[str, list[tuple[str, float]]]] = []
    """(SLO name, its (member, weight) pairs) for each composite SLO, in config order:
    a composite's alert state means nothing for another definition."""
    groups: list[tuple[str, list[str], int]] = []
    """(SLO name, group_by, max_groups) for each grouped SLO, in config order (version 3):
    they fix the columns, and what a column's group key means."""


class _Periods(_Struct, frozen=True, kw_only=True):
    start_s: Array
    end_s: Array
    next_end_s: Array
    current: Array
    next: Array


class _Level(_Struct, frozen=True, kw_only=True):
    head: int | None
    data: Array


class _Header(msgspec.Struct, frozen=True):
    """Read first (unknown fields ignored), so a future version is refused by number."""

    format: str
    version: int


class _State(_Struct, frozen=True, kw_only=True):
    format: Literal["burnrate-evaluator"] = "burnrate-evaluator"
    version: int
    shape: Shape
    windows_t: float | None
    levels: list[_Level]
    sums: Array
    firing: Array
    firing_row: Array
    firing_since: Array
    pending_since: Array
    last_true: Array
    budget_at_tick: Array
    events_total: Array
    bad_events_total: Array
    rejected: dict[str, int]
    accepted_events: int
    unmatched_events: int
    unknown_status_events: int
    watermark_s: float
    next_tick_s: float | None
    evaluated_at_s: float | None
    max_event_ts: float
    periods: _Periods | None = None
    """Version 2, when the config has calendar periods."""
    excluded_events: Array | None = None
    """Per SLO, events left out by corrections (absent in snapshots from before them: 0)."""
    corrections: list[Correction] = []
    """The corrections added at run time (`POST /v1/corrections`), oldest first."""


class _GroupedState(_State, frozen=True, kw_only=True):
    """Version 3, written for configs with grouped SLOs (the others write a `_State`,
    which an engine from before groups reads); read for every version."""

    groups: list[list[list[str | None]]] = []
    """Per grouped SLO, its group keys in column order."""


class _BudgetAlerts(_Struct, frozen=True, kw_only=True):
    keys: list[str]
    firing: Array
    firing_since: Array


class _BudgetState(_GroupedState, frozen=True, kw_only=True):
    """Version 4, written for configs with budget alerts or escalations; read for every
    version."""

    budget_alerts: _BudgetAlerts | None = None


_ENCODER = msgspec.msgpack.Encoder()
_HEADER = msgspec.msgpack.Decoder(_Header)
_DECODER = msgspec.msgpack.Decoder(_BudgetState)


def shape_of(ev: Evaluator) -> Shape:
    cfg = ev.config
    return Shape(
        slos=[(s.name, s.period_s, float(s.objective)) for s in ev.config_slos],
        windows_s=list(ev.windows.windows_s),
        levels=[(lv.resolution_s, lv.length) for lv in ev.windows.state().levels],
        policy=[r.key for r in cfg.policy],
        tick_s=float(ev.tick_s),
        slo_policies=[
            (s.name, [r.key for r in s.policy]) for s in cfg.slos if s.policy is not None
        ],
        calendars=(
            [(c.calendar, c.time_zone) if (c := s.calendar) else None for s in ev.config_slos]
            if any(s.calendar for s in ev.config_slos)
            else None
        ),
        composites=[
            (s.name, [(m.slo, float(m.weight)) for m in s.composite])
            for s in cfg.slos
            if s.composite is not None
        ],
        groups=[(s.name, list(s.group_by), s.group_limit) for s in cfg.slos if s.group_by],
    )


def _pack(a: np.ndarray[Any, Any]) -> Array:
    a = np.ascontiguousarray(a)
    return Array(dtype=a.dtype.str, shape=list(a.shape), data=a.tobytes())


def _unpack(
    arr: Array,
    like: np.ndarray[Any, Any],
    what: str,
    dtypes: tuple[np.dtype[Any], ...] | None = None,
) -> np.ndarray[Any, Any]:
    """The array `arr` holds, checked to have the shape of `like` and its dtype (or one
    of `dtypes`: a window ring is uint32 or, promoted, int64)."""
    try:
        dtype = np.dtype(arr.dtype)
    except TypeError:
        raise SnapshotError(f"corrupt snapshot: {what}: bad dtype {arr.dtype!r}") from None
    allowed = dtypes or (like.dtype,)
    if dtype not in allowed or tuple(arr.shape) != like.shape:
        raise SnapshotError(
            f"snapshot does not fit this config: {what} is {arr.dtype}{tuple(arr.shape)}, "
            f"expected {' or '.join(d.str for d in allowed)}{like.shape}"
        )
    expected = like.size * dtype.itemsize
    if len(arr.data) != expected:
        raise SnapshotError(
            f"corrupt snapshot: {what} holds {len(arr.data)} bytes, expected {expected}"
        )
    return np.frombuffer(arr.data, dtype=dtype).reshape(like.shape)


def dump(ev: Evaluator) -> bytes:
    """Every piece of `ev`'s state, as MessagePack bytes."""
    st = ev.state()
    alerts, counts = st.alerts, st.counts
    shape = shape_of(ev)
    state = _State(
        version=_UNGROUPED_VERSION,
        shape=shape,
        windows_t=st.windows.t_s,
        levels=[_Level(head=lv.head, data=_pack(lv.buckets)) for lv in st.windows.levels],
        sums=_pack(st.windows.sums),
        rejected=dict(counts.rejected),
        accepted_events=counts.accepted_events,
        unmatched_events=counts.unmatched_events,
        unknown_status_events=counts.unknown_status_events,
        watermark_s=st.watermark_s,
        next_tick_s=st.next_tick_s,
        evaluated_at_s=st.evaluated_at_s,
        max_event_ts=st.max_event_ts_s,
        firing=_pack(alerts.firing),
        firing_row=_pack(alerts.firing_row),
        firing_since=_pack(alerts.firing_since_s),
        pending_since=_pack(alerts.pending_since_s),
        last_true=_pack(alerts.last_true_s),
        budget_at_tick=_pack(alerts.budget_at_tick_ratio),
        events_total=_pack(counts.events_total),
        bad_events_total=_pack(counts.bad_events_total),
        periods=None
        if st.periods is None
        else _Periods(
            start_s=_pack(st.periods.start_s),
            end_s=_pack(st.periods.end_s),
            next_end_s=_pack(st.periods.next_end_s),
            current=_pack(st.periods.current),
            next=_pack(st.periods.next),
        ),
        excluded_events=_pack(counts.excluded_events),
        corrections=list(st.corrections),
    )
    if not shape.groups and st.budget_alerts is None:
        return _ENCODER.encode(state)
    fields = msgspec.structs.asdict(state)  # shallow: the same arrays
    groups = [[list(gk) for gk in keys] for keys in st.groups]
    if st.budget_alerts is None:
        fields["version"] = _GROUPED_VERSION
        return _ENCODER.encode(_GroupedState(**fields, groups=groups))
    fields["version"] = SNAPSHOT_VERSION
    b = st.budget_alerts
    budget = _BudgetAlerts(
        keys=list(b.keys), firing=_pack(b.firing), firing_since=_pack(b.firing_since_s)
    )
    return _ENCODER.encode(_BudgetState(**fields, groups=groups, budget_alerts=budget))


def _describe_mismatch(saved: Shape, here: Shape) -> str:
    parts: list[str] = []
    if saved.slos != here.slos:
        parts.append(
            "SLOs (name, period_s, objective) differ: snapshot "
            f"{[tuple(s) for s in saved.slos]}, config {[tuple(s) for s in here.slos]}"
        )
    if saved.windows_s != here.windows_s:
        parts.append(f"windows differ: snapshot {saved.windows_s}, config {here.windows_s}")
    if saved.levels != here.levels:
        parts.append(
            "ring buffers differ (allowed_lateness/future_limit/tick changed): snapshot "
            f"{[tuple(lv) for lv in saved.levels]}, config {[tuple(lv) for lv in here.levels]}"
        )
    if saved.policy != here.policy:
        parts.append(
            f"policy rows differ: snapshot {[tuple(r) for r in saved.policy]}, "
            f"config {[tuple(r) for r in here.policy]}"
        )
    if saved.slo_policies != here.slo_policies:
        parts.append(
            "per-SLO policies differ: snapshot "
            f"{_slo_policies(saved)}, config {_slo_policies(here)}"
        )
    if saved.calendars != here.calendars:
        parts.append(
            f"calendar periods differ: snapshot {_calendars(saved)}, config {_calendars(here)}"
        )
    if saved.composites != here.composites:
        parts.append(
            f"composite SLOs differ: snapshot {_composites(saved)}, config {_composites(here)}"
        )
    if saved.groups != here.groups:
        parts.append(
            "grouped SLOs (name, group_by, max_groups) differ: snapshot "
            f"{[tuple(g) for g in saved.groups]}, config {[tuple(g) for g in here.groups]}"
        )
    if saved.tick_s != here.tick_s:
        parts.append(f"tick differs: snapshot {saved.tick_s:g}s, config {here.tick_s:g}s")
    return "; ".join(parts)


def _slo_policies(shape: Shape) -> dict[str, list[tuple[object, ...]]]:
    return {name: [tuple(r) for r in rows] for name, rows in shape.slo_policies}


def _calendars(shape: Shape) -> list[tuple[str, str] | None]:
    if shape.calendars is None:
        return [None] * len(shape.slos)
    return [None if c is None else tuple(c) for c in shape.calendars]  # type: ignore[misc]


def _composites(shape: Shape) -> dict[str, list[tuple[str, float]]]:
    return {name: [(m, w) for m, w in members] for name, members in shape.composites}


def _decode(data: bytes) -> _BudgetState:
    try:
        header = _HEADER.decode(data)
    except (msgspec.DecodeError, ValueError) as exc:  # bad UTF-8 in a key: ValueError
        raise SnapshotError(f"corrupt snapshot: {exc}") from None
    if header.format != "burnrate-evaluator":
        raise SnapshotError(f"not an evaluator snapshot (format {header.format!r})")
    if header.version not in READABLE_VERSIONS:
        raise SnapshotError(
            f"snapshot version {header.version} is not supported (this engine reads "
            f"versions {', '.join(map(str, READABLE_VERSIONS))})"
        )
    try:
        return _DECODER.decode(data)
    except (msgspec.DecodeError, ValueError) as exc:
        raise SnapshotError(f"corrupt snapshot: {exc}") from None


def load(ev: Evaluator, data: bytes) -> None:
    """Load a `dump()` into `ev`, which must have been built from a config of the same
    shape. Raises SnapshotError and changes nothing when the snapshot is corrupt, of
    another version, or of a config of another shape."""
    state = _decode(data)
    here = shape_of(ev)
    if state.shape != here:
        raise SnapshotError(
            "snapshot was taken with another config: " + _describe_mismatch(state.shape, here)
        )
    now = ev.state()  # the templates: each saved array must have the dtype and shape of its own
    if len(state.levels) != len(now.windows.levels):
        raise SnapshotError("corrupt snapshot: wrong number of window levels")
    windows = WindowState(
        t_s=state.windows_t,
        levels=tuple(
            LevelState(
                resolution_s=lv.resolution_s,
                length=lv.length,
                head=saved.head,
                buckets=_unpack(saved.data, lv.buckets, f"level {lv.resolution_s}s", RING_DTYPES),
            )
            for saved, lv in zip(state.levels, now.windows.levels, strict=True)
        ),
        sums=_unpack(state.sums, now.windows.sums, "window sums"),
    )
    a = now.alerts
    alerts = AlertState(
        firing=_unpack(state.firing, a.firing, "firing"),
        firing_row=_unpack(state.firing_row, a.firing_row, "firing_row"),
        firing_since_s=_unpack(state.firing_since, a.firing_since_s, "firing_since"),
        pending_since_s=_unpack(state.pending_since, a.pending_since_s, "pending_since"),
        last_true_s=_unpack(state.last_true, a.last_true_s, "last_true"),
        budget_at_tick_ratio=_unpack(
            state.budget_at_tick, a.budget_at_tick_ratio, "budget_at_tick"
        ),
    )
    c = now.counts
    counts = EventCounts(
        events_total=_unpack(state.events_total, c.events_total, "events_total"),
        bad_events_total=_unpack(state.bad_events_total, c.bad_events_total, "bad_events_total"),
        accepted_events=state.accepted_events,
        unmatched_events=state.unmatched_events,
        unknown_status_events=state.unknown_status_events,
        rejected=state.rejected,
        excluded_events=(
            np.zeros_like(c.excluded_events)
            if state.excluded_events is None
            else _unpack(state.excluded_events, c.excluded_events, "excluded_events")
        ),
    )
    loaded = EvaluatorState(
        windows=windows,
        alerts=alerts,
        counts=counts,
        watermark_s=state.watermark_s,
        next_tick_s=state.next_tick_s,
        evaluated_at_s=state.evaluated_at_s,
        max_event_ts_s=state.max_event_ts,
        periods=_periods(state.periods, now.periods),
        corrections=tuple(state.corrections),
        budget_alerts=_budget_alerts(state.budget_alerts, len(ev.slos)),
        groups=tuple(tuple(tuple(gk) for gk in keys) for keys in state.groups),
    )
    try:
        ev.load_state(loaded)  # checks everything before it assigns anything
    except ValueError as exc:
        raise SnapshotError(f"corrupt snapshot: {exc}") from None


def _budget_alerts(saved: _BudgetAlerts | None, n_columns: int) -> BudgetAlertState | None:
    """The saved budget alerts, checked to have one column per key (the evaluator matches
    them to its own by key)."""
    if saved is None:
        return None
    if len(set(saved.keys)) != len(saved.keys):
        raise SnapshotError("corrupt snapshot: a budget alert key twice")
    shape = (n_columns, len(saved.keys))
    return BudgetAlertState(
        keys=tuple(saved.keys),
        firing=_unpack(saved.firing, np.zeros(shape, dtype=bool), "budget alerts firing"),
        firing_since_s=_unpack(saved.firing_since, np.zeros(shape), "budget alerts since"),
    )


def _periods(saved: _Periods | None, now: PeriodState | None) -> PeriodState | None:
    """The saved calendar periods, checked against the evaluator's own (None: none saved,
    or none kept here; a calendar config's snapshot always has them, by its shape)."""
    if saved is None or now is None:
        return None
    return PeriodState(
        start_s=_unpack(saved.start_s, now.start_s, "period starts"),
        end_s=_unpack(saved.end_s, now.end_s, "period ends"),
        next_end_s=_unpack(saved.next_end_s, now.next_end_s, "next period ends"),
        current=_unpack(saved.current, now.current, "period counts"),
        next=_unpack(saved.next, now.next, "next period counts"),
    )
