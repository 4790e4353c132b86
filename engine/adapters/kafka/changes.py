"""The changes topic: change records (the JSON body of `POST /v1/changes`) read into the
running engine's change log by a small consumer of their own.

A record is checked like the API's body (engine.core.changes.take_change); without
`at` its time is the record's Kafka timestamp (when the pipeline sent it), else the
engine's event time. A record that is not a valid change is counted (the engine's
rejected records, reason `invalid_change`, and `rejected` here) and logged (the first
of a run and then one in 100), never fatal.

The consumer is a member of the group `<kafka.group_id>.changes` and commits its
offsets itself, after what they cover is kept: with a state file, after `on_change`
(the runtime saves the state) has returned; so a change read is in the state before
its offset is committed. A record read twice (a crash between the save and the
commit) is the same change, which the log keeps once. Brokers that cannot be reached
are retried with a backoff, like the main consumer's start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaError

from engine.adapters.http.changes import record_change
from engine.adapters.kafka.settings import kafka_client_kwargs
from engine.adapters.kafka.source import stop_client
from engine.adapters.store.audit import AuditSink, NullAudit
from engine.core.changes import ChangeLog, take_change
from engine.core.config import Config
from engine.core.evaluator import Evaluator
from engine.errors import ConfigError

__all__ = ["REJECT_REASON", "ChangeConsumer"]

log = logging.getLogger("burnrate.adapters.kafka.changes")

REJECT_REASON = "invalid_change"
POLL_TIMEOUT_MS = 250
RETRY_MAX_S = 10.0
START_TIMEOUT_S = 30.0
LOG_EVERY = 100


class ChangeConsumer:
    """Reads `config.kafka.changes_topic` into `changes`."""

    def __init__(
        self,
        config: Config,
        evaluator: Evaluator,
        changes: ChangeLog,
        *,
        on_change: Callable[[], Awaitable[object]] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        topic = config.kafka.changes_topic
        if not topic:
            raise ValueError("no kafka.changes_topic configured")
        self.topic = topic
        self.kafka = config.kafka
        self.evaluator = evaluator
        self.changes = changes
        self.on_change = on_change
        self.clock = clock
        self.consumed = 0
        self.added = 0
        self.rejected = 0
        self.fetches = 0
        """Fetches answered (`getmany` calls), records or none."""
        self._consumer: Any = None
        self.audit: AuditSink = NullAudit()
        """Each change taken in is a `change.recorded` entry, actor `kafka:<topic>`."""

    async def run(self, stop: asyncio.Event) -> None:
        """Join the group (retrying while the brokers are unreachable), then read until
        `stop` is set; commits and leaves the group before returning. A stop during the
        start waits for it (the runtime awaits this task last at shutdown)."""
        delay = 0.5
        while not stop.is_set() and self._consumer is None:
            # A stop during the start lets it finish (a few seconds: the group join)
            # and then leaves: aiokafka does not close what a cancelled start opened.
            try:
                async with asyncio.timeout(START_TIMEOUT_S):
                    await self._start()
                break
            except (KafkaError, TimeoutError) as exc:
                if stop.is_set():
                    break
                log.warning("changes topic: cannot reach Kafka (%r); retrying in %.1fs", exc, delay)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await stop.wait()
            delay = min(delay * 2, RETRY_MAX_S)
        try:
            while not stop.is_set() and self._consumer is not None:
                try:
                    data = await self._consumer.getmany(timeout_ms=POLL_TIMEOUT_MS)
                    self.fetches += 1
                except KafkaError as exc:
                    log.warning("changes topic: fetch failed: %r; retrying", exc)
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(1.0):
                            await stop.wait()
                    continue
                records = [r for batch in data.values() for r in batch]
                if records:
                    await self.apply(records)
        finally:
            await self.close()

    async def _start(self) -> None:
        consumer = AIOKafkaConsumer(
            self.topic,
            group_id=f"{self.kafka.group_id}.changes",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            client_id="burnrate-changes",
            **kafka_client_kwargs(self.kafka),
        )
        try:
            await consumer.start()
        except BaseException:  # KafkaError, or cancelled by a stop during the join
            await stop_client(consumer, "changes consumer", 2.0)
            raise
        self._consumer = consumer
        log.info(
            "reading changes from %s",
            self.topic,
            extra={"data": {"event": "changes_consumer_started", "topic": self.topic}},
        )

    async def apply(self, records: list[Any]) -> None:
        """Take in a fetch of records; once they are kept, commit their offsets."""
        added = 0
        for record in records:
            self.consumed += 1
            if self._take(record):
                added += 1
        if added and self.on_change is not None:
            await self.on_change()
        if self._consumer is not None:
            try:
                async with asyncio.timeout(5.0):
                    await self._consumer.commit()
            except (KafkaError, TimeoutError) as exc:  # read again later: kept once
                log.warning("changes topic: commit failed: %r", exc)

    def _take(self, record: Any) -> bool:
        ts = getattr(record, "timestamp", None)
        default_at = ts / 1000.0 if isinstance(ts, int) and ts >= 0 else None
        try:
            value = record.value
            if not isinstance(value, bytes):
                raise ConfigError(["$: an empty record"])
            change, added = take_change(
                self.evaluator,
                self.changes,
                value,
                source="kafka",
                wall_s=self.clock(),
                default_at_s=default_at,
            )
        except ConfigError as exc:
            self.rejected += 1
            self.evaluator.reject(REJECT_REASON)
            if (self.rejected - 1) % LOG_EVERY == 0:
                log.warning(
                    "changes topic: rejected record %s[%d]@%d: %s; %d so far",
                    record.topic,
                    record.partition,
                    record.offset,
                    "; ".join(exc.errors)[:300],
                    self.rejected,
                    extra={"data": {"event": "change_rejected", "count": self.rejected}},
                )
            return False
        if added:
            self.added += 1
            record_change(self.audit, f"kafka:{self.topic}", change, None)
            log.info(
                "change of %s: %s%s at %.0f (kafka)",
                change.service,
                change.kind,
                "" if change.version is None else f" {change.version}",
                change.at_s,
                extra={
                    "data": {
                        "event": "change_added",
                        "source": "kafka",
                        "service": change.service,
                        "kind": change.kind,
                        "version": change.version,
                        "at_s": change.at_s,
                        "id": change.id,
                    }
                },
            )
        return added

    def assigned(self) -> int:
        """Partitions of the topic assigned to this consumer now."""
        return 0 if self._consumer is None else len(self._consumer.assignment())

    async def close(self) -> None:
        """Leave the group (offsets are committed after each fetch); bounded."""
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            await stop_client(consumer, "changes consumer", 5.0)
