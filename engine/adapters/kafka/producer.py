"""Publish the synthetic request events of a `LoadSpec` (engine.loadgen) to a Kafka topic.

The sending half of `burnrate produce` and `burnrate demo` (the benchmarks use it too).

Two pacings. Real time (the default) sends the events of the run as they fall due on
the wall clock, stamped with the current time, like live services would. As fast as
possible (`realtime=False`) sends the same events back to back, stamped from the
run's start (by default `spec.duration_s` ago, so the run ends now and the engine sees
a recent past rather than a future it would reject).

Sending. The records of a slice are packed into Kafka record batches here (aiokafka's
`create_batch`), each batch going to the next partition in turn, and handed over with
`send_batch`: aiokafka's per-record `send` costs ~10 us a record in Python, which caps
single-event records near 90k/s, where batches reach ~1M records/s on loopback. No
delivery is awaited on its own: those of a slice are awaited together once the two
slices after it are handed over, and a failed delivery ends the run with an error.

The command line is `engine.commands.produce`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, Final, Literal, get_args

import msgspec

from engine.errors import BurnrateError
from engine.loadgen.generator import LoadGenerator, Tally
from engine.loadgen.spec import LoadSpec
from engine.loadgen.wire import RecordFormat, encode_records

__all__ = [
    "Compression",
    "ProduceError",
    "ProduceProgress",
    "ProduceSummary",
    "produce",
]

Compression = Literal["auto", "none", "gzip", "snappy", "lz4", "zstd"]


MAX_RECORD_BYTES: Final = 1_000_000
"""Largest record value sent; Kafka brokers refuse batches over ~1 MiB by default."""
_BATCH_BYTES: Final = 256 * 1024  # per Kafka record batch: small enough to use every partition
_SLICE_EVENTS: Final = 32_768  # events encoded and sent per step when not pacing
_TICK_S: Final = 0.05  # shortest pause between real-time steps: lets sends batch up


class ProduceError(BurnrateError):
    """Producing failed: the broker is unreachable, the topic is missing, a send failed."""


class ProduceProgress(msgspec.Struct, frozen=True):
    """Where a run is, reported after every step."""

    records: int
    events: int
    elapsed_s: float
    offset_s: float
    """Run time covered so far (seconds since the run's start in event time)."""
    duration_s: float


class ProduceSummary(msgspec.Struct, frozen=True, kw_only=True):
    """What a run sent. Event counts are weighted by `count`, as the engine counts them."""

    topic: str
    format: str
    batch: int
    records: int
    events: int
    bad: int
    events_by_service: dict[str, int]
    bad_by_service: dict[str, int]
    start_ts: float
    """Epoch seconds of the run's offset 0."""
    offset_s: float
    """Run time covered: the events sent have offsets in [0, offset_s)."""
    elapsed_s: float
    realtime: bool
    stopped: bool
    """True when the stop event ended the run before its duration."""

    @property
    def events_per_s(self) -> float:
        return self.events / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def records_per_s(self) -> float:
        return self.records / self.elapsed_s if self.elapsed_s > 0 else 0.0


def _compression_type(choice: Compression) -> str | None:
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


async def _wait_or_stop(stop: asyncio.Event, delay_s: float) -> None:
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(delay_s):
            await stop.wait()


async def produce(
    bootstrap_servers: str,
    topic: str,
    spec: LoadSpec,
    *,
    fmt: RecordFormat = "json",
    batch: int = 1,
    realtime: bool = True,
    start_ts: float | None = None,
    progress: Callable[[ProduceProgress], None] | None = None,
    stop: asyncio.Event | None = None,
    compression: Compression = "auto",
    connect_timeout_s: float = 15.0,
    clock: Callable[[], float] = time.time,
) -> ProduceSummary:
    """Publish the events of `spec` to `topic`; returns what was sent once all is delivered.

    `realtime`: pace to the wall clock and stamp events with the current time (then
    `start_ts` must be None). Otherwise send as fast as possible, stamped from
    `start_ts` (default: `clock() - spec.duration_s`, i.e. ending now). `stop` ends
    the run early (what was sent is still delivered and counted). Raises
    ProduceError with a one-line message on any Kafka failure.
    """
    from aiokafka import AIOKafkaProducer
    from aiokafka.errors import KafkaConnectionError, KafkaError

    if batch < 1:
        raise ValueError(f"batch {batch!r} must be >= 1")
    if fmt not in get_args(RecordFormat):
        raise ValueError(f"format {fmt!r} must be json or msgpack")
    if realtime and start_ts is not None:
        raise ValueError("a real-time run is stamped with the current time; drop start_ts")
    stop = stop if stop is not None else asyncio.Event()
    if start_ts is None:
        now = clock()
        start_ts = now if realtime or math.isinf(spec.duration_s) else now - spec.duration_s

    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap_servers,
        client_id="burnrate-produce",
        acks=1,
        # Batches are built here and complete when handed over: lingering only adds delay.
        linger_ms=0,
        max_batch_size=_BATCH_BYTES,
        compression_type=_compression_type(compression),
        request_timeout_ms=30_000,
    )
    try:
        try:
            async with asyncio.timeout(connect_timeout_s):
                await producer.start()
        except ValueError as exc:  # aiokafka parses the bootstrap list in start()
            raise ProduceError(
                f"bad bootstrap servers {bootstrap_servers!r}: {_one_line(exc)}"
            ) from None
        except (KafkaConnectionError, OSError, TimeoutError):
            raise ProduceError(
                f"cannot connect to Kafka at {bootstrap_servers}: no broker answered "
                "(is it running? set --bootstrap-servers or KAFKA_BOOTSTRAP_SERVERS)"
            ) from None
        except KafkaError as exc:
            raise ProduceError(
                f"cannot connect to Kafka at {bootstrap_servers}: {_one_line(exc)}"
            ) from None
        try:
            async with asyncio.timeout(connect_timeout_s):
                partitions = sorted(await producer.partitions_for(topic))
        except (KafkaError, TimeoutError) as exc:
            raise ProduceError(
                f"topic {topic!r} is not available on {bootstrap_servers} ({_one_line(exc)}); "
                "create it first (or use --create-topic)"
            ) from None
        try:
            return await _run(
                _BatchSender(producer, topic, partitions),
                spec,
                fmt,
                batch,
                realtime,
                start_ts,
                progress,
                stop,
            )
        except KafkaError as exc:
            raise ProduceError(f"sending to {topic!r} failed: {_one_line(exc)}") from None
    finally:
        with contextlib.suppress(KafkaError, OSError):
            await producer.stop()


