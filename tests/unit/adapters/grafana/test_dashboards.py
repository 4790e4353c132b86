"""The dashboards against grafana-foundation-sdk's own types, and what they show from a
config: the policy rows' factors as thresholds, a service per variable option."""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import pytest
from grafana_foundation_sdk.cog import plugins
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.cog.runtime import UnknownDataquery
from grafana_foundation_sdk.models import dashboard as dash
from grafana_foundation_sdk.models import prometheus, stat, statetimeline, timeseries

from engine.adapters.grafana.dashboards import (
    ANNOTATION_DISPLAY,
    OVERVIEW_FILE,
    build_dashboards,
    encode,
    slo_file,
    slo_uid,
)
from engine.core.config import Config, parse_config
from engine.errors import ConfigError
from tests.unit.adapters.grafana.panels import expansions, queries, variable_values

CONFIG = """
slos:
  - {name: checkout-availability, service: checkout, sli: availability, objective: 99.9}
  - name: checkout-latency
    service: checkout
    sli: latency
    threshold_ms: 300
    objective: 99
    period: 28d
    policy:
      - {severity: ticket, long: 2h, short: 10m, burn_rate: 4.5}
  - {name: pay.api-availability, service: pay, sli: availability, objective: 99.5,
     runbook_url: "https://runbooks.example/pay"}
  - name: journey
    composite: [{slo: checkout-availability}, {slo: pay.api-availability}]
    objective: 99
policy:
  - {severity: page, long: 1h, short: 5m, budget_consumed_ratio: 0.02}
  - {severity: page, long: 6h, short: 30m, burn_rate: 6}
  - {severity: ticket, long: 1d, short: 2h, budget_consumed_ratio: 0.10}
"""

PANEL_OPTIONS = {
    "timeseries": timeseries.Options,
    "stat": stat.Options,
    "state-timeline": statetimeline.Options,
}


@pytest.fixture(scope="module")
def config() -> Config:
    return parse_config(CONFIG)


@pytest.fixture(scope="module")
def boards(config: Config) -> dict[str, dict[str, Any]]:
    return {name: encode(b) for name, b in build_dashboards(config, "prom-uid").items()}


def without_display(board: dict[str, Any]) -> dict[str, Any]:
    """The JSON less the annotation display keys the SDK's model has no field for."""
    out = copy.deepcopy(board)
    for annotation in out.get("annotations", {}).get("list", []):
        for key in ANNOTATION_DISPLAY:
            annotation.pop(key, None)
    return out


def test_every_dashboard_reads_back_through_the_sdk_types_unchanged(
    boards: dict[str, dict[str, Any]],
) -> None:
    """Decoding with the SDK's `from_json` (panel options and queries by their plugin's
    types) and encoding again gives the same JSON: nothing is outside its types, apart
    from the documented annotation display keys."""
    plugins.register_default_plugins()
    for name, board in boards.items():
        plain = without_display(board)
        model = dash.Dashboard.from_json(copy.deepcopy(plain))
        assert json.loads(json.dumps(model, cls=JSONEncoder)) == plain, name
        assert model.panels
        for panel in model.panels:
            assert isinstance(panel, dash.Panel), (name, panel)
            assert isinstance(panel.options, PANEL_OPTIONS[panel.type_val]), (name, panel.title)
            assert panel.targets
            for target in panel.targets:
                assert not isinstance(target, UnknownDataquery), (name, panel.title)
                assert isinstance(target, prometheus.Dataquery)
                assert target.datasource is not None
                assert (target.datasource.type_val, target.datasource.uid) == (
                    "prometheus",
                    "prom-uid",
                )
        for annotation in board["annotations"]["list"]:
            assert annotation["datasource"] == {"type": "prometheus", "uid": "prom-uid"}
            assert set(ANNOTATION_DISPLAY) <= set(annotation)


