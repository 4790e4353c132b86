"""The web UI in a real headless Chromium, on an engine fed through the broker.

`burnrate run`'s runtime consumes events from a real Kafka-protocol broker; Chromium
(through chromedriver) opens `/`, and the test checks that every SLO row, the firing
alert and the budget numbers are those of `/v1/slos`, that the list updates in place
while more events flow, and that the SLO page draws its charts (pixels of each series'
colour on the canvases) and its alerts. Once with auth off, once with a token (the
login form, then the cookie) behind a reverse proxy that serves the UI under a path
prefix. Screenshots go to the test's temporary directory.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

from engine.core.config import Config, parse_config
from engine.core.history import DEFAULT_TIERS, Tier
from engine.runtime.service import Runtime
from tests.integration.browser import PrefixProxy, chromium
from tests.integration.test_run import Running
from tests.integration.test_source import produce, wait_until

TOKEN = "ui-test-" + uuid.uuid4().hex
T = TypeVar("T")
DEADLINE_S = 60.0

BUDGET_COLOUR = (11, 92, 173)  # palette[0] of slo.js: the budget line, the first burn line
GOOD_COLOUR = (27, 110, 32)
BAD_COLOUR = (165, 14, 14)


def config(bootstrap: str, topic: str, auth: bool) -> Config:
    http = "{listen: 127.0.0.1:0" + (", auth_token_env: BURNRATE_UI_TEST_TOKEN}" if auth else "}")
    return parse_config(
        "slos:\n"
        "  - {name: shop-avail, service: shop, sli: availability, objective: 99}\n"
        "  - {name: blog-avail, service: blog, sli: availability, objective: 99.5}\n"
        "  - {name: blog-latency, service: blog, sli: latency, threshold_ms: 200,"
        " objective: 95}\n"
        "  - {name: pay-avail, service: pay, sli: availability, objective: 99.9}\n"
        f"kafka: {{bootstrap_servers: '{bootstrap}', topics: [{topic}],"
        f" group_id: g-{uuid.uuid4().hex[:10]}}}\n"
        "evaluation: {tick: 1s, allowed_lateness: 30s}\n"
        f"http: {http}\n"
    )


def records(now: float, service: str, n: int, failing_every: int) -> list[bytes]:
    """`n` events of `service` over the 20 s ending 40 s ago (ahead of the 30 s lateness:
    evaluated at once); every `failing_every`-th failed (0: none), every 4th slow."""
    return [
        json.dumps(
            {
                "service": service,
                "ts": now - 60 + 20 * i / n,
                "status": 500 if failing_every and i % failing_every == 0 else 200,
                "latency_ms": 350 if i % 4 == 0 else 40,
            }
        ).encode()
        for i in range(n)
    ]


async def in_browser(fn: Callable[[], T]) -> T:
    """Selenium blocks; run it off the event loop, which keeps serving the engine."""
    return await asyncio.to_thread(fn)


async def until(fn: Callable[[], T | None], what: str, deadline_s: float = DEADLINE_S) -> T:
    end = time.monotonic() + deadline_s
    while True:
        got = await in_browser(fn)
        if got is not None:
            return got
        if time.monotonic() > end:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.2)


LIST_JS = """
const t = document.getElementById('slos');
return {evaluated_at: t.dataset.evaluatedAt || null,
        rows: [...t.tBodies[0].rows].map(r => ({
          slo: r.dataset.slo, group: r.dataset.group,
          cells: [...r.cells].map(c => c.innerText.trim())}))};
"""

CANVAS_JS = """
const [id, rgb] = arguments;
const c = document.querySelector('#' + id + ' canvas');
if (!c || !c.width) return -1;
const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
let n = 0;
for (let i = 0; i < d.length; i += 4)
  if (d[i+3] > 200 && Math.abs(d[i]-rgb[0]) < 24 && Math.abs(d[i+1]-rgb[1]) < 24
      && Math.abs(d[i+2]-rgb[2]) < 24) n++;
