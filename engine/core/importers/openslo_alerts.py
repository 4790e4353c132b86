"""OpenSLO v1 alert policies into an SLO's own policy rows (engine.core.importers.openslo).

Each burn-rate AlertCondition of the SLO's alert policies is one row: factor =
`threshold`, long window = `lookbackWindow`, short window = long / 12 (the SRE
Workbook's ratio; OpenSLO has no short window) unless the condition's
`burnrate.dev/short-window` annotation gives it, severity page or ticket from the
condition's severity. A condition that does not map is left out with a note; an SLO
none of whose conditions maps keeps the config's default policy.
"""

from __future__ import annotations

import re
from typing import Any, Final

from engine.core.durations import DURATION_PATTERN, format_duration, parse_duration_s
from engine.core.importers.common import Notes, source_duration, unknown_keys
from engine.core.importers.openslo_objects import Index, Obj, resolve, target_note

__all__ = [
    "PAGE_SEVERITIES",
    "SHORT_WINDOW_ANNOTATION",
    "TICKET_SEVERITIES",
    "policy_rows",
]

SHORT_WINDOW_ANNOTATION: Final = "burnrate.dev/short-window"
PAGE_SEVERITIES: Final = frozenset({"page", "critical", "high"})
TICKET_SEVERITIES: Final = frozenset({"ticket", "warning", "medium", "low"})
POLICY_FIELDS: Final = frozenset(
    {"description", "alertWhenNoData", "alertWhenResolved", "alertWhenBreaching"}
    | {"conditions", "notificationTargets"}
)
CONDITION_FIELDS: Final = frozenset({"description", "severity", "condition"})
BURN_RATE_FIELDS: Final = frozenset({"kind", "op", "threshold", "lookbackWindow", "alertAfter"})


def policy_rows(value: Any, obj: Obj, index: Index, notes: Notes) -> list[dict[str, Any]] | None:
    """The SLO's own policy rows from its alert policies; None (the default policy) when
    it has none or none maps."""
    if value is None:
        return None
    path = f"{obj.path}.spec.alertPolicies"
    if not isinstance(value, list):
        notes.warn(obj.source, path, "expected a list; the default policy applies")
        return None
    rows: list[dict[str, Any]] = []
    for i, item in enumerate(value):
        pol = resolve(
            item, "AlertPolicy", "alertPolicyRef", obj.source, f"{path}[{i}]", index, notes
        )
        if pol is not None:
            rows += _rows_of(pol, index, notes)
    if not rows:
        notes.warn(
            obj.source, path, "no burn-rate alert condition maps; the default policy applies"
        )
        return None
    return rows


def _rows_of(pol: Obj, index: Index, notes: Notes) -> list[dict[str, Any]]:
    spec, src, at = pol.spec, pol.source, f"{pol.path}.spec"
    unknown_keys(spec, POLICY_FIELDS, src, at, notes)
    for key, usual in (
        ("alertWhenNoData", False),
        ("alertWhenResolved", True),
        ("alertWhenBreaching", True),
    ):
        if key in spec and spec[key] is not usual:
            notes.warn(
                src,
                f"{at}.{key}",
                f"{spec[key]!r} is not supported (burnrate alerts on "
                "breaches, sends resolutions, and treats no data as no alert)",
            )
    for j, target in enumerate(spec.get("notificationTargets") or ()):
        found = resolve(
            target,
            "AlertNotificationTarget",
            "targetRef",
            src,
            f"{at}.notificationTargets[{j}]",
            index,
            notes,
        )
        if found is not None and found.path.startswith(f"{at}."):
            target_note(found, notes)
    rows: list[dict[str, Any]] = []
    for j, item in enumerate(spec.get("conditions") or ()):
        cond = resolve(
            item, "AlertCondition", "conditionRef", src, f"{at}.conditions[{j}]", index, notes
        )
        if cond is not None:
            row = _row(cond, spec.get("severity"), notes)
            if row is not None:
                rows.append(row)
    return rows


def _row(cond: Obj, fallback_severity: Any, notes: Notes) -> dict[str, Any] | None:
    """One policy row from a burn-rate AlertCondition; None (and notes) when it does not map."""
    src, at = cond.source, f"{cond.path}.spec"
    c = cond.spec.get("condition")
    if not isinstance(c, dict) or c.get("kind") != "burnrate":
        kind = c.get("kind") if isinstance(c, dict) else None
        notes.warn(src, f"{at}.condition.kind", f"only burnrate conditions map, got {kind!r}")
        return None
    unknown_keys(cond.spec, CONDITION_FIELDS, src, at, notes)
    unknown_keys(c, BURN_RATE_FIELDS, src, f"{at}.condition", notes)
    severity = _severity(cond.spec.get("severity", fallback_severity))
    if severity is None:
        notes.warn(
            src,
            f"{at}.severity",
            f"{cond.spec.get('severity')!r} is neither page "
            f"({', '.join(sorted(PAGE_SEVERITIES))}) nor ticket "
            f"({', '.join(sorted(TICKET_SEVERITIES))}); condition skipped",
        )
        return None
    op, threshold = c.get("op"), c.get("threshold")
    if op not in ("gte", "gt"):
        notes.warn(
            src,
            f"{at}.condition.op",
            f"{op!r}: burnrate fires when the burn rate is at "
            "or above the threshold (gte); condition skipped",
        )
        return None
    if op == "gt":
        notes.warn(src, f"{at}.condition.op", "gt imported as gte (burnrate fires at >=)")
    if isinstance(threshold, bool) or not isinstance(threshold, int | float) or threshold <= 0:
        notes.warn(src, f"{at}.condition.threshold", f"must be a number > 0, got {threshold!r}")
        return None
    long = _window(c.get("lookbackWindow"), src, f"{at}.condition.lookbackWindow", notes)
    if long is None:
        return None
    annotations = cond.metadata.get("annotations") or {}
    given = annotations.get(SHORT_WINDOW_ANNOTATION) if isinstance(annotations, dict) else None
    if given is not None:
        short = _window(
            given, src, f"{cond.path}.metadata.annotations.{SHORT_WINDOW_ANNOTATION}", notes
        )
        if short is None:
            return None
    else:
        short = format_duration(round(parse_duration_s(long) / 12))
    after = c.get("alertAfter")
    if after is not None and str(after) not in ("0", "0s", "0m"):
        notes.warn(
            src,
            f"{at}.condition.alertAfter",
            f"{after} is not mapped: a row fires as "
            "soon as both windows burn (`evaluation.for` delays every alert, if needed)",
        )
    return {"severity": severity, "long": long, "short": short, "burn_rate": threshold}


def _window(value: Any, src: str, path: str, notes: Notes) -> str | None:
    parsed = source_duration(value)
    text = f"{parsed[0]}{parsed[1]}" if parsed else str(value)
    if parsed is None or not re.fullmatch(DURATION_PATTERN, text):
        notes.warn(src, path, f"{value!r}: expected a fixed duration (s, m, h, d, w); skipped")
        return None
    return text


def _severity(value: Any) -> str | None:
    word = str(value).lower() if value is not None else ""
    if word in PAGE_SEVERITIES:
        return "page"
    if word in TICKET_SEVERITIES:
        return "ticket"
    return None
