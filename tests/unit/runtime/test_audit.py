"""The engine's own audit entries (engine.runtime.audit): `config.loaded` at start,
alert transitions, a `gate.decision` per change of a service's decision (not per tick,
not per request), an override's expiry, and the head in /metrics."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from engine.adapters.http.gates import GatesApi
from engine.adapters.http.metrics import EngineMetrics
from engine.adapters.store.audit import FileAudit, NullAudit
from engine.core.audit import parse_line
from engine.core.audit_verify import verify_lines
from engine.core.overrides import Override, Overrides
from engine.core.transitions import Transition
from engine.runtime.audit import RuntimeAudit, config_digest
from tests.unit.adapters.http.test_gates_api import NOW, T0, Clock, fed_evaluator


def entries(path: Path) -> list[tuple[str, str, str, dict[str, object]]]:
    lines = path.read_bytes().splitlines(keepends=True)
    assert verify_lines(lines).ok
    return [(e.actor, e.action, e.subject, e.details) for e in (parse_line(line) for line in lines)]


def setup(tmp_path: Path) -> tuple[RuntimeAudit, GatesApi, Overrides, Clock]:
    clock = Clock()
    ev = fed_evaluator()
    overrides = Overrides()
    gates = GatesApi(ev, overrides, clock)
    audit = RuntimeAudit(FileAudit(tmp_path / "a.jsonl", clock=clock), gates, overrides, clock)
    return audit, gates, overrides, clock


def test_config_loaded_with_its_sha256(tmp_path: Path) -> None:
    audit, gates, _, _ = setup(tmp_path)
    source = b"slos: []\n"
    audit.start(
        gates.evaluator.config, "/etc/burnrate.yaml", config_digest(gates.evaluator.config, source)
    )
    audit.close()
    [(actor, action, subject, details)] = entries(tmp_path / "a.jsonl")
    assert (actor, action, subject) == ("burnrate", "config.loaded", "/etc/burnrate.yaml")
    assert details["sha256"] == hashlib.sha256(source).hexdigest()
    assert details["slos"] == 2
    # no file: the decoded config's canonical JSON, stable from run to run
    assert config_digest(gates.evaluator.config, None) == config_digest(
        fed_evaluator().config, None
    )


def test_decisions_are_recorded_when_they_change(tmp_path: Path) -> None:
    audit, _, overrides, clock = setup(tmp_path)
    audit.sink.open()
    for _ in range(5):
        audit.tick()  # first tick: each service's decision; then nothing changed
    overrides.set(Override(service="shop", reason="hotfix", set_at_s=NOW, expires_at_s=NOW + 60))
    audit.tick()
    audit.tick()
    clock.now += 61  # the override expires
    audit.tick()
    audit.tick()
    audit.close()
    got = [
        (a, s, d.get("decision"), d.get("previous"), d.get("why"))
        for _, a, s, d in entries(tmp_path / "a.jsonl")
    ]
    assert got == [
        ("gate.decision", "shop", "fail", None, None),
        ("gate.decision", "blog", "pass", None, None),
        ("gate.decision", "shop", "pass", "fail", None),
        ("gate.override.ended", "shop", None, None, "expired"),
        ("gate.decision", "shop", "fail", "pass", None),
    ]


def test_transitions_are_recorded(tmp_path: Path) -> None:
    audit, _, _, _ = setup(tmp_path)
    audit.sink.open()
    tr = Transition(
        slo="shop-avail",
        severity="page",
        state="firing",
        at=NOW - 5,
        long_window_s=3600,
        short_window_s=300,
        burn_rate_long=20.0,
        burn_rate_short=30.0,
        factor=14.4,
        error_budget_remaining_ratio=0.5,
        group="region=eu",
    )
    audit.transitions([tr])
    audit.close()
    [(actor, action, subject, details)] = entries(tmp_path / "a.jsonl")
    assert (actor, action, subject) == ("burnrate", "alert.firing", "shop-avail")
    assert details == {
        "severity": "page",
        "kind": "burn",
        "event_at": NOW - 5,
        "long_window_s": 3600,
        "short_window_s": 300,
        "burn_rate_long": 20.0,
        "burn_rate_short": 30.0,
        "factor": 14.4,
        "error_budget_remaining_ratio": 0.5,
        "group": "region=eu",
    }


def test_the_head_is_in_metrics(tmp_path: Path) -> None:
    audit, gates, _, clock = setup(tmp_path)
    audit.sink.open()
    audit.tick()
    metrics = EngineMetrics(gates.evaluator, lambda: None, clock)
    metrics.collector.audit = audit.metrics
    samples = {
        s.name: s
        for f in text_string_to_metric_families(metrics.render().decode())
        for s in f.samples
    }
    assert isinstance(audit.sink, FileAudit)
    head = audit.sink.head
    assert samples["burnrate_audit_head_info"].labels == {"hash": head.hash}
    assert samples["burnrate_audit_head_info"].value == 1.0
    assert samples["burnrate_audit_entries_total"].value == head.seq == 2
    assert samples["burnrate_audit_write_errors_total"].value == 0
    audit.close()


def test_without_audit_nothing_is_done(tmp_path: Path) -> None:
    clock = Clock()
    gates = GatesApi(fed_evaluator(), Overrides(), clock)
    audit = RuntimeAudit(NullAudit(), gates, Overrides(), clock)
    audit.start(gates.evaluator.config, None, "x")
    audit.tick()
    audit.close()
    assert not audit.enabled
    assert list(tmp_path.iterdir()) == []


GATES_CONFIG = """\
slos:
  - {name: shop-avail, service: shop, sli: availability, objective: 90}
