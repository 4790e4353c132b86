"""The changes topic's consumer without a broker: what a fetch of records does (the
broker round trip is in tests/integration/test_changes_live.py)."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

import pytest

from engine.adapters.kafka.changes import REJECT_REASON, ChangeConsumer
from engine.core.changes import ChangeLog
from engine.core.config import parse_config
from engine.core.evaluator import Evaluator

NOW = 1_800_000_000.0
CONFIG = """\
slos:
  - {name: shop-avail, service: shop, sli: availability, objective: 99}
kafka: {changes_topic: changes}
"""


@dataclass
class Record:
    value: bytes | None
    timestamp: int = int((NOW - 30) * 1000)
    topic: str = "changes"
    partition: int = 0
    offset: int = 0


class FakeConsumer:
    def __init__(self) -> None:
        self.commits = 0

    async def commit(self) -> None:
        self.commits += 1


def consumer() -> tuple[ChangeConsumer, list[str], FakeConsumer]:
    cfg = parse_config(CONFIG)
    ev = Evaluator(cfg)
    events: list[str] = []

    async def saved() -> None:
        events.append("saved")

    c = ChangeConsumer(cfg, ev, ChangeLog(3600, 10), on_change=saved, clock=lambda: NOW)
    fake = FakeConsumer()
    c._consumer = fake
    return c, events, fake


def change(**fields: Any) -> bytes:
    return json.dumps({"service": "shop", "kind": "deploy", **fields}).encode()


@pytest.mark.asyncio
async def test_good_records_are_kept_saved_then_committed_bad_ones_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    c, events, fake = consumer()
    records = [
        Record(change(version="1")),
        Record(b"{", offset=1),
        Record(None, offset=2),
        Record(change(service="nope"), offset=3),
        Record(change(version="2", at=NOW - 100), offset=4),
    ]
    with caplog.at_level(logging.WARNING, logger="burnrate.adapters.kafka.changes"):
        await c.apply(records)
    assert (c.consumed, c.added, c.rejected) == (5, 2, 3)
    assert c.evaluator.rejected_counts() == {REJECT_REASON: 3}
    assert events == ["saved"]
    assert fake.commits == 1
    assert len(caplog.records) == 1  # the first rejection; then one in 100
    kept = {ch.version: ch for ch in c.changes.changes()}
    assert kept["1"].at_s == NOW - 30  # the record's timestamp
    assert kept["2"].at_s == NOW - 100
    assert {ch.source for ch in kept.values()} == {"kafka"}


@pytest.mark.asyncio
async def test_a_record_read_again_is_kept_once_and_saves_nothing() -> None:
    c, events, fake = consumer()
    await c.apply([Record(change(version="1"))])
    await c.apply([Record(change(version="1"))])
    assert len(c.changes) == 1
    assert events == ["saved"]
    assert fake.commits == 2


def test_a_consumer_needs_a_topic() -> None:
    cfg = parse_config("slos:\n  - {name: a, service: s, sli: availability, objective: 99}\n")
    with pytest.raises(ValueError, match="changes_topic"):
        ChangeConsumer(cfg, Evaluator(cfg), ChangeLog(3600, 10))
