"""`burnrate audit verify PATH`: check an audit log's hash chain (engine.core.audit).

Exit 0 with `ok: N entries, head <hash>` when every line is an entry in canonical
form whose hash holds (with the key, when given) and that follows the one before;
exit 1 naming the first bad line and why (edited, removed, reordered, inserted,
malformed, or truncated with `--expect-head`); exit 2 for usage errors: a key or a
log that cannot be read (missing, not a file, no permission, an I/O error).
"""

from __future__ import annotations

import argparse
import re
import sys

from engine.adapters.secrets import read_secret
from engine.adapters.store.audit import MIN_KEY_BYTES
from engine.commands.common import (
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_USAGE,
    print_error,
)
from engine.core.audit_verify import verify_lines
from engine.errors import ConfigError

__all__ = ["add_arguments", "main"]

_HASH = re.compile(r"\A[0-9a-f]{64}\Z")


def _head(text: str) -> str:
    value = text.strip().lower()
    if not _HASH.match(value):
        raise argparse.ArgumentTypeError(f"must be 64 hex digits (a SHA-256), got {text!r}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Audit log tools. `verify` checks a log's hash chain: exit 0 and `ok: N entries, "
        "head <hash>`, or exit 1 naming the first bad line and why (edited, removed, "
        "reordered, inserted, malformed; truncated with --expect-head); 2 usage, or a key "
        "or log that cannot be read."
    )
    sub = parser.add_subparsers(dest="audit_command", metavar="SUBCOMMAND", required=True)
    verify = sub.add_parser(
        "verify",
        help="verify an audit log's hash chain",
        description=(
            "Verify an audit log (JSON Lines written by `burnrate run` with `audit:`): "
            "every line an entry in canonical form, its hash over its content (HMAC-SHA256 "
            "with the key when the log was written with one), each following the one "
            "before. Exit 0: `ok: N entries, head <hash>`; 1: the first bad line and why; "
            "2: usage, or a key or log that cannot be read."
        ),
    )
    verify.add_argument("path", metavar="PATH", help="the audit log file")
    key = verify.add_mutually_exclusive_group()
    key.add_argument("--key-env", metavar="ENV", help="environment variable holding the HMAC key")
    key.add_argument("--key-file", metavar="F", help="file holding the HMAC key")
    verify.add_argument(
        "--expect-head",
        type=_head,
        metavar="HASH",
        help="a head hash recorded earlier (the burnrate_audit_head_info metric): some "
        "entry must have it, else the log was cut short (truncated)",
    )


def main(args: argparse.Namespace) -> int:
    key: bytes | None = None
    if args.key_env is not None or args.key_file is not None:
        field = "--key-env" if args.key_env is not None else "--key-file"
        try:
            key = read_secret(field, env=args.key_env, file=args.key_file).encode("utf-8")
        except ConfigError as exc:
            print_error("audit verify", "; ".join(exc.errors))
            return EXIT_USAGE
        if len(key) < MIN_KEY_BYTES:
            print_error("audit verify", f"{field}: the key must be at least {MIN_KEY_BYTES} bytes")
            return EXIT_USAGE
    try:
        with open(args.path, "rb") as f:
            v = verify_lines(f, key, args.expect_head)
    except OSError as exc:
        print_error("audit verify", f"{args.path}: cannot read: {exc.strerror}")
        return EXIT_USAGE
    if v.ok:
        print(f"ok: {v.entries} entries, head {v.head}")
        return EXIT_OK
    print(
        f"{args.path}: line {v.bad_line}: {v.reason}: {v.message} "
        f"({v.entries} entries verified before it)",
        file=sys.stderr,
    )
    return EXIT_FAILURE
