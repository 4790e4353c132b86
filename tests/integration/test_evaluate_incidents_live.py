"""Incidents in the evaluate role, live: two `burnrate run --role evaluate` processes on
Apache Kafka sharing a real PostgreSQL incident store.

A service fails: its page opens an incident at the worker owning the service's
partition. Asked at the other worker, the incident is listed (the shared store) and its
acknowledgement is redirected to the owner. The owner is then killed with SIGKILL; the
worker left takes the partition over from its changelog snapshot and the open,
acknowledged incident from the store; the service recovers, the alert resolves there
and the quiet period closes that same incident, the only one of the service.
"""

from __future__ import annotations

import signal
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from psycopg.conninfo import conninfo_to_dict

from engine.core.config import parse_config
from tests.integration.alertmanager import eventually
from tests.integration.http_receiver import Receiver, serve
from tests.integration.postgres_server import fresh_database, postgres_server
from tests.integration.test_evaluate_role import SLOS, T0, Cluster, _config_text, apache_kafka

__all__ = ["apache_kafka"]  # the fixture, shared with test_evaluate_role

pytestmark = [pytest.mark.kafka_txn, pytest.mark.slow, pytest.mark.asyncio]

FAILING = SLOS[0]
SERVICE = "svc0"


@pytest.fixture(scope="module")
def postgres() -> Iterator[str]:
    with postgres_server() as dsn:
        yield dsn


@pytest_asyncio.fixture
async def cluster(apache_kafka: str, postgres: str, tmp_path: Path) -> AsyncIterator[Cluster]:
    with fresh_database(postgres) as dsn:
        url = "postgresql://burnrate@{host}:{port}/{dbname}".format(**conninfo_to_dict(dsn))
        async with serve(Receiver()) as receiver:
            suffix = uuid.uuid4().hex[:10]
            text = _config_text(apache_kafka, receiver.url, suffix) + (
                f"incidents: {{dsn: '{url}', quiet_period: 1m}}\n"
            )
            path = tmp_path / "burnrate.yaml"
            path.write_text(text)
            c = Cluster(apache_kafka, path, parse_config(text.encode()), tmp_path)
            try:
                yield c
            finally:
                c.close()


async def incidents_at(session: aiohttp.ClientSession, url: str) -> list[dict[str, Any]]:
    async with session.get(f"{url}/v1/incidents?service={SERVICE}") as resp:
        assert resp.status == 200, await resp.text()
        found: list[dict[str, Any]] = (await resp.json())["incidents"]
        return found


async def test_an_incident_outlives_its_owner_and_closes_at_the_next(cluster: Cluster) -> None:
    c = cluster
    c.start("a")
    c.start("b")
    await eventually(lambda: c.ready(["a", "b"]), timeout_s=120, what="both workers ready")
    t = T0
    async with c.producer() as producer:
        for _ in range(18):  # 3 minutes of half the requests failing: the page fires
            await c.send(producer, {FAILING: (100, 50)}, t)
            t += 10
    urls = {name: url for name, (_, url) in c.workers.items()}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        found: list[dict[str, Any]] = []

        async def opened() -> bool:
            found[:] = await incidents_at(session, urls["a"])
            return bool(found)

        await eventually(opened, timeout_s=120, what="an incident listed at a")
        [inc] = found
        assert inc["state"] == "open"
        assert await incidents_at(session, urls["b"]) == found  # one store

        # who owns the service: the worker that answers the postmortem itself, once the
        # other has read the owner records (every 10 s) and redirects there
        answers: dict[str, int] = {}

        async def one_owner() -> bool:
            for name, url in urls.items():
                path = f"/v1/incidents/{inc['id']}/postmortem"
                async with session.get(url + path, allow_redirects=False) as resp:
                    answers[name] = resp.status
            return sorted(answers.values()) == [200, 307]

        await eventually(one_owner, timeout_s=60, what="an owner and a redirect to it")
        owner = next(n for n, status in answers.items() if status == 200)
        other = next(n for n in urls if n != owner)
        ack = f"/v1/incidents/{inc['id']}/acknowledge"
        async with session.post(urls[other] + ack, json={"by": "alice"}) as resp:
            assert resp.status == 200, await resp.text()
            assert str(resp.url) == urls[owner] + ack  # followed the 307
            assert (await resp.json())["acknowledged_by"] == "alice"

        c.stop(owner, signal.SIGKILL)
        await eventually(lambda: c.counts_match(), timeout_s=120, what=f"{other} owns every SLO")
        async with c.producer() as producer:
            for _ in range(60):  # 10 minutes recovered: resolved, then a quiet minute
                await c.send(producer, {FAILING: (100, 0)}, t)
                t += 10

        async def closed() -> bool:
            found[:] = await incidents_at(session, urls[other])
            return bool(found) and all(i["state"] == "closed" for i in found)

        await eventually(closed, timeout_s=120, what=f"the incident closed by {other}")
        [done] = found
        assert done["id"] == inc["id"]
        assert done["acknowledged_by"] == "alice"
        assert done["alerts"]
        assert all(a["resolved_at"] is not None for a in done["alerts"])
