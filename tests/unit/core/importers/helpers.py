"""Helpers of the importer tests: YAML text into the documents the importers take."""

from __future__ import annotations

from pathlib import Path

import yaml

from engine.core.importers import Document, ImportResult, import_documents

DATA = Path(__file__).resolve().parents[3] / "data" / "import"


def documents(source: str, text: str) -> list[Document]:
    """The documents of `text` as `burnrate import` reads a file called `source`."""
    bodies = list(yaml.safe_load_all(text))
    several = len(bodies) > 1
    return [
        Document(source, f"$[{i}]" if several else "$", body)
        for i, body in enumerate(bodies)
        if body is not None
    ]


def run(*files: tuple[str, str], period: str = "30d") -> ImportResult:
    """Import (source, text) pairs as one run."""
    docs = [doc for source, text in files for doc in documents(source, text)]
    return import_documents(docs, period=period)


def notes_of(result: ImportResult) -> list[str]:
    return [str(note) for note in result.notes]


def slo_named(result: ImportResult, name: str) -> dict[str, object]:
    found = [slo for slo in result.config["slos"] if slo["name"] == name]
    assert len(found) == 1, [slo["name"] for slo in result.config["slos"]]
    slo: dict[str, object] = found[0]
    return slo
