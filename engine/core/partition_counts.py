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
from collections.abc import Iterable

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
        self.evaluator = Evaluator(subset_config(config, slos))
        self._index = {
            s.name: j for j, s in enumerate(self.evaluator.config_slos) if s.composite is None
        }
        self.pending_watermark_s = -math.inf
        """The newest watermark read, which time advances to (minus the lateness) when a
        higher one comes: part of the state, with the evaluator's."""

    def load_pending(self, watermark_s: float | None) -> None:
        """Restore `pending_watermark_s` (None: none read yet)."""
        self.pending_watermark_s = -math.inf if watermark_s is None else watermark_s

    def apply_record(self, value: bytes | None) -> list[Transition]:
        """Apply one record value of the counts topic (see the module docstring)."""
        if value is None:
            self.evaluator.reject("bad_delta")
            return []
        try:
            delta = decode_delta(value)
        except DeltaError:
            self.evaluator.reject("bad_delta")
            return []
        return self.apply(delta)

    def apply(self, delta: CountDelta) -> list[Transition]:
        """Advance to the last flush's watermark minus the lateness if this delta starts
        a newer one, then count its buckets."""
        ev = self.evaluator
        out: list[Transition] = []
        if delta.watermark > self.pending_watermark_s:
            done = self.pending_watermark_s
            if math.isfinite(done):
                out += ev.advance(done - ev.lateness_s, watermark_cap_s=done)
            self.pending_watermark_s = delta.watermark
        if delta.slo:
            j = self._index.get(delta.slo)
            if j is None:
                ev.reject("unknown_slo")
            else:
                n = len(delta.seconds)
                try:
                    out += ev.ingest_counts(
                        np.full(n, j, dtype=np.int64),
                        np.asarray(delta.seconds, dtype=np.float64),
                        np.asarray(delta.total, dtype=np.int64),
                        np.asarray(delta.bad, dtype=np.int64),
                        delta.groups,
                        watermark_cap_s=ev.watermark_s,  # buckets do not move time
                    )
                except (ValueError, OverflowError):  # counts past int64 too
                    ev.reject("bad_delta")
        return out
