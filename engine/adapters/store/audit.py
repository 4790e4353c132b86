"""The audit log's file: an append-only JSON Lines writer of engine.core.audit's chain.

`AuditSink.record(actor, action, subject, details)` is all the rest of the engine
sees; `NullAudit` records nothing (no `audit:` in the config) and `FileAudit` appends
to `audit.path`.

Opening (`FileAudit.open`): the file is created if missing (mode 0600), locked
(`flock`, so a second engine on the same file refuses to start rather than fork the
chain) and its tail verified: the complete lines of its last `TAIL_BYTES` (the whole
file when it is smaller) must parse, each hash must hold with the configured key, and
each must follow the one before it. The chain goes on from the last entry. A damaged
tail (an incomplete last line from a write cut short, an edited line, a different
key) raises AuditLogError and `burnrate run` exits 2: a chain is never forked or
repaired silently. `burnrate audit verify` checks the whole file.

Durability (`fsync`): each entry is written with one `write` to a file opened with
O_APPEND as it is recorded, so a crash of the process loses nothing already
recorded. What an OS crash or power loss may lose depends on the policy:

- `entry` (default): fsync after every entry, before `record` returns. Nothing
  recorded is lost; each entry costs one fsync on the event loop.
- `batch`: fsync once the oldest entry not yet synced is `fsync_interval` old
  (checked at each `record` and at each `tick`, which the runtime calls every
  evaluation, 1 s) or `fsync_max_entries` are waiting, and at `close`. Lost: at most
  the entries recorded in the last `fsync_interval` + 1 s, and at most
  `fsync_max_entries` of them.

A write or fsync that fails (disk full, I/O error) is logged at ERROR with the
entry's action and subject, counted (`write_errors`), and the file is cut back to
its last whole entry, so the chain on disk stays whole; that entry is lost and the
chain goes on from the last one written.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Final, Literal, Protocol

from engine.adapters.secrets import read_secret
from engine.core.audit import (
    AuditChain,
    AuditEntry,
    ChainHead,
    LineError,
    encode_line,
    entry_hash,
    parse_line,
)
from engine.core.audit_verify import verify_lines
from engine.core.config import Audit, Config
from engine.errors import BurnrateError, ConfigError

__all__ = [
    "MIN_KEY_BYTES",
    "TAIL_BYTES",
    "AuditLogError",
    "AuditSink",
    "FileAudit",
    "FsyncPolicy",
    "NullAudit",
    "audit_errors",
    "audit_key",
    "audit_sink",
    "check_audit_file",
    "split_lines",
    "tail_head",
]

log = logging.getLogger("burnrate.adapters.store.audit")

TAIL_BYTES: Final = 1 << 20
"""How much of the end of the file is verified at open: many entries (one is well
under 4 KiB), so the last ones are checked against each other, and a start stays fast
however long the log has grown."""

FsyncPolicy = Literal["entry", "batch"]


class AuditLogError(BurnrateError):
    """The audit log cannot be used: not openable, in use, or its tail does not verify."""


class AuditSink(Protocol):
    """Where the engine's decisions and changes of state are recorded."""

    @property
    def enabled(self) -> bool:
        """False when `record` records nothing (callers skip work to build entries)."""
        ...

    def record(
        self, actor: str, action: str, subject: str, details: Mapping[str, Any] | None = None
    ) -> None: ...


class NullAudit:
    """Records nothing (no `audit:` section)."""

    @property
    def enabled(self) -> bool:
        return False

    def record(
        self, actor: str, action: str, subject: str, details: Mapping[str, Any] | None = None
    ) -> None:
        return None


