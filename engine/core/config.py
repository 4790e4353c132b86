"""Configuration: frozen msgspec Structs decoded from YAML or TOML, validated with `$.path` errors.

Percentages are converted to ratios once, here at the edge (`objective_ratio`), and
durations to seconds (`*_s` properties); the rest of the engine never sees either form.

`parse_config` checks everything that can be known from the document alone, the
windows' sizes included (no window or period over `MAX_WINDOW_S`, window arrays within
`MAX_WINDOW_MEMORY_BYTES`); what needs the outside world (secrets, TLS files, the listen
address, receiver URLs) is checked by the adapters, and `burnrate check` and `burnrate
run` run both through engine.commands.preflight.

The config is split by concept; this module decodes and loads it and re-exports the
names of the others, so `from engine.core.config import ...` reaches all of them:

- `config_types`: the scalar types (`Duration`, `Severity`, ...);
- `config_model`: SLOs, policy rows, evaluation, corrections, changes, the root `Config`;
- `config_io`: Kafka, HTTP, receivers, state snapshot, incident store and audit log
  settings;
- `config_checks`: `config_errors` and the checks it is made of.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import msgspec

from engine.core.config_checks import (
    MAX_WINDOW_MEMORY_BYTES,
    config_errors,
    correction_errors,
    format_bytes,
)
from engine.core.config_io import (
    DEFAULT_INCIDENTS_PATH,
    PAGERDUTY_EVENTS_URL,
    AlertmanagerReceiver,
    Audit,
    ConsoleReceiver,
    Http,
    Incidents,
    Kafka,
    KafkaSecurity,
    PagerDutyReceiver,
    PagerDutySeverity,
    PagerDutySeverityName,
    Receiver,
    State,
    WebhookReceiver,
)
from engine.core.config_model import (
    DEFAULT_ATTRIBUTION_WINDOW,
    DEFAULT_MAX_CHANGES,
    DEFAULT_MAX_GROUPS,
    DEFAULT_POLICY,
    GROUP_BY_OPERATION,
    MAX_ATTRIBUTION_WINDOW_S,
    MAX_EPOCH_S,
    MAX_MAX_GROUPS,
    OTHER_GROUP,
    WEEK_S,
    CalendarPeriod,
    ChangeSettings,
    CompositeMember,
    Config,
    Correction,
    Evaluation,
    PolicyRow,
    Slo,
    time_s,
)
from engine.core.config_types import Duration, Escalations, Name, Severity
from engine.errors import ConfigError

__all__ = [
    "DEFAULT_ATTRIBUTION_WINDOW",
    "DEFAULT_INCIDENTS_PATH",
    "DEFAULT_MAX_CHANGES",
    "DEFAULT_MAX_GROUPS",
    "DEFAULT_POLICY",
    "GROUP_BY_OPERATION",
    "MAX_ATTRIBUTION_WINDOW_S",
    "MAX_EPOCH_S",
    "MAX_MAX_GROUPS",
    "MAX_WINDOW_MEMORY_BYTES",
    "OTHER_GROUP",
    "PAGERDUTY_EVENTS_URL",
    "WEEK_S",
    "AlertmanagerReceiver",
    "Audit",
    "CalendarPeriod",
    "ChangeSettings",
    "CompositeMember",
    "Config",
    "ConsoleReceiver",
    "Correction",
    "Duration",
    "Escalations",
    "Evaluation",
    "Http",
    "Incidents",
    "Kafka",
    "KafkaSecurity",
    "Name",
    "PagerDutyReceiver",
    "PagerDutySeverity",
    "PagerDutySeverityName",
    "PolicyRow",
    "Receiver",
    "Severity",
    "Slo",
    "State",
    "WebhookReceiver",
    "config_errors",
    "correction_errors",
    "decode_config",
    "decode_config_file",
    "format_bytes",
    "load_config",
    "parse_config",
    "time_s",
]


def decode_config(data: bytes | str, *, fmt: Literal["yaml", "toml"] = "yaml") -> Config:
    """Decode a config document, types and value ranges only (`config_errors` has the
    rest); raises ConfigError with the first problem the decoder met."""
    try:
        if fmt == "toml":
            return msgspec.toml.decode(data, type=Config)
        return msgspec.yaml.decode(data, type=Config)
    except msgspec.ValidationError as exc:
        raise ConfigError([_path_first(str(exc))]) from None
    except msgspec.DecodeError as exc:
        raise ConfigError([f"$: not valid {fmt.upper()}: {exc}"]) from None


def parse_config(data: bytes | str, *, fmt: Literal["yaml", "toml"] = "yaml") -> Config:
    """Decode and validate a config document; raises ConfigError listing every problem."""
    cfg = decode_config(data, fmt=fmt)
    errors = config_errors(cfg)
    if errors:
        raise ConfigError(errors)
    return cfg


def decode_config_file(path: str | Path) -> Config:
    """Read and decode a `.yaml`/`.yml` or `.toml` file (not validated: see `load_config`)."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise ConfigError([f"$: cannot read {p}: {exc.strerror}"]) from None
    return decode_config(data, fmt="toml" if p.suffix == ".toml" else "yaml")


def load_config(path: str | Path) -> Config:
    """Read a `.yaml`/`.yml` or `.toml` file into a validated Config."""
    cfg = decode_config_file(path)
    errors = config_errors(cfg)
    if errors:
        raise ConfigError(errors)
    return cfg


def _path_first(message: str) -> str:
    """msgspec says `Expected ... - at `$.slos[0].objective``; we say `$.slos[0].objective: ...`."""
    text, sep, where = message.rpartition(" - at `")
    if sep:
        return f"{where.rstrip('`')}: {text}"
    return f"$: {message}"
