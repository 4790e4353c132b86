"""The API's views, built without a server (the HTTP side is tests/integration/test_api.py)."""

from __future__ import annotations

import pytest

from engine.adapters.alerts.payloads import alert_labels
from engine.adapters.http.api import SloApi
from engine.core.config import parse_config
from engine.runtime.delivery import firing_alerts
from tests.unit.adapters.http.api_sample import CONFIG, PERIOD_30D_S, fed_evaluator


def test_budget_window_is_the_shortest_long_window_without_1h() -> None:
    cfg = parse_config(
        CONFIG
        + "policy:\n"
        + "  - {severity: page, long: 2h, short: 10m, burn_rate: 10}\n"
        + "  - {severity: ticket, long: 1d, short: 2h, burn_rate: 2}\n"
    )
    ev, _ = fed_evaluator(cfg)
    api = SloApi(ev)
    view = api.view("checkout-availability")
    assert view is not None
    assert view.error_budget.burn_rate_window == "2h"
    assert view.error_budget.burn_rate == pytest.approx(0.5, rel=1e-12)
    assert api.view("nope") is None


def test_views_read_the_evaluator_without_changing_it() -> None:
    ev, _ = fed_evaluator(parse_config(CONFIG))
    before = (ev.window_sums().copy(), ev.alerts(), ev.counts())
    views = SloApi(ev).views()
    assert [v.name for v in views] == ev.names
    assert (ev.window_sums() == before[0]).all()
    assert (ev.alerts().firing == before[1].firing).all()
    assert (ev.counts().events_total == before[2].events_total).all()


def test_the_budget_view_uses_the_shared_time_to_exhaustion() -> None:
    ev, _ = fed_evaluator(parse_config(CONFIG))
    view = SloApi(ev).view("checkout-availability")
    assert view is not None
    # half the budget left, burning half a budget per period: one more period
    assert view.error_budget.time_to_exhaustion_s == pytest.approx(PERIOD_30D_S, rel=1e-12)


SEARCH_OWN_POLICY = CONFIG.replace(
    "    period: 7d\n",
    "    period: 7d\n"
    "    policy:\n"
    "      - {severity: page, long: 30m, short: 1m, burn_rate: 100}\n"
    "      - {severity: page, long: 1h, short: 5m, budget_consumed_ratio: 0.02}\n",
)
"""search-availability pages on its own rows and has no ticket rows; the other SLOs keep
the default policy."""


def test_an_slo_with_its_own_policy_shows_its_own_row_and_never_its_missing_tier() -> None:
    cfg = parse_config(SEARCH_OWN_POLICY)
    ev, transitions = fed_evaluator(cfg)
    view = SloApi(ev).view("search-availability")
    assert view is not None
    page, ticket = view.alerts["page"], view.alerts["ticket"]
    assert page.firing
    assert page.row is not None
    assert (page.row.long, page.row.short, page.row.factor) == ("30m", "1m", 100.0)
    assert not ticket.firing  # 1000x over a 7d period would open the default ticket
    [fired] = [tr for tr in transitions if tr.slo == "search-availability"]
    assert (fired.severity, fired.long_window_s, fired.short_window_s) == ("page", 1800, 60)
    assert fired.factor == 100.0
    search = cfg.slos[2]
    labels = alert_labels(fired, search)
    assert (labels["long_window"], labels["short_window"]) == ("30m", "1m")
    # the announcement of a firing alert after a restart names the same row
    announced = [tr for tr in firing_alerts(ev) if tr.slo == "search-availability"]
    assert announced == [fired]


def test_the_same_sample_under_the_default_policy_opens_the_ticket() -> None:
    """The counterpart of the test above: only the SLO's own policy keeps it quiet."""
    ev, _ = fed_evaluator(parse_config(CONFIG))
    view = SloApi(ev).view("search-availability")
    assert view is not None
    assert view.alerts["ticket"].firing
    assert view.alerts["page"].row is not None
    assert (view.alerts["page"].row.long, view.alerts["page"].row.short) == ("1h", "5m")
