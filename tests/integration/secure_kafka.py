"""An Apache Kafka broker with a SASL_SSL listener, for the `kafka_secure` tests.

The test makes the PKI with trustme: a CA, the broker's certificate for `localhost`
only (so connecting by 127.0.0.1 must fail hostname verification), our client
certificate (the listener requires one), and a second CA, which the broker does not
trust, with a client certificate of its own. Users, with random passwords: `alice` for
SCRAM-SHA-512 and `carol` for SCRAM-SHA-256 (created when the storage is formatted),
`bob` for PLAIN (in the listener's JAAS config). The broker is started by
scripts/kafka/apache-kafka.sh from the jars of its `fetch`; without Java or the jars
the start fails and so do the tests (never a skip).
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme
from cryptography.hazmat.primitives import serialization

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "kafka" / "apache-kafka.sh"
START_TIMEOUT_S = 300.0  # includes `fetch` from Maven Central when the jars are missing


@dataclass(frozen=True)
class SecureBroker:
    plain_bootstrap: str
    """The PLAINTEXT listener: for creating topics and reading back as an admin."""
    secure_bootstrap: str
    """The SASL_SSL listener, by the name its certificate holds."""
    port: int
    """The SASL_SSL port (connecting by 127.0.0.1 must fail hostname verification)."""
    ca_file: Path
    other_ca_file: Path
    client_cert: Path
    client_key: Path
    stranger_cert: Path
    """A client certificate from the other CA, which the broker does not trust."""
    stranger_key: Path
    scram_user: str
    scram_password: str
    plain_user: str
    plain_password: str
    scram256_user: str
    scram256_password: str

    def login(self, mechanism: str) -> tuple[str, str]:
        """The user and password of `mechanism`."""
        return {
            "SCRAM-SHA-512": (self.scram_user, self.scram_password),
            "SCRAM-SHA-256": (self.scram256_user, self.scram256_password),
            "PLAIN": (self.plain_user, self.plain_password),
        }[mechanism]

    def passwords(self) -> tuple[str, ...]:
        return (self.scram_password, self.scram256_password, self.plain_password)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pkcs8(pem: bytes) -> bytes:
    """Kafka's PEM key store takes PKCS#8 keys only; trustme writes the traditional form."""
    key = serialization.load_pem_private_key(pem, password=None)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def make_pki(directory: Path) -> dict[str, Path]:
    ca, other_ca = trustme.CA(), trustme.CA()
    broker = ca.issue_cert("localhost")
    client = ca.issue_cert("burnrate-client")
    stranger = other_ca.issue_cert("burnrate-client")
    files = {
        "ca": directory / "ca.pem",
        "other_ca": directory / "other-ca.pem",
        "keystore": directory / "broker-key-and-chain.pem",
        "client_cert": directory / "client.pem",
        "client_key": directory / "client.key",
        "stranger_cert": directory / "stranger.pem",
        "stranger_key": directory / "stranger.key",
    }
    ca.cert_pem.write_to_path(str(files["ca"]))
    other_ca.cert_pem.write_to_path(str(files["other_ca"]))
    chain = b"".join(blob.bytes() for blob in broker.cert_chain_pems)
    files["keystore"].write_bytes(_pkcs8(broker.private_key_pem.bytes()) + chain)
    client.cert_chain_pems[0].write_to_path(str(files["client_cert"]))
    client.private_key_pem.write_to_path(str(files["client_key"]))
    stranger.cert_chain_pems[0].write_to_path(str(files["stranger_cert"]))
    stranger.private_key_pem.write_to_path(str(files["stranger_key"]))
    return files


def _script(*args: str, timeout_s: float) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "KAFKA_BOOTSTRAP_SERVERS"}
    return subprocess.run(
        ["bash", str(SCRIPT), *args],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )


@pytest.fixture(scope="session")
def secure_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureBroker]:
    """One broker for the whole suite, stopped (and its data removed) at the end."""
    directory = tmp_path_factory.mktemp("kafka-sasl-ssl")
    pki = make_pki(directory)
    scram_password = secrets.token_urlsafe(18)
    plain_password = secrets.token_urlsafe(18)
    users = directory / "users"
    scram256_password = secrets.token_urlsafe(18)
    users.write_text(
        f"SCRAM-SHA-512 alice {scram_password}\n"
        f"SCRAM-SHA-256 carol {scram256_password}\n"
        f"PLAIN bob {plain_password}\n"
    )
    port, sasl_port = free_port(), free_port()
    proc = _script(
        "start",
        str(port),
        "--sasl-ssl",
        str(sasl_port),
        "--keystore",
        str(pki["keystore"]),
        "--truststore",
        str(pki["ca"]),
        "--users",
        str(users),
        timeout_s=START_TIMEOUT_S,
    )
    if proc.returncode != 0:
        _script("stop", str(port), timeout_s=60.0)  # removes what a failed start left
        pytest.fail(
            "cannot start Apache Kafka with a SASL_SSL listener (these tests need Java 17+ "
            "and the jars of `scripts/kafka/apache-kafka.sh fetch`, which needs Maven):\n"
            + proc.stderr[-4000:],
            pytrace=False,
        )
    try:
        yield SecureBroker(
            plain_bootstrap=f"127.0.0.1:{port}",
            secure_bootstrap=f"localhost:{sasl_port}",
            port=sasl_port,
            ca_file=pki["ca"],
            other_ca_file=pki["other_ca"],
            client_cert=pki["client_cert"],
            client_key=pki["client_key"],
            stranger_cert=pki["stranger_cert"],
            stranger_key=pki["stranger_key"],
            scram_user="alice",
            scram_password=scram_password,
            plain_user="bob",
            plain_password=plain_password,
            scram256_user="carol",
            scram256_password=scram256_password,
        )
    finally:
        _script("stop", str(port), timeout_s=60.0)
