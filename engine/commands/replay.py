"""`burnrate replay`: a deterministic backtest of the SLO policy over recorded events.

Transitions go to `--output` (stdout) as JSON lines, the per-SLO summary to stderr; on
a terminal a progress bar shows how far through the file the replay is. A damaged gzip
file (cut short, corrupt) still gives the transitions and summary of the lines before
the damage, then one line saying where the file ends, and exit status 1.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TextIO

import msgspec

from engine.commands.common import (
    EXIT_FAILURE,
    EXIT_OK,
    events_file_or_exit,
    file_progress,
    load_config_or_exit,
    print_error,
)
from engine.core.config import Config
from engine.core.durations import format_duration
from engine.core.evaluator import Transition
from engine.runtime.replay import ReplayResult, replay

__all__ = ["add_arguments", "main", "print_summary", "run_replay"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Deterministic backtest in event time. Reads JSON Lines records in the wire format "
        "(one event or an array per line; .gz too), writes one JSON line per alert "
        "transition to --output (default stdout) and a per-SLO summary to stderr. Bad "
        "lines are counted and skipped; a damaged .gz file is replayed up to the damage, "
        "then reported with exit status 1."
    )
    parser.epilog = (
        "example: burnrate replay --config configs/example.yaml "
        "--events configs/sample-events.jsonl.gz"
    )
    parser.add_argument("--config", required=True, help="config file (YAML or TOML)")
    parser.add_argument("--events", required=True, help="events file (.jsonl or .jsonl.gz)")
    parser.add_argument("--output", help="where to write transitions (default: stdout)")


def main(args: argparse.Namespace) -> int:
    cfg = load_config_or_exit(args.config)
    events = events_file_or_exit("replay", args.events)
    return run_replay(cfg, events, Path(args.output) if args.output else None)


def print_summary(result: ReplayResult, out: TextIO) -> None:
    summary = result.summary()
    # a grouped SLO's rows read `name{group}`
    names = [r.slo if r.group is None else f"{r.slo}{{{r.group}}}" for r in summary.slos]
    width = max([len("slo")] + [len(n) for n in names])
    # the excluded column only when the config has corrections (events a correction left out)
    corrected = bool(result.evaluator.corrections)
    excluded_head = f"  {'excluded':>8}" if corrected else ""
    out.write(
        f"{'slo':<{width}}  {'events':>10}  {'bad':>8}{excluded_head}  {'budget left':>11}  "
        f"{'pages':>5}  {'tickets':>7}  {'time firing':>11}\n"
    )
    for name, r in zip(names, summary.slos, strict=True):
        b = r.budget_remaining_ratio
        budget = "no data" if b is None else f"{100 * b:.1f}%"
        firing = format_duration(round(r.time_firing_s))
        if r.still_firing or r.budget_alerts_firing:
            firing += f" ({'+'.join([*r.still_firing, *r.budget_alerts_firing])} firing at end)"
        excluded = f"  {r.excluded:>8}" if corrected else ""
        out.write(
            f"{name:<{width}}  {r.events:>10}  {r.bad:>8}{excluded}  {budget:>11}  "
            f"{r.pages:>5}  {r.tickets:>7}  {firing:>11}\n"
        )
    rejected = ", ".join(f"{k}={v}" for k, v in summary.rejected.items()) or "none"
    out.write(
        f"records: {summary.records}, events accepted: {summary.accepted_events}, "
        f"for no SLO: {summary.unmatched_events}, "
        f"unknown status: {summary.unknown_status_events}, rejected: {rejected}\n"
    )


def run_replay(config: Config, events: Path, output: Path | None) -> int:
    """The command: transitions as JSON lines to `output` (stdout), summary to stderr."""
    enc = msgspec.json.Encoder()
    sink = sys.stdout.buffer if output is None else output.open("wb")
    try:

        def emit(tr: Transition) -> None:
            sink.write(enc.encode(tr) + b"\n")

        with file_progress(events, f"replay {events.name}") as progress:
            result = replay(config, events, emit, progress)
    finally:
        if output is not None:
            sink.close()
        else:
            sink.flush()
    print_summary(result, sys.stderr)
    if result.error is not None:
        print_error("replay", f"{result.error}; the summary covers the lines before")
        return EXIT_FAILURE
    return EXIT_OK
