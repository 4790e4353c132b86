"""`burnrate check CONFIG`: validation only, with every problem and its `$.path`.

It makes every check `burnrate run` makes before starting (engine.commands.preflight):
the document, and what the adapters need from it (listen address, bearer token, Kafka
brokers, TLS files and SASL secrets, receiver URLs, webhook secrets and PagerDuty
routing keys, all read as `run` reads them), so a config `check` passes is one `run`
starts with.
"""

from __future__ import annotations

import argparse

from engine.commands.common import EXIT_OK, EXIT_USAGE, print_config_error
from engine.commands.preflight import load_checked_config
from engine.core.ladder import MAX_WINDOW_S
from engine.errors import ConfigError

__all__ = ["add_arguments", "main"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Validate a config file as `burnrate run` does before it starts: the document "
        f"(windows and periods at most {MAX_WINDOW_S // 86400}d, window memory bounded), "
        "the listen address, and the secrets, TLS files, receiver URLs and audit log it "
        "names (read from the environment and files as `run` reads them; an existing "
        "audit log's tail verified with its key). Prints every problem with "
        "its path (e.g. `$.slos[2].objective: must be > 0 and < 100`) and exits 2, or "
        "prints a one-line summary and exits 0."
    )
    parser.add_argument("config", help="YAML (.yaml/.yml) or TOML (.toml) config file")


def main(args: argparse.Namespace) -> int:
    try:
        cfg = load_checked_config(args.config)
    except ConfigError as exc:
        print_config_error(args.config, exc)
        return EXIT_USAGE
    sev = sorted({r.severity for r in cfg.policy})
    windows = ", ".join(f"{r.long}/{r.short}" for r in cfg.policy)
    own = sum(slo.policy is not None for slo in cfg.slos)
    composite = sum(slo.composite is not None for slo in cfg.slos)
    notes = [f"{composite} composite"] if composite else []
    grouped = [slo for slo in cfg.slos if slo.group_by]
    if grouped:
        most = sum(slo.group_limit for slo in grouped)
        notes.append(f"{len(grouped)} grouped, up to {most:,} groups")
    if own:
        notes.append(f"{own} with {'its' if own == 1 else 'their'} own policy")
    own_text = f" ({', '.join(notes)})" if notes else ""
    print(
        f"{args.config}: ok: {len(cfg.slos)} SLOs{own_text}, "
        f"{len(cfg.policy)} policy rows ({'/'.join(sev)}: {windows}), "
        f"{len(cfg.receivers)} receivers"
    )
    return EXIT_OK
