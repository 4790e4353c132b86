"""`burnrate run --role ingest`: an ingest worker (engine.runtime.ingest_role).

Exit codes: 0 after a clean stop (SIGINT/SIGTERM: a last flush, then the group is
left); 2 when the counts topic exists with another partition count, when the brokers
refuse transactional producers (a broker without transactions: an ingest worker would
otherwise count without exactly-once), or for an unusable config; 3 when no broker
answers at start; 1 when a flush fails while running (the worker stops: its restart
reads again, from the committed offsets, what it had not committed).

SIGHUP reloads the config file (engine.runtime.ingest_reload), as `POST /-/reload` does;
a file it refuses is logged and changes nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
from collections.abc import Iterator
from pathlib import Path

from aiokafka.errors import KafkaError

from engine.adapters.kafka.counts import CountsTopicError, TransactionsUnsupported
from engine.commands.common import (
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    print_config_error,
    print_error,
    run_loop,
    stop_on_signals,
)
from engine.commands.run import apply_env_overrides
from engine.core.config import Config
from engine.errors import ConfigError
from engine.runtime.ingest_role import IngestFailed, IngestWorker
from engine.runtime.tuning import tune_gc

__all__ = ["run_ingest"]

log = logging.getLogger("burnrate.commands.run")

START_TIMEOUT_S = 60.0
"""How long the start (counts topic, producer fencing, group join) may take."""


class _Unreachable(Exception):
    pass


def run_ingest(config: Config, args: argparse.Namespace) -> int:
    """Run one ingest worker until a stop signal; the exit status."""
    try:
        source: bytes | None = Path(args.config).read_bytes()  # for the config's sha256
    except OSError:
        source = None  # gone since it was loaded: the digest of the decoded config
    worker = IngestWorker(
        config,
        listen=args.listen,
        worker_id=args.worker_id,
        config_path=args.config,
        config_source=source,
        config_overrides=apply_env_overrides,
    )
    transactional = not getattr(args, "ingest_at_least_once", False)

    async def main() -> None:
        async with stop_on_signals(asyncio.Event()) as stop:
            with _reload_on_sighup(worker):
                try:
                    async with asyncio.timeout(START_TIMEOUT_S):
                        await worker.start(transactional=transactional)
                except (KafkaError, TimeoutError) as exc:
                    await worker.close()
                    raise _Unreachable(f"cannot reach Kafka at start: {exc!r}") from None
                except BaseException:
                    await worker.close()
                    raise
                await worker.run(stop)

    try:
        tune_gc()
        run_loop(main)
    except (CountsTopicError, TransactionsUnsupported) as exc:
        print_error("run", str(exc))
        return EXIT_USAGE
    except ConfigError as exc:
        print_config_error(args.config, exc)
        return EXIT_USAGE
    except _Unreachable as exc:
        print_error("run", str(exc))
        return EXIT_UNREACHABLE
    except IngestFailed as exc:
        print_error("run", f"ingest worker stopped: {exc}")
        return EXIT_FAILURE
    except OSError as exc:  # e.g. the HTTP address is taken
        print_error("run", f"cannot run: {exc}")
        return EXIT_FAILURE
    return EXIT_OK


@contextlib.contextmanager
def _reload_on_sighup(worker: IngestWorker) -> Iterator[None]:
    """SIGHUP reloads the config (before the start and during the stop it is refused
    and logged: the default action would end the process)."""
    reloader = worker.reloader
    assert reloader is not None
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGHUP, reloader.reload_soon)
    try:
        yield
    finally:
        loop.remove_signal_handler(signal.SIGHUP)
