"""No token, secret or key ever leaves `burnrate run`: not in its logs, its errors, the
`/v1` API or `/metrics`.

`burnrate run` runs as a subprocess with known secret values: two API tokens (a named
one given by its SHA-256, and the `auth_token_env` one), a webhook signing secret, a
PagerDuty routing key and a Kafka SASL password (the broker address is a closed port,
so the consumer keeps failing and logging). It serves HTTPS (`http.tls`, a CA made in
the test), so this is also `burnrate run` over TLS end to end. Every GET route of the
app is fetched with a good token, with each secret sent as a wrong token and as the
token cookie, and `/metrics` too; then the process is stopped. Every byte it wrote
and every answer is searched for every secret.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path

import aiohttp

from engine.adapters.http.auth import COOKIE_NAME, BearerAuth
from engine.adapters.http.metrics import EngineMetrics
from engine.adapters.http.server import HttpServer
from engine.adapters.http.tokens import token_digest
from engine.core.config import load_config
from engine.core.evaluator import Evaluator
from tests.certs import CA, Issued

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 60.0
SECRETS = {
    "named token": "Named-Api-Token-7f3a9c",
    "env token": "Env-Api-Token-b41d0e",
    "webhook secret": "whsec_d2ViaG9vay1zaWduaW5nLWtleS0zMi1ieXRlcy14eXo=",
    "routing key": "R0utingKey0123456789abcdef012345",
    "kafka password": "Kafka-Passw0rd-e9e9e9",
}
PARAMS = {"name": "api-availability", "service": "api"}


def config_text(tmp: Path, cert: Issued) -> str:
    key_file = tmp / "routing-key"
    key_file.write_text(SECRETS["routing key"] + "\n")
    digest = token_digest(SECRETS["named token"]).hex()
    return f"""\
slos:
  - {{name: api-availability, service: api, sli: availability, objective: 99.9}}
kafka:
  bootstrap_servers: 127.0.0.1:1
  security:
    protocol: SASL_PLAINTEXT
    sasl_mechanism: PLAIN
    sasl_username: burnrate
    sasl_password_env: BURNRATE_TEST_KAFKA_PASSWORD
http:
  listen: 127.0.0.1:0
  auth_token_env: BURNRATE_TEST_API_TOKEN
  tls: {{cert_file: "{cert.cert_file}", key_file: "{cert.key_file}"}}
  tokens:
    - {{name: deployer, scopes: [read, operate], sha256: {digest}}}
receivers:
  - {{type: webhook, url: "http://127.0.0.1:1/hook", secret_env: BURNRATE_TEST_WEBHOOK_SECRET}}
  - {{type: pagerduty, routing_key_file: "{key_file}", url: "http://127.0.0.1:1/pd"}}
"""


class Output:
    """Collects a pipe's lines in a thread (so the pipe never fills)."""

    def __init__(self, pipe: object) -> None:
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._read, args=(pipe,), daemon=True)
        self._thread.start()

    def _read(self, pipe: object) -> None:
        for line in pipe:  # type: ignore[attr-defined]
            self.lines.append(line)

    def join(self) -> str:
        self._thread.join(30)
        return "".join(self.lines)


def get_routes(config_path: Path) -> list[str]:
    ev = Evaluator(load_config(config_path))
    metrics = EngineMetrics(ev, lambda: None)
    app = HttpServer("127.0.0.1:0", metrics, lambda: None, auth=BearerAuth()).app
    paths = set()
    for route in app.router.routes():
        if route.method in ("GET", "*") and route.resource is not None:
            canonical = route.resource.canonical
            paths.add(re.sub(r"\{(\w+)\}", lambda m: PARAMS.get(m.group(1), "x"), canonical))
    return sorted(paths)


async def fetch_everything(base: str, paths: list[str], cafile: Path) -> list[str]:
    seen: list[str] = []
    good = {"Authorization": f"Bearer {SECRETS['named token']}"}
    connector = aiohttp.TCPConnector(ssl=ssl.create_default_context(cafile=str(cafile)))
    async with aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=10), connector=connector
    ) as session:

        async def record(path: str, headers: dict[str, str]) -> None:
            async with session.get(f"{base}{path}", headers=headers) as resp:
                seen.append(f"{resp.status} {path}\n{dict(resp.headers)}\n{await resp.text()}")

        for path in [*paths, "/metrics", "/v1/slos/api-availability"]:
            await record(path, good)
            await record(path, {"Authorization": f"Bearer {SECRETS['env token']}"})
            for secret in SECRETS.values():
                await record(path, {"Authorization": f"Bearer {secret}x"})
                await record(path, {"Cookie": f"{COOKIE_NAME}={secret}y"})
        async with session.post(
            f"{base}/v1/changes", headers=good, json={"service": "api", "kind": "deploy"}
        ) as resp:
            seen.append(f"{resp.status} POST /v1/changes\n{await resp.text()}")
    return seen


def listening_url(line: str) -> str | None:
    try:
        data = json.loads(line)
    except ValueError:
        return None
    return data.get("url") if data.get("event") == "listening" else None


def test_no_secret_in_logs_errors_api_or_metrics(tmp_path: Path) -> None:
    ca = CA(tmp_path, "leak test ca")
    cfg = tmp_path / "burnrate.yaml"
    cfg.write_text(config_text(tmp_path, ca.issue("server", server=True)))
    env = {k: v for k, v in os.environ.items() if k != "KAFKA_BOOTSTRAP_SERVERS"}
    env |= {
        "PYTHONPATH": str(ROOT),
        "BURNRATE_TEST_KAFKA_PASSWORD": SECRETS["kafka password"],
        "BURNRATE_TEST_API_TOKEN": SECRETS["env token"],
        "BURNRATE_TEST_WEBHOOK_SECRET": SECRETS["webhook secret"],
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "engine", "run", "--config", str(cfg), "--log-format", "json"],
        cwd=tmp_path,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stderr is not None
    out, err = Output(proc.stdout), Output(proc.stderr)
    try:
        url = None
        deadline = time.monotonic() + START_TIMEOUT_S
        while url is None and time.monotonic() < deadline and proc.poll() is None:
            url = next(filter(None, map(listening_url, list(err.lines))), None)
            time.sleep(0.1)
        assert url is not None, f"burnrate run did not start: {''.join(err.lines)[-2000:]}"
        assert url.startswith("https://127.0.0.1:"), url
        answers = asyncio.run(fetch_everything(url, get_routes(cfg), ca.cert_file))
        time.sleep(2.0)  # the consumer's failed connections are logged meanwhile
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    everything = {"stdout": out.join(), "stderr": err.join(), "answers": "\n".join(answers)}
    proc.stdout.close()
    proc.stderr.close()
    assert len(answers) > 50
    assert "200 /metrics" in everything["answers"]
    assert "401 /v1/slos" in everything["answers"]
    assert everything["stderr"].strip(), "the run logged nothing: nothing was searched"
    for where, text in everything.items():
        for what, secret in SECRETS.items():
            assert secret not in text, f"the {what} is in the {where}"
