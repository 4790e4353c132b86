"""`burnrate gate`: exit codes and output against a real engine HTTP server (aiohttp on
port 0 in a thread of its own), a port nobody listens on, and offline over a small
events file."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp import web

from engine.adapters.http.metrics import EngineMetrics
from engine.adapters.http.server import HttpServer
from engine.cli import main
from engine.core.config import parse_config
from engine.core.decode import Event
from engine.core.evaluator import Evaluator

ROOT = Path(__file__).resolve().parents[3]
T0 = 1_700_000_000.0
CONFIG = """\
slos:
  - {name: shop-avail, service: shop, sli: availability, objective: 90}
  - {name: cart-avail, service: cart, sli: availability, objective: 90}
  - {name: blog-avail, service: blog, sli: availability, objective: 90}
evaluation: {tick: 10s}
"""
BAD = {"shop": 20, "cart": 9, "blog": 0}
"""Failed of 100 events per service: shop spends its 10% budget twice (fail), cart 90%
of it (warn), blog none (pass)."""


def events() -> list[Event]:
    return [
        Event(service=service, ts=T0 - 99 + i, status=500 if i < bad else 200)
        for i in range(100)
        for service, bad in BAD.items()
    ]


class Engine:
    """An HTTP server over a fed evaluator, on its own event loop in a thread."""

    def __init__(self, http: str = "") -> None:
        ev = Evaluator(parse_config(CONFIG + http))
        ev.ingest(ev.classifier.columns(events()))
        ev.advance(T0 + 1)
        self.loop = asyncio.new_event_loop()
        self.server = HttpServer("127.0.0.1:0", EngineMetrics(ev, lambda: None), lambda: None)
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.server.start(), self.loop).result(10)

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.server.stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture(scope="module")
def engine() -> Iterator[Engine]:
    e = Engine()
    yield e
    e.close()


def gate(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["gate", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_fail_exits_1_with_the_reasons(engine: Engine, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = gate(capsys, "--service", "shop", "--url", engine.server.url)
    assert code == 1
    assert out.splitlines() == [
        "shop: fail",
        "  - shop-avail: error budget remaining -100% is at or below 0% -> fail",
        "  - shop-avail: error budget remaining -100% is below 25% -> warn",
        "  - shop-avail: ticket alert firing -> warn",
    ]
    assert err == ""


def test_warn_exits_0_with_a_warning(engine: Engine, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = gate(capsys, "--service", "cart", "--url", engine.server.url + "/")
    assert code == 0
    assert out.splitlines()[0] == "cart: warn"
    assert "cart-avail: error budget remaining 10% is below 25% -> warn" in out
    assert err == "burnrate gate: warning: cart is at warn; shipping anyway\n"


def test_pass_exits_0(
    engine: Engine, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BURNRATE_URL", engine.server.url)
    assert gate(capsys, "--service", "blog") == (0, "blog: pass\n", "")


def test_an_unknown_service_is_a_usage_error(
    engine: Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = gate(capsys, "--service", "nobody", "--url", engine.server.url)
    assert (code, out) == (2, "")
    assert (
        err
        == f"burnrate gate: no SLO of the engine at {engine.server.url} has the service 'nobody'\n"
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def test_an_unreachable_engine_fails_closed_with_3_or_open_with_0(
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    code, out, err = gate(capsys, "--service", "shop", "--url", url, "--timeout", "5")
    assert (code, out) == (3, "")
    assert err.startswith(f"burnrate gate: cannot reach {url}: ")
    assert err.endswith("; failing closed (--fail-open to pass instead)\n")
    code, out, err = gate(capsys, "--service", "shop", "--url", url, "--fail-open")
    assert (code, out) == (0, "")
    assert err.startswith(f"burnrate gate: warning: cannot reach {url}: ")
    assert err.endswith("; passing (--fail-open)\n")


def test_the_console_command_exits_3_on_a_real_unreachable_url() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    url = f"http://127.0.0.1:{free_port()}"
    proc = subprocess.run(
        [sys.executable, "-m", "engine", "gate", "--service", "shop", "--url", url],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 3, proc.stderr
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.splitlines()) == 1


def test_the_token_from_a_file_or_the_environment(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    token = f"tok-{secrets.token_urlsafe(24)}"
    token_file = tmp_path / "token"
    token_file.write_text(token + "\n")
    e = Engine(f"http: {{listen: 127.0.0.1:0, auth_token_file: {token_file}}}\n")
    try:
        url = e.server.url
        code, _, err = gate(capsys, "--service", "blog", "--url", url)
        assert code == 2
        assert err == (
            f"burnrate gate: the engine at {url} refused no token (give --token-env or "
            "--token-file) (401)\n"
        )
        assert (
            gate(capsys, "--service", "blog", "--url", url, "--token-file", str(token_file))[0] == 0
        )
        monkeypatch.setenv("GATE_TOKEN", token)
        assert gate(capsys, "--service", "shop", "--url", url, "--token-env", "GATE_TOKEN")[0] == 1
        monkeypatch.setenv("GATE_TOKEN", "tok-wrong")
        code, _, err = gate(capsys, "--service", "shop", "--url", url, "--token-env", "GATE_TOKEN")
        assert code == 2
        assert err == f"burnrate gate: the engine at {url} refused the token (401)\n"
        monkeypatch.delenv("GATE_TOKEN")
        code, _, err = gate(capsys, "--service", "shop", "--url", url, "--token-env", "GATE_TOKEN")
        assert code == 2
        assert err.startswith("burnrate gate: --token-env: ")
    finally:
        e.close()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--service", "s", "--config", "c.yaml"], "--config and --events go together"),
        (["--service", "s", "--events", "e.jsonl"], "--config and --events go together"),
        (
            ["--service", "s", "--config", "c.yaml", "--events", "e", "--url", "http://x"],
            "--url: only without --config",
        ),
        (["--service", "s", "--timeout", "0"], "--timeout must be > 0"),
    ],
)
def test_usage_errors_exit_2(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    code, out, err = gate(capsys, *argv)
    assert (code, out) == (2, "")
    assert message in err


def test_without_a_service_argparse_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["gate"])
    assert exc.value.code == 2
    assert "--service" in capsys.readouterr().err


# -- offline ---------------------------------------------------------------------------


@pytest.fixture
def recorded(tmp_path: Path) -> tuple[str, str]:
    config = tmp_path / "burnrate.yaml"
    config.write_text(CONFIG)
    path = tmp_path / "events.jsonl"
    lines = [json.dumps({"service": e.service, "ts": e.ts, "status": e.status}) for e in events()]
    path.write_text("\n".join(lines) + "\n")
    return str(config), str(path)


@pytest.mark.parametrize(
    ("service", "code", "first"),
    [("shop", 1, "shop: fail"), ("cart", 0, "cart: warn"), ("blog", 0, "blog: pass")],
)
def test_offline_decides_from_a_replay(
    recorded: tuple[str, str],
    capsys: pytest.CaptureFixture[str],
    service: str,
    code: int,
    first: str,
) -> None:
    config, path = recorded
    got, out, _ = gate(capsys, "--config", config, "--events", path, "--service", service)
    assert (got, out.splitlines()[0]) == (code, first)


def test_offline_usage_errors(
    recorded: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    config, path = recorded
    code, _, err = gate(capsys, "--config", config, "--events", path, "--service", "nobody")
    assert code == 2
    assert "has the service 'nobody'" in err
    code, _, err = gate(capsys, "--config", config, "--events", path + ".x", "--service", "shop")
    assert code == 2
    assert "no such events file" in err


def test_check_reports_budget_policy_errors_with_their_path(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text(
        CONFIG + "budget_policy: [{alert_firing: page, lookback: 1h, decision: fail}]\n"
        "gate: {override_max_ttl: 30d}\n"
    )
    assert main(["check", str(path)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.splitlines() == [
        f"{path}: $.budget_policy[0].lookback: only with exhaustion_within",
        f"{path}: $.gate.override_max_ttl: at most 7d, got 30d",
    ]


def test_an_engine_answering_without_a_gate_fails_closed(
    capsys: pytest.CaptureFixture[str],
) -> None:
    async def broken(request: web.Request) -> web.Response:
        return web.Response(status=503, text="upstream down")

    async def serve() -> web.AppRunner:
        app = web.Application()
        app.router.add_get("/v1/gates/{service}", broken)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        return runner

    port = free_port()
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    runner = asyncio.run_coroutine_threadsafe(serve(), loop).result(10)
    try:
        url = f"http://127.0.0.1:{port}"
        code, out, err = gate(capsys, "--service", "shop", "--url", url)
        assert (code, out) == (3, "")
        assert err == (
            f"burnrate gate: the engine at {url} answered 503; failing closed "
            "(--fail-open to pass instead)\n"
        )
        assert gate(capsys, "--service", "shop", "--url", url, "--fail-open")[0] == 0
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
