"""Window resolutions and ring sizes: plain integer arithmetic, no numpy.

`WindowSet` (engine.core.windows) allocates its rings from `level_sizes`, and the config
check (engine.core.config) estimates a config's window memory with the same function,
so `burnrate check` refuses what the evaluator could not allocate without importing
numpy or allocating anything.

The rule. A window of W seconds uses the coarsest ladder step r with
r + (W mod r) <= W/60 and is floor(W/r) buckets long. Its span floor(W/r)*r is then
W - (W mod r), and a window ending anywhere inside its newest bucket reaches back at
least W - (W mod r) - r >= W - W/60: every event younger than W - W/60 is counted and
none W or older. When r divides W this is the old rule (the coarsest step dividing W
into at least 60 buckets); when no coarse step divides W (a period of `100000007s`,
`30d1s`), a coarse step still serves instead of falling to 1 s buckets. The condition
only gets harder up the ladder (each step divides the next, so W mod R >= W mod r for
R > r), so the coarsest step that meets it is the last one that does. A window meeting
it has at least 60 buckets; at most about 1,800 (W just under 120 buckets of the step
above), so that no window of at most MAX_WINDOW_S costs more than a few thousand
buckets per SLO, plus the slack for events ahead of the evaluation time.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

__all__ = [
    "BUCKET_BYTES",
    "LADDER_S",
    "MAX_SPAN_ERROR",
    "MAX_WINDOW_S",
    "MIN_BUCKETS",
    "RING_SLACK",
    "LevelSize",
    "level_sizes",
    "resolution_for",
    "window_bytes",
]

LADDER_S: Final = (1, 5, 60, 900, 10800, 43200, 86400)
"""Bucket resolutions; each divides the next, so coarse buckets are unions of fine ones."""

MIN_BUCKETS: Final = 60
MAX_SPAN_ERROR: Final = 1 / MIN_BUCKETS
"""A window of length W counts every event younger than W - W * MAX_SPAN_ERROR and
none of age W or more."""

MAX_WINDOW_S: Final = 400 * 86400
"""The longest window or SLO period a config may give: 400 days. The longest periods in
use are a quarter and a year (366 days in a leap year); 400 days holds a year with a
month to spare. A longer window is a typo (`999999999999d`) far more often than a plan,
and the events of it would have to be consumed live for over a year to fill it."""

RING_SLACK: Final = 3
"""Buckets a ring keeps beyond its longest window and the events-ahead allowance."""

BUCKET_BYTES: Final = 16
"""One bucket of one SLO: (total, bad) as int64."""


def resolution_for(window_s: int) -> int:
    """The coarsest ladder step r with r + (window_s mod r) <= window_s / 60 (1 s when
    none meets it: windows shorter than a minute)."""
    best = LADDER_S[0]
    for r in LADDER_S:
        if MIN_BUCKETS * (r + window_s % r) <= window_s:
            best = r
    return best


@dataclass(frozen=True, slots=True)
class LevelSize:
    """One ring of a WindowSet: its resolution, its length in buckets, and the indexes
    (into the sorted windows) of the windows it serves."""

    resolution_s: int
    length: int
    windows: tuple[int, ...]


def level_sizes(windows_s: Sequence[int], ahead_s: float) -> list[LevelSize]:
    """The rings a WindowSet of these windows allocates, finest first.

    `windows_s` must be sorted and without repeats (as `WindowSet.windows_s` is);
    `ahead_s` is how far past the evaluation time events may be written. A ring holds
    its longest window, the buckets events ahead may fall into, and RING_SLACK more."""
    by_r: dict[int, list[int]] = {}
    for i, w in enumerate(windows_s):
        by_r.setdefault(resolution_for(w), []).append(i)
    sizes: list[LevelSize] = []
    for r in sorted(by_r):
        idx = by_r[r]
        n_max = max(windows_s[i] // r for i in idx)
        length = n_max + math.ceil(ahead_s / r) + RING_SLACK
        sizes.append(LevelSize(r, length, tuple(idx)))
    return sizes


def window_bytes(windows_s: Sequence[int], ahead_s: float) -> int:
    """Bytes of window arrays per SLO: every ring's buckets and one running sum per window."""
    windows = sorted(set(windows_s))
    buckets = sum(level.length for level in level_sizes(windows, ahead_s))
    return (buckets + len(windows)) * BUCKET_BYTES
