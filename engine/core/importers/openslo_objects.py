"""OpenSLO v1 objects: the index of every object read, by kind and name, and the lookups
of inline objects and references in it (engine.core.importers.openslo).

A reference (`indicatorRef`, `alertPolicyRef`, `conditionRef`, `targetRef`, or an older
document's plain name) is looked up in the index of all files read; an inline object
is read where it stands. Either way the object keeps its own file and path, so a note
about it names where it is written.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from engine.core.importers.common import Notes

__all__ = ["KINDS", "Index", "Obj", "read_object", "resolve", "target_note"]

KINDS: Final = (
    "Service",
    "SLO",
    "SLI",
    "AlertPolicy",
    "AlertCondition",
    "AlertNotificationTarget",
    "DataSource",
)


@dataclass(frozen=True, slots=True)
class Obj:
    """One OpenSLO object, where it is written (`path` is the object's own)."""

    kind: str
    name: str
    metadata: dict[str, Any]
    spec: dict[str, Any]
    source: str
    path: str


Index = dict[tuple[str, str], Obj]


def read_object(
    body: Any, source: str, path: str, notes: Notes, kind: str | None = None
) -> Obj | None:
    """`body` as an object (of `kind`, when it is inline where one is expected)."""
    if not isinstance(body, dict):
        notes.warn(source, path, f"expected an OpenSLO object, got {type(body).__name__}")
        return None
    found = body.get("kind", kind)
    if found not in KINDS:
        notes.warn(
            source, f"{path}.kind", f"unknown kind {found!r} (OpenSLO v1: {', '.join(KINDS)})"
        )
        return None
    if kind is not None and found != kind:
        notes.warn(source, f"{path}.kind", f"expected a {kind}, got a {found}")
        return None
    meta = body.get("metadata")
    name = meta.get("name") if isinstance(meta, dict) else None
    spec = body.get("spec")
    if not isinstance(name, str) or not name:
        notes.warn(source, f"{path}.metadata.name", f"the {found} has no name")
        return None
    if not isinstance(spec, dict):
        notes.warn(source, f"{path}.spec", f"the {found} {name!r} has no spec")
        return None
    assert isinstance(meta, dict)
    return Obj(found, name, meta, spec, source, path)


def resolve(
    value: Any, kind: str, ref_key: str, source: str, path: str, index: Index, notes: Notes
) -> Obj | None:
    """An inline object of `kind` at `path`, or the one `{ref_key: name}` (or a plain name)
    refers to."""
    name = value if isinstance(value, str) else None
    at = path
    if isinstance(value, dict) and ref_key in value:
        name, at = value[ref_key], f"{path}.{ref_key}"
    if name is None:
        return read_object(value, source, path, notes, kind)
    found = index.get((kind, str(name)))
    if found is None:
        notes.warn(source, at, f"no {kind} named {name!r} in the files read")
    return found


def target_note(obj: Obj, notes: Notes) -> None:
    notes.warn(
        obj.source,
        obj.path,
        f"notification target {obj.name!r} is not imported: burnrate sends alerts to the "
        "config's `receivers` (add a webhook, alertmanager or pagerduty receiver for it)",
    )
