"""Durations as people write them in SLO configs (`5m`, `1h30m`, `30d`) and back."""

from __future__ import annotations

import functools
import re

_UNIT_S = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
DURATION_PATTERN = r"\A(\d{1,12}(\.\d{1,9})?(ms|s|m|h|d|w)){1,6}\Z"


@functools.lru_cache(maxsize=1024)
def parse_duration_s(text: str) -> float:
    """Seconds in a duration such as `90s`, `5m`, `1h30m`, `30d`. Raises ValueError.
    Remembered: config properties (`Slo.period_s`, a policy row's `lookback_s`) parse
    their text on each read, and the gate reads them per SLO per answer."""
    if not re.fullmatch(DURATION_PATTERN, text):
        raise ValueError(f"not a duration: {text!r} (expected e.g. 30s, 5m, 1h, 30d)")
    return sum(float(num) * _UNIT_S[unit] for num, unit in _PART.findall(text))


def format_duration(seconds: float) -> str:
    """A Prometheus-style duration: the largest units that divide exactly (`1h`, `1h30m`,
    `3d`, `1m0s250ms` style parts are written without zero units: `1m250ms`)."""
    total_ms = round(seconds * 1000)
    if total_ms <= 0:
        return "0s"
    rest, ms = divmod(total_ms, 1000)
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if rest >= size:
            parts.append(f"{rest // size}{unit}")
            rest %= size
    if ms:
        parts.append(f"{ms}ms")
    return "".join(parts)
