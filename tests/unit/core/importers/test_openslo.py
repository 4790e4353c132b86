"""OpenSLO v1 documents into burnrate SLOs (engine.core.importers.openslo)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from engine.core.config import parse_config
from engine.core.importers.common import Notes
from engine.core.importers.openslo import import_openslo
from tests.unit.core.importers.helpers import DATA, documents, notes_of, run, slo_named

SLOS = (DATA / "openslo" / "slos.yaml").read_text()
SHARED = (DATA / "openslo" / "shared.yaml").read_text()

BURNRATE_SLI = """\
      thresholdMetric:
        metricSource:
          type: burnrate
          spec: {service: api, sli: availability}
"""


def source(kind: str, query: str) -> dict[str, Any]:
    """A metric source part of an SLI (`good`, `bad`, `total` or a threshold metric)."""
    return {"metricSource": {"type": kind, "spec": {"query": query}}}


def sli_yaml(spec: dict[str, Any]) -> str:
    """An SLI spec as the indented YAML `slo` puts in place of the burnrate one (JSON is
    YAML)."""
    return "".join(f"      {key}: {json.dumps(value)}\n" for key, value in spec.items())


def slo(name: str = "api", *, window: str = "", objectives: str = "", extra: str = "") -> str:
    """One SLO document with an inline burnrate SLI; parts replaceable."""
    window = window or "  timeWindow: [{duration: 30d, isRolling: true}]\n"
    objectives = objectives or "  objectives: [{target: 0.99}]\n"
    return (
        f"apiVersion: openslo/v1\nkind: SLO\nmetadata: {{name: {name}}}\nspec:\n"
        f"  service: api\n  budgetingMethod: Occurrences\n{window}{objectives}"
        f"  indicator:\n    metadata: {{name: {name}-sli}}\n    spec:\n{BURNRATE_SLI}{extra}"
    )


def test_objects_across_files_map_and_the_config_passes_the_checks() -> None:
    result = run(("slos.yaml", SLOS), ("shared.yaml", SHARED))
    assert result.errors == []
    cfg = parse_config(__import__("msgspec").yaml.encode(result.config))
    assert [s.name for s in cfg.slos] == [
        "checkout-availability",
        "catalog-latency",
        "checkout-journey-browse",
        "checkout-journey-buy",
        "checkout-journey",
    ]
    avail = slo_named(result, "checkout-availability")
    assert avail == {
        "name": "checkout-availability",
        "description": "Orders placed without a server error",
        "service": "checkout",
        "operation": "POST /orders",
        "sli": "availability",
        "objective": 99.9,
        "period": "28d",
        "labels": {"team": "payments", "tier": "1"},
        "policy": [
            {"severity": "page", "long": "1h", "short": "5m", "burn_rate": 14.4},
            {"severity": "page", "long": "6h", "short": "30m", "burn_rate": 6},
            {"severity": "ticket", "long": "3d", "short": "4h", "burn_rate": 1},
        ],
    }
    latency = slo_named(result, "catalog-latency")
    assert latency["period"] == {"calendar": "month", "time_zone": "Europe/Berlin"}
    assert (latency["sli"], latency["threshold_ms"], latency["objective"]) == ("latency", 250, 99)
    journey = slo_named(result, "checkout-journey")
    assert journey["composite"] == [
        {"slo": "checkout-journey-browse", "weight": 1.0},
        {"slo": "checkout-journey-buy", "weight": 3.0},
    ]
    assert journey["objective"] == pytest.approx(99.675)
    assert slo_named(result, "checkout-journey-buy")["service"] == "checkout"  # via DataSource
    notes = notes_of(result)
    assert "shared.yaml: $[4].spec.condition.alertAfter: 5m is not mapped" in "\n".join(notes)
    assert any(
        n.startswith("shared.yaml: $[5]: notification target 'payments-oncall'") for n in notes
    )


def test_a_reference_to_a_missing_object_is_a_note_at_the_reference() -> None:
    result = run(("slos.yaml", SLOS))  # without shared.yaml
    notes = notes_of(result)
    assert (
        "slos.yaml: $[2].spec.indicatorRef: no SLI named 'catalog-latency-sli' in the files read"
        in notes
    )
    assert (
        "slos.yaml: $[1].spec.alertPolicies[0].alertPolicyRef: no AlertPolicy named "
        "'fast-burn' in the files read" in notes
    )
    assert (
        "slos.yaml: $[3].spec.objectives[1].indicator.spec.thresholdMetric.metricSource"
        ".metricSourceRef: no DataSource named 'engine' (with a type) in the files read; no SLI"
        in notes
    )
    assert [s["name"] for s in result.config["slos"]] == ["checkout-availability"]
    # the inline policy still maps; the referenced one is missing
    assert slo_named(result, "checkout-availability")["policy"] == [
        {"severity": "ticket", "long": "3d", "short": "4h", "burn_rate": 1}
    ]


@pytest.mark.parametrize(
    ("window", "period", "note"),
    [
        ("[{duration: 28d, isRolling: true}]", "28d", None),
        ("[{duration: 2w, isRolling: true}]", "2w", None),
        (
            "[{duration: 1M, isRolling: true}]",
            "30d",
            "a rolling 1M has no fixed length; imported as 30d",
        ),
        (
            "[{duration: 1w, calendar: {startTime: '2026-01-05 00:00:00', timeZone: UTC}}]",
            {"calendar": "week", "time_zone": "UTC"},
            None,
        ),
        (
            "[{duration: 1Q, calendar: {startTime: '2026-01-01 00:00:00', timeZone: Asia/Tokyo}}]",
            {"calendar": "quarter", "time_zone": "Asia/Tokyo"},
            None,
        ),
        (
            "[{duration: 3M, calendar: {startTime: '2026-04-01 00:00:00', timeZone: UTC}}]",
            {"calendar": "quarter", "time_zone": "UTC"},
            None,
        ),
        (
            "[{duration: 1M, calendar: {startTime: '2026-01-15 00:00:00', timeZone: UTC}}]",
            {"calendar": "month", "time_zone": "UTC"},
            "calendar months start at local midnight",
        ),
        (
            "[{duration: 1d, calendar: {startTime: '2026-01-01 00:00:00', timeZone: UTC}}]",
            "1d",
            "calendar window 1d: burnrate has calendar weeks",
        ),
        (
            "[{duration: 1M, calendar: {startTime: '2026-01-01 00:00:00'}}]",
            {"calendar": "month", "time_zone": "UTC"},
            "timeZone: missing; taken as UTC",
        ),
    ],
)
def test_time_windows(window: str, period: object, note: str | None) -> None:
    result = run(("w.yaml", slo(window=f"  timeWindow: {window}\n")))
    assert slo_named(result, "api")["period"] == period
    text = "\n".join(notes_of(result))
    assert (note in text) if note else text == ""


@pytest.mark.parametrize(
    ("method", "note"),
    [
        ("Timeslices", "Timeslices is not supported yet: imported as Occurrences"),
        ("RatioTimeslices", "RatioTimeslices is not supported yet"),
    ],
)
def test_budgeting_methods_other_than_occurrences_warn(method: str, note: str) -> None:
    text = slo().replace("budgetingMethod: Occurrences", f"budgetingMethod: {method}")
    result = run(("b.yaml", text))
    assert f"b.yaml: $.spec.budgetingMethod: {note}" in "\n".join(notes_of(result))


def test_target_percent_and_several_objectives_on_one_indicator() -> None:
    objectives = (
        "  objectives:\n    - {displayName: Gold, targetPercent: 99.9}\n    - {target: 0.95}\n"
    )
    result = run(("o.yaml", slo(objectives=objectives)))
    assert [(s["name"], s["objective"]) for s in result.config["slos"]] == [
        ("api-gold", 99.9),
        ("api-1", 95),
    ]
    assert (
        "o.yaml: $.spec.objectives[0]: name 'api-Gold' renamed to 'api-gold' "
        "(names are [a-z0-9_.-]+)" in notes_of(result)
    )


def test_an_objective_without_a_target_is_skipped_with_a_note() -> None:
    result = run(("o.yaml", slo(objectives="  objectives: [{displayName: x}]\n")))
    assert result.config["slos"] == []
    assert "o.yaml: $.spec.objectives[0]: no target or targetPercent; skipped" in notes_of(result)


def test_alert_conditions_become_rows_or_say_why_not() -> None:
    policy = """\
  alertPolicies:
    - kind: AlertPolicy
      metadata: {name: p}
      spec:
        alertWhenNoData: true
        conditions:
          - kind: AlertCondition
            metadata: {name: a}
            spec:
              severity: high
              condition: {kind: burnrate, op: gt, threshold: 10, lookbackWindow: 2h}
          - kind: AlertCondition
            metadata: {name: b}
            spec:
              severity: info
              condition: {kind: burnrate, op: gte, threshold: 2, lookbackWindow: 1d}
          - kind: AlertCondition
            metadata: {name: c}
            spec:
              severity: page
              condition: {kind: burnrate, op: lte, threshold: 2, lookbackWindow: 1d}
          - kind: AlertCondition
            metadata: {name: d, annotations: {burnrate.dev/short-window: 90m}}
            spec:
              severity: warning
              condition: {kind: burnrate, op: gte, threshold: 3, lookbackWindow: 1d}
          - kind: AlertCondition
            metadata: {name: e}
            spec:
              severity: page
              condition: {kind: burnrate, op: gte, threshold: 3, lookbackWindow: 1M}
