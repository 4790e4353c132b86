"""Kafka client settings: brokers, TLS and SASL, shared by the consumer, the dead-letter
producer and every other client the engine opens."""

from __future__ import annotations

import os
import ssl
from typing import Any

from engine.adapters.secrets import read_secret
from engine.core.config import Kafka, KafkaSecurity
from engine.core.durations import parse_duration_s
from engine.errors import ConfigError

__all__ = ["bootstrap_from_env", "bootstrap_problem", "group_kwargs", "kafka_client_kwargs"]

_SEC = "$.kafka.security"


def bootstrap_from_env() -> str | None:
    """`KAFKA_BOOTSTRAP_SERVERS` when set (it overrides the configured brokers in
    `burnrate run`, `produce` and `demo`), else None."""
    return os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "").strip() or None


def bootstrap_problem(servers: str) -> str | None:
    """What makes a bootstrap list (`host:port,host:port`, IPv6 as `[::1]:9092`, the port
    9092 when left out) unusable, or None. The Kafka client would take such a list and
    then fail at every connection attempt, which looks like brokers being down."""
    entries = [entry.strip() for entry in servers.split(",")]
    if not any(entries):
        return "no broker given (expected HOST:PORT[,HOST:PORT...])"
    for entry in entries:
        if not entry:
            return f"an empty entry in {servers!r}"
        if entry.startswith("["):
            host, _, rest = entry[1:].partition("]")
            port: str | None = rest[1:] if rest.startswith(":") else None
            if rest and port is None:
                return f"expected [IPv6]:PORT, got {entry!r}"
        elif entry.count(":") == 1:
            host, _, port = entry.partition(":")
        else:  # a host alone, or an IPv6 address without brackets (and without a port)
            host, port = entry, None
        if not host:
            return f"no host in {entry!r}"
        if port is not None and not (port.isascii() and port.isdigit() and 0 < int(port) < 65536):
            return f"the port of {entry!r} is not a number from 1 to 65535"
    return None


def _tls_reason(exc: OSError, what: str) -> str:
    if isinstance(exc, ssl.SSLError):  # OpenSSL's text is about its own source lines
        return f"not {what}" + (f" ({exc.reason})" if exc.reason else "")
    return exc.strerror or type(exc).__name__


def _no_key_password() -> bytes:
    """Given as the key password so that an encrypted key fails at once: without one,
    OpenSSL would prompt on the terminal and the start would hang."""
    return b""


def _ssl_context(sec: KafkaSecurity) -> ssl.SSLContext:
    """What aiokafka's create_ssl_context builds (verified server, hostname checked), with
    every file problem a ConfigError naming its field."""
    try:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=sec.ssl_cafile)
    except OSError as exc:
        reason = _tls_reason(exc, "a PEM CA certificate file")
        raise ConfigError([f"{_SEC}.ssl_cafile: cannot load {sec.ssl_cafile}: {reason}"]) from None
    if sec.ssl_keyfile and not sec.ssl_certfile:
        raise ConfigError([f"{_SEC}.ssl_keyfile: needs ssl_certfile, the certificate of the key"])
    if sec.ssl_certfile:
        try:
            context.load_cert_chain(sec.ssl_certfile, sec.ssl_keyfile, _no_key_password)
        except OSError as exc:
            reason = _tls_reason(exc, "a PEM certificate with its matching unencrypted key")
            files = sec.ssl_certfile + (f" and {sec.ssl_keyfile}" if sec.ssl_keyfile else "")
            raise ConfigError([f"{_SEC}.ssl_certfile: cannot load {files}: {reason}"]) from None
    return context


def _sasl_credentials(sec: KafkaSecurity) -> tuple[str, str]:
    if sec.sasl_username and sec.sasl_username_env:
        raise ConfigError([f"{_SEC}: give at most one of sasl_username or sasl_username_env"])
    if sec.sasl_password_env and sec.sasl_password_file:
        raise ConfigError([f"{_SEC}: give at most one of sasl_password_env or sasl_password_file"])
    if not (sec.sasl_username or sec.sasl_username_env) or not (
        sec.sasl_password_env or sec.sasl_password_file
    ):
        raise ConfigError(
            [
                f"{_SEC}: SASL needs sasl_username (or sasl_username_env) and "
                "sasl_password_env or sasl_password_file"
            ]
        )
    if sec.sasl_username_env:
        username = read_secret(f"{_SEC}.sasl_username_env", env=sec.sasl_username_env)
    else:
        username = sec.sasl_username or ""
    if sec.sasl_password_env:
        password = read_secret(f"{_SEC}.sasl_password_env", env=sec.sasl_password_env)
    else:
        password = read_secret(f"{_SEC}.sasl_password_file", file=sec.sasl_password_file)
    return username, password


def kafka_client_kwargs(kafka: Kafka) -> dict[str, Any]:
    """Connection settings shared by the consumer and the dead-letter producer.

    Raises ConfigError, with a line for each problem, for a malformed bootstrap list and
    for unreadable TLS files and SASL secrets, so a start fails with the config's path
    instead of retrying as if the brokers were down."""
    sec = kafka.security
    errors: list[str] = []
    problem = bootstrap_problem(kafka.bootstrap_servers)
    if problem is not None:
        errors.append(f"$.kafka.bootstrap_servers: {problem}")
    kwargs: dict[str, Any] = {
        "bootstrap_servers": kafka.bootstrap_servers,
        "security_protocol": sec.protocol,
    }
    if sec.protocol in ("SSL", "SASL_SSL"):
        try:
            kwargs["ssl_context"] = _ssl_context(sec)
        except ConfigError as exc:
            errors += exc.errors
    if sec.protocol in ("SASL_PLAINTEXT", "SASL_SSL"):
        try:
            username, password = _sasl_credentials(sec)
        except ConfigError as exc:
            errors += exc.errors
        else:
            kwargs["sasl_mechanism"] = sec.sasl_mechanism or "PLAIN"
            kwargs["sasl_plain_username"] = username
            kwargs["sasl_plain_password"] = password
    if errors:
        raise ConfigError(errors)
    return kwargs


HEARTBEAT_INTERVAL_MS = 3000
"""aiokafka's default heartbeat interval, kept for session timeouts of 9s and more."""
REQUEST_TIMEOUT_MS = 40_000
"""aiokafka's default request timeout, kept unless the session timeout needs more."""


def group_kwargs(kafka: Kafka) -> dict[str, int]:
    """Consumer-group timing from `kafka.session_timeout`: heartbeats every third of the
    session, at most every 3s (so the default 10s gives aiokafka's own 3s), and a
    request timeout that outlasts a JoinGroup the broker holds for the whole rebalance
    timeout (which aiokafka sets to the session timeout)."""
    session_ms = round(parse_duration_s(kafka.session_timeout) * 1000)
    return {
        "session_timeout_ms": session_ms,
        "heartbeat_interval_ms": min(HEARTBEAT_INTERVAL_MS, session_ms // 3),
        "request_timeout_ms": max(REQUEST_TIMEOUT_MS, session_ms + 10_000),
    }
