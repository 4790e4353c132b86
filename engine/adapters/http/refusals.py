"""How many auth refusals are logged in full (engine.adapters.http.auth): a client
hammering with bad tokens must not flood the log. In each interval the first few
distinct refusals are logged, the rest counted and summed up in one line."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Final

__all__ = ["REFUSAL_LOG_BURST", "REFUSAL_LOG_INTERVAL_S", "RefusalLimiter", "RefusalSummary"]

REFUSAL_LOG_INTERVAL_S: Final = 60.0
REFUSAL_LOG_BURST: Final = 10


@dataclass(frozen=True, slots=True)
class RefusalSummary:
    """Refusals counted but not logged in full during one interval."""

    count: int
    by_reason: dict[str, int]
    interval_s: float

    def message(self) -> str:
        reasons = ", ".join(f"{reason}: {n}" for reason, n in self.by_reason.items())
        return (
            f"{self.count} more unauthorized requests in the last {self.interval_s:g}s ({reasons})"
        )


class RefusalLimiter:
    """Decides which 401s are logged in full; counts the others for one summary per interval.

    An interval starts with the first refusal after the previous one ended. In it, the
    first `burst` distinct keys are logged in full (`admit` is True); a key seen before
    in the interval, or any key once `burst` are used, is counted by reason. Once the
    interval is over, `take_summary` returns those counts (once). The clock is
    injectable; nothing here sleeps or logs.
    """

    def __init__(
        self,
        interval_s: float = REFUSAL_LOG_INTERVAL_S,
        burst: int = REFUSAL_LOG_BURST,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not interval_s > 0:
            raise ValueError("interval_s must be > 0")
        if burst < 1:
            raise ValueError("burst must be >= 1")
        self.interval_s = interval_s
        self.burst = burst
        self._clock = clock
        self._ends_at: float | None = None
        self._logged: set[Hashable] = set()
        self._suppressed: Counter[str] = Counter()

    def admit(self, key: Hashable, reason: str) -> bool:
        """True when this refusal is to be logged in full; else it is counted.

        Take the summary of an ended interval first: counts of this call join the
        interval it starts."""
        now = self._clock()
        if self._ends_at is None or now >= self._ends_at:
            self._ends_at = now + self.interval_s
            self._logged.clear()
        if key not in self._logged and len(self._logged) < self.burst:
            self._logged.add(key)
            return True
        self._suppressed[reason] += 1
        return False

    def seconds_left(self) -> float:
        """Until the current interval ends (0 when none is running)."""
        if self._ends_at is None:
            return 0.0
        return max(0.0, self._ends_at - self._clock())

    def take_summary(self, *, force: bool = False) -> RefusalSummary | None:
        """The counted refusals once their interval is over (any time with `force`),
        then forgets them; None when there are none yet."""
        if not self._suppressed:
            return None
        if not force and self._ends_at is not None and self._clock() < self._ends_at:
            return None
        by_reason = dict(sorted(self._suppressed.items(), key=lambda item: (-item[1], item[0])))
        self._suppressed.clear()
        return RefusalSummary(sum(by_reason.values()), by_reason, self.interval_s)
