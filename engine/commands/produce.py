"""`burnrate produce`: the command line of the load generator.

The load run is `engine.loadgen.publish` (its Kafka side `engine.adapters.kafka.producer`);
the load options are shared with other commands in `engine.loadgen.options`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import math
import sys
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Final, get_args

import msgspec

from engine.adapters.kafka.producer import Compression, ProduceError
from engine.adapters.kafka.settings import bootstrap_from_env
from engine.commands.common import (
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_USAGE,
    print_config_error,
    print_error,
    run_loop,
    stop_on_signals,
)
from engine.core.config import load_config
from engine.core.durations import format_duration
from engine.errors import ConfigError
from engine.loadgen.options import add_load_arguments, argument_type, int_in, spec_from_args
from engine.loadgen.publish import ProduceProgress, ProduceSummary, produce
from engine.loadgen.spec import INCIDENT_HELP_TEXT, LoadSpec
from engine.loadgen.wire import RecordFormat

if TYPE_CHECKING:
    from rich.progress import Progress

__all__ = [
    "add_arguments",
    "check_bootstrap_servers",
    "main",
    "run_produce",
    "spec_from_args",
]

DEFAULT_TOPIC: Final = "request-events"
DEFAULT_BOOTSTRAP: Final = "localhost:9092"

# --- command line ----------------------------------------------------------------------

_DESCRIPTION = """\
Publish synthetic request events in the wire format to a Kafka topic: a steady
rate over a few services, a baseline error ratio and log-normal latencies, plus
scheduled incidents. Paced to the wall clock unless --as-fast-as-possible."""

_EPILOG = f"""\
incidents (--incident, repeatable):
{INCIDENT_HELP_TEXT}

examples:
  burnrate produce --rate 500 --duration 10m --services checkout,search \\
      --incident checkout:20%@+2m:5m
  burnrate produce --rate 2000 --duration 1h --as-fast-as-possible --batch 500 \\
      --format msgpack --incident latency=900ms@+20m:10m
  burnrate produce --duration forever --services 5 --create-topic 3
  burnrate produce --services checkout --label region=eu,us,ap --label customer=50 \\
      --incident checkout:20%@+1m:3m

Events are reproducible: the same options and --seed give the same events (a
real-time run differs only in its timestamps). The summary on stderr gives the
events and bad events sent per service; --summary-json writes it as JSON.
A real-time run ends at its --duration even when it cannot keep up with --rate
(at most 10,000,000 events/s; one process sends a few 100,000/s): it stops a
second or so after it with the events it could not send unsent, and the summary
says it fell behind ("fell_behind": true in the JSON).
With --config, the brokers and the TLS and SASL settings come from that burnrate
config's `kafka:` section, read as `burnrate run` reads it (secrets from their
environment variables or files); a broker that refuses them is exit 2.
Exit status: 0 done (or stopped with Ctrl-C), 1 Kafka failure, 2 bad arguments
or config."""


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


def _parse_start_ts(text: str) -> float:
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
        help="brokers (default: $KAFKA_BOOTSTRAP_SERVERS, else kafka.bootstrap_servers of "
        f"--config, else {DEFAULT_BOOTSTRAP})",
    )
    kafka.add_argument(
        "--config",
        metavar="PATH",
        help="a burnrate config whose kafka section gives the brokers and the TLS and SASL "
        "settings (kafka.security), as `burnrate run` uses them",
    )
    kafka.add_argument(
        "--topic", default=DEFAULT_TOPIC, help=f"topic to publish to (default: {DEFAULT_TOPIC})"
    )
    kafka.add_argument(
        "--create-topic",
        metavar="PARTITIONS",
        nargs="?",
        const=3,
        type=int_in("partition count", 1, 10_000),
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
        type=int_in("batch", 1, 100_000),
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

    add_load_arguments(parser)

    pace = parser.add_argument_group("pacing and output")
    pace.add_argument(
        "--as-fast-as-possible",
        action="store_true",
        help="do not pace to the wall clock; timestamps still follow the rate from --start",
    )
    pace.add_argument(
        "--start",
        dest="start_ts",
        type=argument_type(_parse_start_ts),
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
    if summary.fell_behind:
        print(
            f"fell behind: the run stopped at the end of its duration with only "
            f"{_covered(summary.offset_s)} of event time sent; the rate is more than this "
            "producer and broker can send (lower --rate, raise --batch, or use --format msgpack)",
            file=err,
        )
    width = max(map(len, summary.events_by_service), default=0)
    for service, events in summary.events_by_service.items():
        bad = summary.bad_by_service[service]
        ratio = f"{bad / events:.3%}" if events else "-"
        print(f"  {service:<{width}}  {events:>12,} events  {bad:>10,} bad ({ratio})", file=err)


@contextlib.contextmanager
def _quiet_kafka_logs() -> Iterator[None]:
    """Unless logging is set up, aiokafka's connection errors would reach stderr through
    logging's last-resort handler, next to (and noisier than) our one-line error."""
    quiet = logging.NullHandler()
    kafka_logger = logging.getLogger("aiokafka")
    if not kafka_logger.hasHandlers():
        kafka_logger.addHandler(quiet)
    try:
        yield
    finally:
        kafka_logger.removeHandler(quiet)


