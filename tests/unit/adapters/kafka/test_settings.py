"""kafka_client_kwargs: what the Kafka clients are given, and one ConfigError line naming
the config field for every TLS file or SASL secret that cannot be used."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from engine.adapters.kafka.settings import group_kwargs, kafka_client_kwargs
from engine.core.config import Kafka, KafkaSecurity
from engine.errors import ConfigError

BOOTSTRAP = "broker-1:9092,broker-2:9092"
PASSWORD = "pa55-w\u00f6rd"

# A self-signed certificate and its key, made for these tests only: they protect nothing.
CERT = """\
-----BEGIN CERTIFICATE-----
MIIBhzCCAS2gAwIBAgIUSjd5vUGG7IAK+pG8VoAahCtqJ5YwCgYIKoZIzj0EAwIw
GDEWMBQGA1UEAwwNYnVybnJhdGUtdGVzdDAgFw0yNjEyMDEyMjM4MDdaGA8yMTI2
MTEwNzIyMzgwN1owGDEWMBQGA1UEAwwNYnVybnJhdGUtdGVzdDBZMBMGByqGSM49
AgEGCCqGSM49AwEHA0IABPSalCZxVt97MmHhiNZMZMHZvh2LSqN5ipPws78B5+Bu
6LMBVgPO5GQhrQrjdSEejNkacPkR7aFn2SdyZcw2dKKjUzBRMB0GA1UdDgQWBBQD
rfSuimkSCJgamgdfzDeO3Od/SzAfBgNVHSMEGDAWgBQDrfSuimkSCJgamgdfzDeO
3Od/SzAPBgNVHRMBAf8EBTADAQH/MAoGCCqGSM49BAMCA0gAMEUCIQCAmdABoNzF
LSUolyPEYzF+9/PacaBOF/CNJl0ZTBMVtwIgI85c0M/o4wYKKbIpZ0rcTXGifj8w
pGzzC7sw1blew20=
-----END CERTIFICATE-----
"""
KEY = """\
-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgVS3clVuuefCwkKQ8
BjpGKpkZQYLiQ8emP+75nNLQyJehRANCAAT0mpQmcVbfezJh4YjWTGTB2b4di0qj
eYqT8LO/AefgbuizAVYDzuRkIa0K43UhHozZGnD5Ee2hZ9kncmXMNnSi
-----END PRIVATE KEY-----
"""
ENCRYPTED_KEY = """\
-----BEGIN ENCRYPTED PRIVATE KEY-----
MIHsMFcGCSqGSIb3DQEFDTBKMCkGCSqGSIb3DQEFDDAcBAjvPwAHmiQsLQICCAAw
DAYIKoZIhvcNAgkFADAdBglghkgBZQMEASoEEIsjmv9ahTLp3NeTa2hh680EgZAG
IqTHcd1mJ3whNEnZNsTAaJIu48dEzlvzp0gwxNAIAJWrHaHMU8HQoYWAMOGGwQhK
ezV0eaphpNHj51udxlqOG3OtLDAyVYCngdnVfbdONr22kE0Po2RwJHIMZdwEjcx+
i6DUcRKEM5Z5k+j3Y2ocnHf2q2/1tq5SfVALjVY/ZlcXSPP3DmQrOqOOt+Pp63c=
-----END ENCRYPTED PRIVATE KEY-----
"""
OTHER_KEY = """\
-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgegeZE7md7IpIZBaD
odFXI3bfdbcs1iu2+Q9rk3Bh4qahRANCAASdfOjxvH6ShyDEx+kgSNWFKccj/pvr
IL2Axr4T12o/jTUfhwnm9D4fmKodwL5uNUe4LmwpeKJWR0Qo0pww1/6Q
-----END PRIVATE KEY-----
"""


def kafka(**security: str) -> Kafka:
    return Kafka(bootstrap_servers=BOOTSTRAP, security=KafkaSecurity(**security))  # type: ignore[arg-type]


def error_of(config: Kafka) -> str:
    """The one line of the ConfigError kafka_client_kwargs raises (never the password)."""
    with pytest.raises(ConfigError) as info:
        kafka_client_kwargs(config)
    assert len(info.value.errors) == 1, info.value.errors
    assert PASSWORD not in str(info.value)
    return info.value.errors[0]


@pytest.fixture
def pem(tmp_path: Path) -> dict[str, str]:
    files = {"cert": CERT, "key": KEY, "encrypted": ENCRYPTED_KEY, "other": OTHER_KEY}
    for name, text in files.items():
        (tmp_path / f"{name}.pem").write_text(text)
    (tmp_path / "junk.pem").write_text("not a certificate\n")
    return {name: str(tmp_path / f"{name}.pem") for name in [*files, "junk", "missing"]}


# --- PLAINTEXT -------------------------------------------------------------------------


def test_plaintext_is_brokers_and_protocol_only() -> None:
    assert kafka_client_kwargs(Kafka(bootstrap_servers=BOOTSTRAP)) == {
        "bootstrap_servers": BOOTSTRAP,
        "security_protocol": "PLAINTEXT",
    }


def test_plaintext_reads_no_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    # SASL fields are only read for a SASL protocol: an unset variable is no error here.
    monkeypatch.delenv("BURNRATE_TEST_UNSET", raising=False)
    config = kafka(sasl_username="u", sasl_password_env="BURNRATE_TEST_UNSET")
    assert kafka_client_kwargs(config)["security_protocol"] == "PLAINTEXT"


# --- SASL ----------------------------------------------------------------------------------


def test_sasl_password_from_env_is_stripped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BURNRATE_TEST_PW", f" {PASSWORD}\n")
    config = kafka(
        protocol="SASL_PLAINTEXT", sasl_username="engine", sasl_password_env="BURNRATE_TEST_PW"
    )
    assert kafka_client_kwargs(config) == {
        "bootstrap_servers": BOOTSTRAP,
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "PLAIN",
        "sasl_plain_username": "engine",
        "sasl_plain_password": PASSWORD,
    }


def test_sasl_username_from_env_and_password_from_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BURNRATE_TEST_USER", "engine\n")
    pw = tmp_path / "pw"
    pw.write_text(PASSWORD + "\n")
    config = kafka(
        protocol="SASL_PLAINTEXT",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username_env="BURNRATE_TEST_USER",
        sasl_password_file=str(pw),
    )
    kwargs = kafka_client_kwargs(config)
    assert kwargs["sasl_mechanism"] == "SCRAM-SHA-512"
    assert (kwargs["sasl_plain_username"], kwargs["sasl_plain_password"]) == ("engine", PASSWORD)


def test_sasl_ssl_has_both_a_tls_context_and_credentials(
    pem: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BURNRATE_TEST_PW", PASSWORD)
    config = kafka(
        protocol="SASL_SSL",
        ssl_cafile=pem["cert"],
        sasl_username="engine",
        sasl_password_env="BURNRATE_TEST_PW",
    )
    kwargs = kafka_client_kwargs(config)
    assert isinstance(kwargs["ssl_context"], ssl.SSLContext)
    assert kwargs["sasl_plain_password"] == PASSWORD


def test_sasl_password_file_not_utf8_is_a_config_error(tmp_path: Path) -> None:
    pw = tmp_path / "pw"
    pw.write_bytes(b"\xff\xfe" + PASSWORD.encode("utf-16-le"))
    config = kafka(protocol="SASL_PLAINTEXT", sasl_username="engine", sasl_password_file=str(pw))
    assert error_of(config) == (f"$.kafka.security.sasl_password_file: cannot read {pw}: not UTF-8")


@pytest.mark.parametrize(
    ("security", "expected"),
    [
        pytest.param(
            {"sasl_username": "u", "sasl_password_env": "BURNRATE_TEST_UNSET"},
            "$.kafka.security.sasl_password_env: environment variable BURNRATE_TEST_UNSET "
            "is not set",
            id="password env unset",
        ),
        pytest.param(
            {"sasl_username": "u", "sasl_password_env": "BURNRATE_TEST_BLANK"},
            "$.kafka.security.sasl_password_env: environment variable BURNRATE_TEST_BLANK is empty",
            id="password env blank",
        ),
        pytest.param(
            {"sasl_username_env": "BURNRATE_TEST_UNSET", "sasl_password_env": "BURNRATE_TEST_PW"},
            "$.kafka.security.sasl_username_env: environment variable BURNRATE_TEST_UNSET "
            "is not set",
            id="username env unset",
        ),
        pytest.param(
            {"sasl_username": "u", "sasl_password_file": "/nonexistent/pw"},
            "$.kafka.security.sasl_password_file: cannot read /nonexistent/pw: "
            "No such file or directory",
            id="password file missing",
        ),
        pytest.param(
            {"sasl_username": "u"},
            "$.kafka.security: SASL needs sasl_username (or sasl_username_env) and "
            "sasl_password_env or sasl_password_file",
            id="no password source",
        ),
        pytest.param(
            {"sasl_password_env": "BURNRATE_TEST_PW"},
            "$.kafka.security: SASL needs sasl_username (or sasl_username_env) and "
            "sasl_password_env or sasl_password_file",
            id="no username",
        ),
        pytest.param(
            {
                "sasl_username": "u",
                "sasl_password_env": "BURNRATE_TEST_PW",
                "sasl_password_file": "/nonexistent/pw",
            },
            "$.kafka.security: give at most one of sasl_password_env or sasl_password_file",
            id="two password sources",
        ),
        pytest.param(
            {
                "sasl_username": "u",
                "sasl_username_env": "BURNRATE_TEST_USER",
                "sasl_password_env": "BURNRATE_TEST_PW",
            },
            "$.kafka.security: give at most one of sasl_username or sasl_username_env",
            id="two usernames",
        ),
    ],
)
def test_unusable_sasl_settings(
    security: dict[str, str], expected: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("BURNRATE_TEST_UNSET", raising=False)
    monkeypatch.setenv("BURNRATE_TEST_BLANK", " \n")
    monkeypatch.setenv("BURNRATE_TEST_PW", PASSWORD)
    monkeypatch.setenv("BURNRATE_TEST_USER", "u")
    for protocol in ("SASL_PLAINTEXT", "SASL_SSL"):
        assert error_of(kafka(protocol=protocol, **security)) == expected


# --- TLS ------------------------------------------------------------------------------------


def test_ssl_context_verifies_the_brokers(pem: dict[str, str]) -> None:
    kwargs = kafka_client_kwargs(kafka(protocol="SSL", ssl_cafile=pem["cert"]))
    context = kwargs["ssl_context"]
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname
    assert "sasl_mechanism" not in kwargs


def test_ssl_without_a_cafile_uses_the_system_cas() -> None:
    assert isinstance(kafka_client_kwargs(kafka(protocol="SSL"))["ssl_context"], ssl.SSLContext)


def test_ssl_client_certificate_and_key(pem: dict[str, str]) -> None:
    for security in (
        {"ssl_certfile": pem["cert"], "ssl_keyfile": pem["key"]},
        {"ssl_certfile": pem["cert"], "ssl_keyfile": pem["key"], "ssl_cafile": pem["cert"]},
    ):
        kwargs = kafka_client_kwargs(kafka(protocol="SSL", **security))
        assert isinstance(kwargs["ssl_context"], ssl.SSLContext)


@pytest.mark.parametrize(
    ("security", "expected"),
    [
        pytest.param(
            {"ssl_cafile": "missing"},
            "$.kafka.security.ssl_cafile: cannot load {missing}: No such file or directory",
            id="cafile missing",
        ),
        pytest.param(
            {"ssl_cafile": "junk"},
            "$.kafka.security.ssl_cafile: cannot load {junk}: not a PEM CA certificate file",
            id="cafile not a certificate",
        ),
        pytest.param(
            {"ssl_certfile": "missing", "ssl_keyfile": "key"},
            "$.kafka.security.ssl_certfile: cannot load {missing} and {key}: "
            "No such file or directory",
            id="certfile missing",
        ),
        pytest.param(
            {"ssl_certfile": "cert", "ssl_keyfile": "other"},
            "$.kafka.security.ssl_certfile: cannot load {cert} and {other}: "
            "not a PEM certificate with its matching unencrypted key",
            id="key of another certificate",
        ),
        pytest.param(
            # Fails at once: without a password callback OpenSSL would prompt on the terminal.
            {"ssl_certfile": "cert", "ssl_keyfile": "encrypted"},
            "$.kafka.security.ssl_certfile: cannot load {cert} and {encrypted}: "
            "not a PEM certificate with its matching unencrypted key",
            id="encrypted key",
        ),
        pytest.param(
            {"ssl_certfile": "cert"},
            "$.kafka.security.ssl_certfile: cannot load {cert}: "
            "not a PEM certificate with its matching unencrypted key",
            id="certificate without its key",
        ),
        pytest.param(
            {"ssl_keyfile": "key"},
            "$.kafka.security.ssl_keyfile: needs ssl_certfile, the certificate of the key",
            id="key without a certificate",
        ),
    ],
)
def test_unusable_tls_files(
    security: dict[str, str], expected: str, pem: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BURNRATE_TEST_PW", PASSWORD)
    files = {field: pem[name] for field, name in security.items()}
    want = expected.format(**pem)
    for extra in ({}, {"sasl_username": "u", "sasl_password_env": "BURNRATE_TEST_PW"}):
        protocol = "SASL_SSL" if extra else "SSL"
        line = error_of(kafka(protocol=protocol, **files, **extra))
        # OpenSSL may add its reason in parentheses; the line starts with ours.
        assert line == want or line.startswith(want + " ("), line


@pytest.mark.parametrize(
    ("session", "expected"),
    [
        pytest.param(
            "10s",
            {
                "session_timeout_ms": 10_000,
                "heartbeat_interval_ms": 3000,
                "request_timeout_ms": 40_000,
            },
            id="the default keeps aiokafka's own settings",
        ),
        pytest.param(
            "2s",
            {
                "session_timeout_ms": 2000,
                "heartbeat_interval_ms": 666,
                "request_timeout_ms": 40_000,
            },
            id="a short session beats every third of it",
        ),
        pytest.param(
            "5m",
            {
                "session_timeout_ms": 300_000,
                "heartbeat_interval_ms": 3000,
                "request_timeout_ms": 310_000,
            },
            id="a long session outlasts a held JoinGroup",
        ),
    ],
)
def test_group_timing_follows_the_session_timeout(session: str, expected: dict[str, int]) -> None:
    assert group_kwargs(Kafka(session_timeout=session)) == expected
