"""Grafana dashboards of a config's SLOs, built with `grafana-foundation-sdk`.

Two kinds, one file each:

- the overview (`burnrate-overview.json`): every SLO's error budget left, burn rate
  over a window picked with the `window` variable, alert state and traffic, filtered
  by the `service` variable (engine.adapters.grafana.promql says how a service selects
  SLOs when the series carry only `slo`), and links to each SLO's dashboard;
- one per SLO (`burnrate-slo-NAME.json`): a burn-rate panel per policy row the SLO is
  evaluated with, its long and short window against the row's factor drawn as a
  threshold line (the alert fires while both are at or above it), the budget left,
  time to exhaustion, events and bad events per second and the alert state per
  severity.

Both mark the changes (`burnrate_changes_total`) of the services concerned as
annotations. The panels read one Prometheus data source by uid (`--datasource-uid`).

The SDK's annotation model (Grafana 11.6) has no fields for how a Prometheus
annotation's title and tags are drawn from its series' labels; `ANNOTATION_DISPLAY`
adds Grafana's own `titleFormat` and `tagKeys` to the encoded JSON, and nothing else
is written outside the SDK's types.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

from grafana_foundation_sdk.builders import common as common_b
from grafana_foundation_sdk.builders import dashboard as dash_b
from grafana_foundation_sdk.builders import prometheus as prom_b
from grafana_foundation_sdk.builders import stat as stat_b
from grafana_foundation_sdk.builders import statetimeline as timeline_b
from grafana_foundation_sdk.builders import timeseries as series_b
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as dash
from grafana_foundation_sdk.models import prometheus as prom

from engine.adapters.grafana.promql import (
    ALL_SLOS,
    RATE_INTERVAL,
    SERVICE_MATCH,
    SERVICE_VAR,
    WINDOW_VAR,
    changes_expr,
    quote,
    service_selector,
    services_of,
    slo_pattern,
)
from engine.core.config import Config
from engine.core.config_model import Slo
from engine.core.durations import format_duration
from engine.errors import ConfigError

__all__ = [
    "ANNOTATION_DISPLAY",
    "OVERVIEW_FILE",
    "OVERVIEW_UID",
    "build_dashboards",
    "encode",
    "slo_file",
    "slo_uid",
]

OVERVIEW_UID = "burnrate-overview"
OVERVIEW_FILE = f"{OVERVIEW_UID}.json"
TAGS = ["burnrate", "slo"]
UID_MAX = 40
"""Grafana's limit on a dashboard uid."""
ANNOTATION_DISPLAY: dict[str, str] = {
    "titleFormat": "{{service}} {{kind}}",
    "tagKeys": "service,kind",
}
"""Added to each change annotation of the encoded JSON (see the module docstring)."""
REFRESH = "30s"
LEGEND_SLO = "{{slo}} {{group}}"


def slo_uid(name: str) -> str:
    """The SLO dashboard's uid: `burnrate-slo-NAME`; for a name with a `.` (not allowed
    in a uid) or past Grafana's 40 characters, a prefix of it with `_` for `.` and a hash
    of the whole name, so uids stay distinct and stable."""
    uid = f"burnrate-slo-{name}"
    if len(uid) <= UID_MAX and "." not in name:
        return uid
    digest = hashlib.sha256(name.encode()).hexdigest()[:10]
    return f"{uid.replace('.', '_')[: UID_MAX - 11]}-{digest}"


def slo_file(name: str) -> str:
    return f"burnrate-slo-{name}.json"


def encode(board: dash.Dashboard) -> dict[str, Any]:
    """The dashboard as Grafana's JSON model (plain dicts and lists)."""
    data: dict[str, Any] = json.loads(json.dumps(board, cls=JSONEncoder))
    for annotation in data.get("annotations", {}).get("list", []):
        if annotation.get("name") == "Changes":
            annotation.update(ANNOTATION_DISPLAY)
    return data


def build_dashboards(config: Config, datasource_uid: str) -> dict[str, dash.Dashboard]:
    """File name -> dashboard: the overview first, then one per SLO in config order.

    Raises ConfigError for a service name the `service` variable cannot offer: Grafana
    reads a custom variable's options as `text : value` pairs separated by commas."""
    bad = [
        f"$.slos[{i}].service: {slo.service!r} cannot be a Grafana variable option "
        "(no ',' and no ' : ' in a service name for dashboards)"
        for i, slo in enumerate(config.slos)
        if slo.service is not None and ("," in slo.service or " : " in slo.service)
    ]
    if bad:
        raise ConfigError(bad)
    ds = dash.DataSourceRef(type_val="prometheus", uid=datasource_uid)
    boards = {OVERVIEW_FILE: _overview(config, ds)}
    for slo in config.slos:
        boards[slo_file(slo.name)] = _slo_dashboard(config, slo, ds)
    return boards


