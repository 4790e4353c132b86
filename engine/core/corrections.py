"""Corrections: stretches of event time the SLOs they name do not count.

A correction (maintenance window, known bad data) is `[start, end)` in event time, or
with `recurrence: weekly` the same stretch every 7 days from `start` on. An (event,
SLO) pair whose event time lies inside a correction for that SLO is left out of the
windows, the budget and so the alerts, and counted apart per SLO (the evaluator does
that; this module only answers "excluded?" for arrays of pairs). Corrections may
overlap.

`CorrectionIndex.excluded(slo, ts)` is whole-array work:

- One-time corrections become intervals per SLO, merged where they overlap or touch,
  sorted by (SLO, start). Every interval bound goes into one sorted array `bounds`; a
  time's *rank* (how many bounds are <= it) compares with a bound exactly as the time
  does (`ts >= b` iff `rank(ts) >= rank(b)`), so `slo * (len(bounds) + 1) + rank` is an
  exact int64 key ordered by (SLO, time), and one `np.searchsorted` over the intervals'
  start keys finds, for every pair at once, the last interval of its SLO starting at or
  before it: excluded iff the pair's key is below that interval's end key (an interval
  of an earlier SLO ends below every key of a later one).
- Weekly corrections: per correction, `ts >= start & (ts - start) mod 604800 < length`
  for the pairs of its SLOs (a boolean table per correction).

Built once per set of corrections (the config's, rebuilt when one is added at run
time); `active` is False with none, and the evaluator then skips the work entirely.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec
import numpy as np
import numpy.typing as npt

from engine.core.config import WEEK_S, Correction, Slo, _path_first, correction_errors
from engine.errors import ConfigError

__all__ = ["WEEK_S", "CorrectionIndex", "parse_correction"]

Bool = npt.NDArray[np.bool_]


class CorrectionIndex:
    """The corrections of a config (and those added at run time), by SLO index."""

    def __init__(self, corrections: Sequence[Correction], slos: Sequence[Slo]) -> None:
        n = len(slos)
        once: list[tuple[int, float, float]] = []
        weekly: list[tuple[float, float, Bool]] = []
        for c in corrections:
            targets = c.targets(slos)
            if not targets:
                continue
            start, end = c.start_s, c.end_s
            if c.recurrence == "weekly":
                mask = np.zeros(n, dtype=bool)
                mask[targets] = True
                weekly.append((start, end - start, mask))
            else:
                once += [(i, start, end) for i in targets]
        once.sort()
        merged: list[list[float]] = []
        for i, s, e in once:
            last = merged[-1] if merged else None
            if last is not None and last[0] == i and s <= last[2]:
                last[2] = max(last[2], e)
            else:
                merged.append([i, s, e])
        arr = np.array(merged, dtype=np.float64).reshape(len(merged), 3)
        self._bounds = np.unique(arr[:, 1:])
        self._stride = len(self._bounds) + 1
        slo = arr[:, 0].astype(np.int64) * self._stride
        self._start_key = slo + np.searchsorted(self._bounds, arr[:, 1], side="right")
        self._end_key = slo + np.searchsorted(self._bounds, arr[:, 2], side="right")
        self._weekly = weekly
        self.active = bool(merged or weekly)
        """False when no correction applies to any SLO: nothing is ever excluded."""

    def excluded(self, slo: npt.NDArray[np.integer], ts: npt.NDArray[np.float64]) -> Bool:
        """For each (SLO index, event time) pair: inside a correction for that SLO?"""
        out = np.zeros(len(ts), dtype=bool)
        if len(ts) == 0:
            return out
        if len(self._start_key):
            key = slo.astype(np.int64) * self._stride + np.searchsorted(
                self._bounds, ts, side="right"
            )
            j = np.searchsorted(self._start_key, key, side="right") - 1
            out = (j >= 0) & (key < self._end_key[np.maximum(j, 0)])
        for start, length, mask in self._weekly:
            mine = mask[slo]
            if mine.any():
                out |= mine & (ts >= start) & (np.mod(ts - start, WEEK_S) < length)
        return out


def parse_correction(data: bytes, slos: Sequence[Slo]) -> Correction:
    """A correction from a JSON document (the body of `POST /v1/corrections`), checked as
    the config checks its `corrections:` entries; raises ConfigError with `$.path`
    messages (every problem, or the first type error the decoder met)."""
    try:
        c = msgspec.json.decode(data, type=Correction)
    except msgspec.ValidationError as exc:
        raise ConfigError([_path_first(str(exc))]) from None
    except msgspec.DecodeError as exc:
        raise ConfigError([f"$: not valid JSON: {exc}"]) from None
    errors = correction_errors(c, slos, "$")
    if errors:
        raise ConfigError(errors)
    return c
