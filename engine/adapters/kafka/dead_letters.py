"""The dead-letter topic: raw copies of rejected records, with where they came from.

Each copy keeps the original value, key and timestamp, with headers `source_topic`,
`source_partition`, `source_offset` and `reason`. A rejected record is counted as
rejected whether or not its copy arrives: losing the copy (broker down, timeout) is
logged and counted, and never stops the stream.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

__all__ = ["DLQ_SEND_TIMEOUT_S", "DeadLetters"]

log = logging.getLogger("burnrate.adapters.kafka.dead_letters")

DLQ_SEND_TIMEOUT_S = 30.0


class DeadLetters:
    """A producer to `topic`; `send` awaits the broker's acknowledgement of a batch."""

    def __init__(self, topic: str, client_kwargs: dict[str, Any]) -> None:
        self.topic = topic
        self._kwargs = client_kwargs
        self.producer: Any = None
        self.sent = 0
        self.failures = 0

    async def start(self) -> None:
        producer = AIOKafkaProducer(client_id="burnrate-dlq", acks="all", **self._kwargs)
        await producer.start()
        self.producer = producer

    async def send(self, dead: Sequence[tuple[Any, str]]) -> None:
        """Copy each (record, reason) to the topic; never raises a Kafka error."""
        producer = self.producer
        if producer is None or not dead:
            return
        futures = []
        try:
            for record, reason in dead:
                headers = [
                    ("source_topic", record.topic.encode()),
                    ("source_partition", str(record.partition).encode()),
                    ("source_offset", str(record.offset).encode()),
                    ("reason", reason.encode()),
                ]
                futures.append(
                    await producer.send(
                        self.topic,
                        value=record.value if record.value is not None else b"",
                        key=record.key,
                        headers=headers,
                        timestamp_ms=record.timestamp if record.timestamp >= 0 else None,
                    )
                )
            async with asyncio.timeout(DLQ_SEND_TIMEOUT_S):
                await asyncio.gather(*futures)
            self.sent += len(dead)
        except (KafkaError, TimeoutError) as exc:
            self.failures += len(dead)
            log.error(
                "dead-letter delivery to %s failed for %d records: %r", self.topic, len(dead), exc
            )
