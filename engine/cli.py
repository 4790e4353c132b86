"""The `burnrate` command line: check, replay (and the service commands as they land)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from engine import __version__
from engine.core.config import Config, load_config
from engine.errors import ConfigError

EXIT_USAGE = 2


def _load(path: str) -> Config:
    try:
        return load_config(path)
    except ConfigError as exc:
        for line in exc.errors:
            print(f"{path}: {line}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE) from None


def cmd_check(args: argparse.Namespace) -> int:
    cfg = _load(args.config)
    sev = sorted({r.severity for r in cfg.policy})
    windows = ", ".join(f"{r.long}/{r.short}" for r in cfg.policy)
    print(
        f"{args.config}: ok: {len(cfg.slos)} SLOs, {len(cfg.policy)} policy rows "
        f"({'/'.join(sev)}: {windows}), {len(cfg.receivers)} receivers"
    )
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    from engine.replay import run_replay

    cfg = _load(args.config)
    events = Path(args.events)
    if not events.is_file():
        print(f"burnrate replay: no such events file: {events}", file=sys.stderr)
        return EXIT_USAGE
    return run_replay(cfg, events, Path(args.output) if args.output else None)


def cmd_produce(args: argparse.Namespace) -> int:
    from engine.produce_command import run_produce

    return asyncio.run(run_produce(args))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="burnrate",
        description="Streaming error-budget burn-rate engine: exact SLO windows from request "
        "events, multi-window multi-burn-rate alerts.",
    )
    parser.add_argument("--version", action="version", version=f"burnrate {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser(
        "check",
        help="validate a config file",
        description="Validate a config file. Prints every problem with its path "
        "(e.g. `$.slos[2].objective: must be > 0 and < 100`) and exits 2, or prints a "
        "one-line summary and exits 0.",
    )
    p.add_argument("config", help="YAML (.yaml/.yml) or TOML (.toml) config file")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser(
        "replay",
        help="backtest the SLO policy over recorded events",
        description="Deterministic backtest in event time. Reads JSON Lines records in the "
        "wire format (one event or an array per line; .gz too), writes one JSON line per "
        "alert transition to --output (default stdout) and a per-SLO summary to stderr. "
        "Bad lines are counted and skipped.",
        epilog="example: burnrate replay --config configs/example.yaml "
        "--events configs/sample-events.jsonl.gz",
    )
    p.add_argument("--config", required=True, help="config file (YAML or TOML)")
    p.add_argument("--events", required=True, help="events file (.jsonl or .jsonl.gz)")
    p.add_argument("--output", help="where to write transitions (default: stdout)")
    p.set_defaults(func=cmd_replay)

    from engine.produce_command import PRODUCE_HELP, add_produce_arguments
    from engine.runtime import RUN_HELP, add_run_arguments, run_command

    p = sub.add_parser("run", help=RUN_HELP)
    add_run_arguments(p)
    p.set_defaults(func=run_command)

    p = sub.add_parser("produce", help=PRODUCE_HELP)
    add_produce_arguments(p)
    p.set_defaults(func=cmd_produce)

    from engine.demo import DEMO_HELP, add_demo_arguments, demo_command

    p = sub.add_parser("demo", help=DEMO_HELP)
    add_demo_arguments(p)
    p.set_defaults(func=demo_command)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
