"""What readiness and the metrics need to know about consumption progress.

Its own module, free of aiokafka, so the HTTP adapter can read the source's progress
without importing the Kafka client.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["SourceStatus"]


@dataclass(frozen=True, slots=True)
class SourceStatus:
    """A consumer's progress at one moment."""

    assigned: tuple[tuple[str, int], ...]
    last_fetch_age_s: float | None
    """Seconds since the broker last answered a fetch; None before the first answer."""
    last_fetch_at: float | None
    """Epoch seconds of that answer."""
    lag: Mapping[tuple[str, int], int]
    records_consumed: int
    running: bool
    spans_ignored: int = 0
    """OTLP spans in consumed records that are not SERVER spans (not events)."""
