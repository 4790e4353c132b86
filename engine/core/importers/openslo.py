"""OpenSLO v1 documents into burnrate SLOs.

Theory of operation
-------------------
OpenSLO spreads one SLO over several objects (Service, SLO, SLI, AlertPolicy,
AlertCondition, AlertNotificationTarget, DataSource) that refer to each other by name,
inline or across files. The import first indexes every object of every document by
(kind, name), then builds each SLO, resolving `indicatorRef`, `alertPolicyRef`,
`conditionRef`, `targetRef` and `metricSourceRef` in that index (a broken reference is
a note at the reference's path). A note about a referenced object names that object's
own file and path.

- The SLI: a `metricSource` of `type: burnrate` whose spec holds the config's own
  fields (`service`, `operation`, `sli`, `threshold_ms`, `match_labels`) maps exactly;
  a Prometheus `ratioMetric` (good or bad over total) is read by its label matchers
  (engine.core.importers.promql); anything else is a note and no SLO.
- The period: `timeWindow` rolling (`28d`), or calendar with `1w`, `1M`, `1Q` (or `3M`)
  to burnrate's calendar week, month and quarter in `timeZone`.
- Objectives: `target` (a ratio) or `targetPercent`. One objective is one SLO; several
  on one indicator are one SLO each (`name-objective`); objectives with their own
  indicators are a composite: one SLO per objective and the composite (the SLO's name)
  weighting them by `compositeWeight`, its objective the weighted mean of theirs.
- Alerts: each burn-rate AlertCondition of the SLO's policies is a policy row of that
  SLO (engine.core.importers.openslo_alerts).

The index and its lookups are engine.core.importers.openslo_objects; the SLI fields,
engine.core.importers.openslo_sli.
"""

from __future__ import annotations

from typing import Any, Final

from engine.core.importers.common import (
    Document,
    Imported,
    Notes,
    each_map,
    fixed_length,
    label_map,
    objective_percent,
    safe_name,
    source_duration,
    unknown_keys,
)
from engine.core.importers.openslo_alerts import SHORT_WINDOW_ANNOTATION, policy_rows
from engine.core.importers.openslo_objects import KINDS, Index, Obj, read_object, target_note
from engine.core.importers.openslo_sli import sli_fields
from engine.core.periods import is_calendar_start

__all__ = ["KINDS", "SHORT_WINDOW_ANNOTATION", "import_openslo"]

SLO_FIELDS: Final = frozenset(
    {"description", "service", "indicator", "indicatorRef", "timeWindow", "budgetingMethod"}
    | {"objectives", "alertPolicies"}
)
OBJECTIVE_FIELDS: Final = frozenset(
    {"displayName", "name", "op", "value", "target", "targetPercent", "timeSliceTarget"}
    | {"timeSliceWindow", "indicator", "indicatorRef", "compositeWeight"}
)
_CALENDAR: Final = {(1, "w"): "week", (1, "M"): "month", (1, "Q"): "quarter", (3, "M"): "quarter"}


def import_openslo(docs: list[Document], notes: Notes) -> list[Imported]:
    """The SLOs of the OpenSLO v1 documents `docs` (see the module docstring)."""
    index: Index = {}
    for doc in docs:
        obj = read_object(doc.body, doc.source, doc.path, notes)
        if obj is None:
            continue
        first = index.setdefault((obj.kind, obj.name), obj)
        if first is not obj:
            notes.warn(
                obj.source,
                f"{obj.path}.metadata.name",
                f"duplicate {obj.kind} {obj.name!r} (first at {first.source}: {first.path}); "
                "ignored",
            )
    out: list[Imported] = []
    for (kind, _), obj in index.items():
        if kind == "SLO":
            out += _slos(obj, index, notes)
        elif kind == "AlertNotificationTarget":
            target_note(obj, notes)
    return out


