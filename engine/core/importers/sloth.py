"""Sloth SLO specs (`version: prometheus/v1`, and the Kubernetes `PrometheusServiceLevel`)
into burnrate SLOs.

Theory of operation
-------------------
Both forms hold one service and its SLOs; the CRD writes the same fields in camelCase
under `spec` (`errorQuery`, `totalQuery`, `errorRatioQuery`, `pageAlert`,
`ticketAlert`). This module reads both through one table of field names.

- Names stay; an SLO name taken by another file's SLO becomes `service-name` (Sloth's
  own SLO id), with a note.
- `objective` is already in percent; `description` stays; the service's `labels` and
  the SLO's (the SLO's win) become the SLO's labels, and `alerting.labels` join them
  (alerts carry the SLO's labels); an alerting annotation `runbook` or `runbook_url`
  becomes `runbook_url`; other alerting fields are notes.
- The SLI: `events` (error over total query) is read by label matchers
  (engine.core.importers.promql); `raw` and `plugin` SLIs do not map (a note each).
- The period: Sloth's specs have none; it is the run's `--default-slo-period` (Sloth's
  own flag, default 30d). The alerts are Sloth's: pages at 1h/5m and 6h/30m, tickets
  at 1d/2h and 3d/6h, with factors from the share of the period's budget they burn
  (14.4, 6, 3, 1 for 30 days), which is burnrate's default policy. A disabled page or
  ticket alert leaves the SLO its own policy of the other severity's rows.
"""

from __future__ import annotations

from typing import Any, Final

from engine.core.importers.common import (
    Document,
    Imported,
    Notes,
    default_rows,
    each_map,
    label_map,
    objective_percent,
    safe_name,
    unknown_keys,
)
from engine.core.importers.promql import mapped_sli

__all__ = ["CRD_API_VERSION", "CRD_KIND", "SPEC_VERSION", "import_sloth"]

SPEC_VERSION: Final = "prometheus/v1"
CRD_API_VERSION: Final = "sloth.slok.dev/v1"
CRD_KIND: Final = "PrometheusServiceLevel"
RUNBOOK_ANNOTATIONS: Final = ("runbook_url", "runbook")
SERVICE_FIELDS: Final = frozenset(
    {"version", "service", "labels", "slos", "slo_plugins", "sloPlugins"}
)
TIER_FIELDS: Final = frozenset({"disable", "labels", "annotations"})
SLO_FIELDS: Final = frozenset({"name", "description", "objective", "labels", "sli", "alerting"})

_SNAKE: Final = {
    "error_query": "error_query",
    "total_query": "total_query",
    "error_ratio_query": "error_ratio_query",
    "page_alert": "page_alert",
    "ticket_alert": "ticket_alert",
}
_CAMEL: Final = {
    "error_query": "errorQuery",
    "total_query": "totalQuery",
    "error_ratio_query": "errorRatioQuery",
    "page_alert": "pageAlert",
    "ticket_alert": "ticketAlert",
}


def import_sloth(docs: list[Document], period: str, notes: Notes) -> list[Imported]:
    """The SLOs of the Sloth documents `docs`, each with the SLO period `period`."""
    out: list[Imported] = []
    for doc in docs:
        body = doc.body
        crd = body.get("kind") == CRD_KIND
        spec, at = (body.get("spec"), f"{doc.path}.spec") if crd else (body, doc.path)
        if not isinstance(spec, dict):
            notes.warn(doc.source, at, "expected a Sloth spec (a map)")
            continue
        out += _service(spec, at, doc.source, _CAMEL if crd else _SNAKE, period, notes)
    return out


def _service(
    spec: dict[str, Any], at: str, src: str, keys: dict[str, str], period: str, notes: Notes
) -> list[Imported]:
    service = spec.get("service")
    if not isinstance(service, str) or not service:
        notes.warn(src, f"{at}.service", "a Sloth spec needs its service; skipped")
        return []
    unknown_keys(spec, SERVICE_FIELDS, src, at, notes)
    if spec.get("slo_plugins") or spec.get("sloPlugins"):
        notes.warn(src, f"{at}.slo_plugins", "SLI plugins are not supported; ignored")
    labels = label_map(spec.get("labels"), notes, src, f"{at}.labels")
    slos = spec.get("slos")
    if not isinstance(slos, list) or not slos:
        notes.warn(src, f"{at}.slos", "no SLOs")
        return []
    out: list[Imported] = []
    for _, path, slo in each_map(slos, src, f"{at}.slos", "an SLO", notes):
        entry = _slo(slo, path, src, service, labels, keys, period, notes)
        if entry is not None:
            out.append(Imported(entry, src, path, owner=service))
    return out


