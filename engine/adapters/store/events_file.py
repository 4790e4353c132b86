"""Recorded events on disk: JSON Lines files (plain or gzip) read in blocks of whole lines."""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from pathlib import Path
from typing import IO

__all__ = ["CHUNK_BYTES", "read_chunks"]

CHUNK_BYTES = 4 << 20
"""Bytes read per block: large enough to amortise one decode call over many lines."""


def read_chunks(path: Path) -> Iterator[tuple[bytes, int]]:
    """Yield blocks of whole lines and the position reached in the (compressed) file."""
    with path.open("rb") as raw:
        stream: IO[bytes] = gzip.GzipFile(fileobj=raw) if _is_gzip(path) else raw  # type: ignore[assignment]
        rest = b""
        while True:
            block = stream.read(CHUNK_BYTES)
            if not block:
                break
            block = rest + block
            cut = block.rfind(b"\n") + 1
            if cut == 0:
                rest = block
                continue
            rest = block[cut:]
            yield block[:cut], raw.tell()
        if rest.strip():
            yield rest + b"\n", raw.tell()


def _is_gzip(path: Path) -> bool:
    with path.open("rb") as f:
        return f.read(2) == b"\x1f\x8b"
