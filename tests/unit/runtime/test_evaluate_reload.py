"""An evaluate worker's config reload without a broker (engine.runtime.evaluate_reload):
the worker's partition engines set by hand, as its rebalance listener sets them. Kept
SLOs keep their counts in their partition, changed ones start empty, an SLO added to a
service joins that service's partition, a removed one's alerts end with `resolved`; a
file that is invalid or changes a field needing a restart is refused whole."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.adapters.kafka.partitions import slo_partitions
from engine.core.config import decode_config_file
from engine.core.deltas import encode_delta
from engine.core.reload import ended_alerts
from engine.runtime.evaluate_reload import EvaluateReloader
from engine.runtime.evaluate_role import EvaluateWorker
from engine.runtime.partition_engine import PartitionEngine

T0 = 1_700_000_000
PARTITIONS = 4
HEAD = """\
kafka: {bootstrap_servers: '127.0.0.1:9', topics: [t]}
http: {listen: '127.0.0.1:0'}
policy:
  - {severity: page, long: 5m, short: 1m, burn_rate: 4}
slos:
"""


def slo(name: str, service: str, objective: float = 99) -> str:
    return (
        f"  - {{name: {name}, service: {service}, sli: availability, "
        f"objective: {objective}, period: 1h}}\n"
    )


V1 = HEAD + "".join(slo(f"s{k}", f"v{k}") for k in range(8))
V2 = (
    HEAD
    + slo("s0", "v0", 95)  # changed: starts empty
    + "".join(slo(f"s{k}", f"v{k}") for k in range(2, 8))  # s1 removed
    + slo("s8", "v2")  # added to v2's partition
)


def started(tmp_path: Path) -> tuple[EvaluateWorker, EvaluateReloader, Path]:
    path = tmp_path / "burnrate.yaml"
    path.write_text(V1)
    config = decode_config_file(path)
    worker = EvaluateWorker(config, listen="127.0.0.1:0", sinks=lambda c, u: [])
    worker.partitions = PARTITIONS
    worker._where = where = slo_partitions(config, PARTITIONS)
    worker.assignment = set(range(PARTITIONS))
    for p in range(PARTITIONS):
        names = [s for s, q in where.items() if q == p]
        if names:
            engine = worker.owned[p] = PartitionEngine(p, config, names, [])
            # ten minutes: s1 failing (its page fires), the others 1 bad in 10
            engine.apply_batch(
                [
                    (i, encode_delta(name, T0 + t, [T0 + t], [10], [10 if name == "s1" else 1]))
                    for i, (t, name) in enumerate((t, n) for t in range(0, 600, 10) for n in names)
                ]
            )
    worker.ready.set()
    return worker, EvaluateReloader(worker, str(path), lambda c: c), path


def events_of(worker: EvaluateWorker, name: str) -> int | None:
    ev = worker.evaluator_of(name)
    if ev is None:
        return None
    return int(ev.counts().events_total[ev.names.index(name)])


@pytest.mark.asyncio
async def test_kept_slos_keep_their_counts_and_removed_ones_end_their_alerts(
    tmp_path: Path,
) -> None:
    worker, reloader, path = started(tmp_path)
    before = {f"s{k}": events_of(worker, f"s{k}") for k in range(8)}
    assert before == dict.fromkeys(before, 600)
    holder = worker.owned[worker.partition_of("s1")]
    firing = ended_alerts(holder.evaluator, {"s1"})
    assert [(t.slo, t.severity) for t in firing] == [("s1", "page")]
    sent = holder.transitions
    path.write_text(V2)
    out = await reloader.reload("ops")
    assert out.result == "ok", out
    assert sorted(out.kept) == [f"s{k}" for k in range(2, 8)]
    assert (out.added, out.removed, out.reset) == (["s8"], ["s1"], ["s0"])
    assert out.previous_sha256 is not None
    assert out.sha256 != out.previous_sha256
    for k in range(2, 8):
        assert events_of(worker, f"s{k}") == 600
    assert events_of(worker, "s0") == 0
    assert events_of(worker, "s8") == 0
    assert worker.evaluator_of("s8") is worker.evaluator_of("s2")  # one service, one place
    assert events_of(worker, "s1") is None
    assert holder.transitions == sent + 1  # s1's page resolved, to the sinks
    assert worker.config.slos[-1].name == "s8"
    assert reloader.metrics() == (out.sha256, {"ok": 1, "rejected": 0})


@pytest.mark.asyncio
async def test_a_bad_file_or_a_restart_field_is_refused_and_nothing_changes(
    tmp_path: Path,
) -> None:
    worker, reloader, path = started(tmp_path)
    config = worker.config
    path.write_text(V1.replace("objective: 99", "objective: 150", 1))
    out = await reloader.reload("ops")
    assert out.result == "rejected"
    assert any(e.startswith("$.slos[0].objective") for e in out.errors), out.errors
    path.write_text(V1.replace("topics: [t]", "topics: [u]"))
    out = await reloader.reload("signal")
    assert out.result == "rejected"
    assert out.errors == ["$.kafka.topics: changed; needs a restart"]
    assert worker.config is config
    assert events_of(worker, "s1") == 600
    worker.stopping = True
    path.write_text(V2)
    out = await reloader.reload("ops")
    assert out.errors == ["the worker is starting or stopping; reload once it serves"]
    assert reloader.counts == {"ok": 0, "rejected": 3}
