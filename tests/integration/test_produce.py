"""`burnrate produce` against a real broker: every event arrives once, decodes, and is counted.

The events read back are compared with what the generator says it produced, per service
and per verdict, through the engine's own wire decoder and taxonomy.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
from collections import Counter
from pathlib import Path

import msgspec
import pytest
from aiokafka import AIOKafkaConsumer, ConsumerRecord

from engine.adapters.kafka.producer import ProduceError
from engine.commands.produce import add_arguments, run_produce, spec_from_args
from engine.core.decode import Event, RecordDecoder, WireFormat
from engine.core.taxonomy import Outcome, classify
from engine.loadgen.generator import LoadGenerator, Tally
from engine.loadgen.publish import ProduceProgress, ProduceSummary, produce
from engine.loadgen.spec import MAX_RATE_PER_S, LoadSpec, parse_incident

DEADLINE = 60.0  # seconds for any one wait; generous for a cold JVM broker on 2 cores
START_TS = 1_700_000_000.0

SPEC = LoadSpec(
    rate_per_s=1000.0,
    duration_s=6.0,
    services=("checkout", "search", "cart"),
    error_ratio=0.01,
    incidents=(parse_incident("checkout:30%@2s:2s"),),
    seed=11,
)


async def consume_all(
    bootstrap: str, topic: str, expected_records: int
) -> list[ConsumerRecord[bytes, bytes]]:
    """Every record of the topic, checking that there are exactly `expected_records`.

    Exactness is checked on the offsets read (0..n-1 in every partition, no gap, no
    repeat) plus one more short poll that must find nothing: the broker's end offsets
    cannot be used, since Tansu reports the last batch's base offset + 1 as the end.
    """
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    records: list[ConsumerRecord[bytes, bytes]] = []
    try:
        try:
            async with asyncio.timeout(DEADLINE):
                while len(records) < expected_records:
                    batches = await consumer.getmany(
                        timeout_ms=200, max_records=expected_records - len(records)
                    )
                    for batch in batches.values():
                        records.extend(batch)
        except TimeoutError:
            pytest.fail(f"consumed {len(records)} of {expected_records} records")
        extra = await consumer.getmany(timeout_ms=300)
        assert not any(extra.values()), "more records than were sent"
    finally:
        await consumer.stop()
    offsets: dict[int, list[int]] = {}
    for record in records:
        offsets.setdefault(record.partition, []).append(record.offset)
    for partition, seen in offsets.items():
        assert sorted(seen) == list(range(len(seen))), f"partition {partition}"
    return records


def decode_all(records: list[ConsumerRecord[bytes, bytes]], fmt: WireFormat) -> list[Event]:
    decoded = RecordDecoder(fmt).decode_batch([r.value for r in records])
    assert decoded.rejected == []
    return decoded.events


def counts(events: list[Event]) -> tuple[dict[str, int], dict[str, int]]:
    total: Counter[str] = Counter()
    bad: Counter[str] = Counter()
    for event in events:
        total[event.service] += event.count
        if classify(event.status, event.ok) == Outcome.BAD:
            bad[event.service] += event.count
    return dict(total), dict(bad)


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("fmt", "batch"),
    [
        pytest.param("json", 1, id="single json events"),
        pytest.param("json", 250, id="batched json arrays"),
        pytest.param("msgpack", 1, id="single msgpack events"),
        pytest.param("msgpack", 97, id="batched msgpack arrays with a short last record"),
    ],
)
async def test_every_generated_event_arrives_once_and_decodes(
    kafka_bootstrap: str, unique_topic: str, fmt: WireFormat, batch: int
) -> None:
    summary = await produce(
        kafka_bootstrap,
        unique_topic,
        SPEC,
        fmt=fmt,
        batch=batch,
        realtime=False,
        start_ts=START_TS,
    )
    expected = LoadGenerator(SPEC).tally()
    assert summary.events == expected.total_events == 6000
    assert summary.events_by_service == expected.events
    assert summary.bad_by_service == expected.bad
    assert summary.bad == expected.total_bad > 0
    assert not summary.stopped
    assert summary.offset_s == SPEC.duration_s

    records = await consume_all(kafka_bootstrap, unique_topic, summary.records)
    events = decode_all(records, fmt)
    assert len(events) == summary.events
    got_events, got_bad = counts(events)
    assert got_events == summary.events_by_service
    assert got_bad == {s: n for s, n in summary.bad_by_service.items() if n}
    assert min(e.ts for e in events if e.ts is not None) == START_TS
    assert max(e.ts for e in events if e.ts is not None) < START_TS + SPEC.duration_s
    if batch > 1:
        assert summary.records < summary.events


@pytest.mark.asyncio
async def test_a_real_time_run_stops_on_request_and_delivers_what_it_counted(
    kafka_bootstrap: str, unique_topic: str
) -> None:
    spec = LoadSpec(rate_per_s=400.0, duration_s=float("inf"), seed=4)
    stop = asyncio.Event()
    reports: list[ProduceProgress] = []

    def on_progress(p: ProduceProgress) -> None:
        reports.append(p)
        if p.events >= 100:
            stop.set()

    async with asyncio.timeout(DEADLINE):
        summary = await produce(
            kafka_bootstrap, unique_topic, spec, batch=10, progress=on_progress, stop=stop
        )
    assert summary.stopped
    assert not summary.fell_behind
    assert summary.realtime
    assert summary.events >= 100
    assert reports[-1].events == summary.events
    records = await consume_all(kafka_bootstrap, unique_topic, summary.records)
    events = decode_all(records, "json")
    assert counts(events)[0] == {s: n for s, n in summary.events_by_service.items() if n}
    # Stamped with the wall clock, at the pace of the rate from the run's start.
    stamps = sorted(e.ts for e in events if e.ts is not None)
    assert stamps[0] == pytest.approx(summary.start_ts, abs=1e-6)
    assert stamps[-1] - stamps[0] == pytest.approx((summary.events - 1) / spec.rate_per_s, abs=1e-3)


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="burnrate produce")
    add_arguments(parser)
    return parser.parse_args(argv)


@pytest.mark.asyncio
async def test_the_command_produces_and_writes_a_json_summary(
    kafka_bootstrap: str, unique_topic: str, tmp_path: Path
) -> None:
    out = tmp_path / "summary.json"
    args = parse(
        [
            "--bootstrap-servers",
            kafka_bootstrap,
            "--topic",
            unique_topic,
            "--rate",
            "500",
            "--duration",
            "4s",
            "--services",
            "checkout,search",
            "--incident",
            "checkout:50%@1s:2s",
            "--batch",
            "20",
            "--format",
            "msgpack",
            "--as-fast-as-possible",
            "--start",
            "2023-11-14T22:13:20Z",
            "--summary-json",
            str(out),
            "--quiet",
        ]
    )
    assert await run_produce(args) == 0
    summary = msgspec.json.decode(out.read_bytes(), type=ProduceSummary)
    assert summary.events == 2000
    assert summary.records == 100
    assert summary.start_ts == START_TS
    assert summary.bad_by_service["checkout"] > 200  # ~500 events at 50% in the window
    records = await consume_all(kafka_bootstrap, unique_topic, 100)
    assert counts(decode_all(records, "msgpack")) == (
        summary.events_by_service,
        {s: n for s, n in summary.bad_by_service.items() if n},
    )


@pytest.mark.asyncio
async def test_a_real_time_run_too_fast_to_keep_up_still_ends_at_its_duration(
    kafka_bootstrap: str, unique_topic: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # No producer sends the highest rate: the run falls behind at once. Before the fix it
    # went on until it had sent all 10 million events, whatever the duration said.
    out = tmp_path / "summary.json"
    kafka = ["--bootstrap-servers", kafka_bootstrap, "--topic", unique_topic]
    load = ["--rate", f"{MAX_RATE_PER_S:g}", "--duration", "1s", "--batch", "1000", "--seed", "5"]
    args = parse([*kafka, *load, "--summary-json", str(out)])
    async with asyncio.timeout(DEADLINE):  # the bound on the run: its duration was 1 s
        assert await run_produce(args) == 0
    assert "fell behind: the run stopped at the end of its duration" in capsys.readouterr().err
    summary = msgspec.json.decode(out.read_bytes(), type=ProduceSummary)
    spec = spec_from_args(args)
    assert spec.rate_per_s == MAX_RATE_PER_S
    assert summary.fell_behind
    assert summary.realtime
    assert not summary.stopped
    assert 0 < summary.events < (spec.total_events or 0)
    assert summary.offset_s < spec.duration_s
    # What it counted was sent, and is exactly the start of the run.
    records = await consume_all(kafka_bootstrap, unique_topic, summary.records)
    events = decode_all(records, "json")
    assert len(events) == summary.events
    expected = Tally(spec.services)
    expected.add(LoadGenerator(spec).columns_for(summary.start_ts, 0, summary.events))
    assert summary.events_by_service == expected.events
    assert counts(events) == (
        {s: n for s, n in expected.events.items() if n},
        {s: n for s, n in expected.bad.items() if n},
    )


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.mark.asyncio
async def test_an_unreachable_broker_is_a_one_line_error() -> None:
    bootstrap = f"127.0.0.1:{closed_port()}"
    with pytest.raises(ProduceError, match=r"cannot connect to Kafka at 127\.0\.0\.1:") as info:
        await produce(bootstrap, "t", SPEC, realtime=False, connect_timeout_s=10)
    assert "\n" not in str(info.value)


@pytest.mark.asyncio
async def test_the_command_reports_an_unreachable_broker_in_one_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = parse(["--bootstrap-servers", f"127.0.0.1:{closed_port()}", "--duration", "1s"])
    assert await run_produce(args) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("burnrate produce: cannot connect to Kafka at 127.0.0.1:")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        pytest.param(["--incident", "20@1m"], "write 20% for a percentage", id="a bad incident"),
        pytest.param(["--rate", "-3"], "rate '-3' must be a number > 0", id="a negative rate"),
        pytest.param(
            ["--rate", "1e12", "--duration", "1s"],
            "rate '1e12' is more than 10,000,000 events per second",
            id="a rate no producer can send",
        ),
        pytest.param(["--duration", "10"], "not a duration like 90s", id="a unitless duration"),
        pytest.param(["--error-ratio", "3"], "write 3% for a percentage", id="a ratio above 1"),
        pytest.param(["--batch", "0"], "between 1 and 100000", id="an empty batch"),
        pytest.param(["--format", "xml"], "invalid choice: 'xml'", id="an unknown format"),
        pytest.param(["--start", "yesterday"], "neither epoch seconds", id="an unreadable start"),
    ],
)
def test_bad_options_exit_2_with_the_reason(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        parse(argv)
    assert info.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("argv", "message"),
    [
        pytest.param(
            ["--incident", "checkout:20%@1m"],
            "names service 'checkout', which is not one of the services",
            id="an incident for a service that is not produced",
        ),
        pytest.param(
            ["--duration", "1m", "--incident", "20%@5m"],
            "starts after the end of the 1m run",
            id="an incident after the end",
        ),
        pytest.param(
            ["--start", "0"], "--start needs --as-fast-as-possible", id="a start in real time"
        ),
        pytest.param(
            ["--duration", "forever", "--as-fast-as-possible"],
            "forever needs real-time pacing",
            id="an endless run as fast as possible",
        ),
    ],
)
async def test_options_that_do_not_fit_together_exit_2_before_connecting(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    args = parse(["--bootstrap-servers", f"127.0.0.1:{closed_port()}", *argv])
    assert await run_produce(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("burnrate produce: error: ")
    assert message in err


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "bootstrap",
    [
        pytest.param("localhost:http", id="a port that is no number"),
        pytest.param("localhost:9092,,other:9092", id="an empty entry"),
        pytest.param("::1:9092", id="an IPv6 address without brackets"),
        pytest.param("[::1:9092", id="an unclosed bracket"),
        pytest.param("host:70000", id="a port out of range"),
    ],
)
async def test_malformed_bootstrap_servers_exit_2_naming_them(
    bootstrap: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await run_produce(parse(["--bootstrap-servers", bootstrap])) == 2
    err = capsys.readouterr().err
    assert err.startswith("burnrate produce: error: --bootstrap-servers: bootstrap server")