"""
    result = run(("a.yaml", slo(extra=policy)))
    assert slo_named(result, "api")["policy"] == [
        {"severity": "page", "long": "2h", "short": "10m", "burn_rate": 10},
        {"severity": "ticket", "long": "1d", "short": "90m", "burn_rate": 3},
    ]
    text = "\n".join(notes_of(result))
    base = "a.yaml: $.spec.alertPolicies[0]"
    for expected in (
        f"{base}.spec.alertWhenNoData: True is not supported",
        f"{base}.spec.conditions[0].spec.condition.op: gt imported as gte",
        f"{base}.spec.conditions[1].spec.severity: 'info' is neither page",
        f"{base}.spec.conditions[2].spec.condition.op: 'lte'",
        f"{base}.spec.conditions[4].spec.condition.lookbackWindow: '1M': expected a fixed duration",
    ):
        assert expected in text


def test_no_mapped_condition_leaves_the_default_policy() -> None:
    policy = "  alertPolicies: [{alertPolicyRef: nowhere}]\n"
    result = run(("a.yaml", slo(extra=policy)))
    assert "policy" not in slo_named(result, "api")
    assert (
        "a.yaml: $.spec.alertPolicies: no burn-rate alert condition maps; the default "
        "policy applies" in notes_of(result)
    )


def test_unknown_kinds_duplicates_and_bad_objects_are_notes() -> None:
    text = (
        "apiVersion: openslo/v1\nkind: Dashboard\nmetadata: {name: d}\nspec: {}\n---\n"
        + slo()
        + "---\n"
        + slo()
        + "---\napiVersion: openslo/v1\nkind: SLI\nmetadata: {}\nspec: {}\n"
    )
    notes = Notes()
    out = import_openslo(documents("k.yaml", text), notes)
    assert [item.slo["name"] for item in out] == ["api"]
    assert [str(n) for n in notes.items] == [
        "k.yaml: $[0].kind: unknown kind 'Dashboard' (OpenSLO v1: Service, SLO, SLI, "
        "AlertPolicy, AlertCondition, AlertNotificationTarget, DataSource)",
        "k.yaml: $[2].metadata.name: duplicate SLO 'api' (first at k.yaml: $[1]); ignored",
        "k.yaml: $[3].metadata.name: the SLI has no name",
    ]


def test_labels_names_and_sli_fields_that_do_not_map_are_notes() -> None:
    text = (
        slo(name="Api_Main")
        .replace(
            "metadata: {name: Api_Main}",
            "metadata: {name: Api_Main, labels: {team: [a, b], app.kubernetes.io/name: api}}",
        )
        .replace("sli: availability}", "sli: availability, region: eu}")
    )
    result = run(("l.yaml", text))
    entry = slo_named(result, "api_main")
    assert entry["labels"] == {"team": "a,b", "app_kubernetes_io_name": "api"}
    notes = notes_of(result)
    assert (
        "l.yaml: $.metadata.name: name 'Api_Main' renamed to 'api_main' (names are [a-z0-9_.-]+)"
        in notes
    )
    assert "l.yaml: $.metadata.labels.team: label values ['a', 'b'] joined into one: 'a,b'" in notes
    assert any(
        n.startswith(
            "l.yaml: $.spec.indicator.spec.thresholdMetric.metricSource.spec.region: "
            "not a burnrate SLI field"
        )
        for n in notes
    )


@pytest.mark.parametrize(
    ("sli", "note"),
    [
        (
            sli_yaml({"ratioMetric": {"raw": source("Prometheus", "x"), "rawType": "success"}}),
            "$.spec.indicator.spec.ratioMetric.raw: a raw ratio metric",
        ),
        (
            sli_yaml({"thresholdMetric": source("Prometheus", "histogram_quantile(0.9, x)")}),
            "$.spec.indicator.spec.thresholdMetric.metricSource: a threshold metric of type "
            "'Prometheus' does not map",
        ),
        (
            sli_yaml(
                {"ratioMetric": {"good": source("Datadog", "x"), "total": source("Datadog", "y")}}
            ),
            "$.spec.indicator.spec.ratioMetric.good.metricSource: type 'Datadog' does not map",
        ),
        (
            sli_yaml(
                {
                    "ratioMetric": {
                        "good": source("Prometheus", 'x{job="api"}'),
                        "total": source("Prometheus", 'x{job="api"}'),
                    }
                }
            ),
            "$.spec.indicator.spec.ratioMetric.good.metricSource.spec.query: no 5xx status "
            "matcher and no `le` bucket",
        ),
    ],
)
def test_slis_that_do_not_map_skip_the_slo_with_a_note(sli: str, note: str) -> None:
    result = run(("s.yaml", slo().replace(BURNRATE_SLI, sli)))
    assert result.config["slos"] == []
    assert any(n.startswith(f"s.yaml: {note}") for n in notes_of(result)), notes_of(result)


def test_a_prometheus_sli_without_a_service_matcher_takes_the_slo_service() -> None:
    sli = sli_yaml(
        {
            "ratioMetric": {
                "bad": source("prometheus", 'x{code=~"5.."}'),
                "total": source("prometheus", "x"),
            }
        }
    )
    result = run(("s.yaml", slo().replace(BURNRATE_SLI, sli)))
    assert slo_named(result, "api")["service"] == "api"
    assert any("the declared service 'api' is used" in n for n in notes_of(result))


def test_fields_the_import_does_not_read_are_notes() -> None:
    text = slo(objectives="  objectives: [{target: 0.99, ratioTarget: 1}]\n").replace(
        "metadata: {name: api}",
        "metadata: {name: api, annotations: {openslo.com/owner: me}}",
    )
    result = run(("u.yaml", text + "  sloOwner: me\n"))
    assert slo_named(result, "api")["objective"] == 99
    assert notes_of(result) == [
        "u.yaml: $.spec.sloOwner: not a field the import reads; ignored",
        "u.yaml: $.metadata.annotations.openslo.com/owner: not mapped (SLO annotations)",
        "u.yaml: $.spec.objectives[0].ratioTarget: not a field the import reads; ignored",
    ]


def test_one_objective_with_its_own_indicator_is_a_plain_slo() -> None:
    text = slo(objectives="  objectives:\n    - target: 0.99\n      indicatorRef: other\n").replace(
        "  indicator:\n    metadata: {name: api-sli}", "  xindicator:\n    metadata: {}"
    )
    other = (
        "apiVersion: openslo/v1\nkind: SLI\nmetadata: {name: other}\nspec:\n"
        + BURNRATE_SLI.replace("      ", "  ", 1)
    )
    result = run(("p.yaml", text), ("other.yaml", other))
    assert [s["name"] for s in result.config["slos"]] == ["api"]
    assert "composite" not in slo_named(result, "api")


def test_a_policy_two_slos_share_gives_both_its_rows_and_its_notes_once() -> None:
    refs = "  alertPolicies: [{alertPolicyRef: fast-burn}]\n"
    text = slo("a", extra=refs) + "---\n" + slo("b", extra=refs)
    result = run(("two.yaml", text), ("shared.yaml", SHARED))
    rows = [slo_named(result, name)["policy"] for name in ("a", "b")]
    assert (
        rows[0]
        == rows[1]
        == [
            {"severity": "page", "long": "1h", "short": "5m", "burn_rate": 14.4},
            {"severity": "page", "long": "6h", "short": "30m", "burn_rate": 6},
        ]
    )
    after = [n for n in notes_of(result) if "alertAfter" in n]
    assert after == [
        "shared.yaml: $[4].spec.condition.alertAfter: 5m is not mapped: a row fires as soon as "
        "both windows burn (`evaluation.for` delays every alert, if needed)"
    ]


def test_alert_fields_the_import_does_not_read_are_notes() -> None:
    policy = """\
  alertPolicies:
    - kind: AlertPolicy
      metadata: {name: p}
      spec:
        cooldown: 5m
        conditions:
          - kind: AlertCondition
            metadata: {name: a}
            spec:
              severity: page
              priority: 1
              condition: {kind: burnrate, op: gte, threshold: 10, lookbackWindow: 2h, for: 1m}
"""
    result = run(("a.yaml", slo(extra=policy)))
    assert len(slo_named(result, "api")["policy"]) == 1
    base = "a.yaml: $.spec.alertPolicies[0].spec"
    assert notes_of(result) == [
        f"{base}.cooldown: not a field the import reads; ignored",
        f"{base}.conditions[0].spec.priority: not a field the import reads; ignored",
        f"{base}.conditions[0].spec.condition.for: not a field the import reads; ignored",
    ]
