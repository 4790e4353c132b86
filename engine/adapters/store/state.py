"""The state store: one file holding an evaluator snapshot and the Kafka offsets it covers.

Theory of operation
-------------------
The evaluator's counts are only meaningful together with the offsets up to which
records were counted (offsets stored outside Kafka, with the state): on restart the
source seeks to exactly those offsets, so nothing is lost and nothing counted twice.
So both live in ONE file, replaced atomically: written to a temp file in the same
directory, fsynced, renamed over the old one with `os.replace` (atomic on POSIX), and
the directory fsynced so the rename itself survives a power cut. A crash at any point
leaves either the old file or the new one, never a mix; a left-over temp file is never
read, and `clean_temp_files()` (called once at start) removes those a killed process
left behind. A CRC32 over the payload turns a damaged file into a clear SnapshotError.

The file also carries the alert deliveries not yet made (an opaque blob of the
runtime's `delivery` module), so a page pending at shutdown is sent after the restart.

The gate overrides in force (engine.core.overrides, encoded by the core) travel in it
too, so a break-glass override outlives a restart, and so do the changes kept
(engine.core.changes) with the budget attributed to each.

Versions: 2 adds `deliveries`, 3 adds `overrides`, 4 adds `changes`. Each is written
only while it needs to be (version 4 while there are changes, else 3 while there are
overrides, else 2), so an older engine still reads the file of an engine that uses
none of the newer parts; older versions are still read (without those parts).
Offsets that Kafka cannot have produced (negative offset or partition, empty or
illegal topic, a partition listed twice) make the file a SnapshotError, like damage.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import tempfile
import time
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Literal, NamedTuple, Protocol

import msgspec

from engine.core.snapshot import SnapshotError

__all__ = ["FileStateStore", "Offsets", "Saved", "StateStore"]

log = logging.getLogger("burnrate.adapters.store.state")

Offsets = dict[tuple[str, int], int]
"""Next offset to read per (topic, partition): everything before it is in the snapshot."""

STATE_FILE_VERSION = 4
_NO_CHANGES_VERSION = 3
_NO_OVERRIDES_VERSION = 2
READABLE_VERSIONS = frozenset({1, 2, 3, 4})
TEMP_PREFIX = ".burnrate-state-"
TEMP_SUFFIX = ".tmp"
LEGACY_TEMP_MIN_AGE_S = 15 * 60.0
"""Temp files of the old naming (not tied to a state file's name) are removed only when
they have not been written to for this long: they may belong to another state file of
the same directory, whose writer would be done with them well before."""

MAX_OFFSET = 2**63 - 1
MAX_PARTITION = 2**31 - 1
MAX_TOPIC_CHARS = 249
_TOPIC = re.compile(r"[A-Za-z0-9._-]+")
_LEGACY_TEMP = re.compile(re.escape(TEMP_PREFIX) + r"[A-Za-z0-9_]{8}" + re.escape(TEMP_SUFFIX))


class Saved(NamedTuple):
    """What a state file holds."""

    evaluator: bytes
    offsets: Offsets
    deliveries: bytes
    """The runtime's undelivered alert transitions; empty in a version 1 file."""
    overrides: bytes = b""
    """The gate overrides (engine.core.overrides); empty before version 3."""
    changes: bytes = b""
    """The changes kept (engine.core.changes); empty before version 4."""


class StateStore(Protocol):
    def save(
        self,
        blob: bytes,
        offsets: Mapping[tuple[str, int], int],
        deliveries: bytes = b"",
        overrides: bytes = b"",
        changes: bytes = b"",
    ) -> None: ...

    def read(self) -> Saved | None: ...

    def clean_temp_files(self) -> int: ...


class _Payload(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    offsets: list[tuple[str, int, int]]
    evaluator: bytes
    deliveries: bytes = b""
    overrides: bytes = b""
    changes: bytes = b""


class _File(msgspec.Struct, frozen=True, kw_only=True):
    format: Literal["burnrate-state"] = "burnrate-state"
    version: int
    crc32: int
    payload: bytes


_FILE = msgspec.msgpack.Decoder(_File)
_PAYLOAD = msgspec.msgpack.Decoder(_Payload)


class FileStateStore:
    """Snapshot + offsets in one file at `path`, replaced atomically on every save."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        name = self.path.name
        if len(name) > 128:  # keep temp names within NAME_MAX
            name = hashlib.sha256(name.encode()).hexdigest()[:32]
        self.temp_prefix = f"{TEMP_PREFIX}{name}."
        """Temp files of this state file start so (and end in TEMP_SUFFIX)."""

    def save(
        self,
        blob: bytes,
        offsets: Mapping[tuple[str, int], int],
        deliveries: bytes = b"",
        overrides: bytes = b"",
        changes: bytes = b"",
    ) -> None:
        """Write atomically; raises OSError (the previous file stays intact) on failure."""
        payload = msgspec.msgpack.encode(
            _Payload(
                offsets=sorted((t, p, int(o)) for (t, p), o in offsets.items()),
                evaluator=blob,
                deliveries=deliveries,
                overrides=overrides,
                changes=changes,
            )
        )
        if changes:
            version = STATE_FILE_VERSION
        else:
            version = _NO_CHANGES_VERSION if overrides else _NO_OVERRIDES_VERSION
        data = msgspec.msgpack.encode(
            _File(version=version, crc32=zlib.crc32(payload), payload=payload)
        )
        directory = self.path.parent
        directory.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=self.temp_prefix, suffix=TEMP_SUFFIX, dir=directory)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        _fsync_dir(directory)

    def load(self) -> tuple[bytes, Offsets] | None:
        """(evaluator snapshot, offsets), or None when there is no file yet (see `read`)."""
        saved = self.read()
        return None if saved is None else (saved.evaluator, saved.offsets)

    def read(self) -> Saved | None:
        """What the file holds, or None when there is no file yet.

        Raises SnapshotError when the file is damaged, of an unknown version, or holds
        offsets Kafka cannot have produced."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise SnapshotError(f"cannot read state file {self.path}: {exc.strerror}") from None
        try:
            f = _FILE.decode(data)
        except (msgspec.DecodeError, ValueError) as exc:
            raise SnapshotError(f"state file {self.path} is damaged: {exc}") from None
        if f.version not in READABLE_VERSIONS:
            raise SnapshotError(
                f"state file {self.path} has version {f.version}; this engine reads "
                f"versions {', '.join(map(str, sorted(READABLE_VERSIONS)))}"
            )
        if zlib.crc32(f.payload) != f.crc32:
            raise SnapshotError(f"state file {self.path} is damaged: checksum mismatch")
        try:
            p = _PAYLOAD.decode(f.payload)
        except (msgspec.DecodeError, ValueError) as exc:
            raise SnapshotError(f"state file {self.path} is damaged: {exc}") from None
        if f.version < 2 and p.deliveries:
            raise SnapshotError(f"state file {self.path} is damaged: deliveries in version 1")
        if f.version < 3 and p.overrides:
            raise SnapshotError(
                f"state file {self.path} is damaged: overrides in version {f.version}"
            )
        if f.version < 4 and p.changes:
            raise SnapshotError(
                f"state file {self.path} is damaged: changes in version {f.version}"
            )
        problem = offsets_problem(p.offsets)
        if problem is not None:
            raise SnapshotError(f"state file {self.path} holds impossible offsets: {problem}")
        offsets = {(t, part): off for t, part, off in p.offsets}
        return Saved(p.evaluator, offsets, p.deliveries, p.overrides, p.changes)

    def clean_temp_files(self) -> int:
        """Remove temp files that killed writes of this state file left behind; returns
        how many. Only files in the state file's directory whose names start with this
        file's temp prefix, plus old-style temp names not touched for a while (see
        LEGACY_TEMP_MIN_AGE_S); never the state file itself. Never raises."""
        directory = self.path.parent
        try:
            names = os.listdir(directory)
        except OSError:
            return 0
        now = time.time()
        removed = 0
        for name in names:
            if not name.endswith(TEMP_SUFFIX) or name == self.path.name:
                continue
            candidate = directory / name
            if not name.startswith(self.temp_prefix):
                if not _LEGACY_TEMP.fullmatch(name):
                    continue
                try:
                    if now - candidate.stat().st_mtime < LEGACY_TEMP_MIN_AGE_S:
                        continue
                except OSError:
                    continue
            try:
                if candidate.is_symlink() or not candidate.is_file():
                    continue
                size = candidate.stat().st_size
                candidate.unlink()
            except OSError as exc:
                log.warning("cannot remove the stale temp file %s: %s", candidate, exc.strerror)
                continue
            removed += 1
            log.info(
                "removed %s (%d bytes), left by a state write that never finished",
                candidate,
                size,
                extra={"data": {"event": "state_temp_removed", "bytes": size}},
            )
        return removed


def offsets_problem(offsets: list[tuple[str, int, int]]) -> str | None:
    """Why these (topic, partition, offset) entries cannot be Kafka's, or None."""
    seen: set[tuple[str, int]] = set()
    for topic, partition, offset in offsets:
        where = f"{topic!r}[{partition}]"
        if not topic:
            return f"an empty topic name (partition {partition}, offset {offset})"
        if len(topic) > MAX_TOPIC_CHARS or not _TOPIC.fullmatch(topic) or topic in (".", ".."):
            return f"the topic name {topic[:300]!r} is not a legal Kafka topic name"
        if not 0 <= partition <= MAX_PARTITION:
            return f"{where}: partition {partition} is out of range 0..{MAX_PARTITION}"
        if not 0 <= offset <= MAX_OFFSET:
            return f"{where}: offset {offset} is out of range 0..{MAX_OFFSET}"
        if (topic, partition) in seen:
            return f"{where} is listed twice"
        seen.add((topic, partition))
    return None


def _fsync_dir(directory: Path) -> None:
    """Make the rename durable (POSIX); a no-op where directories cannot be opened."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)
