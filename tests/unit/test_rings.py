"""The rings of the architecture hold: each imports only the rings inside it.

core  <  adapters  <  runtime, commands, loadgen, cli

The core's own rule (no I/O, no clock) is in tests/unit/core/test_purity.py; this file
checks the outer rings. Imports are read with `ast`, so an import inside a function
counts too, and a new module is checked the moment it exists.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ENGINE = Path(__file__).resolve().parents[2] / "engine"

RULES = {
    "adapters": ("engine.runtime", "engine.commands", "engine.loadgen", "engine.cli"),
    "runtime": ("engine.commands", "engine.loadgen", "engine.cli"),
    "core": (
        "engine.adapters",
        "engine.runtime",
        "engine.commands",
        "engine.loadgen",
        "engine.cli",
    ),
}
"""Ring (folder under engine/) -> modules it must not import."""


def imported_modules(source: str) -> list[tuple[int, str]]:
    """(line, module) for every import in `source`, relative imports left out."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
            if node.module == "engine":
                found += [(node.lineno, f"engine.{a.name}") for a in node.names]
    return found


def ring_violations(root: Path, forbidden: tuple[str, ...]) -> list[str]:
    out: list[str] = []
    for path in sorted(root.rglob("*.py")):
        for line, module in imported_modules(path.read_text(encoding="utf-8")):
            if any(module == f or module.startswith(f"{f}.") for f in forbidden):
                out.append(f"{path.relative_to(root.parent)}:{line}: {module}")
    return out


@pytest.mark.parametrize("ring", sorted(RULES))
def test_a_ring_imports_no_outer_ring(ring: str) -> None:
    assert (ENGINE / ring).is_dir()
    assert ring_violations(ENGINE / ring, RULES[ring]) == []


def test_the_checker_sees_imports_inside_functions_and_from_engine(tmp_path: Path) -> None:
    ring = tmp_path / "adapters"
    ring.mkdir()
    (ring / "a.py").write_text("def f():\n    from engine.runtime import service\n")
    (ring / "b.py").write_text("from engine import commands\nimport engine.core.config\n")
    assert ring_violations(ring, RULES["adapters"]) == [
        "adapters/a.py:2: engine.runtime",
        "adapters/b.py:1: engine.commands",
    ]
