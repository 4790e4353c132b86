"""The runtime's config reloader without a broker: when it refuses, and that every
reader of the evaluator follows the new one."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.adapters.store.audit import FileAudit
from engine.core.config import decode_config_file
from engine.core.decode import Event
from engine.runtime.service import Runtime

SLOS = """\
slos:
  - {name: kept, service: shop, sli: availability, objective: 99}
  - {name: gone, service: blog, sli: availability, objective: 99}
http: {listen: "127.0.0.1:0"}
"""


def runtime(tmp_path: Path, text: str = SLOS) -> tuple[Runtime, Path]:
    path = tmp_path / "burnrate.yaml"
    path.write_text(text)
    rt = Runtime(decode_config_file(path), sinks=[], config_path=str(path))
    return rt, path


@pytest.mark.asyncio
async def test_no_reload_before_the_saved_state_is_restored(tmp_path: Path) -> None:
    rt, path = runtime(tmp_path)
    path.write_text(
        SLOS.replace("objective: 99}\n  - {name: gone", "objective: 95}\n  - {name: g2")
    )
    out = await rt.reload("signal")
    assert out is not None
    assert out.result == "rejected"
    assert out.errors == ["the engine is starting or stopping; reload once it serves"]
    assert rt.evaluator.names == ["kept", "gone"]
    assert rt.metrics.collector.config is not None
    assert rt.metrics.collector.config()[1] == {"ok": 0, "rejected": 1}


@pytest.mark.asyncio
async def test_an_unreadable_file_is_refused_and_the_old_config_stays(tmp_path: Path) -> None:
    rt, path = runtime(tmp_path)
    assert rt.reloader is not None
    rt.reloader.accepting = True
    path.unlink()
    out = await rt.reload("signal")
    assert out is not None
    assert out.result == "rejected"
    assert len(out.errors) == 1
    assert "cannot read" in out.errors[0]
    assert rt.evaluator.names == ["kept", "gone"]


@pytest.mark.asyncio
async def test_every_reader_follows_the_new_evaluator(tmp_path: Path) -> None:
    rt, path = runtime(tmp_path)
    assert rt.reloader is not None
    rt.reloader.accepting = True
    events = [
        Event(service=s, status=200, ts=1_700_000_000.0 + k)
        for k in range(5)
        for s in ("shop", "blog")
    ]
    rt.evaluator.ingest(rt.evaluator.classifier.columns(events))
    path.write_text(SLOS.replace("name: gone, service: blog", "name: new, service: blog"))
    out = await rt.reload("ops")
    assert out is not None
    assert out.result == "ok", out
    assert (out.kept, out.added, out.removed) == (["kept"], ["new"], ["gone"])
    ev = rt.evaluator
    assert ev.names == ["kept", "new"]
    assert int(ev.counts().events_total[0]) == 5
    for reader in (
        rt.source,
        rt.source.ingestor,
        rt.checkpoint,
        rt.metrics.collector,
        rt.metrics.slo_text,
        rt.http.api,
        rt.http.summary,
        rt.http.corrections,
        rt.http.changes,
        rt.http.gates,
    ):
        assert reader.evaluator is ev, reader
    body = rt.metrics.render().decode()
    assert 'slo="new"' in body
    assert 'slo="kept"' in body
    assert 'slo="gone"' not in body


@pytest.mark.asyncio
async def test_the_gate_routes_still_record_to_the_audit_log_after_a_reload(
    tmp_path: Path,
) -> None:
    audit = f"audit: {{path: '{tmp_path / 'audit.jsonl'}'}}\n"
    rt, path = runtime(tmp_path, SLOS + audit)
    assert rt.reloader is not None
    rt.reloader.accepting = True
    sink = rt.audit.sink
    assert isinstance(sink, FileAudit)
    sink.open()
    assert rt.http.gates.audit is sink
    path.write_text(SLOS.replace("name: gone, service: blog", "name: new, service: blog") + audit)
    out = await rt.reload("ops")
    assert out is not None
    assert out.result == "ok", out
    assert rt.http.gates.audit is sink  # overrides and named tokens' asks are still recorded
    sink.close()
