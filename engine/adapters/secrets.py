"""Secrets named by the config: read from an environment variable or a file, once, at start.

Kafka SASL credentials, the HTTP bearer token and webhook signing keys all come through
`read_secret`, so each fails the same way: a ConfigError whose one line names the config
field that pointed at the source (`$.kafka.security.sasl_password_file: cannot read
/run/pw: not UTF-8`) and never any part of the secret. A failure here is the user's to
fix, so it must stop the start with exit 2 rather than look like an outage to retry.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Final

from engine.errors import ConfigError

__all__ = ["MAX_SECRET_BYTES", "read_secret"]

MAX_SECRET_BYTES: Final = 64 * 1024
"""More than any token or key list; stops a mistyped path such as /dev/zero from
reading forever or filling memory."""


def read_secret(
    path: str,
    *,
    env: str | None = None,
    file: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> str:
    """The secret held by environment variable `env` or by `file` (exactly one of them),
    without surrounding whitespace.

    `path` is the config path of the field that named the source, e.g.
    `$.http.auth_token_file`; every problem (unset, missing, unreadable, not UTF-8,
    empty) is a ConfigError with one line starting with it. `environ` replaces
    os.environ (tests).
    """
    if env is not None and file is None:
        return _from_env(path, env, os.environ if environ is None else environ)
    if file is not None and env is None:
        return _from_file(path, file)
    raise TypeError("read_secret needs exactly one of env or file")


def _from_env(path: str, name: str, environ: Mapping[str, str]) -> str:
    value = environ.get(name)
    if value is None:
        raise ConfigError([f"{path}: environment variable {name} is not set"])
    try:
        # os.environ keeps undecodable bytes as lone surrogates; they are no valid secret.
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ConfigError([f"{path}: environment variable {name} is not UTF-8"]) from None
    secret = value.strip()
    if not secret:
        raise ConfigError([f"{path}: environment variable {name} is empty"])
    return secret


def _from_file(path: str, file: str) -> str:
    try:
        with open(file, "rb") as f:
            data = f.read(MAX_SECRET_BYTES + 1)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ConfigError([f"{path}: cannot read {file}: {reason}"]) from None
    if len(data) > MAX_SECRET_BYTES:
        raise ConfigError(
            [f"{path}: cannot read {file}: larger than {MAX_SECRET_BYTES} bytes, not a secret"]
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        # The exception's text quotes the offending byte: a piece of the secret.
        raise ConfigError([f"{path}: cannot read {file}: not UTF-8"]) from None
    secret = text.strip()
    if not secret:
        raise ConfigError([f"{path}: {file} is empty"])
    return secret
