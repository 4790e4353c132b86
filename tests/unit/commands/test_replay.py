"""`burnrate replay`: deterministic backtests over JSON Lines files (plain or gzip)."""

from __future__ import annotations

import gzip
import io
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from engine.commands.replay import print_summary, run_replay
from engine.core.config import Config, load_config, parse_config
from engine.runtime.replay import replay

ROOT = Path(__file__).resolve().parents[3]
EXAMPLE = ROOT / "configs" / "example.yaml"
SAMPLE = ROOT / "configs" / "sample-events.jsonl.gz"
CONTRACT_KEYS: dict[str, type | tuple[type, ...]] = {
    "slo": str,
    "severity": str,
    "state": str,
    "at": (int, float),
    "long_window_s": int,
    "short_window_s": int,
    "burn_rate_long": float,
    "burn_rate_short": float,
}
T0 = 1_767_225_600  # 2026-01-01T00:00:00Z

SMALL_CONFIG = parse_config(
    """
slos:
  - name: api-availability
    service: api
    sli: availability
    objective: 99.9
  - name: api-latency
    service: api
    sli: latency
    threshold_ms: 300
    objective: 99
"""
)


def _replay(config: Config, path: Path) -> tuple[bytes, str]:
    """Transitions as the command writes them, and the summary text."""
    enc = msgspec.json.Encoder()
    lines: list[bytes] = []
    result = replay(config, path, lambda tr: lines.append(enc.encode(tr) + b"\n"))
    summary = io.StringIO()
    print_summary(result, summary)
    return b"".join(lines), summary.getvalue()


def _synthetic_lines(hours: int = 3) -> Iterator[bytes]:
    """Ten events per line, one per second; from 1h to 1h15m half the requests fail and
    are slow, enough to page on both SLOs, which then resolve."""
    for t in range(T0, T0 + hours * 3600, 10):
        incident = T0 + 3600 <= t < T0 + 4500
        batch = [
            {
                "service": "api",
                "ts": t + k + 0.5,
                "status": 500 if incident and k % 2 else 200,
                "latency_ms": 900.0 if incident and k % 2 else 40.0,
            }
            for k in range(10)
        ]
        yield msgspec.json.encode(batch)


def _write(path: Path, lines: list[bytes], *, compress: bool) -> Path:
    data = b"".join(line + b"\n" for line in lines)
    path.write_bytes(gzip.compress(data, mtime=0) if compress else data)
    return path


@pytest.fixture(scope="module")
def sample_output() -> tuple[bytes, str]:
    return _replay(load_config(EXAMPLE), SAMPLE)


SYNTHETIC = list(_synthetic_lines())


@pytest.fixture(scope="module")
def synthetic_output(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, str]:
    path = tmp_path_factory.mktemp("synthetic") / "events.jsonl"
    return _replay(SMALL_CONFIG, _write(path, SYNTHETIC, compress=False))


def _transitions(output: bytes) -> list[dict[str, Any]]:
    return [json.loads(line) for line in output.splitlines()]


# --- the bundled sample ------------------------------------------------------------------


def test_the_sample_pages_and_resolves_checkout_availability(
    sample_output: tuple[bytes, str],
) -> None:
    pages = [
        t
        for t in _transitions(sample_output[0])
        if t["slo"] == "checkout-availability" and t["severity"] == "page"
    ]
    assert [t["state"] for t in pages[:2]] == ["firing", "resolved"]
    firing, resolved = pages[:2]
    assert resolved["at"] > firing["at"]
    assert firing["burn_rate_long"] >= firing["factor"]
    assert firing["burn_rate_short"] >= firing["factor"]
    # a resolved transition carries the row that fired last
    assert (resolved["long_window_s"], resolved["short_window_s"]) == (
        firing["long_window_s"],
        firing["short_window_s"],
    )
    assert resolved["burn_rate_short"] < resolved["factor"]


