"""Evaluator snapshots: every piece of evaluator state to and from bytes (MessagePack).

Theory of operation
-------------------
A snapshot is what a restarted engine needs to carry on as if it had never stopped:
the ring buffers and incremental window sums, the alert state machine, the counters
and the event-time clock. Arrays travel as raw bytes with their dtype and shape.

Arrays only make sense for the config that shaped them (SLOs in order, windows, ring
lengths, policy rows, tick), so the snapshot carries that *shape*, readable rather than
hashed, and `restore` refuses a snapshot of another shape with a `SnapshotError` saying
what differs. Everything is decoded and checked before anything is assigned, so a
failed restore leaves the evaluator exactly as it was. Pure: bytes in, bytes out.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

import msgspec
import numpy as np

from engine.errors import BurnrateError

if TYPE_CHECKING:
    from engine.core.evaluator import Evaluator

__all__ = ["SNAPSHOT_VERSION", "Shape", "SnapshotError", "restore", "shape_of", "snapshot"]

SNAPSHOT_VERSION = 1


class SnapshotError(BurnrateError):
    """A snapshot cannot be restored: corrupt, of another version, or taken with a config
    of another shape. The message says which; the evaluator is left unchanged."""


class _Struct(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    pass


class Array(_Struct, frozen=True, kw_only=True):
    dtype: str
    shape: list[int]
    data: bytes


class Shape(_Struct, frozen=True, kw_only=True):
    """The parts of the config that shape the evaluator's arrays."""

    slos: list[tuple[str, int, float]]
    """(name, period_s, objective percent) in config order."""
    windows_s: list[int]
    levels: list[tuple[int, int]]
    """(bucket resolution s, ring length) per level: the ring length follows the
    allowed lateness and future limit."""
    policy: list[tuple[str, int, int, float | None, float | None]]
    """(severity, long_s, short_s, burn_rate, budget_consumed_ratio) per row."""
    tick_s: float


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


_ENCODER = msgspec.msgpack.Encoder()
_HEADER = msgspec.msgpack.Decoder(_Header)
_DECODER = msgspec.msgpack.Decoder(_State)

_ARRAYS = (
    "firing",
    "firing_row",
    "firing_since",
    "_pending_since",
    "_last_true",
    "_budget_at_tick",
    "events_total",
    "bad_events_total",
)
"""Evaluator attributes saved as arrays; the `_State` field is the name without `_`."""


def shape_of(ev: Evaluator) -> Shape:
    cfg = ev.config
    return Shape(
        slos=[(s.name, s.period_s, float(s.objective)) for s in ev.slos],
        windows_s=list(ev.windows.windows_s),
        levels=[(lv.r, lv.length) for lv in ev.windows.levels],
        policy=[
            (r.severity, r.long_s, r.short_s, r.burn_rate, r.budget_consumed_ratio)
            for r in cfg.policy
        ],
        tick_s=float(ev.tick_s),
    )


def _pack(a: np.ndarray[Any, Any]) -> Array:
    a = np.ascontiguousarray(a)
    return Array(dtype=a.dtype.str, shape=list(a.shape), data=a.tobytes())


def _unpack(arr: Array, like: np.ndarray[Any, Any], what: str) -> np.ndarray[Any, Any]:
    """The array `arr` holds, checked to have the dtype and shape of `like`."""
    try:
        dtype = np.dtype(arr.dtype)
    except TypeError:
        raise SnapshotError(f"corrupt snapshot: {what}: bad dtype {arr.dtype!r}") from None
    if dtype != like.dtype or tuple(arr.shape) != like.shape:
        raise SnapshotError(
            f"snapshot does not fit this config: {what} is {arr.dtype}{tuple(arr.shape)}, "
            f"expected {like.dtype.str}{like.shape}"
        )
    if len(arr.data) != like.nbytes:
        raise SnapshotError(
            f"corrupt snapshot: {what} holds {len(arr.data)} bytes, expected {like.nbytes}"
        )
    return np.frombuffer(arr.data, dtype=dtype).reshape(like.shape)