def _query(ds: dash.DataSourceRef, ref: str, expr: str, legend: str) -> prom_b.Dataquery:
    return (
        prom_b.Dataquery()
        .datasource(ds)
        .ref_id(ref)
        .expr(expr)
        .legend_format(legend)
        .range()
        .editor_mode(prom.QueryEditorMode.CODE)
    )


def _instant(ds: dash.DataSourceRef, ref: str, expr: str, legend: str) -> prom_b.Dataquery:
    return (
        prom_b.Dataquery()
        .datasource(ds)
        .ref_id(ref)
        .expr(expr)
        .legend_format(legend)
        .instant()
        .editor_mode(prom.QueryEditorMode.CODE)
    )


def _steps(*steps: tuple[float | None, str]) -> dash_b.ThresholdsConfig:
    return (
        dash_b.ThresholdsConfig()
        .mode(dash.ThresholdsMode.ABSOLUTE)
        .steps([dash.Threshold(value=v, color=c) for v, c in steps])
    )


def _legend() -> common_b.VizLegendOptions:
    return (
        common_b.VizLegendOptions()
        .display_mode(common.LegendDisplayMode.TABLE)
        .placement(common.LegendPlacement.BOTTOM)
        .show_legend(True)
        .calcs(["lastNotNull", "max"])
    )


def _changes(ds: dash.DataSourceRef, selector: str) -> dash_b.AnnotationQuery:
    return (
        dash_b.AnnotationQuery()
        .name("Changes")
        .datasource(ds)
        .enable(True)
        .icon_color("purple")
        .expr(changes_expr(selector))
    )


_BUDGET_STEPS = ((None, "red"), (0.0, "orange"), (0.25, "green"))
"""Budget left: red once spent, orange under a quarter (the default gate's warn)."""


def _alert_state(
    ds: dash.DataSourceRef,
    config: Config,
    slos: list[Slo],
    sel: str,
    legend: str,
    severities: Sequence[str] = (),
) -> timeline_b.Panel:
    """The burn-rate alerts of `sel` by severity (only `severities` when given), then the
    budget alerts and the budget policy escalations when some of `slos` has them: 1
    firing, 0 not."""
    burn_sel = f"{sel},severity=~{quote('|'.join(severities))}" if severities else sel
    targets = [(f"burnrate_alert_firing{{{burn_sel}}}", f"{legend}{{{{severity}}}}")]
    what = ["the multi-window multi-burn-rate alert of the severity"]
    settings = config.budget_alerts
    if settings is not None and (settings.exhausted or settings.projected):
        targets.append((f"burnrate_budget_alert_firing{{{sel}}}", f"{legend}{{{{alert}}}}"))
        what.append("the budget alert")
    if any(row.escalate for slo in slos for row in config.budget_policy_of(slo)):
        targets.append(
            (f"burnrate_escalation_firing{{{sel}}}", f"{legend}escalation {{{{decision}}}}")
        )
        what.append("the budget policy row's escalation")
    panel = (
        timeline_b.Panel()
        .title("Alert state")
        .description(f"1 while {', '.join(what)} fires")
        .mappings(
            [
                dash.ValueMap(
                    options={
                        "0": dash.ValueMappingResult(text="ok", color="green", index=0),
                        "1": dash.ValueMappingResult(text="firing", color="red", index=1),
                    }
                )
            ]
        )
        .thresholds(_steps((None, "green"), (1.0, "red")))
        .show_value(common.VisibilityMode.NEVER)
        .merge_values(True)
        .line_width(0)
        .fill_opacity(70)
    )
    for ref, (expr, text) in zip("ABC", targets, strict=False):
        panel = panel.with_target(_query(ds, ref, expr, text))
    return panel


def _window_options(config: Config) -> tuple[list[str], str]:
    """The windows the engine exports and the one shown first: the long window of the
    first page row (the fastest page), else of the first row."""
    windows = [format_duration(w) for w in config.windows_s()]
    rows = config.policy_rows()
    first = next((r for r in rows if r.severity == "page"), rows[0])
    return windows, format_duration(first.long_s)


