"""The JSON API: `/v1/slos` and `/v1/slos/{name}` (auth is `engine.adapters.http.auth`).

Reading. Every value comes from the evaluator's read methods (`window_sums`,
`error_ratios`, `burn_rates`, `budget_remaining`, `alerts`, `counts`), the same ones
`/metrics` reads, so the API and Prometheus agree to the last bit. Windows are those
the evaluator keeps (every policy window and SLO period), each as (t - W, t] at the
last evaluation time t (`evaluated_at`, event-time epoch seconds). A window without
events is *no data*: `error_ratio` and `burn_rate` are null (never NaN), as is
`remaining_ratio` when the SLO's period holds no events. The list body is encoded at
most once per evaluation tick (`generation` changes), like the metrics body; one SLO
is read fresh.

`/v1/slos/{name}` answers:

    {"name", "service", "operation", "sli", "threshold_ms", "objective" (percent),
     "objective_ratio", "period" ("30d"), "period_s", "labels", "description",
     "runbook_url",
     "windows": [{"window": "5m", "window_s": 300, "good", "bad", "total",
                  "error_ratio", "burn_rate"}, ...],            # shortest first
     "error_budget": {"remaining_ratio", "time_to_exhaustion_s", "burn_rate",
                      "burn_rate_window"},
     "alerts": {"page": {"firing", "since", "row": {"severity", "long", "short",
                                                   "long_s", "short_s", "factor"}}, ...},
     "calendar_period": null | {"calendar", "time_zone", "start", "start_s", "end",
                                "end_s", "good", "bad", "total"},
     "events_total", "bad_events_total", "excluded_events_total", "evaluated_at",
     "composite": [{"slo", "weight"}, ...],                     # composite SLOs only
     "group": "region=eu"}                                      # grouped SLOs only

A grouped SLO (`group_by`) has one view per group that has events (its `group`, as
`Evaluator.group_of` writes it; `__other__` for the overflow group), all under its
name: `/v1/slos` lists them, and `/v1/slos/{name}?group=...` answers one (without
`group`, 400 naming the groups there are).

A composite SLO has null `service`, `operation`, `sli` and `threshold_ms`; its windows'
`good`/`bad`/`total`, `events_total` and `bad_events_total` are the sums of its
members' (an event two members select counts twice), while its `error_ratio` is the
weighted average of its members' over those with events, so it is not `bad / total`
(docs/design.md, "Composite SLOs").

A calendar SLO (`period: {calendar: month, ...}`) has `calendar_period`: the period
holding the last evaluation time, [start, end), as RFC 3339 in the SLO's zone
(`2026-03-01T00:00:00+01:00`) and as epoch seconds (`start_s`, `end_s`; null before
the first event), and its events to date; `error_budget.remaining_ratio` is over those.
Its `period`/`period_s` are the nominal length the policy factors and
`time_to_exhaustion_s` use (`30d` for a month, `7d` a week, `91d` a quarter); the
period itself is not among `windows`. Rolling SLOs have `calendar_period: null`.

`excluded_events_total` counts the events a correction left out of the SLO
(`/v1/corrections`, engine.adapters.http.corrections).

`time_to_exhaustion_s` is remaining_ratio * period_s / burn_rate
(`engine.core.budget.time_to_exhaustion_s`, not rounded): how long the budget left lasts
if the SLO keeps burning at the burn rate of `burn_rate_window` (1h, or the shortest
policy long window when 1h is not kept); 0 when the budget is already spent, null when
nothing burns or there is no data. `alerts[severity].row` is the policy row
that holds (or held last) while the alert fires, null otherwise. Unknown names get 404
`{"error": ..., "slo": name}`; `/v1/slos` answers `{"evaluated_at", "slos": [...]}`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Final

import msgspec
import numpy as np
from aiohttp import web

from engine.core.budget import time_to_exhaustion_s
from engine.core.budget_alerts import ALERTNAMES
from engine.core.config import Severity
from engine.core.durations import format_duration
from engine.core.evaluator import Evaluator
from engine.core.governance import EXHAUSTION_WINDOW_S, exhaustion_window_s
from engine.core.periods import time_zone

__all__ = [
    "EXHAUSTION_WINDOW_S",
    "AlertView",
    "BudgetAlertView",
    "BudgetView",
    "CalendarPeriodView",
    "MemberView",
    "PolicyRowView",
    "SloApi",
    "SloList",
    "SloView",
    "WindowView",
    "json_error",
]


JSON_TYPE: Final = "application/json"


class WindowView(msgspec.Struct, kw_only=True):
    window: str
    window_s: int
    good: int
    bad: int
    total: int
    error_ratio: float | None
    burn_rate: float | None


class BudgetView(msgspec.Struct, kw_only=True):
    remaining_ratio: float | None
    time_to_exhaustion_s: float | None
    burn_rate: float | None
    burn_rate_window: str


class CalendarPeriodView(msgspec.Struct, kw_only=True):
    calendar: str
    time_zone: str
    start: str | None
    start_s: int | None
    end: str | None
    end_s: int | None
    good: int
    bad: int
    total: int


class PolicyRowView(msgspec.Struct, kw_only=True):
    severity: Severity
    long: str
    short: str
    long_s: int
    short_s: int
    factor: float


class AlertView(msgspec.Struct, kw_only=True):
    firing: bool
    since: float | None
    row: PolicyRowView | None


class BudgetAlertView(msgspec.Struct, kw_only=True, omit_defaults=True):
    """A budget alert or escalation of the SLO (engine.core.budget_alerts)."""

    alert: str
    """Its `alertname`: `ErrorBudgetExhausted`, `ErrorBudgetExhaustionProjected`,
    `ErrorBudgetEscalation`."""
    key: str
    severity: Severity
    firing: bool
    since: float | None
    policy_row: str | None = None
    decision: str | None = None
    receivers: list[str] = []


class MemberView(msgspec.Struct, kw_only=True):
    slo: str
    weight: float


class SloView(msgspec.Struct, kw_only=True, omit_defaults=True):
    name: str
    service: str | None
    operation: str | None
    sli: str | None
    threshold_ms: float | None
    objective: float
    objective_ratio: float
    period: str
    period_s: int
    labels: dict[str, str]
    description: str | None
    runbook_url: str | None
    windows: list[WindowView]
    error_budget: BudgetView
    calendar_period: CalendarPeriodView | None
    alerts: dict[Severity, AlertView]
    events_total: int
    bad_events_total: int
    excluded_events_total: int
    evaluated_at: float | None
    composite: list[MemberView] | None = None
    """A composite SLO's members (absent for a plain SLO)."""
    group: str | None = None
    """A grouped SLO's group (absent for an SLO without groups)."""
    budget_alerts: list[BudgetAlertView] = []
    """Its budget alerts and escalations (absent when the config gives it none)."""


