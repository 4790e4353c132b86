"""`burnrate incidents`: list the incidents of a running engine (`GET /v1/incidents`).

Prints a table (newest first: id, service, state, opened, time to detect, who
acknowledged, closed; times in UTC) or, with `--format json`, the API's body
`{"incidents": [...]}`. Exits 0 with the list (empty or not), 1 when the engine keeps
no incidents (its config has no `incidents:` section), 2 for a usage error (bad
arguments, a token that cannot be read or is refused), 3 when the engine cannot be
reached or gives no usable answer.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from urllib.parse import urlencode

import msgspec

from engine.commands.client import add_client_arguments, ask, error_of
from engine.commands.common import (
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    print_error,
)
from engine.core.incidents import Incident

__all__ = ["add_arguments", "format_table", "main"]

MAX_LIMIT = 1000


class _Listing(msgspec.Struct):
    incidents: list[Incident]


def _limit(text: str) -> int:
    if not (text.isascii() and text.isdigit() and 1 <= int(text) <= MAX_LIMIT):
        raise argparse.ArgumentTypeError(f"must be a whole number from 1 to {MAX_LIMIT}")
    return int(text)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "List the incidents of a running engine, newest first. Exit 0 with the list, 1 "
        "when the engine keeps no incidents (no incidents: section), 2 for a usage "
        "error, 3 when the engine cannot be reached."
    )
    parser.epilog = (
        "example: burnrate incidents --url http://burnrate:9464 --state open "
        "--token-env BURNRATE_TOKEN"
    )
    add_client_arguments(parser)
    parser.add_argument("--state", choices=("open", "closed"), help="only open or closed ones")
    parser.add_argument("--service", help="only this service's")
    parser.add_argument(
        "--limit", type=_limit, default=100, help=f"at most this many (default 100, <= {MAX_LIMIT})"
    )
    parser.add_argument(
        "--format", choices=("table", "json"), default="table", help="output (default table)"
    )


def main(args: argparse.Namespace) -> int:
    if not args.timeout > 0:
        print_error("incidents", f"--timeout must be > 0, got {args.timeout:g}")
        return EXIT_USAGE
    query = {"state": args.state, "service": args.service, "limit": args.limit}
    path = f"/v1/incidents?{urlencode({k: v for k, v in query.items() if v is not None})}"
    answer = ask("incidents", args, path)
    if answer.exit is not None:
        return answer.exit
    status, body, where = answer.status, answer.body, answer.where
    if answer.problem is not None:
        print_error("incidents", answer.problem)
        return EXIT_UNREACHABLE
    if status in (400, 404):
        print_error("incidents", f"{where}: {error_of(body) or f'answered {status}'}")
        return EXIT_USAGE if status == 400 else EXIT_FAILURE
    if status != 200:
        print_error("incidents", f"{where} answered {status}: {error_of(body)}")
        return EXIT_UNREACHABLE
    try:
        listing = msgspec.json.decode(body, type=_Listing)
    except msgspec.DecodeError as exc:
        print_error("incidents", f"{where} gave no incident list: {exc}")
        return EXIT_UNREACHABLE
    if args.format == "json":
        sys.stdout.write(body.decode() + "\n")
    else:
        sys.stdout.write(format_table(listing.incidents))
    return EXIT_OK


def _utc(t: float | None) -> str:
    if t is None:
        return "-"
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _seconds(s: float | None) -> str:
    if s is None:
        return "-"
    s = round(s)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def format_table(incidents: list[Incident]) -> str:
    """The incidents as aligned columns, one line each, under a header."""
    if not incidents:
        return "no incidents\n"
    rows = [("ID", "SERVICE", "STATE", "OPENED (UTC)", "DETECT", "ACK BY", "CLOSED (UTC)")]
    rows += [
        (
            i.id,
            i.service,
            i.state,
            _utc(i.opened_at),
            _seconds(i.time_to_detect_s),
            i.acknowledged_by or "-",
            _utc(i.closed_at),
        )
        for i in incidents
    ]
    widths = [max(len(r[k]) for r in rows) for k in range(len(rows[0]))]
    return "".join(
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() + "\n" for r in rows
    )
