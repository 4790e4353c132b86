"""The overview dashboard: every SLO's budget left, burn rate over the `window`
variable, alert state and traffic, for the services the `service` variable picks
(engine.adapters.grafana.promql says how a service selects SLOs)."""

from __future__ import annotations

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
from engine.adapters.grafana.promql import (
    ALL_SLOS,
    RATE_INTERVAL,
    SERVICE_MATCH,
    SERVICE_VAR,
    WINDOW_VAR,
    services_of,
    slo_pattern,
)
from engine.core.config import Config
from engine.core.durations import format_duration

__all__ = ["overview"]


def _window_options(config: Config) -> tuple[list[str], str]:
    """The windows the engine exports and the one shown first: the long window of the
    first page row (the fastest page), else of the first row."""
    windows = [format_duration(w) for w in config.windows_s()]
    rows = config.policy_rows()
    first = next((r for r in rows if r.severity == "page"), rows[0])
    return windows, format_duration(first.long_s)


def overview(config: Config, ds: dash.DataSourceRef) -> dash.Dashboard:
    services = services_of(config)
    options = [
        dash.VariableOption(selected=True, text="All", value="$__all"),
        *(
            dash.VariableOption(selected=False, text=svc, value=slo_pattern(names))
            for svc, names in services.items()
        ),
    ]
    service_var = (
        dash_b.CustomVariable(SERVICE_VAR)
        .label("Service")
        .description("The services whose SLOs are shown")
        .values(",".join(f"{svc} : {slo_pattern(names)}" for svc, names in services.items()))
        .multi(True)
        .include_all(True)
        .all_value(ALL_SLOS)
        .current(dash.VariableOption(selected=True, text=["All"], value=["$__all"]))
        .options(options)
    )
    windows, first = _window_options(config)
    window_var = (
        dash_b.CustomVariable(WINDOW_VAR)
        .label("Burn-rate window")
        .description("The window the burn rates are over (every window the engine keeps)")
        .values(",".join(windows))
        .current(dash.VariableOption(selected=True, text=first, value=first))
        .options([dash.VariableOption(selected=w == first, text=w, value=w) for w in windows])
    )
    sel = SERVICE_MATCH
    board = (
        dash_b.Dashboard("Burnrate: SLO overview")
        .uid(OVERVIEW_UID)
        .description("Every SLO's error budget, burn rate and alerts, from burnrate's /metrics")
        .tags(TAGS)
        .editable()
        .refresh(REFRESH)
        .time("now-6h", "now")
        .timezone("browser")
        .tooltip(dash.DashboardCursorSync.CROSSHAIR)
        .with_variable(service_var)
        .with_variable(window_var)
        .annotation(changes(ds, ""))
        .link(
            dash_b.DashboardLink("SLOs")
            .type(dash.DashboardLinkType.DASHBOARDS)
            .tags(TAGS)
            .as_dropdown(True)
            .include_vars(False)
            .keep_time(True)
        )
        .with_panel(
            stat_b.Panel()
            .title("Error budget remaining")
            .description("Share of each SLO's error budget left over its period")
            .with_target(
                query(
                    ds,
                    "A",
                    f"burnrate_slo_error_budget_remaining_ratio{{{sel}}}",
                    LEGEND_SLO,
                    instant=True,
                )
            )
            .unit("percentunit")
            .decimals(1)
            .thresholds(steps(*BUDGET_STEPS))
            .color_mode(common.BigValueColorMode.BACKGROUND)
            .graph_mode(common.BigValueGraphMode.NONE)
            .text_mode(common.BigValueTextMode.VALUE_AND_NAME)
            .reduce_options(common_b.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
            .height(6)
            .span(24)
        )
        .with_panel(
            series_b.Panel()
            .title(f"Burn rate over ${WINDOW_VAR}")
            .description(
                "Error ratio / error budget in the window: 1 spends the budget exactly "
                "over the period"
            )
            .with_target(
                query(
                    ds,
                    "A",
                    f'burnrate_slo_burn_rate{{{sel},window="${WINDOW_VAR}"}}',
                    LEGEND_SLO,
                )
            )
            .min(0)
            .legend(table_legend())
            .fill_opacity(10)
            .height(9)
            .span(12)
        )
        .with_panel(
            series_b.Panel()
            .title("Error budget remaining")
            .with_target(
                query(
                    ds,
                    "A",
                    f"burnrate_slo_error_budget_remaining_ratio{{{sel}}}",
                    LEGEND_SLO,
                )
            )
            .unit("percentunit")
            .thresholds(steps(*BUDGET_STEPS))
            .thresholds_style(
                common_b.GraphThresholdsStyleConfig().mode(common.GraphThresholdsStyleMode.DASHED)
            )
            .legend(table_legend())
            .fill_opacity(10)
            .height(9)
            .span(12)
        )
        .with_panel(
            alert_state(ds, config, config.slos, sel, "{{slo}} {{group}} ").height(9).span(12)
        )
        .with_panel(
            series_b.Panel()
            .title("Events per second")
            .with_target(
                query(
                    ds,
                    "A",
                    "sum by (slo, group) "
                    f"(rate(burnrate_slo_events_total{{{sel}}}[{RATE_INTERVAL}]))",
                    "{{slo}} {{group}} all",
                )
            )
            .with_target(
                query(
                    ds,
                    "B",
                    "sum by (slo, group) "
                    f"(rate(burnrate_slo_bad_events_total{{{sel}}}[{RATE_INTERVAL}]))",
                    "{{slo}} {{group}} bad",
                )
            )
            .unit("reqps")
            .min(0)
            .legend(table_legend())
            .fill_opacity(10)
            .height(9)
            .span(12)
        )
    )
    return board.build()
