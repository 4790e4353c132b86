"""The audit log live, against a real broker.

1. The Runtime with `audit:` (HMAC key from a file), incidents and a state file while
   a service fails: the page fires through the Kafka pipeline, an incident opens, an
   override, a correction and a change are posted and the incident acknowledged over
   HTTP; the engine restarts and goes on with the chain; the service recovers, the page
   resolves and the incident closes. Every action is an entry, the whole log verifies
   with `burnrate audit verify` (a process of its own) and the head /metrics exported
   is in it; the key never appears in it.
2. `burnrate run` as a process, started twice on one log: two `config.loaded` entries
   with the SHA-256 of the config file, one chain. A log whose last line was cut short
   stops the next start with exit 2 and a clear line, and `burnrate check` says so too.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import sys
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import pytest
from prometheus_client.parser import text_string_to_metric_families

from engine.core.audit import parse_line
from engine.core.audit_verify import verify_lines
from engine.core.config import Config, parse_config
from engine.runtime.audit import config_digest
from engine.runtime.service import Runtime
from tests.integration.live import ROOT, burnrate, get_json, post_json
from tests.integration.test_incidents_live import QUIET_S, Traffic, listed, wait_async
from tests.integration.test_run import Running, wait_ready
from tests.integration.test_signals import Service

KEY = "audit-key-of-the-live-test-0123456789"


def config(bootstrap: str, topic: str, tmp: Path) -> Config:
    (tmp / "audit.key").write_text(KEY + "\n")
    return parse_config(
        "slos:\n"
        "  - {name: shop-avail, service: shop, sli: availability, objective: 90}\n"
        "  - {name: blog-avail, service: blog, sli: availability, objective: 90}\n"
        "policy:\n"
        "  - {severity: page, long: 30s, short: 10s, burn_rate: 2}\n"
        "evaluation: {tick: 1s, allowed_lateness: 2s}\n"
        f"kafka: {{bootstrap_servers: '{bootstrap}', topics: [{topic}],"
        f" group_id: g-{uuid.uuid4().hex[:10]}}}\n"
        "http: {listen: 127.0.0.1:0}\n"
        f"state: {{path: '{tmp / 'burnrate.state'}', interval: 1h}}\n"
        f"incidents: {{path: '{tmp / 'incidents.db'}', quiet_period: {QUIET_S:g}s}}\n"
        f"audit: {{path: '{tmp / 'audit.jsonl'}', key_file: '{tmp / 'audit.key'}'}}\n"
    )


async def exported_head(session: aiohttp.ClientSession, url: str) -> tuple[str, float]:
    async with session.get(f"{url}/metrics") as resp:
        text = await resp.text()
    samples = {s.name: s for f in text_string_to_metric_families(text) for s in f.samples}
    head = samples["burnrate_audit_head_info"]
    assert head.value == 1.0
    return head.labels["hash"], samples["burnrate_audit_entries_total"].value


def actions(path: Path) -> list[Any]:
    return [parse_line(line) for line in path.read_bytes().splitlines(keepends=True)]


@pytest.mark.asyncio
async def test_actions_through_the_engine_are_entries_that_verify_across_a_restart(
    kafka_bootstrap: str, unique_topic: str, tmp_path: Path
) -> None:
    cfg = config(kafka_bootstrap, unique_topic, tmp_path)
    log = tmp_path / "audit.jsonl"
    traffic = Traffic()
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session,
        traffic.flowing(kafka_bootstrap, unique_topic),
    ):
        rt = Runtime(cfg, listen="127.0.0.1:0", sinks=[])
        running = Running(rt)
        try:
            await running.listening()
            url = rt.http.url
            found: list[Any] = []

            async def opened() -> bool:
                found[:] = await listed(session, url, "?state=open")
                return bool(found)

            await wait_async(opened, "an open incident")
            [inc] = found
            override = {"reason": "ship the fix", "ttl": "1h", "ticket": "OPS-1"}
            await post_json(session, f"{url}/v1/gates/shop/override", override)
            correction = {
                "name": "maint",
                "start": "2035-01-01T00:00:00Z",
                "duration": "1h",
                "services": ["blog"],
                "reason": "planned",
            }
            await post_json(session, f"{url}/v1/corrections", correction)
            await post_json(session, f"{url}/v1/changes", {"service": "shop", "kind": "deploy"})
            ack = f"{url}/v1/incidents/{inc['id']}/acknowledge"
            await post_json(session, ack, {"by": "alice"}, status=200)
            head1, entries1 = await exported_head(session, url)
        finally:
            await running.shutdown()
        first_run = actions(log)
        assert entries1 <= len(first_run)

        again = Runtime(cfg, listen="127.0.0.1:0", sinks=[])
        running = Running(again)
        try:
            await running.listening()
            url = again.http.url
            traffic.failing = False
            closed: list[Any] = []

            async def is_closed() -> bool:
                closed[:] = await listed(session, url, "?state=closed")
                return bool(closed)

            await wait_async(is_closed, "the incident closed", deadline_s=90)
            async with session.delete(f"{url}/v1/gates/shop/override") as resp:
                assert resp.status == 200, await resp.text()
            gate = await get_json(session, f"{url}/v1/gates/shop")
            head2, _ = await exported_head(session, url)
        finally:
            await running.shutdown()

    data = log.read_bytes()
    assert KEY.encode() not in data
    entries = actions(log)
    v = verify_lines(data.splitlines(keepends=True), KEY.encode())
    assert v.ok, v
    assert [e.seq for e in entries] == list(range(1, len(entries) + 1))
    restart = entries[len(first_run)]
    assert (restart.action, restart.prev) == ("config.loaded", first_run[-1].hash)
    by_action: dict[str, list[Any]] = {}
    for e in entries:
        by_action.setdefault(e.action, []).append(e)
    assert len(by_action["config.loaded"]) == 2
    # a Runtime built in code: the SHA-256 of the decoded config, the same both times
    assert [e.details["sha256"] for e in by_action["config.loaded"]] == [
        config_digest(cfg, None)
    ] * 2
    firing = by_action["alert.firing"][0]
    assert (firing.subject, firing.actor, firing.details["severity"]) == (
        "shop-avail",
        "burnrate",
        "page",
    )
    assert any(e.subject == "shop-avail" for e in by_action["alert.resolved"])
    assert [e.subject for e in by_action["incident.opened"]] == [inc["id"]]
    assert [e.subject for e in by_action["incident.closed"]] == [inc["id"]]
    [acked] = by_action["incident.acknowledged"]
    assert (acked.subject, acked.actor, acked.details["by"]) == (inc["id"], "anonymous", "alice")
    [created] = by_action["gate.override.created"]
    assert (created.subject, created.details["ticket"]) == ("shop", "OPS-1")
    [ended] = by_action["gate.override.ended"]
    assert ended.details["why"] == "ended"
    assert [e.subject for e in by_action["correction.created"]] == ["maint"]
    assert [(e.subject, e.details["kind"]) for e in by_action["change.recorded"]] == [
        ("shop", "deploy")
    ]
    decisions = [(e.subject, e.details["decision"]) for e in by_action["gate.decision"]]
    assert ("shop", "fail") in decisions  # the page made it fail
    assert ("shop", "pass") in decisions  # the override, then the recovery
    shop = [d for service, d in decisions if service == "shop"]
    assert shop[-1] == gate["decision"]  # its last change is what it answered at the end

    code, out = await burnrate(
        "audit",
        "verify",
        str(log),
        "--key-file",
        str(tmp_path / "audit.key"),
        "--expect-head",
        head1,
    )
    assert (code, out) == (0, f"ok: {len(entries)} entries, head {entries[-1].hash}\n")
    code, out = await burnrate(
        "audit",
        "verify",
        str(log),
        "--key-file",
        str(tmp_path / "audit.key"),
        "--expect-head",
        head2,
    )
    assert code == 0, out
    code, out = await burnrate("audit", "verify", str(log))  # without the key
    assert code == 1
    assert out.startswith(f"{log}: line 1: edited: hash does not match")


def write_config(path: Path, bootstrap: str, topic: str, log: Path) -> Path:
    path.write_text(
        "slos:\n"
        "  - {name: checkout-availability, service: checkout, sli: availability, objective: 99}\n"
        f"kafka: {{bootstrap_servers: '{bootstrap}', topics: [{topic}],"
        f" group_id: g-{uuid.uuid4().hex[:10]}}}\n"
        "http: {listen: 127.0.0.1:0}\n"
        f"audit: {{path: '{log}', fsync: batch, fsync_interval: 1s}}\n"
    )
    return path


@pytest.mark.asyncio
async def test_burnrate_run_goes_on_with_the_chain_and_refuses_a_cut_tail(
    kafka_bootstrap: str, unique_topic: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTHONPATH", str(ROOT))  # this tree's engine in the child
    monkeypatch.setattr(
        "tests.integration.test_signals.burnrate_command", lambda: [sys.executable, "-m", "engine"]
    )
    log = tmp_path / "audit.jsonl"
    conf = write_config(tmp_path / "burnrate.yaml", kafka_bootstrap, unique_topic, log)
    for _ in range(2):
        service = await Service.start(conf)
        try:
            await service.url()
            code, _ = await service.terminate()
            assert code == 0, service.log()
        finally:
            await service.kill()
    entries = actions(log)
    loaded = [e for e in entries if e.action == "config.loaded"]
    assert len(loaded) == 2
    digest = hashlib.sha256(conf.read_bytes()).hexdigest()
    assert [(e.subject, e.details["sha256"]) for e in loaded] == [(str(conf), digest)] * 2
    code, out = await burnrate("audit", "verify", str(log))
    assert (code, out) == (0, f"ok: {len(entries)} entries, head {entries[-1].hash}\n")

    log.write_bytes(log.read_bytes()[:-1])  # the last line cut short
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "engine",
        "run",
        "--config",
        str(conf),
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(60):
        _, err = await proc.communicate()
    assert proc.returncode == 2
    line = err.decode().strip().splitlines()[-1]
    # refused by the checks `run` makes before it starts anything (those of `check`)
    assert line.startswith(
        f"{conf}: $.audit.path: audit log {log}: line {len(entries)}: malformed: incomplete line"
    )
    code, out = await burnrate("check", str(conf))
    assert code == 2
    assert f"{conf}: $.audit.path: audit log {log}: line {len(entries)}: malformed" in out


@pytest.mark.asyncio
async def test_denied_requests_and_token_names_reach_the_log(
    kafka_bootstrap: str, unique_topic: str, tmp_path: Path
) -> None:
    """The auth middleware's refusals are `auth.denied` entries, and an action's actor
    is the name of the token that made it, never the token."""
    reader, deployer = "reader-token-0123456789abcdef", "deployer-token-0123456789abcdef"

    def digest(token: str) -> str:
        return hashlib.sha256(token.encode()).hexdigest()

    base = config(kafka_bootstrap, unique_topic, tmp_path)
    tokens = (
        "http:\n"
        "  listen: 127.0.0.1:0\n"
        "  tokens:\n"
        f"    - {{name: prometheus, scopes: [read], sha256: '{digest(reader)}'}}\n"
        f"    - {{name: deployer, scopes: [read, operate], sha256: '{digest(deployer)}'}}\n"
    )
    cfg = parse_config(
        msgspec.yaml.encode(
            {
                **msgspec.to_builtins(base, order="deterministic"),
                "http": msgspec.yaml.decode(tokens)["http"],
            }
        )
    )
    log = tmp_path / "audit.jsonl"
    rt = Runtime(cfg, listen="127.0.0.1:0", sinks=[])
    running = Running(rt)

    def bearer(token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    change = {"service": "shop", "kind": "deploy"}
    try:
        await running.listening()
        url = rt.http.url
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
            await wait_ready(session, rt)
            async with session.get(f"{url}/v1/slos") as resp:
                assert resp.status == 401
            async with session.post(f"{url}/v1/changes", json=change, headers=bearer(reader)) as r:
                assert r.status == 403
            async with session.post(
                f"{url}/v1/changes", json=change, headers=bearer(deployer)
            ) as r:
                assert r.status == 201, await r.text()
    finally:
        await running.shutdown()

    data = log.read_bytes()
    assert reader.encode() not in data
    assert deployer.encode() not in data
    assert verify_lines(data.splitlines(keepends=True), KEY.encode()).ok
    entries = actions(log)
    denied = [
        (e.actor, e.subject, e.details["status"]) for e in entries if e.action == "auth.denied"
    ]
    assert denied == [("anonymous", "/v1/slos", 401), ("prometheus", "/v1/changes", 403)]
    [recorded] = [e for e in entries if e.action == "change.recorded"]
    assert recorded.actor == "deployer"
