"""PagerDuty Events API v2 bodies: trigger and resolve, the dedup key, summary and severity."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import msgspec
import pytest

from engine.adapters.alerts.pagerduty_events import (
    MAX_SUMMARY_CHARS,
    dedup_key,
    pagerduty_event,
    truncate_summary,
)
from engine.adapters.alerts.payloads import alert_annotations, rfc3339
from engine.core.config import PagerDutySeverity
from engine.core.evaluator import ChangeNote
from tests.unit.adapters.alerts.factories import EXTERNAL, SLO, T0, firing, resolved

KEY = "R0UTINGKEY0123456789abcdefABCDEF"


def event(tr: Any = None, slo: Any = SLO, **kwargs: Any) -> dict[str, Any]:
    kwargs.setdefault("severity", PagerDutySeverity())
    body = pagerduty_event(
        firing() if tr is None else tr, slo, routing_key=KEY, external_url=EXTERNAL, **kwargs
    )
    decoded: dict[str, Any] = json.loads(body)
    return decoded


def test_a_firing_is_a_trigger_with_the_common_event_format_fields() -> None:
    body = event(firing(at=T0 + 0.25))
    assert body["routing_key"] == KEY
    assert body["event_action"] == "trigger"
    assert body["dedup_key"] == dedup_key(firing())
    payload = body["payload"]
    assert payload["summary"] == alert_annotations(firing(), SLO)["summary"]
    assert payload["source"] == "checkout"
    assert payload["severity"] == "critical"
    assert payload["timestamp"] == rfc3339(T0 + 0.25) == "2023-11-14T22:13:20.250Z"
    assert payload["component"] == "checkout-availability"
    assert payload["class"] == "SLOErrorBudgetBurn"
    assert "group" not in payload  # an ungrouped SLO has none
    details = payload["custom_details"]
    assert details["burn_rate_long"] == 25.3
    assert details["burn_rate_short"] == 41.0
    assert (details["long_window"], details["short_window"]) == ("1h", "5m")
    assert details["factor"] == 14.4
    assert details["error_budget_remaining_ratio"] == 0.872
    assert details["objective_percent"] == 99.9
    assert details["period"] == "30d"
    assert details["labels"]["team"] == "payments"
    assert details["runbook_url"] == "https://runbooks.example/checkout"
    slo_url = f"{EXTERNAL}/v1/slos/checkout-availability"
    assert details["slo_url"] == body["client_url"] == slo_url
    assert body["client"] == "Burnrate"
    assert body["links"] == [
        {"href": "https://runbooks.example/checkout", "text": "Runbook"},
        {"href": slo_url, "text": "SLO checkout-availability in Burnrate"},
    ]


def test_a_resolve_carries_only_what_the_api_reads_and_the_trigger_s_key() -> None:
    body = event(resolved(at=T0 + 900))
    assert body == {
        "routing_key": KEY,
        "event_action": "resolve",
        "dedup_key": dedup_key(firing()),
    }


def test_no_data_is_null_in_the_details_and_no_runbook_is_no_runbook_link() -> None:
    slo = msgspec.structs.replace(SLO, runbook_url=None)
    body = event(firing(burn_rate_short=None, error_budget_remaining_ratio=None), slo)
    details = body["payload"]["custom_details"]
    assert details["burn_rate_short"] is None
    assert details["error_budget_remaining_ratio"] is None
    assert "runbook_url" not in details
    assert [link["text"] for link in body["links"]] == ["SLO checkout-availability in Burnrate"]


def test_the_dedup_key_is_one_per_alert_slo_group_and_severity() -> None:
    key = dedup_key(firing())
    # the same alert: any state, time, row or numbers
    assert dedup_key(resolved(at=T0 + 60)) == key
    assert dedup_key(firing(at=T0 + 3600, burn_rate_long=99.0)) == key
    # other alerts
    others = {
        dedup_key(firing(severity="ticket")),
        dedup_key(firing(slo="checkout-latency")),
        dedup_key(firing(group="region=eu")),
        dedup_key(firing(group="region=us")),
    }
    assert key not in others
    assert len(others) == 4
    assert key.startswith("burnrate-")
    assert len(dedup_key(firing(group="k=" + "v" * 2000))) <= 255  # the API's limit
    # Pinned: a restarted engine (or another release) must find the open PagerDuty alert.
    seed = b"burnrate-alert\0checkout-availability\0page"
    assert key == "burnrate-" + hashlib.sha256(seed).hexdigest()


def test_a_grouped_slo_s_trigger_names_its_group() -> None:
    body = event(firing(group="region=eu"))
    assert body["payload"]["group"] == "region=eu"
    assert body["payload"]["custom_details"]["group"] == "region=eu"
    assert "region=eu" in body["payload"]["summary"]
    assert body["client_url"].endswith("/v1/slos/checkout-availability?group=region%3Deu")


@pytest.mark.parametrize(
    ("mapping", "expected"),
    [
        (PagerDutySeverity(), {"page": "critical", "ticket": "warning"}),
        (PagerDutySeverity(page="error", ticket="info"), {"page": "error", "ticket": "info"}),
    ],
)
def test_severity_is_mapped(mapping: PagerDutySeverity, expected: dict[str, str]) -> None:
    for ours, theirs in expected.items():
        body = event(firing(severity=ours), severity=mapping)
        assert body["payload"]["severity"] == theirs


def test_the_summary_is_cut_to_1024_characters() -> None:
    assert truncate_summary("x" * MAX_SUMMARY_CHARS) == "x" * MAX_SUMMARY_CHARS
    cut = truncate_summary("é" * (MAX_SUMMARY_CHARS + 1))
    assert len(cut) == MAX_SUMMARY_CHARS
    assert cut.endswith("…")
    # A long group value makes a long summary; the event still fits.
    body = event(firing(group="tenant=" + "a" * 3000))
    summary = body["payload"]["summary"]
    assert len(summary) == MAX_SUMMARY_CHARS
    assert summary.startswith("SLO checkout-availability group tenant=aaa")
    assert summary.endswith("…")


def test_a_trigger_in_a_change_window_lists_the_changes_in_its_details() -> None:
    note = ChangeNote(id=3, kind="deploy", version="7", at=T0 - 60, error_budget_consumed_ratio=0.5)
    details = event(firing(changes=(note,)))["payload"]["custom_details"]
    assert details["changes"] == [
        {
            "id": 3,
            "kind": "deploy",
            "at": T0 - 60,
            "version": "7",
            "error_budget_consumed_ratio": 0.5,
        }
    ]
    assert "changes" not in event()["payload"]["custom_details"]
