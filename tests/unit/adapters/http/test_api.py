"""The API's views, built without a server (the HTTP side is tests/integration/test_api.py)."""

from __future__ import annotations

import pytest

from engine.adapters.http.api import SloApi
from engine.core.config import parse_config
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
