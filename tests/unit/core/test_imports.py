"""The core's modules import each other without cycles, and never the outer rings.

The import graph is read from the source with `ast` (every import counts, also those
under `if TYPE_CHECKING:` or inside functions: a cycle there is still two modules that
each need the other), so nothing has to be imported to check it.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
CORE = ROOT / "engine" / "core"


def module_name(path: Path, root: Path, package: str) -> str:
    parts = [package, *path.relative_to(root).with_suffix("").parts]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported(source: str, module: str, is_package: bool = False) -> set[str]:
    """Every module `module` names in an import: `import a.b` gives a.b, `from a import b`
    gives a and a.b (b may be a module or a name in a; the caller keeps those it knows)."""
    out: set[str] = set()
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                prefix = ".".join([*base, node.module] if node.module else base)
            else:
                prefix = node.module or ""
            out.add(prefix)
            out.update(f"{prefix}.{a.name}" for a in node.names)
    return out


def import_graph(root: Path, package: str) -> dict[str, set[str]]:
    """module -> the modules of `package`, the one at `root`, it imports (a package's
    own `__init__` counts as a module: importing a submodule runs it first)."""
    paths = {module_name(p, root, package): p for p in sorted(root.rglob("*.py"))}
    graph: dict[str, set[str]] = {}
    for name, path in paths.items():
        names = imported(path.read_text(encoding="utf-8"), name, path.name == "__init__.py")
        graph[name] = {n for n in names if n in paths and n != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_graph_sees_the_imports_of_the_core() -> None:
    graph = import_graph(CORE, "engine.core")
    assert "engine.core.evaluator" in graph["engine.core.snapshot"]
    assert "engine.core.windows" in graph["engine.core.evaluator"]


def test_no_import_cycle_among_core_modules() -> None:
    assert cycles(import_graph(CORE, "engine.core")) == []


def test_the_evaluator_does_not_know_about_snapshots() -> None:
    assert "engine.core.snapshot" not in import_graph(CORE, "engine.core")["engine.core.evaluator"]


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        pytest.param(
            {"a.py": "from pkg import b\n", "b.py": "from pkg.a import x\n"},
            [["pkg.a", "pkg.b"]],
            id="two modules",
        ),
        pytest.param(
            {
                "a.py": "import pkg.b\n",
                "b.py": (
                    "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from . import c\n"
                ),
                "c.py": "def f():\n    from .a import g\n",
            },
            [["pkg.a", "pkg.b", "pkg.c"]],
            id="through TYPE_CHECKING and a function",
        ),
        pytest.param(
            {"a.py": "from pkg import b\n", "b.py": "import math\n", "__init__.py": ""},
            [],
            id="no cycle",
        ),
        pytest.param(
            {"__init__.py": "", "a.py": "import pkg\n"},
            [],
            id="a module importing its own empty package",
        ),
        pytest.param(
            {"__init__.py": "from pkg.a import x\n", "a.py": "import pkg\n"},
            [["pkg", "pkg.a"]],
            id="a package importing the module that imports it",
        ),
        pytest.param(
            {"sub/__init__.py": "from .x import y\n", "sub/x.py": "from pkg.sub import z\n"},
            [["pkg.sub", "pkg.sub.x"]],
            id="a subpackage and its module",
        ),
    ],
)
def test_the_cycle_finder_catches(
    files: dict[str, str], expected: list[list[str]], tmp_path: Path
) -> None:
    root = tmp_path / "pkg"
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    assert cycles(import_graph(root, "pkg")) == expected


def test_importing_snapshots_loads_no_adapter_nor_network_library() -> None:
    code = (
        "import engine.core.snapshot, json, sys; print(json.dumps(sorted(m for m in sys.modules)))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    loaded = json.loads(done.stdout)
    assert "engine.core.evaluator" in loaded  # the check sees what snapshot imports
    outside = [
        m
        for m in loaded
        if m.split(".")[0] in {"aiokafka", "aiohttp"}
        or m == "engine.adapters"
        or m.startswith("engine.adapters.")
    ]
    assert outside == []
