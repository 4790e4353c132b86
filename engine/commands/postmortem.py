"""`burnrate postmortem`: a blameless postmortem draft of an incident, in Markdown or JSON.

Two forms:

- live, `--incident ID [--url URL]`: the engine computes the postmortem from its store
  and its window rings (`GET /v1/incidents/{id}/postmortem`);
- offline, `--config C --events F [--service S] [--from T] [--to T]`: the events file
  is replayed as `burnrate replay` does, its incidents are found as `burnrate run`
  would have opened and closed them, and each one opened in [--from, --to) (of
  --service) gets its postmortem, oldest first.

Markdown (the default) goes to `--output` or stdout; its charts are PNG files written
next to `--output` (in the working directory when writing to stdout), named
`<output stem>-<incident id>-<slo>.png` (stem `postmortem` for stdout). Without
matplotlib (the `charts` extra) the Markdown says no charts were drawn and why;
`--no-charts` draws none. `--format json` writes `{"incidents": [...], "source":
"live"|"replay"}` and draws nothing.

Exit status: 0 with a postmortem; 1 when there is nothing to write about (no incident
with that id -- the API's 404 -- or an engine keeping no incidents; no incident in the
file or the range; a damaged events file, after writing what the lines before it
show); 2 for a usage error (both forms or neither, `--from` not before `--to`, a config
that does not load, a token refused); 3 when the engine cannot be reached.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path
from urllib.parse import quote

import msgspec

from engine.commands.client import add_client_arguments, ask, base_url, error_of
from engine.commands.common import (
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    events_file_or_exit,
    file_progress,
    load_config_or_exit,
    print_error,
)
from engine.core.postmortem import Postmortem, PostmortemIncident, selected
from engine.core.postmortem_markdown import markdown

__all__ = ["add_arguments", "main", "parse_time"]

NAME = "postmortem"
DEFAULT_STEM = "postmortem"


def parse_time(text: str) -> float:
    """Epoch seconds, or an ISO 8601 date-time (UTC unless it gives an offset)."""
    try:
        return float(text)
    except ValueError:
        pass
    try:
        moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a time: {text!r} (epoch seconds or ISO 8601, e.g. 2026-01-01T10:00:00Z)"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.timestamp()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Write a blameless postmortem draft (Markdown with PNG charts, or JSON). Live: "
        "--incident ID [--url URL] asks a running engine, which counts the impact from "
        "its window rings. Offline: --config C --events F replays recorded events, finds "
        "the incidents as burnrate run would, and writes a postmortem for each (of "
        "--service, opened in [--from, --to)). Exit 0 written, 1 nothing to write about "
        "(unknown incident, no incident in the file), 2 usage error (including --from "
        "not before --to), 3 engine unreachable."
    )
    parser.epilog = (
        "examples: burnrate postmortem --incident 1767229240-f866392aca5e --url "
        "http://burnrate:9464 --output pm.md | burnrate postmortem --config slo.yaml "
        "--events events.jsonl.gz --service shop --from 2026-01-01T00:00Z --format json. "
        "Charts are written next to --output (the working directory for stdout) as "
        "<stem>-<incident>-<slo>.png."
    )
    live = parser.add_argument_group("live (a running engine)")
    live.add_argument("--incident", metavar="ID", help="the incident's id")
    add_client_arguments(live)
    offline = parser.add_argument_group("offline (recorded events)")
    offline.add_argument("--config", help="config file (YAML or TOML)")
    offline.add_argument("--events", help="events file (.jsonl or .jsonl.gz)")
    offline.add_argument("--service", help="only this service's incidents")
    offline.add_argument(
        "--from",
        dest="from_s",
        type=parse_time,
        metavar="T",
        help="only incidents opened at or after T (epoch seconds or ISO 8601)",
    )
    offline.add_argument(
        "--to",
        dest="to_s",
        type=parse_time,
        metavar="T",
        help="only incidents opened before T",
    )
    parser.add_argument(
        "--format", choices=("md", "json"), default="md", help="output (default md)"
    )
    parser.add_argument("--output", metavar="PATH", help="where to write (default: stdout)")
    parser.add_argument("--no-charts", action="store_true", help="draw no PNG charts")


def _usage(args: argparse.Namespace) -> str | None:
    offline = args.config is not None or args.events is not None
    if args.incident is not None and offline:
        return "give either --incident (live) or --config and --events (offline), not both"
    if args.incident is None and not offline:
        return "give --incident ID (live) or --config C --events F (offline)"
    if offline and (args.config is None or args.events is None):
        return "offline needs both --config and --events"
    if args.incident is not None and any(
        v is not None for v in (args.service, args.from_s, args.to_s)
    ):
        return "--service, --from and --to select incidents of an events file (offline)"
    if args.from_s is not None and args.to_s is not None and args.from_s >= args.to_s:
        return "--from must be before --to"
    if args.output is not None and not Path(args.output).parent.is_dir():
        return f"--output: no such directory: {Path(args.output).parent}"
    if not args.timeout > 0:
        return f"--timeout must be > 0, got {args.timeout:g}"
    return None


def main(args: argparse.Namespace) -> int:
    problem = _usage(args)
    if problem is not None:
        print_error(NAME, problem)
        return EXIT_USAGE
    if args.incident is not None:
        return _live(args)
    return _offline(args)


def _live(args: argparse.Namespace) -> int:
    answer = ask(NAME, args, f"/v1/incidents/{quote(args.incident, safe='')}/postmortem")
    if answer.exit is not None:
        return answer.exit
    if answer.problem is not None:
        print_error(NAME, answer.problem)
        return EXIT_UNREACHABLE
    where, status = answer.where, answer.status
    if status == 404:
        print_error(NAME, f"{where}: {error_of(answer.body) or 'not found'} ({args.incident})")
        return EXIT_FAILURE
    if status != 200:
        print_error(NAME, f"{where} answered {status}: {error_of(answer.body)}")
        return EXIT_UNREACHABLE
    try:
        inc = msgspec.json.decode(answer.body, type=PostmortemIncident)
    except msgspec.DecodeError as exc:
        print_error(NAME, f"{where} gave no postmortem: {exc}")
        return EXIT_UNREACHABLE
    _write(args, Postmortem(incidents=[inc], source="live"), f"the engine at {base_url(args)}")
    return EXIT_OK


def _offline(args: argparse.Namespace) -> int:
    from engine.runtime.postmortem import offline_postmortems

    cfg = load_config_or_exit(args.config)
    events = events_file_or_exit(NAME, args.events)
    with file_progress(events, f"replay {events.name}") as progress:
        found = offline_postmortems(
            cfg,
            events,
            service=args.service,
            charts=not args.no_charts and args.format == "md",
            on_progress=progress,
        )
    incidents = selected(found.incidents, args.from_s, args.to_s)
    if not incidents:
        where = f" of {args.service}" if args.service else ""
        print_error(NAME, f"no incidents{where} in {events} (in the range asked for)")
        return EXIT_FAILURE
    _write(args, Postmortem(incidents=incidents, source="replay"), f"a replay of {events.name}")
    if found.error is not None:
        print_error(NAME, f"{found.error}; the postmortems cover the lines before")
        return EXIT_FAILURE
    return EXIT_OK


def _write(args: argparse.Namespace, pm: Postmortem, origin: str) -> None:
    output = Path(args.output) if args.output else None
    if args.format == "json":
        text = msgspec.json.encode(pm).decode() + "\n"
    else:
        charts: dict[tuple[str, str], str] = {}
        note = "Charts were not drawn (--no-charts)."
        if not args.no_charts:
            from engine.runtime.postmortem_charts import ChartsUnavailable, draw_charts

            directory = Path.cwd() if output is None else output.parent
            stem = DEFAULT_STEM if output is None else output.stem
            try:
                for inc in pm.incidents:
                    charts.update(draw_charts(inc, directory, stem))
            except ChartsUnavailable as exc:
                note = (
                    f"Charts were not drawn: {exc}. Install the charts extra "
                    "(pip install 'burnrate[charts]') to draw them."
                )
        text = markdown(pm, origin, charts, note)
    if output is None:
        sys.stdout.write(text)
    else:
        output.write_text(text, encoding="utf-8")
