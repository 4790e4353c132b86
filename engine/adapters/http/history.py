"""`/v1/slos/{name}/history`: the downsampled history of one SLO, for the web UI's charts.

`GET /v1/slos/{name}/history[?group=G]` answers (engine.core.history keeps it):

    {"slo", "group" (null unless grouped), "objective_ratio",
     "windows": ["5m", ...], "windows_s": [300, ...],        # the policy rows' windows
     "rows": [{"severity", "long", "short", "long_s", "short_s", "factor"}, ...],
     "bytes_per_slo",
     "tiers": [{"resolution_s", "span_s", "t": [epoch_s, ...],
                "budget_remaining": [ratio|null, ...], "good": [n, ...], "bad": [n, ...],
                "burn_rates": {"5m": [rate|null, ...], ...}}, ...]}  # finest tier first

Each tier's points are oldest first; a point's time is that of the last evaluation
sampled into it (event time), its burn rates the highest sampled in its bucket, its
budget the last, its events those counted during it. `rows` are the SLO's own policy
rows with its factors (a `budget_consumed_ratio` row's factor for this SLO's period).
Unknown names and groups answer as `/v1/slos/{name}` does (404; a grouped SLO without
`group` 400). Like every route, it needs the bearer token when one is configured.
"""

from __future__ import annotations

import msgspec
from aiohttp import web

from engine.adapters.http.api import JSON_TYPE, PolicyRowView, SloApi, json_error
from engine.core.durations import format_duration
from engine.core.history import History

__all__ = ["HistoryApi", "HistoryView", "TierView"]


class TierView(msgspec.Struct, kw_only=True):
    resolution_s: int
    span_s: int
    t: list[float]
    budget_remaining: list[float | None]
    good: list[float]
    bad: list[float]
    burn_rates: dict[str, list[float | None]]


class HistoryView(msgspec.Struct, kw_only=True):
    slo: str
    group: str | None
    objective_ratio: float
    windows: list[str]
    windows_s: list[int]
    rows: list[PolicyRowView]
    bytes_per_slo: int
    tiers: list[TierView]


_encoder = msgspec.json.Encoder()


class HistoryApi:
    """Serves the history of the SLO columns `api` resolves."""

    def __init__(self, api: SloApi, history: History) -> None:
        self.api = api
        self.history = history
        self._labels = [format_duration(w) for w in history.windows_s]

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/v1/slos/{name}/history", self._get)

    def column(self, name: str, group: str | None) -> int | None:
        """The column of SLO `name` (of its `group` when grouped); None: none such."""
        i = self.api.column_of(name)
        if i is None:
            return None
        if self.api.evaluator.slos[i].group_by:
            return None if group is None else self.api.group_columns(name).get(group)
        return None if group is not None else i

    def view(self, name: str, group: str | None = None) -> HistoryView | None:
        column = self.column(name, group)
        if column is None:
            return None
        ev = self.api.evaluator
        slo = ev.slos[column]
        rows = [
            PolicyRowView(
                severity=row.severity,
                long=format_duration(row.long_s),
                short=format_duration(row.short_s),
                long_s=row.long_s,
                short_s=row.short_s,
                factor=float(ev.factor[column, r]),
            )
            for r, row in enumerate(ev.rows)
            if ev.row_mask[column, r]
        ]
        tiers = [
            TierView(
                resolution_s=s.resolution_s,
                span_s=s.span_s,
                t=s.t_s,
                budget_remaining=s.budget_remaining,
                good=s.good,
                bad=s.bad,
                burn_rates=dict(zip(self._labels, s.burn_rates, strict=True)),
            )
            for s in self.history.series(column)
        ]
        return HistoryView(
            slo=name,
            group=ev.group_of(column),
            objective_ratio=slo.objective_ratio,
            windows=list(self._labels),
            windows_s=list(self.history.windows_s),
            rows=rows,
            bytes_per_slo=self.history.bytes_per_slo,
            tiers=tiers,
        )

    async def _get(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        group = request.query.get("group")
        i = self.api.column_of(name)
        if i is not None and group is None and self.api.evaluator.slos[i].group_by:
            groups = ", ".join(sorted(self.api.group_columns(name)))
            return json_error(
                400, f"a grouped SLO: name one of its groups with ?group= ({groups})", slo=name
            )
        view = self.view(name, group)
        if view is None:
            what = "no SLO of that name" if i is None else "no group of that name"
            return json_error(404, what, slo=name)
        return web.Response(body=_encoder.encode(view), content_type=JSON_TYPE)
