"""Which SLOs an event counts for, and whether it is bad for each: columns and pairs.

Events are reduced to a *key* (service, operation, status, ok), and, when some SLO
selects on labels, the event's values of the labels SLOs use (a tuple, in the order of
`Classifier.label_names`) appended; an event without labels keeps the four-field key,
and a config without label selectors never looks at labels. The verdicts that
depend only on the key (which SLOs select it, whether the request failed) are worked
out once per distinct key and cached; what depends on the event itself (latency,
weight, time) stays in numpy columns. `pairs()` then expands a batch into
(event, SLO) pairs with vectorised gathers, never a Python loop per event.

Grouped SLOs (`group_by`) own `max_groups + 1` *columns* of the evaluator's arrays
(ungrouped ones one each, in config order: `column_base`). A pair's column is cached
per (key, SLO) like the rest; a group key seen for the first time gets its column in
`assign`, called with the pairs that are counted, in event order: the next free one of
its SLO's, or, once all `max_groups` are taken, the overflow column (the last). The
assignment (`groups`) outlives cache resets, and is the one Python loop here: it runs
once per (key, SLO) whose group was not assigned when the key was first seen.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import chain, repeat
from operator import attrgetter
from typing import Any

import numpy as np
import numpy.typing as npt

from engine.core.config import GROUP_BY_OPERATION, Slo
from engine.core.decode import Event
from engine.core.taxonomy import Outcome, SliKind, TaxonomyOptions, classify

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
I32 = npt.NDArray[np.int32]
Bool = npt.NDArray[np.bool_]

Key = (
    tuple[str, str | None, int | str | None, bool | None]
    | tuple[str, str | None, int | str | None, bool | None, tuple[str | None, ...]]
)

_KEY_OF = attrgetter("service", "operation", "status", "ok")
_TS_OF = attrgetter("ts")
_LATENCY_OF = attrgetter("latency_ms")
_COUNT_OF = attrgetter("count")
_LABELS_OF = attrgetter("labels")
_NO_LABELS: dict[str, str] = {}
_NO_VALUES: object = None
"""The values of an event with none of the labels in use (one label; several give a
tuple of Nones, which maps to the same key)."""

MAX_KEYS = 100_000
"""Distinct keys kept before the cache is reset (bounds memory on hostile input)."""
MAX_KEY_BYTES = 64 << 20
"""Bytes the cache may hold (by `key_bytes`, its own accounting) before it is reset:
hostile keys are bounded in size by the decoder, and this bounds them in number too,
whatever their size and however many SLOs each one selects."""

_ENTRY_BYTES = 120
"""Per key, besides the key tuple, its strings and its SLO list: the dict entry and the
int id, the slots of the per-key lists and the rows of the lookup tables."""
_SLO_REF_BYTES = 8 + 4 + 8 + 4 + 8
"""Per SLO a key selects: its slot in the key's list and in the `slo_of` table, in the
key's column list and the `col_of` table, and in the key's group list (a grouped SLO's
group tuple is counted apart, when the key is made)."""


_COMBO_BYTES = 200
"""Per combination of a four-field key and label values (labels in use): its code and
key id in the sorted arrays, and its share of the entries of the four-field keys and of
the values (a value's own string is the key's, counted by `key_cost`)."""


def key_cost(key: Key, n_slos: int) -> int:
    """Bytes the cache holds for `key` when it selects `n_slos` SLOs (an estimate from
    `sys.getsizeof`, so a string of wide characters counts as the memory it takes)."""
    service, operation, status = key[0], key[1], key[2]
    size = sys.getsizeof(key) + sys.getsizeof(service) + _ENTRY_BYTES
    if operation is not None:
        size += sys.getsizeof(operation)
    if status is not None:
        size += sys.getsizeof(status)
    if len(key) == 5:
        values = key[4]
        size += sys.getsizeof(values) + sum(sys.getsizeof(v) for v in values if v is not None)
    return size + sys.getsizeof([]) + _SLO_REF_BYTES * n_slos


def _floats(events: Sequence[Event], field: attrgetter[float | None], n: int) -> F64:
    """A float column; absent values are NaN by default, an explicit null is None."""
    try:
        return np.fromiter(map(field, events), dtype=np.float64, count=n)
    except TypeError:
        return np.array(list(map(field, events)), dtype=np.float64)


@dataclass(frozen=True, slots=True)
class EventColumns:
    """A batch of decoded events, column-wise. NaN marks an absent ts or latency."""

    ts_s: F64
    latency_ms: F64
    count: I64
    key_id: I32
    record: I32

    def __len__(self) -> int:
        return int(self.ts_s.shape[0])

    def take(self, idx: npt.NDArray[np.intp] | Bool) -> EventColumns:
        return EventColumns(
            self.ts_s[idx],
            self.latency_ms[idx],
            self.count[idx],
            self.key_id[idx],
            self.record[idx],
        )


@dataclass(frozen=True, slots=True)
class Pairs:
    """(event, SLO) pairs of a batch that count, with their weights."""

    event: npt.NDArray[np.intp]
    slo: I32
    total: I64
    bad: I64
    column: I32
    """The pair's column of the evaluator's arrays; -1 where a grouped SLO's group has
    no column yet (`Classifier.assign` gives it one)."""
    entry: I64
    """The pair's row of the classifier's (key, SLO) tables, for `assign`."""


GroupKey = tuple[str | None, ...]
"""A group's values of its SLO's `group_by` keys, in that order (None: the event has no
such label, or no operation)."""


class _KeyIds(dict[Any, int]):
    """Key -> id, where looking up a key not in it yet makes it (`make` adds it)."""

    __slots__ = ("_make",)

    def __init__(self, make: Callable[[Any], int]) -> None:
        super().__init__()
        self._make = make

    def __missing__(self, key: Any) -> int:
        return self._make(key)


class Classifier:
    """Turns events into columns and columns into (event, SLO) pairs for a fixed SLO list.
    Composite SLOs are never paired with an event: their counts come from their members."""

    def __init__(self, slos: Sequence[Slo], taxonomy: TaxonomyOptions) -> None:
        self._slos = list(slos)
        self._taxonomy = taxonomy
        self._by_service: dict[str, list[int]] = {}
        for i, slo in enumerate(self._slos):
            if slo.service is not None:  # a composite SLO selects no events of its own
                self._by_service.setdefault(slo.service, []).append(i)
        self.is_latency = np.array([s.sli == SliKind.LATENCY for s in self._slos], dtype=bool)
        self.threshold_ms = np.array(
            [s.threshold_ms if s.threshold_ms is not None else np.inf for s in self._slos]
        )
        self.failed_counts_bad = np.array([s.failed_counts_bad for s in self._slos], dtype=bool)
        sizes = [s.column_count for s in self._slos]
        self.column_base = np.concatenate(([0], np.cumsum(sizes)[:-1])).astype(np.int64)
        """The first column of each SLO (a grouped SLO's groups follow it)."""
        self.n_columns = int(sum(sizes))
        self.column_slo = np.repeat(np.arange(len(self._slos)), sizes)
        """The SLO of each column."""
        self.groups: list[dict[GroupKey, int]] = [{} for _ in self._slos]
        """Per SLO, each group key's column, in the order they were assigned (at most
        `max_groups`; the overflow column is not in it)."""
        self.column_group: list[GroupKey | None] = [None] * self.n_columns
        """Per column, its group key (None: not grouped, not assigned yet, or overflow)."""
        self.groups_version = 0
        """Changes whenever the assignment does (a new group, a loaded snapshot), so
        readers can cache what they build from it."""
        names: dict[str, None] = {}
        for slo in self._slos:
            names.update(dict.fromkeys(slo.match_labels))
            names.update(dict.fromkeys(k for k in slo.group_by if k != GROUP_BY_OPERATION))
        self.label_names: tuple[str, ...] = tuple(names)
        """The labels some SLO selects on, in config order: the label part of a key."""
        position = {n: j for j, n in enumerate(names)}
        self._match: list[list[tuple[int, str | None]]] = [
            [(position[k], v or None) for k, v in slo.match_labels.items()] for slo in self._slos
        ]
        self._group_dims: list[list[int] | None] = [
            [-1 if k == GROUP_BY_OPERATION else position[k] for k in slo.group_by]
            if slo.group_by
            else None
            for slo in self._slos
        ]
        """Per grouped SLO, where each `group_by` value comes from: -1 the operation, else
        the position in the key's label values."""
        self._reset()

    @property
    def key_bytes(self) -> int:
        """Bytes held by the key cache, by its own accounting (`key_cost` per key)."""
        return self._key_bytes

    @property
    def key_count(self) -> int:
        """Distinct keys in the cache."""
        return len(self._ids)

    def _reset(self) -> None:
        self._ids: dict[Key, int] = _KeyIds(self._new_key)
        self._base_ids: dict[Key, int] = _KeyIds(self._new_base)
        """With labels in use: each four-field key's number (first part of a `_combo`)."""
        self._base_keys: list[Key] = []
        self._value_ids: dict[object, int] = _KeyIds(self._new_values)
        self._value_ids[_NO_VALUES] = 0
        """With labels in use: each distinct label value (one label) or tuple of values
        (several) a number (second part of a `_combo`); 0 is no value at all."""
        self._values: list[tuple[str | None, ...] | None] = [None]
        self._combo_codes = np.zeros(0, dtype=np.int64)
        """With labels in use: the known (base number << 32 | values number), sorted..."""
        self._combo_kids = np.zeros(0, dtype=np.int32)
        """... and the key id of each."""
        self._combo_new_codes: list[int] = []
        self._combo_new_kids: list[int] = []
        self._built = 0
        """Keys already in the lookup tables (`_tables` appends the newer ones)."""
        self._key_bytes = 0
        self._key_slos: list[list[int]] = []
        self._key_cols: list[list[int]] = []
        self._key_groups: list[list[GroupKey | None]] = []
        self._key_failed: list[bool] = []
        self._key_unknown: list[bool] = []
        self._dirty = True
        self._ptr = np.zeros(1, dtype=np.int64)
        self._slo_of = np.zeros(0, dtype=np.int32)
        self._col_of = np.zeros(0, dtype=np.int32)
        self._failed = np.zeros(0, dtype=bool)
        self._unknown = np.zeros(0, dtype=bool)
        self._nslo = np.zeros(0, dtype=np.int64)

    def _new_key(self, key: Key) -> int:
        service, operation, status, ok = key[0], key[1], key[2], key[3]
        values: tuple[str | None, ...] | None = key[4] if len(key) == 5 else None
        kid = len(self._key_slos)
        self._ids[key] = kid
        slos = [
            i
            for i in self._by_service.get(service, ())
            if self._slos[i].matches_operation(operation)
            and (
                not self._match[i]
                or all((values[j] if values else None) == v for j, v in self._match[i])
            )
        ]
        self._key_slos.append(slos)
        self._key_bytes += key_cost(key, len(slos))
        cols: list[int] = []
        groups: list[GroupKey | None] = []
        for i in slos:
            dims = self._group_dims[i]
            if dims is None:
                cols.append(int(self.column_base[i]))
                groups.append(None)
                continue
            gk = tuple(
                (operation or None) if d < 0 else (values[d] if values else None) for d in dims
            )
            self._key_bytes += sys.getsizeof(gk)
            col = self.groups[i].get(gk)
            if col is None and len(self.groups[i]) >= self._slos[i].group_limit:
                col = int(self.column_base[i]) + self._slos[i].group_limit  # overflow
            cols.append(-1 if col is None else col)
            groups.append(gk)
        self._key_cols.append(cols)
        self._key_groups.append(groups)
        outcome = classify(status, ok, self._taxonomy)
        self._key_failed.append(outcome == Outcome.BAD)
        self._key_unknown.append(outcome == Outcome.UNKNOWN)
        self._dirty = True
        return kid

    def _tables(self) -> None:
        """Bring the (key, SLO) lookup tables up to date: the rows of keys made since the
        last call are appended (a new key in a batch costs its own rows, not a rebuild of
        every key's)."""
        if not self._dirty:
            return
        first = self._built
        new_slos, new_cols = self._key_slos[first:], self._key_cols[first:]
        lens = np.fromiter(map(len, new_slos), dtype=np.int64, count=len(new_slos))
        n = int(lens.sum())
        self._nslo = np.concatenate((self._nslo, lens))
        self._ptr = np.concatenate((self._ptr, self._ptr[-1] + np.cumsum(lens)))
        slo_of = np.fromiter(chain.from_iterable(new_slos), dtype=np.int32, count=n)
        col_of = np.fromiter(chain.from_iterable(new_cols), dtype=np.int32, count=n)
        self._slo_of = np.concatenate((self._slo_of, slo_of))
        self._col_of = np.concatenate((self._col_of, col_of))
        self._failed = np.concatenate(
            (self._failed, np.array(self._key_failed[first:], dtype=bool))
        )
        self._unknown = np.concatenate(
            (self._unknown, np.array(self._key_unknown[first:], dtype=bool))
        )
        self._built = len(self._key_slos)
        self._dirty = False

    def columns(
        self,
        events: Sequence[Event],
        record_index: Sequence[int] | npt.NDArray[np.int32] | None = None,
        record_ts_s: F64 | Callable[[], F64] | None = None,
    ) -> EventColumns:
        """Columns of `events`. A missing `ts` falls back to its record's timestamp when
        given (an array per record, or a function making it, called only if needed).

        The key cache is reset before a batch when it holds over `MAX_KEYS` keys or
        `MAX_KEY_BYTES` bytes, so it never holds more than that plus one batch's keys
        (ids stay valid for the batch's `pairs`)."""
        if len(self._ids) > MAX_KEYS or self._key_bytes > MAX_KEY_BYTES:
            self._reset()
        n = len(events)
        if self.label_names and any(map(_LABELS_OF, events)):
            key_id = self._labelled_ids(list(map(_KEY_OF, events)), events)
        else:
            key_id = self._known_ids(events)
        ts = _floats(events, _TS_OF, n)
        latency = _floats(events, _LATENCY_OF, n)
        count = np.fromiter(map(_COUNT_OF, events), dtype=np.int64, count=n)
        if record_index is None:
            record = np.arange(len(events), dtype=np.int32)
        else:
            record = np.asarray(record_index, dtype=np.int32)
        if record_ts_s is not None and len(events):
            missing = np.isnan(ts)
            if missing.any():
                times = record_ts_s() if callable(record_ts_s) else record_ts_s
                ts[missing] = times[record[missing]]
        return EventColumns(ts, latency, count, key_id, record)

    def _known_ids(self, events: Sequence[Event]) -> I32:
        """Key ids of a batch without labels in use, in one C-level chain per event (key
        tuple, dict lookup, into the array) with no list in between. A key not seen yet
        is made by the dict's `__missing__` as the chain reaches it, so new keys are
        numbered in event order and a batch with new keys costs no second pass."""
        return np.fromiter(
            map(self._ids.__getitem__, map(_KEY_OF, events)), dtype=np.int32, count=len(events)
        )

    @staticmethod
    def _ids_of(keys: list[Any], ids: dict[Any, int]) -> I32:
        """The number of each of `keys` in `ids` (a `_KeyIds`: new ones are made)."""
        return np.fromiter(map(ids.__getitem__, keys), dtype=np.int32, count=len(keys))

    def _labelled_ids(self, keys: list[Key], events: Sequence[Event]) -> I32:
        """Key ids of a batch some of whose events have labels, in two C-level lookups
        per event: the four-field key's number and the number of the event's values of
        `label_names` (a string for one label, a tuple for several), combined into one
        int whose key id is cached. No Python code runs per event once the keys are
        known; a new combination becomes the key (*four fields, values), or the four
        fields alone when the event has none of the labels."""
        names = self.label_names
        maps = list(map(_LABELS_OF, events))
        if None in maps:  # some events have no labels (a C-level scan)
            maps = [m if m is not None else _NO_LABELS for m in maps]
        values: list[Any]
        if len(names) == 1:
            values = list(map(dict.get, maps, repeat(names[0])))
        else:
            values = list(zip(*(map(dict.get, maps, repeat(name)) for name in names), strict=True))
        base = self._ids_of(keys, self._base_ids)
        vid = self._ids_of(values, self._value_ids)
        combo = (base.astype(np.int64) << 32) | vid
        codes, kids = self._combo_codes, self._combo_kids
        at = np.searchsorted(codes, combo)
        known = at < len(codes)
        known[known] = codes[at[known]] == combo[known]
        if known.all():
            return kids[at]
        for code in np.unique(combo[~known]).tolist():  # rare after warm-up
            self._new_combo(code)
        order = np.argsort(self._combo_new_codes, kind="stable")
        new_codes = np.array(self._combo_new_codes, dtype=np.int64)[order]
        new_kids = np.array(self._combo_new_kids, dtype=np.int32)[order]
        self._combo_new_codes, self._combo_new_kids = [], []
        place = np.searchsorted(codes, new_codes)
        self._combo_codes = np.insert(codes, place, new_codes)
        self._combo_kids = np.insert(kids, place, new_kids)
        return self._combo_kids[np.searchsorted(self._combo_codes, combo)]

    def _new_base(self, key: Key) -> int:
        self._base_ids[key] = len(self._base_keys)
        self._base_keys.append(key)
        return len(self._base_keys) - 1

    def _new_values(self, value: object) -> int:
        values = tuple(v or None for v in (value if isinstance(value, tuple) else (value,)))
        self._value_ids[value] = len(self._values)
        self._values.append(None if values.count(None) == len(values) else values)
        return len(self._values) - 1

    def _new_combo(self, combo: int) -> None:
        key = self._base_keys[combo >> 32]
        values = self._values[combo & 0xFFFFFFFF]
        full: Key = key if values is None else (*key[:4], values)
        kid = self._ids[full] if full in self._ids else self._new_key(full)
        self._combo_new_codes.append(combo)
        self._combo_new_kids.append(kid)
        self._key_bytes += _COMBO_BYTES

    def slo_count(self, cols: EventColumns) -> I64:
        """How many SLOs each event selects (0: an event for no configured SLO)."""
        self._tables()
        return self._nslo[cols.key_id]

    def unknown_status(self, cols: EventColumns) -> Bool:
        self._tables()
        return self._unknown[cols.key_id]

    def pairs(self, cols: EventColumns) -> Pairs:
        """Expand events into the (event, SLO) pairs that count, with total and bad weights."""
        self._tables()
        kid = cols.key_id
        lens = self._nslo[kid]
        n_pairs = int(lens.sum())
        event = np.repeat(np.arange(len(cols)), lens)
        first = np.repeat(self._ptr[kid] - (np.cumsum(lens) - lens), lens)
        entry = first + np.arange(n_pairs)
        slo = self._slo_of[entry]
        failed = self._failed[kid][event]
        latency = cols.latency_ms[event]
        lat_slo = self.is_latency[slo]
        with np.errstate(invalid="ignore"):
            slow = latency > self.threshold_ms[slo]
        bad = np.where(lat_slo, slow | (failed & self.failed_counts_bad[slo]), failed)
        counted = ~(lat_slo & np.isnan(latency))
        if not counted.all():
            event, slo, bad, entry = event[counted], slo[counted], bad[counted], entry[counted]
        weight = cols.count[event]
        return Pairs(event, slo, weight, weight * bad, self._col_of[entry], entry)

    def group_state(self) -> tuple[tuple[GroupKey, ...], ...]:
        """Per grouped SLO (config order), its group keys in column order: the whole
        group -> column assignment (column = `column_base` + position)."""
        return tuple(tuple(self.groups[j]) for j, s in enumerate(self._slos) if s.group_by)

    def check_groups(self, state: Sequence[Sequence[GroupKey]]) -> None:
        """Raise ValueError unless `state` is a `group_state` this classifier could have
        made: one list per grouped SLO, at most `max_groups` distinct keys each, each a
        tuple of `group_by`'s length of strings or None."""
        grouped = [s for s in self._slos if s.group_by]
        if len(state) != len(grouped):
            raise ValueError(f"groups: {len(state)} grouped SLOs, expected {len(grouped)}")
        for slo, keys in zip(grouped, state, strict=True):
            if len(keys) > slo.group_limit:
                raise ValueError(f"groups of {slo.name}: {len(keys)}, over {slo.group_limit}")
            if len(set(keys)) != len(keys):
                raise ValueError(f"groups of {slo.name}: a group twice")
            for gk in keys:
                if len(gk) != len(slo.group_by) or not all(v is None or type(v) is str for v in gk):
                    raise ValueError(f"groups of {slo.name}: a bad group key {gk!r}")

    def load_groups(self, state: Sequence[Sequence[GroupKey]]) -> None:
        """Take the assignment `state` (checked with `check_groups`), and drop the key
        cache, whose columns may be of the old one."""
        grouped = [j for j, s in enumerate(self._slos) if s.group_by]
        self.groups = [{} for _ in self._slos]
        self.column_group = [None] * self.n_columns
        for j, keys in zip(grouped, state, strict=True):
            base = int(self.column_base[j])
            for k, gk in enumerate(keys):
                gk = tuple(gk)
                self.groups[j][gk] = base + k
                self.column_group[base + k] = gk
        self.groups_version += 1
        self._reset()

    def assign(self, entry: I64, column: I32) -> I32:
        """`column` with every -1 replaced by its group's column, assigning a column to
        each group key seen for the first time, in the order given (the counted pairs, in
        event order): the SLO's next free one, or its overflow column when its
        `max_groups` are taken. `entry` are the pairs' `Pairs.entry` (of this batch)."""
        todo = np.flatnonzero(column < 0)
        if not len(todo):
            return column
        column = column.copy()
        for t in todo.tolist():
            e = int(entry[t])
            col = int(self._col_of[e])
            if col < 0:
                kid = int(np.searchsorted(self._ptr, e, side="right")) - 1
                pos = e - int(self._ptr[kid])
                gk = self._key_groups[kid][pos]
                assert gk is not None
                col = self.group_column(int(self._slo_of[e]), gk)
                self._col_of[e] = col
                self._key_cols[kid][pos] = col
            column[t] = col
        return column

    def group_column(self, i: int, gk: GroupKey) -> int:
        """The column of group `gk` of grouped SLO `i`: its own, assigned now if it is
        new and the SLO has a free one, else the SLO's overflow column."""
        groups = self.groups[i]
        found = groups.get(gk)
        if found is not None:
            return found
        limit = self._slos[i].group_limit
        if len(groups) >= limit:
            return int(self.column_base[i]) + limit
        col = int(self.column_base[i]) + len(groups)
        groups[gk] = col
        self.column_group[col] = gk
        self.groups_version += 1
        return col
