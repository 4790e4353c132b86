"""A hypothesis fuzz of the HTTP API over real sockets: random methods, paths (the app's
routes, mangled), headers (credentials right and wrong, cookies, odd lengths) and bodies
against a running server with tokens and incidents, whose consumer reports that it is
running (so `/readyz` is ready). No answer is a 5xx, and the server keeps answering
`/healthz` afterwards.

The server runs on its own event loop in a thread; requests are raw bytes on a socket,
so nothing a client library would refuse to send is out of reach.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.adapters.http.auth import COOKIE_NAME
from engine.adapters.http.tokens import token_digest
from engine.adapters.kafka.status import SourceStatus
from tests.unit.adapters.http.test_incidents_api import Engine, config_text

TOKENS = {"operator": ("fuzz-Operate-1", "read, operate, admin"), "reader": ("fuzz-Read-2", "read")}
ROUTES = [
    "/healthz",
    "/readyz",
    "/metrics",
    "/v1/slos",
    "/v1/slos/a1",
    "/v1/slos/a1?group=x",
    "/v1/corrections",
    "/v1/gates/a",
    "/v1/gates/a/override",
    "/v1/changes",
    "/v1/changes?limit=-1",
    "/v1/incidents",
    "/v1/incidents?state=open&limit=999999999999",
    "/v1/incidents/1",
    "/v1/incidents/1/postmortem",
    "/v1/incidents/1/acknowledge",
    "/-/reload",
    "/",
]
visible = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=40)
segment = st.text(
    st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters="?#"), max_size=20
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner),
    max_leaves=10,
)
bodies = st.one_of(
    st.binary(max_size=300),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.fixed_dictionaries(
        {},
        optional={
            "until": st.one_of(st.floats(allow_nan=False), st.text(max_size=10)),
            "reason": st.text(max_size=30),
            "by": st.text(max_size=30),
            "service": st.text(max_size=10),
            "slo": st.text(max_size=10),
            "start": st.floats(allow_nan=False, allow_infinity=False),
            "end": st.floats(allow_nan=False, allow_infinity=False),
            "kind": st.text(max_size=10),
            "at": st.floats(allow_nan=False, allow_infinity=False),
        },
    ).map(lambda d: json.dumps(d).encode()),
)
credentials = st.one_of(
    st.none(),
    st.sampled_from([f"Bearer {t}" for t, _ in TOKENS.values()]),
    visible.map(lambda v: f"Bearer {v}"),
    visible,
)


@st.composite
def requests(draw: st.DrawFn) -> bytes:
    method = draw(
        st.sampled_from(["GET", "HEAD", "POST", "DELETE", "PUT", "PATCH", "OPTIONS"]) | visible
    )
    path = draw(
        st.sampled_from(ROUTES)
        | st.builds(lambda r, s: r + "/" + s, st.sampled_from(ROUTES), segment)
        | segment.map(lambda s: "/" + s)
    )
    headers = [b"Host: 127.0.0.1"]
    auth = draw(credentials)
    if auth is not None:
        headers.append(f"Authorization: {auth}".encode())
    if draw(st.booleans()):
        cookie = draw(st.sampled_from([t for t, _ in TOKENS.values()]) | visible)
        headers.append(f"Cookie: {COOKIE_NAME}={cookie}".encode())
    for name, value in draw(st.lists(st.tuples(visible, visible), max_size=4)):
        if name and ":" not in name:
            headers.append(f"{name}: {value}".encode())
    body = draw(bodies)
    length = draw(st.one_of(st.just(len(body)), st.integers(0, len(body))))
    if draw(st.booleans()):
        headers.append(b"Content-Type: application/json")
    headers.append(f"Content-Length: {length}".encode())
    headers.append(b"Connection: close")
    return f"{method} {path} HTTP/1.1\r\n".encode() + b"\r\n".join(headers) + b"\r\n\r\n" + body


class ServerThread:
    """An Engine (server + incident store) on its own event loop in a thread."""

    def __init__(self, text: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.text = text
        self.port = 0
        self._stop: asyncio.Event | None = None
        self.thread = threading.Thread(target=self.loop.run_until_complete, args=(self._main(),))

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        async with Engine(self.text) as engine:
            # a consumer that is running and fetching: /readyz answers 200, so every
            # 5xx the fuzz meets is an error (503 is its answer while not consuming)
            engine.server.status = lambda: SourceStatus(
                assigned=(("t", 0),),
                last_fetch_age_s=0.0,
                last_fetch_at=None,
                lag={},
                records_consumed=0,
                running=True,
            )
            self.port = engine.server.port
            self.ready.set()
            await self._stop.wait()

    def __enter__(self) -> ServerThread:
        self.thread.start()
        assert self.ready.wait(30), "the server did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._stop is not None
        self.loop.call_soon_threadsafe(self._stop.set)
        self.thread.join(30)
        self.loop.close()

    def send(self, raw: bytes) -> bytes:
        with socket.create_connection(("127.0.0.1", self.port), timeout=10) as sock:
            sock.sendall(raw)
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    tokens = "".join(
        f"    - {{name: {n}, scopes: [{s}], sha256: {token_digest(t).hex()}}}\n"
        for n, (t, s) in TOKENS.items()
    )
    db = Path(tmp_path_factory.mktemp("fuzz")) / "i.db"
    text = config_text(db, "http:\n  listen: 127.0.0.1:0\n  tokens:\n" + tokens)
    with ServerThread(text) as thread:
        yield thread


@settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(raw=requests())
def test_no_request_gets_a_5xx_and_the_server_keeps_answering(
    server: ServerThread, raw: bytes
) -> None:
    answer = server.send(raw)
    if answer:  # a request aiohttp cannot parse may get 400 or a closed socket
        status_line = answer.split(b"\r\n", 1)[0]
        assert status_line.startswith(b"HTTP/1."), answer[:200]
        status = int(status_line.split()[1])
        assert status < 500, (raw[:300], answer[:500])
    health = server.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert health.startswith(b"HTTP/1.1 200 OK"), (raw[:300], answer[:300], health[:200])


def test_the_fuzzed_server_is_ready(server: ServerThread) -> None:
    """The state the fuzz runs in: a 503 from `/readyz` would be the probe's contract
    (not consuming), not an error the fuzz should meet."""
    answer = server.send(b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 200 OK"), answer[:300]
