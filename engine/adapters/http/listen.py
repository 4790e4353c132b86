"""The HTTP listen address, `HOST:PORT`: parsed without the HTTP server, so that
`burnrate check` validates `http.listen` without importing aiohttp."""

from __future__ import annotations

__all__ = ["parse_listen"]


def parse_listen(text: str) -> tuple[str, int]:
    """`HOST:PORT` (IPv6 as `[::1]:PORT`) into host and port; ValueError when malformed."""
    host, sep, port = text.rpartition(":")
    if not sep or not (port.isascii() and port.isdigit()) or not 0 <= int(port) <= 65535:
        raise ValueError(f"expected HOST:PORT, got {text!r}")
    host = host.strip("[]") or "0.0.0.0"
    return host, int(port)
