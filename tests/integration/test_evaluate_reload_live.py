"""Config reload of `burnrate run --role evaluate` workers, live on Apache Kafka.

Two worker processes count deltas; the config file then loses one SLO and gains one of
an existing service. Worker a reloads through `POST /-/reload`, worker b through
SIGHUP. Afterwards each SLO is served by exactly one worker with exact counts: the kept
ones with their counts from before, the new one from the reload on, the removed one
nowhere. A worker killed with SIGKILL and started again restores the new config's
snapshots and counts on exactly. A file that does not check is refused with its
`$.path` errors and the workers keep counting.
"""

from __future__ import annotations

import signal
from typing import Any

import aiohttp
import pytest

from engine.core.config import parse_config
from engine.core.deltas import partition_keys
from tests.integration.alertmanager import eventually
from tests.integration.http_receiver import Receiver
from tests.integration.test_evaluate_role import SLOS, T0, Cluster, apache_kafka, cluster

__all__ = ["apache_kafka", "cluster"]  # the fixtures, shared with test_evaluate_role

pytestmark = [pytest.mark.kafka_txn, pytest.mark.slow, pytest.mark.asyncio]

REMOVED = SLOS[-1]
ADDED = "s-new"


async def post_reload(url: str) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session,
        session.post(url + "/-/reload") as resp,
    ):
        return resp.status, await resp.json()


async def reloads_ok(c: Cluster, name: str) -> float:
    series = (await c.metrics()).get(name, {})
    return series.get('burnrate_config_reloads_total{result="ok"}', 0.0)


async def test_workers_reload_by_http_and_sighup_and_count_on_exactly(
    cluster: tuple[Cluster, Receiver],
) -> None:
    c, _ = cluster
    c.start("a")
    c.start("b")
    await eventually(lambda: c.ready(["a", "b"]), timeout_s=120, what="both workers ready")
    async with c.producer() as producer:
        for k in range(20):
            await c.send(producer, {slo: (10, k % 3) for slo in SLOS}, T0 + 10 * k)
        await eventually(c.counts_match, timeout_s=120, what="exact counts before the reload")

        text = c.config_path.read_text()
        bad = text.replace("objective: 99", "objective: 101", 1)
        c.config_path.write_text(bad)
        url_a = c.workers["a"][1]
        status, body = await post_reload(url_a)
        assert status == 400
        assert any(e.startswith("$.slos[0].objective") for e in body["errors"]), body

        new = text.replace(
            f"  - {{name: {REMOVED}, service: svc{len(SLOS) - 1},",
            f"  - {{name: {ADDED}, service: svc0,",
        )
        assert new != text
        c.config_path.write_text(new)
        status, outcome = await post_reload(url_a)
        assert (status, outcome["result"]) == (200, "ok"), outcome
        # over a's partitions only: at most the SLO added and the one removed
        assert set(outcome.get("added", [])) <= {ADDED}  # empty lists are left out
        assert set(outcome.get("removed", [])) <= {REMOVED}
        c.workers["b"][0].send_signal(signal.SIGHUP)
        await eventually(lambda: _ok(c, "b"), timeout_s=60, what="b reloaded on SIGHUP")
        assert await reloads_ok(c, "a") == 1.0
        c.config = parse_config(new.encode())
        c.keys = partition_keys(c.config)
        assert c.keys[ADDED] == c.keys["s0"]  # one service, one partition
        del c.expected[REMOVED]
        c.expected[ADDED] = [0, 0]
        live = [s for s in SLOS if s != REMOVED] + [ADDED]
        for k in range(20, 40):
            await c.send(producer, {slo: (10, k % 3) for slo in live}, T0 + 10 * k)
        await eventually(c.counts_match, timeout_s=120, what="exact counts after the reload")

        c.stop("a", signal.SIGKILL)
        await eventually(c.counts_match, timeout_s=120, what="b alone, from a's new snapshots")
        c.start("a2")
        await eventually(lambda: c.ready(["a2"]), timeout_s=120, what="a2 ready")
        for k in range(40, 50):
            await c.send(producer, {slo: (10, 1) for slo in live}, T0 + 10 * k)
        await eventually(c.counts_match, timeout_s=120, what="exact counts after kill -9")


async def _ok(c: Cluster, name: str) -> bool:
    return await reloads_ok(c, name) == 1.0
