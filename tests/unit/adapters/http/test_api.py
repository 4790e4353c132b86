"""The API's views, built without a server (the HTTP side is tests/integration/test_api.py)."""

from __future__ import annotations

import msgspec
import pytest

from engine.adapters.alerts.payloads import alert_labels
from engine.adapters.http.api import SloApi
from engine.core.config import parse_config
from engine.core.evaluator import Evaluator
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
