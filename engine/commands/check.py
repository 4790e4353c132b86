"""`burnrate check CONFIG`: validation only, with every problem and its `$.path`."""

from __future__ import annotations

import argparse

from engine.commands.common import EXIT_OK, load_config_or_exit

__all__ = ["add_arguments", "main"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Validate a config file. Prints every problem with its path (e.g. "
        "`$.slos[2].objective: must be > 0 and < 100`) and exits 2, or prints a one-line "
        "summary and exits 0."
    )
    parser.add_argument("config", help="YAML (.yaml/.yml) or TOML (.toml) config file")


def main(args: argparse.Namespace) -> int:
    cfg = load_config_or_exit(args.config)
    sev = sorted({r.severity for r in cfg.policy})
    windows = ", ".join(f"{r.long}/{r.short}" for r in cfg.policy)
    print(
        f"{args.config}: ok: {len(cfg.slos)} SLOs, {len(cfg.policy)} policy rows "
        f"({'/'.join(sev)}: {windows}), {len(cfg.receivers)} receivers"
    )
    return EXIT_OK
