"""An OpenSLO v1 SLI spec into the config's SLI fields.

Theory of operation
-------------------
Two SLI forms map:

- `type: burnrate` on a metric source (the threshold metric's, or a ratio metric's
  total): its `spec` holds the config's own fields (`service`, `operation`, `sli`,
  `threshold_ms`, `match_labels`, `failed_counts_bad`), taken as they are; other keys
  are notes. burnrate counts good and bad events itself, so a ratio metric's good or
  bad source beside it is not needed.
- A Prometheus ratio metric (`good` or `bad` over `total`, each a `metricSource` with a
  `query`): read by its label matchers (engine.core.importers.promql).

The type comes from the metric source, or from the DataSource its `metricSourceRef`
names. Everything else (threshold metrics on other sources, `raw` ratios, other
source types) is a note naming its path, and no SLI.
"""

from __future__ import annotations

from typing import Any, Final

from engine.core.importers.common import Notes
from engine.core.importers.promql import Where, mapped_sli

__all__ = ["BURNRATE_FIELDS", "BURNRATE_TYPE", "sli_fields"]

BURNRATE_TYPE: Final = "burnrate"
BURNRATE_FIELDS: Final = (
    "service",
    "operation",
    "sli",
    "threshold_ms",
    "match_labels",
    "failed_counts_bad",
)


def _type(source_spec: Any, data_sources: dict[str, str]) -> str | None:
    if not isinstance(source_spec, dict):
        return None
    kind = source_spec.get("type")
    if kind is None and isinstance(source_spec.get("metricSourceRef"), str):
        kind = data_sources.get(source_spec["metricSourceRef"])
    return str(kind) if kind is not None else None


def _burnrate(ms: dict[str, Any], source: str, path: str, notes: Notes) -> dict[str, Any] | None:
    spec = ms.get("spec")
    if not isinstance(spec, dict):
        notes.warn(source, f"{path}.spec", "a burnrate metric source needs a spec")
        return None
    for key in spec:
        if key not in BURNRATE_FIELDS:
            notes.warn(
                source,
                f"{path}.spec.{key}",
                f"not a burnrate SLI field ({', '.join(BURNRATE_FIELDS)}); ignored",
            )
    missing = [key for key in ("service", "sli") if key not in spec]
    if missing:
        notes.warn(source, f"{path}.spec", f"missing {' and '.join(missing)}; no SLI")
        return None
    return {key: spec[key] for key in BURNRATE_FIELDS if key in spec}


def _query(part: Any, data_sources: dict[str, str]) -> str | None:
    """The Prometheus query of a ratio metric's `good`, `bad` or `total`, if it is one."""
    ms = part.get("metricSource") if isinstance(part, dict) else None
    if not isinstance(ms, dict) or (_type(ms, data_sources) or "").lower() != "prometheus":
        return None
    spec = ms.get("spec")
    query = spec.get("query") if isinstance(spec, dict) else None
    return query if isinstance(query, str) else None


def sli_fields(
    spec: dict[str, Any],
    source: str,
    path: str,
    service: str | None,
    data_sources: dict[str, str],
    notes: Notes,
) -> dict[str, Any] | None:
    """The SLI fields of the OpenSLO SLI `spec` at `path` (see the module docstring)."""
    threshold = spec.get("thresholdMetric")
    if isinstance(threshold, dict):
        ms = threshold.get("metricSource")
        at = f"{path}.thresholdMetric.metricSource"
        if isinstance(ms, dict) and _type(ms, data_sources) == BURNRATE_TYPE:
            return _burnrate(ms, source, at, notes)
        ref = ms.get("metricSourceRef") if isinstance(ms, dict) else None
        if ref is not None and ref not in data_sources:
            notes.warn(
                source,
                f"{at}.metricSourceRef",
                f"no DataSource named {ref!r} (with a type) in the files read; no SLI",
            )
            return None
        notes.warn(
            source,
            at,
            f"a threshold metric of type {_type(ms, data_sources)!r} does not "
            "map (only type burnrate, or a Prometheus ratio metric); no SLI",
        )
        return None
    ratio = spec.get("ratioMetric")
    if not isinstance(ratio, dict):
        notes.warn(source, path, "neither thresholdMetric nor ratioMetric; no SLI")
        return None
    at = f"{path}.ratioMetric"
    if "raw" in ratio:
        notes.warn(
            source,
            f"{at}.raw",
            "a raw ratio metric (a precomputed ratio) does not map: burnrate counts events; no SLI",
        )
        return None
    total = ratio.get("total")
    ms = total.get("metricSource") if isinstance(total, dict) else None
    if isinstance(ms, dict) and _type(ms, data_sources) == BURNRATE_TYPE:
        return _burnrate(ms, source, f"{at}.total.metricSource", notes)
    queries: dict[Where, str] = {}
    paths: dict[Where, str] = {}
    for key in ("bad", "good", "total"):
        if key not in ratio:
            continue
        query = _query(ratio[key], data_sources)
        where: Where = "bad" if key == "bad" else "good" if key == "good" else "total"
        paths[where] = f"{at}.{key}.metricSource.spec.query"
        if query is None:
            kind = _type(
                ratio[key].get("metricSource") if isinstance(ratio[key], dict) else None,
                data_sources,
            )
            notes.warn(
                source,
                f"{at}.{key}.metricSource",
                f"type {kind!r} does not map (burnrate, or Prometheus with a query); no SLI",
            )
            return None
        queries[where] = query
    if "total" not in queries or ("bad" in queries) == ("good" in queries):
        notes.warn(source, at, "expected total and exactly one of good or bad; no SLI")
        return None
    return mapped_sli(queries, paths, source, service, notes)
