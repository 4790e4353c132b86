"""Labelled events and grouped SLOs through the service (`Runtime`, what `burnrate run`
starts) against a real broker, over real HTTP, with a real signed-webhook receiver.

One SLO is grouped by the `region` label with `max_groups: 2`, so the first two regions
met get a group each and the later ones share `__other__`; another selects on a label
with `match_labels`. Checked from the outside: the `group` label in `/metrics`, one
`/v1/slos` view per group and `?group=` for one, a page per group delivered to the
webhook with its group and a `webhook-id` of its own, and records whose labels are over
the bounds rejected as `bad_value` and dead-lettered while the rest is counted. A
restart with a state file keeps each group in its column. What needs no broker is in
tests/unit/core/test_groups.py and tests/unit/adapters/http/test_groups.py.
"""

from __future__ import annotations

import asyncio
import math
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import msgspec
import pytest

from engine.adapters.alerts.signing import WebhookVerifier
from engine.adapters.kafka.embedded_broker import create_topic
from engine.core.config import OTHER_GROUP, Config, parse_config
from engine.core.decode import MAX_LABEL_BYTES, MAX_LABELS
from engine.runtime.service import Runtime
from tests.integration.test_api import strict_json
from tests.integration.test_restart_state import run_until, state_config
from tests.integration.test_run import Running, get, sample, samples, wait_ready
from tests.integration.test_sinks import Receiver, serve
from tests.integration.test_source import produce, read_dead_letters, wait_until
from tests.unit.adapters.alerts.factories import new_secret

SLO = "api-availability"
GOLD = "api-gold"
SECRET_ENV = "BURNRATE_TEST_GROUPS_WEBHOOK_SECRET"
GROUPED_SLOS = (
    f"  - {{name: {SLO}, service: api, sli: availability, objective: 99, period: 1d,"
    " group_by: [region], max_groups: 2}\n"
    f"  - {{name: {GOLD}, service: api, sli: availability, objective: 99, period: 1d,"
    " match_labels: {tier: gold}}\n"
)
EU, US = "region=eu", "region=us"


def grouped_config(bootstrap: str, topic: str, url: str, dlq: str) -> Config:
    return parse_config(
        "slos:\n"
        f"{GROUPED_SLOS}"
        "policy:\n"
        "  - {severity: page, long: 2m, short: 30s, burn_rate: 14.4}\n"
        "evaluation: {tick: 1s, allowed_lateness: 10s}\n"
        "kafka:\n"
        f"  bootstrap_servers: {bootstrap}\n"
        f"  topics: [{topic}]\n"
        f"  group_id: g-{uuid.uuid4().hex[:10]}\n"
        f"  dead_letter_topic: {dlq}\n"
        "http:\n"
        "  listen: 127.0.0.1:0\n"
        "receivers:\n"
        f"  - {{type: webhook, url: '{url}', secret_env: {SECRET_ENV}, timeout: 5s}}\n"
    )


def events(regions: list[tuple[str, int, int]], now: float) -> list[dict[str, Any]]:
    """`n` events of service api per (region, n, status), in this order and time order;
    the first 10 of region `us` also carry `tier: gold`. Up to 800 of them fall within
    one second, about 3 s ago (within an allowed lateness of 10 s): between two ticks of
    1 s, so the alerts they raise fire at the same tick."""
    out: list[dict[str, Any]] = []
    for region, n, status in regions:
        for k in range(n):
            labels = {"region": region}
            if region == "us" and k < 10:
                labels["tier"] = "gold"
            out.append({"service": "api", "status": status, "labels": labels})
    start = math.floor(now) - 3 + 0.1
    for i, ev in enumerate(out):
        ev["ts"] = start + i * 0.001
    return out


def group_counts(rt: Runtime, name: str) -> dict[str, tuple[int, int]]:
    """(events, bad events) per group in use of SLO `name`, read from the evaluator."""
    ev = rt.evaluator
    counts, used = ev.counts(), ev.column_in_use()
    return {
        str(ev.group_of(c)): (int(counts.events_total[c]), int(counts.bad_events_total[c]))
        for c, n in enumerate(ev.names)
        if n == name and used[c]
    }


