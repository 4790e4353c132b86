"""The `burnrate` command line: builds the parser, hands the work to `engine.commands`.

Each command lives in its own module with `add_arguments(parser)` and `main(args)`.
Only the module of the command being run is imported, so `burnrate check` does not
load the Kafka client, the HTTP server or the terminal UI.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from types import ModuleType
from typing import Final

from engine import __version__

__all__ = ["COMMANDS", "build_parser", "main"]

COMMANDS: Final[dict[str, tuple[str, str]]] = {
    "check": ("engine.commands.check", "validate a config file"),
    "replay": ("engine.commands.replay", "backtest the SLO policy over recorded events"),
    "backtest": (
        "engine.commands.backtest",
        "compare alert policies side by side over recorded events",
    ),
    "import": (
        "engine.commands.import_cmd",
        "turn OpenSLO v1 and Sloth SLO documents into a burnrate config",
    ),
    "dashboards": (
        "engine.commands.dashboards",
        "write Grafana dashboards (overview and one per SLO) for a config",
    ),
    "gate": (
        "engine.commands.gate",
        "release gate: may this service ship? (pass/warn/fail from its error budget)",
    ),
    "incidents": ("engine.commands.incidents", "list the incidents of a running engine"),
    "postmortem": (
        "engine.commands.postmortem",
        "write a blameless postmortem draft of an incident (live or from recorded events)",
    ),
    "audit": (
        "engine.commands.audit",
        "audit log tools: verify a log's hash chain",
    ),
    "token": ("engine.commands.token", "hash an HTTP API token for http.tokens (token hash)"),
    "run": (
        "engine.commands.run",
        "run the service: consume Kafka, evaluate SLOs, serve /metrics and the web UI, alert",
    ),
    "produce": (
        "engine.commands.produce",
        "publish synthetic request events (load generator)",
    ),
    "demo": (
        "engine.commands.demo",
        "run the whole pipeline on an embedded broker and watch a page fire and resolve",
    ),
}
"""name -> (module, one-line help); the help is here so `burnrate --help` imports nothing."""


def _module(name: str) -> ModuleType:
    return importlib.import_module(COMMANDS[name][0])


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The whole parser, or (with `only`) one whose other commands have no arguments."""
    parser = argparse.ArgumentParser(
        prog="burnrate",
        description="Streaming error-budget burn-rate engine: exact SLO windows from request "
        "events, multi-window multi-burn-rate alerts.",
    )
    parser.add_argument("--version", action="version", version=f"burnrate {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (_, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if only is None or name == only:
            _module(name).add_arguments(p)
    return parser


def _command_of(argv: Sequence[str]) -> str | None:
    """The command named in `argv`: its first word that is not an option."""
    for word in argv:
        if not word.startswith("-"):
            return word if word in COMMANDS else None
    return None


def main(argv: list[str] | None = None) -> int:
    words = sys.argv[1:] if argv is None else argv
    command = _command_of(words)
    args = build_parser(command or "").parse_args(words)
    # the exit codes are imported with the command's module, not before (`--help` loads
    # no command at all)
    from engine.commands.common import EXIT_INTERRUPTED, EXIT_OK

    try:
        return int(_module(args.command).main(args))
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # the reader went away (`burnrate replay ... | head`)
        return EXIT_OK
