"""Verification of an audit log (engine.core.audit): the first bad line and why.

The rules, per line in order, are in `verify_lines`'s docstring. They name the line
where the chain first breaks and the likeliest edit that broke it there; a reason is a
reading of the evidence (an entry moved two lines on reads as `reordered`, one forged
with a valid hash and placed in order as `inserted`), the line is what the chain
proves.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable, Iterator
from typing import NamedTuple

from engine.core.audit import (
    GENESIS,
    AuditEntry,
    BadReason,
    ChainHead,
    LineError,
    entry_hash,
    parse_line,
)

__all__ = ["Verification", "verify_lines"]


class Verification(NamedTuple):
    """What `verify_lines` found: `ok`, the entries read and the head; or the first bad
    line (1-based), why (`reason`) and how (`message`)."""

    ok: bool
    entries: int
    head: str
    bad_line: int | None = None
    reason: BadReason | None = None
    message: str = ""


def _entries(lines: Iterator[bytes], key: bytes | None) -> Iterator[AuditEntry | None]:
    """The rest of the lines as entries whose own hash holds (None for any other)."""
    for raw in lines:
        try:
            e = parse_line(raw)
        except LineError:
            yield None
            continue
        yield e if hmac.compare_digest(entry_hash(e.body(), key), e.hash) else None


def verify_lines(
    lines: Iterable[bytes], key: bytes | None = None, expect_head: str | None = None
) -> Verification:
    """Verify a log given as its raw lines (each with its newline, as a binary file
    iterates), streaming; the rest of the lines are read once more only to tell a
    removed entry from a moved one.

    Per line, in order: it is an entry in canonical form (else `malformed` or
    `edited`); its hash holds for its content and `key` (else `edited`, or `inserted`
    when the next line goes on from the line before, as if this one were not there);
    it follows the line before (`seq` one more, `prev` its hash), else:

    - `seq` too high: `reordered` when the missing `seq` comes later, else `removed`
      (or `inserted` when the next line is the one expected here);
    - `seq` right, `prev` wrong: `inserted` when the next line follows the line before
      this one, else the line before was rewritten with a new hash: `edited` there;
    - `seq` too low: the line before was `inserted` when this line goes on from the one
      before it (or repeats it), else `reordered`.

    With `expect_head` (a head hash exported earlier) some entry must have it, else
    `truncated` at the line after the last.
    """
    it = iter(lines)
    head = ChainHead()
    before = GENESIS
    """The hash of the line before the head's (GENESIS at the first two)."""
    seen_head = expect_head is None
    n = 0
    for raw in it:
        n += 1
        try:
            e = parse_line(raw)
        except LineError as exc:
            return Verification(False, n - 1, head.hash, n, exc.reason, str(exc))
        expected = head.seq + 1
        if not hmac.compare_digest(entry_hash(e.body(), key), e.hash):
            nxt = next(_entries(it, key), None)
            if nxt is not None and nxt.seq == expected and nxt.prev == head.hash:
                return _bad(
                    n,
                    head,
                    "inserted",
                    "an entry that is not part of the chain "
                    "(the next line goes on from the line before)",
                )
            hint = (
                " or not written with this key"
                if key is not None
                else " (or written with a key: give --key-env or --key-file)"
            )
            return _bad(n, head, "edited", f"hash does not match the entry: changed{hint}")
        if e.seq == expected and e.prev == head.hash:
            before, head = head.hash, ChainHead(e.seq, e.hash)
            if not seen_head and e.hash == expect_head:
                seen_head = True
            continue
        if e.seq > expected:
            rest = _entries(it, key)
            nxt = next(rest, None)
            if nxt is not None and nxt.seq == expected and nxt.prev == head.hash:
                if e.prev == nxt.hash:
                    return _bad(n, head, "reordered", f"seq {e.seq} comes before seq {expected}")
                return _bad(
                    n,
                    head,
                    "inserted",
                    f"seq {e.seq} is not part of the chain (the next line is seq {expected})",
                )
            if (nxt is not None and nxt.seq == expected) or any(
                x is not None and x.seq == expected for x in rest
            ):
                return _bad(
                    n,
                    head,
                    "reordered",
                    f"seq {e.seq} where seq {expected} belongs (seq {expected} comes later)",
                )
            gap = f"seq {expected}" if e.seq == expected + 1 else f"seq {expected} to {e.seq - 1}"
            return _bad(n, head, "removed", f"{gap} missing before this line (seq {e.seq})")
        if e.seq == expected:
            nxt = next(_entries(it, key), None)
            if nxt is not None and nxt.seq == expected and nxt.prev == head.hash:
                return _bad(
                    n,
                    head,
                    "inserted",
                    "an entry that is not part of the chain "
                    "(the next line goes on from the line before)",
                )
            if n == 1:
                return _bad(n, head, "edited", "the first entry's prev must be 64 zeros")
            return _bad(
                n - 1,
                ChainHead(head.seq - 1, before),
                "edited",
                f"its hash is not the prev that line {n} holds: rewritten with a new hash",
            )
        if e.hash == head.hash:
            return _bad(n, head, "inserted", f"a copy of line {n - 1}")
        if e.seq == head.seq and e.prev == before:
            return _bad(
                n - 1,
                ChainHead(head.seq - 1, before),
                "inserted",
                f"an entry that is not part of the chain (line {n} goes on from the line "
                "before it)",
            )
        return _bad(n, head, "reordered", f"seq {e.seq} after seq {head.seq}")
    if not seen_head:
        return Verification(
            False,
            n,
            head.hash,
            n + 1,
            "truncated",
            f"no entry has the expected head {expect_head}: the log ends "
            "before it (cut short) or was rewritten",
        )
    return Verification(True, n, head.hash)


def _bad(line: int, head: ChainHead, reason: BadReason, message: str) -> Verification:
    return Verification(False, head.seq, head.hash, line, reason, message)
