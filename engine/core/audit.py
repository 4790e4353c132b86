"""The tamper-evident audit log: entries, their hash chain, and its verification.

Theory of operation
-------------------
The log is JSON Lines, one entry per decision or change of state:

    {"seq": int (1..), "at": epoch_s, "actor": str, "action": str, "subject": str,
     "details": {...}, "prev": hex, "hash": hex}

`hash` is SHA-256 (HMAC-SHA256 with a key) of the canonical JSON of the entry without
`hash`: keys sorted, no spaces, UTF-8 (Python's `json.dumps(sort_keys=True,
separators=(",", ":"), ensure_ascii=False)`, so floats in their shortest round-trip
form). `prev` is the hash of the entry before (64 zeros for the first), so each entry
commits to the whole history before it: changing, removing, reordering or inserting
one breaks the chain at that line. A line is stored exactly in canonical form (with
`hash`, keys sorted), so every changed byte shows.

Plain SHA-256 catches accidents and edits by people who do not recompute the chain;
anyone who can write the file can rewrite it whole. With a key (HMAC) only holders of
the key can. Neither shows a tail cut off: that takes the head hash kept elsewhere
(the engine exports it as a metric) and `verify_lines(..., expect_head=...)` of
engine.core.audit_verify.

This module is pure: it builds entries and lines and reads one line back;
engine.core.audit_verify verifies a whole log; the file, the clock and fsync are
engine.adapters.store.audit's.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
from collections.abc import Mapping
from typing import Any, Final, Literal, NamedTuple

__all__ = [
    "ACTIONS",
    "GENESIS",
    "AuditChain",
    "AuditEntry",
    "BadReason",
    "ChainHead",
    "LineError",
    "canonical",
    "encode_line",
    "entry_hash",
    "parse_line",
]

GENESIS: Final = "0" * 64
"""The `prev` of the first entry."""

ACTIONS: Final = frozenset(
    {
        "config.loaded",
        "alert.firing",
        "alert.resolved",
        "gate.decision",
        "gate.override.created",
        "gate.override.ended",
        "change.recorded",
        "incident.opened",
        "incident.acknowledged",
        "incident.closed",
        "correction.created",
        "auth.denied",
    }
)
"""The actions the engine records (the log's contract)."""

FIELDS: Final = ("action", "actor", "at", "details", "hash", "prev", "seq", "subject")
_HEX = frozenset("0123456789abcdef")

BadReason = Literal["edited", "removed", "reordered", "inserted", "malformed", "truncated"]


class ChainHead(NamedTuple):
    """Where a chain stands: the last entry's `seq` and `hash` (0 and GENESIS: empty)."""

    seq: int = 0
    hash: str = GENESIS


class AuditEntry(NamedTuple):
    seq: int
    at: float
    actor: str
    action: str
    subject: str
    details: dict[str, Any]
    prev: str
    hash: str

    def body(self) -> dict[str, Any]:
        """The entry without `hash`: what the hash is over."""
        d = self._asdict()
        del d["hash"]
        return d


def canonical(obj: Mapping[str, Any]) -> bytes:
    """Sorted keys, no spaces, UTF-8; NaN and infinities refused (ValueError)."""
    return json.dumps(
        obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def entry_hash(body: Mapping[str, Any], key: bytes | None = None) -> str:
    """SHA-256 (HMAC-SHA256 with `key`) hex of the canonical JSON of `body`."""
    data = canonical(body)
    if key is None:
        return hashlib.sha256(data).hexdigest()
    return hmac.new(key, data, hashlib.sha256).hexdigest()


def _clean(value: Any) -> Any:
    """`value` as plain JSON: lone surrogates replaced, non-finite floats null, tuples
    lists, keys strings. Anything else is a bug of the caller (TypeError). Exact type
    checks first: this runs for every value of every entry."""
    t = type(value)
    if t is str:
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return value.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
        return value
    if value is None or t is int or t is bool:
        return value
    if t is float:
        return value if math.isfinite(value) else None
    if t is dict or isinstance(value, Mapping):
        return {_clean(k if type(k) is str else str(k)): _clean(v) for k, v in value.items()}
    if t is list or t is tuple:
        return [_clean(v) for v in value]
    for base in (int, float, str):  # subclasses (IntEnum, StrEnum)
        if isinstance(value, base):
            return _clean(base(value))
    raise TypeError(f"audit details take JSON values, not {t.__name__}")


class AuditChain:
    """Builds entries onto a chain: each `append` returns the next line to write.

    `key` is the HMAC key (None: plain SHA-256). The head moves only when the caller
    says the line was written (`advance`), so a failed write leaves the chain where
    the file is."""

    def __init__(self, key: bytes | None = None, head: ChainHead | None = None) -> None:
        self.key = key
        self.head = ChainHead() if head is None else head
        self.last_body = b""
        """The canonical JSON of the body of the entry `build` returned last."""

    def build(
        self,
        at_s: float,
        actor: str,
        action: str,
        subject: str,
        details: Mapping[str, Any] | None = None,
    ) -> AuditEntry:
        """The entry after the head (not yet the head: see `advance`). `at_s` is kept to
        the millisecond."""
        if not math.isfinite(at_s):
            raise ValueError(f"audit time must be finite, got {at_s!r}")
        body: dict[str, Any] = {
            "seq": self.head.seq + 1,
            "at": round(float(at_s), 3),
            "actor": _clean(actor),
            "action": _clean(action),
            "subject": _clean(subject),
            "details": _clean(dict(details or {})),
            "prev": self.head.hash,
        }
        data = canonical(body)
        digest = (
            hashlib.sha256(data) if self.key is None else hmac.new(self.key, data, hashlib.sha256)
        )
        entry = AuditEntry(**body, hash=digest.hexdigest())
        self.last_body = data
        return entry

    def advance(self, entry: AuditEntry) -> None:
        """`entry` (built by `build`) is written: it is the head now."""
        if entry.seq != self.head.seq + 1 or entry.prev != self.head.hash:
            raise ValueError("audit entry does not follow the head")
        self.head = ChainHead(entry.seq, entry.hash)


_PREV: Final = b',"prev":"'


def encode_line(entry: AuditEntry, body: bytes | None = None) -> bytes:
    """The entry's line: its canonical JSON (with `hash`) and a newline. `body`, the
    canonical JSON of `entry.body()` when the caller has it, saves encoding it again:
    `hash` sorts just before `prev`, whose top-level key is the last `,"prev":"` in it
    (the fields after it are a number and a string, where a quote is escaped)."""
    if body is None:
        return canonical(entry._asdict()) + b"\n"
    at = body.rfind(_PREV)
    return b'%s,"hash":"%s"%s\n' % (body[:at], entry.hash.encode(), body[at:])


class LineError(ValueError):
    """A line that is not an entry in canonical form; `reason` is malformed or edited."""

    def __init__(self, reason: BadReason, message: str) -> None:
        self.reason = reason
        super().__init__(message)


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    d = dict(pairs)
    if len(d) != len(pairs):
        raise ValueError("a key is given twice")
    return d


def _is_hex64(value: Any) -> bool:
    return isinstance(value, str) and len(value) == 64 and set(value) <= _HEX


def parse_line(raw: bytes) -> AuditEntry:
    """The entry on one line (`raw` with or without its newline). LineError `malformed`
    when it is no entry, `edited` when it is one but not in canonical form."""
    if not raw.endswith(b"\n"):
        raise LineError("malformed", "incomplete line (no newline at its end: a write cut short)")
    text = raw[:-1]
    if not text.strip():
        raise LineError("malformed", "empty line")
    try:
        obj = json.loads(
            text.decode("utf-8"),
            object_pairs_hook=_no_duplicates,
            parse_constant=_no_constants,
        )
    except UnicodeDecodeError:
        raise LineError("malformed", "not UTF-8") from None
    except ValueError as exc:
        raise LineError("malformed", f"not a JSON object ({exc})") from None
    if not isinstance(obj, dict):
        raise LineError("malformed", "not a JSON object")
    missing = [f for f in FIELDS if f not in obj]
    extra = sorted(k for k in obj if k not in FIELDS)
    if missing or extra:
        what = [f"missing {', '.join(missing)}"] if missing else []
        what += [f"unknown {', '.join(extra)}"] if extra else []
        raise LineError("malformed", f"not an audit entry ({'; '.join(what)})")
    seq, at = obj["seq"], obj["at"]
    problems = []
    if isinstance(seq, bool) or not isinstance(seq, int) or seq < 1:
        problems.append("seq must be a whole number >= 1")
    if isinstance(at, bool) or not isinstance(at, int | float) or not math.isfinite(at):
        problems.append("at must be a finite number")
    problems += [
        f"{f} must be a string"
        for f in ("actor", "action", "subject")
        if not isinstance(obj[f], str)
    ]
    if not isinstance(obj["details"], dict):
        problems.append("details must be an object")
    problems += [
        f"{f} must be 64 lowercase hex digits" for f in ("prev", "hash") if not _is_hex64(obj[f])
    ]
    if problems:
        raise LineError("malformed", "; ".join(problems))
    entry = AuditEntry(**{f: obj[f] for f in AuditEntry._fields})
    try:
        again = canonical(obj)
    except ValueError:  # a number too large for a float (1e999) in the details
        raise LineError("malformed", "a number out of range") from None
    if again != text:
        raise LineError("edited", "not in canonical form (changed after it was written)")
    return entry
