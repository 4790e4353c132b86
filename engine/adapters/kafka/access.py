"""Before a client starts: do the TLS and SASL settings get us into a broker?

aiokafka's bootstrap logs why each broker could not be used and then raises one
`KafkaConnectionError("Unable to bootstrap from ...")` whatever the reason. A broker
certificate the CA file does not vouch for, a certificate for another host name or a
password the broker refuses would all look like brokers being down, and `burnrate run`
would retry for ever with nothing to fix. `check_access` opens one connection itself
(TLS handshake, ApiVersions, SASL login: what every client connection does first) and
tells those cases apart:

- the broker answered and let us in: return;
- the broker is reachable but refuses us (its certificate, our client certificate, the
  TLS handshake, the SASL mechanism or login): a ConfigError naming the field to fix,
  never retried;
- no broker answered at all: `KafkaConnectionError`, which callers retry as an outage.

Messages name the broker and quote OpenSSL's verification result or the broker's own
error message; neither ever holds the password, so they are safe to print and log.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Mapping
from typing import Any, Final

from aiokafka.conn import collect_hosts, create_conn
from aiokafka.errors import (
    AuthenticationFailedError,
    IllegalSaslStateError,
    KafkaConnectionError,
    KafkaError,
    SaslAuthenticationFailed,
    UnsupportedSaslMechanismError,
)

from engine.core.config import KafkaSecurity
from engine.errors import ConfigError

__all__ = ["ACCESS_TIMEOUT_S", "check_access"]

ACCESS_TIMEOUT_S: Final = 15.0
"""Per broker: connect, TLS handshake, ApiVersions and the SASL exchange."""

_SEC = "$.kafka.security"
_NAME_MISMATCH: Final = frozenset({62, 64})  # X509_V_ERR_HOSTNAME_MISMATCH, _IP_ADDRESS_MISMATCH
_SASL_REFUSED = (SaslAuthenticationFailed, AuthenticationFailedError, IllegalSaslStateError)


def _password_field(sec: KafkaSecurity) -> str:
    return f"{_SEC}.sasl_password_file" if sec.sasl_password_file else f"{_SEC}.sasl_password_env"


def _said(exc: BaseException) -> str:
    """The broker's own message when it sent one, without aiokafka's `[Error 58] ...`."""
    message = exc.args[0] if exc.args and isinstance(exc.args[0], str) else str(exc)
    return " ".join(message.split()) or type(exc).__name__


def _refusal(sec: KafkaSecurity, where: str, exc: BaseException) -> ConfigError | None:
    """The ConfigError for a broker that answered and refused us, None for anything that
    may be an outage (refused or reset connections, timeouts, a broker going away)."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        verdict = exc.verify_message or exc.reason or "certificate verify failed"
        if exc.verify_code in _NAME_MISMATCH:
            return ConfigError(
                [
                    f"$.kafka.bootstrap_servers: the TLS certificate of the broker at {where} "
                    f"is not valid for that name ({verdict}); connect by a name the "
                    "certificate holds"
                ]
            )
        cafile = f"the CA file {sec.ssl_cafile}" if sec.ssl_cafile else "the system's CAs"
        return ConfigError(
            [
                f"{_SEC}.ssl_cafile: the TLS certificate of the broker at {where} is not "
                f"trusted by {cafile} ({verdict})"
            ]
        )
    tls = exc if isinstance(exc, ssl.SSLError) else exc.__cause__
    if isinstance(tls, ssl.SSLError) and not isinstance(
        tls, ssl.SSLEOFError | ssl.SSLZeroReturnError
    ):
        return _tls_refusal(sec, where, tls)
    if isinstance(exc, UnsupportedSaslMechanismError):
        return ConfigError([f"{_SEC}.sasl_mechanism: the broker at {where}: {_said(exc)}"])
    if isinstance(exc, _SASL_REFUSED):
        said = _said(exc)
        mechanism = sec.sasl_mechanism or "PLAIN"
        return ConfigError(
            [
                f"{_password_field(sec)}: the broker at {where} refused the SASL {mechanism} "
                f"login ({said}); check the user name and password"
            ]
        )
    return None


def _tls_refusal(sec: KafkaSecurity, where: str, exc: ssl.SSLError) -> ConfigError:
    """A handshake the broker broke off. With TLS 1.3 a broker that rejects the client
    certificate (or wants one) says so in an alert that arrives after our side of the
    handshake is done, so it surfaces in aiokafka as a closed connection caused by it."""
    reason = exc.reason or str(exc)
    if "CERTIFICATE" in reason or "UNKNOWN_CA" in reason:
        if not sec.ssl_certfile:
            return ConfigError(
                [
                    f"{_SEC}.ssl_certfile: the broker at {where} wants a TLS client "
                    f"certificate ({reason}); give ssl_certfile and ssl_keyfile"
                ]
            )
        return ConfigError(
            [
                f"{_SEC}.ssl_certfile: the broker at {where} refused the TLS client "
                f"certificate {sec.ssl_certfile} ({reason}); is it signed by a CA the "
                "broker trusts, and still valid?"
            ]
        )
    return ConfigError([f"{_SEC}: the TLS handshake with the broker at {where} failed ({reason})"])


async def check_access(
    client_kwargs: Mapping[str, Any],
    security: KafkaSecurity,
    *,
    timeout_s: float = ACCESS_TIMEOUT_S,
) -> None:
    """Log into the first bootstrap broker that answers, with `client_kwargs` (those of
    `kafka_client_kwargs`). ConfigError when a broker refuses the TLS or SASL settings;
    KafkaConnectionError when none answers. Nothing to do for PLAINTEXT."""
    protocol = client_kwargs.get("security_protocol", "PLAINTEXT")
    if protocol == "PLAINTEXT":
        return
    last = "no broker given"
    for host, port, _family in collect_hosts(client_kwargs["bootstrap_servers"]):
        where = f"{host}:{port}"
        try:
            async with asyncio.timeout(timeout_s):
                conn = await create_conn(
                    host,
                    port,
                    client_id=client_kwargs.get("client_id", "burnrate"),
                    request_timeout_ms=int(timeout_s * 1000),
                    ssl_context=client_kwargs.get("ssl_context"),
                    security_protocol=protocol,
                    sasl_mechanism=client_kwargs.get("sasl_mechanism"),
                    sasl_plain_username=client_kwargs.get("sasl_plain_username"),
                    sasl_plain_password=client_kwargs.get("sasl_plain_password"),
                )
        except (OSError, KafkaError, TimeoutError) as exc:
            refusal = _refusal(security, where, exc)
            if refusal is not None:
                raise refusal from None
            last = f"{where}: {type(exc).__name__}"
            continue
        conn.close()
        return
    raise KafkaConnectionError(f"no broker answered ({last})")