class SloList(msgspec.Struct, kw_only=True):
    evaluated_at: float | None
    slos: list[SloView]


class _Error(msgspec.Struct, omit_defaults=True):
    error: str
    slo: str | None = None


_encoder = msgspec.json.Encoder()


def json_error(
    status: int, error: str, *, slo: str | None = None, headers: Mapping[str, str] | None = None
) -> web.Response:
    return web.Response(
        body=_encoder.encode(_Error(error, slo)),
        status=status,
        content_type=JSON_TYPE,
        headers=headers,
    )


def _num(x: float) -> float | None:
    return None if math.isnan(x) else x


def _rfc3339(epoch_s: float, zone: str) -> str | None:
    """`2026-03-01T00:00:00+01:00`: the instant as the SLO's zone reads it."""
    if math.isnan(epoch_s):
        return None
    return datetime.fromtimestamp(epoch_s, time_zone(zone)).isoformat()


class SloApi:
    """Builds the views from an evaluator and serves them."""

    def __init__(self, evaluator: Evaluator, generation: Callable[[], int] | None = None) -> None:
        self.generation = generation
        """Changes once per evaluation tick; None: no caching (the body is built per request)."""
        self.use(evaluator)

    def use(self, evaluator: Evaluator) -> None:
        """Serve `evaluator` from now on (a config reload swaps it)."""
        self.evaluator = evaluator
        ev = evaluator
        self._index = {s.name: int(b) for s, b in zip(ev.config_slos, ev.column_base, strict=True)}
        windows_s = ev.windows_s
        self._window_labels = [format_duration(w) for w in windows_s]
        budget_w = exhaustion_window_s(ev)
        self._budget_w = ev.window_index(budget_w)
        self._budget_label = format_duration(budget_w)
        self._cached: tuple[int, bytes] | None = None

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/v1/slos", self._list)
        app.router.add_get("/v1/slos/{name}", self._one)

    # -- views -----------------------------------------------------------------------

    def views(self, indices: Sequence[int] | None = None) -> list[SloView]:
        """Views of the SLOs at `indices` (all by default), read from the arrays now."""
        ev = self.evaluator
        if indices is None:
            idx = np.flatnonzero(ev.column_in_use())
        else:
            idx = np.asarray(indices, dtype=int)
        alert_state, counts = ev.alerts(), ev.counts()
        sums: list[list[list[int]]] = ev.window_sums()[:, idx, :].transpose(1, 0, 2).tolist()
        ratios: list[list[float]] = ev.error_ratios()[:, idx].T.tolist()
        burns: list[list[float]] = ev.burn_rates()[:, idx].T.tolist()
        budget: list[float] = ev.budget_remaining()[idx].tolist()
        firing: list[list[bool]] = alert_state.firing[idx].tolist()
        since: list[list[float]] = alert_state.firing_since_s[idx].tolist()
        rows: list[list[int]] = alert_state.firing_row[idx].tolist()
        events: list[int] = counts.events_total[idx].tolist()
        bad_events: list[int] = counts.bad_events_total[idx].tolist()
        period_sums: list[list[int]] = ev.period_sums()[idx].tolist()
        starts, ends = (b[idx].tolist() for b in ev.period_bounds())
        excluded: list[int] = counts.excluded_events[idx].tolist()
        b_state = ev.budget_alerts()
        b_firing: list[list[bool]] = b_state.firing[idx].tolist()
        b_since: list[list[float]] = b_state.firing_since_s[idx].tolist()
        evaluated_at = ev.evaluated_at_s
        out: list[SloView] = []
        for k, i in enumerate(idx.tolist()):
            slo = ev.slos[i]
            windows = [
                WindowView(
                    window=label,
                    window_s=w_s,
                    good=total - nbad,
                    bad=nbad,
                    total=total,
                    error_ratio=_num(ratio),
                    burn_rate=_num(burn),
                )
                for label, w_s, (total, nbad), ratio, burn in zip(
                    self._window_labels,
                    ev.windows_s,
                    sums[k],
                    ratios[k],
                    burns[k],
                    strict=True,
                )
            ]
            remaining = _num(budget[k])
            burn_now = _num(burns[k][self._budget_w])
            alerts = {
                sev: AlertView(
                    firing=firing[k][j],
                    since=_num(since[k][j]) if firing[k][j] else None,
                    row=self._row_view(i, rows[k][j]) if firing[k][j] else None,
                )
                for j, sev in enumerate(ev.severities)
            }
            out.append(
                SloView(
                    name=slo.name,
                    service=slo.service,
                    operation=slo.operation,
                    sli=None if slo.sli is None else str(slo.sli),
                    threshold_ms=slo.threshold_ms,
                    objective=slo.objective,
                    objective_ratio=slo.objective_ratio,
                    period=format_duration(slo.period_s),
                    period_s=slo.period_s,
                    labels=dict(slo.labels),
                    description=slo.description,
                    runbook_url=slo.runbook_url,
                    windows=windows,
                    error_budget=BudgetView(
                        remaining_ratio=remaining,
                        time_to_exhaustion_s=time_to_exhaustion_s(
                            remaining, burn_now, slo.period_s
                        ),
                        burn_rate=burn_now,
                        burn_rate_window=self._budget_label,
                    ),
                    calendar_period=self._calendar_view(i, starts[k], ends[k], period_sums[k]),
                    alerts=alerts,
                    events_total=events[k],
                    bad_events_total=bad_events[k],
                    excluded_events_total=excluded[k],
                    evaluated_at=evaluated_at,
                    composite=None
                    if slo.composite is None
                    else [MemberView(slo=m.slo, weight=m.weight) for m in slo.composite],
                    group=ev.group_of(i),
                    budget_alerts=[
                        BudgetAlertView(
                            alert=ALERTNAMES[col.kind],
                            key=col.key,
                            severity=col.severity,
                            firing=b_firing[k][a],
                            since=_num(b_since[k][a]) if b_firing[k][a] else None,
                            policy_row=col.path,
                            decision=None if col.row is None else col.row.decision,
                            receivers=[] if col.row is None else list(col.row.escalate),
                        )
                        for a, col in enumerate(ev.budget_alert_columns)
                        if col.mask[i]
                    ],
                )
            )
        return out

    def _calendar_view(
        self, i: int, start: float, end: float, sums: list[int]
    ) -> CalendarPeriodView | None:
        cal = self.evaluator.slos[i].calendar
        if cal is None:
            return None
        total, bad = sums
        return CalendarPeriodView(
            calendar=cal.calendar,
            time_zone=cal.time_zone,
            start=_rfc3339(start, cal.time_zone),
            start_s=None if math.isnan(start) else int(start),
            end=_rfc3339(end, cal.time_zone),
            end_s=None if math.isnan(end) else int(end),
            good=total - bad,
            bad=bad,
            total=total,
        )

    def _row_view(self, slo_index: int, r: int) -> PolicyRowView | None:
        if r < 0:
            return None
        row = self.evaluator.rows[r]
        return PolicyRowView(
            severity=row.severity,
            long=format_duration(row.long_s),
            short=format_duration(row.short_s),
            long_s=row.long_s,
            short_s=row.short_s,
            factor=float(self.evaluator.factor[slo_index, r]),
        )

    def view(self, name: str, group: str | None = None) -> SloView | None:
        """The SLO `name` (of a grouped SLO, its `group`); None: no such SLO or group."""
        i = self._index.get(name)
        if i is None:
            return None
        if self.evaluator.slos[i].group_by:
            column = None if group is None else self.group_columns(name).get(group)
            if column is None:
                return None
            i = column
        elif group is not None:
            return None
        return self.views([i])[0]

    def column_of(self, name: str) -> int | None:
        """The first column of the SLO `name` (None: no such SLO)."""
        return self._index.get(name)

    def group_columns(self, name: str) -> dict[str, int]:
        """The groups of SLO `name` that are in use, and their columns (empty: the SLO is
        not grouped, or unknown)."""
        ev = self.evaluator
        i = self._index.get(name)
        if i is None or not ev.slos[i].group_by:
            return {}
        used = ev.column_in_use()
        out: dict[str, int] = {}
        for c in range(i, i + ev.slos[i].column_count):
            group = ev.group_of(c)
            if used[c] and group is not None:
                out[group] = c
        return out

    def list_body(self) -> bytes:
        gen = None if self.generation is None else self.generation()
        if gen is not None and self._cached is not None and self._cached[0] == gen:
            return self._cached[1]
        body = _encoder.encode(
            SloList(evaluated_at=self.evaluator.evaluated_at_s, slos=self.views())
        )
        if gen is not None:
            self._cached = (gen, body)
        return body

    # -- handlers --------------------------------------------------------------------

    async def _list(self, request: web.Request) -> web.Response:
        return web.Response(body=self.list_body(), content_type=JSON_TYPE)

    async def _one(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        group = request.query.get("group")
        i = self._index.get(name)
        if i is not None and group is None and self.evaluator.slos[i].group_by:
            groups = ", ".join(sorted(self.group_columns(name)))
            return json_error(
                400, f"a grouped SLO: name one of its groups with ?group= ({groups})", slo=name
            )
        view = self.view(name, group)
        if view is None:
            what = "no SLO of that name" if i is None else "no group of that name"
            return json_error(404, what, slo=name)
        return web.Response(body=_encoder.encode(view), content_type=JSON_TYPE)
