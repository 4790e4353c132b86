"""Publish the synthetic request events of a `LoadSpec` to a Kafka topic: a load run.

The sending half of `burnrate produce` and `burnrate demo` (the benchmarks use it too):
`produce(bootstrap_servers, topic, spec, ...)` generates the events slice by slice,
encodes them (`engine.loadgen.wire`) and hands them to the Kafka adapter
(`engine.adapters.kafka.producer.BatchPublisher`), which raises `ProduceError`.

Two pacings. Real time (the default) sends the events of the run as they fall due on
the wall clock, stamped with the current time, like live services would. As fast as
possible (`realtime=False`) sends the same events back to back, stamped from the
run's start (by default `spec.duration_s` ago, so the run ends now and the engine sees
a recent past rather than a future it would reject).

A real-time run ends at its duration on the wall clock, whatever the rate: one that
cannot keep up (a rate beyond what the machine or the broker takes) keeps sending the
oldest events due until `LATE_S` after its duration, then stops with the rest unsent
and says so (`ProduceSummary.fell_behind`). Past the deadline it only finishes the step
in hand and awaits what is in flight. While behind, a step sends one slice
(`_SLICE_EVENTS`): small steps keep the overrun short and pipeline better than big ones.

No delivery is awaited on its own: those of a slice are awaited together once the two
slices after it are handed over, and a failed delivery ends the run with an error.

The command line is `engine.commands.produce`.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Final, get_args

import msgspec

from engine.adapters.kafka.producer import (
    MAX_RECORD_BYTES,
    BatchPublisher,
    Compression,
    Delivery,
    ProduceError,
)
from engine.loadgen.generator import LoadGenerator, Tally
from engine.loadgen.spec import LoadSpec
from engine.loadgen.wire import RecordFormat, encode_records

if TYPE_CHECKING:
    from engine.core.config import KafkaSecurity

__all__ = [
    "LATE_S",
    "ProduceProgress",
    "ProduceSummary",
    "produce",
]

_SLICE_EVENTS: Final = 32_768  # events encoded and sent per step when not pacing
_TICK_S: Final = 0.05  # shortest pause between real-time steps: lets sends batch up
LATE_S: Final = 1.0
"""A real-time run still behind this long after its duration stops (`fell_behind`)."""


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
    fell_behind: bool = False
    """True when a real-time run could not keep up with its rate and ended at its
    duration (plus LATE_S) with events unsent: it covers less than its duration."""

    @property
    def events_per_s(self) -> float:
        return self.events / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def records_per_s(self) -> float:
        return self.records / self.elapsed_s if self.elapsed_s > 0 else 0.0


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
    security: KafkaSecurity | None = None,
    clock: Callable[[], float] = time.time,
) -> ProduceSummary:
    """Publish the events of `spec` to `topic`; returns what was sent once all is delivered.

    `realtime`: pace to the wall clock and stamp events with the current time (then
    `start_ts` must be None). Otherwise send as fast as possible, stamped from
    `start_ts` (default: `clock() - spec.duration_s`, i.e. ending now). `stop` ends
    the run early (what was sent is still delivered and counted). Raises
    ProduceError with a one-line message on any Kafka failure; `security` (TLS, SASL)
    is applied as `burnrate run` applies it, and a broker refusing it is a ConfigError.
    """
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

    async with BatchPublisher(
        bootstrap_servers,
        topic,
        compression=compression,
        client_id="burnrate-produce",
        connect_timeout_s=connect_timeout_s,
        security=security,
    ) as publisher:
        return await _run(publisher, spec, fmt, batch, realtime, start_ts, progress, stop)


async def _run(
    publisher: BatchPublisher,
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
    in_flight: deque[Delivery] = deque()
    # Whole records per step, so a batched record never ends early except at the very end.
    slice_events = max(batch, _SLICE_EVENTS // batch * batch)
    started = time.monotonic()
    deadline_s = spec.duration_s + LATE_S  # elapsed wall time; inf for an endless run
    sent_up_to = 0  # index of the next event to send
    fell_behind = False

    try:
        while (total is None or sent_up_to < total) and not stop.is_set():
            if realtime:
                elapsed = time.monotonic() - started
                if elapsed >= deadline_s:
                    fell_behind = True  # the duration is over: what is unsent stays so
                    break
                due_up_to, _ = generator.index_range(elapsed, elapsed)
                if due_up_to <= sent_up_to:
                    next_due_s = sent_up_to / spec.rate_per_s
                    await _wait_or_stop(stop, max(_TICK_S, next_due_s - elapsed))
                    continue
                up_to = min(due_up_to, sent_up_to + slice_events)
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
            in_flight.append(await publisher.send(values))
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

    return ProduceSummary(
        topic=publisher.topic,
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
        stopped=not fell_behind and (total is None or sent_up_to < total),
        fell_behind=fell_behind,
    )