def _progress_bar(
    spec: LoadSpec, quiet: bool
) -> tuple[Progress, Callable[[ProduceProgress], None] | None]:
    """A transient bar on stderr, and the callback that moves it (None when not shown)."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    console = Console(stderr=True)
    show = not quiet and console.is_terminal
    bar = Progress(
        TextColumn("[bold]producing[/] {task.description}"),
        BarColumn(),
        TextColumn("{task.fields[covered]}"),
        TimeElapsedColumn(),
        console=console,
        disable=not show,
        transient=True,
    )
    task = bar.add_task(
        "",
        total=None if math.isinf(spec.duration_s) else spec.duration_s,
        covered="",
    )

    def on_progress(p: ProduceProgress) -> None:
        rate_per_s = p.events / p.elapsed_s if p.elapsed_s > 0 else 0.0
        bar.update(
            task,
            completed=p.offset_s,
            description=f"{p.events:,} events ({rate_per_s:,.0f}/s)",
            covered=_covered(p.offset_s),
        )

    return bar, on_progress if show else None


async def _write_summary_json(path: str, summary: ProduceSummary) -> int:
    data = msgspec.json.encode(summary) + b"\n"
    if path == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
        return EXIT_OK
    try:
        await asyncio.to_thread(Path(path).write_bytes, data)
    except OSError as exc:
        print_error("produce", f"cannot write the summary: {exc}")
        return EXIT_FAILURE
    return EXIT_OK


async def run_produce(args: argparse.Namespace) -> int:
    """`burnrate produce`: run the options from `add_arguments`; the exit status."""

    def usage_error(message: str) -> int:
        print_error("produce", f"error: {message}")
        return EXIT_USAGE

    try:
        spec = spec_from_args(args)
    except ValueError as exc:
        return usage_error(str(exc))
    realtime = not args.as_fast_as_possible
    if realtime and args.start_ts is not None:
        return usage_error("--start needs --as-fast-as-possible (real time uses the clock)")
    if not realtime and math.isinf(spec.duration_s):
        return usage_error("--duration forever needs real-time pacing; give a duration")
    security = None
    configured = DEFAULT_BOOTSTRAP, "default"
    if args.config is not None:
        try:
            kafka = load_config(args.config).kafka
        except ConfigError as exc:
            print_config_error(args.config, exc)
            return EXIT_USAGE
        security = kafka.security
        configured = kafka.bootstrap_servers, f"{args.config}: $.kafka.bootstrap_servers"
        if args.create_topic is not None and security.protocol != "PLAINTEXT":
            return usage_error("--create-topic works over PLAINTEXT only; create the topic first")
    if args.bootstrap_servers is not None:
        bootstrap, source = args.bootstrap_servers, "--bootstrap-servers"
    else:
        env = bootstrap_from_env()
        bootstrap, source = (env, "KAFKA_BOOTSTRAP_SERVERS") if env else configured
    try:
        check_bootstrap_servers(bootstrap)
    except ValueError as exc:
        return usage_error(f"{source}: {exc}")

    with _quiet_kafka_logs():
        async with stop_on_signals(asyncio.Event()) as stop:
            bar, on_progress = _progress_bar(spec, args.quiet)
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
                        start_ts=args.start_ts,
                        progress=on_progress,
                        stop=stop,
                        compression=args.compression,
                        security=security,
                    )
            except ProduceError as exc:
                print_error("produce", str(exc))
                return EXIT_FAILURE
            except ConfigError as exc:  # unusable TLS files or secrets, or refused by a broker
                print_config_error(args.config, exc)
                return EXIT_USAGE

    if not args.quiet:
        _print_summary(summary)
    if args.summary_json:
        return await _write_summary_json(args.summary_json, summary)
    return EXIT_OK


def main(args: argparse.Namespace) -> int:
    return run_loop(lambda: run_produce(args))
