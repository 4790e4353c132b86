"""An ingest worker's config reload without a broker: the worker is not started; its
counts transactions go to a recording stand-in for the counts producer, and records
are counted through the worker's own source ingestor (what a fetch calls). The live
test with Apache Kafka is tests/integration/test_ingest_role.py (`-k reload`)."""

from __future__ import annotations

import hashlib
import json
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path

import aiohttp
import pytest
from aiokafka import TopicPartition
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from engine.core.config import decode_config_file
from engine.core.deltas_aggregate import SloDelta
from engine.runtime.ingest_role import IngestWorker

NOW = 1_700_000_000.0

BASE = """\
slos:
  - {name: avail, service: checkout, sli: availability, objective: 99.9}
  - {name: lat, service: search, sli: latency, threshold_ms: 300, objective: 99}
evaluation: {allowed_lateness: 30m, future_limit: 5m}
kafka:
  bootstrap_servers: 127.0.0.1:9
  topics: [requests]
  group_id: ingest
  scale: {counts_topic: counts, counts_partitions: 4}
http: {listen: "127.0.0.1:0"}
"""

POSTS = "  - {name: posts, service: blog, sli: availability, objective: 99}\n"


def with_posts(text: str = BASE) -> str:
    return text.replace("evaluation:", POSTS + "evaluation:", 1)


class RecordingProducer:
    """Stands in for engine.adapters.kafka.counts.CountsProducer: keeps each transaction."""

    transactional = True
    deltas_produced = heartbeats_produced = transactions_committed = transactions_aborted = 0

    def __init__(self) -> None:
        self.flushes: list[tuple[list[tuple[str, SloDelta]], float | None]] = []

    async def flush(
        self,
        deltas: Sequence[tuple[str, SloDelta]],
        watermark_s: float | None,
        offsets: Mapping[TopicPartition, int],
    ) -> None:
        self.flushes.append((list(deltas), watermark_s))
        self.transactions_committed += 1

    async def stop(self) -> None:
        pass

    def sums(self, start: int = 0) -> dict[tuple[str, str], tuple[int, int]]:
        """(key, SLO) -> (total, bad) over the transactions from `start` on."""
        out: Counter[tuple[str, str, str]] = Counter()
        for keyed, _ in self.flushes[start:]:
            for key, d in keyed:
                out[(key, d.slo, "total")] += sum(d.total)
                out[(key, d.slo, "bad")] += sum(d.bad)
        return {(k, s): (out[(k, s, "total")], out[(k, s, "bad")]) for k, s, _ in out}


def worker(tmp_path: Path, text: str = BASE) -> tuple[IngestWorker, RecordingProducer, Path]:
    path = tmp_path / "burnrate.yaml"
    path.write_text(text)
    w = IngestWorker(
        decode_config_file(path),
        listen="127.0.0.1:0",
        worker_id="w",
        clock=lambda: NOW,
        config_path=str(path),
        config_source=path.read_bytes(),
    )
    producer = RecordingProducer()
    w.producer = producer  # type: ignore[assignment]
    w.accepting = True  # as at the end of a start
    return w, producer, path


def count(w: IngestWorker, events: list[dict[str, object]]) -> None:
    """One fetch of one record per event, as the source applies it."""
    values: list[bytes | None] = [json.dumps(e).encode() for e in events]
    w.source.ingestor.records(values, "json", now_s=NOW)


def ev(service: str, status: int = 200, ts: float = NOW - 5, **extra: object) -> dict[str, object]:
    return {"service": service, "status": status, "ts": ts, **extra}


@pytest.mark.asyncio
async def test_the_old_counts_go_out_under_the_old_slos_before_the_new_config_counts(
    tmp_path: Path,
) -> None:
    w, producer, path = worker(tmp_path)
    count(w, [ev("checkout"), ev("checkout", 503), ev("blog"), ev("blog", 500)])
    watermark = w.evaluator.watermark_s
    path.write_text(with_posts())
    assert w.reloader is not None
    out = await w.reloader.reload("ops")
    assert out.result == "ok", out
    assert (out.kept, out.added, out.removed, out.reset) == (["avail", "lat"], ["posts"], [], [])
    assert out.previous_sha256 == hashlib.sha256(BASE.encode()).hexdigest()
    assert out.sha256 == hashlib.sha256(with_posts().encode()).hexdigest()
    # the reload's own transaction: the old config's counts, the blog events in none
    assert len(producer.flushes) == 1
    assert producer.sums() == {("checkout", "avail"): (2, 1)}
    assert w.evaluator.watermark_s >= watermark  # carried, never back
    assert w.evaluator.counts().unmatched_events == 2  # stream-wide counts carry over

    count(w, [ev("blog"), ev("blog", 502), ev("checkout")])
    await w.flush()
    assert producer.sums(1) == {("checkout", "avail"): (1, 0), ("blog", "posts"): (2, 1)}
    marks = [wm for _, wm in producer.flushes]
    assert marks == sorted(marks)
    assert w.keys == {"avail": "checkout", "lat": "search", "posts": "blog"}


