"""Changes (deploys, config pushes, flag flips) and the error budget consumed after each.

Theory of operation
-------------------
A change names a service, a kind and when it happened (`at`, event time). It is charged
with what its service's SLOs consumed of their error budgets in the *attribution
window* after it, (at, at + W] (W: `changes.attribution_window`, default 1h): for each
plain SLO of the service (each group in use of a grouped SLO; composite SLOs have no
service), at evaluation time t, with end = min(at + W, t),

    bad_events               = bad events of the SLO in (at, end]
    error_budget_consumed    = bad_events / (b * period_events)

where b = 1 - objective and period_events the SLO's events over its period at t (the
counts `Evaluator.period_sums` gives, the ones its budget is judged on). It is
`engine.core.budget.consumed_ratio` with the window's bad events over the period's
events: the part of the period's consumed budget (1 - remaining) made up of the
window's bad events, so the shares of changes with disjoint windows add up to at most
the consumed budget. NaN (null) while the period holds no events.

The window's counts are read from the evaluator's window rings
(`Evaluator.range_sums`): in whole buckets of the finest ring that still reaches back
to `at`, so the window counted is (ceil(at/r) * r, floor(end/r) * r] for that ring's
resolution r (10 s for windows up to 2 h at the default tick): exactly (at, end] when r
divides both, at most r short at each end otherwise, never wider. The rings hold at
most their longest window, so the value is recomputed at each `update` while the window
is open and *frozen* at the first update after at + W + the allowed lateness (then
`complete`), when no late event can fall in the window any more: from then on it is
kept as is (in the state file too), with the period's events of that update. A change
whose window start has left every ring before any update (an `at` far in the past) is
frozen with no attribution.

The log keeps at most `changes.max_kept` changes, the oldest (by `at`) dropped first,
and the same change sent twice (same service, kind, version, at, description, url: a
Kafka record read again after a restart) is kept once. Time is passed in; the core
never reads a clock.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from typing import Annotated, Literal

import msgspec
import numpy as np

from engine.core import budget
from engine.core.evaluator import ChangeNote, Evaluator, Transition
from engine.core.governance import services
from engine.errors import ConfigError

__all__ = [
    "MAX_KIND_LABELS",
    "MAX_NOTES",
    "Attribution",
    "Change",
    "ChangeLog",
    "ChangeNote",
    "ChangeRequest",
    "Source",
    "event_time_s",
    "parse_change",
    "take_change",
]

MAX_SERVICE_CHARS = 128
MAX_VERSION_CHARS = 128
MAX_DESCRIPTION_CHARS = 1024
MAX_URL_CHARS = 2048
KIND_PATTERN = r"\A[a-z0-9_.-]{1,64}\Z"
MAX_KIND_LABELS = 50
"""Distinct kinds `counts` names (the `kind` label of burnrate_changes_total); the rest
are counted as `other`, so a pipeline cannot grow the series without bound."""
MAX_NOTES = 5
"""Changes named on one alert at most (the newest)."""

Source = Literal["api", "kafka"]


class ChangeRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """The body of `POST /v1/changes`, and a record of the changes topic."""

    service: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_SERVICE_CHARS)]
    kind: Annotated[str, msgspec.Meta(pattern=KIND_PATTERN)]
    version: Annotated[str, msgspec.Meta(max_length=MAX_VERSION_CHARS)] | None = None
    at: Annotated[float, msgspec.Meta(ge=0)] | None = None
    description: Annotated[str, msgspec.Meta(max_length=MAX_DESCRIPTION_CHARS)] | None = None
    url: Annotated[str, msgspec.Meta(max_length=MAX_URL_CHARS)] | None = None


class Attribution(msgspec.Struct, frozen=True, kw_only=True):
    """The budget one SLO (one group of a grouped SLO) consumed after a change."""

    slo: str
    group: str | None = None
    events: int
    bad_events: int
    error_budget_consumed_ratio: float | None
    """bad_events / (b * events of the period); None while the period has no events."""


class Change(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    service: str
    kind: str
    version: str | None = None
    at_s: float
    description: str | None = None
    url: str | None = None
    source: Source
    received_at_s: float
    """Wall clock of the engine when it took the change in."""
    window_s: float
    """The attribution window it is judged over: (at_s, at_s + window_s]."""
    attribution: tuple[Attribution, ...] = ()
    evaluated_at_s: float | None = None
    """The end of the stretch the attribution covers so far (None: not computed yet)."""
    complete: bool = False
    """The window has passed and the attribution is frozen."""

    @property
    def key(self) -> tuple[str, str, str | None, float, str | None, str | None]:
        return (self.service, self.kind, self.version, self.at_s, self.description, self.url)


class _Saved(msgspec.Struct, kw_only=True):
    next_id: int
    changes: list[Change]


_DECODER = msgspec.msgpack.Decoder(_Saved)
_URL = re.compile(r"\Ahttps?://\S+\Z")


def _path_first(message: str) -> str:
    text, sep, where = message.rpartition(" - at `")
    return f"{where.rstrip('`')}: {text}" if sep else f"$: {message}"


def parse_change(
    data: bytes, services: Sequence[str], *, wall_s: float, event_time_s: float, future_s: float
) -> ChangeRequest:
    """A change request from a JSON document, checked; raises ConfigError with `$.path`
    messages. `at` may be at most `future_s` after the later of the engine's event time
    and its wall clock."""
    try:
        req = msgspec.json.decode(data, type=ChangeRequest)
    except msgspec.ValidationError as exc:
        raise ConfigError([_path_first(str(exc))]) from None
    except msgspec.DecodeError as exc:
        raise ConfigError([f"$: not valid JSON: {exc}"]) from None
    errors: list[str] = []
    if req.service not in services:
        errors.append(f"$.service: no SLO has service {req.service!r}")
    if req.at is not None:
        latest = max(wall_s, event_time_s) + future_s
        if not math.isfinite(req.at):
            errors.append("$.at: must be a finite number of epoch seconds")
        elif req.at > latest:
            errors.append(
                f"$.at: {req.at:.0f} is more than {future_s:.0f}s after the engine's "
                f"time ({latest - future_s:.0f})"
            )
    if req.url is not None and not _URL.match(req.url):
        errors.append("$.url: must be an http:// or https:// URL")
    if errors:
        raise ConfigError(errors)
    return req


def event_time_s(ev: Evaluator, wall_s: float) -> float:
    """The engine's event time now: its watermark, the wall clock before any event."""
    return ev.watermark_s if math.isfinite(ev.watermark_s) else wall_s