def test_every_transition_line_has_the_contract_keys(sample_output: tuple[bytes, str]) -> None:
    transitions = _transitions(sample_output[0])
    assert transitions
    for tr in transitions:
        for key, kind in CONTRACT_KEYS.items():
            assert isinstance(tr[key], kind), (key, tr)
        assert tr["severity"] in {"page", "ticket"}
        assert tr["state"] in {"firing", "resolved"}
        assert tr["long_window_s"] > tr["short_window_s"] > 0


def test_transitions_alternate_per_alert_and_run_in_event_time(
    sample_output: tuple[bytes, str],
) -> None:
    transitions = _transitions(sample_output[0])
    assert [t["at"] for t in transitions] == sorted(t["at"] for t in transitions)
    last: dict[tuple[str, str], str] = {}
    for tr in transitions:
        key = (tr["slo"], tr["severity"])
        assert last.get(key, "resolved") != tr["state"], tr
        last[key] = tr["state"]


def test_the_sample_summary_counts_its_bad_lines(sample_output: tuple[bytes, str]) -> None:
    summary = sample_output[1]
    assert summary.splitlines()[0].split()[:3] == ["slo", "events", "bad"]
    for name in (
        "checkout-availability",
        "checkout-latency",
        "catalog-availability",
        "ledger-availability",
    ):
        assert name in summary
    assert "records: 10789," in summary
    assert "rejected: malformed=1, missing_service=1, wrong_type=1" in summary


def test_replay_is_deterministic_byte_for_byte(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = load_config(EXAMPLE)
    runs = []
    for name in ("first.jsonl", "second.jsonl"):
        assert run_replay(config, SAMPLE, tmp_path / name) == 0
        runs.append(((tmp_path / name).read_bytes(), capsys.readouterr().err))
    assert runs[0] == runs[1]
    assert runs[0][0].count(b"\n") >= 2


def test_plain_and_gzip_files_give_the_same_result(
    tmp_path: Path, sample_output: tuple[bytes, str]
) -> None:
    plain = tmp_path / "sample-events.jsonl"
    plain.write_bytes(gzip.decompress(SAMPLE.read_bytes()))
    assert _replay(load_config(EXAMPLE), plain) == sample_output


@pytest.mark.parametrize(
    ("name", "compress"),
    [
        pytest.param("events.jsonl", False, id="a plain jsonl file"),
        pytest.param("events.jsonl.gz", True, id="a gzip jsonl.gz file"),
        pytest.param("events.jsonl", True, id="gzip content is recognised without the suffix"),
        pytest.param("events.jsonl.gz", False, id="plain content under a gz name is read plain"),
    ],
)
def test_files_are_recognised_by_content(
    tmp_path: Path, name: str, compress: bool, synthetic_output: tuple[bytes, str]
) -> None:
    path = _write(tmp_path / name, SYNTHETIC, compress=compress)
    assert _replay(SMALL_CONFIG, path) == synthetic_output


def test_the_synthetic_incident_pages_and_resolves(synthetic_output: tuple[bytes, str]) -> None:
    pages = [
        (t["slo"], t["state"]) for t in _transitions(synthetic_output[0]) if t["severity"] == "page"
    ]
    assert pages.count(("api-availability", "firing")) == 1
    assert pages.count(("api-availability", "resolved")) == 1
    assert pages.count(("api-latency", "firing")) == 1


def test_a_last_line_without_newline_is_read(
    tmp_path: Path, synthetic_output: tuple[bytes, str]
) -> None:
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"\n".join(SYNTHETIC))
    assert _replay(SMALL_CONFIG, path) == synthetic_output


def test_an_empty_file_replays_to_nothing(tmp_path: Path) -> None:
    output, summary = _replay(SMALL_CONFIG, _write(tmp_path / "e.jsonl", [], compress=False))
    assert output == b""
    assert "records: 0," in summary
    assert "no data" in summary


# --- bad lines ---------------------------------------------------------------------------

GOOD = b'{"service":"api","ts":%d,"status":200,"latency_ms":10}'