@pytest.mark.asyncio
async def test_a_removed_slo_is_flushed_then_counts_no_more(tmp_path: Path) -> None:
    w, producer, path = worker(tmp_path, with_posts())
    count(w, [ev("blog"), ev("checkout")])
    path.write_text(BASE)
    assert w.reloader is not None
    out = await w.reloader.reload("ops")
    assert (out.result, out.removed) == ("ok", ["posts"])
    assert producer.sums() == {("checkout", "avail"): (1, 0), ("blog", "posts"): (1, 0)}
    count(w, [ev("blog"), ev("checkout", 500)])
    await w.flush()
    assert producer.sums(1) == {("checkout", "avail"): (1, 1)}


@pytest.mark.asyncio
async def test_the_evaluation_settings_of_the_ingest_path_are_taken(tmp_path: Path) -> None:
    w, producer, path = worker(tmp_path)
    count(w, [ev("checkout", ts=NOW + 120)])  # within the future limit of 5m
    path.write_text(BASE.replace("future_limit: 5m", "future_limit: 1m"))
    assert w.reloader is not None
    out = await w.reloader.reload("ops")
    assert out.result == "ok"
    assert out.reset_reason == "the evaluation settings changed"
    count(w, [ev("checkout", ts=NOW + 120)])  # beyond the new one
    await w.flush()
    assert producer.sums() == {("checkout", "avail"): (1, 0)}
    assert w.evaluator.rejected_counts()["too_far_in_future"] == 1


@pytest.mark.asyncio
async def test_a_grouped_slo_keeps_its_group_names_across_the_reload(tmp_path: Path) -> None:
    grouped = BASE.replace(
        "evaluation:",
        "  - {name: pay, service: pay, sli: availability, objective: 99,\n"
        "     group_by: [region], max_groups: 5}\nevaluation:",
    )
    w, producer, path = worker(tmp_path, grouped)
    count(w, [ev("pay", labels={"region": "eu"}), ev("pay", 500, labels={"region": "us"})])
    path.write_text(with_posts(grouped))
    assert w.reloader is not None
    assert (await w.reloader.reload("ops")).result == "ok"
    count(w, [ev("pay", labels={"region": "ap"})])
    await w.flush()
    groups = [
        (i, g, t, b)
        for i, (keyed, _) in enumerate(producer.flushes)
        for _, d in keyed
        if d.slo == "pay"
        for g, t, b in zip(d.groups or [], d.total, d.bad, strict=True)
    ]
    assert sorted(groups) == [
        (0, "region=eu", 1, 0),
        (0, "region=us", 1, 1),
        (1, "region=ap", 1, 0),
    ]


@pytest.mark.asyncio
async def test_refused_files_change_nothing(tmp_path: Path) -> None:
    w, producer, path = worker(tmp_path)
    assert w.reloader is not None
    count(w, [ev("checkout")])
    evaluator, sha = w.evaluator, w.reloader.sha256
    path.write_text(
        with_posts().replace("blog, sli: availability, objective: 99", "blog, objective: 0")
    )
    out = await w.reloader.reload("ops")
    assert out.result == "rejected"
    assert out.sha256 == sha
    assert out.errors == [
        "$.slos[2].objective: must be > 0 and < 100 (percent), got 0.0",
        "$.slos[2].sli: required (or give `composite` for a composite SLO)",
    ]
    path.write_text(with_posts().replace("group_id: ingest", "group_id: other"))
    out = await w.reloader.reload("signal")
    assert out.errors == ["$.kafka.group_id: changed; needs a restart"]
    path.unlink()
    out = await w.reloader.reload("signal")
    assert "cannot read" in out.errors[0]
    path.write_text(with_posts())
    w.accepting = False  # stopping
    out = await w.reloader.reload("signal")
    assert out.errors == ["the worker is starting or stopping; reload once it runs"]
    assert w.evaluator is evaluator
    assert w.source.ingestor.evaluator is evaluator
    assert producer.flushes == []  # nothing flushed early: the counts wait for the flush
    assert w.reloader.metrics() == (sha, {"ok": 0, "rejected": 4})
    w.accepting = True
    await w.flush()
    assert producer.sums() == {("checkout", "avail"): (1, 0)}