class FileAudit:
    """Appends entries to `path` (module docstring). `clock` gives each entry's `at`
    (epoch seconds) and the batch policy's time."""

    @property
    def enabled(self) -> bool:
        return True

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        key: bytes | None = None,
        fsync: FsyncPolicy = "entry",
        fsync_interval_s: float = 1.0,
        fsync_max_entries: int = 1000,
        clock: Callable[[], float],
    ) -> None:
        self.path = Path(path)
        self.chain = AuditChain(key)
        self.fsync: FsyncPolicy = fsync
        self.fsync_interval_s = fsync_interval_s
        self.fsync_max_entries = fsync_max_entries
        self.clock = clock
        self.write_errors = 0
        self.syncs = 0
        self._fd: int | None = None
        self._size = 0
        self._unsynced = 0
        self._oldest_unsynced_at = 0.0

    @property
    def head(self) -> ChainHead:
        return self.chain.head

    # -- open and close -----------------------------------------------------------------

    def open(self) -> ChainHead:
        """Open, lock and verify the tail; the head the chain goes on from.
        AuditLogError when the file cannot be used."""
        if self._fd is not None:
            return self.head
        where = str(self.path)
        try:
            fd = os.open(where, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise AuditLogError(f"audit log {where}: cannot open: {exc.strerror}") from None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise AuditLogError(
                    f"audit log {where}: in use by another process (one engine per log)"
                ) from None
            size = os.fstat(fd).st_size
            head = tail_head(self.path, fd, size, self.chain.key)
            if size == 0:  # a new file: its name survives a power cut too
                with contextlib.suppress(OSError):
                    os.fsync(fd)
                _fsync_dir(self.path)
        except OSError as exc:
            os.close(fd)
            raise AuditLogError(f"audit log {where}: cannot read: {exc.strerror}") from None
        except BaseException:
            os.close(fd)
            raise
        self._fd, self._size = fd, size
        self.chain.head = head
        return head

    def close(self) -> None:
        """Sync what is waiting and close (idempotent)."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            if self._unsynced:
                self._sync(fd)
        finally:
            os.close(fd)

    # -- writing ------------------------------------------------------------------------

    def record(
        self, actor: str, action: str, subject: str, details: Mapping[str, Any] | None = None
    ) -> None:
        fd = self._fd
        if fd is None:
            raise RuntimeError("audit log is not open")
        now = self.clock()
        entry = self.chain.build(now, actor, action, subject, details)
        line = encode_line(entry, self.chain.last_body)
        try:
            view = memoryview(line)
            while view:
                view = view[os.write(fd, view) :]
            if self.fsync == "entry":
                os.fsync(fd)
                self.syncs += 1
        except OSError as exc:
            self._failed(fd, entry, exc)
            return
        self._size += len(line)
        self.chain.advance(entry)
        if self.fsync == "batch":
            if not self._unsynced:
                self._oldest_unsynced_at = now
            self._unsynced += 1
            self.tick(now)

    def tick(self, now: float | None = None) -> None:
        """Batch policy: fsync when the oldest waiting entry is `fsync_interval_s` old or
        `fsync_max_entries` wait. Called after each record and each evaluation."""
        fd = self._fd
        if fd is None or not self._unsynced:
            return
        t = self.clock() if now is None else now
        if (
            self._unsynced >= self.fsync_max_entries
            or t - self._oldest_unsynced_at >= self.fsync_interval_s
        ):
            try:
                self._sync(fd)
            except OSError as exc:
                self.write_errors += 1
                log.error(
                    "audit log %s: fsync failed: %s",
                    self.path,
                    exc.strerror,
                    extra={"data": {"event": "audit_fsync_failed"}},
                )

    def _sync(self, fd: int) -> None:
        os.fsync(fd)
        self.syncs += 1
        self._unsynced = 0

    def _failed(self, fd: int, entry: AuditEntry, exc: OSError) -> None:
        self.write_errors += 1
        with contextlib.suppress(OSError):  # keep the file to whole entries
            os.ftruncate(fd, self._size)
        log.error(
            "audit log %s: cannot write entry %s %s: %s (the entry is lost; the chain "
            "goes on from seq %d)",
            self.path,
            entry.action,
            entry.subject,
            exc.strerror,
            self.head.seq,
            extra={
                "data": {
                    "event": "audit_write_failed",
                    "action": entry.action,
                    "subject": entry.subject,
                    "actor": entry.actor,
                }
            },
        )


def tail_head(path: Path, fd: int, size: int, key: bytes | None) -> ChainHead:
    """The head of the log open at `fd` (`size` bytes) after verifying its tail (the
    whole file when it is at most TAIL_BYTES); AuditLogError when it does not verify."""
    if size == 0:
        return ChainHead()
    start = max(size - TAIL_BYTES, 0)
    data = os.pread(fd, size - start, start)
    lines = split_lines(data)
    if start > 0:
        lines = lines[1:]  # the first may be the end of a line that starts before
    fix = (
        f"check it with `burnrate audit verify {path}`; to start a new chain, move the "
        "file aside (keep it: it is the record until now)"
    )
    if start == 0:
        v = verify_lines(lines, key)
        if not v.ok:
            raise AuditLogError(
                f"audit log {path}: line {v.bad_line}: {v.reason}: {v.message}; {fix}"
            )
        return ChainHead(v.entries, v.head)
    entries: list[AuditEntry] = []
    for raw in lines:
        try:
            e = parse_line(raw)
        except LineError as exc:
            raise AuditLogError(
                f"audit log {path}: near its end: {exc.reason}: {exc}; {fix}"
            ) from None
        if entry_hash(e.body(), key) != e.hash:
            raise AuditLogError(
                f"audit log {path}: entry seq {e.seq}: hash does not match (edited, or "
                f"written with another key); {fix}"
            )
        if entries and (e.seq != entries[-1].seq + 1 or e.prev != entries[-1].hash):
            raise AuditLogError(
                f"audit log {path}: entry seq {e.seq} does not follow seq {entries[-1].seq}; {fix}"
            )
        entries.append(e)
    if not entries:
        raise AuditLogError(
            f"audit log {path}: no whole entry in its last {TAIL_BYTES} bytes; {fix}"
        )
    return ChainHead(entries[-1].seq, entries[-1].hash)


def split_lines(data: bytes) -> list[bytes]:
    """`data`'s lines, each with its newline (the last without, if `data` lacks one):
    split at b"\\n" only, as a binary file iterates, never at a lone CR."""
    lines = [line + b"\n" for line in data.split(b"\n")]
    lines[-1] = lines[-1][:-1]
    return lines if lines[-1] else lines[:-1]


def check_audit_file(path: str | os.PathLike[str], key: bytes | None) -> None:
    """What `open` checks, read-only (`burnrate check`): an existing file's tail
    verifies with `key`, a missing one can be created in its directory. AuditLogError."""
    p = Path(path)
    try:
        fd = os.open(p, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        parent = p.parent if str(p.parent) else Path(".")
        if not parent.is_dir():
            raise AuditLogError(f"audit log {p}: directory {parent} does not exist") from None
        if not os.access(parent, os.W_OK | os.X_OK):
            raise AuditLogError(
                f"audit log {p}: cannot create it in {parent}: not writable"
            ) from None
        return
    except OSError as exc:
        raise AuditLogError(f"audit log {p}: cannot open: {exc.strerror}") from None
    try:
        tail_head(p, fd, os.fstat(fd).st_size, key)
    except OSError as exc:
        raise AuditLogError(f"audit log {p}: cannot read: {exc.strerror}") from None
    finally:
        os.close(fd)


MIN_KEY_BYTES: Final = 16


def audit_key(audit: Audit) -> bytes | None:
    """The HMAC key `audit.key_env` or `audit.key_file` holds (UTF-8 bytes of its text
    without surrounding whitespace), None without one; ConfigError naming the field."""
    if audit.key_env is None and audit.key_file is None:
        return None
    field = "$.audit.key_env" if audit.key_env is not None else "$.audit.key_file"
    key = read_secret(field, env=audit.key_env, file=audit.key_file).encode("utf-8")
    if len(key) < MIN_KEY_BYTES:
        raise ConfigError([f"{field}: the key must be at least {MIN_KEY_BYTES} bytes"])
    return key


def audit_sink(config: Config, clock: Callable[[], float]) -> NullAudit | FileAudit:
    """The sink `config.audit` asks for, not opened (NullAudit without one);
    ConfigError when its key cannot be read."""
    audit = config.audit
    if audit is None:
        return NullAudit()
    return FileAudit(
        audit.path,
        key=audit_key(audit),
        fsync=audit.fsync,
        fsync_interval_s=audit.fsync_interval_s,
        fsync_max_entries=audit.fsync_max_entries,
        clock=clock,
    )


def audit_errors(config: Config) -> list[str]:
    """`burnrate check`'s audit problems: the key, and the file as `open` would find it."""
    if config.audit is None:
        return []
    try:
        key = audit_key(config.audit)
    except ConfigError as exc:
        return exc.errors
    try:
        check_audit_file(config.audit.path, key)
    except AuditLogError as exc:
        return [f"$.audit.path: {exc}"]
    return []


def _fsync_dir(path: Path) -> None:
    """The new file's name survives a power cut too."""
    with contextlib.suppress(OSError):
        dfd = os.open(path.parent if str(path.parent) else ".", os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