policy:
  - {severity: page, long: 60s, short: 10s, burn_rate: 1.5}
evaluation: {tick: 1s}
"""


def test_the_runtime_gives_the_auth_middleware_its_hook(tmp_path: Path) -> None:
    """`Runtime.on_auth_denied` writes to the runtime's own log (not started: no broker)."""
    from engine.core.config import parse_config
    from engine.runtime.service import Runtime

    cfg = parse_config(
        "slos: [{name: s, service: s, sli: availability, objective: 99}]\n"
        f"audit: {{path: '{tmp_path / 'a.jsonl'}'}}\n"
    )
    rt = Runtime(cfg, sinks=[], clock=Clock())
    assert isinstance(rt.audit.sink, FileAudit)
    rt.audit.sink.open()
    rt.on_auth_denied("10.1.2.3", "DELETE", "/v1/gates/s/override", 401, "no token", None)
    rt.audit.close()
    [(actor, action, subject, details)] = entries(tmp_path / "a.jsonl")
    assert (actor, action, subject) == ("anonymous", "auth.denied", "/v1/gates/s/override")
    assert details == {
        "method": "DELETE",
        "status": 401,
        "reason": "no token",
        "remote": "10.1.2.3",
    }


def runtime_with_audit(tmp_path: Path, clock: Clock) -> Any:
    from engine.core.config import parse_config
    from engine.runtime.service import Runtime

    cfg = parse_config(GATES_CONFIG + f"audit: {{path: '{tmp_path / 'a.jsonl'}'}}\n")
    rt = Runtime(cfg, listen="127.0.0.1:0", sinks=[], clock=clock)
    assert isinstance(rt.audit.sink, FileAudit)
    rt.audit.sink.open()
    return rt


def feed(rt: Any, end: float, failing: bool) -> list[Transition]:
    """100 events of shop over (end - 100, end]: all good, or the last 20 failed."""
    from engine.core.decode import Event

    batch = [
        Event(service="shop", ts=end - 99 + i, status=500 if failing and i >= 80 else 200)
        for i in range(100)
    ]
    ev = rt.evaluator
    transitions: list[Transition] = ev.ingest(ev.classifier.columns(batch))
    return transitions + ev.advance(end + 1)


def decisions(path: Path) -> list[tuple[str, str, object, object]]:
    return [
        (a, s, d.get("decision"), d.get("previous"))
        for _, a, s, d in entries(path)
        if a.startswith("gate.")
    ]


def test_a_page_between_ticks_is_a_decision_at_once(tmp_path: Path) -> None:
    """A batch's page changes the gate between ticks: recorded with the transition, so
    an override set before the next tick does not hide it."""
    clock = Clock()
    rt = runtime_with_audit(tmp_path, clock)
    clock.now = T0 + 1 + rt.evaluator.lateness_s
    feed(rt, T0, failing=False)
    rt.tick()  # the first decisions
    transitions = feed(rt, T0 + 100, failing=True)
    assert [(t.slo, t.severity, t.state) for t in transitions] == [("shop-avail", "page", "firing")]
    assert rt.source.on_transitions is not None
    rt.source.on_transitions(transitions)  # as the source does after a batch, no tick
    rt.audit.close()
    assert decisions(tmp_path / "a.jsonl") == [
        ("gate.decision", "shop", "pass", None),
        ("gate.decision", "shop", "fail", "pass"),
    ]


@pytest.mark.asyncio
async def test_the_decision_an_override_hides_is_recorded_before_it(tmp_path: Path) -> None:
    """No tick ran yet: setting an override records the decision in force first, then
    the one the override makes; ending it likewise."""
    clock = Clock()
    rt = runtime_with_audit(tmp_path, clock)
    clock.now = T0 + 1 + rt.evaluator.lateness_s
    feed(rt, T0, failing=True)
    await rt.http.start()
    try:
        url = f"{rt.http.url}/v1/gates/shop/override"
        async with aiohttp.ClientSession() as session:
            async with session.post(url, json={"reason": "hotfix", "ttl": "10m"}) as resp:
                assert resp.status == 201, await resp.text()
            async with session.delete(url) as resp:
                assert resp.status == 200, await resp.text()
    finally:
        await rt.http.stop()
    rt.audit.close()
    assert decisions(tmp_path / "a.jsonl") == [
        ("gate.decision", "shop", "fail", None),
        ("gate.override.created", "shop", None, None),
        ("gate.decision", "shop", "pass", "fail"),
        ("gate.override.ended", "shop", None, None),
        ("gate.decision", "shop", "fail", "pass"),
    ]