def sha(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@pytest.mark.asyncio
async def test_post_reload_needs_admin_and_answers_like_the_single_process(
    tmp_path: Path,
) -> None:
    tokens = (
        "http:\n"
        '  listen: "127.0.0.1:0"\n'
        "  tokens:\n"
        f"    - {{name: prom, scopes: [read], sha256: {sha('prom-token-0001')}}}\n"
        f"    - {{name: ops, scopes: [admin], sha256: {sha('ops-token-00001')}}}\n"
    )
    text = BASE.replace('http: {listen: "127.0.0.1:0"}\n', tokens)
    w, _, path = worker(tmp_path, text)
    await w.http.start()
    url = f"http://127.0.0.1:{w.http.port}"
    read = {"Authorization": "Bearer prom-token-0001"}
    admin = {"Authorization": "Bearer ops-token-00001"}
    try:
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{url}/-/reload") as r:
                assert r.status == 401
            async with http.post(f"{url}/-/reload", headers=read) as r:
                assert r.status == 403
            path.write_text(with_posts(text).replace("group_id: ingest", "group_id: x"))
            async with http.post(f"{url}/-/reload", headers=admin) as r:
                assert r.status == 400
                body = await r.json()
            assert body["errors"] == ["$.kafka.group_id: changed; needs a restart"]
            # a new token list: the read token goes, another comes
            new_tokens = text.replace(
                f"name: prom, scopes: [read], sha256: {sha('prom-token-0001')}",
                f"name: prom2, scopes: [read], sha256: {sha('prom-token-0002')}",
            )
            path.write_text(with_posts(new_tokens))
            async with http.post(f"{url}/-/reload", headers=admin) as r:
                assert r.status == 200
                body = await r.json()
            assert body["result"] == "ok"
            assert body["added"] == ["posts"]
            assert body["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
            async with http.get(f"{url}/metrics", headers=read) as r:
                assert r.status == 401
            async with http.get(
                f"{url}/metrics", headers={"Authorization": "Bearer prom-token-0002"}
            ) as r:
                assert r.status == 200
                metrics = await r.text()
    finally:
        await w.http.stop()
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(metrics)
        for s in family.samples
    }
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert samples[("burnrate_config_info", (("sha256", digest),))] == 1
    assert samples[("burnrate_config_reloads_total", (("result", "ok"),))] == 1
    assert samples[("burnrate_config_reloads_total", (("result", "rejected"),))] == 1


@pytest.mark.asyncio
async def test_without_a_config_file_the_route_answers_404(tmp_path: Path) -> None:
    path = tmp_path / "burnrate.yaml"
    path.write_text(BASE)
    w = IngestWorker(decode_config_file(path), listen="127.0.0.1:0", worker_id="w")
    assert w.reloader is None
    await w.http.start()
    url = f"http://127.0.0.1:{w.http.port}/-/reload"
    try:
        async with aiohttp.ClientSession() as http, http.post(url) as r:
            assert r.status == 404
    finally:
        await w.http.stop()


SERVICES = ("checkout", "search", "blog", "shop")
SLO_OF = {
    "checkout": "  - {name: avail, service: checkout, sli: availability, objective: 99.9}\n",
    "search": "  - {name: s, service: search, sli: availability, objective: 99}\n",
    "blog": POSTS,
    "shop": "  - {name: shop, service: shop, sli: availability, objective: 99}\n",
}


def config_of(services: frozenset[str]) -> str:
    slos = "".join(SLO_OF[s] for s in SERVICES if s in services) or SLO_OF["checkout"]
    return BASE.replace(BASE[: BASE.index("evaluation:")], "slos:\n" + slos)


steps = st.lists(
    st.one_of(
        st.tuples(
            st.just("count"),
            st.lists(st.tuples(st.sampled_from(SERVICES), st.booleans()), max_size=8),
        ),
        st.tuples(st.just("reload"), st.frozensets(st.sampled_from(SERVICES))),
        st.tuples(st.just("flush"), st.none()),
    ),
    max_size=12,
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(steps=steps)
@pytest.mark.asyncio
async def test_each_event_is_counted_once_under_the_config_that_read_it(
    tmp_path: Path, steps: list[tuple[str, object]]
) -> None:
    """Against a naive model: an event counts for its service's SLO of the config in
    force when it was read, whatever reloads and flushes come between."""
    w, producer, path = worker(tmp_path, config_of(frozenset({"checkout"})))
    assert w.reloader is not None
    active = {"checkout"}
    expected: Counter[tuple[str, str, str]] = Counter()
    name = {"checkout": "avail", "search": "s", "blog": "posts", "shop": "shop"}
    for kind, arg in steps:
        if kind == "count":
            assert isinstance(arg, list)
            count(w, [ev(s, 500 if bad else 200) for s, bad in arg])
            for s, bad in arg:
                if s in active:
                    expected[(s, name[s], "total")] += 1
                    expected[(s, name[s], "bad")] += int(bad)
        elif kind == "reload":
            assert isinstance(arg, frozenset)
            path.write_text(config_of(arg))
            out = await w.reloader.reload("ops")
            assert out.result == "ok", out
            active = set(arg) or {"checkout"}
        else:
            await w.flush()
    await w.flush()
    want = {(k, s): (expected[(k, s, "total")], expected[(k, s, "bad")]) for k, s, _ in expected}
    assert producer.sums() == {k: v for k, v in want.items() if v[0]}
    marks = [wm for _, wm in producer.flushes if wm is not None]
    assert marks == sorted(marks)
    assert all(math.isfinite(m) for m in marks)