def snapshot(ev: Evaluator) -> bytes:
    """Every piece of `ev`'s state, as MessagePack bytes."""
    ws = ev.windows
    state = _State(
        version=SNAPSHOT_VERSION,
        shape=shape_of(ev),
        windows_t=ws.t,
        levels=[_Level(head=lv.head, data=_pack(lv.data)) for lv in ws.levels],
        sums=_pack(ws.all_sums),
        rejected=dict(ev.rejected),
        accepted_events=ev.accepted_events,
        unmatched_events=ev.unmatched_events,
        unknown_status_events=ev.unknown_status_events,
        watermark_s=ev.watermark_s,
        next_tick_s=ev.next_tick_s,
        evaluated_at_s=ev.evaluated_at_s,
        max_event_ts=ev._max_event_ts,
        firing=_pack(ev.firing),
        firing_row=_pack(ev.firing_row),
        firing_since=_pack(ev.firing_since),
        pending_since=_pack(ev._pending_since),
        last_true=_pack(ev._last_true),
        budget_at_tick=_pack(ev._budget_at_tick),
        events_total=_pack(ev.events_total),
        bad_events_total=_pack(ev.bad_events_total),
    )
    return _ENCODER.encode(state)


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
    if saved.tick_s != here.tick_s:
        parts.append(f"tick differs: snapshot {saved.tick_s:g}s, config {here.tick_s:g}s")
    return "; ".join(parts)


def _decode(data: bytes) -> _State:
    try:
        header = _HEADER.decode(data)
    except (msgspec.DecodeError, ValueError) as exc:  # bad UTF-8 in a key: ValueError
        raise SnapshotError(f"corrupt snapshot: {exc}") from None
    if header.format != "burnrate-evaluator":
        raise SnapshotError(f"not an evaluator snapshot (format {header.format!r})")
    if header.version != SNAPSHOT_VERSION:
        raise SnapshotError(
            f"snapshot version {header.version} is not supported (this engine reads "
            f"version {SNAPSHOT_VERSION})"
        )
    try:
        return _DECODER.decode(data)
    except (msgspec.DecodeError, ValueError) as exc:
        raise SnapshotError(f"corrupt snapshot: {exc}") from None


def restore(ev: Evaluator, data: bytes) -> None:
    """Load a `snapshot()` into `ev`, which must have been built from a config of the
    same shape. Raises SnapshotError and changes nothing when the snapshot is corrupt,
    of another version, or of a config of another shape."""
    state = _decode(data)
    here = shape_of(ev)
    if state.shape != here:
        raise SnapshotError(
            "snapshot was taken with another config: " + _describe_mismatch(state.shape, here)
        )
    ws = ev.windows
    if len(state.levels) != len(ws.levels):
        raise SnapshotError("corrupt snapshot: wrong number of window levels")
    levels = [
        (saved.head, _unpack(saved.data, lv.data, f"level {lv.r}s"))
        for saved, lv in zip(state.levels, ws.levels, strict=True)
    ]
    sums = _unpack(state.sums, ws.all_sums, "window sums")
    arrays = [
        (name, _unpack(getattr(state, name.lstrip("_")), getattr(ev, name), name))
        for name in _ARRAYS
    ]
    if any(v < 0 for v in state.rejected.values()):
        raise SnapshotError("corrupt snapshot: negative rejection count")
    # Everything checked: from here on nothing can fail, so the restore is all or nothing.
    ws.load_state(state.windows_t, levels, sums)
    for name, value in arrays:
        getattr(ev, name)[...] = value
    ev.rejected.clear()
    ev.rejected.update(state.rejected)
    ev.accepted_events = state.accepted_events
    ev.unmatched_events = state.unmatched_events
    ev.unknown_status_events = state.unknown_status_events
    ev.watermark_s = state.watermark_s
    ev.next_tick_s = state.next_tick_s
    ev.evaluated_at_s = state.evaluated_at_s
    ev._max_event_ts = state.max_event_ts
