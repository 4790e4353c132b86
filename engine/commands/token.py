"""`burnrate token hash`: the SHA-256 of an API token, for `http.tokens[].sha256`.

The token is read from stdin (never an argument: arguments end up in shell history and
in `ps`), stripped of surrounding whitespace as the engine strips tokens it reads from
files, and must be visible ASCII without spaces, what an `Authorization: Bearer` header
carries. The digest is printed as 64 lowercase hex digits; the token is never echoed.
"""

from __future__ import annotations

import argparse
import sys
from typing import Final

from engine.adapters.http.tokens import TOKEN_RE, token_digest
from engine.commands.common import EXIT_OK, EXIT_USAGE, print_error

__all__ = ["add_arguments", "main"]

MAX_TOKEN_BYTES: Final = 4096


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Work with the HTTP API's tokens. `burnrate token hash` reads a token from stdin "
        "and prints its SHA-256 (hex) for `http.tokens[].sha256` in the config, e.g. "
        "`openssl rand -hex 32 > deployer.token && burnrate token hash < deployer.token`."
    )
    sub = parser.add_subparsers(dest="token_command", metavar="SUBCOMMAND", required=True)
    sub.add_parser(
        "hash",
        help="print the SHA-256 of the token read from stdin",
        description="Read a token from stdin (surrounding whitespace dropped) and print its "
        "SHA-256 as 64 hex digits. Exit 2 when stdin holds no token or one that is not "
        "visible ASCII without spaces.",
    )


def main(args: argparse.Namespace) -> int:
    if sys.stdin.isatty():
        print("burnrate token hash: type the token, then Ctrl-D", file=sys.stderr)
    data = sys.stdin.buffer.read(MAX_TOKEN_BYTES + 1)
    problem = None
    if len(data) > MAX_TOKEN_BYTES:
        problem = f"stdin holds more than {MAX_TOKEN_BYTES} bytes: not a token"
    else:
        try:
            token = data.decode("ascii").strip()
        except UnicodeDecodeError:
            token, problem = "", "the token must be visible ASCII without spaces (not ASCII)"
        if problem is None and not token:
            problem = "no token on stdin (it is empty or only whitespace)"
        elif problem is None and not TOKEN_RE.fullmatch(token):
            problem = "the token must be visible ASCII without spaces or control characters"
    if problem is not None:
        print_error("token hash", problem)
        return EXIT_USAGE
    print(token_digest(token).hex())
    return EXIT_OK
