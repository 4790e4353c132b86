"""The command-line spelling of a `LoadSpec`, shared by the commands that generate load.

`add_load_arguments` adds the "load" option group (`--rate`, `--duration`, `--services`,
`--incident`, ...) and `spec_from_args` turns the parsed options into a `LoadSpec`. The
argparse types say what is wrong with a value in their own words: argparse would hide a
plain ValueError behind "invalid value".
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Sequence
from typing import Any

from engine.loadgen.spec import (
    Incident,
    LoadSpec,
    parse_incident,
    parse_label,
    parse_rate,
    parse_ratio,
    parse_run_duration_s,
    parse_services,
)

__all__ = [
    "add_load_arguments",
    "argument_type",
    "int_in",
    "positive_float",
    "spec_from_args",
]


def positive_float(what: str) -> Callable[[str], float]:
    """An argparse type: a finite number > 0, `what` naming it in the error."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{what} {text!r} is not a number") from None
        if not (math.isfinite(value) and value > 0):
            raise argparse.ArgumentTypeError(f"{what} {text!r} must be a number > 0")
        return value

    return parse


def int_in(what: str, low: int, high: int) -> Callable[[str], int]:
    """An argparse type: a whole number in [low, high], `what` naming it in the error."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{what} {text!r} is not a whole number") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{what} {value} must be between {low} and {high}")
        return value

    return parse


def argument_type(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """`parse` as an argparse type: its ValueError becomes the message shown.

    argparse hides a type function's ValueError behind "invalid value"; keep its text.
    """

    def wrapped(text: str) -> Any:
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    wrapped.__name__ = parse.__name__
    return wrapped


def add_load_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the "load" option group: what `spec_from_args` reads.

    The --incident help says "grammar below": show `INCIDENT_HELP_TEXT` in the epilog.
    """
    load = parser.add_argument_group("load")
    load.add_argument(
        "--rate",
        dest="rate_per_s",
        type=argument_type(parse_rate),
        default=1000.0,
        metavar="EVENTS_PER_S",
        help="events per second, at most 10,000,000 (default: 1000)",
    )
    load.add_argument(
        "--duration",
        dest="duration_s",
        type=argument_type(parse_run_duration_s),
        default=300.0,
        metavar="DURATION",
        help="length of the run, e.g. 90s, 10m, 1h, or 'forever' (default: 5m)",
    )
    load.add_argument(
        "--services",
        type=argument_type(parse_services),
        default=parse_services("3"),
        metavar="N|NAMES",
        help="a count (3: svc-0, svc-1, svc-2) or comma-separated names "
        "(checkout,search) (default: 3)",
    )
    load.add_argument(
        "--operations",
        type=int_in("operations per service", 1, 1000),
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
        type=argument_type(parse_ratio),
        default=0.001,
        metavar="RATIO",
        help="baseline share of failed requests, 0.001 or 0.1%% (default: 0.001)",
    )
    load.add_argument(
        "--latency-median-ms",
        type=positive_float("median latency"),
        default=40.0,
        metavar="MS",
        help="median latency in milliseconds (default: 40)",
    )
    load.add_argument(
        "--latency-p99-ms",
        type=positive_float("p99 latency"),
        default=250.0,
        metavar="MS",
        help="99th-percentile latency in milliseconds (default: 250)",
    )
    load.add_argument(
        "--incident",
        dest="incidents",
        action="append",
        type=argument_type(parse_incident),
        default=[],
        metavar="INCIDENT",
        help="an error or latency incident, e.g. checkout:20%%@+60s:5m (repeatable; grammar below)",
    )
    load.add_argument(
        "--count",
        type=int_in("count", 1, 1_000_000),
        default=1,
        metavar="N",
        help="every event stands for N requests (the wire's count field) (default: 1)",
    )
    load.add_argument(
        "--label",
        dest="labels",
        action="append",
        type=argument_type(parse_label),
        default=[],
        metavar="KEY=VALUES",
        help="give every event the label KEY, its value drawn evenly from VALUES: "
        "comma-separated (region=eu,us,ap) or a count (customer=50: customer-0 ... "
        "customer-49); repeatable, at most 16 (default: no labels)",
    )
    load.add_argument(
        "--seed",
        type=int_in("seed", 0, 2**63 - 1),
        default=0,
        metavar="N",
        help="random seed; the same seed gives the same events (default: 0)",
    )


def spec_from_args(args: argparse.Namespace) -> LoadSpec:
    """The LoadSpec the parsed options describe; ValueError when they do not fit together."""
    incidents: Sequence[Incident] = args.incidents
    return LoadSpec(
        rate_per_s=args.rate_per_s,
        duration_s=args.duration_s,
        services=tuple(args.services),
        operations_per_service=args.operations,
        error_ratio=args.error_ratio,
        latency_median_ms=args.latency_median_ms,
        latency_p99_ms=args.latency_p99_ms,
        statuses=args.statuses,
        incidents=tuple(incidents),
        count=args.count,
        labels=tuple(args.labels),
        seed=args.seed,
    )