def _period(spec: dict[str, Any], obj: Obj, notes: Notes) -> Any:
    """The SLO's `period` from its `timeWindow` (None: left out, the note says why)."""
    path = f"{obj.path}.spec.timeWindow"
    windows = spec.get("timeWindow")
    if not isinstance(windows, list) or len(windows) != 1 or not isinstance(windows[0], dict):
        notes.warn(obj.source, path, "expected a list of one time window; the SLO is skipped")
        return None
    tw, path = windows[0], f"{path}[0]"
    parsed = source_duration(tw.get("duration"))
    if parsed is None:
        notes.warn(obj.source, f"{path}.duration", f"not a duration: {tw.get('duration')!r}")
        return None
    count, unit = parsed
    calendar = tw.get("calendar")
    if isinstance(calendar, dict):
        zone = calendar.get("timeZone") or "UTC"
        if not calendar.get("timeZone"):
            notes.warn(obj.source, f"{path}.calendar.timeZone", "missing; taken as UTC")
        unit_name = _CALENDAR.get((count, unit))
        if unit_name is not None:
            _start_note(calendar.get("startTime"), unit_name, obj.source, f"{path}.calendar", notes)
            return {"calendar": unit_name, "time_zone": str(zone)}
        text, _ = fixed_length(count, unit)
        notes.warn(
            obj.source,
            f"{path}.duration",
            f"calendar window {count}{unit}: burnrate has calendar weeks (1w), months (1M) "
            f"and quarters (1Q); imported as a rolling {text}",
        )
        return text
    if tw.get("isRolling") is not True:
        notes.warn(obj.source, path, "neither isRolling: true nor calendar; read as rolling")
    text, nominal = fixed_length(count, unit)
    if nominal:
        notes.warn(
            obj.source,
            f"{path}.duration",
            f"a rolling {count}{unit} has no fixed length; imported as {text}",
        )
    return text


def _start_note(start: Any, unit: str, source: str, path: str, notes: Notes) -> None:
    """A note when `startTime` is not where burnrate's periods start (local midnight on
    the 1st of the month or quarter, Monday for a week)."""
    text = str(start) if start is not None else ""
    aligned = is_calendar_start(start, unit)
    if aligned is None:
        notes.warn(
            source,
            f"{path}.startTime",
            f"not a time: {start!r} (periods start at the calendar {unit}'s start)",
        )
        return
    if not aligned:
        notes.warn(
            source,
            f"{path}.startTime",
            f"{text}: burnrate's calendar {unit}s start at "
            "local midnight on their first day (Monday for weeks), not at this time",
        )


def _budgeting(spec: dict[str, Any], obj: Obj, notes: Notes) -> None:
    method = spec.get("budgetingMethod")
    path = f"{obj.path}.spec.budgetingMethod"
    if method is None:
        notes.warn(obj.source, path, "missing; read as Occurrences")
    elif method != "Occurrences":
        notes.warn(
            obj.source,
            path,
            f"{method} is not supported yet: imported as Occurrences (budget over events, "
            "not time slices)",
        )


def _objective(o: dict[str, Any], source: str, path: str, notes: Notes) -> float | int | None:
    if "target" in o:
        value, ratio, key = o["target"], True, "target"
    elif "targetPercent" in o:
        value, ratio, key = o["targetPercent"], False, "targetPercent"
    else:
        notes.warn(source, path, "no target or targetPercent; skipped")
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        notes.warn(source, f"{path}.{key}", f"not a number: {value!r}; skipped")
        return None
    for field in ("timeSliceTarget", "timeSliceWindow"):
        if field in o:
            notes.warn(source, f"{path}.{field}", "not mapped (time slices are not supported yet)")
    return objective_percent(value, ratio=ratio)


def _slos(obj: Obj, index: Index, notes: Notes) -> list[Imported]:
    """The SLO entries of one OpenSLO SLO (several for several objectives)."""
    spec, src, at = obj.spec, obj.source, obj.path
    name = safe_name(obj.name, notes, src, f"{at}.metadata.name")
    period = _period(spec, obj, notes)
    if name is None or period is None:
        return []
    _budgeting(spec, obj, notes)
    base: dict[str, Any] = {"name": name}
    description = spec.get("description") or obj.metadata.get("displayName")
    if description:
        base["description"] = str(description)
    objectives = spec.get("objectives")
    if not isinstance(objectives, list) or not objectives:
        notes.warn(src, f"{at}.spec.objectives", "no objectives; the SLO is skipped")
        return []
    policy = policy_rows(spec.get("alertPolicies"), obj, index, notes)
    labels = label_map(obj.metadata.get("labels"), notes, src, f"{at}.metadata.labels")
    service = spec.get("service") if isinstance(spec.get("service"), str) else None
    unknown_keys(spec, SLO_FIELDS, src, f"{at}.spec", notes)
    annotations = obj.metadata.get("annotations")
    for key in annotations if isinstance(annotations, dict) else ():
        notes.warn(src, f"{at}.metadata.annotations.{key}", "not mapped (SLO annotations)")
    own = [isinstance(o, dict) and ("indicator" in o or "indicatorRef" in o) for o in objectives]
    composite = any(own) and len(objectives) > 1
    shared = None
    if not all(own):
        shared = _indicator(spec, f"{at}.spec", src, service, index, notes)
    members: list[tuple[dict[str, Any], float]] = []
    out: list[Imported] = []
    for j, path, o in each_map(objectives, src, f"{at}.spec.objectives", "an objective", notes):
        unknown_keys(o, OBJECTIVE_FIELDS, src, path, notes)
        objective = _objective(o, src, path, notes)
        fields = _indicator(o, path, src, service, index, notes) if own[j] else shared
        if objective is None or fields is None:
            continue
        fields = _objective_value(fields, o, src, path, notes)
        entry = dict(base)
        if len(objectives) > 1:
            label = o.get("displayName") or o.get("name") or str(j)
            entry["name"] = safe_name(f"{name}-{label}", notes, src, path) or f"{name}-{j}"
        entry.update(fields)
        out.append(Imported(_with(entry, objective, period, labels, policy), src, path))
        if composite:
            members.append((entry, _weight(o, src, path, notes)))
        elif "compositeWeight" in o:
            notes.warn(
                src,
                f"{path}.compositeWeight",
                "not a composite SLO (objectives share the SLO's indicator); ignored",
            )
    if composite and members:
        out.append(_composite(base, members, period, labels, policy, obj, notes))
    return out


