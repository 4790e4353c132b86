"""`burnrate produce --config`: brokers and TLS/SASL settings from a burnrate config.

No broker needed: these are the paths that end before or at the connection. Producing
over SASL_SSL with it is proven in test_kafka_sasl_ssl.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.commands.produce import run_produce
from tests.integration.test_produce import closed_port, parse

SLOS = "slos:\n  - {name: api-availability, service: api, sli: availability, objective: 99}\n"


def config_file(tmp_path: Path, kafka: str) -> Path:
    path = tmp_path / "burnrate.yaml"
    path.write_text(SLOS + "kafka:\n" + kafka)
    return path


@pytest.fixture(autouse=True)
def _no_bootstrap_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KAFKA_BOOTSTRAP_SERVERS", raising=False)
    monkeypatch.delenv("BURNRATE_TEST_UNSET", raising=False)


@pytest.mark.asyncio
async def test_the_brokers_come_from_the_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    port = closed_port()
    config = config_file(tmp_path, f"  bootstrap_servers: 127.0.0.1:{port}\n")
    args = parse(["--config", str(config), "--duration", "1s", "--services", "api"])
    assert await run_produce(args) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"burnrate produce: cannot connect to Kafka at 127.0.0.1:{port}:"), err


@pytest.mark.asyncio
async def test_a_bad_config_exits_2_with_its_path(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = config_file(tmp_path, "  security: {protocol: TLS}\n")
    assert await run_produce(parse(["--config", str(config), "--duration", "1s"])) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"{config}: $.kafka.security.protocol: "), err


@pytest.mark.asyncio
async def test_an_unset_password_variable_exits_2_before_connecting(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = config_file(
        tmp_path,
        f"  bootstrap_servers: 127.0.0.1:{closed_port()}\n"
        "  security:\n"
        "    protocol: SASL_SSL\n"
        "    sasl_mechanism: SCRAM-SHA-512\n"
        "    sasl_username: alice\n"
        "    sasl_password_env: BURNRATE_TEST_UNSET\n",
    )
    args = parse(["--config", str(config), "--duration", "1s", "--services", "api"])
    assert await run_produce(args) == 2
    err = capsys.readouterr().err
    assert err == (
        f"{config}: $.kafka.security.sasl_password_env: "
        "environment variable BURNRATE_TEST_UNSET is not set\n"
    )


@pytest.mark.asyncio
async def test_create_topic_over_sasl_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = config_file(
        tmp_path,
        "  security:\n"
        "    {protocol: SASL_SSL, sasl_username: a, sasl_password_env: BURNRATE_TEST_UNSET}\n",
    )
    assert await run_produce(parse(["--config", str(config), "--create-topic"])) == 2
    assert "--create-topic works over PLAINTEXT only" in capsys.readouterr().err