def _slo(
    slo: dict[str, Any],
    path: str,
    src: str,
    service: str,
    service_labels: dict[str, str],
    keys: dict[str, str],
    period: str,
    notes: Notes,
) -> dict[str, Any] | None:
    unknown_keys(slo, SLO_FIELDS, src, path, notes)
    name = safe_name(slo.get("name"), notes, src, f"{path}.name")
    objective = slo.get("objective")
    if isinstance(objective, bool) or not isinstance(objective, int | float):
        notes.warn(src, f"{path}.objective", f"expected a percentage, got {objective!r}; skipped")
        return None
    sli = _sli(slo.get("sli"), f"{path}.sli", src, service, keys, notes)
    if name is None or sli is None:
        return None
    entry: dict[str, Any] = {"name": name}
    if slo.get("description"):
        entry["description"] = str(slo["description"])
    entry.update(sli)
    entry["objective"] = objective_percent(objective, ratio=False)
    entry["period"] = period
    labels = {**service_labels, **label_map(slo.get("labels"), notes, src, f"{path}.labels")}
    alerting = slo.get("alerting")
    runbook, policy = None, None
    if isinstance(alerting, dict):
        runbook, policy = _alerting(alerting, labels, f"{path}.alerting", src, keys, notes)
    if labels:
        entry["labels"] = labels
    if runbook is not None:
        entry["runbook_url"] = runbook
    if policy is not None:
        entry["policy"] = policy
    return entry


def _sli(
    sli: Any, path: str, src: str, service: str, keys: dict[str, str], notes: Notes
) -> dict[str, Any] | None:
    if not isinstance(sli, dict):
        notes.warn(src, path, "no SLI; skipped")
        return None
    events = sli.get("events")
    if isinstance(events, dict):
        bad, total = events.get(keys["error_query"]), events.get(keys["total_query"])
        if isinstance(bad, str) and isinstance(total, str):
            return mapped_sli(
                {"bad": bad, "total": total},
                {
                    "bad": f"{path}.events.{keys['error_query']}",
                    "total": f"{path}.events.{keys['total_query']}",
                },
                src,
                service,
                notes,
            )
        notes.warn(
            src, f"{path}.events", f"needs {keys['error_query']} and {keys['total_query']}; skipped"
        )
        return None
    if "raw" in sli:
        notes.warn(
            src,
            f"{path}.raw",
            f"a raw SLI ({keys['error_ratio_query']}, a precomputed "
            "error ratio) does not map: burnrate counts events; skipped",
        )
    elif "plugin" in sli:
        notes.warn(src, f"{path}.plugin", "SLI plugins are not supported; skipped")
    else:
        notes.warn(src, path, "expected events, raw or plugin; skipped")
    return None


def _alerting(
    alerting: dict[str, Any],
    labels: dict[str, str],
    path: str,
    src: str,
    keys: dict[str, str],
    notes: Notes,
) -> tuple[str | None, list[dict[str, Any]] | None]:
    """(runbook_url, own policy or None); alerting labels are added to `labels`."""
    known = {"name", "labels", "annotations", keys["page_alert"], keys["ticket_alert"]}
    unknown_keys(alerting, frozenset(known), src, path, notes)
    if alerting.get("name"):
        notes.warn(
            src,
            f"{path}.name",
            "not mapped: burnrate's alerts are all named SLOErrorBudgetBurn, with the "
            "SLO in their `slo` label",
        )
    for key, value in label_map(alerting.get("labels"), notes, src, f"{path}.labels").items():
        if labels.get(key, value) != value:
            notes.warn(
                src,
                f"{path}.labels.{key}",
                f"{value!r} differs from the SLO label {labels[key]!r}; the SLO's is kept",
            )
        labels.setdefault(key, value)
    runbook = None
    annotations = alerting.get("annotations")
    if isinstance(annotations, dict):
        for key, value in annotations.items():
            if key in RUNBOOK_ANNOTATIONS and runbook is None:
                runbook = str(value)
            else:
                notes.warn(src, f"{path}.annotations.{key}", "not mapped (only runbook_url)")
    enabled = set()
    for severity, key in (("page", keys["page_alert"]), ("ticket", keys["ticket_alert"])):
        tier = alerting.get(key)
        tier = tier if isinstance(tier, dict) else {}
        unknown_keys(tier, TIER_FIELDS, src, f"{path}.{key}", notes)
        if tier.get("disable") is True:
            continue
        enabled.add(severity)
        for extra in ("labels", "annotations"):
            if tier.get(extra):
                notes.warn(
                    src,
                    f"{path}.{key}.{extra}",
                    f"not mapped (no per-severity {extra}; alerts carry a `severity` label)",
                )
    if enabled == {"page", "ticket"}:
        return runbook, None
    if not enabled:
        notes.warn(
            src,
            path,
            "both page and ticket alerts are disabled; a burnrate SLO always "
            "alerts, so the default policy applies (disable its receivers instead)",
        )
        return runbook, None
    return runbook, default_rows(enabled)