def _indicator(
    holder: dict[str, Any], path: str, src: str, service: str | None, index: Index, notes: Notes
) -> dict[str, Any] | None:
    """The SLI fields of `holder`'s `indicator` or `indicatorRef`."""
    if "indicator" in holder:
        sli = read_object(holder["indicator"], src, f"{path}.indicator", notes, "SLI")
    elif "indicatorRef" in holder:
        ref = holder["indicatorRef"]
        sli = index.get(("SLI", str(ref)))
        if sli is None:
            notes.warn(src, f"{path}.indicatorRef", f"no SLI named {ref!r} in the files read")
    else:
        notes.warn(src, path, "no indicator or indicatorRef; skipped")
        return None
    if sli is None:
        return None
    sources = {
        name: str(obj.spec.get("type"))
        for (kind, name), obj in index.items()
        if kind == "DataSource" and obj.spec.get("type") is not None
    }
    return sli_fields(sli.spec, sli.source, f"{sli.path}.spec", service, sources, notes)


def _objective_value(
    fields: dict[str, Any], o: dict[str, Any], src: str, path: str, notes: Notes
) -> dict[str, Any]:
    """A threshold objective's `value` is the latency threshold when the SLI has none."""
    if "value" not in o:
        return fields
    if (
        fields.get("sli") == "latency"
        and "threshold_ms" not in fields
        and o.get("op") in ("lte", "lt")
    ):
        return {**fields, "threshold_ms": o["value"]}
    notes.warn(src, f"{path}.value", "not mapped (the SLI's own threshold_ms decides)")
    return fields


def _weight(o: dict[str, Any], src: str, path: str, notes: Notes) -> float:
    weight = o.get("compositeWeight", 1)
    if isinstance(weight, bool) or not isinstance(weight, int | float) or not weight > 0:
        notes.warn(src, f"{path}.compositeWeight", f"must be a number > 0, got {weight!r}; 1 used")
        return 1.0
    return float(weight)


def _composite(
    base: dict[str, Any],
    members: list[tuple[dict[str, Any], float]],
    period: Any,
    labels: dict[str, str],
    policy: list[dict[str, Any]] | None,
    obj: Obj,
    notes: Notes,
) -> Imported:
    total = sum(w for _, w in members)
    objective = objective_percent(sum(m["objective"] * w for m, w in members) / total, ratio=False)
    notes.warn(
        obj.source,
        f"{obj.path}.spec.objectives",
        f"composite {base['name']!r}: its objective {objective}% is the weighted mean of its "
        "objectives' targets (OpenSLO v1 gives none of its own)",
    )
    if isinstance(period, dict):
        rolling = {"week": "7d", "month": "30d", "quarter": "91d"}[period["calendar"]]
        notes.warn(
            obj.source,
            f"{obj.path}.spec.timeWindow",
            f"a composite SLO's period is "
            f"rolling: {rolling} (its members keep the calendar {period['calendar']})",
        )
        period = rolling
    entry = dict(base)
    entry["composite"] = [{"slo": m["name"], "weight": w} for m, w in members]
    return Imported(_with(entry, objective, period, labels, policy), obj.source, obj.path)


def _with(
    entry: dict[str, Any],
    objective: float | int,
    period: Any,
    labels: dict[str, str],
    policy: list[dict[str, Any]] | None,
) -> dict[str, Any]:
    """`entry` with what every SLO of one OpenSLO SLO shares, in the config's key order."""
    entry["objective"] = objective
    entry["period"] = period
    if labels:
        entry["labels"] = dict(labels)
    if policy is not None:
        entry["policy"] = policy
    return entry
