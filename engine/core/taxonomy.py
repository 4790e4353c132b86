"""The reliability taxonomy: one vocabulary that turns an event's status into good or bad.

An SLO measures what the service's owner controls, so an event is *bad* only when the
server failed: HTTP 5xx, the gRPC codes that mean "the server broke or was not there"
(UNKNOWN, DEADLINE_EXCEEDED, UNIMPLEMENTED, INTERNAL, UNAVAILABLE, DATA_LOSS) and the
words `error`, `fail`, `failure`, `timeout`. Client errors (HTTP 4xx, INVALID_ARGUMENT,
NOT_FOUND, PERMISSION_DENIED, ...) are *good*: rejecting a bad request is the server doing
its job, and counting it against the budget would let one buggy client burn the error
budget and page the server's owner for a problem the owner cannot fix. Throttling (HTTP
429, RESOURCE_EXHAUSTED) is either a client over its quota or a server shedding load, so
it is an option (`TaxonomyOptions`), good by default.

A status that no vocabulary recognises is `Outcome.UNKNOWN`, neither good nor bad. The SLO
maths counts it as good (a status we cannot read is no evidence of failure, and a producer
that renames its statuses must not page anyone), but it is reported separately, so the
gap in the vocabulary is seen instead of silently hiding failures.

Precedence: an explicit `ok` boolean on the event wins; otherwise the status decides; an
event with neither is good. Integers 0..16 are gRPC codes and 100..599 HTTP codes; strings
are matched case-insensitively with `_`, `-`, `.` and whitespace ignored, and a string of
digits is the number it spells. `docs/taxonomy.md` has the full tables.

Latency SLOs count only events that carry a latency: such an event is bad when it is slower
than the threshold or, by default, when it failed (`latency_is_bad`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from enum import IntEnum, StrEnum
from functools import lru_cache
from types import MappingProxyType

import msgspec

__all__ = [
    "BAD_WORDS",
    "DEFAULT_OPTIONS",
    "GOOD_WORDS",
    "GRPC_CODES",
    "GRPC_SERVER_ERRORS",
    "Outcome",
    "SliKind",
    "TaxonomyOptions",
    "classify",
    "latency_is_bad",
]


class SliKind(StrEnum):
    """What an SLO measures: whether requests succeed, or whether they are fast enough."""

    AVAILABILITY = "availability"
    LATENCY = "latency"


class Outcome(IntEnum):
    """The verdict on one event. UNKNOWN counts as GOOD in the maths but is reported apart."""

    GOOD = 0
    BAD = 1
    UNKNOWN = 2


class TaxonomyOptions(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The two judgement calls that depend on who throttles: the client's quota or the server."""

    http_429_is_error: bool = False
    """HTTP 429 Too Many Requests is bad (the server sheds load) rather than good."""
    grpc_resource_exhausted_is_error: bool = False
    """gRPC RESOURCE_EXHAUSTED (8) is bad (the server is out of capacity) rather than good."""


DEFAULT_OPTIONS = TaxonomyOptions()

GRPC_CODES: Mapping[str, int] = MappingProxyType(
    {
        "OK": 0,
        "CANCELLED": 1,
        "UNKNOWN": 2,
        "INVALID_ARGUMENT": 3,
        "DEADLINE_EXCEEDED": 4,
        "NOT_FOUND": 5,
        "ALREADY_EXISTS": 6,
        "PERMISSION_DENIED": 7,
        "RESOURCE_EXHAUSTED": 8,
        "FAILED_PRECONDITION": 9,
        "ABORTED": 10,
        "OUT_OF_RANGE": 11,
        "UNIMPLEMENTED": 12,
        "INTERNAL": 13,
        "UNAVAILABLE": 14,
        "DATA_LOSS": 15,
        "UNAUTHENTICATED": 16,
    }
)
"""The 17 canonical gRPC status codes, name -> number."""

GRPC_SERVER_ERRORS: frozenset[int] = frozenset(
    GRPC_CODES[name]
    for name in (
        "UNKNOWN",
        "DEADLINE_EXCEEDED",
        "UNIMPLEMENTED",
        "INTERNAL",
        "UNAVAILABLE",
        "DATA_LOSS",
    )
)
"""gRPC codes that are always bad for availability (RESOURCE_EXHAUSTED is an option)."""

