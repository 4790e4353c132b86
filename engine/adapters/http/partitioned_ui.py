"""The web UI of an evaluate worker: the list of the SLOs it owns, the page of each.

The pages, scripts, login and assets are the single process's (engine.adapters.http.ui);
only where the numbers come from differs. The list shows every owned SLO in config
order (the rows `/v1/summary` holds, engine.adapters.http.partitioned), with the
policies of their evaluators. A page about an SLO another worker owns redirects (307)
to the same page at that worker; while the owner is not known, and for a name no SLO
of the config has, it is 404. The page's sections read the routes of the evaluate role:
the gate, incidents, changes and corrections of the SLO's service are all kept by the
worker that owns the SLO.
"""

from __future__ import annotations

from aiohttp import web

from engine.adapters.http.api import SloApi
from engine.adapters.http.auth import BearerAuth
from engine.adapters.http.partitioned import PartitionedApi
from engine.adapters.http.partitions import ownership
from engine.adapters.http.summary import SummaryRow, summary_rows
from engine.adapters.http.ui import Ui, policy_tables

__all__ = ["PartitionedUi"]


class PartitionedUi(Ui):
    """`Ui` over the owned partitions. `Ui.__init__` (over one evaluator) is not called:
    `_listing` and `_api_of`, the only readers of its `api` and `summary`, are
    replaced here."""

    def __init__(self, api: PartitionedApi, auth: BearerAuth, refresh_s: float = 2.0) -> None:
        self.partitioned = api
        self._load(auth, refresh_s)
        self._owned: object = None
        self._policies_json, self._policy_of = policy_tables(())

    def _listing(self) -> tuple[list[str], list[SummaryRow]]:
        engines = self.partitioned.owned()
        owned = (ownership(engines), id(self.partitioned.partitions.config))
        if owned != self._owned:
            self._owned = owned
            self._policies_json, self._policy_of = policy_tables(
                engines[p] for p in sorted(engines)
            )
        columns = self.partitioned.summary_columns(engines)
        return columns["windows"], summary_rows(columns["slos"])

    def _api_of(self, request: web.Request, name: str) -> SloApi:
        ev = self.partitioned.partitions.evaluator_of(name)
        if ev is not None:
            return self.partitioned.views_of(ev)
        answer = self.partitioned.elsewhere(request, name)
        location = answer.headers.get("Location")
        if location is not None:
            raise web.HTTPTemporaryRedirect(location)
        raise web.HTTPNotFound(
            text=f"no SLO {name!r}"
            if name not in self.partitioned.config_position()
            else f"SLO {name!r} is evaluated by another worker, not known which now"
        )
