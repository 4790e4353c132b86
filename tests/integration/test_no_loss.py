"""Nothing is lost across restarts: `burnrate run` as a real process against a real broker
and a real HTTP receiver, stopped with SIGKILL or SIGTERM.

- Counts: with `state:`, the group's committed offsets never pass what a written
  snapshot holds, so a kill -9 before the first snapshot, or after one with more
  events counted since, is followed by a restart that counts exactly what was
  produced: nothing lost, nothing twice.
- Alerts: a page that fires while its receiver is down and is still undelivered at
  SIGTERM is kept in the state file and delivered after the restart, then its resolve,
  in that order, with the same webhook-id and labels as the attempts before; to
  PagerDuty, the same trigger event, then a resolve under its dedup_key.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from engine.adapters.kafka.embedded_broker import create_topic
from engine.adapters.store.state import FileStateStore
from engine.core import snapshot
from engine.core.config import parse_config
from engine.core.evaluator import Evaluator
from tests.integration.http_receiver import Received, Receiver, Reply, serve
from tests.integration.pagerduty import PagerDuty
from tests.integration.test_restart_state import committed_offsets
from tests.integration.test_run import sample, samples
from tests.integration.test_signals import STARTUP_DEADLINE_S, Service, assert_stopped_cleanly
from tests.integration.test_source import (
    PARTITIONS,
    encode,
    expected,
    produce,
    records_for,
)

SLO = "checkout-availability"
LATENCY_SLO = "checkout-latency"
COMMIT_INTERVAL_S = 5.0
PD_ROUTING_KEY = "R0UTINGKEY0123456789abcdefABCDEF"
"""engine.runtime.checkpoint.COMMIT_INTERVAL_S: how often the engine commits offsets."""


def counting_config(path: Path, bootstrap: str, topic: str, group: str, state: Path) -> Path:
    path.write_text(
        "slos:\n"
        f"  - {{name: {SLO}, service: checkout, sli: availability, objective: 99}}\n"
        f"  - {{name: {LATENCY_SLO}, service: checkout, sli: latency, threshold_ms: 300,"
        " objective: 99}\n"
        "kafka:\n"
        f"  bootstrap_servers: {bootstrap}\n"
        f"  topics: [{topic}]\n"
        f"  group_id: {group}\n"
        "http:\n"
        "  listen: 127.0.0.1:0\n"
        "state:\n"
        f"  path: {state}\n"
        "  interval: 20s\n"
    )
    return path


async def metric_counts(session: aiohttp.ClientSession, url: str) -> tuple[int, int, int, int]:
    """(availability total, bad, latency total, bad) as /metrics shows them now."""
    async with session.get(f"{url}/metrics") as resp:
        data = samples(await resp.text())
    return (
        int(sample(data, "burnrate_slo_events_total", slo=SLO)),
        int(sample(data, "burnrate_slo_bad_events_total", slo=SLO)),
        int(sample(data, "burnrate_slo_events_total", slo=LATENCY_SLO)),
        int(sample(data, "burnrate_slo_bad_events_total", slo=LATENCY_SLO)),
    )


async def counted(service: Service, session: aiohttp.ClientSession, want: int) -> None:
    """Wait until the service shows `want` events of the availability SLO."""
    url = await service.url()

    async def reached() -> bool:
        try:
            return (await metric_counts(session, url))[0] >= want
        except (aiohttp.ClientError, KeyError):
            return False

    await service.wait_for(f"{want} events counted", reached, STARTUP_DEADLINE_S)


async def settled_counts(
    service: Service, session: aiohttp.ClientSession
) -> tuple[int, int, int, int]:
    """The counts once a few more seconds of fetching (and metric refreshes) bring
    nothing new: what the engine holds, double counts included."""
    url = await service.url()
    last = await metric_counts(session, url)
    end = time.monotonic() + 60
    while time.monotonic() < end:
        await asyncio.sleep(2.5)
        now = await metric_counts(session, url)
        if now == last:
            return now
        last = now
    pytest.fail(f"the counts never settled:\n{service.log()}")


def file_offsets(state: Path) -> dict[int, int] | None:
    saved = FileStateStore(state).load()
    return None if saved is None else {p: off for (_t, p), off in saved[1].items()}


def file_counts(config: Path, state: Path) -> tuple[int, int, int, int]:
    saved = FileStateStore(state).load()
    assert saved is not None
    ev = Evaluator(parse_config(config.read_text()))
    snapshot.load(ev, saved[0])
    c = ev.counts()
    return (
        int(c.events_total[0]),
        int(c.bad_events_total[0]),
        int(c.events_total[1]),
        int(c.bad_events_total[1]),
    )


# -- counts ---------------------------------------------------------------------------


@dataclass
class Counting:
    """`burnrate run` with `counting_config` on a fresh group, reading `topic`."""

    bootstrap: str
    topic: str
    group: str
    state: Path
    config: Path

    @classmethod
    def new(cls, tmp_path: Path, bootstrap: str, topic: str, state: Path) -> Counting:
        group = f"g-{uuid.uuid4().hex[:10]}"
        config = counting_config(tmp_path / "burnrate.yaml", bootstrap, topic, group, state)
        return cls(bootstrap, topic, group, state, config)

    async def send(self, indices: range) -> None:
        """Produce the events `indices`, one a record."""
        await produce(
            self.bootstrap, self.topic, records_for(indices, "json", batch=1, now=time.time())
        )

    @contextlib.asynccontextmanager
    async def first_run(self, session: aiohttp.ClientSession, n: int) -> AsyncIterator[Service]:
        """The service started and ready, events 0 to `n` - 1 produced and counted;
        killed (SIGKILL) on the way out."""
        first = await Service.start(self.config)
        try:
            await first.wait_readyz(session, 200, STARTUP_DEADLINE_S)
            await self.send(range(n))
            await counted(first, session, n)
            yield first
        finally:
            await first.kill()  # SIGKILL

    async def restart(
        self, session: aiohttp.ClientSession, want: int
    ) -> tuple[Service, tuple[int, int, int, int], int]:
        """The service started again until it counts `want` events and its counts settle,
        then stopped with SIGTERM: the service, those counts and its exit code."""
        second = await Service.start(self.config)
        try:
            await second.wait_readyz(session, 200, STARTUP_DEADLINE_S)
            await counted(second, session, want)
            got = await settled_counts(second, session)
            code, _ = await second.terminate()
        finally:
            await second.kill()
        return second, got, code


@pytest.mark.asyncio
async def test_a_kill_before_the_first_snapshot_loses_nothing(
    kafka_bootstrap: str, unique_topic: str, tmp_path: Path
) -> None:
    """The reported loss: 3,597 events consumed, kill -9 before the first snapshot (30 s
    interval, killed at 17 s), and after the restart every count was 0, because offsets
    no snapshot covered had been committed."""
    n = 3597
    state = tmp_path / "state" / "burnrate.state"
    run = Counting.new(tmp_path, kafka_bootstrap, unique_topic, state)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        async with run.first_run(session, n) as first:
            # long enough for the periodic commit that used to commit unsaved offsets
            await asyncio.sleep(COMMIT_INTERVAL_S + 1.5)
            assert not state.exists(), "a snapshot was written: the kill would come too late"
            committed = await committed_offsets(kafka_bootstrap, run.group, unique_topic)
        assert first.proc.returncode == -9
        assert committed == dict.fromkeys(range(PARTITIONS)), committed

        second, got, code = await run.restart(session, n)
    assert got == expected(range(n))  # nothing lost, nothing counted twice
    assert_stopped_cleanly(second, code)
    assert second.event("state_restored") is None  # there was nothing to restore
    assert file_counts(run.config, state) == expected(range(n))
    assert sum((file_offsets(state) or {}).values()) == n


@pytest.mark.asyncio
async def test_a_kill_after_a_snapshot_with_more_counted_since_loses_nothing(
    kafka_bootstrap: str, unique_topic: str, tmp_path: Path
) -> None:
    n, m = 1200, 800
    state = tmp_path / "burnrate.state"
    run = Counting.new(tmp_path, kafka_bootstrap, unique_topic, state)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        async with run.first_run(session, n) as first:

            async def snapshot_of_n() -> bool:
                return sum((file_offsets(state) or {}).values()) == n

            await first.wait_for("the first periodic snapshot", snapshot_of_n, 60)
            await run.send(range(n, n + m))
            await counted(first, session, n + m)
            await asyncio.sleep(COMMIT_INTERVAL_S + 1.5)  # a periodic commit, not a snapshot
            at_kill = file_offsets(state)
            committed = await committed_offsets(kafka_bootstrap, run.group, unique_topic)
        assert first.proc.returncode == -9
        assert at_kill is not None
        assert sum(at_kill.values()) == n, "the next snapshot came before the kill"
        # the group holds the snapshot's offsets, not the n + m counted since
        assert committed == at_kill

        second, got, code = await run.restart(session, n + m)
    assert got == expected(range(n + m))
    assert_stopped_cleanly(second, code)
    assert second.event("state_restored") is not None
    assert file_counts(run.config, state) == expected(range(n + m))


# -- a page pending at shutdown ---------------------------------------------------------


def alerting_config(
    path: Path, bootstrap: str, topic: str, group: str, state: Path, receiver: str
) -> Path:
    """A config that pages within seconds of an outage, to the receiver `receiver` (a
    YAML flow mapping)."""
    path.write_text(
        "slos:\n"
        "  - {name: pay-availability, service: pay, sli: availability, objective: 99.9,"
        " period: 1d}\n"
        "policy:\n"
        "  - {severity: page, long: 1m, short: 10s, burn_rate: 14.4}\n"
        "evaluation: {tick: 1s, allowed_lateness: 2s, future_limit: 1m}\n"
        "kafka:\n"
        f"  bootstrap_servers: {bootstrap}\n"
        f"  topics: [{topic}]\n"
        f"  group_id: {group}\n"
        "http:\n"
        "  listen: 127.0.0.1:0\n"
        "state:\n"
        f"  path: {state}\n"
        "  interval: 30s\n"
        "receivers:\n"
        f"  - {receiver}\n"
    )
    return path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def outage(bootstrap: str, topic: str, n: int = 300) -> None:
    now = time.time()
    values = [
        encode({"service": "pay", "status": 503, "ts": now - 2 + i * 0.005}, "json")
        for i in range(n)
    ]
    await produce(bootstrap, topic, values, partitions=1)


def firing_attempts(service: Service) -> int:
    return sum(
        1 for line in service.lines if "attempt" in line and "pay-availability/page firing" in line
    )


@dataclass
class PageAcrossRestart:
    """A page that fired while its receiver was down, through SIGTERM and a restart."""

    first: Service
    second: Service
    before: list[Received]
    """What the receiver got (and refused) before the restart."""
    after: list[Received]
    """What it got after."""


async def a_page_across_a_restart(
    bootstrap: str,
    tmp_path: Path,
    receiver: Receiver,
    receiver_yaml: Callable[[str], str],
    *,
    down: str,
    path: str = "/hook",
    resolved: Callable[[], bool],
) -> PageAcrossRestart:
    """`burnrate run` pages to `receiver` while it is down (`down`: answering 503, or
    refusing connections) and is stopped with SIGTERM once the page was retried; started
    again from its state file with the receiver up, until `resolved()`; stopped again.
    `receiver_yaml(url)` is the receiver's config entry."""
    topic = f"it-no-loss-page-{uuid.uuid4().hex[:8]}"
    await create_topic(bootstrap, topic, 1)
    port = free_port()
    state = tmp_path / "burnrate.state"
    config = alerting_config(
        tmp_path / "burnrate.yaml",
        bootstrap,
        topic,
        f"g-{uuid.uuid4().hex[:10]}",
        state,
        receiver_yaml(f"http://127.0.0.1:{port}{path}"),
    )
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        # 1. the receiver is down when the page fires
        async with _maybe_serve(receiver, port, path, up=down == "503"):
            receiver.outage = Reply(503)
            first = await Service.start(config)
            try:
                await first.wait_readyz(session, 200, STARTUP_DEADLINE_S)
                await outage(bootstrap, topic)

                async def retried() -> bool:
                    return firing_attempts(first) >= 2

                await first.wait_for("the page retried", retried, 60)
                code, _ = await first.terminate()
            finally:
                await first.kill()
        assert_stopped_cleanly(first, code)
        assert "not delivered before shutdown" in first.log()
        before = list(receiver.requests)
        if down == "503":
            assert len(before) >= 2

        # 2. the receiver is back; the engine starts again from its state file
        receiver.outage = None
        async with serve(receiver, port, path):
            second = await Service.start(config)
            try:
                await second.wait_readyz(session, 200, STARTUP_DEADLINE_S)

                async def done() -> bool:
                    return resolved()

                await second.wait_for("the resolve at the receiver", done, 90)
                code, _ = await second.terminate()
            finally:
                await second.kill()
    assert_stopped_cleanly(second, code)
    kept = first.event("deliveries_kept")  # the first run said where the page went
    assert kept is not None, first.log()
    assert kept["count"] == 1
    assert second.event("state_restored") is not None
    assert second.event("deliveries_restored") is not None, second.log()
    return PageAcrossRestart(first, second, before, receiver.requests[len(before) :])


