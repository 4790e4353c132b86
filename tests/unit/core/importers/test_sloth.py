"""Sloth specs into burnrate SLOs (engine.core.importers.sloth), and what `finish` keeps."""

from __future__ import annotations

import pytest

from tests.unit.core.importers.helpers import DATA, notes_of, run, slo_named

API = (DATA / "sloth" / "api.yaml").read_text()
CRD = (DATA / "sloth" / "crd.yaml").read_text()

PAGE_ROWS = [
    {"severity": "page", "long": "1h", "short": "5m", "budget_consumed_ratio": 0.02},
    {"severity": "page", "long": "6h", "short": "30m", "budget_consumed_ratio": 0.05},
]
TICKET_ROWS = [
    {"severity": "ticket", "long": "1d", "short": "2h", "budget_consumed_ratio": 0.1},
    {"severity": "ticket", "long": "3d", "short": "6h", "budget_consumed_ratio": 0.1},
]


def spec(slo: str, *, service: str = "api") -> str:
    return f"version: prometheus/v1\nservice: {service}\nslos:\n{slo}"


EVENTS = """\
    sli:
      events:
        error_query: sum(rate(reqs{job="api",code=~"5.."}[{{.window}}]))
        total_query: sum(rate(reqs{job="api"}[{{.window}}]))
"""


def test_prometheus_v1_maps_names_objectives_labels_slis_and_alerts() -> None:
    result = run(("api.yaml", API), period="28d")
    assert result.errors == []
    assert slo_named(result, "requests-availability") == {
        "name": "requests-availability",
        "description": "Requests served without a server error",
        "service": "api",
        "sli": "availability",
        "objective": 99.9,
        "period": "28d",
        "labels": {"team": "platform", "category": "availability"},
        "runbook_url": "https://runbooks.example/api",
    }
    latency = slo_named(result, "requests-latency")
    assert (latency["sli"], latency["threshold_ms"], latency["period"]) == ("latency", 300, "28d")
    assert latency["policy"] == PAGE_ROWS
    assert notes_of(result) == [
        "api.yaml: $.slos[0].alerting.name: not mapped: burnrate's alerts are all named "
        "SLOErrorBudgetBurn, with the SLO in their `slo` label",
        "api.yaml: $.slos[0].alerting.annotations.summary: not mapped (only runbook_url)",
        "api.yaml: $.slos[0].alerting.page_alert.labels: not mapped (no per-severity labels; "
        "alerts carry a `severity` label)",
        "api.yaml: $.slos[0].alerting.ticket_alert.labels: not mapped (no per-severity labels; "
        "alerts carry a `severity` label)",
    ]


def test_the_kubernetes_crd_reads_camel_case() -> None:
    result = run(("crd.yaml", CRD))
    entry = slo_named(result, "ledger-availability")
    assert (entry["service"], entry["sli"], entry["objective"]) == ("ledger", "availability", 99.95)
    assert entry["period"] == "30d"
    assert entry["labels"] == {"team": "core-banking"}
    assert entry["policy"] == TICKET_ROWS
    assert notes_of(result) == []


def test_both_alerts_disabled_keeps_the_default_policy_with_a_note() -> None:
    slo = (
        "  - name: a\n    objective: 99\n"
        + EVENTS
        + "    alerting: {page_alert: {disable: true}, ticket_alert: {disable: true}}\n"
    )
    result = run(("s.yaml", spec(slo)))
    assert "policy" not in slo_named(result, "a")
    assert any("both page and ticket alerts are disabled" in n for n in notes_of(result))


@pytest.mark.parametrize(
    ("sli", "note"),
    [
        (
            "    sli: {raw: {error_ratio_query: 'x'}}\n",
            "s.yaml: $.slos[0].sli.raw: a raw SLI (error_ratio_query, a precomputed error ratio)",
        ),
        (
            "    sli: {plugin: {id: sloth-common/availability}}\n",
            "s.yaml: $.slos[0].sli.plugin: SLI plugins are not supported; skipped",
        ),
        (
            "    sli: {events: {error_query: 'x{job=\"api\"}'}}\n",
            "s.yaml: $.slos[0].sli.events: needs error_query and total_query; skipped",
        ),
        (
            '    sli: {events: {error_query: \'x{job="api",code="503"}\', total_query: x}}\n',
            's.yaml: $.slos[0].sli.events.error_query: code="503": not exactly the HTTP 5xx',
        ),
    ],
)
def test_slis_that_do_not_map_are_notes_and_nothing_else(sli: str, note: str) -> None:
    result = run(("s.yaml", spec("  - name: a\n    objective: 99\n" + sli)))
    assert result.config == {"slos": []}
    assert any(n.startswith(note) for n in notes_of(result)), notes_of(result)


def test_a_name_taken_by_another_file_becomes_sloths_slo_id() -> None:
    slo = "  - name: availability\n    objective: 99\n" + EVENTS
    result = run(("a.yaml", spec(slo)), ("b.yaml", spec(slo, service="cart")))
    assert [s["name"] for s in result.config["slos"]] == ["availability", "cart-availability"]
    assert (
        "b.yaml: $.slos[0].name: name 'availability' is taken; renamed to "
        "'cart-availability' (Sloth's SLO id)" in notes_of(result)
    )


def test_slos_the_checks_refuse_are_left_out_with_the_reason() -> None:
    slos = (
        "  - name: perfect\n    objective: 100\n"
        + EVENTS
        + "  - name: fine\n    objective: 99.5\n"
        + EVENTS
    )
    result = run(("s.yaml", spec(slos)))
    assert [s["name"] for s in result.config["slos"]] == ["fine"]
    assert (
        "s.yaml: $.slos[0]: SLO 'perfect' skipped: objective: must be > 0 and < 100 "
        "(percent), got 100.0" in notes_of(result)
    )


def test_a_composite_whose_member_is_refused_is_left_out_too() -> None:
    text = (
        (DATA / "openslo" / "slos.yaml")
        .read_text()
        .replace("target: 0.999\n      compositeWeight: 3", "target: 1\n      compositeWeight: 3")
    )
    result = run(
        ("slos.yaml", text), ("shared.yaml", (DATA / "openslo" / "shared.yaml").read_text())
    )
    names = [s["name"] for s in result.config["slos"]]
    assert "checkout-journey-buy" not in names
    assert "checkout-journey" not in names
    assert "checkout-journey-browse" in names
    assert any(
        "SLO 'checkout-journey' skipped: composite[1].slo: unknown SLO" in n
        for n in notes_of(result)
    )


def test_a_camel_case_key_in_a_prometheus_v1_file_is_a_note_not_a_disabled_alert() -> None:
    slo = (
        "  - name: a\n    objective: 99\n"
        + EVENTS
        + "    alerting: {pageAlert: {disable: true}, ticket_alert: {disable: false, silence: 1}}\n"
    )
    result = run(("s.yaml", spec(slo)))
    assert "policy" not in slo_named(result, "a")  # both tiers still alert
    assert notes_of(result) == [
        "s.yaml: $.slos[0].alerting.pageAlert: not a field the import reads; ignored",
        "s.yaml: $.slos[0].alerting.ticket_alert.silence: not a field the import reads; ignored",
    ]