def test_one_file_per_dashboard_with_distinct_valid_uids(
    config: Config, boards: dict[str, dict[str, Any]]
) -> None:
    assert list(boards) == [OVERVIEW_FILE, *(slo_file(s.name) for s in config.slos)]
    uids = [b["uid"] for b in boards.values()]
    assert len(set(uids)) == len(uids)
    for uid in uids:
        assert re.fullmatch(r"[A-Za-z0-9_-]{1,40}", uid), uid


def test_long_slo_names_get_distinct_uids_within_grafanas_limit() -> None:
    a, b = "x" * 60 + "-a", "x" * 60 + "-b"
    assert slo_uid(a) != slo_uid(b)
    assert len(slo_uid(a)) == len(slo_uid(b)) == 40
    assert slo_uid("short") == "burnrate-slo-short"
    assert slo_uid("a.b") != slo_uid("a_b")
    assert re.fullmatch(r"burnrate-slo-a_b-[0-9a-f]{10}", slo_uid("a.b"))


def burn_panels(board: dict[str, Any]) -> dict[tuple[str, str], float]:
    """(long, short) window -> the threshold line of each burn-rate panel."""
    out = {}
    for panel in board["panels"]:
        exprs = [t["expr"] for t in panel["targets"]]
        if not exprs[0].startswith("burnrate_slo_burn_rate"):
            continue
        windows = tuple(re.search(r'window="(\w+)"', e).group(1) for e in exprs)  # type: ignore[union-attr]
        custom = panel["fieldConfig"]["defaults"]["custom"]
        assert custom["thresholdsStyle"]["mode"] == "line"
        steps = panel["fieldConfig"]["defaults"]["thresholds"]["steps"]
        assert steps[0]["value"] is None
        (threshold,) = [s["value"] for s in steps[1:]]
        out[windows] = threshold
    return out


def test_burn_panels_draw_each_policy_row_the_slo_has_at_its_factor(
    boards: dict[str, dict[str, Any]],
) -> None:
    # 30 days: 2% of the budget in 1h is 14.4, 10% in 1d is 3; 6 is given as is
    assert burn_panels(boards[slo_file("checkout-availability")]) == {
        ("1h", "5m"): pytest.approx(14.4),
        ("6h", "30m"): 6.0,
        ("1d", "2h"): pytest.approx(3.0),
    }
    # its own policy replaces the top-level one, whatever its period
    assert burn_panels(boards[slo_file("checkout-latency")]) == {("2h", "10m"): 4.5}


def test_budget_consumed_factors_follow_the_slo_period() -> None:
    cfg = parse_config(
        "slos:\n  - {name: a, service: s, sli: availability, objective: 99, period: 28d}\n"
        "policy:\n  - {severity: page, long: 1h, short: 5m, budget_consumed_ratio: 0.02}\n"
    )
    board = encode(build_dashboards(cfg, "p")[slo_file("a")])
    assert burn_panels(board) == {("1h", "5m"): pytest.approx(0.02 * 28 * 24)}


def test_alert_state_shows_the_severities_of_the_slos_own_rows(
    boards: dict[str, dict[str, Any]],
) -> None:
    exprs = [q.expr for q in queries({"x": boards[slo_file("checkout-latency")]})]
    assert 'burnrate_alert_firing{slo="checkout-latency",severity=~"ticket"}' in exprs
    exprs = [q.expr for q in queries({"x": boards[slo_file("journey")]})]
    assert 'burnrate_alert_firing{slo="journey",severity=~"page|ticket"}' in exprs