@pytest.mark.asyncio
@pytest.mark.parametrize("down", ["503", "refused"])
async def test_a_page_pending_at_sigterm_is_delivered_after_the_restart_then_its_resolve(
    kafka_bootstrap: str, tmp_path: Path, down: str
) -> None:
    receiver = Receiver()
    run = await a_page_across_a_restart(
        kafka_bootstrap,
        tmp_path,
        receiver,
        lambda url: f"{{type: webhook, url: '{url}', timeout: 2s}}",
        down=down,
        resolved=lambda: any(r.json()["status"] == "resolved" for r in receiver.requests),
    )
    assert all(r.json()["status"] == "firing" for r in run.before)
    statuses = [r.json()["status"] for r in run.after]
    assert statuses == ["firing", "resolved"], statuses  # the firing first, each once
    fired, resolve = (r.json()["alerts"][0] for r in run.after)
    assert fired["labels"]["slo"] == "pay-availability"
    assert fired["labels"]["severity"] == "page"
    assert resolve["labels"] == fired["labels"]
    assert resolve["fingerprint"] == fired["fingerprint"]
    assert resolve["startsAt"] == fired["startsAt"]
    ids = [r.headers["webhook-id"] for r in run.after]
    assert ids[0] != ids[1]
    for r in run.before:  # the same message as the attempts the receiver refused
        assert r.headers["webhook-id"] == ids[0]
        assert r.json()["alerts"][0]["labels"] == fired["labels"]
        assert r.json()["alerts"][0]["startsAt"] == fired["startsAt"]


