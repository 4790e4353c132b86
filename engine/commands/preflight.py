"""The one validation path of `burnrate check` and `burnrate run`: everything `run` checks
before it starts anything, with every problem reported at once.

1. The document (engine.core.config): types, values, the windows' bounds and memory,
   settings the clients would silently ignore.
2. What needs the outside world, each by the adapter function the service itself uses:
   the listen address (engine.adapters.http.listen), the API tokens
   (engine.adapters.http.tokens), the HTTPS certificate, key and client CA
   (engine.adapters.http.tls), the Kafka client settings: brokers, TLS files, SASL
   secrets (engine.adapters.kafka.settings), the receivers' URLs, webhook secrets and
   PagerDuty routing keys (engine.adapters.alerts.receivers), and the SQLite incident
   store when `incidents:` names one: opened read-only and checked as `run` checks it
   at start (a damaged file, or one of a newer schema, is refused), nothing written.
   A PostgreSQL store is not contacted: `check` makes no network connection, so a
   server that is down or refuses is an error of `run` at start (exit 2 as well).
   With `audit:`, its key is read and an existing log's tail verified with it, as
   `run` does at start (engine.adapters.store.audit), read-only; a missing log must be
   creatable in its directory.

None of these modules imports aiokafka, aiohttp or rich, so `check` stays light. A
document that does not decode stops at step 1 (there is no config to check further);
otherwise the lines of both steps are reported together, each once.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from engine.adapters.alerts.receivers import receiver_errors
from engine.adapters.http.listen import parse_listen
from engine.adapters.http.tls import server_ssl_context
from engine.adapters.http.tokens import load_tokens
from engine.adapters.kafka.settings import kafka_client_kwargs
from engine.core.config import Config, config_errors, decode_config_file
from engine.errors import ConfigError

__all__ = ["adapter_errors", "load_checked_config"]


def load_checked_config(path: str | Path) -> Config:
    """The config at `path`, after every check `burnrate run` makes before starting.

    Raises ConfigError with one `$.path: message` line per problem."""
    config = decode_config_file(path)
    errors = config_errors(config) + adapter_errors(config)
    if errors:
        raise ConfigError(list(dict.fromkeys(errors)))
    return config


def adapter_errors(config: Config) -> list[str]:
    """The problems the adapters find in `config` (reading its secrets and TLS files)."""
    errors: list[str] = []
    try:
        parse_listen(config.http.listen)
    except ValueError as exc:
        errors.append(f"$.http.listen: {exc}")
    errors += _errors_of(lambda: load_tokens(config.http))
    tls = config.http.tls
    if tls is not None:
        errors += _errors_of(lambda: server_ssl_context(tls))
    errors += _errors_of(lambda: kafka_client_kwargs(config.kafka))
    errors += receiver_errors(config)
    errors += _incident_store_errors(config)
    errors += _audit_errors(config)
    return errors


def _audit_errors(config: Config) -> list[str]:
    if config.audit is None:
        return []
    from engine.adapters.store.audit import audit_errors

    return audit_errors(config)


def _incident_store_errors(config: Config) -> list[str]:
    path = None if config.incidents is None else config.incidents.sqlite_path
    if path is None:
        return []
    from engine.adapters.store.incidents import IncidentStoreError
    from engine.adapters.store.incidents_sqlite import check_sqlite_store

    try:
        check_sqlite_store(path)
    except IncidentStoreError as exc:
        return [f"$.incidents.path: {exc}"]
    return []


def _errors_of(check: Callable[[], object]) -> list[str]:
    try:
        check()
    except ConfigError as exc:
        return exc.errors
    return []
