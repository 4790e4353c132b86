"""`/v1/summary`: the SLO list in the few numbers a list shows, cheap enough to poll.

`/v1/slos` builds a full view per SLO (windows with their counts, alerts with their
rows, calendar periods...): at 10,000 SLOs that is a second of CPU per evaluation, too
much for a page polling it. The web UI's list polls this instead, built from the
evaluator's arrays in whole-array operations and encoded at most once per evaluation
(`generation`), like `/v1/slos` and `/metrics`:

    {"evaluated_at": epoch_s|null,
     "windows": ["5m", ...],              # the policy rows' windows, shortest first
     "slos": {"name": [...], "group": [str|null, ...], "service": [str|null, ...],
              "objective": [percent, ...], "budget_remaining_ratio": [ratio|null, ...],
              "time_to_exhaustion_s": [s|null, ...],
              "burn_rates": [[rate|null per SLO], ...],   # one list per window
              "firing": {"page": [3, 17], "ErrorBudgetExhausted": [3], ...}}}

Columns rather than objects: the same numbers in a fraction of the bytes and time. An
SLO's position is the same in every column; `firing` gives, per alert firing
anywhere, the positions of the SLOs where it fires.

The numbers are those of `/v1/slos` (the same read methods; time to exhaustion by
`engine.core.budget.times_to_exhaustion_s`, bit-identical to the scalar one the views
use), burn rates rounded to 4 decimals and times to exhaustion to whole seconds;
firing alerts are severities (`page`) then budget alert names (`ErrorBudgetExhausted`).
Like every route, it needs the bearer token when one is configured.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec
import numpy as np
import numpy.typing as npt
from aiohttp import web

from engine.adapters.http.api import JSON_TYPE
from engine.core.budget import times_to_exhaustion_s
from engine.core.budget_alerts import ALERTNAMES
from engine.core.durations import format_duration
from engine.core.evaluator import Evaluator
from engine.core.governance import exhaustion_window_s
from engine.core.history import policy_windows_s

__all__ = ["SummaryApi", "SummaryRow", "summary_rows"]

SummaryRow = tuple[
    str, str | None, str | None, float, float | None, float | None, list[float | None], list[str]
]


_encoder = msgspec.json.Encoder()  # NaN and infinities are encoded as null


class SummaryApi:
    """Builds the summary rows from an evaluator and serves them."""

    def __init__(self, evaluator: Evaluator, generation: Callable[[], int] | None = None) -> None:
        self.generation = generation
        self.use(evaluator)

    def use(self, evaluator: Evaluator) -> None:
        """Serve `evaluator` from now on (a config reload swaps it)."""
        ev = evaluator
        self.evaluator = ev
        windows_s = policy_windows_s(ev)
        self.windows = [format_duration(w) for w in windows_s]
        self._window_rows = np.array([ev.window_index(w) for w in windows_s], dtype=int)
        self._budget_w = ev.window_index(exhaustion_window_s(ev))
        self._period_s = np.array([s.period_s for s in ev.slos], dtype=np.float64)
        self._cached: tuple[int, bytes] | None = None
        self._static: tuple[npt.NDArray[np.intp], dict[str, list[Any]]] | None = None

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/v1/summary", self._get)

    def columns(self) -> dict[str, Any]:
        """The list's numbers by column, for SLO columns in use in column order (as
        `/v1/slos` lists them); NaN where there is no data (encoded as null)."""
        ev = self.evaluator
        idx = np.flatnonzero(ev.column_in_use())
        if self._static is None or not np.array_equal(self._static[0], idx):
            slos = [ev.slos[i] for i in idx.tolist()]
            static: dict[str, list[Any]] = {
                "name": [s.name for s in slos],
                "group": [ev.group_of(i) for i in idx.tolist()],
                "service": [s.service for s in slos],
                "objective": [s.objective for s in slos],
            }
            self._static = (idx, static)
        static = self._static[1]
        burns = ev.burn_rates()
        remaining = ev.budget_remaining()[idx]
        tte = times_to_exhaustion_s(remaining, burns[self._budget_w, idx], self._period_s[idx])
        firing: dict[str, list[int]] = {}
        for j, sev in enumerate(ev.severities):
            at = np.flatnonzero(ev.alerts().firing[idx, j])
            if len(at):
                firing[sev] = at.tolist()
        b_firing = ev.budget_alerts().firing[idx]
        for a, col in enumerate(ev.budget_alert_columns):
            at = np.flatnonzero(b_firing[:, a])
            if len(at):
                firing.setdefault(ALERTNAMES[col.kind], []).extend(at.tolist())
        return {
            **static,
            "budget_remaining_ratio": remaining.tolist(),
            # to the second and to 1e-4: what a list shows, in a third of the bytes
            "time_to_exhaustion_s": np.round(tte).tolist(),
            "burn_rates": np.round(burns[self._window_rows][:, idx], 4).tolist(),
            "firing": firing,
        }

    def rows(self) -> list[SummaryRow]:
        """The columns as one row per SLO (the list page's server-side render)."""
        return summary_rows(self.columns())

    def body(self) -> bytes:
        gen = None if self.generation is None else self.generation()
        if gen is not None and self._cached is not None and self._cached[0] == gen:
            return self._cached[1]
        doc = {
            "evaluated_at": self.evaluator.evaluated_at_s,
            "windows": self.windows,
            "slos": self.columns(),
        }
        body = _encoder.encode(doc)
        if gen is not None:
            self._cached = (gen, body)
        return body

    async def _get(self, request: web.Request) -> web.Response:
        return web.Response(body=self.body(), content_type=JSON_TYPE)


def summary_rows(c: dict[str, Any]) -> list[SummaryRow]:
    """`SummaryApi.columns` (or several partitions' merged) as one row per SLO."""
    burns = list(zip(*c["burn_rates"], strict=True)) or [() for _ in c["name"]]
    firing: dict[int, list[str]] = {}
    for alert, positions in c["firing"].items():
        for k in positions:
            firing.setdefault(k, []).append(alert)
    return [
        (
            name,
            group,
            service,
            objective,
            None if b != b else b,
            None if t != t else t,
            [None if x != x else x for x in burn],
            firing.get(k, []),
        )
        for k, (name, group, service, objective, b, t, burn) in enumerate(
            zip(
                c["name"],
                c["group"],
                c["service"],
                c["objective"],
                c["budget_remaining_ratio"],
                c["time_to_exhaustion_s"],
                burns,
                strict=True,
            )
        )
    ]
