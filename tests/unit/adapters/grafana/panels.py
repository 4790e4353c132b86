"""Reading the written dashboards back as a Grafana user's queries: every panel target
and annotation expression, with the dashboard variables expanded as Grafana expands
them, so the tests run the PromQL Grafana would send."""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from typing import Any

RATE_INTERVAL = "1m"
"""What `$__rate_interval` becomes in the tests (at least four 1 s scrapes, as Grafana
makes it)."""


@dataclass(frozen=True)
class Query:
    dashboard: str
    where: str
    """`panel title / refId`, or `annotation NAME`."""
    expr: str


def queries(boards: dict[str, dict[str, Any]]) -> list[Query]:
    """Every panel target's and annotation's expression, in file and panel order."""
    out: list[Query] = []
    for name, board in boards.items():
        for panel in board.get("panels", []):
            for target in panel.get("targets", []):
                out.append(Query(name, f"{panel['title']} / {target['refId']}", target["expr"]))
        for annotation in board.get("annotations", {}).get("list", []):
            if "expr" in annotation:
                out.append(Query(name, f"annotation {annotation['name']}", annotation["expr"]))
    return out


def variable_values(board: dict[str, Any]) -> dict[str, list[str]]:
    """Each variable's values as Grafana substitutes them: its options' values, with
    "All" as its `allValue`."""
    out: dict[str, list[str]] = {}
    for var in board.get("templating", {}).get("list", []):
        values = []
        for option in var["options"]:
            value = option["value"]
            values.append(var["allValue"] if value == "$__all" else value)
        out[var["name"]] = values
    return out


_VAR = re.compile(r"\$\{(\w+)(?::(\w+))?\}|\$(\w+)")


def expand(expr: str, values: dict[str, str]) -> str:
    """`expr` with `$name`, `${name}` and `${name:pipe}` replaced by `values[name]` and
    `$__rate_interval` by `RATE_INTERVAL`; a variable with no value is an error."""

    def sub(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(3)
        if name == "__rate_interval":
            return RATE_INTERVAL
        if m.group(2) not in (None, "pipe"):
            raise AssertionError(f"format {m.group(2)} of ${name} not expected in {expr}")
        if name not in values:
            raise AssertionError(f"${name} in {expr!r} is no variable of the dashboard")
        return values[name]

    return _VAR.sub(sub, expr)


def expansions(board: dict[str, Any], expr: str) -> list[str]:
    """`expr` under every combination of the values of the variables it uses."""
    table = variable_values(board)
    used = sorted({m.group(1) or m.group(3) for m in _VAR.finditer(expr)} - {"__rate_interval"})
    combos = itertools.product(*(table.get(name, [None]) for name in used))
    out = []
    for combo in combos:
        assert None not in combo, f"{expr!r} uses a variable the dashboard does not have"
        out.append(expand(expr, dict(zip(used, combo, strict=True))))  # type: ignore[arg-type]
    return out
