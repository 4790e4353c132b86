"""The dashboard of one SLO: a burn-rate panel per policy row it is evaluated with
(the long and short window against the row's factor as a threshold line; the alert
fires while both are at or above it), budget left, time to exhaustion, events and
alert state."""

from __future__ import annotations

import hashlib

from grafana_foundation_sdk.builders import common as common_b
from grafana_foundation_sdk.builders import dashboard as dash_b
from grafana_foundation_sdk.builders import stat as stat_b
from grafana_foundation_sdk.builders import timeseries as series_b
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as dash

from engine.adapters.grafana.parts import (
    BUDGET_STEPS,
    LEGEND_SLO,
    OVERVIEW_UID,
    REFRESH,
    TAGS,
    alert_state,
    changes,
    query,
    steps,
    table_legend,
)
from engine.adapters.grafana.promql import RATE_INTERVAL, quote, service_selector, services_of
from engine.core.config import Config
from engine.core.config_model import Slo
from engine.core.durations import format_duration

__all__ = ["slo_dashboard", "slo_uid"]

UID_MAX = 40
"""Grafana's limit on a dashboard uid."""


def slo_uid(name: str) -> str:
    """The SLO dashboard's uid: `burnrate-slo-NAME`; for a name with a `.` (not allowed
    in a uid) or past Grafana's 40 characters, a prefix of it with `_` for `.` and a hash
    of the whole name, so uids stay distinct and stable."""
    uid = f"burnrate-slo-{name}"
    if len(uid) <= UID_MAX and "." not in name:
        return uid
    digest = hashlib.sha256(name.encode()).hexdigest()[:10]
    return f"{uid.replace('.', '_')[: UID_MAX - 11]}-{digest}"


def slo_dashboard(config: Config, slo: Slo, ds: dash.DataSourceRef) -> dash.Dashboard:
    sel = f"slo={quote(slo.name)}"
    rows = config.policy_of(slo)
    severities = sorted({r.severity for r in rows})
    services = [svc for svc, names in services_of(config).items() if slo.name in names]
    what = slo.description or (
        f"{slo.sli} of {slo.service}"
        if slo.service
        else "composite of " + ", ".join(m.slo for m in slo.composite or ())
    )
    board = (
        dash_b.Dashboard(f"Burnrate SLO: {slo.name}")
        .uid(slo_uid(slo.name))
        .description(f"{what}; objective {slo.objective:g}%")
        .tags([*TAGS, *(f"service:{s}" for s in services)])
        .editable()
        .refresh(REFRESH)
        .time("now-24h", "now")
        .timezone("browser")
        .tooltip(dash.DashboardCursorSync.CROSSHAIR)
        .link(
            dash_b.DashboardLink("Overview")
            .type(dash.DashboardLinkType.LINK)
            .url(f"/d/{OVERVIEW_UID}")
            .keep_time(True)
            .icon("dashboard")
        )
    )
    if slo.runbook_url:
        board = board.link(
            dash_b.DashboardLink("Runbook")
            .type(dash.DashboardLinkType.LINK)
            .url(slo.runbook_url)
            .target_blank(True)
            .icon("doc")
        )
    if services:
        board = board.annotation(changes(ds, service_selector(services)))
    board = (
        board.with_panel(
            stat_b.Panel()
            .title("Objective")
            .with_target(
                query(ds, "A", f"burnrate_slo_objective_ratio{{{sel}}}", LEGEND_SLO, instant=True)
            )
            .unit("percentunit")
            .decimals(3)
            .graph_mode(common.BigValueGraphMode.NONE)
            .height(5)
            .span(6)
        )
        .with_panel(
            stat_b.Panel()
            .title("Error budget remaining")
            .with_target(
                query(ds, "A", f"burnrate_slo_error_budget_remaining_ratio{{{sel}}}", LEGEND_SLO)
            )
            .unit("percentunit")
            .decimals(1)
            .thresholds(steps(*BUDGET_STEPS))
            .color_mode(common.BigValueColorMode.BACKGROUND)
            .graph_mode(common.BigValueGraphMode.AREA)
            .height(5)
            .span(6)
        )
        .with_panel(
            stat_b.Panel()
            .title("Budget exhausted in")
            .description("At the current burn rate; 0 once spent, no value while nothing burns")
            .with_target(
                query(
                    ds,
                    "A",
                    f"burnrate_slo_error_budget_exhaustion_seconds{{{sel}}}",
                    LEGEND_SLO,
                    instant=True,
                )
            )
            .unit("s")
            .no_value("not burning")
            .thresholds(steps((None, "red"), (86400.0, "orange"), (7 * 86400.0, "green")))
            .color_mode(common.BigValueColorMode.VALUE)
            .graph_mode(common.BigValueGraphMode.NONE)
            .height(5)
            .span(6)
        )
        .with_panel(alert_state(ds, config, [slo], sel, "{{group}} ", severities).height(5).span(6))
    )
    for row in rows:
        factor = row.factor_for(slo.period_s)
        long_w, short_w = format_duration(row.long_s), format_duration(row.short_s)
        board = board.with_panel(
            series_b.Panel()
            .title(f"Burn rate, {row.severity} {long_w} / {short_w} (threshold {factor:g})")
            .description(
                f"The {row.severity} fires while both the {long_w} and the {short_w} "
                f"window burn at or above {factor:g}"
            )
            .with_target(
                query(
                    ds,
                    "A",
                    f'burnrate_slo_burn_rate{{{sel},window="{long_w}"}}',
                    f"{{{{group}}}} {long_w}",
                )
            )
            .with_target(
                query(
                    ds,
                    "B",
                    f'burnrate_slo_burn_rate{{{sel},window="{short_w}"}}',
                    f"{{{{group}}}} {short_w}",
                )
            )
            .min(0)
            .thresholds(steps((None, "green"), (factor, "red")))
            .thresholds_style(
                common_b.GraphThresholdsStyleConfig().mode(common.GraphThresholdsStyleMode.LINE)
            )
            .legend(table_legend())
            .fill_opacity(10)
            .height(8)
            .span(12)
        )
    board = board.with_panel(
        series_b.Panel()
        .title("Error budget remaining")
        .with_target(
            query(ds, "A", f"burnrate_slo_error_budget_remaining_ratio{{{sel}}}", "{{group}}")
        )
        .unit("percentunit")
        .thresholds(steps(*BUDGET_STEPS))
        .thresholds_style(
            common_b.GraphThresholdsStyleConfig().mode(common.GraphThresholdsStyleMode.DASHED)
        )
        .legend(table_legend())
        .fill_opacity(10)
        .height(8)
        .span(12)
    ).with_panel(
        series_b.Panel()
        .title("Events per second")
        .with_target(
            query(
                ds,
                "A",
                f"sum by (group) (rate(burnrate_slo_events_total{{{sel}}}[{RATE_INTERVAL}]))",
                "{{group}} all",
            )
        )
        .with_target(
            query(
                ds,
                "B",
                f"sum by (group) (rate(burnrate_slo_bad_events_total{{{sel}}}[{RATE_INTERVAL}]))",
                "{{group}} bad",
            )
        )
        .unit("reqps")
        .min(0)
        .legend(table_legend())
        .fill_opacity(10)
        .height(8)
        .span(12)
    )
    return board.build()
