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
read. A CRC32 over the payload turns a damaged file into a clear SnapshotError.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Literal, Protocol

import msgspec

from engine.core.snapshot import SnapshotError

__all__ = ["FileStateStore", "Offsets", "StateStore"]

Offsets = dict[tuple[str, int], int]
"""Next offset to read per (topic, partition): everything before it is in the snapshot."""

STATE_FILE_VERSION = 1
TEMP_PREFIX = ".burnrate-state-"


class StateStore(Protocol):
    def save(self, blob: bytes, offsets: Mapping[tuple[str, int], int]) -> None: ...

    def load(self) -> tuple[bytes, Offsets] | None: ...


class _Payload(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    offsets: list[tuple[str, int, int]]
    evaluator: bytes


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

    def save(self, blob: bytes, offsets: Mapping[tuple[str, int], int]) -> None:
        """Write atomically; raises OSError (the previous file stays intact) on failure."""
        payload = msgspec.msgpack.encode(
            _Payload(
                offsets=sorted((t, p, int(o)) for (t, p), o in offsets.items()),
                evaluator=blob,
            )
        )
        data = msgspec.msgpack.encode(
            _File(version=STATE_FILE_VERSION, crc32=zlib.crc32(payload), payload=payload)
        )
        directory = self.path.parent
        directory.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix=".tmp", dir=directory)
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
        """(evaluator snapshot, offsets), or None when there is no file yet.

        Raises SnapshotError when the file is damaged or of an unknown version."""
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
        if f.version != STATE_FILE_VERSION:
            raise SnapshotError(
                f"state file {self.path} has version {f.version}; this engine reads "
                f"version {STATE_FILE_VERSION}"
            )
        if zlib.crc32(f.payload) != f.crc32:
            raise SnapshotError(f"state file {self.path} is damaged: checksum mismatch")
        try:
            p = _PAYLOAD.decode(f.payload)
        except (msgspec.DecodeError, ValueError) as exc:
            raise SnapshotError(f"state file {self.path} is damaged: {exc}") from None
        return p.evaluator, {(t, part): off for t, part, off in p.offsets}


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
