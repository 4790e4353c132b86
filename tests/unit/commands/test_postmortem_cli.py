"""`burnrate postmortem`: both forms against the same generated events, their output
(Markdown parsed, JSON against the contract, the PNG files) and exit codes.

The live form runs against a real engine HTTP server whose evaluator and incident
recorder took the events file block by block as `burnrate run` takes batches (on an
event loop in a thread of its own); the offline form replays the same file."""

from __future__ import annotations

import asyncio
import gzip
import json
import math
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Coroutine, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import msgspec
import pytest
from markdown_it import MarkdownIt

from engine.adapters.http.metrics import EngineMetrics
from engine.adapters.http.server import HttpServer
from engine.cli import main
from engine.core.changes import ChangeLog
from engine.core.config import Config
from engine.core.evaluator import Evaluator, Transition
from engine.core.ingest import Ingestor
from engine.runtime.incidents import IncidentRecorder, incident_recorder
from tests.unit.runtime.test_postmortem import (
    CONFIG_TEXT,
    OUTAGE_S,
    config,
    counted,
    events,
    write,
)

ROOT = Path(__file__).resolve().parents[3]
BATCH = 20
"""Lines an engine takes at a time (a consumer's batch: about 30 s of the stream)."""
T = TypeVar("T")


class Engine:
    """An engine HTTP server whose evaluator and incidents took the events file, block
    by block, until `stop(incidents)` says enough; on its own loop in a thread."""

    def __init__(self, cfg: Config, path: Path) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.ev = ev = Evaluator(cfg)
        self.ingestor = Ingestor(ev)
        lines = path.read_bytes().splitlines(keepends=True)
        self.blocks = iter(b"".join(lines[k : k + BATCH]) for k in range(0, len(lines), BATCH))
        metrics = EngineMetrics(ev, lambda: None)

        async def start() -> tuple[HttpServer, IncidentRecorder]:
            recorder = incident_recorder(ev.config, ev, ChangeLog(60, 10), metrics, lambda: 0.0)
            assert recorder is not None
            await recorder.start()
            server = HttpServer("127.0.0.1:0", metrics, lambda: None, incidents=recorder)
            await server.start()
            return server, recorder

        self.server, self.recorder = self.run(start())

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(60)

    def feed(self, *, until_closed: bool) -> None:
        """Take blocks (as `run` takes batches) until an incident has closed, or to the
        end of the file (and the flush of its last tick)."""

        async def feed() -> None:
            for block in self.blocks:
                self.take(self.ingestor.json_lines(block, stream_future=True).transitions)
                if until_closed and any(
                    i.state == "closed" for i in self.recorder.pending.values()
                ):
                    break
            else:
                self.take(self.ingestor.flush())
            assert await self.recorder.written(5.0)

        self.run(feed())

    def take(self, transitions: Sequence[Transition]) -> None:
        self.recorder.transitions(list(transitions))
        self.recorder.tick()

    def close(self) -> None:
        self.run(self.server.stop())
        self.run(self.recorder.close(5.0))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("pm")
    cfg = tmp / "slo.yaml"
    cfg.write_text(CONFIG_TEXT)
    return cfg, write(tmp / "events.jsonl", events())