def _overview(config: Config, ds: dash.DataSourceRef) -> dash.Dashboard:
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
        .annotation(_changes(ds, ""))
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
                _instant(
                    ds,
                    "A",
                    f"burnrate_slo_error_budget_remaining_ratio{{{sel}}}",
                    LEGEND_SLO,
                )
            )
            .unit("percentunit")
            .decimals(1)
            .thresholds(_steps(*_BUDGET_STEPS))
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
                _query(
                    ds,
                    "A",
                    f'burnrate_slo_burn_rate{{{sel},window="${WINDOW_VAR}"}}',
                    LEGEND_SLO,
                )
            )
            .min(0)
            .legend(_legend())
            .fill_opacity(10)
            .fill_opacity(10)
            .height(9)
            .span(12)
        )
        .with_panel(
            series_b.Panel()
            .title("Error budget remaining")
            .with_target(
                _query(
                    ds,
                    "A",
                    f"burnrate_slo_error_budget_remaining_ratio{{{sel}}}",
                    LEGEND_SLO,
                )
            )
            .unit("percentunit")
            .thresholds(_steps(*_BUDGET_STEPS))
            .thresholds_style(
                common_b.GraphThresholdsStyleConfig().mode(common.GraphThresholdsStyleMode.DASHED)
            )
            .legend(_legend())
            .fill_opacity(10)
            .fill_opacity(10)
            .height(9)
            .span(12)
        )
        .with_panel(
            _alert_state(ds, config, config.slos, sel, "{{slo}} {{group}} ").height(9).span(12)
        )
        .with_panel(
            series_b.Panel()
            .title("Events per second")
            .with_target(
                _query(
                    ds,
                    "A",
                    "sum by (slo, group) "
                    f"(rate(burnrate_slo_events_total{{{sel}}}[{RATE_INTERVAL}]))",
                    "{{slo}} {{group}} all",
                )
            )
            .with_target(
                _query(
                    ds,
                    "B",
                    "sum by (slo, group) "
                    f"(rate(burnrate_slo_bad_events_total{{{sel}}}[{RATE_INTERVAL}]))",
                    "{{slo}} {{group}} bad",
                )
            )
            .unit("reqps")
            .min(0)
            .legend(_legend())
            .fill_opacity(10)
            .fill_opacity(10)
            .height(9)
            .span(12)
        )
    )
    return board.build()


def _slo_dashboard(config: Config, slo: Slo, ds: dash.DataSourceRef) -> dash.Dashboard:
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
        board = board.annotation(_changes(ds, service_selector(services)))
    board = (
        board.with_panel(
            stat_b.Panel()
            .title("Objective")
            .with_target(_instant(ds, "A", f"burnrate_slo_objective_ratio{{{sel}}}", LEGEND_SLO))
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
                _query(ds, "A", f"burnrate_slo_error_budget_remaining_ratio{{{sel}}}", LEGEND_SLO)
            )
            .unit("percentunit")
            .decimals(1)
            .thresholds(_steps(*_BUDGET_STEPS))
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
                _instant(
                    ds,
                    "A",
                    f"burnrate_slo_error_budget_exhaustion_seconds{{{sel}}}",
                    LEGEND_SLO,
                )
            )
            .unit("s")
            .no_value("not burning")
            .thresholds(_steps((None, "red"), (86400.0, "orange"), (7 * 86400.0, "green")))
            .color_mode(common.BigValueColorMode.VALUE)
            .graph_mode(common.BigValueGraphMode.NONE)
            .height(5)
            .span(6)
        )
        .with_panel(
            _alert_state(ds, config, [slo], sel, "{{group}} ", severities).height(5).span(6)
        )
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
                _query(
                    ds,
                    "A",
                    f'burnrate_slo_burn_rate{{{sel},window="{long_w}"}}',
                    f"{{{{group}}}} {long_w}",
                )
            )
            .with_target(
                _query(
                    ds,
                    "B",
                    f'burnrate_slo_burn_rate{{{sel},window="{short_w}"}}',
                    f"{{{{group}}}} {short_w}",
                )
            )
            .min(0)
            .thresholds(_steps((None, "green"), (factor, "red")))
            .thresholds_style(
                common_b.GraphThresholdsStyleConfig().mode(common.GraphThresholdsStyleMode.LINE)
            )
            .legend(_legend())
            .fill_opacity(10)
            .fill_opacity(10)
            .height(8)
            .span(12)
        )
    board = board.with_panel(
        series_b.Panel()
        .title("Error budget remaining")
        .with_target(
            _query(ds, "A", f"burnrate_slo_error_budget_remaining_ratio{{{sel}}}", "{{group}}")
        )
        .unit("percentunit")
        .thresholds(_steps(*_BUDGET_STEPS))
        .thresholds_style(
            common_b.GraphThresholdsStyleConfig().mode(common.GraphThresholdsStyleMode.DASHED)
        )
        .legend(_legend())
        .fill_opacity(10)
        .height(8)
        .span(12)
    ).with_panel(
        series_b.Panel()
        .title("Events per second")
        .with_target(
            _query(
                ds,
                "A",
                f"sum by (group) (rate(burnrate_slo_events_total{{{sel}}}[{RATE_INTERVAL}]))",
                "{{group}} all",
            )
        )
        .with_target(
            _query(
                ds,
                "B",
                f"sum by (group) (rate(burnrate_slo_bad_events_total{{{sel}}}[{RATE_INTERVAL}]))",
                "{{group}} bad",
            )
        )
        .unit("reqps")
        .min(0)
        .legend(_legend())
        .fill_opacity(10)
        .height(8)
        .span(12)
    )
    return board.build()
