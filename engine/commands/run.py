"""`burnrate run`: the service (engine.runtime.service) from the command line.

Before anything starts (no socket, no Kafka client, no event loop) the config goes
through the same checks as `burnrate check` (engine.commands.preflight): any problem is
one line per problem on stderr and exit 2. So is an incident store that cannot be
used at start (damaged, of a newer schema, a PostgreSQL server that refuses): it is
never recreated. And so is an audit log whose tail does not verify or that another
process holds: its chain is never forked.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from pathlib import Path

import msgspec

from engine.adapters.http.listen import parse_listen
from engine.adapters.kafka.settings import bootstrap_from_env, bootstrap_problem
from engine.adapters.store.audit import AuditLogError
from engine.adapters.store.incidents import IncidentStoreError
from engine.commands.common import (
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_USAGE,
    print_config_error,
    print_error,
    run_loop,
    stop_on_signals,
)
from engine.commands.preflight import load_checked_config
from engine.core.config import Config
from engine.errors import ConfigError
from engine.runtime.evaluate_role import run_evaluate
from engine.runtime.logging import configure_logging
from engine.runtime.service import Runtime
from engine.runtime.tuning import tune_gc

__all__ = ["ROLES", "add_arguments", "apply_env_overrides", "main"]

log = logging.getLogger("burnrate.commands.run")

ROLES = ("all", "ingest", "evaluate")


def _listen_arg(text: str) -> str:
    try:
        parse_listen(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, metavar="PATH", help="the config file")
    parser.add_argument(
        "--listen",
        type=_listen_arg,
        metavar="HOST:PORT",
        help="HTTP address for the web UI (/), /metrics, /healthz, /readyz and the API "
        "(default: http.listen of the config)",
    )
    parser.add_argument(
        "--role",
        choices=ROLES,
        default="all",
        help="all: the whole engine in this process (default); ingest: consume the request "
        "topics and write count deltas to kafka.scale.counts_topic; evaluate: own the SLOs "
        "of some counts partitions (docs/scaling.md)",
    )
    parser.add_argument(
        "--worker-id",
        metavar="ID",
        help="--role ingest: this worker's stable name, the suffix of its transactional id; "
        "a restart with the same id fences its predecessor (default: host name and HTTP port)",
    )
    parser.add_argument(
        "--ingest-at-least-once",
        action="store_true",
        help=argparse.SUPPRESS,  # benchmarks only: deltas without transactions
    )
    parser.add_argument(
        "--log-format",
        choices=("text", "json"),
        default="text",
        help="log lines as text or as JSON objects (default: text)",
    )


def apply_env_overrides(config: Config) -> Config:
    """`KAFKA_BOOTSTRAP_SERVERS`, when set, replaces the configured brokers."""
    env = bootstrap_from_env()
    if env is None:
        return config
    return msgspec.structs.replace(
        config, kafka=msgspec.structs.replace(config.kafka, bootstrap_servers=env)
    )


def _log_signal(sig: signal.Signals) -> None:
    log.info("received %s", sig.name, extra={"data": {"event": "signal", "signal": sig.name}})


def main(args: argparse.Namespace) -> int:
    """`burnrate run`: the exit status (0 after a clean stop, 2 for a bad config)."""
    configure_logging(args.log_format)
    try:
        config = load_checked_config(args.config)  # what `burnrate check` checks
    except ConfigError as exc:
        print_config_error(args.config, exc)
        return EXIT_USAGE
    env_servers = bootstrap_from_env()
    problem = None if env_servers is None else bootstrap_problem(env_servers)
    if problem is not None:
        print_error("run", f"KAFKA_BOOTSTRAP_SERVERS: {problem}")
        return EXIT_USAGE
    config = apply_env_overrides(config)
    try:
        source = Path(args.config).read_bytes()  # for config.loaded's sha256
    except OSError as exc:
        print_error("run", f"{args.config}: cannot read: {exc.strerror}")
        return EXIT_USAGE
    role = getattr(args, "role", "all")
    if role == "ingest":
        from engine.commands.run_ingest import run_ingest

        return run_ingest(config, args)
    try:
        tune_gc()

        async def main() -> None:
            async with stop_on_signals(asyncio.Event(), _log_signal) as stop:
                if role == "evaluate":
                    await run_evaluate(
                        config,
                        stop,
                        listen=args.listen,
                        config_path=args.config,
                        config_overrides=apply_env_overrides,
                    )
                    return
                runtime = Runtime(
                    config,
                    listen=args.listen,
                    config_path=args.config,
                    config_source=source,
                    config_overrides=apply_env_overrides,
                )
                loop = asyncio.get_running_loop()
                loop.add_signal_handler(signal.SIGHUP, runtime.reload_soon)
                try:
                    await runtime.run(stop)
                finally:
                    loop.remove_signal_handler(signal.SIGHUP)

        run_loop(main)
    except ConfigError as exc:  # e.g. a secret file that went away since the check above
        print_config_error(args.config, exc)
        return EXIT_USAGE
    except (IncidentStoreError, AuditLogError) as exc:  # never recreated nor forked
        print_error("run", str(exc))
        return EXIT_USAGE
    except OSError as exc:  # e.g. the HTTP address is taken
        log.error("cannot run: %s", exc)
        return EXIT_FAILURE
    return EXIT_OK
