"""Changes live, against a real broker: a deploy posted before an outage is charged with
the budget the outage burnt, the page that fires names it, and both survive a restart
through the state file; change records on the changes topic are read by the running
engine, bad ones counted and never fatal."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from engine.adapters.kafka.embedded_broker import create_topic
from engine.core.config import Config, parse_config
from engine.core.evaluator import Transition
from engine.runtime.service import Runtime
from tests.integration.live import get_json, post_json
from tests.integration.test_run import Running
from tests.integration.test_source import produce, wait_until


def config(bootstrap: str, topic: str, state: Path, changes_topic: str | None = None) -> Config:
    changes = f", changes_topic: {changes_topic}" if changes_topic else ""
    return parse_config(
        "slos:\n"
        "  - {name: shop-avail, service: shop, sli: availability, objective: 99}\n"
        f"kafka: {{bootstrap_servers: '{bootstrap}', topics: [{topic}],"
        f" group_id: g-{uuid.uuid4().hex[:10]}{changes}}}\n"
        "http: {listen: 127.0.0.1:0}\n"
        "evaluation: {allowed_lateness: 5s}\n"
        f"state: {{path: '{state}', interval: 1h}}\n"
    )


def shop(ts: float, status: int) -> bytes:
    return json.dumps({"service": "shop", "ts": ts, "status": status}).encode()


@pytest.mark.asyncio
async def test_a_change_before_an_outage_carries_the_budget_the_outage_burnt(
    kafka_bootstrap: str, unique_topic: str, tmp_path: Path
) -> None:
    cfg = config(kafka_bootstrap, unique_topic, tmp_path / "burnrate.state")
    start = time.time()
    await produce(
        kafka_bootstrap, unique_topic, [shop(start - 120 + i * 0.2, 200) for i in range(100)]
    )
    rt = Runtime(cfg, listen="127.0.0.1:0", sinks=[])
    fired: list[Transition] = []
    rt.subscribe(lambda trs: fired.extend(tr for tr in trs if tr.state == "firing"))
    running = Running(rt)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        try:
            await running.listening()
            url = rt.http.url
            await wait_until(
                lambda: (
                    rt.evaluator.counts().events_total.sum() == 100
                    and (rt.evaluator.evaluated_at_s or 0) > start - 100
                ),
                "the good traffic evaluated",
            )
            body = {"service": "shop", "kind": "deploy", "version": "4.2.1"}
            change = await post_json(session, f"{url}/v1/changes", body)
            assert change["at"] == pytest.approx(rt.evaluator.watermark_s, abs=5)
            # the outage: 30 of 50 requests fail, all after the deploy
            outage = max(time.time(), change["at"] + 10)
            await produce(
                kafka_bootstrap,
                unique_topic,
                [shop(outage + i * 0.1, 500 if i < 30 else 200) for i in range(50)],
            )
            await wait_until(lambda: any(tr.severity == "page" for tr in fired), "a page")
            (page,) = [tr for tr in fired if tr.severity == "page"]
            (note,) = page.changes
            assert (note.kind, note.version, note.at) == ("deploy", "4.2.1", change["at"])
            assert note.error_budget_consumed_ratio is not None
            assert note.error_budget_consumed_ratio > 0

            def outage_evaluated() -> bool:
                return (rt.evaluator.evaluated_at_s or 0) >= outage + 5

            await wait_until(outage_evaluated, "the whole outage evaluated")
            listed = await get_json(session, f"{url}/v1/changes?service=shop")
            (got,) = listed["changes"]
            (share,) = got["slos"]
            assert (share["slo"], share["events"], share["bad_events"]) == ("shop-avail", 50, 30)
            # 30 bad events / (1% of the 150 events of the period) = 20 budgets
            assert share["error_budget_consumed_ratio"] == pytest.approx(20.0)
            assert got["complete"] is False  # the 1h window is still open
            text = rt.metrics.render().decode()
            families = {f.name: f for f in text_string_to_metric_families(text)}
            assert [(s.labels, s.value) for s in families["burnrate_changes"].samples] == [
                ({"service": "shop", "kind": "deploy"}, 1.0)
            ]
            await wait_until(lambda: rt.state_saves >= 1, "the state saved after the change")
        finally:
            await running.shutdown()

        again = Runtime(cfg, listen="127.0.0.1:0", sinks=[])
        running = Running(again)
        try:
            await running.listening()
            await wait_until(again.started.is_set, "the engine started again")
            assert again.restored
            listed = await get_json(session, f"{again.http.url}/v1/changes")
            (kept,) = listed["changes"]
            assert kept["id"] == got["id"]
            assert kept["slos"][0]["bad_events"] == 30
        finally:
            await running.shutdown()


@pytest.mark.asyncio
async def test_change_records_on_the_topic_are_read_and_bad_ones_counted(
    kafka_bootstrap: str, unique_topic: str, tmp_path: Path
) -> None:
    changes_topic = f"{unique_topic}-changes"
    await create_topic(kafka_bootstrap, changes_topic, 1)
    cfg = config(kafka_bootstrap, unique_topic, tmp_path / "burnrate.state", changes_topic)
    now = time.time()
    await produce(kafka_bootstrap, unique_topic, [shop(now - 30, 200)])
    records = [
        json.dumps({"service": "shop", "kind": "deploy", "version": "7"}).encode(),
        b"{not json",
        json.dumps({"service": "nope", "kind": "deploy"}).encode(),
        json.dumps({"service": "shop", "kind": "flag", "at": now - 20}).encode(),
    ]
    await produce(kafka_bootstrap, changes_topic, records, partitions=1)
    rt = Runtime(cfg, listen="127.0.0.1:0", sinks=[])
    running = Running(rt)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        try:
            await running.listening()
            consumer = rt.change_consumer
            assert consumer is not None
            await wait_until(lambda: consumer.consumed == 4, "the change records read")
            assert (consumer.added, consumer.rejected) == (2, 2)
            assert rt.evaluator.rejected_counts()["invalid_change"] == 2
            listed = await get_json(session, f"{rt.http.url}/v1/changes?service=shop")
            got = {c["kind"]: c for c in listed["changes"]}
            assert set(got) == {"deploy", "flag"}
            assert got["deploy"]["source"] == "kafka"
            assert got["deploy"]["version"] == "7"
            # without `at`: the record's timestamp, when the pipeline sent it
            assert now - 5 < got["deploy"]["at"] < time.time() + 1
            assert got["flag"]["at"] == now - 20
            await wait_until(lambda: rt.state_saves >= 1, "the state saved after the changes")
        finally:
            await running.shutdown()

        # read again from the committed offsets: nothing new, nothing twice
        again = Runtime(cfg, listen="127.0.0.1:0", sinks=[])
        running = Running(again)
        try:
            await running.listening()
            await wait_until(again.started.is_set, "the engine started again")
            listed = await get_json(session, f"{again.http.url}/v1/changes")
            assert len(listed["changes"]) == 2
            reader = again.change_consumer
            assert reader is not None
            await wait_until(lambda: reader.assigned() == 1, "the changes topic assigned")
            fetches = reader.fetches
            await wait_until(lambda: reader.fetches >= fetches + 3, "fetches from the topic")
            assert reader.consumed == 0
        finally:
            await running.shutdown()


@pytest.mark.asyncio
async def test_a_stop_while_the_changes_consumer_joins_its_group_is_clean(
    kafka_bootstrap: str, unique_topic: str, tmp_path: Path
) -> None:
    """Stopped at once: the join is abandoned and its connections closed (a leak would
    fail the run: unclosed sockets are errors here)."""
    changes_topic = f"{unique_topic}-changes"
    await create_topic(kafka_bootstrap, changes_topic, 1)
    cfg = config(kafka_bootstrap, unique_topic, tmp_path / "burnrate.state", changes_topic)
    rt = Runtime(cfg, listen="127.0.0.1:0", sinks=[])
    running = Running(rt)
    await running.listening()
    await wait_until(rt.started.is_set, "the engine started")
    assert await running.shutdown() < 10
    assert rt.change_consumer is not None
    assert rt.change_consumer.assigned() == 0
