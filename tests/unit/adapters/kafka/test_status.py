"""SourceStatus: a frozen snapshot of consumer progress, in a module free of aiokafka.

The import checks read the source with `ast` (as tests/unit/core/test_purity.py does), so
they hold whatever else this test session has already imported.
"""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest

from engine.adapters.kafka.status import SourceStatus

ROOT = Path(__file__).resolve().parents[4]
ENGINE = ROOT / "engine"


def _module_file(name: str) -> Path | None:
    """The source file of an `engine...` module or package, None if there is none."""
    base = ROOT.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(path: Path, module: str) -> set[str]:
    """Modules `path` imports when it runs (imports under `if TYPE_CHECKING:` excluded)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1])
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            found.add(target)
            # `from pkg import name` imports pkg.name too when that is a module.
            found.update(f"{target}.{alias.name}" for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8"), str(path)))
    return found


def runtime_imports(module: str) -> set[str]:
    """Every module importing `module` loads: engine modules followed, others as named."""
    seen: set[str] = set()
    loaded: set[str] = set()
    todo = [module]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        path = _module_file(name)
        if path is None:
            if name.split(".")[0] != "engine":
                loaded.add(name)
            continue  # an engine name that is no module: a class or function imported
        loaded.add(name)
        # Importing a.b.c runs a/__init__ and a/b/__init__ first.
        parts = name.split(".")
        todo += [".".join(parts[:i]) for i in range(1, len(parts))]
        todo += sorted(_imports(path, name))
    return loaded


def top_level(modules: set[str]) -> set[str]:
    return {name.split(".")[0] for name in modules}


def test_the_status_module_and_its_packages_import_no_kafka_client() -> None:
    loaded = runtime_imports("engine.adapters.kafka.status")
    assert "engine.adapters.kafka.source" not in loaded
    assert "aiokafka" not in top_level(loaded)
    # Only the standard library, and the (empty) packages around it.
    assert top_level(loaded) <= {"engine", "__future__", "collections", "dataclasses"}


def test_the_http_server_reads_progress_without_importing_the_kafka_client() -> None:
    loaded = runtime_imports("engine.adapters.http.server")
    assert "engine.adapters.kafka.status" in loaded  # the check follows the imports
    assert "aiohttp" in top_level(loaded)
    assert "aiokafka" not in top_level(loaded)
    assert not {m for m in loaded if m.startswith("engine.adapters.kafka.")} - {
        "engine.adapters.kafka.status"
    }


def test_the_import_check_sees_aiokafka_where_it_is_used() -> None:
    assert "aiokafka" in top_level(runtime_imports("engine.adapters.kafka.source"))


def test_a_status_is_a_frozen_value() -> None:
    status = SourceStatus(
        assigned=(("events", 0),),
        last_fetch_age_s=None,
        last_fetch_at=None,
        lag={("events", 0): 7},
        records_consumed=0,
        running=True,
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        status.running = False  # type: ignore[misc]
    assert status == dataclasses.replace(status)
    assert dataclasses.replace(status, running=False).running is False
    assert status.running is True
