"""What the commands that talk to a running engine share (`gate`, `incidents`): the
`--url` and token options, reading the token, and one GET over HTTP.

The address is `--url`, else `$BURNRATE_URL`, else the default listen address; the
token comes from `--token-env` or `--token-file` (engine.adapters.secrets, as every
secret). aiohttp is imported only when a request is made.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from typing import Any, Final

import msgspec

from engine.commands.common import EXIT_USAGE, print_error, run_loop
from engine.errors import ConfigError

__all__ = [
    "DEFAULT_URL",
    "TIMEOUT_S",
    "URL_ENV",
    "Answer",
    "add_client_arguments",
    "ask",
    "base_url",
    "error_of",
    "get",
    "token",
]

DEFAULT_URL: Final = "http://127.0.0.1:9464"
URL_ENV: Final = "BURNRATE_URL"
TIMEOUT_S: Final = 10.0


def add_client_arguments(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """`--url`, `--token-env | --token-file` and `--timeout`."""
    parser.add_argument(
        "--url", help=f"the engine's HTTP address (default: ${URL_ENV} or {DEFAULT_URL})"
    )
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--token-env", metavar="ENV", help="environment variable with the token")
    group.add_argument("--token-file", metavar="FILE", help="file with the bearer token")
    parser.add_argument(
        "--timeout", type=float, default=TIMEOUT_S, help=f"seconds (default {TIMEOUT_S:g})"
    )


def base_url(args: argparse.Namespace) -> str:
    return str(args.url or os.environ.get(URL_ENV) or DEFAULT_URL).rstrip("/")


def token(args: argparse.Namespace) -> str | None:
    """The bearer token the options name (None: none); ConfigError naming the option."""
    from engine.adapters.secrets import read_secret

    if args.token_env is not None:
        return read_secret("--token-env", env=args.token_env)
    if args.token_file is not None:
        return read_secret("--token-file", file=args.token_file)
    return None


@dataclass(frozen=True, slots=True)
class Answer:
    """What the engine answered to `ask`, or the exit status when there is nothing to
    go on (`exit`: the token could not be read, or the engine refused it; printed)."""

    where: str
    """`the engine at URL`, for messages."""
    status: int = 0
    body: bytes = b""
    problem: str | None = None
    """Why no answer came (the engine cannot be reached), or None."""
    exit: int | None = None


def ask(command: str, args: argparse.Namespace, path: str) -> Answer:
    """GET `path` of the engine the options name, with their token."""
    base = base_url(args)
    where = f"the engine at {base}"
    try:
        bearer = token(args)
    except ConfigError as exc:
        for line in exc.errors:
            print_error(command, line)
        return Answer(where, exit=EXIT_USAGE)
    status, body, problem = get(f"{base}{path}", bearer, args.timeout)
    if problem is None and status in (401, 403):
        how = "no token (give --token-env or --token-file)" if bearer is None else "the token"
        print_error(command, f"{where} refused {how} ({status})")
        return Answer(where, status, body, exit=EXIT_USAGE)
    return Answer(where, status, body, problem)


def get(url: str, bearer: str | None, timeout_s: float) -> tuple[int, bytes, str | None]:
    """GET `url` on an event loop of its own: (status, body, None), or (0, b"", why)
    when no answer came."""
    return run_loop(lambda: _get(url, bearer, timeout_s))


async def _get(url: str, bearer: str | None, timeout_s: float) -> tuple[int, bytes, str | None]:
    import aiohttp

    headers = {"Accept": "application/json"}
    if bearer is not None:
        headers["Authorization"] = f"Bearer {bearer}"
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout_s)) as session,
            session.get(url, headers=headers) as resp,
        ):
            return resp.status, await resp.read(), None
    except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as exc:
        why = "timed out" if isinstance(exc, TimeoutError) else str(exc) or type(exc).__name__
        base = url.split("/v1/", 1)[0]
        return 0, b"", f"cannot reach {base}: {why}"


def error_of(body: bytes) -> str:
    """The `error` of an API's JSON error body (the start of the body when it is not
    one), for messages."""
    try:
        data: Any = msgspec.json.decode(body)
    except msgspec.DecodeError:
        return body[:200].decode(errors="replace")
    return str(data.get("error", "")) if isinstance(data, dict) else ""
