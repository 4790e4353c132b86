"""`burnrate run --role ingest`: an ingest worker (engine.runtime.ingest_role).

Exit codes: 0 after a clean stop (SIGINT/SIGTERM: a last flush, then the group is
left); 2 when the counts topic exists with another partition count, when the brokers
refuse transactional producers (a broker without transactions: an ingest worker would
otherwise count without exactly-once), or for an unusable config; 3 when no broker
answers at start; 1 when a flush fails while running (the worker stops: its restart
reads again, from the committed offsets, what it had not committed).
"""

from __future__ import annotations

import argparse
import asyncio
import logging

from aiokafka.errors import KafkaError

from engine.adapters.kafka.counts import CountsTopicError, TransactionsUnsupported
from engine.commands.common import (
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    print_config_error,
    print_error,
    refuse_reload,
    run_loop,
    stop_on_signals,
)
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
    worker = IngestWorker(config, listen=args.listen, worker_id=args.worker_id)
    transactional = not getattr(args, "ingest_at_least_once", False)

    async def main() -> None:
        async with stop_on_signals(asyncio.Event()) as stop:
            with refuse_reload("ingest"):
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
