"""`burnrate run` and `burnrate produce` against Apache Kafka's SASL_SSL listener.

One broker for the module (`secure_broker`): TLS with a test CA, a required client
certificate, SCRAM-SHA-512 and PLAIN users. What is proven:

- over TLS + SCRAM-SHA-512 (password from an environment variable) and TLS + PLAIN
  (password from a file), `burnrate produce --config` publishes, the producer adapter
  publishes a poison record, and `burnrate run` consumes every event, dead-letters the
  poison record, and commits the offsets of all of them when stopped;
- a wrong password, a broker certificate from a CA the config does not trust, a
  certificate for another host name (hostname verification is on, with no switch to
  turn it off), no client certificate and a client certificate from a CA the broker
  does not trust each stop `run` and `produce` at start: exit 2 and one line naming
  the config field, instead of retrying as if the broker were down;
- no password ever shows in their output.

Marked `kafka_secure`, which the default pytest run deselects (it needs Java and the
Apache Kafka jars); `pytest -m kafka_secure` runs it, and CI does.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import aiohttp
import msgspec
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from engine.adapters.kafka.embedded_broker import create_topic
from engine.adapters.kafka.producer import BatchPublisher
from engine.core.config import load_config
from tests.integration.secure_kafka import ROOT, SecureBroker, free_port
from tests.integration.secure_kafka import secure_broker as secure_broker  # the fixture

pytestmark = pytest.mark.kafka_secure

PASSWORD_ENV = "BURNRATE_TEST_KAFKA_PASSWORD"
SLO = "api-availability"
DEADLINE_S = 90.0
FAIL_TIMEOUT_S = 60.0


def write_config(
    tmp_path: Path,
    broker: SecureBroker,
    *,
    mechanism: str = "SCRAM-SHA-512",
    password_from: str = "env",
    password_file: Path | None = None,
    bootstrap: str | None = None,
    cafile: Path | None = None,
    client: str = "ours",
    topic: str = "events",
    dead_letter_topic: str = "events-dlq",
    group: str = "burnrate",
    listen_port: int = 0,
) -> Path:
    user, _ = broker.login(mechanism)
    source = (
        f"sasl_password_env: {PASSWORD_ENV}"
        if password_from == "env"
        else f"sasl_password_file: {password_file}"
    )
    cert, key = {
        "ours": (broker.client_cert, broker.client_key),
        "stranger": (broker.stranger_cert, broker.stranger_key),
    }.get(client, (None, None))
    client_lines = f"ssl_certfile: {cert}\n    ssl_keyfile: {key}\n    " if cert else ""
    config = tmp_path / f"burnrate-{uuid.uuid4().hex[:8]}.yaml"
    config.write_text(
        f"""\
slos:
  - {{name: {SLO}, service: api, sli: availability, objective: 99}}
kafka:
  bootstrap_servers: {bootstrap or broker.secure_bootstrap}
  topics: [{topic}]
  group_id: {group}
  dead_letter_topic: {dead_letter_topic}
  security:
    protocol: SASL_SSL
    ssl_cafile: {cafile or broker.ca_file}
    {client_lines}sasl_mechanism: {mechanism}
    sasl_username: {user}
    {source}
http:
  listen: 127.0.0.1:{listen_port}
