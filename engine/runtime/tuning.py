"""Process tuning for the service (and the benchmarks that measure it)."""

from __future__ import annotations

import gc
from typing import Final

__all__ = ["GC_THRESHOLD", "tune_gc"]

GC_THRESHOLD: Final = (50_000, 50, 100)


def tune_gc() -> None:
    """Collect less often: a fetch allocates tens of thousands of short-lived tracked
    objects (aiokafka's records, tuples), so the default threshold (700) runs the young
    generation collector dozens of times per fetch. Objects alive at start-up are frozen
    out of the collector's view. Events themselves are untracked (`gc=False` structs).
    `python -m benchmarks.bench_kafka --gc default` measures the difference."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLD)