def test_alert_state_adds_the_budget_alerts_and_escalations_the_slo_has() -> None:
    cfg = parse_config(
        "slos:\n"
        "  - {name: a, service: s, sli: availability, objective: 99}\n"
        "  - {name: b, service: s, sli: availability, objective: 99, budget_policy: []}\n"
        "budget_alerts: {}\n"
        "budget_policy: [{budget_remaining_at_most: 0, decision: fail, escalate: [x]}]\n"
        "receivers: [{type: console, name: x}]\n"
    )
    built = {name: encode(b) for name, b in build_dashboards(cfg, "p").items()}

    def alert_exprs(name: str) -> list[str]:
        (panel,) = [p for p in built[name]["panels"] if p["title"] == "Alert state"]
        return [t["expr"] for t in panel["targets"]]

    assert alert_exprs(slo_file("a")) == [
        'burnrate_alert_firing{slo="a",severity=~"page|ticket"}',
        'burnrate_budget_alert_firing{slo="a"}',
        'burnrate_escalation_firing{slo="a"}',
    ]
    assert alert_exprs(slo_file("b")) == [
        'burnrate_alert_firing{slo="b",severity=~"page|ticket"}',
        'burnrate_budget_alert_firing{slo="b"}',
    ]
    assert len(alert_exprs(OVERVIEW_FILE)) == 3
    plain = encode(build_dashboards(parse_config(CONFIG), "p")[slo_file("journey")])
    (panel,) = [p for p in plain["panels"] if p["title"] == "Alert state"]
    assert len(panel["targets"]) == 1


def test_the_service_variable_selects_exactly_the_slos_of_the_chosen_services(
    config: Config, boards: dict[str, dict[str, Any]]
) -> None:
    """Each option's value, put in `slo=~"..."` (a fully anchored RE2 regex), matches
    the service's SLOs and no other, a `.` only itself; the composite is under every
    service of its members."""
    overview = boards[OVERVIEW_FILE]
    (var,) = [v for v in overview["templating"]["list"] if v["name"] == "service"]
    options = {o["text"]: o["value"] for o in var["options"]}
    assert options.pop("All") == "$__all"
    assert var["allValue"] == ".+"
    names = [s.name for s in config.slos] + ["payxapi-availability"]
    want = {
        "checkout": {"checkout-availability", "checkout-latency", "journey"},
        "pay": {"pay.api-availability", "journey"},
    }
    got = {svc: {n for n in names if re.fullmatch(f"(?:{v})", n)} for svc, v in options.items()}
    assert got == want
    # several services: Grafana joins the values with `|` (${service:pipe})
    both = "|".join(options.values())
    assert {n for n in names if re.fullmatch(f"(?:{both})", n)} == set(want["checkout"]) | set(
        want["pay"]
    )
    # the text:value query Grafana reads the options from says the same
    assert var["query"] == ",".join(f"{k} : {v}" for k, v in options.items())


def test_every_overview_query_is_expanded_by_its_variables(
    boards: dict[str, dict[str, Any]],
) -> None:
    overview = boards[OVERVIEW_FILE]
    windows = variable_values(overview)["window"]
    assert windows == ["5m", "10m", "30m", "1h", "2h", "6h", "1d", "28d", "30d"]
    (current,) = [v["current"] for v in overview["templating"]["list"] if v["name"] == "window"]
    assert current["value"] == "1h"  # the fastest page's long window
    for q in queries({OVERVIEW_FILE: overview}):
        for expr in expansions(overview, q.expr):
            assert "$" not in expr, expr


def test_change_annotations_select_the_services_concerned(
    boards: dict[str, dict[str, Any]],
) -> None:
    def annotation(name: str) -> str:
        (a,) = boards[name]["annotations"]["list"]
        assert a["name"] == "Changes"
        return str(a["expr"])

    assert 'burnrate_changes_total{service="checkout"}' in annotation(slo_file("checkout-latency"))
    assert 'burnrate_changes_total{service=~"checkout|pay"}' in annotation(slo_file("journey"))
    assert "burnrate_changes_total - burnrate_changes_total offset 1m" in annotation(OVERVIEW_FILE)


def test_a_service_name_grafana_cannot_offer_is_a_config_error() -> None:
    cfg = parse_config("slos:\n  - {name: a, service: 'x, y', sli: availability, objective: 99}\n")
    with pytest.raises(ConfigError) as err:
        build_dashboards(cfg, "p")
    assert err.value.errors[0].startswith("$.slos[0].service: 'x, y' cannot be")
