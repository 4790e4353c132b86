"""Window resolutions and ring sizes: plain integer arithmetic, no numpy.

`WindowSet` (engine.core.windows) allocates its rings from `level_sizes`, and the config
check (engine.core.config) estimates a config's window memory with the same function,
so `burnrate check` refuses what the evaluator could not allocate without importing
numpy or allocating anything.

The span error. A window of W seconds at resolution r is n = floor(W/r) buckets: the
newest is the bucket holding the evaluation time t, so at t it counts exactly the
events in (u - n*r, u], where u = ceil(t/r)*r is the end of that bucket. With
d = u - t (0 <= d < r) the window is (t - W + a, t + d] with a = d + (W mod r): it
misses the oldest a seconds of (t - W, t], never reaches back W or more, and takes
events written ahead of t (the evaluator holds some, up to its future limit) only when
at most d ahead. The evaluator evaluates only at t = k * tick, and over those times d
takes exactly the multiples of g = gcd(r, tick) below r (for an integer tick; for one
with milliseconds nothing is assumed, g = 0), so the worst case over every evaluation
is

    span_error_s(W, r, tick) = r - g + (W mod r)

and it is 0 (the window is exactly (t - W, t]) when r divides both the tick and W.

The rule. A window of W seconds uses the coarsest ladder step r whose worst case is
within `max_span_error_s(W)` = max(W/600, 1 s): 5 min to 2 h at the 10 s default tick
are exact (10 s buckets), 6 h is at most 20 s short (30 s), 1 d 110 s (2 min), 3 d
290 s (5 min), 30 d 59 min 50 s (1 h). The 1 s step meets every bound (a second
divides everything), so there is always one; and any step r <= W/1200 meets it
(r - g + (W mod r) < 2r), so a long window never falls to fine buckets, whatever its
length or the tick: a prime number of seconds gets the coarsest step at most W/1200.
From 5 s up no step is more than 3 times the one below it, so a window of at least
6,000 s (W/1200 >= 5) has fewer than 3,600 buckets (up to 1,200 days, three times
MAX_WINDOW_S), and a shorter one at most W.

The steps need not divide each other: a WindowSet aggregates a batch at the greatest
common divisor of its rings' resolutions (`grain_s`), whose buckets each lie in one
bucket of every ring.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

__all__ = [
    "BUCKET_BYTES",
    "LADDER_S",
    "MAX_WINDOW_S",
    "RING_SLACK",
    "SPAN_ERROR_RATIO",
    "SUM_BYTES",
    "LevelSize",
    "grain_s",
    "level_sizes",
    "max_span_error_s",
    "resolution_for",
    "span_error_s",
    "tick_grain_s",
    "window_bytes",
]

LADDER_S: Final = (1, 5, 10, 30, 60, 120, 300, 900, 1800, 3600, 10800, 21600, 43200, 86400)
"""Bucket resolutions. The common ticks (1 s, 5 s, 10 s, 30 s, 1 min) are on it, so
that windows in whole ticks are exact; no step is more than 3 times the one below it
from 5 s up, so a window's step is never much finer than its bound needs."""

SPAN_ERROR_RATIO: Final = 1 / 600
"""A window of W seconds is short by at most max(W * SPAN_ERROR_RATIO, 1 s): 6 s of an
hour, 2.4 min of a day, 72 min of 30 days. Ten times tighter than the whole-bucket rule
it replaced (W/60: tickets resolving 35-45 s early on a 6 h short window), and still
within 64 KiB of window arrays per SLO for the default policy and a 30-day period at the
default tick (docs/design.md, "Windows")."""

MAX_WINDOW_S: Final = 400 * 86400
"""The longest window or SLO period a config may give: 400 days. The longest periods in
use are a quarter and a year (366 days in a leap year); 400 days holds a year with a
month to spare. A longer window is a typo (`999999999999d`) far more often than a plan,
and the events of it would have to be consumed live for over a year to fill it."""

