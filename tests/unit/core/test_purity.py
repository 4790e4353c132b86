"""The core stays pure: no event loop, network, metrics library, wall clock or threads.

Read from the source with `ast`, so nothing has to be imported to find out, and a new
module under engine/core is checked the moment it exists.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parents[3] / "engine" / "core"

FORBIDDEN_MODULES = frozenset(
    {
        "asyncio",
        "aiokafka",
        "aiohttp",
        "prometheus_client",
        "socket",
        "time",
        "datetime",
        "logging",
        "threading",
        "subprocess",
    }
)
"""Top-level modules the core must not import (the I/O and clock live in the outer rings)."""

OUTER_RINGS = (
    "engine.adapters",
    "engine.runtime",
    "engine.commands",
    "engine.loadgen",
    "engine.cli",
)
"""The core must not reach outwards either."""

FORBIDDEN_CALLS = frozenset({"time.time", "time.monotonic", "time.perf_counter"})

CALENDAR_MODULE = "periods.py"
"""The one core module allowed `datetime`: zoneinfo's offsets are only reachable through
it. It may convert given instants but never read the clock (CLOCK_METHODS)."""

CLOCK_METHODS = frozenset({"now", "utcnow", "today"})


def _dotted(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return None if base is None else f"{base}.{node.attr}"
    return None


def _forbidden_module(name: str) -> bool:
    top = name.split(".", 1)[0]
    return top in FORBIDDEN_MODULES or any(
        name == ring or name.startswith(f"{ring}.") for ring in OUTER_RINGS
    )


def violations(source: str, filename: str = "<source>") -> list[str]:
    """Every forbidden import or call in `source`, as `file:line: what`."""
    found: list[str] = []
    for node in ast.walk(ast.parse(source, filename)):
        where = f"{filename}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.Import):
            found += [f"{where}: import {a.name}" for a in node.names if _forbidden_module(a.name)]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if _forbidden_module(node.module):
                found.append(f"{where}: from {node.module} import ...")
            elif node.module == "engine":
                found += [
                    f"{where}: from engine import {a.name}"
                    for a in node.names
                    if _forbidden_module(f"engine.{a.name}")
                ]
        elif isinstance(node, ast.Call):
            name = _dotted(node.func)
            if name in FORBIDDEN_CALLS:
                found.append(f"{where}: call {name}()")
            elif (
                name in {"__import__", "importlib.import_module"}
                and node.args
                and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[0].value, str)
                and _forbidden_module(node.args[0].value)
            ):
                found.append(f"{where}: {name}({node.args[0].value!r})")
    return found


def clock_reads(source: str, filename: str = "<source>") -> list[str]:
    """Every call of a method named like a clock read (`datetime.now()`, `date.today()`)."""
    return [
        f"{filename}:{node.lineno}: call .{node.func.attr}()"
        for node in ast.walk(ast.parse(source, filename))
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in CLOCK_METHODS
    ]


def core_violations(root: Path) -> list[str]:
    out: list[str] = []
    for path in sorted(root.rglob("*.py")):
        source = path.read_text(encoding="utf-8")
        name = str(path.relative_to(root.parent))
        found = violations(source, name)
        if path.name == CALENDAR_MODULE and path.parent == root:
            found = [
                v for v in found if not v.endswith(("import datetime", "from datetime import ..."))
            ]
            found += clock_reads(source, name)
        out += found
    return out


def test_the_calendar_module_may_convert_time_but_not_read_the_clock() -> None:
    assert clock_reads("datetime.fromtimestamp(t, tz).date()") == []
    assert clock_reads("from datetime import datetime\nx = datetime.now()") == [
        "<source>:2: call .now()"
    ]
    assert clock_reads("import datetime\nx = datetime.date.today()") == [
        "<source>:2: call .today()"
    ]


def test_the_core_modules_are_found() -> None:
    names = {p.name for p in CORE.rglob("*.py")}
    assert {"config.py", "decode.py", "durations.py", "matching.py", "evaluator.py"} <= names


def test_no_core_module_imports_io_clock_or_outer_rings() -> None:
    assert core_violations(CORE) == []


@pytest.mark.parametrize(
    "source",
    [
        pytest.param("import asyncio", id="import asyncio"),
        pytest.param("import aiokafka", id="import aiokafka"),
        pytest.param("from aiohttp import web", id="from aiohttp import web"),
        pytest.param("import prometheus_client as prom", id="import prometheus_client as prom"),
        pytest.param("import socket", id="import socket"),
        pytest.param("import time", id="import time"),
        pytest.param("from time import monotonic", id="from time import monotonic"),
        pytest.param("import datetime", id="import datetime"),
        pytest.param("from datetime import datetime", id="from datetime import datetime"),
        pytest.param("import logging", id="import logging"),
        pytest.param("import logging.handlers", id="import a submodule of logging"),
        pytest.param("import threading", id="import threading"),
        pytest.param("import subprocess", id="import subprocess"),
        pytest.param("import os, socket", id="a forbidden name second in one import"),
        pytest.param("def f():\n    import time\n", id="an import inside a function"),
        pytest.param(
            "try:\n    import uvloop\nexcept ImportError:\n    import asyncio\n",
            id="an import inside try/except",
        ),
        pytest.param("t = time.time()", id="a call of time.time"),
        pytest.param("t = time.monotonic()", id="a call of time.monotonic"),
        pytest.param("m = __import__('socket')", id="__import__ of socket"),
        pytest.param(
            "import importlib\nm = importlib.import_module('asyncio')",
            id="importlib.import_module of asyncio",
        ),
        pytest.param("from engine.adapters import sinks", id="the core importing an adapter"),
        pytest.param("import engine.runtime.replay", id="the core importing the replay command"),
        pytest.param("from engine import cli", id="the core importing the cli from engine"),
    ],
)
def test_the_checker_catches(source: str) -> None:
    assert violations(source) != []


@pytest.mark.parametrize(
    "source",
    [
        pytest.param("import math, re", id="the standard library's pure modules"),
        pytest.param("import numpy as np\nimport msgspec", id="numpy and msgspec"),
        pytest.param("from engine.core.config import Config", id="another core module"),
        pytest.param("from engine.errors import RecordError", id="the error tree"),
        pytest.param("from . import windows", id="a relative import"),
        pytest.param("import timeit_helpers", id="a module whose name starts with time"),
        pytest.param("def f(now_s: float) -> float:\n    return now_s", id="time passed in"),
        pytest.param("x = obj.time", id="an attribute called time that is not called"),
    ],
)
def test_the_checker_allows(source: str) -> None:
    assert violations(source) == []


def test_a_new_impure_module_anywhere_under_the_core_is_caught(tmp_path: Path) -> None:
    core = tmp_path / "core"
    (core / "sub").mkdir(parents=True)
    (core / "pure.py").write_text("import math\n")
    (core / "sub" / "clock.py").write_text("import math\n\n\ndef now():\n    import time\n")
    assert core_violations(core) == ["core/sub/clock.py:5: import time"]
