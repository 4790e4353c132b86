"""Reading a request body within a size bound, and the JSON error answers the `/v1`
routes share (400/408/413 with every problem, 404 naming the service)."""

from __future__ import annotations

import asyncio
from typing import Final

import msgspec
from aiohttp import web

__all__ = [
    "BODY_TIMEOUT_S",
    "JSON_TYPE",
    "BodyError",
    "invalid",
    "read_bounded",
    "service_not_found",
]

JSON_TYPE = "application/json"


class BodyError(Exception):
    """A body that cannot be taken: the HTTP status to answer and the `$` error lines."""

    def __init__(self, status: int, errors: list[str]) -> None:
        super().__init__("; ".join(errors))
        self.status = status
        self.errors = errors


BODY_TIMEOUT_S: Final = 10.0
"""A body must arrive within this long of its handler asking for it: a client that
announces 100 bytes and sends 10 would otherwise hold a connection (and its place under
the connection cap) for ever."""


async def read_bounded(request: web.Request, limit: int, timeout_s: float | None = None) -> bytes:
    """The request's body, at most `limit` bytes. Raises BodyError: 413 when it is
    longer (by its Content-Length, or as read), 408 when it takes over `timeout_s`
    (default BODY_TIMEOUT_S), 400 when the client goes away."""
    if timeout_s is None:
        timeout_s = BODY_TIMEOUT_S
    too_long = BodyError(413, [f"$: the body is over {limit} bytes"])
    if request.content_length is not None and request.content_length > limit:
        raise too_long
    try:
        async with asyncio.timeout(timeout_s):
            data = b""
            while len(data) <= limit:  # read(n) gives what has arrived, maybe a part
                chunk = await request.content.read(limit + 1 - len(data))
                if not chunk:
                    break
                data += chunk
    except TimeoutError:
        raise BodyError(408, [f"$: the body did not arrive within {timeout_s:g}s"]) from None
    except (ConnectionError, web.HTTPException) as exc:  # the client went away
        raise BodyError(400, [f"$: cannot read the body: {exc}"]) from None
    if len(data) > limit:
        raise too_long
    return data


class _Invalid(msgspec.Struct):
    error: str
    errors: list[str]


class _NotFound(msgspec.Struct):
    error: str
    service: str


_encoder = msgspec.json.Encoder()


def invalid(status: int, errors: list[str]) -> web.Response:
    """`{"error": "<every problem, `; `-joined>", "errors": ["$.path: ...", ...]}`."""
    body = _encoder.encode(_Invalid("; ".join(errors), errors))
    return web.Response(status=status, body=body, content_type=JSON_TYPE)


def service_not_found(service: str, error: str = "no SLO has that service") -> web.Response:
    """404 `{"error": ..., "service": ...}`."""
    body = _encoder.encode(_NotFound(error, service))
    return web.Response(status=404, body=body, content_type=JSON_TYPE)