# Records over the label bounds: each is rejected whole as `bad_value`.
OVERSIZE = [
    msgspec.json.encode(
        {"service": "api", "status": 200, "labels": {"region": "x" * (MAX_LABEL_BYTES + 1)}}
    ),
    msgspec.json.encode(
        {"service": "api", "status": 200, "labels": {"k" * (MAX_LABEL_BYTES + 1): "eu"}}
    ),
    # within 128 characters, over 128 bytes of UTF-8 (3 bytes each)
    msgspec.json.encode(
        {"service": "api", "status": 200, "labels": {"region": "€" * (MAX_LABEL_BYTES // 3 + 1)}}
    ),
    msgspec.json.encode(
        {
            "service": "api",
            "status": 200,
            "labels": {f"l{i}": "v" for i in range(MAX_LABELS + 1)},
        }
    ),
]


@pytest.mark.asyncio
async def test_groups_in_metrics_api_and_webhooks_and_oversize_labels_dead_lettered(
    kafka_bootstrap: str, unique_topic: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = new_secret()
    monkeypatch.setenv(SECRET_ENV, secret)
    dlq = f"{unique_topic}-dlq"
    await create_topic(kafka_bootstrap, dlq, 1)
    async with (
        serve(Receiver()) as receiver,
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http,
    ):
        rt = Runtime(grouped_config(kafka_bootstrap, unique_topic, receiver.url, dlq))
        running = Running(rt)
        try:
            await running.listening()
            await wait_ready(http, rt)
            await produce(kafka_bootstrap, unique_topic, OVERSIZE, partitions=1)
            # One record (an array), so one fetch: eu and us take the two groups, in this
            # order, ap and sa overflow; eu and __other__ fail and page at the same tick.
            good = events(
                [("eu", 200, 503), ("us", 200, 200), ("ap", 100, 503), ("sa", 100, 503)],
                time.time(),
            )
            await produce(kafka_bootstrap, unique_topic, [msgspec.json.encode(good)], partitions=1)
            await wait_until(
                lambda: sum(n for n, _ in group_counts(rt, SLO).values()) >= 600, "600 events"
            )
            await wait_until(lambda: rt.source.dead_lettered >= len(OVERSIZE), "dead letters")
            await receiver.wait_for(2, timeout_s=60)
            # /metrics is rendered per tick: wait for a body after the alerts fired
            end = time.monotonic() + 30
            while True:
                status, text = await get(http, f"{rt.http.url}/metrics")
                assert status == 200
                data = samples(text)
                key = (
                    "burnrate_alert_firing",
                    frozenset({("slo", SLO), ("group", OTHER_GROUP), ("severity", "page")}),
                )
                if data.get(key) == 1 or time.monotonic() > end:
                    break
                await asyncio.sleep(0.2)
            listing = strict_json((await get(http, f"{rt.http.url}/v1/slos"))[1].encode())
            one_status, one_body = await get(
                http, f"{rt.http.url}/v1/slos/{SLO}?group={quote(EU, safe='')}"
            )
            unknown = await get(http, f"{rt.http.url}/v1/slos/{SLO}?group=region%3Dmars")
            no_group = await get(http, f"{rt.http.url}/v1/slos/{SLO}")
            healthz = (await get(http, f"{rt.http.url}/healthz"))[0]
            assert not running.task.done(), "the service stopped"
        finally:
            await running.shutdown()
        requests = list(receiver.requests)
    dead = await read_dead_letters(kafka_bootstrap, dlq, len(OVERSIZE))

    # counted per group, in first-seen order, the third region on into __other__
    assert group_counts(rt, SLO) == {EU: (200, 200), US: (200, 0), OTHER_GROUP: (200, 200)}
    assert healthz == 200

    # /metrics: a `group` label on every series of the grouped SLO, none on the other
    for group, (total, bad) in {EU: (200, 200), US: (200, 0), OTHER_GROUP: (200, 200)}.items():
        assert sample(data, "burnrate_slo_events_total", slo=SLO, group=group) == total
        assert sample(data, "burnrate_slo_bad_events_total", slo=SLO, group=group) == bad
        firing = sample(data, "burnrate_alert_firing", slo=SLO, group=group, severity="page")
        assert firing == (1 if bad else 0)
        assert sample(data, "burnrate_slo_burn_rate", slo=SLO, group=group, window="2m") == (
            pytest.approx(100 if bad else 0)
        )
    series_groups = {
        slo: {dict(labels).get("group") for _, labels in data if dict(labels).get("slo") == slo}
        for slo in (SLO, GOLD)
    }
    assert series_groups == {SLO: {EU, US, OTHER_GROUP}, GOLD: {None}}
    # match_labels: only the 10 events with tier=gold
    assert sample(data, "burnrate_slo_events_total", slo=GOLD) == 10
    assert sample(data, "burnrate_slo_bad_events_total", slo=GOLD) == 0
    assert sample(data, "burnrate_records_rejected_total", reason="bad_value") == len(OVERSIZE)

    # /v1/slos: one view per group, each named by `group`; the ungrouped SLO has none
    views = {v["group"]: v for v in listing["slos"] if v["name"] == SLO}
    assert sorted(views) == sorted([EU, US, OTHER_GROUP])
    assert {g: (v["events_total"], v["bad_events_total"]) for g, v in views.items()} == {
        EU: (200, 200),
        US: (200, 0),
        OTHER_GROUP: (200, 200),
    }
    assert views[EU]["alerts"]["page"]["firing"] is True
    assert views[US]["alerts"]["page"]["firing"] is False
    [gold] = [v for v in listing["slos"] if v["name"] == GOLD]
    assert "group" not in gold
    assert gold["events_total"] == 10
    assert one_status == 200
    one = strict_json(one_body.encode())
    assert (one["name"], one["group"], one["events_total"]) == (SLO, EU, 200)
    assert one["alerts"]["page"]["firing"] is True
    assert unknown[0] == 404
    assert strict_json(unknown[1].encode()) == {
        "error": "no group of that name",
        "slo": SLO,
    }
    assert no_group[0] == 400
    assert f"({OTHER_GROUP}, {EU}, {US})" in strict_json(no_group[1].encode())["error"]

    # webhooks: one signed message per group that pages, each with its group
    ids = [req.headers["webhook-id"] for req in requests]
    assert len(set(ids)) == len(ids) == 2, ids  # a message per group, each its own id
    verifier = WebhookVerifier([secret])
    by_group = {}
    for req in requests:
        verifier.verify(req.headers, req.body, now_s=time.time())
        body = req.json()
        assert body["status"] == "firing"
        [alert] = body["alerts"]
        assert alert["labels"]["slo"] == SLO
        assert alert["labels"]["severity"] == "page"
        by_group[alert["labels"]["group"]] = (req.headers["webhook-id"], alert)
    assert sorted(by_group) == sorted([EU, OTHER_GROUP])
    (eu_id, eu_alert), (other_id, other_alert) = by_group[EU], by_group[OTHER_GROUP]
    assert eu_alert["generatorURL"].endswith(f"/v1/slos/{SLO}?group=region%3Deu")
    assert eu_alert["fingerprint"] != other_alert["fingerprint"]
    # the same SLO, severity, state and tick: only the group tells the two ids apart
    assert eu_alert["startsAt"] == other_alert["startsAt"]
    assert eu_id != other_id

    # every oversize record dead-lettered with its reason, as produced
    assert sorted(rec.value for rec in dead) == sorted(OVERSIZE)
    assert {dict(rec.headers)["reason"] for rec in dead} == {b"bad_value"}


@pytest.mark.asyncio
async def test_groups_keep_their_columns_across_a_restart_with_a_state_file(
    kafka_bootstrap: str, unique_topic: str, tmp_path: Path
) -> None:
    """eu and us take the two groups before the restart. After it, ap comes first: a
    fresh start would give it eu's column and send eu to __other__; restored, eu and us
    keep theirs (and their counts) and ap overflows."""
    path = tmp_path / "burnrate.state"
    cfg = state_config(
        kafka_bootstrap, unique_topic, f"g-{uuid.uuid4().hex[:10]}", path, slos=GROUPED_SLOS
    )
    first_events = events([("eu", 100, 503), ("us", 50, 200)], time.time())
    await produce(kafka_bootstrap, unique_topic, [msgspec.json.encode(first_events)], partitions=1)
    first = await run_until(cfg, 100)  # column 0: the first group met
    assert group_counts(first, SLO) == {EU: (100, 100), US: (50, 0), OTHER_GROUP: (0, 0)}
    columns = {first.evaluator.group_of(c): c for c in range(3)}
    assert columns == {EU: 0, US: 1, OTHER_GROUP: 2}

    later = events([("ap", 30, 503), ("us", 20, 200), ("eu", 40, 200)], time.time())
    await produce(kafka_bootstrap, unique_topic, [msgspec.json.encode(later)], partitions=1)
    second = await run_until(cfg, 140)
    assert second.restored is True
    assert {second.evaluator.group_of(c): c for c in range(3)} == columns
    assert group_counts(second, SLO) == {EU: (140, 100), US: (70, 0), OTHER_GROUP: (30, 30)}
