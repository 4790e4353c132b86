"""`burnrate produce`: the command line of the load generator (engine.adapters.kafka.producer)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import math
import signal
import sys
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Final, get_args

import msgspec

from engine.adapters.kafka.producer import (
    Compression,
    ProduceError,
    ProduceProgress,
    ProduceSummary,
    produce,
)
from engine.adapters.kafka.settings import bootstrap_from_env
from engine.core.durations import format_duration, parse_duration_s
from engine.loadgen import (
    INCIDENT_EXAMPLES_TEXT,
    INCIDENT_SYNTAX,
    Incident,
    LoadSpec,
    RecordFormat,
    parse_incident,
    parse_ratio,
    parse_services,
)

__all__ = [
    "add_arguments",
    "check_bootstrap_servers",
    "main",
    "run_produce",
    "spec_from_args",
]

DEFAULT_TOPIC: Final = "request-events"
DEFAULT_BOOTSTRAP: Final = "localhost:9092"
EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2

# --- command line ----------------------------------------------------------------------

_DESCRIPTION = """\
Publish synthetic request events in the wire format to a Kafka topic: a steady
rate over a few services, a baseline error ratio and log-normal latencies, plus
scheduled incidents. Paced to the wall clock unless --as-fast-as-possible."""

_EPILOG = f"""\
incidents (--incident, repeatable):
  {INCIDENT_SYNTAX}
    EFFECT    20% or 0.2        error ratio during the incident (also errors=20%)
              latency=800ms     median latency during the incident (p99 scales with it)
              service=NAME      same as the SERVICE: prefix (default: every service)
    START     offset from the start of the run: 90s, 5m, 1h30m ('+' optional)
    DURATION  how long it lasts; without it, until the end of the run

{INCIDENT_EXAMPLES_TEXT}

examples:
  burnrate produce --rate 500 --duration 10m --services checkout,search \\
      --incident checkout:20%@+2m:5m
  burnrate produce --rate 2000 --duration 1h --as-fast-as-possible --batch 500 \\
      --format msgpack --incident latency=900ms@+20m:10m
  burnrate produce --duration forever --services 5 --create-topic 3

Events are reproducible: the same options and --seed give the same events (a
real-time run differs only in its timestamps). The summary on stderr gives the
events and bad events sent per service; --summary-json writes it as JSON.
Exit status: 0 done (or stopped with Ctrl-C), 1 Kafka failure, 2 bad arguments."""


def check_bootstrap_servers(text: str) -> None:
    """ValueError unless `text` is a comma-separated list of HOST:PORT ([IPv6]:PORT too).

    A bare HOST is accepted too: Kafka clients read it as HOST:9092.
    """
    entries = [entry.strip() for entry in text.split(",")]
    if not text.strip() or not all(entries):
        raise ValueError(f"bootstrap servers {text!r}: expected HOST:PORT[,HOST:PORT...]")
    for entry in entries:
        if ":" not in entry and " " not in entry:
            continue
        host, colon, port = entry.rpartition(":")
        if host.startswith("["):
            host = host[1:-1] if host.endswith("]") else ""
        elif ":" in host:
            host = ""  # an IPv6 address needs brackets: [::1]:9092
        if not (colon and host and port.isdigit() and 0 < int(port) < 65536):
            raise ValueError(
                f"bootstrap server {entry!r} is not HOST:PORT (e.g. localhost:9092, [::1]:9092)"
            )


def _positive_float(what: str) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{what} {text!r} is not a number") from None
        if not (math.isfinite(value) and value > 0):
            raise argparse.ArgumentTypeError(f"{what} {text!r} must be a number > 0")
        return value

    return parse


def _int_in(what: str, low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{what} {text!r} is not a whole number") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{what} {value} must be between {low} and {high}")
        return value

    return parse


def _as_argument_error(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """argparse hides a type function's ValueError behind "invalid value"; keep its text."""

    def wrapped(text: str) -> Any:
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    wrapped.__name__ = parse.__name__
    return wrapped


def _parse_run_duration(text: str) -> float:
    if text.strip().lower() in ("forever", "inf", "infinite"):
        return math.inf
    try:
        seconds = parse_duration_s(text.strip())
    except ValueError:
        raise ValueError(
            f"duration {text!r} is not a duration like 90s, 10m, 1h30m, or 'forever'"
        ) from None
    if seconds <= 0:
        raise ValueError(f"duration {text!r} must be longer than 0s")
    return seconds