return n;
"""


def pct(ratio: float | None) -> str:
    return "no data" if ratio is None else f"{ratio * 100:.2f}%"


def firing_of(view: dict[str, Any]) -> str:
    firing = [s for s, a in view["alerts"].items() if a["firing"]]
    firing += [a["alert"] for a in view.get("budget_alerts", []) if a["firing"]]
    return ", ".join(firing) or "ok"


async def api_slos(session: aiohttp.ClientSession, url: str, auth: bool) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {TOKEN}"} if auth else {}
    async with session.get(f"{url}/v1/slos", headers=headers) as resp:
        assert resp.status == 200, await resp.text()
        body: dict[str, Any] = await resp.json()
        return body


def differences(page: dict[str, Any], api: dict[str, Any]) -> list[str]:
    """What the page's rows show differently from the API's SLOs (empty: the same)."""
    rows = {r["slo"]: r["cells"] for r in page["rows"]}
    if sorted(rows) != sorted(v["name"] for v in api["slos"]):
        return [f"rows {sorted(rows)} != SLOs {[v['name'] for v in api['slos']]}"]
    out = []
    for v in api["slos"]:
        name, service, objective, budget, _burns, alert, _tte = rows[v["name"]]
        want = (
            v["name"],
            v["service"],
            f"{v['objective']:g}%",
            pct(v["error_budget"]["remaining_ratio"]),
            firing_of(v),
        )
        if (name, service, objective, budget, alert) != want:
            out.append(f"{(name, service, objective, budget, alert)} != {want}")
    return out


async def page_matches_api(
    driver: webdriver.Chrome, session: aiohttp.ClientSession, url: str, auth: bool
) -> dict[str, Any]:
    """Reads the page and the API until both are of the same evaluation and agree on
    every row's name, service, objective, budget and alert state (events still being
    counted can change the numbers within one evaluation); fails with the differences
    once the deadline passes."""
    end = time.monotonic() + DEADLINE_S
    why = ["the page never showed the API's evaluation"]
    while time.monotonic() < end:
        page = await in_browser(lambda: driver.execute_script(LIST_JS))
        api = await api_slos(session, url, auth)
        if page["evaluated_at"] and float(page["evaluated_at"]) == api["evaluated_at"]:
            why = differences(page, api)
            if not why:
                return api
        await asyncio.sleep(0.1)
    pytest.fail("the page and /v1/slos disagree: " + "; ".join(why))


async def check_ui(
    runtime: Runtime,
    base: str,
    bootstrap: str,
    topic: str,
    shots: Path,
    *,
    auth: bool,
) -> None:
    engine = runtime.http.url
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        with chromium() as driver:
            await in_browser(lambda: driver.get(base + "/"))
            if auth:
                assert driver.current_url == base + "/login", "no token: the login form"
                await in_browser(lambda: driver.save_screenshot(str(shots / "login.png")))
                field = driver.find_element(By.ID, "token")
                assert driver.find_element(By.CSS_SELECTOR, "label[for=token]").text
                await in_browser(lambda: field.send_keys("not-the-token"))
                await in_browser(field.submit)
                assert "not valid" in driver.find_element(By.CSS_SELECTOR, ".error").text
                field = driver.find_element(By.ID, "token")
                await in_browser(lambda: field.send_keys(TOKEN))
                await in_browser(field.submit)
                cookie = driver.get_cookie("burnrate_token")
                assert cookie is not None
                assert cookie["httpOnly"]
                assert cookie["sameSite"] == "Strict"
                assert cookie["path"] == ("/" if base == engine else "/burnrate")
            assert driver.current_url == base + "/"

            # every row and number is the API's; the spent SLO pages
            api = await page_matches_api(driver, session, engine, auth)
            shop = next(v for v in api["slos"] if v["name"] == "shop-avail")
            assert shop["alerts"]["page"]["firing"], shop
            pay = next(v for v in api["slos"] if v["name"] == "pay-avail")
            assert pay["error_budget"]["remaining_ratio"] is None
            await in_browser(lambda: driver.save_screenshot(str(shots / "list.png")))

            # filter and sort with the keyboard-reachable controls
            search = driver.find_element(By.ID, "filter")
            await in_browser(lambda: search.send_keys("blog"))
            shown = await in_browser(lambda: driver.execute_script(LIST_JS))
            assert sorted(r["slo"] for r in shown["rows"]) == ["blog-avail", "blog-latency"]
            await in_browser(search.clear)
            await in_browser(lambda: search.send_keys(" "))  # an input event: all again
            sort = driver.find_element(By.CSS_SELECTOR, "button[data-sort=budget]")
            await in_browser(lambda: sort.send_keys(Keys.ENTER))  # the keyboard sorts
            th = sort.find_element(By.XPATH, "..")
            assert th.get_attribute("aria-sort") == "ascending"
            shown = await in_browser(lambda: driver.execute_script(LIST_JS))
            assert shown["rows"][0]["slo"] == "shop-avail", "least budget first"

            # a redraw keeps the keyboard focus on the same SLO's link
            driver.execute_script("document.querySelector('tr[data-slo=blog-avail] a').focus()")
            before = driver.find_element(By.ID, "status").text

            def redrawn() -> bool | None:
                return driver.find_element(By.ID, "status").text != before or None

            await until(redrawn, "a refresh of the list")
            focused = driver.execute_script("return document.activeElement.textContent")
            assert focused == "blog-avail"

            # the list follows the events without a reload
            driver.execute_script("window.__same_page = true;")
            await produce(bootstrap, topic, records(time.time(), "pay", 200, 50))

            def pay_budget() -> str | None:
                rows = driver.execute_script(LIST_JS)["rows"]
                cells = next(r["cells"] for r in rows if r["slo"] == "pay-avail")
                return None if cells[3] == "no data" else cells[3]

            await until(pay_budget, "pay-avail's budget on the page")
            assert driver.execute_script("return window.__same_page === true")
            api = await page_matches_api(driver, session, engine, auth)
            pay = next(v for v in api["slos"] if v["name"] == "pay-avail")
            assert pay["error_budget"]["remaining_ratio"] is not None

            # the SLO page: charts drawn, alerts listed
            link = driver.find_element(By.LINK_TEXT, "shop-avail")
            await in_browser(link.click)
            assert driver.current_url == base + "/slo/shop-avail"

            def drawn() -> dict[str, int] | None:
                got = {
                    f"{chart}/{colour}": driver.execute_script(CANVAS_JS, chart, colour)
                    for chart, colour in (
                        ("c-long", BUDGET_COLOUR),
                        ("c-short", BUDGET_COLOUR),
                        ("c-budget", BUDGET_COLOUR),
                        ("c-events", GOOD_COLOUR),
                        ("c-events", BAD_COLOUR),
                    )
                }
                return got if min(got.values()) > 20 else None

            await until(drawn, "the four charts drawn with their series")
            alerts = driver.find_element(By.ID, "alerts")
            await until(lambda: "firing" in alerts.text or None, "the page alert listed")
            gate = driver.find_element(By.ID, "gate")
            await until(lambda: "fail" in gate.text or None, "the gate decision")
            await in_browser(lambda: driver.set_window_size(1400, 2600))
            await in_browser(lambda: driver.save_screenshot(str(shots / "slo.png")))
            options = driver.find_elements(By.CSS_SELECTOR, "#tier option")
            assert len(options) == 1 + len(DEFAULT_TIERS)
            # no request left this server (or the proxy in front of it)
            logged = driver.execute_script(
                "return performance.getEntriesByType('resource').map(e => e.name)"
            )
            outside = [u for u in logged if not u.startswith(base.split("/burnrate")[0])]
            assert not outside, outside


@pytest.mark.asyncio
@pytest.mark.slow
@pytest.mark.parametrize("auth", [False, True], ids=["open", "token-behind-prefix"])
async def test_the_ui_shows_what_the_api_says_and_follows_the_events(
    kafka_bootstrap: str,
    unique_topic: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    auth: bool,
) -> None:
    if auth:
        monkeypatch.setenv("BURNRATE_UI_TEST_TOKEN", TOKEN)
    now = time.time()
    await produce(
        kafka_bootstrap,
        unique_topic,
        records(now, "shop", 300, 3) + records(now, "blog", 300, 100),
    )
    # a one-second tier first, so the charts have many points within the test
    tiers = (Tier(1, 600), *DEFAULT_TIERS)
    rt = Runtime(
        config(kafka_bootstrap, unique_topic, auth),
        listen="127.0.0.1:0",
        sinks=[],
        history_tiers=tiers,
    )
    running = Running(rt)
    proxy = None
    try:
        await running.listening()
        await wait_until(
            lambda: int(rt.evaluator.counts().events_total.sum()) >= 300 * 3,
            "shop and blog events counted",
        )
        base = rt.http.url
        if auth:
            proxy = PrefixProxy(rt.http.url, "/burnrate")
            await proxy.start()
            base = proxy.url
        await check_ui(rt, base, kafka_bootstrap, unique_topic, tmp_path, auth=auth)
        if proxy is not None:
            assert "/login" in proxy.requests
            assert "/v1/summary" in proxy.requests
            assert "/v1/slos/shop-avail/history" in proxy.requests
        for shot in ("list.png", "slo.png", *(["login.png"] if auth else [])):
            assert (tmp_path / shot).stat().st_size > 10_000, shot
    finally:
        if proxy is not None:
            await proxy.stop()
        await running.shutdown()
