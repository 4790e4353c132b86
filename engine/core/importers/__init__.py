"""Importers: OpenSLO v1 and Sloth SLO documents into a burnrate config.

Theory of operation
-------------------
Pure mapping: parsed YAML documents in, a config (a dict in the config's own shape)
and warnings out; no files, no network, no clock. `burnrate import`
(engine.commands.import_cmd) reads the files, calls `import_documents` and writes the
result.

Each document is routed by its header: `apiVersion: openslo/v1` to
engine.core.importers.openslo (all OpenSLO documents together, since their objects refer to
each other across files), `version: prometheus/v1` and `kind: PrometheusServiceLevel`
to engine.core.importers.sloth; anything else is a warning. engine.core.importers.common then
keeps the SLOs the config checks accept (see `finish`). Prometheus queries of both
formats are read by engine.core.importers.promql.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from engine.core.importers.common import DEFAULT_PERIOD, Document, Imported, Note, Notes, finish
from engine.core.importers.openslo import import_openslo
from engine.core.importers.sloth import CRD_API_VERSION, CRD_KIND, SPEC_VERSION, import_sloth

__all__ = ["DEFAULT_PERIOD", "Document", "ImportResult", "Note", "import_documents"]

OPENSLO_API_VERSION = "openslo/v1"


@dataclass(frozen=True, slots=True)
class ImportResult:
    config: dict[str, Any]
    """`{"slos": [...]}`: what mapped and passes the config checks (may be empty)."""
    notes: list[Note]
    errors: list[str]
    """Config check problems no single SLO explains (empty when `config` is valid)."""


def _route(doc: Document, notes: Notes) -> str | None:
    body = doc.body
    if not isinstance(body, dict):
        notes.warn(doc.source, doc.path, f"expected a map, got {type(body).__name__}; ignored")
        return None
    api = body.get("apiVersion")
    if api == OPENSLO_API_VERSION:
        return "openslo"
    if body.get("version") == SPEC_VERSION:
        return "sloth"
    if body.get("kind") == CRD_KIND and api == CRD_API_VERSION:
        return "sloth"
    if isinstance(api, str) and api.startswith("openslo/"):
        notes.warn(doc.source, f"{doc.path}.apiVersion", f"{api!r}: only openslo/v1 is read")
    elif body.get("kind") == CRD_KIND:
        notes.warn(doc.source, f"{doc.path}.apiVersion", f"{api!r}: expected {CRD_API_VERSION}")
    elif "version" in body:
        notes.warn(
            doc.source, f"{doc.path}.version", f"{body['version']!r}: expected {SPEC_VERSION}"
        )
    else:
        notes.warn(
            doc.source,
            doc.path,
            f"not an OpenSLO v1 or Sloth document (apiVersion {api!r}, kind "
            f"{body.get('kind')!r}); ignored",
        )
    return None


def import_documents(docs: list[Document], *, period: str = DEFAULT_PERIOD) -> ImportResult:
    """Map every document of `docs`; `period` is the Sloth SLOs' period
    (`--default-slo-period`)."""
    notes = Notes()
    routed: dict[str, list[Document]] = {"openslo": [], "sloth": []}
    for doc in docs:
        kind = _route(doc, notes)
        if kind is not None:
            routed[kind].append(doc)
    imported = import_openslo(routed["openslo"], notes)
    _add_sloth(imported, import_sloth(routed["sloth"], period, notes), notes)
    config, errors = finish(imported, notes)
    return ImportResult(config, notes.items, errors)


def _add_sloth(imported: list[Imported], sloth: list[Imported], notes: Notes) -> None:
    """Sloth names are unique per service only: a name already taken becomes
    `service-name`, Sloth's own SLO id."""
    taken = {item.slo["name"] for item in imported}
    for item in sloth:
        name = item.slo["name"]
        if name in taken and item.owner is not None:
            new = f"{item.owner}-{name}"
            notes.warn(
                item.source,
                f"{item.path}.name",
                f"name {name!r} is taken; renamed to {new!r} (Sloth's SLO id)",
            )
            item.slo["name"] = new
        taken.add(item.slo["name"])
        imported.append(item)
