"""What both importers share: where a value came from, the warnings, names, labels,
durations and periods, and the config they build.

Theory of operation
-------------------
An importer reads parsed YAML documents (plain dicts and lists) and returns
`Imported` SLOs: each one a config entry (`slos[i]` of a burnrate config, as a dict in
the config's own key order) with the file and YAML path it came from. Everything it
cannot carry over exactly is a `Note`: `file: $.path: message`, never a silent guess.

`finish` then makes the config pass the same checks `burnrate check` runs on the
document: names made unique (a duplicate is dropped, with a note naming the first),
and any SLO the checks refuse (an objective of 100%, a time zone that does not exist, a
composite whose member was dropped) left out with a note naming its source and the
check's message, until the rest passes. What remains is the config; an empty one means
nothing usable mapped.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Final

import msgspec

from engine.core.config import DEFAULT_POLICY, config_errors, decode_config
from engine.errors import ConfigError

__all__ = [
    "DEFAULT_PERIOD",
    "Document",
    "Imported",
    "Note",
    "Notes",
    "default_rows",
    "each_map",
    "finish",
    "fixed_length",
    "label_map",
    "objective_percent",
    "safe_name",
    "source_duration",
    "unknown_keys",
]

DEFAULT_PERIOD: Final = "30d"


@dataclass(frozen=True, slots=True)
class Note:
    """One warning: what could not be carried over exactly, and where it was."""

    source: str
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.source}: {self.path}: {self.message}"


@dataclass(slots=True)
class Notes:
    """The warnings of one import, in the order they were found."""

    items: list[Note] = field(default_factory=list)
    _seen: set[Note] = field(default_factory=set)

    def warn(self, source: str, path: str, message: str) -> None:
        """Add a note; the same note again (an object two SLOs refer to) is said once."""
        note = Note(source, path, message)
        if note not in self._seen:
            self._seen.add(note)
            self.items.append(note)


@dataclass(slots=True)
class Imported:
    """One SLO entry of the config to write, and where it came from."""

    slo: dict[str, Any]
    source: str
    path: str
    owner: str | None = None
    """The Sloth service the SLO was declared under (its SLO id is `owner-name`)."""


_NAME_BAD = re.compile(r"[^a-z0-9_.-]+")
_LABEL_BAD = re.compile(r"[^a-zA-Z0-9_]")
MAX_NAME = 128


def safe_name(name: object, notes: Notes, source: str, path: str) -> str | None:
    """`name` as an SLO name (`[a-z0-9_.-]`, at most 128 characters); a note with the old
    and the new name when it had to change, None (and a note) when nothing is left."""
    if not isinstance(name, str) or not name.strip():
        notes.warn(source, path, f"expected a name, got {name!r}")
        return None
    new = _NAME_BAD.sub("-", name.strip().lower()).strip("-")[:MAX_NAME]
    if not new:
        notes.warn(source, path, f"name {name!r} has no usable character ([a-z0-9_.-])")
        return None
    if new != name:
        notes.warn(source, path, f"name {name!r} renamed to {new!r} (names are [a-z0-9_.-]+)")
    return new


def label_map(labels: object, notes: Notes, source: str, path: str) -> dict[str, str]:
    """Labels as the config takes them: names `[a-zA-Z_][a-zA-Z0-9_]*`, string values. A
    list value (OpenSLO allows one) is joined with commas; every change is a note."""
    if labels is None:
        return {}
    if not isinstance(labels, dict):
        notes.warn(source, path, f"expected a map of labels, got {type(labels).__name__}")
        return {}
    out: dict[str, str] = {}
    for key, value in labels.items():
        name = _LABEL_BAD.sub("_", str(key))
        if not name or name[0].isdigit():
            name = f"_{name}"
        if name != key:
            notes.warn(source, f"{path}.{key}", f"label {key!r} renamed to {name!r}")
        if isinstance(value, list):
            text = ",".join(str(v) for v in value)
            notes.warn(source, f"{path}.{key}", f"label values {value!r} joined into one: {text!r}")
        elif isinstance(value, bool) or value is None:
            text = "" if value is None else str(value).lower()
        else:
            text = str(value)
        out[name] = text
    return out


def objective_percent(value: float, *, ratio: bool) -> float | int:
    """The objective in percent, without float noise (0.999 -> 99.9, not 99.9000000001)."""
    percent = round(float(value) * 100 if ratio else float(value), 9)
    return int(percent) if percent.is_integer() else percent


def each_map(
    items: list[Any], source: str, path: str, what: str, notes: Notes
) -> Iterator[tuple[int, str, dict[str, Any]]]:
    """(index, path, item) for each item of the list at `path` that is a map; a note for
    each that is not (`what` names what it should be)."""
    for i, item in enumerate(items):
        if isinstance(item, dict):
            yield i, f"{path}[{i}]", item
        else:
            notes.warn(source, f"{path}[{i}]", f"expected {what} (a map)")


def unknown_keys(
    mapping: dict[str, Any], known: frozenset[str], source: str, path: str, notes: Notes
) -> None:
    """A note for each key of `mapping` (at `path`) the importer does not read."""
    for key in mapping:
        if key not in known:
            notes.warn(source, f"{path}.{key}", "not a field the import reads; ignored")


_SOURCE_DURATION = re.compile(r"\A\s*(\d+)\s*(s|m|h|d|w|M|Q|Y)\s*\Z")
_NOMINAL_DAYS: Final = {"M": 30, "Q": 91, "Y": 365}
"""Lengths standing for the calendar units when a fixed one is needed (a month is 30
days for burnrate's calendar periods too)."""


def source_duration(value: object) -> tuple[int, str] | None:
    """A duration as OpenSLO and Sloth write them (`28d`, `1h`, `1M`): (count, unit), None
    if it is not one."""
    m = _SOURCE_DURATION.match(str(value)) if isinstance(value, str | int) else None
    if m is None:
        return None
    return int(m.group(1)), m.group(2)


def fixed_length(count: int, unit: str) -> tuple[str, bool]:
    """The duration text burnrate takes for (count, unit), and whether it is a nominal
    stand-in (months, quarters and years have no fixed length)."""
    if unit in _NOMINAL_DAYS:
        return f"{count * _NOMINAL_DAYS[unit]}d", True
    return f"{count}{unit}", False


def default_rows(severities: set[str]) -> list[dict[str, Any]]:
    """The default policy rows of the given severities, as config entries."""
    return [
        {
            "severity": row.severity,
            "long": row.long,
            "short": row.short,
            "budget_consumed_ratio": row.budget_consumed_ratio,
        }
        for row in DEFAULT_POLICY
        if row.severity in severities
    ]


_SLO_PATH = re.compile(r"\A\$\.slos\[(\d+)\]")


def finish(imported: list[Imported], notes: Notes) -> tuple[dict[str, Any], list[str]]:
    """The config of the imported SLOs that pass the config checks, and the problems no
    single SLO explains (empty when the config is valid). See the module docstring."""
    kept: list[Imported] = []
    first: dict[str, Imported] = {}
    for item in imported:
        name = item.slo["name"]
        if name in first:
            seen = first[name]
            notes.warn(
                item.source,
                item.path,
                f"duplicate SLO name {name!r} (first from {seen.source}: {seen.path}); skipped",
            )
            continue
        first[name] = item
        kept.append(item)
    while kept:
        config = {"slos": [item.slo for item in kept]}
        errors = _errors(config)
        if not errors:
            return config, []
        refused: dict[int, list[str]] = {}
        for line in errors:
            m = _SLO_PATH.match(line)
            if m is None:
                return config, errors
            refused.setdefault(int(m.group(1)), []).append(line)
        for i, lines in refused.items():
            item = kept[i]
            for line in lines:
                where, _, what = line.partition(": ")
                field_path = _SLO_PATH.sub("", where).lstrip(".")
                reason = f"{field_path}: {what}" if field_path else what
                notes.warn(item.source, item.path, f"SLO {item.slo['name']!r} skipped: {reason}")
        kept = [item for i, item in enumerate(kept) if i not in refused]
    return {"slos": []}, []


def _errors(config: dict[str, Any]) -> list[str]:
    """What the config checks say of `config` (decoding included)."""
    try:
        cfg = decode_config(msgspec.yaml.encode(config))
    except ConfigError as exc:
        return exc.errors
    return config_errors(cfg)


@dataclass(frozen=True, slots=True)
class Document:
    """One parsed YAML document: its file, its path (`$`, or `$[i]` for the i-th document
    of a file holding several) and its content."""

    source: str
    path: str
    body: Any
