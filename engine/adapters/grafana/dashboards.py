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

import json
from typing import Any

from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import dashboard as dash

from engine.adapters.grafana.overview import overview
from engine.adapters.grafana.parts import OVERVIEW_UID
from engine.adapters.grafana.slo_dashboard import slo_dashboard, slo_uid
from engine.core.config import Config
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

OVERVIEW_FILE = f"{OVERVIEW_UID}.json"
ANNOTATION_DISPLAY: dict[str, str] = {
    "titleFormat": "{{service}} {{kind}}",
    "tagKeys": "service,kind",
}
"""Added to each change annotation of the encoded JSON (see the module docstring)."""


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
    boards = {OVERVIEW_FILE: overview(config, ds)}
    for slo in config.slos:
        boards[slo_file(slo.name)] = slo_dashboard(config, slo, ds)
    return boards
