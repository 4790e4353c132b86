"""Publish already-encoded record values to a Kafka topic, in record batches.

The Kafka half of `burnrate produce` and `burnrate demo` (the pacing of a load run is
`engine.loadgen.publish`). The API:

    async with BatchPublisher(bootstrap_servers, topic, compression="auto") as pub:
        delivery = await pub.send(values)   # values: Sequence[bytes], one per record
        ...
        await delivery                      # all of those records are delivered

- `BatchPublisher(bootstrap_servers, topic, *, compression, client_id,
  connect_timeout_s, security)`: entering starts an aiokafka producer and looks up the
  topic's partitions; leaving stops it. `start()` and `stop()` do the same by hand.
  `security` is the TLS and SASL part of a config's `kafka:` section (`KafkaSecurity`),
  applied as `burnrate run` applies it; a broker that refuses it (an untrusted
  certificate, a wrong password) is a ConfigError, not a ProduceError.
- `send(values)` packs the values into Kafka record batches (aiokafka's `create_batch`),
  each batch going to the next partition in turn, hands them over with `send_batch`,
  and returns a `Delivery` without waiting for the broker. aiokafka's per-record `send`
  costs ~10 us a record in Python, which caps single-event records near 90k/s, where
  batches reach ~1M records/s on loopback.
- `Delivery`: await it for the outcome of one `send`; `cancel()` gives up on it and
  leaves its outcome unread.
- `ProduceError`: every failure (broker unreachable, bad bootstrap list, topic missing,
  compression unavailable, a send or delivery failed), with a one-line message.
- `compression_type(choice)`: the aiokafka codec for a `Compression` choice; "auto"
  picks lz4 or zstd when installed. `MAX_RECORD_BYTES`: the largest value to send.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Generator, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Literal

from engine.errors import BurnrateError

if TYPE_CHECKING:
    from engine.core.config import KafkaSecurity

__all__ = [
    "MAX_RECORD_BYTES",
    "BatchPublisher",
    "Compression",
    "Delivery",
    "ProduceError",
    "compression_type",
]

Compression = Literal["auto", "none", "gzip", "snappy", "lz4", "zstd"]

MAX_RECORD_BYTES: Final = 1_000_000
"""Largest record value sent; Kafka brokers refuse batches over ~1 MiB by default."""
_BATCH_BYTES: Final = 256 * 1024  # per Kafka record batch: small enough to use every partition


class ProduceError(BurnrateError):
    """Producing failed: the broker is unreachable, the topic is missing, a send failed."""


def compression_type(choice: Compression) -> str | None:
    """The aiokafka `compression_type` for `choice`; ProduceError if its codec is missing."""
    from aiokafka.codec import has_gzip, has_lz4, has_snappy, has_zstd

    if choice == "none":
        return None
    available = {"lz4": has_lz4, "zstd": has_zstd, "snappy": has_snappy, "gzip": has_gzip}
    if choice == "auto":
        # Cheap codecs only: on loopback gzip costs more CPU than the bytes it saves.
        return next((name for name in ("lz4", "zstd") if available[name]()), None)
    if not available[choice]():
        raise ProduceError(f"compression {choice} needs the cramjam package (pip install cramjam)")
    return choice


def _one_line(exc: BaseException) -> str:
    name = type(exc).__name__
    text = " ".join(str(exc).split())
    if not text or text == name:
        return name
    return text if text.startswith(name) else f"{name}: {text}"


def _send_failed(topic: str, exc: BaseException) -> ProduceError:
    return ProduceError(f"sending to {topic!r} failed: {_one_line(exc)}")


class Delivery:
    """The outcome of one `BatchPublisher.send`: awaiting it returns once every record
    of that send is delivered, or raises ProduceError."""

    __slots__ = ("_future", "_topic")

    def __init__(self, future: asyncio.Future[Any], topic: str) -> None:
        self._future = future
        self._topic = topic

    def __await__(self) -> Generator[Any, None, None]:
        return self._wait().__await__()

    async def _wait(self) -> None:
        from aiokafka.errors import KafkaError

        try:
            await self._future
        except KafkaError as exc:
            raise _send_failed(self._topic, exc) from None

    def cancel(self) -> None:
        """Give up on it: what is pending is cancelled and the outcome is never reported
        (after an error the caller reports that one; these outcomes are not news)."""
        self._future.cancel()
        self._future.add_done_callback(_retrieve_outcome)


def _retrieve_outcome(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


class BatchPublisher:
    """An aiokafka producer for one topic that sends record values in record batches,
    round-robin over the topic's partitions. Use it as an async context manager."""

    def __init__(
        self,
        bootstrap_servers: str,
        topic: str,
        *,
        compression: Compression = "auto",
        client_id: str = "burnrate-produce",
        connect_timeout_s: float = 15.0,
        security: KafkaSecurity | None = None,
    ) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.topic = topic
        self.compression = compression
        self.client_id = client_id
        self.connect_timeout_s = connect_timeout_s
        self.security = security
        self.partitions: tuple[int, ...] = ()
        """The topic's partitions, known once started."""
        self._producer: Any = None
        self._connection: dict[str, Any] = {}
        self._next_partition: itertools.cycle[int] | None = None

    async def __aenter__(self) -> BatchPublisher:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        """Connect and look up the topic's partitions; ProduceError (and stopped) if not,
        ConfigError when the security settings are unusable or a broker refuses them."""
        from aiokafka import AIOKafkaProducer

        if self._producer is not None:
            raise RuntimeError("the publisher is already started")
        connection: dict[str, Any] = {"bootstrap_servers": self.bootstrap_servers}
        if self.security is not None:
            connection = self._secured(self.security)
        self._connection = connection
        self._producer = AIOKafkaProducer(
            client_id=self.client_id,
            **connection,
            acks=1,
            # Batches are built here and complete when handed over: lingering only adds delay.
            linger_ms=0,
            max_batch_size=_BATCH_BYTES,
            compression_type=compression_type(self.compression),
            request_timeout_ms=30_000,
        )
        try:
            await self._connect()
        except BaseException:
            await self.stop()
            raise

    def _secured(self, security: KafkaSecurity) -> dict[str, Any]:
        from engine.adapters.kafka.settings import kafka_client_kwargs
        from engine.core.config import Kafka

        return kafka_client_kwargs(
            Kafka(bootstrap_servers=self.bootstrap_servers, security=security)
        )

    async def _connect(self) -> None:
        from aiokafka.errors import KafkaConnectionError, KafkaError

        from engine.adapters.kafka.access import check_access

        bootstrap, topic = self.bootstrap_servers, self.topic
        try:
            async with asyncio.timeout(self.connect_timeout_s):
                if self.security is not None:  # a refusal is the config's, not an outage
                    await check_access(self._connection, self.security)
                await self._producer.start()
        except ValueError as exc:  # aiokafka parses the bootstrap list in start()
            raise ProduceError(f"bad bootstrap servers {bootstrap!r}: {_one_line(exc)}") from None
        except (KafkaConnectionError, OSError, TimeoutError):
            raise ProduceError(
                f"cannot connect to Kafka at {bootstrap}: no broker answered "
                "(is it running? set --bootstrap-servers or KAFKA_BOOTSTRAP_SERVERS)"
            ) from None
        except KafkaError as exc:
            raise ProduceError(
                f"cannot connect to Kafka at {bootstrap}: {_one_line(exc)}"
            ) from None
        try:
            async with asyncio.timeout(self.connect_timeout_s):
                partitions = sorted(await self._producer.partitions_for(topic))
        except (KafkaError, TimeoutError) as exc:
            raise ProduceError(
                f"topic {topic!r} is not available on {bootstrap} ({_one_line(exc)}); "
                "create it first (or use --create-topic)"
            ) from None
        self.partitions = tuple(partitions)
        self._next_partition = itertools.cycle(self.partitions)

    async def stop(self) -> None:
        """Stop the producer (waiting for what is in flight); never raises a Kafka error."""
        from aiokafka.errors import KafkaError

        producer, self._producer, self._next_partition = self._producer, None, None
        if producer is not None:
            with contextlib.suppress(KafkaError, OSError):
                await producer.stop()

    async def send(self, values: Sequence[bytes]) -> Delivery:
        """Hand `values` over, one record each; the Delivery completes when all are
        delivered. ProduceError if a batch cannot be handed over."""
        from aiokafka.errors import KafkaError

        if self._producer is None:
            raise RuntimeError("the publisher is not started")
        try:
            return Delivery(await self._send(values), self.topic)
        except KafkaError as exc:
            raise _send_failed(self.topic, exc) from None

    async def _send(self, values: Sequence[bytes]) -> asyncio.Future[list[Any]]:
        producer = self._producer
        futures = []
        builder = producer.create_batch()
        for value in values:
            if builder.append(key=None, value=value, timestamp=None) is None:
                futures.append(await self._send_batch(builder))
                builder = producer.create_batch()
                builder.append(key=None, value=value, timestamp=None)  # first always fits
        if builder.record_count():
            futures.append(await self._send_batch(builder))
        return asyncio.gather(*futures)

    async def _send_batch(self, builder: Any) -> Any:
        assert self._next_partition is not None
        partition = next(self._next_partition)
        return await self._producer.send_batch(builder, self.topic, partition=partition)