class _BatchSender:
    """Packs record values into Kafka record batches, one partition after the other."""

    def __init__(self, producer: Any, topic: str, partitions: Sequence[int]) -> None:
        self.producer = producer
        self.topic = topic
        self._partitions = itertools.cycle(partitions)

    async def send(self, values: Sequence[bytes]) -> asyncio.Future[list[Any]]:
        """Queue `values`; the returned awaitable completes when all are delivered."""
        futures = []
        builder = self.producer.create_batch()
        for value in values:
            if builder.append(key=None, value=value, timestamp=None) is None:
                futures.append(await self._send(builder))
                builder = self.producer.create_batch()
                builder.append(key=None, value=value, timestamp=None)  # first always fits
        if builder.record_count():
            futures.append(await self._send(builder))
        return asyncio.gather(*futures)

    async def _send(self, builder: Any) -> Any:
        partition = next(self._partitions)
        return await self.producer.send_batch(builder, self.topic, partition=partition)


async def _run(
    sender: _BatchSender,
    spec: LoadSpec,
    fmt: RecordFormat,
    batch: int,
    realtime: bool,
    start_ts: float,
    progress: Callable[[ProduceProgress], None] | None,
    stop: asyncio.Event,
) -> ProduceSummary:
    generator = LoadGenerator(spec)
    tally = Tally(spec.services)
    total = spec.total_events
    in_flight: deque[asyncio.Future[list[Any]]] = deque()
    # Whole records per step, so a batched record never ends early except at the very end.
    slice_events = max(batch, _SLICE_EVENTS // batch * batch)
    started = time.monotonic()
    sent_up_to = 0  # index of the next event to send

    try:
        while (total is None or sent_up_to < total) and not stop.is_set():
            if realtime:
                elapsed = time.monotonic() - started
                due_up_to, _ = generator.index_range(elapsed, elapsed)
                if due_up_to <= sent_up_to:
                    next_due_s = sent_up_to / spec.rate_per_s
                    await _wait_or_stop(stop, max(_TICK_S, next_due_s - elapsed))
                    continue
                up_to = min(due_up_to, sent_up_to + 8 * slice_events)
            else:
                up_to = sent_up_to + slice_events
            cols = generator.columns_for(start_ts, sent_up_to, up_to)
            values = encode_records(cols, fmt, batch)
            biggest = max(map(len, values), default=0)
            if biggest > MAX_RECORD_BYTES:
                raise ProduceError(
                    f"a record of {batch} events is {biggest:,} bytes, over the "
                    f"{MAX_RECORD_BYTES:,}-byte limit of Kafka brokers; use a smaller --batch"
                )
            in_flight.append(await sender.send(values))
            if len(in_flight) > 2:
                await in_flight.popleft()
            tally.add(cols, len(values))
            sent_up_to = cols.first_index + len(cols)
            if progress is not None:
                progress(
                    ProduceProgress(
                        records=tally.records,
                        events=tally.total_events,
                        elapsed_s=time.monotonic() - started,
                        offset_s=sent_up_to / spec.rate_per_s,
                        duration_s=spec.duration_s,
                    )
                )
            if not realtime:
                await asyncio.sleep(0)  # let the sender task and a stop request in
        while in_flight:
            await in_flight[0]
            in_flight.popleft()
    finally:
        # Left only after an error: that one is reported, these outcomes are not news.
        for pending in in_flight:
            pending.cancel()
            pending.add_done_callback(_retrieve_outcome)

    return ProduceSummary(
        topic=sender.topic,
        format=fmt,
        batch=batch,
        records=tally.records,
        events=tally.total_events,
        bad=tally.total_bad,
        events_by_service=tally.events,
        bad_by_service=tally.bad,
        start_ts=start_ts,
        offset_s=sent_up_to / spec.rate_per_s,
        elapsed_s=time.monotonic() - started,
        realtime=realtime,
        stopped=total is None or sent_up_to < total,
    )


def _retrieve_outcome(future: asyncio.Future[list[Any]]) -> None:
    if not future.cancelled():
        future.exception()
