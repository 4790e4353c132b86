"""`check_access` tells a broker that refuses the TLS settings from one that is down,
with real TLS servers on loopback (no Kafka needed, so this runs by default). The SASL
refusals and client certificates are in test_kafka_sasl_ssl.py, against Apache Kafka:
Python's TLS server does not refuse a client certificate the way Kafka's does."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
import trustme
from aiokafka.errors import KafkaConnectionError

from engine.adapters.kafka.access import check_access
from engine.adapters.kafka.settings import kafka_client_kwargs
from engine.core.config import Kafka, KafkaSecurity
from engine.errors import ConfigError


@pytest.fixture(scope="module")
def server_ca() -> trustme.CA:
    return trustme.CA()


@pytest_asyncio.fixture
async def tls_port(server_ca: trustme.CA) -> AsyncIterator[int]:
    """A TLS server whose certificate names localhost only; it says nothing after the
    handshake."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ca.issue_cert("localhost").configure_cert(context)

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=context)
    yield server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()


def settings(bootstrap: str, cafile: Path) -> tuple[dict[str, object], KafkaSecurity]:
    security = KafkaSecurity(protocol="SSL", ssl_cafile=str(cafile))
    kafka = Kafka(bootstrap_servers=bootstrap, security=security)
    return kafka_client_kwargs(kafka), security


@pytest.mark.asyncio
async def test_a_certificate_from_another_ca_is_a_config_error(
    tls_port: int, tmp_path: Path
) -> None:
    other = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other))
    kwargs, security = settings(f"localhost:{tls_port}", other)
    with pytest.raises(ConfigError) as caught:
        await check_access(kwargs, security, timeout_s=10)
    (line,) = caught.value.errors
    assert line.startswith(
        f"$.kafka.security.ssl_cafile: the TLS certificate of the broker at localhost:{tls_port} "
        f"is not trusted by the CA file {other} ("
    ), line


@pytest.mark.asyncio
async def test_a_certificate_for_another_name_is_a_config_error(
    tls_port: int, server_ca: trustme.CA, tmp_path: Path
) -> None:
    ca = tmp_path / "ca.pem"
    server_ca.cert_pem.write_to_path(str(ca))
    kwargs, security = settings(f"127.0.0.1:{tls_port}", ca)
    with pytest.raises(ConfigError) as caught:
        await check_access(kwargs, security, timeout_s=10)
    (line,) = caught.value.errors
    assert line.startswith(
        f"$.kafka.bootstrap_servers: the TLS certificate of the broker at 127.0.0.1:{tls_port} "
        "is not valid for that name (IP address mismatch"
    ), line


@pytest.mark.asyncio
async def test_a_trusted_server_that_hangs_up_is_an_outage_not_a_refusal(
    server_ca: trustme.CA, tmp_path: Path
) -> None:
    """Handshake fine, then the connection drops before Kafka answers: retried."""
    ca = tmp_path / "ca.pem"
    server_ca.cert_pem.write_to_path(str(ca))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ca.issue_cert("localhost").configure_cert(context)

    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    server = await asyncio.start_server(hang_up, "127.0.0.1", 0, ssl=context)
    port = server.sockets[0].getsockname()[1]
    try:
        kwargs, security = settings(f"localhost:{port}", ca)
        with pytest.raises(KafkaConnectionError, match="no broker answered"):
            await check_access(kwargs, security, timeout_s=10)
    finally:
        server.close()
        await server.wait_closed()


@pytest.mark.asyncio
async def test_nothing_listening_is_an_outage(server_ca: trustme.CA, tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    server_ca.cert_pem.write_to_path(str(ca))
    kwargs, security = settings("127.0.0.1:1,localhost:1", ca)
    with pytest.raises(KafkaConnectionError, match="no broker answered"):
        await check_access(kwargs, security, timeout_s=10)


@pytest.mark.asyncio
async def test_plaintext_is_not_probed() -> None:
    kafka = Kafka(bootstrap_servers="127.0.0.1:1")
    await check_access(kafka_client_kwargs(kafka), kafka.security)  # returns at once