BAD_WORDS: frozenset[str] = frozenset({"error", "fail", "failure", "timeout"})
GOOD_WORDS: frozenset[str] = frozenset({"ok", "success"})

_GRPC_RANGE = range(0, 17)
_HTTP_RANGE = range(100, 600)
_RESOURCE_EXHAUSTED = GRPC_CODES["RESOURCE_EXHAUSTED"]
_SEPARATORS = re.compile(r"[\s_.\-]+")


def _key(name: str) -> str:
    """A name as the lookup tables spell it: case folded, without separators.

    `upper()` before `casefold()` makes every case variant of a string fold alike, even
    for the few Unicode letters whose upper and lower forms fold differently.
    """
    return _SEPARATORS.sub("", name.upper().casefold())


# Every recognised non-numeric string, by its key: gRPC names resolve to their number
# (then judged like the number), words to their outcome. The words never clash with a
# gRPC name except `ok`, which is good either way.
_NAMES: Mapping[str, int | Outcome] = MappingProxyType(
    {
        **{_key(name): code for name, code in GRPC_CODES.items()},
        _key("CANCELED"): GRPC_CODES["CANCELLED"],  # the spelling Go and C# use
        **{_key(word): Outcome.BAD for word in BAD_WORDS},
        **{_key(word): Outcome.GOOD for word in GOOD_WORDS},
    }
)


def _classify_code(code: int, options: TaxonomyOptions) -> Outcome:
    if code in _GRPC_RANGE:
        if code == _RESOURCE_EXHAUSTED:
            return Outcome.BAD if options.grpc_resource_exhausted_is_error else Outcome.GOOD
        return Outcome.BAD if code in GRPC_SERVER_ERRORS else Outcome.GOOD
    if code in _HTTP_RANGE:
        if code == 429:
            return Outcome.BAD if options.http_429_is_error else Outcome.GOOD
        return Outcome.BAD if code >= 500 else Outcome.GOOD
    return Outcome.UNKNOWN


@lru_cache(maxsize=4096)
def _parse_text(text: str) -> int | Outcome:
    """A status string as a code (a number, or a gRPC name's number) or a word's outcome."""
    digits = text.strip()
    if digits.isascii() and digits.isdigit():
        digits = digits.lstrip("0") or "0"
        # No recognised code has more than three digits; this also keeps int() cheap.
        return int(digits) if len(digits) <= 3 else Outcome.UNKNOWN
    return _NAMES.get(_key(text), Outcome.UNKNOWN)


def classify(
    status: int | str | None,
    ok: bool | None,
    options: TaxonomyOptions = DEFAULT_OPTIONS,
) -> Outcome:
    """The availability verdict on an event with this status and `ok` flag.

    `ok` wins when given. Otherwise: no status is GOOD; 0..16 are gRPC codes; 100..599
    are HTTP codes; strings are gRPC names, words or numbers; anything else is UNKNOWN.
    """
    if ok is not None:
        return Outcome.GOOD if ok else Outcome.BAD
    if status is None:
        return Outcome.GOOD
    if isinstance(status, bool):  # a bool is an int to Python, but it is no status code
        return Outcome.UNKNOWN
    if isinstance(status, int):
        return _classify_code(status, options)
    if isinstance(status, str):
        parsed = _parse_text(status)
        if isinstance(parsed, Outcome):
            return parsed
        return _classify_code(parsed, options)
    return Outcome.UNKNOWN  # defensive: a float or other stray type from a decoder


def latency_is_bad(
    latency_ms: float | None,
    threshold_ms: float,
    outcome: Outcome,
    failed_counts_bad: bool = True,
) -> bool | None:
    """The latency verdict on one event: True bad, False good, None does not count.

    An event without a latency (None or NaN) does not count, whatever its outcome. A
    counted event is bad when `latency_ms > threshold_ms` (equal is good), or when its
    availability `outcome` is BAD and `failed_counts_bad` is set. With it unset a failed
    request is judged by its latency like any other. UNKNOWN is judged by latency.

    This is the scalar reference for the vectorised evaluation.
    """
    if latency_ms is None or math.isnan(latency_ms):
        return None
    if failed_counts_bad and outcome == Outcome.BAD:
        return True
    return latency_ms > threshold_ms
