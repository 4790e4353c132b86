"""Incidents in the evaluate role over real HTTP and a real store, without a broker.

Two workers' incident sides (engine.runtime.evaluate_incidents) share one store, as
evaluate workers share a PostgreSQL database (a SQLite file stands in: the sharing is
in-process here). Worker 1 owns the partition of service `a`; its page opens an
incident. Worker 2 lists it from the store and redirects an acknowledgement (307) to
worker 1, which acknowledges it in its book. The partition then moves to worker 2
(snapshot, pending incident writes flushed): worker 2 takes the open, acknowledged
incident back from the store, the alert resolves there and the quiet period closes the
same incident, once.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from engine.adapters.http.partitioned_metrics import PartitionedMetrics
from engine.adapters.http.partitions import OwnedPartitions, ServiceSlos
from engine.adapters.http.server import HttpServer
from engine.adapters.store.incidents_sqlite import SqliteIncidentStore
from engine.core.config import parse_config
from engine.errors import ConfigError
from engine.runtime.evaluate_incidents import WorkerIncidents, check_shared_store
from engine.runtime.partition_engine import PartitionEngine
from tests.unit.runtime.test_partition_engine import records, run

SLOS = ["a", "b"]
T_PAGE = 70
"""By record 70 the pages of `a` and `b` have fired (record 61)."""


CONFIG_TEXT = """\
slos:
  - {name: a, service: a, sli: availability, objective: 99, period: 1h}
  - {name: b, service: b, sli: availability, objective: 99, period: 1h,
     group_by: [region], max_groups: 2}
policy:
  - {severity: page, long: 5m, short: 1m, burn_rate: 4}
evaluation: {tick: 10s, allowed_lateness: 20s}
"""


class Worker:
    """One evaluate worker's HTTP and incidents over the engines it owns."""

    def __init__(self, cfg: Any, store: SqliteIncidentStore, owner: Callable[[], str]) -> None:
        self.engines: dict[int, PartitionEngine] = {}
        self.parts = OwnedPartitions(cfg, lambda slo: 0)
        metrics = PartitionedMetrics(self.parts, lambda: None)
        self.incidents = WorkerIncidents(
            cfg,
            lambda: self.engines,
            lambda slo: owner(),
            ServiceSlos(self.parts),
            lambda: self.server.url,
            metrics,
            store,
        )
        self.server = HttpServer(
            "127.0.0.1:0", metrics, lambda: None, partitions=self.parts, incidents=self.incidents
        )
        self.server.incidents.route_to = self.incidents.route_to

    async def take(self, engine: PartitionEngine) -> None:
        engine.incidents = self.incidents.recorder(engine)
        await engine.start()
        self.engines[0] = engine
        self.parts.owned[0] = (engine.evaluator, None)

    async def give(self) -> bytes:
        engine = self.engines.pop(0)
        del self.parts.owned[0]
        data = engine.snapshot()
        assert engine.incidents is not None
        assert await engine.incidents.written(5.0)
        await engine.close(1.0)
        return data


async def call(
    session: aiohttp.ClientSession, method: str, url: str, body: object = None
) -> tuple[int, Any, str]:
    async with session.request(method, url, json=body, allow_redirects=True) as resp:
        return resp.status, await resp.json(), str(resp.url)


@pytest.mark.asyncio
async def test_an_incident_is_acknowledged_at_its_owner_and_closed_after_a_move(
    tmp_path: Path,
) -> None:
    cfg = parse_config(CONFIG_TEXT + "incidents: {quiet_period: 10m}\n")
    store = SqliteIncidentStore(str(tmp_path / "incidents.db"))
    await store.start()
    owner = {"url": ""}
    one = Worker(cfg, store, lambda: owner["url"])
    two = Worker(cfg, store, lambda: owner["url"])
    await one.server.start()
    await two.server.start()
    values = records()
    try:
        owner["url"] = one.server.url
        await one.take(PartitionEngine(0, cfg, SLOS, []))
        run(one.engines[0], values[:T_PAGE], 0)
        recorder = one.engines[0].incidents
        assert recorder is not None
        assert await recorder.written(5.0)
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
            status, got, _ = await call(session, "GET", f"{two.server.url}/v1/incidents")
            assert status == 200
            by_service = {i["service"]: i for i in got["incidents"]}
            assert sorted(by_service) == ["a", "b"]
            inc = by_service["a"]
            assert inc["state"] == "open"
            path = f"/v1/incidents/{inc['id']}/acknowledge"
            async with session.post(
                two.server.url + path, json={"by": "alice"}, allow_redirects=False
            ) as resp:
                assert resp.status == 307
                assert resp.headers["Location"] == one.server.url + path
            status, acked, where = await call(
                session, "POST", two.server.url + path, {"by": "alice"}
            )
            assert (status, where) == (200, one.server.url + path)
            assert acked["acknowledged_by"] == "alice"
            book = recorder.book.get(inc["id"])
            assert book is not None
            assert book.acknowledged_by == "alice"
            status, pm, where = await call(
                session, "GET", f"{two.server.url}/v1/incidents/{inc['id']}/postmortem"
            )
            assert (status, where) == (200, f"{one.server.url}/v1/incidents/{inc['id']}/postmortem")
            assert pm["id"] == inc["id"]

            # the partition moves to worker two
            data = await one.give()
            owner["url"] = two.server.url
            moved = PartitionEngine(0, cfg, SLOS, [])
            assert moved.restore(data)
            await two.take(moved)
            taken = moved.incidents
            assert taken is not None
            assert sorted(i.id for i in taken.book.open_incidents()) == sorted(
                i["id"] for i in by_service.values()
            )
            run(moved, values, moved.offset)  # the alert resolves, an hour of heartbeats
            assert await taken.written(5.0)
            status, got, _ = await call(session, "GET", f"{one.server.url}/v1/incidents")
            assert len(got["incidents"]) == 2  # the same two, not reopened after the move
            closed = next(i for i in got["incidents"] if i["service"] == "a")
            assert (closed["id"], closed["state"]) == (inc["id"], "closed")
            assert all(i["state"] == "closed" for i in got["incidents"])
            assert closed["acknowledged_by"] == "alice"
            assert all(a["resolved_at"] is not None for a in closed["alerts"])
            # asked at its old owner, the acknowledgement of the closed incident (no
            # owner there now) follows to worker two, which answers it as it stands
            status, again, where = await call(session, "POST", one.server.url + path, {})
            assert (status, where) == (200, two.server.url + path)
            assert again["acknowledged_by"] == "alice"
    finally:
        for w in (one, two):
            for engine in w.engines.values():
                await engine.close(1.0)
            await w.server.stop()
        await store.close()


def test_a_file_store_is_refused_for_the_evaluate_role() -> None:
    with pytest.raises(ConfigError) as err:
        check_shared_store(parse_config(CONFIG_TEXT + "incidents: {quiet_period: 10m}\n"))
    assert "incidents.dsn" in str(err.value)
    check_shared_store(
        parse_config(
            CONFIG_TEXT + "incidents: {dsn: 'postgresql://burnrate@db.example/burnrate'}\n"
        )
    )
    check_shared_store(parse_config(CONFIG_TEXT))  # no incidents: nothing to share
