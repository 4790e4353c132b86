"""The PromQL of the dashboards' panels, written from a config.

Every query reads a series the engine exports (engine.adapters.http.metrics) by the
labels it really has: the SLO series carry `slo` (and `group` for a grouped SLO), not
`service`, so the overview's `service` variable is a custom variable whose options
show a service and whose values are the regex of its SLOs' names
(`checkout-availability|checkout-latency`); panels select `slo=~"${service:pipe}"`,
which joins several selected services' regexes with `|` unescaped. A `.` in an SLO
name is written `[.]`, so it matches only a dot.

A composite SLO has no service of its own: it is listed under each service of its
members, since its budget is theirs.

`burnrate_changes_total{service,kind}` counts the changes taken in since the engine
started; a change is the minute in which the counter went up, or in which the series
first appeared (the first change of a (service, kind) starts the series at 1, which
`increase()` cannot see), hence `CHANGE_WINDOW`, matching the one-minute step Grafana
evaluates a Prometheus annotation query at by default.
"""

from __future__ import annotations

from collections.abc import Iterable

from engine.core.config import Config

__all__ = [
    "ALL_SLOS",
    "CHANGE_WINDOW",
    "RATE_INTERVAL",
    "SERVICE_MATCH",
    "SERVICE_VAR",
    "WINDOW_VAR",
    "changes_expr",
    "quote",
    "service_selector",
    "services_of",
    "slo_pattern",
]

SERVICE_VAR = "service"
WINDOW_VAR = "window"
SERVICE_MATCH = f'slo=~"${{{SERVICE_VAR}:pipe}}"'
"""The overview panels' SLO matcher: the selected services' SLO regexes."""
ALL_SLOS = ".+"
"""The `service` variable's value when "All" is selected."""
RATE_INTERVAL = "$__rate_interval"
CHANGE_WINDOW = "1m"


def quote(value: str) -> str:
    """A PromQL string literal (double quotes; backslash and quote escaped)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def slo_pattern(names: Iterable[str]) -> str:
    """A regex matching exactly these SLO names (`[a-z0-9_.-]+`: only `.` needs care)."""
    return "|".join(name.replace(".", "[.]") for name in names)


def _regex_escape(text: str) -> str:
    """`text` as an RE2 regex matching only itself."""
    special = set("\\.+*?()|[]{}^$")
    return "".join("\\" + c if c in special else c for c in text)


def services_of(config: Config) -> dict[str, list[str]]:
    """Configured service -> its SLOs' names in config order; a composite SLO (whose
    members are plain SLOs) under each service of its members."""
    service = {slo.name: slo.service for slo in config.slos}
    table: dict[str, list[str]] = {}
    for slo in config.slos:
        members = [service.get(m.slo) for m in slo.composite or ()]
        for svc in dict.fromkeys([slo.service, *members]):
            if svc is not None:
                table.setdefault(svc, []).append(slo.name)
    return table


def service_selector(services: Iterable[str]) -> str:
    """The `service` matcher of `burnrate_changes_total` for these services."""
    names = sorted(set(services))
    if len(names) == 1:
        return f"service={quote(names[0])}"
    return f"service=~{quote('|'.join(_regex_escape(s) for s in names))}"


def changes_expr(selector: str = "") -> str:
    """Changes taken in during the last `CHANGE_WINDOW`: the counter's rise, or the whole
    value of a series that did not exist a window ago."""
    series = f"burnrate_changes_total{{{selector}}}" if selector else "burnrate_changes_total"
    return (
        f"({series} - {series} offset {CHANGE_WINDOW}) > 0"
        f" or ({series} unless {series} offset {CHANGE_WINDOW})"
    )