@pytest.mark.asyncio
async def test_a_pagerduty_trigger_pending_at_sigterm_is_sent_after_the_restart_then_resolved(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    key_file = tmp_path / "pagerduty-routing-key"
    key_file.write_text(PD_ROUTING_KEY + "\n")
    pagerduty = PagerDuty()
    run = await a_page_across_a_restart(
        kafka_bootstrap,
        tmp_path,
        pagerduty,
        lambda url: (
            f"{{type: pagerduty, name: oncall, url: '{url}', routing_key_file: '{key_file}',"
            " timeout: 2s}"
        ),
        down="503",
        path="/v2/enqueue",
        resolved=lambda: bool(pagerduty.resolved),
    )
    trigger, resolve = pagerduty.accepted  # the trigger first, each once
    assert [r.json() for r in run.after] == [trigger, resolve]
    assert trigger["event_action"] == "trigger"
    assert trigger["payload"]["component"] == "pay-availability"
    assert trigger["payload"]["severity"] == "critical"
    assert resolve["event_action"] == "resolve"
    assert resolve["dedup_key"] == trigger["dedup_key"]
    assert pagerduty.resolved == [(PD_ROUTING_KEY, trigger["dedup_key"])]
    assert pagerduty.alerts == {}
    for r in run.before:  # the same event as the attempts PagerDuty could not take
        assert r.json() == trigger
    assert all(PD_ROUTING_KEY not in line for line in run.first.lines + run.second.lines)


def _maybe_serve(
    receiver: Receiver, port: int, path: str, *, up: bool
) -> contextlib.AbstractAsyncContextManager[Receiver | None]:
    return serve(receiver, port, path) if up else contextlib.nullcontext()
