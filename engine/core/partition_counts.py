"""One counts partition's SLOs, moved by that partition's count deltas alone.

An evaluate worker (`burnrate run --role evaluate`) keeps one `PartitionCounts` per
counts partition it owns: an evaluator over the SLOs whose partition key maps to that
partition (`subset_config`), fed the partition's records in log order. Event time moves
only by the records: each delta's buckets are counted (`Evaluator.ingest_counts`, the
watermark never past the writer's), then time advances to `watermark -
allowed_lateness`, as `burnrate run` advances to the wall clock minus the lateness. A
heartbeat (no buckets) does only the second. No wall clock anywhere, so the transitions
are a function of the log: restored from a snapshot and fed the records after it, the
evaluator reproduces the same transitions, with the same alert ids.

A record that cannot be read, or names an SLO this partition does not hold (a writer of
another config, or a composite, which has no events), is counted as a rejection and
skipped: one bad record must not stop a partition. Its watermark is still taken when it
has one: time is the writer's, whatever the SLO.
"""

from __future__ import annotations

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
        """Count a delta's buckets, then advance to its watermark minus the lateness."""
        ev = self.evaluator
        out: list[Transition] = []
        if delta.slo:
            j = self._index.get(delta.slo)
            if j is None:
                ev.reject("unknown_slo")
            else:
                n = len(delta.seconds)
                try:
                    out = ev.ingest_counts(
                        np.full(n, j, dtype=np.int64),
                        np.asarray(delta.seconds, dtype=np.float64),
                        np.asarray(delta.total, dtype=np.int64),
                        np.asarray(delta.bad, dtype=np.int64),
                        delta.groups,
                        watermark_cap_s=delta.watermark,
                    )
                except (ValueError, OverflowError):  # counts past int64 too
                    ev.reject("bad_delta")
        out += ev.advance(delta.watermark - ev.lateness_s, watermark_cap_s=delta.watermark)
        return out
