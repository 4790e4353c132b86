"""HTTPS for the HTTP server from `http.tls`: the server's SSLContext, built without aiohttp
so that `burnrate check` loads the files exactly as `burnrate run` does.

`cert_file` is the PEM certificate chain (the server's certificate first), `key_file`
its PEM private key, unencrypted (the process starts unattended: nobody could type a
passphrase). With `client_ca_file` (PEM, one or more CA certificates) every client must
present a certificate signed by one of them (mutual TLS): a connection without one, or
with one from another CA, fails in the handshake, before any HTTP. TLS 1.2 is the
oldest version offered.

Each file problem is a ConfigError naming its field: unreadable, not PEM, an encrypted
key, a key that is not the certificate's.
"""

from __future__ import annotations

import ssl
from typing import Final

from engine.core.config_io import HttpTls
from engine.errors import ConfigError

__all__ = ["server_ssl_context"]

_PATH: Final = "$.http.tls"
_MAX_PEM_BYTES: Final = 1024 * 1024
_CERT_MARK: Final = b"-----BEGIN CERTIFICATE-----"


def _no_key_password() -> bytes:
    """Given as the key's password so that an encrypted key fails at once: without it,
    OpenSSL would prompt on the terminal and the start would hang."""
    return b""


def _read_pem(field: str, file: str, marker: bytes, what: str) -> bytes:
    try:
        with open(file, "rb") as f:
            data = f.read(_MAX_PEM_BYTES + 1)
    except OSError as exc:
        raise ConfigError(
            [f"{_PATH}.{field}: cannot read {file}: {exc.strerror or type(exc).__name__}"]
        ) from None
    if len(data) > _MAX_PEM_BYTES or marker not in data:
        raise ConfigError([f"{_PATH}.{field}: {file} holds no PEM {what}"])
    return data


def _collect(errors: list[str], field: str, file: str, marker: bytes, what: str) -> bytes | None:
    try:
        return _read_pem(field, file, marker, what)
    except ConfigError as exc:
        errors += exc.errors
        return None


def server_ssl_context(tls: HttpTls) -> ssl.SSLContext:
    """The server side of `http.tls`; ConfigError with one line per problem found."""
    errors: list[str] = []
    cert = _collect(errors, "cert_file", tls.cert_file, _CERT_MARK, "certificate")
    key = _collect(errors, "key_file", tls.key_file, b"PRIVATE KEY-----", "private key")
    if key is not None and b"ENCRYPTED" in key:
        errors.append(
            f"{_PATH}.key_file: {tls.key_file} is encrypted; give the key unencrypted "
            "(readable by the service's user only)"
        )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if cert is not None and not errors:
        try:
            context.load_cert_chain(tls.cert_file, tls.key_file, _no_key_password)
        except ssl.SSLError as exc:
            if "KEY_VALUES_MISMATCH" in str(exc) or exc.reason == "KEY_VALUES_MISMATCH":
                errors.append(
                    f"{_PATH}.key_file: {tls.key_file} is not the key of the certificate "
                    f"in {tls.cert_file}"
                )
            else:
                reason = f" ({exc.reason})" if exc.reason else ""
                errors.append(
                    f"{_PATH}.cert_file: cannot load {tls.cert_file} with {tls.key_file}: not a "
                    f"PEM certificate with its unencrypted key{reason}"
                )
        except OSError as exc:  # a file went away between the reads
            errors.append(f"{_PATH}.cert_file: cannot load: {exc.strerror or exc}")
    if tls.client_ca_file is not None:
        try:
            _read_pem("client_ca_file", tls.client_ca_file, _CERT_MARK, "certificate")
            context.load_verify_locations(cafile=tls.client_ca_file)
        except ConfigError as exc:
            errors += exc.errors
        except ssl.SSLError as exc:
            reason = f" ({exc.reason})" if exc.reason else ""
            errors.append(
                f"{_PATH}.client_ca_file: cannot load {tls.client_ca_file}: not PEM CA "
                f"certificates{reason}"
            )
        else:
            context.verify_mode = ssl.CERT_REQUIRED
    if errors:
        raise ConfigError(errors)
    return context
