"""One counts partition's SLOs, moved by that partition's count deltas alone.

An evaluate worker (`burnrate run --role evaluate`) keeps one `PartitionCounts` per
counts partition it owns: an evaluator over the SLOs whose partition key maps to that
partition (`subset_config`), fed the partition's records in log order. Event time moves
only by the records' watermarks, never by a clock, so the transitions are a function of
the log: restored from a snapshot (`state`, with the evaluator's) and fed the records
after it, a partition reproduces the same transitions, with the same alert ids.

Time advances as `burnrate run` advances to the wall clock minus the lateness: to a
writer's `watermark - allowed_lateness`, once that writer's flush is over, i.e. when a
record with a higher watermark comes (the next flush: a heartbeat at the latest, which
every flush writes to the partitions it has no delta for). Not at once: one flush
writes its SLOs' deltas one after the other, each spanning the whole flush, under one
watermark, so time moved by the first would make the second's older buckets
`too_late`, though a single process counts them. The buckets do not move time either
(the watermark is their cap, but for the rings' headroom). So a bucket is judged
against the watermark of the flush before its own, minus the lateness, and the
writer, which took it within the lateness of its own watermark, had moved that at
least that far: what the writer counted, this counts (with one writer per partition;
see docs/scaling.md for several).

A record that cannot be read, or names an SLO this partition does not hold (a writer of
another config, or a composite, which has no events), is counted as a rejection and
skipped: one bad record must not stop a partition. Its watermark is still taken when it
has one: time is the writer's, whatever the SLO.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import msgspec
import numpy as np

from engine.core.config import Config
from engine.core.deltas import CountDelta, DeltaError, decode_delta
from engine.core.evaluator import Evaluator, Transition

__all__ = ["PartitionCounts", "subset_config"]


def subset_config(config: Config, names: Iterable[str]) -> Config:
    """`config` with only the SLOs named (in config order)."""
    keep = set(names)
    return msgspec.structs.replace(config, slos=[s for s in config.slos if s.name in keep])


class PartitionCounts:
    """The evaluator of one counts partition and what its records do to it."""

    def __init__(self, config: Config, slos: Iterable[str]) -> None:
        self.use(Evaluator(subset_config(config, slos)))
        self.pending_watermark_s = -math.inf
        """The newest watermark read, which time advances to (minus the lateness) when a
        higher one comes: part of the state, with the evaluator's."""

    def use(self, evaluator: Evaluator) -> None:
        """Count into `evaluator` from now on (a config reload; the pending watermark is
        the partition's, whatever its SLOs)."""
        self.evaluator = evaluator
        self._index = {
            s.name: j for j, s in enumerate(evaluator.config_slos) if s.composite is None
        }

    def load_pending(self, watermark_s: float | None) -> None:
        """Restore `pending_watermark_s` (None: none read yet)."""
        self.pending_watermark_s = -math.inf if watermark_s is None else watermark_s

    def apply_record(self, value: bytes | None) -> list[Transition]:
        """Apply one record value of the counts topic (see the module docstring)."""
        return self.apply_records([value])

    def apply(self, delta: CountDelta) -> list[Transition]:
        """Apply one decoded delta."""
        return self._apply([delta])

    def apply_records(self, values: Sequence[bytes | None]) -> list[Transition]:
        """Apply record values in log order: the same as one `apply_record` each, with
        the buckets of the records between two advances counted in one call."""
        deltas: list[CountDelta | None] = []
        for value in values:
            try:
                deltas.append(None if value is None else decode_delta(value))
            except DeltaError:
                deltas.append(None)
        return self._apply(deltas)

    def _apply(self, deltas: Sequence[CountDelta | None]) -> list[Transition]:
        """For each delta: advance to the last flush's watermark minus the lateness if it
        starts a newer one, then count its buckets (None: an unreadable record)."""
        ev = self.evaluator
        out: list[Transition] = []
        run = _Buckets()
        for delta in deltas:
            if delta is None:
                ev.reject("bad_delta")
                continue
            if delta.watermark > self.pending_watermark_s:
                out += run.count(ev)  # counted before time moves, as one by one
                done = self.pending_watermark_s
                if math.isfinite(done):
                    out += ev.advance(done - ev.lateness_s, watermark_cap_s=done)
                self.pending_watermark_s = delta.watermark
            if not delta.slo:
                continue
            j = self._index.get(delta.slo)
            if j is None:
                ev.reject("unknown_slo")
            elif not run.add(ev, j, delta):
                ev.reject("bad_delta")
        return out + run.count(ev)


class _Buckets:
    """Buckets of deltas gathered for one `ingest_counts` call, each delta checked as
    it is added, so that the call refuses none (the buckets do not move time: counted
    together they are counted as one by one)."""

    def __init__(self) -> None:
        self.clear()

    def clear(self) -> None:
        self.slo: list[int] = []
        self.ts: list[int] = []
        self.total: list[int] = []
        self.bad: list[int] = []
        self.groups: list[str | None] = []

    def add(self, ev: Evaluator, j: int, delta: CountDelta) -> bool:
        """Gather `delta`'s buckets for configured SLO `j`; False (nothing gathered) when
        `ingest_counts` would refuse them."""
        grouped = bool(ev.config_slos[j].group_by)
        if grouped != (delta.groups is not None):
            return False
        if max(delta.total) > _MAX_COUNT:
            return False
        if delta.groups is not None:
            try:
                for name in set(delta.groups):
                    ev.group_key_of(j, name)
            except ValueError:
                return False
        n = len(delta.seconds)
        self.slo += [j] * n
        self.ts += delta.seconds
        self.total += delta.total
        self.bad += delta.bad
        self.groups += delta.groups if delta.groups is not None else [None] * n
        return True

    def count(self, ev: Evaluator) -> list[Transition]:
        if not self.slo:
            return []
        out = ev.ingest_counts(
            np.array(self.slo, dtype=np.int64),
            np.array(self.ts, dtype=np.float64),
            np.array(self.total, dtype=np.int64),
            np.array(self.bad, dtype=np.int64),
            self.groups,
            watermark_cap_s=ev.watermark_s,  # buckets do not move time
        )
        self.clear()
        return out


_MAX_COUNT = (1 << 63) - 1