BAD_LINES = [
    pytest.param(b"{not json", "malformed", id="a line that is not JSON is counted as malformed"),
    pytest.param(b'{"service":"api","ts":', "malformed", id="a truncated line is malformed"),
    pytest.param(b'{"service":7,"ts":1}', "wrong_type", id="a numeric service is a wrong type"),
    pytest.param(b'{"ts":1767225601}', "missing_service", id="a line without service"),
    pytest.param(
        b'{"service":"api","ts":1767225601,"count":0}',
        "bad_value",
        id="a count of 0 is a bad value",
    ),
    pytest.param(
        b'{"service":"api","status":500}',
        "missing_ts",
        id="an event without ts has nothing to fall back on in a replay",
    ),
    pytest.param(
        b'{"service":"\xff\xfe","ts":1767225601}',
        "malformed",
        id="invalid utf-8 in a line is counted, not fatal",
    ),
    pytest.param(
        b'{"service":"api","ts":1767225601,"x":' + b"[" * 5000 + b"]" * 5000 + b"}",
        "malformed",
        id="a line nested 5000 deep is counted, not fatal",
    ),
]


@pytest.mark.parametrize(("bad", "reason"), BAD_LINES)
def test_bad_lines_are_counted_and_not_fatal(tmp_path: Path, bad: bytes, reason: str) -> None:
    lines = [GOOD % (T0 + i) for i in range(5)]
    lines[2:2] = [bad, b"", b"   "]
    output, summary = _replay(SMALL_CONFIG, _write(tmp_path / "e.jsonl", lines, compress=False))
    assert f"rejected: {reason}=1\n" in summary
    assert "records: 6," in summary
    assert "events accepted: 5," in summary
    assert output == b""


# --- the split into read chunks does not matter ------------------------------------------


def _synthetic_with_bad_lines() -> list[bytes]:
    lines = list(SYNTHETIC)
    for at, bad in ((3, b"{oops"), (400, b'{"service":""}'), (700, b"[1,2]"), (1000, b"{}")):
        lines.insert(at, bad)
    return lines


@pytest.mark.parametrize(
    "chunk_bytes",
    [
        pytest.param(64, id="64 byte chunks, shorter than one line"),
        pytest.param(1000, id="1000 byte chunks"),
        pytest.param(65_536, id="64 KiB chunks"),
    ],
)
def test_the_read_chunk_size_does_not_change_the_result(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk_bytes: int
) -> None:
    path = _write(tmp_path / "events.jsonl.gz", _synthetic_with_bad_lines(), compress=True)
    expected = _replay(SMALL_CONFIG, path)
    monkeypatch.setattr("engine.adapters.store.events_file.CHUNK_BYTES", chunk_bytes)
    assert _replay(SMALL_CONFIG, path) == expected
    assert "records: 1084," in expected[1]
    assert "malformed=1" in expected[1]


def test_the_sample_in_small_chunks_gives_the_same_result(
    monkeypatch: pytest.MonkeyPatch, sample_output: tuple[bytes, str]
) -> None:
    monkeypatch.setattr("engine.adapters.store.events_file.CHUNK_BYTES", 50_000)
    assert _replay(load_config(EXAMPLE), SAMPLE) == sample_output


@pytest.mark.parametrize(
    "odd_line",
    [
        pytest.param(
            b'{"service":"api","ts":1767225601} {"service":"api","ts":1767225602}',
            id="a line holding two objects is judged alike in every chunking",
        ),
        pytest.param(
            b'{"service":"api",\n"ts":1767225601}',
            id="an object broken over two lines is judged alike in every chunking",
        ),
    ],
)
def test_odd_lines_do_not_depend_on_their_neighbours(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, odd_line: bytes
) -> None:
    # Far from the odd line there is a bad line: with one big chunk both share a block,
    # with small chunks they do not.
    lines = [GOOD % (T0 + i) for i in range(200)]
    lines[10] = odd_line
    lines[190] = b"{oops"
    path = _write(tmp_path / "events.jsonl", lines, compress=False)
    one_block = _replay(SMALL_CONFIG, path)
    monkeypatch.setattr("engine.adapters.store.events_file.CHUNK_BYTES", 256)
    assert _replay(SMALL_CONFIG, path) == one_block