def postmortem(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["postmortem", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def offline_json(capsys: pytest.CaptureFixture[str], files: tuple[Path, Path]) -> Any:
    code, out, err = postmortem(
        capsys, "--config", str(files[0]), "--events", str(files[1]), "--format", "json"
    )
    assert (code, err) == (0, "")
    return json.loads(out)


def test_json_follows_the_contract(
    files: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    body = offline_json(capsys, files)
    assert body["source"] == "replay"
    [inc] = body["incidents"]
    assert {"service", "opened_at", "closed_at", "slos", "detection", "timeline", "changes"} <= set(
        inc
    )
    [slo] = inc["slos"]
    assert {"slo", "bad_events", "total_events", "error_budget_consumed_ratio"} <= set(slo)
    assert set(inc["detection"]) >= {
        "onset_at",
        "fired_at",
        "acknowledged_at",
        "resolved_at",
        "time_to_detect_s",
    }
    assert slo["bad_events"] == (OUTAGE_S[1] - OUTAGE_S[0]) // 4
    assert next(e["kind"] for e in inc["timeline"]) == "opened"
    assert inc["timeline"][-1]["kind"] == "closed"


def test_markdown_parses_into_the_template_with_its_charts(
    files: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_md = tmp_path / "shop.md"
    code, out, err = postmortem(
        capsys, "--config", str(files[0]), "--events", str(files[1]), "--output", str(out_md)
    )
    assert (code, out, err) == (0, "", "")
    [inc] = offline_json(capsys, files)["incidents"]
    tokens = MarkdownIt("commonmark").enable("table").parse(out_md.read_text())
    headings = [tokens[k + 1].content for k, t in enumerate(tokens) if t.type == "heading_open"]
    assert headings == [
        f"Postmortem: shop incident {inc['id']}",
        "Summary",
        "Impact",
        "Detection and response",
        "Timeline (UTC)",
        "Contributing changes",
        "Charts",
        "Root cause",
        "What went well",
        "What went wrong",
        "Action items",
    ]
    cells = [t.content for t in tokens if t.type == "inline"]
    row = cells.index("shop-avail", cells.index("Resolution"))
    slo = inc["slos"][0]
    assert cells[row + 1 : row + 3] == [str(slo["bad_events"]), str(slo["total_events"])]
    assert cells[row + 3] == f"{100 * slo['error_budget_consumed_ratio']:.2f}%"
    assert cells[cells.index("Onset (estimated)") + 1] >= "2026-01-01 01:00:00Z"
    images = [
        c.attrs["src"]
        for t in tokens
        if t.type == "inline"
        for c in t.children or ()
        if c.type == "image"
    ]
    assert images == [f"shop-{inc['id']}-shop-avail.png"]
    png = (tmp_path / str(images[0])).read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    assert len(png) > 10_000


def test_stdout_writes_the_charts_in_the_working_directory(
    files: tuple[Path, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    code, out, _ = postmortem(capsys, "--config", str(files[0]), "--events", str(files[1]))
    assert code == 0
    [png] = tmp_path.glob("postmortem-*-shop-avail.png")
    assert f"]({png.name})" in out


def test_without_matplotlib_the_markdown_says_why(files: tuple[Path, Path], tmp_path: Path) -> None:
    """A process in which matplotlib cannot be imported (as if it were not installed)."""
    script = (
        "import sys; sys.modules['matplotlib'] = None\n"
        "from engine.cli import main\n"
        f"sys.exit(main(['postmortem', '--config', {str(files[0])!r}, '--events', "
        f"{str(files[1])!r}, '--output', {str(tmp_path / 'pm.md')!r}]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert (done.returncode, done.stderr) == (0, "")
    text = (tmp_path / "pm.md").read_text()
    assert "Charts were not drawn: matplotlib cannot be imported" in text
    assert "burnrate[charts]" in text
    assert list(tmp_path.glob("*.png")) == []


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--from", "2026-01-01T02:00:00Z", "--to", "2026-01-01T01:00:00Z"], "--from must be"),
        (["--from", "1767229200", "--to", "1767229200"], "--from must be before --to"),
        (["--incident", "x"], "not both"),
    ],
)
def test_usage_errors_exit_2(
    files: tuple[Path, Path], capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    code, out, err = postmortem(capsys, "--config", str(files[0]), "--events", str(files[1]), *argv)
    assert (code, out) == (2, "")
    assert message in err


@pytest.mark.parametrize(
    "argv", [[], ["--events", "e.jsonl"], ["--incident", "x", "--service", "shop"]]
)
def test_one_form_must_be_given_whole(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    code, _, err = postmortem(capsys, *argv)
    assert code == 2
    assert err.startswith("burnrate postmortem: ")


def test_a_missing_events_file_is_a_usage_error(
    files: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nothing.jsonl"
    with pytest.raises(SystemExit) as exc:
        main(["postmortem", "--config", str(files[0]), "--events", str(missing)])
    assert exc.value.code == 2
    assert capsys.readouterr() == ("", f"burnrate postmortem: no such events file: {missing}\n")


def test_a_bad_time_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["postmortem", "--config", "c", "--events", "e", "--from", "yesterday"])
    assert exc.value.code == 2
    assert "not a time: 'yesterday'" in capsys.readouterr().err


def test_from_and_to_select_by_opening(
    files: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["--config", str(files[0]), "--events", str(files[1]), "--format", "json"]
    code, out, _ = postmortem(
        capsys, *base, "--from", "2026-01-01T00:50Z", "--to", "2026-01-01T01:20Z"
    )
    assert code == 0
    assert len(json.loads(out)["incidents"]) == 1
    code, out, err = postmortem(capsys, *base, "--from", "2026-01-01T02:00:00Z")
    assert (code, out) == (1, "")
    assert "no incidents" in err
    code, _, err = postmortem(capsys, *base, "--service", "blog")
    assert code == 1
    assert "no incidents of blog" in err


# -- live ---------------------------------------------------------------------------


@pytest.fixture
def engine(files: tuple[Path, Path], tmp_path: Path) -> Iterator[Engine]:
    """An engine with an incident store of its own (the config names none: the default
    path is relative to the working directory)."""
    cfg = config()
    assert cfg.incidents is not None
    store = msgspec.structs.replace(cfg.incidents, path=str(tmp_path / "live.db"))
    e = Engine(msgspec.structs.replace(cfg, incidents=store), files[1])
    yield e
    e.close()


def live_json(capsys: pytest.CaptureFixture[str], url: str, incident_id: str) -> Any:
    code, out, err = postmortem(capsys, "--incident", incident_id, "--url", url, "--format", "json")
    assert (code, err) == (0, ""), err
    body = json.loads(out)
    assert body["source"] == "live"
    [inc] = body["incidents"]
    return inc


def test_live_right_after_the_close_agrees_with_offline(
    engine: Engine, files: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    engine.feed(until_closed=True)
    [offline] = offline_json(capsys, files)["incidents"]
    live = live_json(capsys, engine.server.url, offline["id"])
    # the same incident, found the same way
    for key in ("id", "service", "state", "opened_at", "closed_at", "detection", "timeline"):
        assert live[key] == offline[key], key
    # the finest ring still reaches back to the onset: the same resolution, the same numbers
    assert live["slos"] == offline["slos"]
    assert live["slos"][0]["resolution_s"] == 10


def test_live_later_counts_at_the_resolution_the_rings_still_hold(
    engine: Engine, files: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    engine.feed(until_closed=False)
    [offline] = offline_json(capsys, files)["incidents"]
    live = live_json(capsys, engine.server.url, offline["id"])
    [slo] = live["slos"]
    r = slo["resolution_s"]
    assert r > 10  # hours later the 10 s ring no longer reaches back to the onset
    # whole buckets of r, the start rounded inward, the end outward: no finer ring
    # reaches back to the close any more to take the part after it off
    start = math.ceil(live["impact_start_s"] / r) * r
    end = math.ceil(live["impact_end_s"] / r) * r
    assert end > live["impact_end_s"]
    total, bad = counted(events(), "shop", start, end)
    assert (slo["total_events"], slo["bad_events"]) == (total, bad)
    assert bad == offline["slos"][0]["bad_events"]  # the outage began after the rounding
    period, _ = counted(events(), "shop", live["impact_end_s"] - 30 * 86400, end)
    assert slo["period_events"] == period


def test_live_unknown_incident_is_exit_1(
    engine: Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = postmortem(capsys, "--incident", "1-nosuch", "--url", engine.server.url)
    assert (code, out) == (1, "")
    assert "no incident has that id (1-nosuch)" in err


def test_live_engine_nobody_runs_is_exit_3(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code, out, err = postmortem(
        capsys, "--incident", "x", "--url", f"http://127.0.0.1:{port}", "--timeout", "5"
    )
    assert (code, out) == (3, "")
    assert "cannot reach" in err


def test_a_damaged_gzip_file_gives_what_lies_before_the_damage_and_exit_1(
    files: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    whole = gzip.compress(files[1].read_bytes())
    damaged = tmp_path / "events.jsonl.gz"
    damaged.write_bytes(whole[: len(whole) * 3 // 4])  # cut short after the incident
    code, out, err = postmortem(
        capsys, "--config", str(files[0]), "--events", str(damaged), "--format", "json"
    )
    assert code == 1
    [inc] = json.loads(out)["incidents"]
    assert inc["state"] == "closed"
    assert "the postmortems cover the lines before" in err
