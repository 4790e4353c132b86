"""Composite SLOs in the JSON API, /metrics and alert payloads: the same views and
series as any SLO, with no service of their own and their members' summed counts."""

from __future__ import annotations

import msgspec
import pytest

from engine.adapters.alerts.payloads import alert_annotations, alert_labels
from engine.adapters.http.api import SloApi
from engine.adapters.http.metrics import SloText
from engine.core.config import Config, parse_config
from tests.unit.adapters.http.api_sample import CONFIG, fed_evaluator
from tests.unit.adapters.http.test_metrics import k, samples

COMPOSITES = """\
  - name: checkout
    composite: [{slo: checkout-availability, weight: 3}, {slo: checkout-latency}]
    objective: 99
    runbook_url: https://runbooks.example/checkout-all
  - {name: search-all, composite: [{slo: search-availability}], objective: 99.9, period: 7d}
  - {name: idle-all, composite: [{slo: idle-availability, weight: 2}], objective: 99}
"""


def config() -> Config:
    head, sep, tail = CONFIG.partition("http:\n")
    return parse_config(head + COMPOSITES + sep + tail)


def test_the_api_shows_a_composite_with_its_members_and_derived_numbers() -> None:
    """checkout: availability 5/1000 bad, latency 10/1000 bad; weights 3:1 give an error
    ratio of (3 * 0.005 + 0.01) / 4 = 0.00625 (not bad / total: 15 / 2000)."""
    ev, _ = fed_evaluator(config())
    view = SloApi(ev).view("checkout")
    assert view is not None
    assert (view.service, view.operation, view.sli, view.threshold_ms) == (None,) * 4
    assert view.composite is not None
    assert [(m.slo, m.weight) for m in view.composite] == [
        ("checkout-availability", 3.0),
        ("checkout-latency", 1.0),
    ]
    for w in view.windows:
        assert (w.total, w.bad, w.good) == (2000, 15, 1985)
        assert w.error_ratio == pytest.approx(0.00625)
        assert w.burn_rate == pytest.approx(0.625)
    assert view.error_budget.remaining_ratio == pytest.approx(1 - 0.625)
    assert (view.events_total, view.bad_events_total) == (2000, 15)
    assert not any(a.firing for a in view.alerts.values())
    body = msgspec.json.decode(msgspec.json.encode(view))
    assert body["composite"] == [
        {"slo": "checkout-availability", "weight": 3.0},
        {"slo": "checkout-latency", "weight": 1.0},
    ]
    idle = SloApi(ev).view("idle-all")
    assert idle is not None
    assert all(w.error_ratio is None and w.burn_rate is None for w in idle.windows)
    assert idle.error_budget.remaining_ratio is None


def test_a_plain_slo_view_has_no_composite_key() -> None:
    ev, _ = fed_evaluator(config())
    body = msgspec.json.decode(SloApi(ev).list_body())
    by_name = {s["name"]: s for s in body["slos"]}
    assert "composite" not in by_name["checkout-availability"]
    assert by_name["checkout-availability"]["service"] == "checkout"
    assert [s["name"] for s in body["slos"]][-3:] == ["checkout", "search-all", "idle-all"]


def test_metrics_show_a_composite_under_the_usual_names() -> None:
    ev, _ = fed_evaluator(config())
    got = samples(SloText(ev).render())
    assert got[k("burnrate_slo_objective_ratio", slo="checkout")] == 0.99
    assert got[k("burnrate_slo_error_ratio", slo="checkout", window="1h")] == pytest.approx(0.00625)
    assert got[k("burnrate_slo_burn_rate", slo="checkout", window="5m")] == pytest.approx(0.625)
    assert got[k("burnrate_slo_events_total", slo="checkout")] == 2000
    assert got[k("burnrate_slo_bad_events_total", slo="checkout")] == 15
    assert got[k("burnrate_alert_firing", slo="search-all", severity="page")] == 1
    assert got[k("burnrate_alert_firing", slo="checkout", severity="page")] == 0
    idle = {name for name, labels in got if ("slo", "idle-all") in labels}
    assert idle == {  # no data: no ratio, burn rate or budget series
        "burnrate_slo_objective_ratio",
        "burnrate_slo_events_total",
        "burnrate_slo_bad_events_total",
        "burnrate_slo_excluded_events_total",
        "burnrate_alert_firing",
    }


def test_a_composite_alert_has_no_service_label_and_says_what_it_is_made_of() -> None:
    cfg = config()
    _, transitions = fed_evaluator(cfg)
    fired = [tr for tr in transitions if tr.slo == "search-all" and tr.severity == "page"]
    assert [tr.state for tr in fired] == ["firing"]
    slo = next(s for s in cfg.slos if s.name == "search-all")
    labels = alert_labels(fired[0], slo)
    assert "service" not in labels
    assert (labels["slo"], labels["severity"]) == ("search-all", "page")
    notes = alert_annotations(fired[0], slo)
    assert "(composite of search-availability)" in notes["summary"]
    assert "composite SLO search-all of search-availability (weight 1)" in notes["description"]
