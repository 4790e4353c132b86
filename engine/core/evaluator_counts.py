"""Counting buckets classified elsewhere: `ingest_counts`, the evaluate workers' way in
(`burnrate run --role evaluate`, whose ingest workers send count deltas,
`engine.core.deltas`), and `group_key_of`, which reads a group's name back.

`CountsMixin` holds those methods of `Evaluator` (engine.core.evaluator). A bucket is an
(SLO, second) sum of (event, SLO) pairs, so it goes down the same path as `ingest`'s
pairs after classification: the same time checks (`_admit`: lateness against the running
watermark, the cap, the tick grid) and the same counting and evaluation (`_count_pairs`:
corrections, the multi-tick pass, a tick evaluated just before the first bucket past
it). Fed the pairs of a batch of events in event order, it leaves the evaluator as
`ingest` of those events does, but for the counters of events as such (accepted,
unmatched, unknown status: the ingest worker's to count) and the unit of `too_late`
(events of a bucket here, one per event there).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from engine.core.arrays import F64, I64
from engine.core.config import OTHER_GROUP

if TYPE_CHECKING:
    from engine.core.config import Slo
    from engine.core.matching import Classifier, GroupKey
    from engine.core.transitions import Transition

__all__ = ["CountsMixin", "parse_group_name"]


class CountsMixin:
    """The bucket-counting methods of `Evaluator`."""

    if TYPE_CHECKING:
        config_slos: list[Slo]
        classifier: Classifier

        def _admit(
            self,
            ts: F64,
            ok: npt.NDArray[np.bool_],
            cand_ts: F64,
            watermark_cap_s: float | None,
            weight: I64 | None = None,
        ) -> tuple[npt.NDArray[np.bool_], F64] | None: ...

        def _count_pairs(
            self,
            p_event: I64,
            p_slo: npt.NDArray[np.int32],
            p_ts: F64,
            p_total: I64,
            p_bad: I64,
            wm_after: F64,
        ) -> list[Transition]: ...

    def ingest_counts(
        self,
        slo: I64,
        ts_s: F64,
        total: I64,
        bad: I64,
        groups: Sequence[str | None] | None = None,
        *,
        watermark_cap_s: float | None = None,
    ) -> list[Transition]:
        """Count buckets and evaluate every tick the watermark passes.

        Bucket k holds `total[k]` events of configured SLO `slo[k]` (its index in
        `config.slos`; never a composite's, which has no events of its own) at event time
        `ts_s[k]`, `bad[k]` of them bad; `groups[k]` names its group as `group_of` writes
        it (None for an SLO without `group_by`), and gets its column the way the
        classifier assigns them (in bucket order: the SLO's next free column, then the
        overflow). Buckets older than `watermark - allowed_lateness` are `too_late`; the
        watermark follows the buckets but not past `watermark_cap_s` (as in `ingest`).

        Raises ValueError, counting nothing, for an SLO index out of range, a composite,
        impossible counts, a time that is not finite, or a group name that is not one of
        the SLO's."""
        n = len(slo)
        if not (len(ts_s) == len(total) == len(bad) == n) or (
            groups is not None and len(groups) != n
        ):
            raise ValueError("ingest_counts: columns of different lengths")
        if n == 0:
            return []
        slo = np.asarray(slo, dtype=np.int64)
        ts = np.asarray(ts_s, dtype=np.float64)
        total = np.asarray(total, dtype=np.int64)
        bad = np.asarray(bad, dtype=np.int64)
        slos = self.config_slos
        if ((slo < 0) | (slo >= len(slos))).any():
            raise ValueError(f"ingest_counts: an SLO index outside 0..{len(slos) - 1}")
        if ((total < 0) | (bad < 0) | (bad > total)).any():
            raise ValueError("ingest_counts: counts below 0 or bad above total")
        if not np.isfinite(ts).all():
            raise ValueError("ingest_counts: a bucket time that is not finite")
        keys: dict[int, GroupKey | None] = {}
        for k, j in enumerate(slo.tolist()):
            s = slos[j]
            name = None if groups is None else groups[k]
            if s.composite is not None:
                raise ValueError(f"ingest_counts: {s.name} is a composite SLO")
            if not s.group_by:
                if name is not None:
                    raise ValueError(f"ingest_counts: group {name!r} of {s.name}, which has none")
            elif name is None:
                raise ValueError(f"ingest_counts: a bucket of {s.name} without its group")
            else:
                keys[k] = self.group_key_of(j, name)
        admitted = self._admit(ts, np.ones(n, dtype=bool), ts, watermark_cap_s, total)
        if admitted is None:
            return []
        ok, wm_after = admitted
        base = self.classifier.column_base
        column = base[slo].astype(np.int32)
        for k, gk in keys.items():  # the counted buckets in order, as `assign` does
            if ok[k]:
                j = int(slo[k])
                column[k] = (
                    int(base[j]) + slos[j].group_limit
                    if gk is None
                    else self.classifier.group_column(j, gk)
                )
        row = np.flatnonzero(ok)
        return self._count_pairs(row, column[row], ts[row], total[row], bad[row], wm_after)

    def group_key_of(self, j: int, name: str) -> GroupKey | None:
        """The group key of configured SLO `j` that `group_of` names `name`; None for its
        overflow group (`__other__`). Raises ValueError for a name `group_of` never
        writes for that SLO."""
        return parse_group_name(self.config_slos[j], name)


def parse_group_name(slo: Slo, name: str) -> GroupKey | None:
    """The inverse of `Evaluator.group_of` for `slo`: `region=eu,operation=GET /x` ->
    ("eu", "GET /x"), an empty value -> None (the classifier's key for an absent or empty
    value), `__other__` -> None. ValueError for anything else."""
    if name == OTHER_GROUP:
        return None
    fields: list[str] = []
    chars: list[str] = []
    it = iter(name)
    for c in it:
        if c == "\\":
            nxt = next(it, None)
            if nxt is None:
                raise ValueError(f"group name {name!r}: ends in a backslash")
            chars.append("\\" + nxt)
        elif c == ",":
            fields.append("".join(chars))
            chars = []
        else:
            chars.append(c)
    fields.append("".join(chars))
    if len(fields) != len(slo.group_by):
        raise ValueError(f"group name {name!r}: not a group of {slo.name} ({slo.group_by})")
    values: list[str | None] = []
    for field, key in zip(fields, slo.group_by, strict=True):
        prefix = key + "="
        if not field.startswith(prefix):
            raise ValueError(f"group name {name!r}: not a group of {slo.name} ({slo.group_by})")
        values.append(_unescape(field[len(prefix) :], name) or None)
    return tuple(values)


def _unescape(raw: str, name: str) -> str:
    """A value with its escapes (kept by the split above) undone."""
    out: list[str] = []
    i = 0
    while i < len(raw):
        c = raw[i]
        if c == "\\":
            out.append(raw[i + 1])
            i += 2
            continue
        if c == "=":
            raise ValueError(f"group name {name!r}: an unescaped '=' in a value")
        out.append(c)
        i += 1
    return "".join(out)
