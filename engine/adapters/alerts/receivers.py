"""What makes a configured receiver usable, checked without the HTTP client: its URLs, its
webhook signing secrets and its PagerDuty routing key.

The sinks (engine.adapters.alerts.sinks) build on these functions, and `burnrate check`
runs them through engine.commands.preflight without importing aiohttp, so a receiver
`burnrate run` would refuse is refused by `check` with the same line. Pure shape checks
(a receiver with no URL, a timeout of 0s) are the config's (engine.core.config).
"""

from __future__ import annotations

from yarl import URL

from engine.adapters.alerts.signing import SignatureError, parse_secret
from engine.adapters.secrets import read_secret
from engine.core.config import AlertmanagerReceiver, Config, PagerDutyReceiver, WebhookReceiver
from engine.errors import ConfigError

__all__ = ["check_url", "load_routing_key", "load_secrets", "receiver_errors", "receiver_urls"]


def check_url(url: str, path: str) -> str:
    """`url` if it is an absolute http(s) URL, else a ConfigError at `path`."""
    try:
        parsed = URL(url)
        ok = parsed.scheme in ("http", "https") and bool(parsed.host)
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ConfigError([f"{path}: must be an absolute http:// or https:// URL"])
    return url


def receiver_urls(rcv: WebhookReceiver | AlertmanagerReceiver, path: str) -> list[str]:
    """`url` and `urls` of a receiver, without repeats, in config order; a ConfigError
    with a line for every one that is not an absolute http(s) URL."""
    given = [] if rcv.url is None else [(rcv.url, f"{path}.url")]
    given += [(url, f"{path}.urls[{j}]") for j, url in enumerate(rcv.urls)]
    found: list[str] = []
    errors: list[str] = []
    for url, where in given:
        try:
            found.append(check_url(url, where))
        except ConfigError as exc:
            errors += exc.errors
    if errors:
        raise ConfigError(errors)
    return list(dict.fromkeys(found))


def load_secrets(rcv: WebhookReceiver, path: str) -> list[bytes]:
    """Signing keys of a webhook receiver from `secret_env` and/or `secret_file`.

    Each source holds one or more `whsec_...` secrets separated by whitespace; every
    message is signed with all of them so receivers can rotate. No source, no signing.
    Raises one ConfigError with a line for every source or secret that cannot be used.
    """
    keys: list[bytes] = []
    errors: list[str] = []
    sources = [("secret_env", rcv.secret_env, None), ("secret_file", None, rcv.secret_file)]
    for field, env, file in sources:
        if env is None and file is None:
            continue
        where = f"{path}.{field}"
        try:
            text = read_secret(where, env=env, file=file)
        except ConfigError as exc:
            errors += exc.errors
            continue
        for n, secret in enumerate(text.split()):
            try:
                keys.append(parse_secret(secret))
            except SignatureError as exc:
                errors.append(f"{where}: secret #{n + 1}: {exc}")
    if errors:
        raise ConfigError(errors)
    return keys


def load_routing_key(rcv: PagerDutyReceiver, path: str) -> str:
    """The Events API v2 routing (integration) key of a PagerDuty receiver, from
    `routing_key_env` or `routing_key_file`. A ConfigError names the field, never the key."""
    if rcv.routing_key_env is not None and rcv.routing_key_file is None:
        where = f"{path}.routing_key_env"
    elif rcv.routing_key_file is not None and rcv.routing_key_env is None:
        where = f"{path}.routing_key_file"
    else:
        raise ConfigError([f"{path}: give one of routing_key_env and routing_key_file"])
    key = read_secret(where, env=rcv.routing_key_env, file=rcv.routing_key_file)
    if any(ch.isspace() or not ch.isprintable() for ch in key):
        raise ConfigError([f"{where}: must hold one routing key (no spaces or control characters)"])
    return key


def receiver_errors(config: Config) -> list[str]:
    """Every problem of every receiver's URLs and secrets (reading the secrets, as the
    sinks do at start), one `$.path: message` line each."""
    errors: list[str] = []
    for i, rcv in enumerate(config.receivers):
        path = f"$.receivers[{i}]"
        if isinstance(rcv, PagerDutyReceiver):
            errors += _pagerduty_errors(rcv, path)
            continue
        if not isinstance(rcv, WebhookReceiver | AlertmanagerReceiver):
            continue
        try:
            receiver_urls(rcv, path)
        except ConfigError as exc:
            errors += exc.errors
        if isinstance(rcv, WebhookReceiver):
            try:
                load_secrets(rcv, path)
            except ConfigError as exc:
                errors += exc.errors
    return errors


def _pagerduty_errors(rcv: PagerDutyReceiver, path: str) -> list[str]:
    errors: list[str] = []
    try:
        check_url(rcv.url, f"{path}.url")
    except ConfigError as exc:
        errors += exc.errors
    try:
        load_routing_key(rcv, path)
    except ConfigError as exc:
        errors += exc.errors
    return errors
