"""The pieces every burnrate dashboard is made of: Prometheus queries, threshold steps,
legends, the change annotation and the alert state panel, and the names the
dashboards share (the overview's uid, the tags the SLO dashboards are listed by)."""

from __future__ import annotations

from collections.abc import Sequence

from grafana_foundation_sdk.builders import common as common_b
from grafana_foundation_sdk.builders import dashboard as dash_b
from grafana_foundation_sdk.builders import prometheus as prom_b
from grafana_foundation_sdk.builders import statetimeline as timeline_b
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as dash
from grafana_foundation_sdk.models import prometheus as prom

from engine.adapters.grafana.promql import changes_expr, quote
from engine.core.config import Config
from engine.core.config_model import Slo

OVERVIEW_UID = "burnrate-overview"
TAGS = ["burnrate", "slo"]
"""Every dashboard's tags; the overview lists the SLO dashboards by them."""
REFRESH = "30s"
LEGEND_SLO = "{{slo}} {{group}}"
BUDGET_STEPS: tuple[tuple[float | None, str], ...] = (
    (None, "red"),
    (0.0, "orange"),
    (0.25, "green"),
)
"""Budget left: red once spent, orange under a quarter (the default gate's warn)."""


def query(
    ds: dash.DataSourceRef, ref: str, expr: str, legend_format: str, *, instant: bool = False
) -> prom_b.Dataquery:
    """A PromQL target in code mode: a range query, or an instant one for a stat that
    shows the latest value."""
    target = (
        prom_b.Dataquery()
        .datasource(ds)
        .ref_id(ref)
        .expr(expr)
        .legend_format(legend_format)
        .editor_mode(prom.QueryEditorMode.CODE)
    )
    return target.instant() if instant else target.range()


def steps(*pairs: tuple[float | None, str]) -> dash_b.ThresholdsConfig:
    """Absolute thresholds: (value from which, colour); the first value is None."""
    return (
        dash_b.ThresholdsConfig()
        .mode(dash.ThresholdsMode.ABSOLUTE)
        .steps([dash.Threshold(value=v, color=c) for v, c in pairs])
    )


def table_legend() -> common_b.VizLegendOptions:
    """A table under the chart with each line's last and highest value."""
    return (
        common_b.VizLegendOptions()
        .display_mode(common.LegendDisplayMode.TABLE)
        .placement(common.LegendPlacement.BOTTOM)
        .show_legend(True)
        .calcs(["lastNotNull", "max"])
    )


def changes(ds: dash.DataSourceRef, selector: str) -> dash_b.AnnotationQuery:
    """The "Changes" annotation of the services `selector` matches (all: empty)."""
    return (
        dash_b.AnnotationQuery()
        .name("Changes")
        .datasource(ds)
        .enable(True)
        .icon_color("purple")
        .expr(changes_expr(selector))
    )


def alert_state(
    ds: dash.DataSourceRef,
    config: Config,
    slos: list[Slo],
    sel: str,
    prefix: str,
    severities: Sequence[str] = (),
) -> timeline_b.Panel:
    """The burn-rate alerts of `sel` by severity (only `severities` when given), then the
    budget alerts and the budget policy escalations when some of `slos` has them: 1
    firing, 0 not."""
    burn_sel = f"{sel},severity=~{quote('|'.join(severities))}" if severities else sel
    targets = [(f"burnrate_alert_firing{{{burn_sel}}}", f"{prefix}{{{{severity}}}}")]
    what = ["the multi-window multi-burn-rate alert of the severity"]
    settings = config.budget_alerts
    if settings is not None and (settings.exhausted or settings.projected):
        targets.append((f"burnrate_budget_alert_firing{{{sel}}}", f"{prefix}{{{{alert}}}}"))
        what.append("the budget alert")
    if any(row.escalate for slo in slos for row in config.budget_policy_of(slo)):
        targets.append(
            (f"burnrate_escalation_firing{{{sel}}}", f"{prefix}escalation {{{{decision}}}}")
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
        .thresholds(steps((None, "green"), (1.0, "red")))
        .show_value(common.VisibilityMode.NEVER)
        .merge_values(True)
        .line_width(0)
        .fill_opacity(70)
    )
    for ref, (expr, text) in zip("ABC", targets, strict=False):
        panel = panel.with_target(query(ds, ref, expr, text))
    return panel
