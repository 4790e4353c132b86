"""`burnrate gate`: may this service ship? The release gate for CI steps and scripts.

Online, it asks a running engine (`GET /v1/gates/{service}`); offline (`--config` and
`--events`), it replays recorded events (engine.runtime.replay) and decides from the
state at the end. Either way it prints the decision and its reasons on stdout and
exits 0 for `pass` and `warn` (warn also as a warning on stderr), 1 for `fail`, 2 for
a usage error (bad arguments, a token that cannot be read or is refused, a service no
SLO has), and 3 when the engine cannot be reached or gives no usable answer: the gate
fails closed, unless `--fail-open`, which passes with a warning instead.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Literal
from urllib.parse import quote

import msgspec

from engine.commands.client import add_client_arguments, ask
from engine.commands.common import (
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    load_config_or_exit,
    print_error,
)

__all__ = ["add_arguments", "main"]


class _Answer(msgspec.Struct):
    """What the command needs of the gate body (engine.adapters.http.gates)."""

    service: str
    decision: Literal["pass", "warn", "fail"]
    reasons: list[str]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Print a service's release gate decision (pass, warn or fail) and its reasons. "
        "Exit 0 for pass and warn, 1 for fail, 2 for a usage error, 3 when the engine "
        "cannot be reached (fail closed; --fail-open passes instead). With --config and "
        "--events it decides offline from a replay of recorded events."
    )
    parser.epilog = (
        "examples: burnrate gate --service checkout --url http://burnrate:9464 "
        "--token-env BURNRATE_TOKEN;  burnrate gate --config configs/example.yaml "
        "--events configs/sample-events.jsonl.gz --service checkout"
    )
    parser.add_argument("--service", required=True, help="the service to gate")
    add_client_arguments(parser)
    parser.add_argument(
        "--fail-open",
        action="store_true",
        help="pass (with a warning) when the engine cannot be reached",
    )
    parser.add_argument("--config", help="offline: config file (with --events)")
    parser.add_argument("--events", help="offline: recorded events (.jsonl or .jsonl.gz)")


def main(args: argparse.Namespace) -> int:
    if (args.config is None) != (args.events is None):
        print_error("gate", "--config and --events go together (the offline form)")
        return EXIT_USAGE
    if args.config is not None:
        online = [
            f"--{name.replace('_', '-')}"
            for name in ("url", "token_env", "token_file", "fail_open")
            if getattr(args, name)
        ]
        if online:
            print_error("gate", f"{', '.join(online)}: only without --config (the online form)")
            return EXIT_USAGE
        return _offline(args.config, Path(args.events), args.service)
    if not args.timeout > 0:
        print_error("gate", f"--timeout must be > 0, got {args.timeout:g}")
        return EXIT_USAGE
    return _online(args)


def _report(answer: _Answer) -> int:
    """The decision and reasons on stdout; the exit status."""
    print(f"{answer.service}: {answer.decision}")
    for reason in answer.reasons:
        print(f"  - {reason}")
    if answer.decision == "warn":
        print_error("gate", f"warning: {answer.service} is at warn; shipping anyway")
    return EXIT_FAILURE if answer.decision == "fail" else EXIT_OK


def _offline(config_path: str, events: Path, service: str) -> int:
    from engine.core.governance import service_gate
    from engine.runtime.replay import replay

    cfg = load_config_or_exit(config_path)
    if not events.is_file():
        print_error("gate", f"no such events file: {events}")
        return EXIT_USAGE
    result = replay(cfg, events, lambda _: None)
    gate = service_gate(result.evaluator, service)
    if gate is None:
        print_error("gate", f"no SLO of {config_path} has the service {service!r}")
        return EXIT_USAGE
    status = _report(_Answer(gate.service, gate.decision, list(gate.reasons)))
    if result.error is not None:
        print_error("gate", f"{result.error}; decided from the lines before: failing")
        return EXIT_FAILURE
    return status


def _online(args: argparse.Namespace) -> int:
    answer = ask("gate", args, f"/v1/gates/{quote(args.service, safe='')}")
    if answer.exit is not None:
        return answer.exit
    status, body, problem, where = answer.status, answer.body, answer.problem, answer.where
    if problem is None and status == 200:
        try:
            return _report(msgspec.json.decode(body, type=_Answer))
        except msgspec.DecodeError as exc:
            problem = f"{where} gave no gate: {exc}"
    elif problem is None and status == 404:
        print_error("gate", f"no SLO of {where} has the service {args.service!r}")
        return EXIT_USAGE
    elif problem is None:
        problem = f"{where} answered {status}"
    if args.fail_open:
        print_error("gate", f"warning: {problem}; passing (--fail-open)")
        return EXIT_OK
    print_error("gate", f"{problem}; failing closed (--fail-open to pass instead)")
    return EXIT_UNREACHABLE
