"""BatchPublisher without a broker: compression choice, packing and round-robin over
partitions, delivery errors and start failures as one-line ProduceErrors.

aiokafka's producer is replaced by a fake; the real one is tested against a broker in
tests/integration/test_produce.py.
"""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

import pytest
from aiokafka import codec
from aiokafka.errors import KafkaConnectionError, KafkaTimeoutError, UnknownTopicOrPartitionError

from engine.adapters.kafka.producer import (
    BatchPublisher,
    ProduceError,
    compression_type,
)


class FakeBuilder:
    """Holds up to `size` records, like a record batch holds up to its byte size."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.values: list[bytes] = []

    def append(self, *, key: bytes | None, value: bytes, timestamp: int | None) -> object | None:
        if len(self.values) == self.size:
            return None
        self.values.append(value)
        return object()

    def record_count(self) -> int:
        return len(self.values)


class FakeProducer:
    instances: ClassVar[list[FakeProducer]] = []
    batch_size: ClassVar[int] = 2
    partitions: ClassVar[set[int] | None] = {2, 0, 1}
    start_error: ClassVar[BaseException | None] = None

    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = kwargs
        self.sent: list[tuple[int, list[bytes]]] = []
        self.futures: list[asyncio.Future[None]] = []
        self.started = self.stopped = False
        type(self).instances.append(self)

    async def start(self) -> None:
        if self.start_error is not None:
            raise self.start_error
        self.started = True

    async def stop(self) -> None:
        self.stopped = True

    async def partitions_for(self, topic: str) -> set[int]:
        if self.partitions is None:
            raise UnknownTopicOrPartitionError()
        return self.partitions

    def create_batch(self) -> FakeBuilder:
        return FakeBuilder(self.batch_size)

    async def send_batch(
        self, builder: FakeBuilder, topic: str, *, partition: int
    ) -> asyncio.Future[None]:
        self.sent.append((partition, builder.values))
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.futures.append(future)
        return future


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> type[FakeProducer]:
    class Fake(FakeProducer):
        """A class of its own per test, so settings and instances do not leak."""

        instances: ClassVar[list[FakeProducer]] = []

    monkeypatch.setattr("aiokafka.AIOKafkaProducer", Fake)
    return Fake


def test_compression_none_is_no_codec_and_auto_picks_a_cheap_one_or_none() -> None:
    assert compression_type("none") is None
    assert compression_type("auto") in {"lz4", "zstd", None}


def test_auto_compression_falls_back_to_none_without_lz4_and_zstd(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(codec, "has_lz4", lambda: False)
    monkeypatch.setattr(codec, "has_zstd", lambda: False)
    assert compression_type("auto") is None


def test_a_missing_codec_is_a_one_line_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(codec, "has_snappy", lambda: False)
    with pytest.raises(ProduceError, match=r"^compression snappy needs the cramjam package"):
        compression_type("snappy")


@pytest.mark.asyncio
async def test_values_are_packed_into_batches_sent_round_robin_over_sorted_partitions(
    fake: type[FakeProducer],
) -> None:
    async with BatchPublisher("h:1", "t", compression="none", client_id="me") as pub:
        assert pub.partitions == (0, 1, 2)
        first = await pub.send([b"a", b"b", b"c"])
        second = await pub.send([b"d", b"e"])
        (producer,) = fake.instances
        assert producer.sent == [(0, [b"a", b"b"]), (1, [b"c"]), (2, [b"d", b"e"])]
        assert producer.kwargs["client_id"] == "me"
        assert producer.kwargs["compression_type"] is None
        for future in producer.futures:
            future.set_result(None)
        await first
        await second
    assert producer.stopped


@pytest.mark.asyncio
async def test_a_failed_delivery_is_a_one_line_error_naming_the_topic(
    fake: type[FakeProducer],
) -> None:
    async with BatchPublisher("h:1", "events") as pub:
        delivery = await pub.send([b"a"])
        fake.instances[0].futures[0].set_exception(KafkaTimeoutError("no ack\nin time"))
        with pytest.raises(ProduceError, match=r"^sending to 'events' failed: ") as info:
            await delivery
        assert str(info.value) == "sending to 'events' failed: KafkaTimeoutError: no ack in time"


@pytest.mark.asyncio
async def test_a_cancelled_delivery_leaves_no_unread_outcome(fake: type[FakeProducer]) -> None:
    async with BatchPublisher("h:1", "t") as pub:
        delivery = await pub.send([b"a"])
        delivery.cancel()
        await asyncio.sleep(0)
        assert all(f.cancelled() for f in fake.instances[0].futures)


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("error", "message"),
    [
        pytest.param(
            KafkaConnectionError(),
            r"^cannot connect to Kafka at h:1: no broker answered",
            id="down",
        ),
        pytest.param(
            ValueError("bad\nport"), r"^bad bootstrap servers 'h:1': ValueError: bad port"
        ),
    ],
)
async def test_a_failed_start_is_a_one_line_error_and_stops_the_producer(
    fake: type[FakeProducer], error: BaseException, message: str
) -> None:
    fake.start_error = error
    pub = BatchPublisher("h:1", "t")
    with pytest.raises(ProduceError, match=message):
        await pub.start()
    assert fake.instances[0].stopped
    with pytest.raises(RuntimeError, match="not started"):
        await pub.send([b"a"])


@pytest.mark.asyncio
async def test_a_missing_topic_names_it_and_suggests_creating_it(fake: type[FakeProducer]) -> None:
    fake.partitions = None
    with pytest.raises(ProduceError, match=r"topic 't' is not available on h:1 .*--create-topic"):
        async with BatchPublisher("h:1", "t"):
            pass  # pragma: no cover
    assert fake.instances[0].stopped
