"""What `burnrate backtest` reads besides the config and events: candidate policy files
and an optional file of known incidents (engine.core.backtest scores against them).

A candidate policy file (YAML or TOML):

    name: fast-pages            # optional; default: the file's stem
    policy:                     # the config's top-level `policy:` format
      - {severity: page, long: 1h, short: 5m, burn_rate: 14.4}
      - {severity: ticket, long: 1d, short: 2h, burn_rate: 3}
    evaluation: {for: 2m}       # optional: these fields replace the config's

An incidents file (JSON): `[{"slo": "checkout-availability", "group": "region=eu",
"start": ..., "end": ...}, ...]`, times RFC 3339 with an offset or epoch seconds,
`group` only for a grouped SLO.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, Literal

import msgspec

from engine.core.backtest import Candidate, Episode, candidate_config
from engine.core.config import (
    Config,
    Evaluation,
    PolicyRow,
    _path_first,
    config_errors,
    time_s,
)
from engine.errors import ConfigError

__all__ = ["CONFIG_CANDIDATE", "Incident", "parse_candidate", "parse_incidents"]

CONFIG_CANDIDATE = "config"
"""The name of the config's own policy among the candidates."""
_NAME = re.compile(r"\A[A-Za-z0-9_.-]{1,64}\Z")


class _CandidateFile(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    policy: list[PolicyRow]
    name: str | None = None
    evaluation: dict[str, Any] | None = None


def parse_candidate(
    data: bytes, stem: str, config: Config, fmt: Literal["yaml", "toml"] = "yaml"
) -> Candidate:
    """A candidate from a policy file's bytes, checked against `config` as a replay with
    its policy would be; raises ConfigError with `$.path` messages."""
    try:
        if fmt == "toml":
            doc = msgspec.toml.decode(data, type=_CandidateFile)
        else:
            doc = msgspec.yaml.decode(data, type=_CandidateFile)
    except msgspec.ValidationError as exc:
        raise ConfigError([_path_first(str(exc))]) from None
    except msgspec.DecodeError as exc:
        raise ConfigError([f"$: not valid {fmt.upper()}: {exc}"]) from None
    name = doc.name if doc.name is not None else stem
    if not _NAME.match(name):
        raise ConfigError([f"$.name: letters, digits, `_`, `.` and `-`, at most 64, got {name!r}"])
    if name == CONFIG_CANDIDATE:
        raise ConfigError([f"$.name: {CONFIG_CANDIDATE!r} is the config's own policy"])
    if not doc.policy:
        raise ConfigError(["$.policy: at least one row is required"])
    evaluation = config.evaluation
    if doc.evaluation:
        merged = {**msgspec.to_builtins(config.evaluation), **doc.evaluation}
        try:
            evaluation = msgspec.convert(merged, Evaluation)
        except msgspec.ValidationError as exc:
            raise ConfigError([_path_first(str(exc)).replace("$", "$.evaluation", 1)]) from None
    candidate = Candidate(name, tuple(doc.policy), evaluation)
    errors = config_errors(candidate_config(config, candidate))
    if errors:
        raise ConfigError(errors)
    return candidate


class Incident(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    slo: str
    start: float | str
    end: float | str
    group: str | None = None


def parse_incidents(
    data: bytes, slos: Sequence[str]
) -> dict[tuple[str, str | None], list[Episode]]:
    """Known incidents by (SLO, group), each an `Episode` without counts, sorted by
    start; raises ConfigError naming each bad entry."""
    try:
        items = msgspec.json.decode(data, type=list[Incident])
    except msgspec.ValidationError as exc:
        raise ConfigError([_path_first(str(exc))]) from None
    except msgspec.DecodeError as exc:
        raise ConfigError([f"$: not valid JSON: {exc}"]) from None
    known = set(slos)
    errors: list[str] = []
    out: dict[tuple[str, str | None], list[Episode]] = {}
    for i, item in enumerate(items):
        if item.slo not in known:
            errors.append(f"$[{i}].slo: no SLO of the config is named {item.slo!r}")
            continue
        try:
            start, end = time_s(item.start), time_s(item.end)
        except ValueError as exc:
            errors.append(f"$[{i}]: {exc}")
            continue
        if not end > start:
            errors.append(f"$[{i}].end: must be after start")
            continue
        out.setdefault((item.slo, item.group), []).append(Episode(start=start, end=end))
    if errors:
        raise ConfigError(errors)
    for eps in out.values():
        eps.sort(key=lambda e: e.start)
    return out
