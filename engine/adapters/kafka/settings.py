"""Kafka client settings: brokers, TLS and SASL, shared by the consumer, the dead-letter
producer and every other client the engine opens."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from aiokafka.helpers import create_ssl_context

from engine.core.config import Kafka
from engine.errors import ConfigError

__all__ = ["bootstrap_from_env", "kafka_client_kwargs"]


def bootstrap_from_env() -> str | None:
    """`KAFKA_BOOTSTRAP_SERVERS` when set (it overrides the configured brokers in
    `burnrate run`, `produce` and `demo`), else None."""
    return os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "").strip() or None


def _secret(env: str | None, file: str | None, what: str) -> str | None:
    if env:
        value = os.environ.get(env)
        if value is None:
            raise ConfigError([f"$.kafka.security: {what}: environment variable {env} is not set"])
        return value
    if file:
        try:
            return Path(file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(
                [f"$.kafka.security: {what}: cannot read {file}: {exc.strerror}"]
            ) from None
    return None


def kafka_client_kwargs(kafka: Kafka) -> dict[str, Any]:
    """Connection settings shared by the consumer and the dead-letter producer."""
    sec = kafka.security
    kwargs: dict[str, Any] = {
        "bootstrap_servers": kafka.bootstrap_servers,
        "security_protocol": sec.protocol,
    }
    if sec.protocol in ("SSL", "SASL_SSL"):
        try:
            kwargs["ssl_context"] = create_ssl_context(
                cafile=sec.ssl_cafile, certfile=sec.ssl_certfile, keyfile=sec.ssl_keyfile
            )
        except OSError as exc:
            raise ConfigError([f"$.kafka.security: cannot load TLS files: {exc}"]) from None
    if sec.protocol in ("SASL_PLAINTEXT", "SASL_SSL"):
        username = sec.sasl_username or _secret(sec.sasl_username_env, None, "sasl username")
        password = _secret(sec.sasl_password_env, sec.sasl_password_file, "sasl password")
        if not username or password is None:
            raise ConfigError(
                [
                    "$.kafka.security: SASL needs sasl_username (or sasl_username_env) and "
                    "sasl_password_env or sasl_password_file"
                ]
            )
        kwargs["sasl_mechanism"] = sec.sasl_mechanism or "PLAIN"
        kwargs["sasl_plain_username"] = username
        kwargs["sasl_plain_password"] = password
    return kwargs
