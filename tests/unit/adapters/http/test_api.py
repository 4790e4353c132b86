"""The API's views, built without a server (the HTTP side is tests/integration/test_api.py)."""

from __future__ import annotations

import msgspec
import pytest

from engine.adapters.http.api import SloApi
from engine.core.config import parse_config
from engine.core.evaluator import Evaluator
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


CALENDAR_CONFIG = CONFIG.replace(
    "    objective: 99\n    description",
    "    objective: 99\n    period: {calendar: month, time_zone: Europe/Berlin}\n    description",
)
NOV_2023_BERLIN = (1698793200, 1701385200)
"""T0 is 2023-11-14T23:13:20+01:00: November in Berlin is 2023-10-31T23:00Z to
2023-11-30T23:00Z."""


def test_a_calendar_slo_shows_its_period_and_the_budget_over_it_to_date() -> None:
    ev, _ = fed_evaluator(parse_config(CALENDAR_CONFIG))
    api = SloApi(ev)
    view = api.view("checkout-availability")
    assert view is not None
    assert view.calendar_period is not None
    body = msgspec.json.decode(msgspec.json.encode(view))
    assert body["calendar_period"] == {
        "calendar": "month",
        "time_zone": "Europe/Berlin",
        "start": "2023-11-01T00:00:00+01:00",
        "start_s": NOV_2023_BERLIN[0],
        "end": "2023-12-01T00:00:00+01:00",
        "end_s": NOV_2023_BERLIN[1],
        "good": 995,
        "bad": 5,
        "total": 1000,
    }
    # 5 of 1000 failed against a 1% budget: half of it left, as over the rolling 30 days
    assert view.error_budget.remaining_ratio == pytest.approx(0.5, rel=1e-12)
    assert (view.period, view.period_s) == ("30d", PERIOD_30D_S)  # the nominal length
    rolling = api.view("checkout-latency")
    assert rolling is not None
    assert rolling.calendar_period is None
    assert msgspec.json.decode(api.list_body())["slos"][0] == body


def test_a_calendar_period_before_any_event_is_known_by_name_only() -> None:
    api = SloApi(Evaluator(parse_config(CALENDAR_CONFIG)))
    view = api.view("checkout-availability")
    assert view is not None
    assert view.calendar_period is not None
    assert view.calendar_period.start is None
    assert view.calendar_period.end_s is None
    assert view.calendar_period.total == 0
    assert view.error_budget.remaining_ratio is None
