"""Alert payloads: labels, annotations, fingerprints, Alertmanager webhook v4 and API v2 bodies."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.adapters.alerts.payloads import (
    ALERTNAME,
    ZERO_TIME,
    alert_annotations,
    alert_labels,
    alertmanager_alerts,
    changes_text,
    fingerprint,
    generator_url,
    group_key,
    group_transitions,
    rfc3339,
    webhook_body,
)
from engine.core.config import CalendarPeriod, Slo
from engine.core.evaluator import ChangeNote, Transition
from engine.core.taxonomy import SliKind

RFC3339_Z = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{3})?Z$")
FIRED_AT = 1_700_000_000.0
RESOLVED_AT = 1_700_003_600.0
EXTERNAL = "http://burnrate.example:8080"


def make_slo(**changes: Any) -> Slo:
    fields: dict[str, Any] = {
        "name": "checkout-availability",
        "service": "checkout",
        "sli": SliKind.AVAILABILITY,
        "objective": 99.9,
        "period": "30d",
    }
    fields.update(changes)
    return Slo(**fields)


def make_tr(**changes: Any) -> Transition:
    fields: dict[str, Any] = {
        "slo": "checkout-availability",
        "severity": "page",
        "state": "firing",
        "at": FIRED_AT,
        "long_window_s": 3600,
        "short_window_s": 300,
        "burn_rate_long": 15.0,
        "burn_rate_short": 20.0,
        "factor": 14.4,
        "error_budget_remaining_ratio": 0.75,
    }
    fields.update(changes)
    return Transition(**fields)


def resolved_tr(**changes: Any) -> Transition:
    fields: dict[str, Any] = {
        "state": "resolved",
        "at": RESOLVED_AT,
        "burn_rate_long": 2.0,
        "burn_rate_short": 0.5,
    }
    fields.update(changes)
    return make_tr(**fields)


def decode(body: bytes) -> Any:
    return json.loads(body)


# -- labels -------------------------------------------------------------------------------


def test_labels_are_exactly_the_built_ins_for_an_slo_without_configured_labels() -> None:
    assert alert_labels(make_tr(), make_slo()) == {
        "alertname": "SLOErrorBudgetBurn",
        "slo": "checkout-availability",
        "service": "checkout",
        "severity": "page",
        "long_window": "1h",
        "short_window": "5m",
    }


def test_configured_labels_are_kept_next_to_the_built_ins() -> None:
    slo = make_slo(labels={"team": "payments", "tier": "1"})
    assert alert_labels(make_tr(severity="ticket"), slo) == {
        "alertname": ALERTNAME,
        "slo": "checkout-availability",
        "service": "checkout",
        "severity": "ticket",
        "long_window": "1h",
        "short_window": "5m",
        "team": "payments",
        "tier": "1",
    }


@pytest.mark.parametrize(
    "name", ["alertname", "slo", "service", "severity", "long_window", "short_window"]
)
def test_a_configured_label_never_overrides_a_built_in(name: str) -> None:
    slo = make_slo(labels={name: "hijacked", "team": "payments"})
    labels = alert_labels(make_tr(), slo)
    assert labels[name] != "hijacked"
    assert labels["team"] == "payments"
    assert labels == alert_labels(make_tr(), make_slo(labels={"team": "payments"}))


def test_the_window_labels_are_those_of_the_row_that_fired_also_when_resolved() -> None:
    slo = make_slo()
    fired = make_tr(long_window_s=3600, short_window_s=300)
    # The fast burn tapered into a slow one: the resolved transition names the 6h row.
    later = resolved_tr(long_window_s=21600, short_window_s=1800)
    firing_labels = alert_labels(fired, slo)
    resolved_labels = alert_labels(later, slo, fired)
    assert resolved_labels == firing_labels
    assert (resolved_labels["long_window"], resolved_labels["short_window"]) == ("1h", "5m")
    assert fingerprint(resolved_labels) == fingerprint(firing_labels)
    # The later row stays visible, in the annotations.
    notes = alert_annotations(later, slo)
    assert (notes["long_window"], notes["short_window"]) == ("6h", "30m")


def test_without_the_firing_transition_the_labels_name_the_transitions_own_windows() -> None:
    labels = alert_labels(resolved_tr(long_window_s=21600, short_window_s=1800), make_slo())
    assert (labels["long_window"], labels["short_window"]) == ("6h", "30m")


def test_fired_must_be_a_firing_transition_of_the_same_alert() -> None:
    slo = make_slo()
    with pytest.raises(ValueError, match="firing transition"):
        alert_labels(resolved_tr(), slo, resolved_tr())
    with pytest.raises(ValueError, match="ticket"):
        alert_labels(resolved_tr(), slo, make_tr(severity="ticket"))
    with pytest.raises(ValueError, match="other"):
        alert_labels(resolved_tr(), slo, make_tr(slo="other"))


def test_a_transition_paired_with_another_slos_config_is_refused() -> None:
    with pytest.raises(ValueError, match="other"):
        alert_labels(make_tr(), make_slo(name="other"))
    with pytest.raises(ValueError, match="other"):
        alert_annotations(make_tr(), make_slo(name="other"))


# -- annotations --------------------------------------------------------------------------


def test_annotations_carry_summary_description_numbers_windows_and_runbook() -> None:
    slo = make_slo(runbook_url="https://runbooks.example/checkout")
    notes = alert_annotations(make_tr(), slo)
    assert set(notes) == {
        "summary",
        "description",
        "burn_rate_long",
        "burn_rate_short",
        "factor",
        "error_budget_remaining",
        "long_window",
        "short_window",
        "runbook_url",
    }
    assert all(isinstance(v, str) for v in notes.values())
    assert float(notes["burn_rate_long"]) == 15.0
    assert float(notes["burn_rate_short"]) == 20.0
    assert float(notes["factor"]) == 14.4
    assert float(notes["error_budget_remaining"]) == 0.75
    assert (notes["long_window"], notes["short_window"]) == ("1h", "5m")
    assert notes["runbook_url"] == "https://runbooks.example/checkout"


def test_runbook_url_is_left_out_when_not_configured() -> None:
    assert "runbook_url" not in alert_annotations(make_tr(), make_slo())


def test_the_firing_description_explains_objective_rates_budget_and_time_to_exhaustion() -> None:
    text = alert_annotations(make_tr(), make_slo())["description"]
    for part in (
        "checkout-availability",
        "service checkout",
        "objective 99.9% over 30d",
        "15x over the last 1h",
        "20x over the last 5m",
        "page threshold of 14.4x",
        "75% of the error budget remains",
        # 30d / 15 = 2d, and 75% of that is 1d12h.
        "a whole 30d budget would be spent in 2d",
        "what remains in about 1d12h",
    ):
        assert part in text, part


def test_a_calendar_slo_is_described_by_its_calendar_and_its_nominal_length() -> None:
    period = CalendarPeriod(calendar="month", time_zone="Europe/Berlin")
    text = alert_annotations(make_tr(), make_slo(period=period))["description"]
    assert "objective 99.9% over calendar month (Europe/Berlin)" in text
    assert "(1x spends exactly the whole budget in 30d)" in text
    assert "a whole 30d budget would be spent in 2d" in text


def test_the_summary_says_what_is_happening() -> None:
    firing = alert_annotations(make_tr(), make_slo())["summary"]
    resolved = alert_annotations(resolved_tr(), make_slo())["summary"]
    assert "burning its error budget at 15x over 1h" in firing
    assert "back under the page threshold of 14.4x" in resolved


def test_the_resolved_description_reports_current_rates_without_an_exhaustion_estimate() -> None:
    text = alert_annotations(resolved_tr(), make_slo())["description"]
    assert "no longer burning" in text
    assert "2x over the last 1h" in text
    assert "0.5x over the last 5m" in text
    assert "would be spent" not in text


def test_missing_numbers_read_as_nan_for_machines_and_no_data_for_people() -> None:
    tr = resolved_tr(burn_rate_long=None, burn_rate_short=None, error_budget_remaining_ratio=None)
    notes = alert_annotations(tr, make_slo())
    assert notes["burn_rate_long"] == notes["burn_rate_short"] == "NaN"
    assert notes["error_budget_remaining"] == "NaN"
    assert "no data over the last 1h" in notes["description"]
    assert "Error budget remaining: no data" in notes["description"]


def test_an_exhausted_budget_is_said_plainly() -> None:
    notes = alert_annotations(make_tr(error_budget_remaining_ratio=-0.2), make_slo())
    assert "exhausted (-20% remaining)" in notes["description"]
    assert "what remains" not in notes["description"]


def test_the_slo_description_is_appended() -> None:
    slo = make_slo(description="Checkout requests succeed.")
    assert alert_annotations(make_tr(), slo)["description"].endswith(
        "\n\nCheckout requests succeed."
    )


# -- fingerprint --------------------------------------------------------------------------


def test_fingerprint_matches_the_prometheus_label_set_construction() -> None:
    # Published test vector of Prometheus' label-set fingerprint (FNV-1a 64).
    labels = {"name": "garland, briggs", "fear": "love is not enough"}
    assert fingerprint(labels) == f"{5799056148416392346:016x}"
    assert fingerprint({}) == f"{14695981039346656037:016x}"


@given(st.dictionaries(st.text(min_size=1), st.text(), max_size=8), st.randoms())
def test_fingerprint_does_not_depend_on_label_order(labels: dict[str, str], rng: Any) -> None:
    items = list(labels.items())
    rng.shuffle(items)
    fp = fingerprint(labels)
    assert fingerprint(dict(items)) == fp
    assert re.fullmatch(r"[0-9a-f]{16}", fp)


def test_fingerprint_changes_when_any_label_changes() -> None:
    base = alert_labels(make_tr(), make_slo())
    seen = {fingerprint(base)}
    for name in base:
        seen.add(fingerprint({**base, name: base[name] + "x"}))
    seen.add(fingerprint({**base, "extra": ""}))
    assert len(seen) == len(base) + 2


def test_fingerprint_is_a_fixed_value_so_receivers_dedupe_across_upgrades() -> None:
    # Pinned: a change here changes every alert's identity in receivers' eyes.
    labels = alert_labels(make_tr(), make_slo())
    assert fingerprint(labels) == "15a21611bd821f7a"
    assert fingerprint(dict(reversed(labels.items()))) == "15a21611bd821f7a"


# -- times and urls -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("epoch_s", "text"),
    [
        pytest.param(0, "1970-01-01T00:00:00Z", id="the-epoch"),
        pytest.param(1614265330, "2021-02-25T15:02:10Z", id="whole-seconds-have-no-fraction"),
        pytest.param(1614265330.25, "2021-02-25T15:02:10.250Z", id="fractions-in-milliseconds"),
        pytest.param(1614265330.9996, "2021-02-25T15:02:11Z", id="rounding-carries-a-second"),
    ],
)
def test_times_are_rfc3339_in_utc(epoch_s: float, text: str) -> None:
    assert rfc3339(epoch_s) == text
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    assert abs(parsed.timestamp() - epoch_s) < 0.001
    assert parsed.tzinfo == UTC


def test_a_non_finite_time_is_refused() -> None:
    with pytest.raises(ValueError, match="not a time"):
        rfc3339(float("nan"))


def test_generator_url_points_at_the_slo_in_the_engine_api() -> None:
    assert generator_url("http://h:8080/", "a.b-c") == "http://h:8080/v1/slos/a.b-c"
    assert generator_url("http://h:8080", "a.b-c") == "http://h:8080/v1/slos/a.b-c"


def test_group_key_renders_the_group_labels_sorted_and_quoted() -> None:
    key = group_key({"slo": "x", "alertname": "A", "severity": 'p"q'})
    assert key == '{}:{alertname="A", severity="p\\"q", slo="x"}'


# -- webhook v4 ---------------------------------------------------------------------------

V4_KEYS = {
    "version",
    "groupKey",
    "truncatedAlerts",
    "status",
    "receiver",
    "groupLabels",
    "commonLabels",
    "commonAnnotations",
    "externalURL",
    "alerts",
}
V4_ALERT_KEYS = {
    "status",
    "labels",
    "annotations",
    "startsAt",
    "endsAt",
    "generatorURL",
    "fingerprint",
}


def assert_string_map(value: Any) -> None:
    assert isinstance(value, dict)
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in value.items())


def assert_v4_shape(msg: Any) -> None:
    assert set(msg) == V4_KEYS
    assert msg["version"] == "4"
    assert msg["truncatedAlerts"] == 0
    assert isinstance(msg["truncatedAlerts"], int)
    assert msg["status"] in ("firing", "resolved")
    for name in ("groupKey", "receiver", "externalURL"):
        assert isinstance(msg[name], str)
    for name in ("groupLabels", "commonLabels", "commonAnnotations"):
        assert_string_map(msg[name])
    assert isinstance(msg["alerts"], list)
    assert msg["alerts"]
    for alert in msg["alerts"]:
        assert set(alert) == V4_ALERT_KEYS
        assert alert["status"] in ("firing", "resolved")
        assert_string_map(alert["labels"])
        assert_string_map(alert["annotations"])
        assert RFC3339_Z.match(alert["startsAt"])
        assert alert["endsAt"] == ZERO_TIME or RFC3339_Z.match(alert["endsAt"])
        assert alert["fingerprint"] == fingerprint(alert["labels"])


def test_a_firing_webhook_body_has_the_v4_shape_and_values() -> None:
    slo = make_slo(labels={"team": "payments"}, runbook_url="https://rb.example/x")
    tr = make_tr()
    msg = decode(webhook_body([(tr, slo)], receiver="oncall", external_url=EXTERNAL))
    assert_v4_shape(msg)
    labels = alert_labels(tr, slo)
    assert msg["status"] == "firing"
    assert msg["receiver"] == "oncall"
    assert msg["externalURL"] == EXTERNAL
    assert msg["groupLabels"] == {
        "alertname": ALERTNAME,
        "slo": "checkout-availability",
        "severity": "page",
    }
    assert msg["groupKey"] == group_key(msg["groupLabels"])
    assert msg["commonLabels"] == labels
    assert msg["commonAnnotations"] == alert_annotations(tr, slo)
    [alert] = msg["alerts"]
    assert alert == {
        "status": "firing",
        "labels": labels,
        "annotations": alert_annotations(tr, slo),
        "startsAt": "2023-11-14T22:13:20Z",
        "endsAt": ZERO_TIME,
        "generatorURL": f"{EXTERNAL}/v1/slos/checkout-availability",
        "fingerprint": fingerprint(labels),
    }


def test_a_resolved_webhook_body_ends_at_the_resolve_time_and_starts_when_it_fired() -> None:
    fired = make_tr()
    tr = resolved_tr(long_window_s=21600, short_window_s=1800)
    msg = decode(
        webhook_body(
            [(tr, make_slo())],
            receiver="oncall",
            external_url=EXTERNAL,
            fired=lambda t: fired if t.slo == tr.slo else None,
        )
    )
    assert_v4_shape(msg)
    assert msg["status"] == "resolved"
    [alert] = msg["alerts"]
    assert alert["status"] == "resolved"
    assert alert["startsAt"] == rfc3339(FIRED_AT)
    assert alert["endsAt"] == rfc3339(RESOLVED_AT) == "2023-11-14T23:13:20Z"
    assert alert["labels"] == alert_labels(fired, make_slo())
    assert alert["fingerprint"] == fingerprint(alert_labels(fired, make_slo()))
    assert (alert["annotations"]["long_window"], alert["annotations"]["short_window"]) == (
        "6h",
        "30m",
    )


def test_without_a_fired_lookup_an_alert_starts_at_its_transition() -> None:
    for tr in (make_tr(), resolved_tr()):
        for lookup in (None, lambda _t: None):
            body = webhook_body(
                [(tr, make_slo())], receiver="r", external_url=EXTERNAL, fired=lookup
            )
            assert decode(body)["alerts"][0]["startsAt"] == rfc3339(tr.at)


def test_a_firing_earlier_in_the_same_body_is_what_fired_a_resolved_alert() -> None:
    slo = make_slo()
    later = resolved_tr(long_window_s=21600, short_window_s=1800)
    msg = decode(
        webhook_body([(make_tr(), slo), (later, slo)], receiver="r", external_url=EXTERNAL)
    )
    firing, resolved = msg["alerts"]
    assert resolved["labels"] == firing["labels"]
    assert resolved["labels"]["long_window"] == "1h"
    assert resolved["startsAt"] == rfc3339(FIRED_AT)


def test_a_fired_lookup_naming_another_alert_is_refused() -> None:
    with pytest.raises(ValueError, match="ticket"):
        webhook_body(
            [(resolved_tr(), make_slo())],
            receiver="r",
            external_url=EXTERNAL,
            fired=lambda _t: make_tr(severity="ticket"),
        )


def test_firing_and_resolved_of_one_alert_in_one_body_make_a_firing_group() -> None:
    slo = make_slo()
    msg = decode(
        webhook_body([(make_tr(), slo), (resolved_tr(), slo)], receiver="r", external_url=EXTERNAL)
    )
    assert_v4_shape(msg)
    assert msg["status"] == "firing"
    assert [a["status"] for a in msg["alerts"]] == ["firing", "resolved"]
    assert msg["commonLabels"] == alert_labels(make_tr(), slo)
    # Rates differ between the two, the runbook-free windows do not.
    assert "burn_rate_long" not in msg["commonAnnotations"]
    assert msg["commonAnnotations"]["long_window"] == "1h"


def test_a_webhook_body_refuses_an_empty_list_or_mixed_groups() -> None:
    slo = make_slo()
    with pytest.raises(ValueError, match="at least one"):
        webhook_body([], receiver="r", external_url=EXTERNAL)
    with pytest.raises(ValueError, match="group_transitions"):
        webhook_body(
            [(make_tr(), slo), (make_tr(severity="ticket"), slo)],
            receiver="r",
            external_url=EXTERNAL,
        )


def test_transitions_are_grouped_by_alertname_slo_and_severity() -> None:
    a, b = make_slo(), make_slo(name="search-latency", service="search")
    page_a, ticket_a = (make_tr(), a), (make_tr(severity="ticket"), a)
    page_b = (make_tr(slo="search-latency"), b)
    assert group_transitions([page_a, page_b, ticket_a]) == [[page_a], [page_b], [ticket_a]]
    assert group_transitions([]) == []


def test_one_alert_changing_twice_is_split_into_bodies_in_order() -> None:
    slo = make_slo()
    fired, resolved, refired = (
        (make_tr(), slo),
        (resolved_tr(), slo),
        (make_tr(at=RESOLVED_AT + 60), slo),
    )
    assert group_transitions([fired, resolved, refired]) == [[fired], [resolved], [refired]]


# -- Alertmanager API v2 ------------------------------------------------------------------


def test_api_v2_alerts_have_exactly_the_postable_fields() -> None:
    slo = make_slo(labels={"team": "payments"})
    items = [(make_tr(), slo), (resolved_tr(severity="ticket"), slo)]
    body = decode(
        alertmanager_alerts(items, external_url=EXTERNAL, now_s=FIRED_AT + 30, horizon_s=240)
    )
    assert isinstance(body, list)
    assert len(body) == 2
    for alert, (tr, s) in zip(body, items, strict=True):
        assert set(alert) == {"labels", "annotations", "startsAt", "endsAt", "generatorURL"}
        assert alert["labels"] == alert_labels(tr, s)
        assert alert["annotations"] == alert_annotations(tr, s)
        assert RFC3339_Z.match(alert["startsAt"])
        assert RFC3339_Z.match(alert["endsAt"])
        assert alert["generatorURL"] == f"{EXTERNAL}/v1/slos/checkout-availability"


def test_a_firing_alert_ends_a_horizon_after_now_and_a_resolved_one_when_it_resolved() -> None:
    slo = make_slo()
    now = RESOLVED_AT + 600
    firing, resolved = decode(
        alertmanager_alerts(
            [(make_tr(), slo), (resolved_tr(long_window_s=21600, short_window_s=1800), slo)],
            external_url=EXTERNAL,
            now_s=now,
            horizon_s=240,
            fired=lambda _t: make_tr(),
        )
    )
    assert firing["startsAt"] == rfc3339(FIRED_AT)
    assert firing["endsAt"] == rfc3339(now + 240)
    assert resolved["startsAt"] == rfc3339(FIRED_AT)
    assert resolved["endsAt"] == rfc3339(RESOLVED_AT)
    assert resolved["labels"] == firing["labels"] == alert_labels(make_tr(), slo)


def test_api_v2_times_never_lie_ahead_of_the_wall_clock_where_that_would_keep_an_alert() -> None:
    # Event time 5 min ahead of the wall clock (within future_limit): the resolved alert
    # must end now, or Alertmanager keeps it active; it must not start after it ends.
    slo = make_slo()
    now = FIRED_AT - 300
    firing, resolved = decode(
        alertmanager_alerts(
            [(make_tr(), slo), (resolved_tr(at=FIRED_AT + 60), slo)],
            external_url=EXTERNAL,
            now_s=now,
            horizon_s=240,
        )
    )
    assert firing["startsAt"] == rfc3339(now)
    assert firing["endsAt"] == rfc3339(now + 240)
    assert resolved["startsAt"] == resolved["endsAt"] == rfc3339(now)


def test_api_v2_body_for_nothing_is_an_empty_list_and_the_horizon_must_be_positive() -> None:
    assert alertmanager_alerts([], external_url=EXTERNAL, now_s=0, horizon_s=1) == b"[]"
    with pytest.raises(ValueError, match="horizon_s"):
        alertmanager_alerts([], external_url=EXTERNAL, now_s=0, horizon_s=0)


# -- grouped SLOs ---------------------------------------------------------------------------


def test_a_grouped_slos_alert_carries_its_group_label_and_names_it() -> None:
    slo = make_slo(group_by=["region"], labels={"group": "ignored"})
    tr = make_tr(group="region=eu")
    assert alert_labels(tr, slo)["group"] == "region=eu"
    annotations = alert_annotations(tr, slo)
    assert "SLO checkout-availability group region=eu (checkout)" in annotations["summary"]
    assert "group region=eu" in annotations["description"]
    assert "group" not in alert_labels(make_tr(), make_slo())


def test_groups_of_one_slo_are_distinct_alerts_in_one_body() -> None:
    slo = make_slo(group_by=["region"])
    eu, us = make_tr(group="region=eu"), make_tr(group="region=us")
    assert fingerprint(alert_labels(eu, slo)) != fingerprint(alert_labels(us, slo))
    assert group_transitions([(eu, slo), (us, slo)]) == [[(eu, slo), (us, slo)]]
    body = decode(webhook_body([(eu, slo), (us, slo)], receiver="r", external_url=EXTERNAL))
    assert [a["labels"]["group"] for a in body["alerts"]] == ["region=eu", "region=us"]
    assert body["alerts"][0]["generatorURL"].endswith(
        "/v1/slos/checkout-availability?group=region%3Deu"
    )
    with pytest.raises(ValueError, match="region=us"):
        alert_labels(resolved_tr(group="region=eu"), slo, us)


NOTES = (
    ChangeNote(
        id=2, kind="deploy", version="4.2.1", at=1_700_000_000.0, error_budget_consumed_ratio=0.035
    ),
    ChangeNote(id=1, kind="flag", at=1_699_999_000.0),
)


def test_an_alert_in_a_change_window_names_the_changes_in_every_body() -> None:
    slo = make_slo()
    tr = make_tr(changes=NOTES)
    text = (
        "deploy 4.2.1 at 2023-11-14T22:13:20Z: 3.5% of the error budget consumed since; "
        "flag at 2023-11-14T21:56:40Z: no data yet consumed since"
    )
    assert alert_annotations(tr, slo)["changes"] == text
    assert changes_text(NOTES) == text
    msg = decode(webhook_body([(tr, slo)], receiver="oncall", external_url=EXTERNAL))
    assert_v4_shape(msg)
    assert msg["alerts"][0]["annotations"]["changes"] == text
    posted_body = alertmanager_alerts(
        [(tr, slo)], external_url=EXTERNAL, now_s=FIRED_AT, horizon_s=300
    )
    [posted] = decode(posted_body)
    assert posted["annotations"]["changes"] == text
    assert "changes" not in alert_annotations(make_tr(), slo)  # others as before