RING_SLACK: Final = 3
"""Buckets a ring keeps beyond its longest window and the events-ahead allowance."""

BUCKET_BYTES: Final = 8
"""One bucket of one SLO: (total, bad) as uint32 (engine.core.windows: a level is promoted
to int64, twice this, only when a bucket would pass 2^32 - 1 events)."""

SUM_BYTES: Final = 16
"""One window's running sum of one SLO: (total, bad) as int64."""


def max_span_error_s(window_s: int) -> float:
    """How much shorter than W a window of W seconds may be: max(W/600, 1 s)."""
    return max(window_s * SPAN_ERROR_RATIO, 1.0)


def tick_grain_s(r: int, tick_s: float) -> int:
    """g = gcd(r, tick): on the tick grid, the end of the bucket holding t is a multiple
    of g after t, and every multiple of g below r occurs. 0 for a tick with milliseconds
    (`1500ms`), of which nothing is assumed."""
    if not float(tick_s).is_integer():
        return 0
    return math.gcd(r, int(tick_s))


def span_error_s(window_s: int, r: int, tick_s: float) -> int:
    """The most a window of `window_s` seconds at resolution r is short of (t - W, t]
    over the evaluation times t = k * tick (module docstring): r - gcd(r, tick) + W mod r,
    0 when r divides both the tick and the window."""
    return r - tick_grain_s(r, tick_s) + window_s % r


def resolution_for(window_s: int, tick_s: float) -> int:
    """The coarsest ladder step whose span error on the tick grid is within
    `max_span_error_s` (1 s always is). Every step is tried, as the error is not monotone
    in r: 10 s is exact at a 10 s tick where 5 s is too, and 30 s is not."""
    bound = max_span_error_s(window_s)
    return max(r for r in LADDER_S if span_error_s(window_s, r, tick_s) <= bound)


@dataclass(frozen=True, slots=True)
class LevelSize:
    """One ring of a WindowSet: its resolution, its length in buckets, and the indexes
    (into the sorted windows) of the windows it serves."""

    resolution_s: int
    length: int
    windows: tuple[int, ...]


def level_sizes(windows_s: Sequence[int], ahead_s: float, tick_s: float) -> list[LevelSize]:
    """The rings a WindowSet of these windows allocates, finest first.

    `windows_s` must be sorted and without repeats (as `WindowSet.windows_s` is);
    `ahead_s` is how far past the evaluation time events may be written, and `tick_s`
    the evaluation grid the resolutions are chosen for. A ring holds its longest window,
    the buckets events ahead may fall into, and RING_SLACK more."""
    by_r: dict[int, list[int]] = {}
    for i, w in enumerate(windows_s):
        by_r.setdefault(resolution_for(w, tick_s), []).append(i)
    sizes: list[LevelSize] = []
    for r in sorted(by_r):
        idx = by_r[r]
        n_max = max(windows_s[i] // r for i in idx)
        length = n_max + math.ceil(ahead_s / r) + RING_SLACK
        sizes.append(LevelSize(r, length, tuple(idx)))
    return sizes


def grain_s(resolutions_s: Sequence[int]) -> int:
    """The bucket a batch is aggregated at before it is written to every ring: the
    greatest common divisor of the rings' resolutions. Right-closed buckets of a divisor
    of R each lie in one bucket of R, which buckets of a finer ring that does not divide
    R (2 min and 5 min) would not."""
    return math.gcd(*resolutions_s)


def window_bytes(windows_s: Sequence[int], ahead_s: float, tick_s: float) -> int:
    """Bytes of window arrays per SLO: every ring's buckets and one running sum per window
    (before any level is promoted to int64)."""
    windows = sorted(set(windows_s))
    buckets = sum(level.length for level in level_sizes(windows, ahead_s, tick_s))
    return buckets * BUCKET_BYTES + len(windows) * SUM_BYTES
