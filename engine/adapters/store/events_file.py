"""Recorded events on disk: JSON Lines files (plain or gzip) read in blocks of whole lines.

A damaged gzip file (cut short, a bad CRC, not gzip after the magic bytes) ends the
reading with an `EventsFileError` that says where: the whole lines before the damage
have been yielded by then, so a caller can still report on them. A gzip file's CRC
is checked only at its end, so lines of a file with a bad CRC were read before it was
found out; the line cut by the damage is never yielded.
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

from engine.errors import BurnrateError

__all__ = ["CHUNK_BYTES", "EventsFileError", "read_chunks"]

CHUNK_BYTES = 4 << 20
"""Bytes read per block: large enough to amortise one decode call over many lines."""

_GZIP_ERRORS = (EOFError, gzip.BadGzipFile, zlib.error)
"""What reading a damaged gzip file raises: EOFError when it is cut short, BadGzipFile
for a bad header, CRC or length, or trailing bytes that are not gzip, zlib.error for
a damaged deflate stream."""


class EventsFileError(BurnrateError):
    """An events file that cannot be read to its end: the damage was found at byte
    `position` of the file, after `lines` whole lines (`data_bytes` bytes of them,
    uncompressed) had been yielded."""

    def __init__(
        self, path: Path, problem: str, *, position: int, lines: int, data_bytes: int
    ) -> None:
        self.path = path
        self.position = position
        self.lines = lines
        self.data_bytes = data_bytes
        after = f"after line {lines:,} ({data_bytes:,} bytes)" if lines else "before any line"
        super().__init__(f"{path.name}: {problem} at byte {position:,} of the file, {after}")


def read_chunks(path: Path) -> Iterator[tuple[bytes, int]]:
    """Yield blocks of whole lines and the position reached in the (compressed) file.

    Raises EventsFileError, after the blocks of the whole lines before the damage, when
    a gzip file is damaged."""
    with path.open("rb") as raw:
        if not _is_gzip(path):
            yield from _blocks(raw.read, raw, lambda: True)
            return
        reader = _GzipReader(gzip.GzipFile(fileobj=raw))
        lines = data_bytes = 0
        for block, pos in _blocks(reader.read, raw, lambda: reader.error is None):
            lines += block.count(b"\n")
            data_bytes += len(block)
            yield block, pos
        if reader.error is not None:
            if isinstance(reader.error, EOFError):
                problem = "the compressed file ends early"
            else:
                problem = f"the compressed data is corrupt ({reader.error})"
            raise EventsFileError(
                path, problem, position=raw.tell(), lines=lines, data_bytes=data_bytes
            )


class _GzipReader:
    """Reads up to CHUNK_BYTES through `read1`, one decompression step at a time, so
    that what was read before a step fails is still returned; the failure is kept in
    `error` and the stream then reads as ended."""

    def __init__(self, stream: gzip.GzipFile) -> None:
        self._stream = stream
        self.error: Exception | None = None

    def read(self, size: int) -> bytes:
        parts: list[bytes] = []
        got = 0
        while got < size and self.error is None:
            try:
                part = self._stream.read1(size - got)
            except _GZIP_ERRORS as exc:
                self.error = exc
                break
            if not part:
                break
            parts.append(part)
            got += len(part)
        return b"".join(parts)


def _blocks(
    read: Callable[[int], bytes], raw: IO[bytes], ended_cleanly: Callable[[], bool]
) -> Iterator[tuple[bytes, int]]:
    """Blocks of whole lines from `read`; a last line without newline is completed,
    unless the stream did not end cleanly (then it is a line cut short). Each block is
    held until the next read, so that the last one carries the position at the end of
    the file even when only whitespace follows its last newline; the others carry the
    position reached when they were read."""
    rest = b""
    held: tuple[bytes, int] | None = None
    while True:
        block = read(CHUNK_BYTES)
        if not block:
            break
        block = rest + block
        cut = block.rfind(b"\n") + 1
        if cut == 0:
            rest = block
            continue
        if held is not None:
            yield held
        held, rest = (block[:cut], raw.tell()), block[cut:]
    if rest.strip() and ended_cleanly():
        if held is not None:
            yield held
        yield rest + b"\n", raw.tell()
    elif held is not None:
        yield held[0], raw.tell()


def _is_gzip(path: Path) -> bool:
    with path.open("rb") as f:
        return f.read(2) == b"\x1f\x8b"
