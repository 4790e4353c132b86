"""HTTPS and mutual TLS over real sockets: the server (aiohttp behind `http.tls`) on
127.0.0.1 port 0, with a CA made in the test; clients are aiohttp and the `curl` binary,
both trusting that CA. With `client_ca_file`, a client without a certificate, or with
one from another CA, is refused in the handshake; one from the right CA is served."""

from __future__ import annotations

import asyncio
import os
import shutil
import ssl
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio

from engine.adapters.http.metrics import EngineMetrics
from engine.adapters.http.server import HttpServer
from engine.adapters.http.tokens import token_digest
from engine.core.config import parse_config
from engine.core.evaluator import Evaluator
from tests.certs import CA, Issued

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "https-Token-0123456789"
CONFIG = (
    "slos: [{name: checkout-availability, service: checkout, sli: availability, objective: 99}]\n"
)


def curl_binary() -> str:
    path = shutil.which("curl")
    assert path is not None, "the HTTPS tests need the curl binary (Debian package curl)"
    return path


class Pki:
    def __init__(self, directory: Path) -> None:
        self.ca = CA(directory, "burnrate ca")
        self.other_ca = CA(directory, "other ca")
        self.server = self.ca.issue("server", server=True)
        self.client = self.ca.issue("client", server=False)
        self.stranger = self.other_ca.issue("stranger", server=False)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return Pki(tmp_path_factory.mktemp("pki"))


Serve = Callable[[bool, bool], Awaitable[HttpServer]]
"""Start a server: (mutual TLS?, tokens?)."""


@pytest_asyncio.fixture
async def serve(pki: Pki) -> AsyncIterator[Serve]:
    servers: list[HttpServer] = []

    async def start(mtls: bool, tokens: bool) -> HttpServer:
        tls = f"    cert_file: '{pki.server.cert_file}'\n    key_file: '{pki.server.key_file}'\n"
        if mtls:
            tls += f"    client_ca_file: '{pki.ca.cert_file}'\n"
        text = CONFIG + "http:\n  listen: 127.0.0.1:0\n  tls:\n" + tls
        if tokens:
            digest = token_digest(TOKEN).hex()
            text += f"  tokens: [{{name: scraper, scopes: [read], sha256: {digest}}}]\n"
        ev = Evaluator(parse_config(text))
        server = HttpServer("127.0.0.1:0", EngineMetrics(ev, lambda: None), lambda: None)
        await server.start()
        servers.append(server)
        return server

    try:
        yield start
    finally:
        for server in servers:
            await server.stop()


def client_context(pki: Pki, cert: Issued | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(pki.ca.cert_file))
    if cert is not None:
        ctx.load_cert_chain(str(cert.cert_file), str(cert.key_file))
    return ctx


async def get(url: str, ctx: ssl.SSLContext | bool, token: str | None = None) -> tuple[int, bytes]:
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session,
        session.get(url, ssl=ctx, headers=headers) as resp,
    ):
        return resp.status, await resp.read()


async def curl(*args: str) -> tuple[int, str, str]:
    """curl's exit code, the HTTP status it printed (or ""), and its stderr."""
    proc = await asyncio.create_subprocess_exec(
        curl_binary(),
        "--silent",
        "--show-error",
        "--max-time",
        "10",
        "--output",
        "/dev/null",
        "--write-out",
        "%{http_code}",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    code = out.decode().strip()
    return proc.returncode or 0, "" if code == "000" else code, err.decode()


@pytest.mark.asyncio
async def test_https_with_aiohttp_and_curl_trusting_the_test_ca(serve: Serve, pki: Pki) -> None:
    server = await serve(False, True)
    assert server.url.startswith("https://127.0.0.1:")
    ctx = client_context(pki)
    assert await get(f"{server.url}/healthz", ctx) == (200, b'{"status": "ok"}')
    status, body = await get(f"{server.url}/metrics", ctx, TOKEN)
    assert status == 200
    assert b"burnrate_slo_objective_ratio" in body
    assert (await get(f"{server.url}/metrics", ctx))[0] == 401

    ca = str(pki.ca.cert_file)
    assert await curl("--cacert", ca, f"{server.url}/healthz") == (0, "200", "")
    bearer = f"Authorization: Bearer {TOKEN}"
    assert await curl("--cacert", ca, "-H", bearer, f"{server.url}/metrics") == (0, "200", "")
    assert await curl("--cacert", ca, f"{server.url}/metrics") == (0, "401", "")
    # curl without the CA does not trust the server; plain HTTP gets no HTTP answer.
    code, status, _ = await curl(f"{server.url}/healthz")
    assert (code, status) == (60, "")
    with pytest.raises(aiohttp.ClientError):
        await get(server.url.replace("https://", "http://") + "/healthz", False)


@pytest.mark.asyncio
async def test_mutual_tls_serves_only_clients_with_a_certificate_of_the_ca(
    serve: Serve, pki: Pki
) -> None:
    server = await serve(True, False)
    url = f"{server.url}/metrics"
    # A certificate of the configured CA: served.
    status, body = await get(url, client_context(pki, pki.client))
    assert status == 200
    assert b"burnrate_slo_objective_ratio" in body
    # No certificate, or one of another CA: the handshake fails, no HTTP answer.
    for cert in (None, pki.stranger):
        with pytest.raises(aiohttp.ClientError):
            await get(url, client_context(pki, cert))
    assert await get(f"{server.url}/healthz", client_context(pki, pki.client)) == (
        200,
        b'{"status": "ok"}',
    )

    ca = str(pki.ca.cert_file)
    mine = ["--cert", str(pki.client.cert_file), "--key", str(pki.client.key_file)]
    theirs = ["--cert", str(pki.stranger.cert_file), "--key", str(pki.stranger.key_file)]
    assert await curl("--cacert", ca, *mine, url) == (0, "200", "")
    for extra in ([], theirs):
        code, status, err = await curl("--cacert", ca, *extra, url)
        assert code != 0, (extra, status)
        assert status == ""
        assert err
    # The server still serves the right client after the refusals.
    assert await curl("--cacert", ca, *mine, url) == (0, "200", "")


@pytest.mark.asyncio
async def test_the_gate_command_talks_https_trusting_the_ca_of_ssl_cert_file(
    serve: Serve, pki: Pki
) -> None:
    server = await serve(False, True)
    env = {k: v for k, v in os.environ.items() if k != "SSL_CERT_DIR"}
    env |= {
        "PYTHONPATH": str(ROOT),
        "SSL_CERT_FILE": str(pki.ca.cert_file),
        "BURNRATE_TEST_TOKEN": TOKEN,
    }

    async def gate(*extra: str) -> tuple[int, str, str]:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "engine",
            "gate",
            "--service",
            "checkout",
            "--url",
            server.url,
            *extra,
            env=env,
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), 60)
        return proc.returncode or 0, out.decode(), err.decode()

    code, out, err = await gate("--token-env", "BURNRATE_TEST_TOKEN")
    assert code == 0, err
    assert "pass" in out
    code, _, err = await gate()
    assert code == 2
    assert "refused no token" in err
