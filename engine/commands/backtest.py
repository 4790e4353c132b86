"""`burnrate backtest`: several alert policies over one recording, side by side.

The config's own policy (`config`) and each `--policy` file are evaluated in one pass
over the events (engine.runtime.backtest), then scored per SLO against the episodes of
significant burn the recording shows, or against `--incidents`: alerts, pages, time
firing, recall, precision, detection delay and reset time. A table goes to stdout
(`--format json` for the whole result); on a terminal a progress bar shows how far
through the file it is.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

import msgspec

from engine.commands.common import (
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_USAGE,
    events_file_or_exit,
    file_progress,
    load_config_or_exit,
    print_error,
)
from engine.core.backtest import DEFAULT_MIN_CONSUMED, Candidate, Episode
from engine.core.backtest_inputs import CONFIG_CANDIDATE, parse_candidate, parse_incidents
from engine.core.config import Config
from engine.core.durations import format_duration
from engine.errors import ConfigError
from engine.runtime.backtest import BacktestResult, backtest

__all__ = ["add_arguments", "main", "print_table"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Compare alert policies on recorded events. The config's own policy ('config') "
        "and each --policy file are evaluated in one pass over the events (JSON Lines in "
        "the wire format, .gz too), then scored per SLO against the episodes in which "
        "the SLO burnt its budget significantly (runs of buckets burning at >= 1x that "
        "consumed at least --min-consumed of a period's budget), or against --incidents: "
        "alerts, pages, time firing, recall (episodes an alert caught), precision (alerts "
        "that fired during an episode), detection delay and reset time."
    )
    parser.epilog = (
        "A policy file holds `policy:` rows in the config's format, and optionally `name:` "
        "and `evaluation:` fields that replace the config's (e.g. `for: 2m`). "
        "example: burnrate backtest --config configs/example.yaml "
        "--events configs/sample-events.jsonl.gz --policy fast-pages.yaml"
    )
    parser.add_argument("--config", required=True, help="config file (YAML or TOML)")
    parser.add_argument("--events", required=True, help="events file (.jsonl or .jsonl.gz)")
    parser.add_argument(
        "--policy",
        action="append",
        default=[],
        metavar="FILE",
        help="a candidate policy file (YAML or TOML); repeat for several",
    )
    parser.add_argument(
        "--incidents",
        metavar="FILE",
        help="JSON list of known incidents ({slo, group?, start, end}) to score against, "
        "instead of the episodes found in the events",
    )
    parser.add_argument(
        "--min-consumed",
        type=float,
        default=DEFAULT_MIN_CONSUMED,
        metavar="RATIO",
        help="an episode consumed at least this share of a period's budget "
        f"(default {DEFAULT_MIN_CONSUMED})",
    )
    parser.add_argument("--format", choices=("table", "json"), default="table")
    parser.add_argument("--output", help="where to write the result (default: stdout)")


def main(args: argparse.Namespace) -> int:
    cfg = load_config_or_exit(args.config)
    events = events_file_or_exit("backtest", args.events)
    if not 0 < args.min_consumed <= 1:
        print_error("backtest", f"--min-consumed must be > 0 and <= 1, got {args.min_consumed}")
        return EXIT_USAGE
    candidates = _candidates(cfg, args.policy)
    if candidates is None:
        return EXIT_USAGE
    incidents = None
    if args.incidents is not None:
        try:
            data = Path(args.incidents).read_bytes()
            incidents = parse_incidents(data, [s.name for s in cfg.slos])
        except OSError as exc:
            print_error("backtest", f"cannot read {args.incidents}: {exc.strerror}")
            return EXIT_USAGE
        except ConfigError as exc:
            for e in exc.errors:
                print_error("backtest", f"{args.incidents}: {e}")
            return EXIT_USAGE
    result = _run(cfg, candidates, events, incidents, args.min_consumed)
    out = sys.stdout if args.output is None else open(args.output, "w", encoding="utf-8")  # noqa: SIM115
    try:
        if args.format == "json":
            out.write(msgspec.json.encode(result_json(result)).decode() + "\n")
        else:
            print_table(result, out)
    finally:
        if args.output is not None:
            out.close()
    if result.error is not None:
        print_error("backtest", f"{result.error}; the result covers the lines before")
        return EXIT_FAILURE
    return EXIT_OK


def _candidates(cfg: Config, paths: Sequence[str]) -> list[Candidate] | None:
    out = [Candidate(CONFIG_CANDIDATE, None, cfg.evaluation)]
    bad = False
    for p in map(Path, paths):
        try:
            data = p.read_bytes()
        except OSError as exc:
            print_error("backtest", f"cannot read policy file {p}: {exc.strerror}")
            bad = True
            continue
        try:
            cand = parse_candidate(data, p.stem, cfg, "toml" if p.suffix == ".toml" else "yaml")
        except ConfigError as exc:
            for e in exc.errors:
                print_error("backtest", f"{p}: {e}")
            bad = True
            continue
        if any(c.name == cand.name for c in out):
            print_error("backtest", f"{p}: two candidates are named {cand.name!r}")
            bad = True
            continue
        out.append(cand)
    return None if bad else out


def _run(
    cfg: Config,
    candidates: list[Candidate],
    events: Path,
    incidents: dict[tuple[str, str | None], list[Episode]] | None,
    min_consumed: float,
) -> BacktestResult:
    with file_progress(events, f"backtest {events.name}") as progress:
        return backtest(
            cfg,
            candidates,
            events,
            incidents=incidents,
            min_consumed=min_consumed,
            on_progress=progress,
        )


class _Json(msgspec.Struct, kw_only=True):
    policies: list[str]
    episodes_from: str
    bucket_s: int
    start: float | None
    end: float | None
    records: int
    slos: list[object]


def result_json(result: BacktestResult) -> _Json:
    return _Json(
        policies=[c.name for c in result.candidates],
        episodes_from=result.episodes_from,
        bucket_s=result.bucket_s,
        start=result.start_s,
        end=result.end_s,
        records=result.records,
        slos=list(result.slos),
    )


def _dur(seconds: float | None) -> str:
    return "-" if seconds is None else format_duration(round(seconds))


def _median(xs: list[float]) -> float | None:
    return statistics.median(xs) if xs else None


def print_table(result: BacktestResult, out: TextIO) -> None:
    head = (
        "slo",
        "policy",
        "episodes",
        "alerts",
        "pages",
        "firing",
        "recall",
        "precision",
        "delay p50",
        "reset p50",
    )
    rows: list[tuple[str, ...]] = []
    for r in result.slos:
        name = r.slo if r.group is None else f"{r.slo}{{{r.group}}}"
        for i, p in enumerate(r.policies):
            detected = sum(e.detected for e in p.episodes)
            right = "-" if p.precision is None else f"{p.precision:.0%}"
            delays = [e.detection_delay_s for e in p.episodes if e.detection_delay_s is not None]
            resets = [e.reset_s for e in p.episodes if e.reset_s is not None]
            rows.append(
                (
                    name if i == 0 else "",
                    p.policy,
                    str(len(r.episodes)),
                    str(p.alerts),
                    str(p.pages),
                    _dur(p.time_firing_s),
                    f"{detected}/{len(p.episodes)}" if p.episodes else "-",
                    right,
                    _dur(_median(delays)),
                    _dur(_median(resets)),
                )
            )
    widths = [max(len(h), *(len(row[k]) for row in rows)) for k, h in enumerate(head)]

    def line(cells: Sequence[str]) -> str:
        pairs = enumerate(zip(cells, widths, strict=True))
        return "  ".join(c.ljust(w) if k < 2 else c.rjust(w) for k, (c, w) in pairs).rstrip()

    out.write(line(head) + "\n")
    for row in rows:
        out.write(line(row) + "\n")
    what = (
        f"episodes: runs of {format_duration(result.bucket_s)} buckets burning at >= 1x"
        if result.episodes_from == "events"
        else "episodes: the incidents given"
    )
    span = (
        ""
        if result.start_s is None or result.end_s is None
        else f", events over {format_duration(round(result.end_s - result.start_s))}"
    )
    out.write(f"{what}; records: {result.records}{span}\n")
