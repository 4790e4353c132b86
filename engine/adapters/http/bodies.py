"""Reading a request body within a size bound, for the JSON write routes."""

from __future__ import annotations

from aiohttp import web

__all__ = ["BodyError", "read_bounded"]


class BodyError(Exception):
    """A body that cannot be taken: the HTTP status to answer and the `$` error lines."""

    def __init__(self, status: int, errors: list[str]) -> None:
        super().__init__("; ".join(errors))
        self.status = status
        self.errors = errors


async def read_bounded(request: web.Request, limit: int) -> bytes:
    """The request's body, at most `limit` bytes. Raises BodyError: 413 when it is
    longer (by its Content-Length, or as read), 400 when the client goes away."""
    too_long = BodyError(413, [f"$: the body is over {limit} bytes"])
    if request.content_length is not None and request.content_length > limit:
        raise too_long
    try:
        data = await request.content.read(limit + 1)
    except (ConnectionError, web.HTTPException) as exc:  # the client went away
        raise BodyError(400, [f"$: cannot read the body: {exc}"]) from None
    if len(data) > limit:
        raise too_long
    return data
