"""A real headless Chromium for the web UI tests (Debian `chromium` and `chromium-driver`,
driven by Selenium), and a path-prefix reverse proxy to put in front of the engine.

A missing browser or driver fails the test with what to install, never skips it:
scripts/test.sh and .ci/run install both.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

CHROMIUM_CANDIDATES = ("chromium", "chromium-browser", "google-chrome")
DRIVER = "chromedriver"


@contextmanager
def chromium(width: int = 1400, height: int = 1000) -> Iterator[webdriver.Chrome]:
    """A headless Chromium with its own profile, closed on exit."""
    binary = next((b for b in map(shutil.which, CHROMIUM_CANDIDATES) if b), None)
    driver_path = shutil.which(DRIVER)
    if binary is None or driver_path is None:
        pytest.fail(
            "the web UI tests need a headless Chromium and its driver: "
            "apt-get install chromium chromium-driver (scripts/test.sh does)"
        )
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for arg in (
        "--headless=new",
        "--no-sandbox",  # root in a container has no user namespaces for the sandbox
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--disable-extensions",
        "--disable-background-networking",
        f"--window-size={width},{height}",
    ):
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=Service(driver_path))
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


HOP_HEADERS = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "content-length", "host", "content-encoding"}
)


class PrefixProxy:
    """Serves `upstream` under `prefix` (stripping it) and says so with
    `X-Forwarded-Prefix`, like an nginx `location /prefix/ { proxy_pass ...; }`."""

    def __init__(self, upstream: str, prefix: str) -> None:
        self.upstream = upstream
        self.prefix = prefix
        self.requests: list[str] = []
        app = web.Application()
        app.router.add_route("*", prefix + "/{tail:.*}", self._forward)
        self._runner = web.AppRunner(app, access_log=None)
        self._session: aiohttp.ClientSession | None = None
        self.url = ""

    async def start(self) -> None:
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server: Any = site._server
        port = server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}{self.prefix}"
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))

    async def stop(self) -> None:
        if self._session is not None:
            await self._session.close()
        await self._runner.cleanup()

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        assert self._session is not None
        path = "/" + request.match_info["tail"]
        self.requests.append(path)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_HEADERS}
        headers["X-Forwarded-Prefix"] = self.prefix
        body = await request.read()
        async with self._session.request(
            request.method,
            self.upstream + path,
            params=request.rel_url.query,
            headers=headers,
            data=body or None,
            allow_redirects=False,
        ) as resp:
            data = await resp.read()
            out = web.Response(body=data, status=resp.status)
            for k, v in resp.headers.items():
                if k.lower() not in HOP_HEADERS:
                    out.headers.add(k, v)
            return out
