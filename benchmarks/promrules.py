"""Sloth-style Prometheus rules for the baseline the benchmarks compare Burnrate with.

What rule-based SLO tools such as Sloth generate: per SLO, one recording
rule per policy window holding the error ratio over that window computed from counters
with `rate()`, a few metadata series (objective, error budget, current burn rate), and
one alert per severity whose expression ORs the policy rows of that severity, each row
ANDing its long and short window's ratio against `factor x error budget`. No `for`.

Written here from that shape, not copied. Two differences from Sloth's text, both to
keep the comparison about timing only: thresholds use `>=` (Burnrate's documented
semantics; Sloth writes `>`), and windows are whatever the policy rows name (Sloth
has a fixed set of 5m..3d ratios).

Layouts:
- `sloth`: Sloth's three groups (SLI recordings, metadata, alerts), each evaluated
  on its own at the evaluation interval, so an alert may read recordings up to one
  interval old;
- `single`: one group, recordings first, then alerts (a best case for Prometheus:
  rules of one group run in order, so an alert reads the ratios of the same round).
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from engine.core.config import PolicyRow
from engine.core.durations import format_duration

__all__ = [
    "Layout",
    "RuleSlo",
    "alert_name",
    "check_rules",
    "ratio_expr",
    "ratio_record",
    "rule_groups",
    "write_rules",
]

Layout = Literal["sloth", "single"]
RATIO_RECORD = "slo:sli_error:ratio_rate{window}"


@dataclass(frozen=True, slots=True)
class RuleSlo:
    """One SLO as the rules see it: counters selected by `service`."""

    name: str
    service: str
    objective_ratio: float
    period_s: float = 30 * 86400
    errors_metric: str = "requests_errors_total"
    total_metric: str = "requests_total"

    @property
    def error_budget_ratio(self) -> float:
        return 1.0 - self.objective_ratio

    @property
    def labels(self) -> dict[str, str]:
        return {
            "sloth_id": f"{self.service}-{self.name}",
            "sloth_service": self.service,
            "sloth_slo": self.name,
        }

    def selector(self) -> str:
        return "{" + ", ".join(f'{k}="{v}"' for k, v in self.labels.items()) + "}"


def ratio_record(window_s: float) -> str:
    return RATIO_RECORD.format(window=format_duration(window_s))


def ratio_expr(slo: RuleSlo, window_s: float) -> str:
    """Error ratio over the window from the two counters (what the recording holds)."""
    w = format_duration(window_s)
    sel = f'{{service="{slo.service}"}}'
    return (
        f"(sum(rate({slo.errors_metric}{sel}[{w}])))\n/\n(sum(rate({slo.total_metric}{sel}[{w}])))"
    )


def alert_name(slo: RuleSlo, severity: str) -> str:
    parts = [p for p in slo.name.replace("_", "-").replace(".", "-").split("-") if p]
    return "".join(p.capitalize() for p in parts) + f"{severity.capitalize()}BurnRate"


def _windows(policy: Sequence[PolicyRow]) -> list[int]:
    return sorted({r.long_s for r in policy} | {r.short_s for r in policy})


def _recordings(slo: RuleSlo, policy: Sequence[PolicyRow]) -> list[dict[str, Any]]:
    return [
        {
            "record": ratio_record(w),
            "expr": ratio_expr(slo, w),
            "labels": {**slo.labels, "sloth_window": format_duration(w)},
        }
        for w in _windows(policy)
    ]


def _metadata(slo: RuleSlo, policy: Sequence[PolicyRow]) -> list[dict[str, Any]]:
    shortest = ratio_record(_windows(policy)[0])
    sel = slo.selector()
    rules = [
        {"record": "slo:objective:ratio", "expr": f"vector({slo.objective_ratio!r})"},
        {"record": "slo:error_budget:ratio", "expr": f"vector({slo.error_budget_ratio!r})"},
        {
            "record": "slo:current_burn_rate:ratio",
            "expr": f"{shortest}{sel}\n/ on(sloth_id, sloth_slo, sloth_service) group_left\n"
            f"slo:error_budget:ratio{sel}",
        },
    ]
    return [{**rule, "labels": dict(slo.labels)} for rule in rules]


def _alerts(slo: RuleSlo, policy: Sequence[PolicyRow]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    sel = slo.selector()
    budget = slo.error_budget_ratio
    for severity in dict.fromkeys(r.severity for r in policy):
        terms = []
        for row in (r for r in policy if r.severity == severity):
            factor = row.factor_for(slo.period_s)
            threshold = f"({factor!r} * {budget!r})"
            pair = [
                f"max({ratio_record(w)}{sel} >= {threshold}) without (sloth_window)"
                for w in (row.short_s, row.long_s)
            ]
            terms.append("(\n  " + "\n  and\n  ".join(pair) + "\n)")
        out.append(
            {
                "alert": alert_name(slo, severity),
                "expr": "\nor\n".join(terms),
                "labels": {"sloth_severity": severity, **slo.labels},
                "annotations": {"summary": f"{slo.name} is burning its error budget too fast"},
            }
        )
    return out


def rule_groups(
    slos: Sequence[RuleSlo],
    policy: Sequence[PolicyRow],
    *,
    interval_s: float,
    layout: Layout = "sloth",
) -> dict[str, Any]:
    """A Prometheus rule file (as a dict) for `slos` under `policy`."""
    interval = format_duration(interval_s)
    groups: list[dict[str, Any]] = []
    for slo in slos:
        rid = slo.labels["sloth_id"]
        recordings = _recordings(slo, policy)
        meta = _metadata(slo, policy)
        alerts = _alerts(slo, policy)
        if layout == "single":
            groups.append(
                {"name": f"slo-{rid}", "interval": interval, "rules": recordings + meta + alerts}
            )
        else:
            for kind, rules in (
                ("sli-recordings", recordings),
                ("meta-recordings", meta),
                ("alerts", alerts),
            ):
                groups.append(
                    {"name": f"sloth-slo-{kind}-{rid}", "interval": interval, "rules": rules}
                )
    return {"groups": groups}


def write_rules(path: Path, rules: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(rules, sort_keys=False, width=1000))
    return path


def check_rules(path: Path, promtool: str = "promtool") -> str:
    """`promtool check rules PATH`; raises RuntimeError with its output when it fails."""
    exe = shutil.which(promtool)
    if exe is None:
        raise RuntimeError(f"{promtool} not found (apt-get install prometheus)")
    proc = subprocess.run(
        [exe, "check", "rules", str(path)], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(f"promtool rejected {path}:\n{proc.stdout}{proc.stderr}")
    return proc.stdout.strip()