# --- damaged gzip files: a summary of what was read, where the file ends, exit 1 ---------


def _packed(lines: list[bytes]) -> bytes:
    return gzip.compress(b"".join(line + b"\n" for line in lines), mtime=0)


def _lines_read(err: str) -> int:
    match = re.search(r"after line ([\d,]+) \(", err)
    assert match, err
    return int(match.group(1).replace(",", ""))


@pytest.mark.parametrize("keep", [0.3, 0.6, 0.95])
def test_a_truncated_gzip_file_gives_the_summary_of_what_was_read_and_exit_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], keep: float
) -> None:
    packed = _packed(SYNTHETIC)
    path = tmp_path / "events.jsonl.gz"
    path.write_bytes(packed[: int(len(packed) * keep)])
    out = tmp_path / "transitions.jsonl"
    assert run_replay(SMALL_CONFIG, path, out) == 1
    err = capsys.readouterr().err
    n = _lines_read(err)
    assert 0 < n < len(SYNTHETIC)
    # exactly what the same whole lines give in a file that is not damaged
    prefix = _write(tmp_path / "prefix.jsonl", SYNTHETIC[:n], compress=False)
    expected_output, expected_summary = _replay(SMALL_CONFIG, prefix)
    assert out.read_bytes() == expected_output
    assert err.startswith(expected_summary)
    assert f"records: {n}," in err
    assert err.splitlines()[-1] == (
        f"burnrate replay: events.jsonl.gz: the compressed file ends early at byte "
        f"{path.stat().st_size:,} of the file, after line {n:,} "
        f"({sum(len(line) + 1 for line in SYNTHETIC[:n]):,} bytes); "
        "the summary covers the lines before"
    )
    assert "Traceback" not in err


def test_the_truncated_sample_reports_where_it_ends(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "sample-events.jsonl.gz"
    path.write_bytes(SAMPLE.read_bytes()[:100_000])
    assert run_replay(load_config(EXAMPLE), path, tmp_path / "out.jsonl") == 1
    err = capsys.readouterr().err
    n = _lines_read(err)
    assert f"records: {n}," in err
    assert "sample-events.jsonl.gz: the compressed file ends early at byte 100,000" in err


def test_a_gzip_file_with_a_bad_crc_replays_its_lines_and_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], synthetic_output: tuple[bytes, str]
) -> None:
    packed = bytearray(_packed(SYNTHETIC))
    packed[-8] ^= 0xFF  # the stored CRC-32
    path = tmp_path / "events.jsonl.gz"
    path.write_bytes(bytes(packed))
    out = tmp_path / "transitions.jsonl"
    assert run_replay(SMALL_CONFIG, path, out) == 1
    err = capsys.readouterr().err
    assert out.read_bytes() == synthetic_output[0]
    assert err.startswith(synthetic_output[1])
    last = err.splitlines()[-1]
    assert last.startswith(
        "burnrate replay: events.jsonl.gz: the compressed data is corrupt (CRC check failed"
    )
    assert f"after line {len(SYNTHETIC):,} (" in last


def test_a_file_that_is_not_gzip_after_the_magic_exits_1_with_an_empty_summary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "events.jsonl.gz"
    path.write_bytes(b"\x1f\x8b" + b"".join(line + b"\n" for line in SYNTHETIC[:10]))
    assert run_replay(SMALL_CONFIG, path, tmp_path / "out.jsonl") == 1
    err = capsys.readouterr().err
    assert "records: 0," in err
    assert err.splitlines()[-1].startswith(
        "burnrate replay: events.jsonl.gz: the compressed data is corrupt ("
    )
    assert "before any line" in err


# --- corrections -------------------------------------------------------------------------