def _parse_start(text: str) -> float:
    raw = text.strip()
    try:
        return float(raw)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"start {text!r} is neither epoch seconds nor an ISO-8601 time "
            "(e.g. 2024-05-01T12:00:00Z)"
        ) from None
    if moment.tzinfo is None:
        raise ValueError(f"start {text!r} needs a time zone, e.g. {raw}Z or {raw}+02:00")
    return moment.timestamp()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the `burnrate produce` options (and the grammar and examples to its help)."""
    if parser.description is None:
        parser.description = _DESCRIPTION
    parser.epilog = _EPILOG
    parser.formatter_class = argparse.RawDescriptionHelpFormatter

    kafka = parser.add_argument_group("Kafka")
    kafka.add_argument(
        "--bootstrap-servers",
        metavar="HOST:PORT[,...]",
        help=f"brokers (default: $KAFKA_BOOTSTRAP_SERVERS, else {DEFAULT_BOOTSTRAP})",
    )
    kafka.add_argument(
        "--topic", default=DEFAULT_TOPIC, help=f"topic to publish to (default: {DEFAULT_TOPIC})"
    )
    kafka.add_argument(
        "--create-topic",
        metavar="PARTITIONS",
        nargs="?",
        const=3,
        type=_int_in("partition count", 1, 10_000),
        help="create the topic first if it does not exist (default 3 partitions)",
    )
    kafka.add_argument(
        "--format",
        dest="fmt",
        choices=get_args(RecordFormat),
        default="json",
        help="record encoding (default: json)",
    )
    kafka.add_argument(
        "--batch",
        type=_int_in("batch", 1, 100_000),
        default=1,
        metavar="N",
        help="events per record: 1 sends one event object per record, N > 1 sends "
        "arrays of up to N events (default: 1)",
    )
    kafka.add_argument(
        "--compression",
        choices=get_args(Compression),
        default="auto",
        help="producer compression; auto picks lz4 or zstd when available (default: auto)",
    )

    load = parser.add_argument_group("load")
    load.add_argument(
        "--rate",
        type=_positive_float("rate"),
        default=1000.0,
        metavar="EVENTS_PER_S",
        help="events per second (default: 1000)",
    )
    load.add_argument(
        "--duration",
        type=_as_argument_error(_parse_run_duration),
        default=300.0,
        metavar="DURATION",
        help="length of the run, e.g. 90s, 10m, 1h, or 'forever' (default: 5m)",
    )
    load.add_argument(
        "--services",
        type=_as_argument_error(parse_services),
        default=parse_services("3"),
        metavar="N|NAMES",
        help="a count (3: svc-0, svc-1, svc-2) or comma-separated names "
        "(checkout,search) (default: 3)",
    )
    load.add_argument(
        "--operations",
        type=_int_in("operations per service", 1, 1000),
        default=4,
        metavar="N",
        help="operations (routes or RPC methods) per service (default: 4)",
    )
    load.add_argument(
        "--statuses",
        choices=("http", "grpc"),
        default="http",
        help="status vocabulary: HTTP codes or gRPC status names (default: http)",
    )
    load.add_argument(
        "--error-ratio",
        type=_as_argument_error(parse_ratio),
        default=0.001,
        metavar="RATIO",
        help="baseline share of failed requests, 0.001 or 0.1%% (default: 0.001)",
    )
    load.add_argument(
        "--latency-median-ms",
        type=_positive_float("median latency"),
        default=40.0,
        metavar="MS",
        help="median latency in milliseconds (default: 40)",
    )
    load.add_argument(
        "--latency-p99-ms",
        type=_positive_float("p99 latency"),
        default=250.0,
        metavar="MS",
        help="99th-percentile latency in milliseconds (default: 250)",
    )
    load.add_argument(
        "--incident",
        dest="incidents",
        action="append",
        type=_as_argument_error(parse_incident),
        default=[],
        metavar="INCIDENT",
        help="an error or latency incident, e.g. checkout:20%%@+60s:5m (repeatable; grammar below)",
    )
    load.add_argument(
        "--count",
        type=_int_in("count", 1, 1_000_000),
        default=1,
        metavar="N",
        help="every event stands for N requests (the wire's count field) (default: 1)",
    )
    load.add_argument(
        "--seed",
        type=_int_in("seed", 0, 2**63 - 1),
        default=0,
        metavar="N",
        help="random seed; the same seed gives the same events (default: 0)",
    )

    pace = parser.add_argument_group("pacing and output")
    pace.add_argument(
        "--as-fast-as-possible",
        action="store_true",
        help="do not pace to the wall clock; timestamps still follow the rate from --start",
    )
    pace.add_argument(
        "--start",
        type=_as_argument_error(_parse_start),
        metavar="TIME",
        help="with --as-fast-as-possible: event time of the run's start, epoch seconds or "
        "ISO-8601 (default: the duration ago, so the run ends now)",
    )
    pace.add_argument(
        "--summary-json",
        metavar="PATH",
        help="also write the summary as JSON to PATH ('-' for stdout)",
    )
    pace.add_argument(
        "-q", "--quiet", action="store_true", help="no progress bar, no summary on stderr"
    )


def spec_from_args(args: argparse.Namespace) -> LoadSpec:
    """The LoadSpec the parsed options describe; ValueError when they do not fit together."""
    incidents: Sequence[Incident] = args.incidents
    return LoadSpec(
        rate=args.rate,
        duration_s=args.duration,
        services=tuple(args.services),
        operations_per_service=args.operations,
        error_ratio=args.error_ratio,
        latency_median_ms=args.latency_median_ms,
        latency_p99_ms=args.latency_p99_ms,
        statuses=args.statuses,
        incidents=tuple(incidents),
        count=args.count,
        seed=args.seed,
    )


def _covered(offset_s: float) -> str:
    return f"{offset_s:.1f}s" if offset_s < 60 else format_duration(round(offset_s))


def _print_summary(summary: ProduceSummary) -> None:
    err = sys.stderr
    how = "stopped after" if summary.stopped else "sent"
    print(
        f"{how} {summary.events:,} events in {summary.records:,} records to "
        f"{summary.topic!r} in {summary.elapsed_s:.2f}s "
        f"({summary.events_per_s:,.0f} events/s, {summary.records_per_s:,.0f} records/s), "
        f"covering {_covered(summary.offset_s)} of event time",
        file=err,
    )
    width = max(map(len, summary.events_by_service), default=0)
    for service, events in summary.events_by_service.items():
        bad = summary.bad_by_service[service]
        ratio = f"{bad / events:.3%}" if events else "-"
        print(f"  {service:<{width}}  {events:>12,} events  {bad:>10,} bad ({ratio})", file=err)


async def run_produce(args: argparse.Namespace) -> int:
    """`burnrate produce`: run the options from `add_arguments`; the exit status."""

    def usage_error(message: str) -> int:
        print(f"burnrate produce: error: {message}", file=sys.stderr)
        return EXIT_USAGE

    try:
        spec = spec_from_args(args)
    except ValueError as exc:
        return usage_error(str(exc))
    realtime = not args.as_fast_as_possible
    if realtime and args.start is not None:
        return usage_error("--start needs --as-fast-as-possible (real time uses the clock)")
    if not realtime and math.isinf(spec.duration_s):
        return usage_error("--duration forever needs real-time pacing; give a duration")
    if args.bootstrap_servers is not None:
        bootstrap, source = args.bootstrap_servers, "--bootstrap-servers"
    else:
        env = bootstrap_from_env()
        bootstrap, source = (
            (env, "KAFKA_BOOTSTRAP_SERVERS") if env else (DEFAULT_BOOTSTRAP, "default")
        )
    try:
        check_bootstrap_servers(bootstrap)
    except ValueError as exc:
        return usage_error(f"{source}: {exc}")

    # Unless logging is set up, aiokafka's connection errors would reach stderr through
    # logging's last-resort handler, next to (and noisier than) our one-line error.
    quiet_kafka = logging.NullHandler()
    kafka_logger = logging.getLogger("aiokafka")
    if not kafka_logger.hasHandlers():
        kafka_logger.addHandler(quiet_kafka)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    handled: list[signal.Signals] = []

    def request_stop(sig: signal.Signals) -> None:
        stop.set()
        loop.remove_signal_handler(sig)  # a second Ctrl-C interrupts for good

    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, request_stop, sig)
            handled.append(sig)

    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    console = Console(stderr=True)
    show_progress = not args.quiet and console.is_terminal
    bar = Progress(
        TextColumn("[bold]producing[/] {task.description}"),
        BarColumn(),
        TextColumn("{task.fields[covered]}"),
        TimeElapsedColumn(),
        console=console,
        disable=not show_progress,
        transient=True,
    )
    task = bar.add_task(
        "",
        total=None if math.isinf(spec.duration_s) else spec.duration_s,
        covered="",
    )

    def on_progress(p: ProduceProgress) -> None:
        rate = p.events / p.elapsed_s if p.elapsed_s > 0 else 0.0
        bar.update(
            task,
            completed=p.offset_s,
            description=f"{p.events:,} events ({rate:,.0f}/s)",
            covered=_covered(p.offset_s),
        )

    try:
        if args.create_topic is not None:
            from engine.adapters.kafka.embedded_broker import BrokerError, create_topic

            try:
                await create_topic(bootstrap, args.topic, args.create_topic)
            except BrokerError as exc:
                raise ProduceError(str(exc)) from None
        with bar:
            summary = await produce(
                bootstrap,
                args.topic,
                spec,
                fmt=args.fmt,
                batch=args.batch,
                realtime=realtime,
                start_ts=args.start,
                progress=on_progress if show_progress else None,
                stop=stop,
                compression=args.compression,
            )
    except ProduceError as exc:
        print(f"burnrate produce: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    finally:
        for sig in handled:
            loop.remove_signal_handler(sig)
        kafka_logger.removeHandler(quiet_kafka)

    if not args.quiet:
        _print_summary(summary)
    if args.summary_json:
        data = msgspec.json.encode(summary) + b"\n"
        if args.summary_json == "-":
            sys.stdout.buffer.write(data)
            sys.stdout.flush()
        else:
            try:
                await asyncio.to_thread(Path(args.summary_json).write_bytes, data)
            except OSError as exc:
                print(f"burnrate produce: cannot write the summary: {exc}", file=sys.stderr)
                return EXIT_FAILURE
    return EXIT_OK


def main(args: argparse.Namespace) -> int:
    return asyncio.run(run_produce(args))
