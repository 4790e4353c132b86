"""DeadLetters against a recording producer (no broker): each rejected record becomes
one send with its value, key, timestamp and four provenance headers; losing copies is
counted and logged, never raised."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from aiokafka.errors import KafkaError, KafkaTimeoutError
from aiokafka.structs import ConsumerRecord

from engine.adapters.kafka import dead_letters as dead_letters_module
from engine.adapters.kafka.dead_letters import DeadLetters


def record(
    offset: int,
    *,
    value: bytes | None = b'{"bad": true}',
    key: bytes | None = b"k",
    timestamp: int = 1_700_000_000_123,
    topic: str = "events",
    partition: int = 3,
) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord(
        topic=topic,
        partition=partition,
        offset=offset,
        timestamp=timestamp,
        timestamp_type=0,
        key=key,
        value=value,
        checksum=None,
        serialized_key_size=-1 if key is None else len(key),
        serialized_value_size=-1 if value is None else len(value),
        headers=(),
    )


class FakeProducer:
    """`send` records its arguments and returns a future settled as `outcome` says:
    "ok" (acknowledged), an exception (delivery failed), or "hang" (never settled).
    `refuse` makes `send` itself raise (e.g. the buffer is full)."""

    def __init__(self, outcome: Any = "ok", refuse: BaseException | None = None) -> None:
        self.sends: list[dict[str, Any]] = []
        self.outcome = outcome
        self.refuse = refuse

    async def send(self, topic: str, **kwargs: Any) -> asyncio.Future[Any]:
        if self.refuse is not None:
            raise self.refuse
        self.sends.append({"topic": topic, **kwargs})
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if self.outcome == "ok":
            future.set_result(None)
        elif isinstance(self.outcome, BaseException):
            future.set_exception(self.outcome)
        return future


def dlq(producer: FakeProducer | None) -> DeadLetters:
    dead = DeadLetters("events-dlq", {"bootstrap_servers": "unused:9092"})
    dead.producer = producer
    return dead


@pytest.mark.asyncio
async def test_each_record_is_sent_with_its_value_key_timestamp_and_provenance() -> None:
    producer = FakeProducer()
    dead = dlq(producer)
    await dead.send([(record(41), "undecodable"), (record(42, key=None), "invalid_event")])
    assert producer.sends == [
        {
            "topic": "events-dlq",
            "value": b'{"bad": true}',
            "key": b"k",
            "headers": [
                ("source_topic", b"events"),
                ("source_partition", b"3"),
                ("source_offset", b"41"),
                ("reason", b"undecodable"),
            ],
            "timestamp_ms": 1_700_000_000_123,
        },
        {
            "topic": "events-dlq",
            "value": b'{"bad": true}',
            "key": None,
            "headers": [
                ("source_topic", b"events"),
                ("source_partition", b"3"),
                ("source_offset", b"42"),
                ("reason", b"invalid_event"),
            ],
            "timestamp_ms": 1_700_000_000_123,
        },
    ]
    assert (dead.sent, dead.failures) == (2, 0)


@pytest.mark.asyncio
async def test_a_record_without_a_timestamp_is_sent_without_one() -> None:
    producer = FakeProducer()
    await dlq(producer).send([(record(0, timestamp=-1), "undecodable")])
    assert producer.sends[0]["timestamp_ms"] is None


@pytest.mark.asyncio
async def test_a_record_with_a_zero_timestamp_keeps_it() -> None:
    producer = FakeProducer()
    await dlq(producer).send([(record(0, timestamp=0), "undecodable")])
    assert producer.sends[0]["timestamp_ms"] == 0


@pytest.mark.asyncio
async def test_a_record_without_a_value_is_sent_with_an_empty_one() -> None:
    producer = FakeProducer()
    await dlq(producer).send([(record(0, value=None), "empty")])
    assert producer.sends[0]["value"] == b""


@pytest.mark.asyncio
async def test_binary_values_and_keys_are_copied_byte_for_byte() -> None:
    producer = FakeProducer()
    raw = bytes(range(256))
    await dlq(producer).send([(record(7, value=raw, key=b"\xff\x00"), "undecodable")])
    assert producer.sends[0]["value"] == raw
    assert producer.sends[0]["key"] == b"\xff\x00"


@pytest.mark.asyncio
async def test_sent_accumulates_over_batches() -> None:
    dead = dlq(FakeProducer())
    await dead.send([(record(1), "a")])
    await dead.send([(record(2), "b"), (record(3), "c")])
    assert (dead.sent, dead.failures) == (3, 0)


@pytest.mark.asyncio
async def test_nothing_to_send_or_no_producer_sends_nothing() -> None:
    producer = FakeProducer()
    dead = dlq(producer)
    await dead.send([])
    assert producer.sends == []
    idle = dlq(None)  # not started
    await idle.send([(record(1), "a")])
    assert (idle.sent, idle.failures) == (0, 0)
    assert (dead.sent, dead.failures) == (0, 0)


@pytest.mark.asyncio
@pytest.mark.parametrize("error", [KafkaError(), KafkaTimeoutError()])
async def test_a_failed_delivery_is_counted_and_logged_never_raised(
    error: KafkaError, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="burnrate")
    dead = dlq(FakeProducer(outcome=error))
    await dead.send([(record(1), "a"), (record(2), "b")])
    assert (dead.sent, dead.failures) == (0, 2)
    logged = [r for r in caplog.records if r.name == "burnrate.adapters.kafka.dead_letters"]
    assert len(logged) == 1
    assert logged[0].levelno == logging.ERROR
    assert "events-dlq" in logged[0].getMessage()
    assert "2 records" in logged[0].getMessage()


@pytest.mark.asyncio
async def test_a_send_refused_by_the_producer_is_counted_never_raised() -> None:
    dead = dlq(FakeProducer(refuse=KafkaTimeoutError()))
    await dead.send([(record(1), "a")])
    assert (dead.sent, dead.failures) == (0, 1)


@pytest.mark.asyncio
async def test_an_unacknowledged_batch_times_out_and_is_counted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(dead_letters_module, "DLQ_SEND_TIMEOUT_S", 0.01)
    dead = dlq(FakeProducer(outcome="hang"))
    await asyncio.wait_for(dead.send([(record(1), "a"), (record(2), "b")]), 5)
    assert (dead.sent, dead.failures) == (0, 2)


@pytest.mark.asyncio
async def test_after_a_failure_later_copies_are_still_sent() -> None:
    producer = FakeProducer(outcome=KafkaError())
    dead = dlq(producer)
    await dead.send([(record(1), "a")])
    producer.outcome = "ok"
    await dead.send([(record(2), "b")])
    assert (dead.sent, dead.failures) == (1, 1)
    assert [s["headers"][2] for s in producer.sends] == [
        ("source_offset", b"1"),
        ("source_offset", b"2"),
    ]