def test_replay_honours_the_configs_corrections(tmp_path: Path) -> None:
    """The synthetic incident (1h to 1h15m) inside a correction of api-availability: it
    pages only on latency, and the incident's events are counted apart, exactly."""
    path = _write(tmp_path / "events.jsonl", SYNTHETIC, compress=False)
    cfg = msgspec.structs.replace(
        SMALL_CONFIG,
        corrections=parse_config(
            "slos: [{name: api-availability, service: api, sli: availability, objective: 99}]\n"
            "corrections:\n"
            f"  - {{name: incident, start: {T0 + 3600}, duration: 15m,"
            " slos: [api-availability], reason: known bad deploy}\n"
        ).corrections,
    )
    output, summary = _replay(cfg, path)
    slos = {t["slo"] for t in _transitions(output)}
    assert slos == {"api-latency"}
    plain_output, _ = _replay(SMALL_CONFIG, path)
    assert "api-availability" in {t["slo"] for t in _transitions(plain_output)}

    result = replay(cfg, path, lambda tr: None)
    by_slo = {s.slo: s for s in result.summary().slos}
    # one event per second: the 900 of the incident's 15 minutes are left out
    assert (by_slo["api-availability"].excluded, by_slo["api-availability"].events) == (
        900,
        3 * 3600 - 900,
    )
    assert (by_slo["api-latency"].excluded, by_slo["api-latency"].bad) == (0, 450)
    assert by_slo["api-availability"].bad == 0
    header, availability = summary.splitlines()[:2]
    assert header.split()[:4] == ["slo", "events", "bad", "excluded"]
    assert availability.split()[:4] == ["api-availability", "9900", "0", "900"]


def test_the_summary_has_no_excluded_column_without_corrections(
    synthetic_output: tuple[bytes, str],
) -> None:
    assert "excluded" not in synthetic_output[1]


def test_a_grouped_slo_replays_with_its_groups_in_transitions_and_summary(tmp_path: Path) -> None:
    config = parse_config(
        """
slos:
  - {name: api-availability, service: api, sli: availability, objective: 99.9,
     group_by: [region], max_groups: 1}
"""
    )
    lines = [
        msgspec.json.encode(
            {
                "service": "api",
                "ts": T0 + i,
                "status": 503 if r == "eu" else 200,
                "labels": {"region": r},
            }
        )
        for i in range(0, 1200)
        for r in ("eu", "us")
    ]
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    out, summary = _replay(config, path)
    transitions = _transitions(out)
    assert transitions
    assert {tr["group"] for tr in transitions} == {"region=eu"}
    assert "api-availability{region=eu}" in summary
    assert "api-availability{__other__}" in summary
    plain_out, _ = _replay(SMALL_CONFIG, path)
    assert b'"group"' not in plain_out


def test_replay_writes_budget_alerts_and_names_those_still_firing(tmp_path: Path) -> None:
    path = _write(tmp_path / "events.jsonl", list(_synthetic_lines()), compress=False)
    plain, _ = _replay(SMALL_CONFIG, path)
    config = msgspec.structs.replace(
        SMALL_CONFIG, budget_alerts=parse_config(_BUDGET).budget_alerts
    )
    out, summary = _replay(config, path)
    rows = [json.loads(line) for line in out.splitlines()]
    budget = [(r["slo"], r["kind"], r["state"]) for r in rows if "kind" in r]
    # the outage spends both budgets (a 0.1% budget: 7.5 minutes of half the requests
    # failing is far more than a 30-day budget of three hours of traffic)
    assert ("api-availability", "budget_exhausted", "firing") in budget
    assert ("api-latency", "budget_exhausted", "firing") in budget
    assert all(
        r["kind"] in ("budget_exhausted", "budget_exhaustion_projected")
        for r in rows
        if "kind" in r
    )
    # the burn-rate lines are as before: the budget alerts only add lines
    assert [line for line in out.splitlines() if b'"kind"' not in line] == plain.splitlines()
    assert "budget_exhausted firing at end" in summary


_BUDGET = """
slos: [{name: x, service: x, sli: availability, objective: 99}]
budget_alerts: {}
"""
