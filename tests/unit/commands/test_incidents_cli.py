"""`burnrate incidents`: output and exit codes against a real engine HTTP server with a
real SQLite incident store (aiohttp on port 0, on an event loop in a thread of its
own), a port nobody listens on, an engine without `incidents:` and one with a token."""

from __future__ import annotations

import asyncio
import json
import secrets
import socket
import threading
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from engine.adapters.http.metrics import EngineMetrics
from engine.adapters.http.server import HttpServer
from engine.cli import main
from engine.core.changes import ChangeLog
from engine.core.config import parse_config
from engine.core.evaluator import Evaluator
from engine.runtime.incidents import IncidentRecorder, incident_recorder
from tests.unit.core.test_incidents import tr

T0 = 1_700_000_000.0
SLOS = (
    "slos:\n"
    "  - {name: a1, service: a, sli: availability, objective: 99}\n"
    "  - {name: b1, service: b, sli: availability, objective: 99}\n"
)
T = TypeVar("T")


class Engine:
    """An HTTP server with an incident recorder on SQLite, on its own loop in a thread."""

    def __init__(self, text: str) -> None:
        ev = Evaluator(parse_config(text))
        ev.advance(T0 - 100)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        metrics = EngineMetrics(ev, lambda: None)
        self.recorder: IncidentRecorder | None = None

        async def start() -> HttpServer:
            self.recorder = incident_recorder(ev.config, ev, ChangeLog(60, 10), metrics, time)
            if self.recorder is not None:
                await self.recorder.start()
            server = HttpServer("127.0.0.1:0", metrics, lambda: None, incidents=self.recorder)
            await server.start()
            return server

        self.server = self.run(start())

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)

    def page(self) -> list[str]:
        """a pages at T0, b at T0 + 60 and resolves; their ids once written."""

        async def feed() -> list[str]:
            assert self.recorder is not None
            self.recorder.transitions([tr("a1", "page", "firing", T0)])
            self.recorder.transitions([tr("b1", "page", "firing", T0 + 60)])
            self.recorder.transitions([tr("b1", "page", "resolved", T0 + 90)])
            assert await self.recorder.written(5.0)
            return [i.id for i in self.recorder.book.open_incidents()]

        return self.run(feed())

    def close(self) -> None:
        self.run(self.server.stop())
        if self.recorder is not None:
            self.run(self.recorder.close(5.0))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


def time() -> float:
    return T0


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    db = tmp_path_factory.mktemp("incidents") / "i.db"
    e = Engine(SLOS + f"incidents: {{path: '{db}'}}\n")
    e.page()
    yield e
    e.close()


def incidents(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["incidents", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_the_table_lists_them_newest_first(
    engine: Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = incidents(capsys, "--url", engine.server.url)
    assert (code, err) == (0, "")
    header, b, a = out.splitlines()
    assert header.split() == [
        *("ID", "SERVICE", "STATE", "OPENED", "(UTC)"),
        *("DETECT", "ACK", "BY", "CLOSED", "(UTC)"),
    ]
    assert b.split()[1:5] == ["b", "open", "2023-11-14", "22:14:20Z"]
    assert a.split()[1:5] == ["a", "open", "2023-11-14", "22:13:20Z"]
    assert a.split()[5:] == ["-", "-", "-"]  # no onset, nobody acknowledged, open


def test_filters_and_json(engine: Engine, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = incidents(capsys, "--url", engine.server.url, "--service", "a")
    assert code == 0
    assert [line.split()[1] for line in out.splitlines()[1:]] == ["a"]
    code, out, _ = incidents(capsys, "--url", engine.server.url, "--state", "closed")
    assert (code, out) == (0, "no incidents\n")
    code, out, _ = incidents(capsys, "--url", engine.server.url, "--format", "json")
    assert code == 0
    listing = json.loads(out)
    assert [i["service"] for i in listing["incidents"]] == ["b", "a"]
    assert listing["incidents"][0]["time_to_resolve_s"] == 30.0
    code, out, _ = incidents(capsys, "--url", engine.server.url, "--limit", "1")
    assert len(out.splitlines()) == 2


def test_an_engine_nobody_runs_is_exit_3(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code, out, err = incidents(capsys, "--url", f"http://127.0.0.1:{port}", "--timeout", "5")
    assert (code, out) == (3, "")
    assert err.startswith(f"burnrate incidents: cannot reach http://127.0.0.1:{port}: ")


def test_an_engine_without_incidents_is_exit_1(capsys: pytest.CaptureFixture[str]) -> None:
    e = Engine(SLOS)
    try:
        code, out, err = incidents(capsys, "--url", e.server.url)
    finally:
        e.close()
    assert (code, out) == (1, "")
    assert "incidents are not configured" in err


def test_the_token(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    token = secrets.token_urlsafe(24)
    (tmp_path / "token").write_text(token)
    db = tmp_path / "i.db"
    e = Engine(
        SLOS
        + f"incidents: {{path: '{db}'}}\n"
        + f"http: {{listen: 127.0.0.1:0, auth_token_file: '{tmp_path / 'token'}'}}\n"
    )
    try:
        code, _, err = incidents(capsys, "--url", e.server.url)
        assert code == 2
        assert "refused no token (give --token-env or --token-file) (401)" in err
        monkeypatch.setenv("TEST_INCIDENTS_TOKEN", token)
        code, out, _ = incidents(
            capsys, "--url", e.server.url, "--token-env", "TEST_INCIDENTS_TOKEN"
        )
        assert (code, out) == (0, "no incidents\n")
        monkeypatch.setenv("TEST_INCIDENTS_TOKEN", "wrong")
        code, _, err = incidents(
            capsys, "--url", e.server.url, "--token-env", "TEST_INCIDENTS_TOKEN"
        )
        assert code == 2
        assert "refused the token (401)" in err
    finally:
        e.close()


@pytest.mark.parametrize("argv", [["--limit", "0"], ["--state", "gone"], ["--format", "xml"]])
def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["incidents", *argv])
    assert exc.value.code == 2
    assert "usage: burnrate incidents" in capsys.readouterr().err