def take_change(
    ev: Evaluator,
    log: ChangeLog,
    data: bytes,
    *,
    source: Source,
    wall_s: float,
    default_at_s: float | None = None,
) -> tuple[Change, bool]:
    """Check `data` (a JSON change, the API's body or a record of the changes topic)
    against `ev`'s services and keep it in `log`, its attribution computed at once;
    raises ConfigError. Without `at` it is `default_at_s`, else the engine's event
    time. Returns the change kept and whether it is new (see `ChangeLog.add`)."""
    now = event_time_s(ev, wall_s)
    req = parse_change(data, services(ev), wall_s=wall_s, event_time_s=now, future_s=ev.future_s)
    at = req.at if req.at is not None else now if default_at_s is None else default_at_s
    change, added = log.add(req, source=source, at_s=at, received_at_s=wall_s)
    if added:
        log.update(ev)
        change = next((c for c in log.changes(change.service) if c.id == change.id), change)
    return change, added


def _num(x: float) -> float | None:
    return None if math.isnan(x) else float(x)


class ChangeLog:
    """The changes kept, oldest first (by `at`, then arrival)."""

    def __init__(
        self, window_s: float, max_kept: int, *, first_id: int = 1, id_step: int = 1
    ) -> None:
        """Ids are `first_id`, `first_id + id_step`, ...: an evaluate worker's partition
        `p` of `n` numbers its changes `p + 1 + k * n`, so ids are unique over all
        partitions (engine.runtime.partition_engine)."""
        if id_step < 1 or not 1 <= first_id <= id_step:
            raise ValueError(f"first id {first_id} must be 1..{id_step}")
        self.window_s = float(window_s)
        self.max_kept = max_kept
        self.first_id = first_id
        self.id_step = id_step
        self._changes: list[Change] = []
        self._keys: dict[tuple[str, str, str | None, float, str | None, str | None], int] = {}
        self._next_id = first_id
        self._counts: Counter[tuple[str, str]] = Counter()

    def __len__(self) -> int:
        return len(self._changes)

    # -- adding ----------------------------------------------------------------------

    def add(
        self, req: ChangeRequest, *, source: Source, at_s: float, received_at_s: float
    ) -> tuple[Change, bool]:
        """Keep the change `req` (at `at_s`: its own `at`, else the default the caller
        chose); returns it and False when the same change is already kept (that one)."""
        change = Change(
            id=self._next_id,
            service=req.service,
            kind=req.kind,
            version=req.version,
            at_s=float(at_s),
            description=req.description,
            url=req.url,
            source=source,
            received_at_s=received_at_s,
            window_s=self.window_s,
        )
        same = self._keys.get(change.key)
        if same is not None:
            return next(c for c in self._changes if c.id == same), False
        self._next_id += self.id_step
        self._changes.append(change)
        self._changes.sort(key=lambda c: (c.at_s, c.id))
        self._keys[change.key] = change.id
        self._trim()
        kinds = {k for _, k in self._counts}
        kind = change.kind if change.kind in kinds or len(kinds) < MAX_KIND_LABELS else "other"
        self._counts[(change.service, kind)] += 1
        return change, True

    def _trim(self) -> None:
        while len(self._changes) > self.max_kept:
            old = self._changes.pop(0)
            self._keys.pop(old.key, None)

    # -- reading ---------------------------------------------------------------------

    def changes(self, service: str | None = None, limit: int | None = None) -> list[Change]:
        """The changes of `service` (all without one), newest first, at most `limit`."""
        out = [c for c in reversed(self._changes) if service is None or c.service == service]
        return out if limit is None else out[:limit]

    def counts(self) -> dict[tuple[str, str], int]:
        """Changes taken in since the start, by (service, kind) (kinds past
        MAX_KIND_LABELS as `other`)."""
        return dict(self._counts)

    # -- attribution -----------------------------------------------------------------

    def update(self, ev: Evaluator) -> None:
        """Recompute the attribution of every change whose window is open at the
        evaluator's last evaluation; freeze those whose window has passed."""
        t = ev.evaluated_at_s
        if t is None:
            return
        period = None
        columns: dict[str, np.ndarray[tuple[int], np.dtype[np.int64]]] = {}
        for i, ch in enumerate(self._changes):
            if ch.complete or t <= ch.at_s:
                continue
            if period is None:
                period = ev.period_sums()
            cols = columns.get(ch.service)
            if cols is None:
                cols = columns[ch.service] = _service_columns(ev, ch.service)
            end = ch.at_s + ch.window_s
            done = t > end + ev.lateness_s  # no event of the window can still be accepted
            got = ev.range_sums(ch.at_s, end, cols)
            if got is None:
                self._changes[i] = msgspec.structs.replace(ch, complete=True)
                continue
            sums, _ = got
            consumed = budget.consumed_ratio(period[cols, 0], sums[:, 1], ev.budget_ratio[cols])
            attribution = tuple(
                Attribution(
                    slo=ev.names[c],
                    group=ev.group_of(c),
                    events=int(sums[k, 0]),
                    bad_events=int(sums[k, 1]),
                    error_budget_consumed_ratio=_num(float(consumed[k])),
                )
                for k, c in enumerate(cols.tolist())
            )
            self._changes[i] = msgspec.structs.replace(
                ch, attribution=attribution, evaluated_at_s=min(t, end), complete=done
            )

    def annotate(self, tr: Transition, service: str | None) -> Transition:
        """`tr` naming the changes of `service` whose attribution window holds its time
        (a firing transition only; the newest MAX_NOTES), with what the alert's SLO
        (group) consumed after each so far. Call `update` first for fresh numbers."""
        if tr.state != "firing" or service is None:
            return tr
        notes: list[ChangeNote] = []
        for ch in reversed(self._changes):
            if ch.service != service or not ch.at_s <= tr.at <= ch.at_s + ch.window_s:
                continue
            mine = next(
                (a for a in ch.attribution if a.slo == tr.slo and a.group == tr.group), None
            )
            notes.append(
                ChangeNote(
                    id=ch.id,
                    kind=ch.kind,
                    at=ch.at_s,
                    version=ch.version,
                    error_budget_consumed_ratio=None
                    if mine is None
                    else mine.error_budget_consumed_ratio,
                )
            )
            if len(notes) == MAX_NOTES:
                break
        return msgspec.structs.replace(tr, changes=tuple(notes)) if notes else tr

    # -- state -----------------------------------------------------------------------

    def encode(self) -> bytes:
        """For the state file; empty when there are none (the file stays as before)."""
        if not self._changes:
            return b""
        return msgspec.msgpack.encode(_Saved(next_id=self._next_id, changes=self._changes))

    def load(self, data: bytes) -> int:
        """Replace the log with `encode`d changes (the newest `max_kept`); returns how
        many are kept. Raises ValueError, changing nothing, when `data` is not such."""
        if not data:
            saved = _Saved(next_id=1, changes=[])
        else:
            try:
                saved = _DECODER.decode(data)
            except msgspec.DecodeError as exc:
                raise ValueError(f"changes: {exc}") from None
        self._changes = sorted(saved.changes, key=lambda c: (c.at_s, c.id))
        after = max([saved.next_id, *(c.id + 1 for c in self._changes)])
        # the first id of this log's sequence at or after `after`
        self._next_id = after + (self.first_id - after) % self.id_step
        self._keys = {c.key: c.id for c in self._changes}
        self._trim()
        return len(self._changes)


def _service_columns(ev: Evaluator, service: str) -> np.ndarray[tuple[int], np.dtype[np.int64]]:
    """The columns in use of the plain SLOs of `service`, in config order."""
    used = ev.column_in_use()
    return np.array(
        [
            c
            for c, slo in enumerate(ev.slos)
            if slo.service == service and slo.composite is None and used[c]
        ],
        dtype=np.int64,
    )