"""
    )
    return config


def child_env(password: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("KAFKA_BOOTSTRAP_SERVERS",)}
    env["PYTHONPATH"] = str(ROOT)
    env.pop(PASSWORD_ENV, None)
    if password is not None:
        env[PASSWORD_ENV] = password
    return env


def burnrate(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            [sys.executable, "-m", "engine", *args],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=FAIL_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(
            f"burnrate {' '.join(args)} still running after {FAIL_TIMEOUT_S:.0f}s (retrying "
            f"a refusal as an outage?); stderr:\n{exc.stderr!r}"
        )


def produce_args(config: Path, topic: str) -> list[str]:
    return [
        "produce",
        "--config",
        str(config),
        "--topic",
        topic,
        "--services",
        "api",
        "--rate",
        "300",
        "--duration",
        "5s",
        "--as-fast-as-possible",
        "--quiet",
        "--summary-json",
        "-",
    ]


def metric(text: str, name: str, slo: str) -> float | None:
    match = re.search(rf'^{name}\{{[^}}]*slo="{slo}"[^}}]*\}} (\S+)$', text, re.MULTILINE)
    return float(match.group(1)) if match else None


async def wait_for_events(url: str, expected: int, proc: asyncio.subprocess.Process) -> None:
    seen: float | None = None
    async with aiohttp.ClientSession() as session, asyncio.timeout(DEADLINE_S):
        while True:
            assert proc.returncode is None, f"burnrate run exited with {proc.returncode}"
            try:
                async with session.get(f"{url}/metrics") as resp:
                    seen = metric(await resp.text(), "burnrate_slo_events_total", SLO)
            except aiohttp.ClientError:
                seen = None
            if seen == expected:
                return
            await asyncio.sleep(0.5)


async def read_topic(bootstrap: str, topic: str, n: int) -> list[object]:
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest"
    )
    await consumer.start()
    got: list[object] = []
    try:
        async with asyncio.timeout(DEADLINE_S):
            while len(got) < n:
                for records in (await consumer.getmany(timeout_ms=200)).values():
                    got.extend(records)
    finally:
        await consumer.stop()
    return got


async def committed(bootstrap: str, group: str, topic: str) -> int | None:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group)
    await consumer.start()
    try:
        offset: int | None = await consumer.committed(TopicPartition(topic, 0))
        return offset
    finally:
        await consumer.stop()


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("mechanism", "password_from"),
    [("SCRAM-SHA-512", "env"), ("PLAIN", "file")],
    ids=["scram-sha-512-env", "plain-file"],
)
async def test_run_consumes_commits_and_dead_letters_over_sasl_ssl(
    secure_broker: SecureBroker,
    mechanism: str,
    password_from: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    broker = secure_broker
    _, password = broker.login(mechanism)
    password_file = tmp_path / "kafka-password"
    password_file.write_text(password + "\n")
    if password_from == "env":
        monkeypatch.setenv(PASSWORD_ENV, password)
    run_tag = uuid.uuid4().hex[:8]
    topic, dlq, group = f"tls-{run_tag}", f"tls-{run_tag}-dlq", f"g-{run_tag}"
    await create_topic(broker.plain_bootstrap, topic, 1)
    await create_topic(broker.plain_bootstrap, dlq, 1)
    listen = free_port()
    config = write_config(
        tmp_path,
        broker,
        mechanism=mechanism,
        password_from=password_from,
        password_file=password_file,
        topic=topic,
        dead_letter_topic=dlq,
        group=group,
        listen_port=listen,
    )
    env = child_env(password if password_from == "env" else None)

    # `burnrate produce` over SASL_SSL, settings from the same config
    produced = burnrate(produce_args(config, topic), env)
    assert produced.returncode == 0, produced.stderr
    summary = msgspec.json.decode(produced.stdout)
    assert summary["events"] > 0
    # the producer adapter over SASL_SSL: one record the engine must reject
    security = load_config(str(config)).kafka.security
    async with BatchPublisher(broker.secure_bootstrap, topic, security=security) as publisher:
        await (await publisher.send([b"{not json"]))
    records = summary["records"] + 1

    out, err = tmp_path / "run.out", tmp_path / "run.err"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "engine",
            "run",
            "--config",
            str(config),
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
        )
    try:
        await wait_for_events(f"http://127.0.0.1:{listen}", summary["events"], proc)
        (dead,) = await read_topic(broker.plain_bootstrap, dlq, 1)
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            rc = await proc.wait()
    output = out.read_text() + err.read_text()
    assert rc == 0, output
    assert dead.value == b"{not json"  # type: ignore[attr-defined]
    headers = dict(dead.headers)  # type: ignore[attr-defined]
    assert headers["source_topic"] == topic.encode()
    assert headers["source_offset"] == str(records - 1).encode()
    # committed on shutdown: every record, the poison one too
    assert await committed(broker.plain_bootstrap, group, topic) == records
    for secret in broker.passwords():
        assert secret not in output
        assert secret not in produced.stdout + produced.stderr


REFUSALS = {
    "wrong password": (
        "$.kafka.security.sasl_password_env: the broker at localhost:{port} refused the SASL "
        "SCRAM-SHA-512 login (Authentication failed"
    ),
    "untrusted CA": (
        "$.kafka.security.ssl_cafile: the TLS certificate of the broker at localhost:{port} "
        "is not trusted by the CA file {other_ca}"
    ),
    "wrong host name": (
        "$.kafka.bootstrap_servers: the TLS certificate of the broker at 127.0.0.1:{port} is "
        "not valid for that name (IP address mismatch"
    ),
    "no client certificate": (
        "$.kafka.security.ssl_certfile: the broker at localhost:{port} wants a TLS client "
        "certificate ("
    ),
    "untrusted client certificate": (
        "$.kafka.security.ssl_certfile: the broker at localhost:{port} refused the TLS client "
        "certificate {stranger} ("
    ),
}


@pytest.mark.parametrize("command", ["run", "produce"])
@pytest.mark.parametrize("case", list(REFUSALS))
def test_a_refused_login_or_certificate_stops_the_start_with_exit_2(
    secure_broker: SecureBroker, case: str, command: str, tmp_path: Path
) -> None:
    broker = secure_broker
    wrong_password = "not-" + broker.scram_password
    config = write_config(
        tmp_path,
        broker,
        cafile=broker.other_ca_file if case == "untrusted CA" else None,
        bootstrap=f"127.0.0.1:{broker.port}" if case == "wrong host name" else None,
        client={"no client certificate": "none", "untrusted client certificate": "stranger"}.get(
            case, "ours"
        ),
    )
    password = wrong_password if case == "wrong password" else broker.scram_password
    args = (
        ["run", "--config", str(config)]
        if command == "run"
        else produce_args(config, "never-created")
    )
    proc = burnrate(args, child_env(password))

    report = f"exit {proc.returncode}; stderr:\n{proc.stderr}"
    expected = f"{config}: " + REFUSALS[case].format(
        port=broker.port, other_ca=broker.other_ca_file, stranger=broker.stranger_cert
    )
    assert proc.returncode == 2, report
    assert any(line.startswith(expected) for line in proc.stderr.splitlines()), report
    assert "Traceback" not in proc.stderr, report
    assert "cannot reach Kafka" not in proc.stderr, report
    for secret in (wrong_password, *broker.passwords()):
        assert secret not in proc.stdout + proc.stderr


@pytest.mark.asyncio
async def test_produce_over_scram_sha_256(secure_broker: SecureBroker, tmp_path: Path) -> None:
    """SCRAM-SHA-256 too (`burnrate run` shares the client settings, proven above)."""
    broker = secure_broker
    topic = f"tls-{uuid.uuid4().hex[:8]}"
    await create_topic(broker.plain_bootstrap, topic, 1)
    config = write_config(tmp_path, broker, mechanism="SCRAM-SHA-256", topic=topic)
    _, password = broker.login("SCRAM-SHA-256")
    produced = burnrate(produce_args(config, topic), child_env(password))
    assert produced.returncode == 0, produced.stderr
    records = msgspec.json.decode(produced.stdout)["records"]
    assert len(await read_topic(broker.plain_bootstrap, topic, records)) == records
    assert password not in produced.stdout + produced.stderr
