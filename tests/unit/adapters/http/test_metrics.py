"""The /metrics body: the per-SLO series written by `SloText`, the health series of
`EngineCollector`, and the per-tick cache of `EngineMetrics`, parsed back with
prometheus_client's own parser."""

from __future__ import annotations

import math
from collections.abc import Mapping

import pytest
from prometheus_client.parser import text_string_to_metric_families

from engine.adapters.http import metrics as metrics_module
from engine.adapters.http.api import SloApi
from engine.adapters.http.metrics import EngineCollector, EngineMetrics, SloText
from engine.adapters.kafka.status import SourceStatus
from engine.core.config import parse_config
from engine.core.decode import Event
from engine.core.evaluator import Evaluator

T0 = 1_700_000_000.0
"""The last evaluation time (on the 10 s grid): every window is (T0 - W, T0]."""

CONFIG = """
slos:
  - name: api-avail
    service: api
    sli: availability
    objective: 99
    period: 1h
    labels: {team: payments, tier: "1"}
  - {name: web-lat, service: web, sli: latency, threshold_ms: 100, objective: 90, period: 1h}
  - {name: idle-avail, service: idle, sli: availability, objective: 99, period: 1h}
policy:
  - {severity: page, long: 5m, short: 1m, burn_rate: 10}
  - {severity: ticket, long: 30m, short: 5m, burn_rate: 1}
evaluation: {tick: 10s}
"""
WINDOWS = ["1m", "5m", "30m", "1h"]
ALLOWED_LABELS = {"slo", "window", "severity", "reason", "topic", "partition", "le"} | {
    "receiver",  # a configured receiver's name
    "outcome",  # a fixed set of delivery outcomes
}
"""Bounded by the config; the module docstring lists all but the delivery counters'."""

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def events() -> list[Event]:
    """web: 20 requests over (T0-1200, T0-1181], 1 slow (in 30m and 1h only);
    api: 100 requests over (T0-50, T0], 20 failed (in every window); idle: nothing;
    plus one event of an unknown service with a payload no label may carry."""
    out = [
        Event(service="web", ts=T0 - 1200 + i, status=200, latency_ms=500.0 if i == 3 else 20.0)
        for i in range(20)
    ]
    out += [
        Event(service="api", ts=T0 - 50 + i * 0.5, status=503 if i % 5 == 0 else 200)
        for i in range(100)
    ]
    out.append(Event(service='evil"svc', operation="GET /secret", ts=T0 - 1, status=500))
    return out


def fed() -> Evaluator:
    ev = Evaluator(parse_config(CONFIG))
    ev.ingest(ev.classifier.columns(events()))
    ev.advance(T0 + 1)
    assert ev.evaluated_at_s == T0
    return ev


def samples(text: str) -> Samples:
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            key = (s.name, frozenset(s.labels.items()))
            assert key not in out, f"duplicate series {key}"
            out[key] = s.value
    return out


def k(name: str, **labels: str) -> tuple[str, frozenset[tuple[str, str]]]:
    return (name, frozenset(labels.items()))


def series_of(got: Samples, name: str) -> dict[frozenset[tuple[str, str]], float]:
    return {labels: v for (n, labels), v in got.items() if n == name}


# -- the per-SLO series ---------------------------------------------------------------


def test_objectives_are_ratios_for_every_slo() -> None:
    got = samples(SloText(fed()).render())
    assert series_of(got, "burnrate_slo_objective_ratio") == {
        frozenset({("slo", "api-avail")}): 0.99,
        frozenset({("slo", "web-lat")}): 0.9,
        frozenset({("slo", "idle-avail")}): 0.99,
    }


def test_error_ratios_and_burn_rates_per_window_with_data() -> None:
    got = samples(SloText(fed()).render())
    ratios = series_of(got, "burnrate_slo_error_ratio")
    burns = series_of(got, "burnrate_slo_burn_rate")
    api = {frozenset({("slo", "api-avail"), ("window", w)}) for w in WINDOWS}
    web = {frozenset({("slo", "web-lat"), ("window", w)}) for w in ("30m", "1h")}
    assert set(ratios) == api | web
    assert set(burns) == api | web
    for w in WINDOWS:
        assert got[k("burnrate_slo_error_ratio", slo="api-avail", window=w)] == pytest.approx(0.2)
        # 20% errors against a 1% budget
        assert got[k("burnrate_slo_burn_rate", slo="api-avail", window=w)] == pytest.approx(20)
    for w in ("30m", "1h"):
        assert got[k("burnrate_slo_error_ratio", slo="web-lat", window=w)] == pytest.approx(0.05)
        # 5% slow against a 10% budget
        assert got[k("burnrate_slo_burn_rate", slo="web-lat", window=w)] == pytest.approx(0.5)


def test_windows_without_events_have_no_series_rather_than_nan() -> None:
    text = SloText(fed()).render()
    assert "NaN" not in text
    got = samples(text)
    assert not any(math.isnan(v) for v in got.values())
    for w in ("1m", "5m"):
        assert k("burnrate_slo_burn_rate", slo="web-lat", window=w) not in got
        assert k("burnrate_slo_error_ratio", slo="web-lat", window=w) not in got
    for name, labels in got:
        assert ("slo", "idle-avail") not in labels or name in {
            "burnrate_slo_objective_ratio",
            "burnrate_slo_events_total",
            "burnrate_slo_bad_events_total",
            "burnrate_slo_excluded_events_total",
            "burnrate_alert_firing",
        }, name
    assert k("burnrate_slo_error_budget_remaining_ratio", slo="idle-avail") not in got


def test_an_evaluator_without_events_has_no_ratio_series_at_all() -> None:
    got = samples(SloText(Evaluator(parse_config(CONFIG))).render())
    for name in (
        "burnrate_slo_error_ratio",
        "burnrate_slo_burn_rate",
        "burnrate_slo_error_budget_remaining_ratio",
    ):
        assert series_of(got, name) == {}
    assert set(series_of(got, "burnrate_slo_events_total").values()) == {0.0}
    assert set(series_of(got, "burnrate_alert_firing").values()) == {0.0}


def test_budget_remaining_over_the_period() -> None:
    got = samples(SloText(fed()).render())
    assert series_of(got, "burnrate_slo_error_budget_remaining_ratio") == {
        frozenset({("slo", "api-avail")}): pytest.approx(1 - 20),  # overspent 19 times over
        frozenset({("slo", "web-lat")}): pytest.approx(0.5),
    }


def test_event_totals_count_every_event_of_each_slo() -> None:
    got = samples(SloText(fed()).render())
    assert series_of(got, "burnrate_slo_events_total") == {
        frozenset({("slo", "api-avail")}): 100.0,
        frozenset({("slo", "web-lat")}): 20.0,
        frozenset({("slo", "idle-avail")}): 0.0,
    }
    assert series_of(got, "burnrate_slo_bad_events_total") == {
        frozenset({("slo", "api-avail")}): 20.0,
        frozenset({("slo", "web-lat")}): 1.0,
        frozenset({("slo", "idle-avail")}): 0.0,
    }


def test_alert_firing_for_every_slo_and_severity() -> None:
    ev = fed()
    got = samples(SloText(ev).render())
    assert series_of(got, "burnrate_alert_firing") == {
        frozenset({("slo", "api-avail"), ("severity", "page")}): 1.0,
        frozenset({("slo", "api-avail"), ("severity", "ticket")}): 1.0,
        frozenset({("slo", "web-lat"), ("severity", "page")}): 0.0,
        frozenset({("slo", "web-lat"), ("severity", "ticket")}): 0.0,
        frozenset({("slo", "idle-avail"), ("severity", "page")}): 0.0,
        frozenset({("slo", "idle-avail"), ("severity", "ticket")}): 0.0,
    }


def test_the_text_holds_the_evaluators_numbers_to_the_last_bit() -> None:
    ev = fed()
    got = samples(SloText(ev).render())
    burns, ratios = ev.burn_rates(), ev.error_ratios()
    for wi, w in enumerate(ev.windows_s):
        label = WINDOWS[wi]
        assert w == [60, 300, 1800, 3600][wi]
        for si, name in enumerate(ev.names):
            key = k("burnrate_slo_burn_rate", slo=name, window=label)
            if math.isnan(burns[wi, si]):
                assert key not in got
            else:
                assert got[key] == float(burns[wi, si])
                ratio = got[k("burnrate_slo_error_ratio", slo=name, window=label)]
                assert ratio == float(ratios[wi, si])
    remaining = ev.budget_remaining()
    assert got[k("burnrate_slo_error_budget_remaining_ratio", slo="api-avail")] == float(
        remaining[0]
    )


def test_each_family_is_typed() -> None:
    types = {f.name: f.type for f in text_string_to_metric_families(SloText(fed()).render())}
    assert types == {
        "burnrate_slo_objective_ratio": "gauge",
        "burnrate_slo_error_ratio": "gauge",
        "burnrate_slo_burn_rate": "gauge",
        "burnrate_slo_error_budget_remaining_ratio": "gauge",
        "burnrate_slo_error_budget_exhaustion_seconds": "gauge",
        "burnrate_slo_events": "counter",
        "burnrate_slo_bad_events": "counter",
        "burnrate_slo_excluded_events": "counter",
        "burnrate_alert_firing": "gauge",
    }


def test_a_render_reads_the_evaluator_as_it_is_now() -> None:
    ev = fed()
    text = SloText(ev)
    before = samples(text.render())
    ev.ingest(ev.classifier.columns([Event(service="idle", ts=T0 + 2, status=500)]))
    ev.advance(T0 + 11)
    after = samples(text.render())
    assert before[k("burnrate_slo_events_total", slo="idle-avail")] == 0.0
    assert after[k("burnrate_slo_events_total", slo="idle-avail")] == 1.0
    assert after[k("burnrate_slo_error_ratio", slo="idle-avail", window="1m")] == 1.0
    assert k("burnrate_slo_error_ratio", slo="idle-avail", window="1m") not in before


# -- labels ---------------------------------------------------------------------------


def full_body(ev: Evaluator, status: SourceStatus | None = None) -> Samples:
    m = EngineMetrics(ev, lambda: status, clock=lambda: T0 + 5)
    m.collector.deliveries = lambda: {("hook", "ok"): 3}
    return samples(m.render().decode())


def status() -> SourceStatus:
    return SourceStatus(
        assigned=(("events", 0), ("events", 1)),
        last_fetch_age_s=2.5,
        last_fetch_at=T0,
        lag={("events", 0): 4, ("events", 1): 0},
        records_consumed=1234,
        running=True,
        spans_ignored=77,
    )


def test_labels_come_from_the_config_never_from_events() -> None:
    ev = fed()
    ev.reject("undecodable", 2)
    got = full_body(ev, status())
    windows = set(WINDOWS)
    for name, labels in got:
        keys = {key for key, _ in labels}
        assert keys <= ALLOWED_LABELS, (name, keys)
        values = dict(labels)
        if "slo" in values:
            assert values["slo"] in ev.names
        if "window" in values:
            assert values["window"] in windows
        if "severity" in values:
            assert values["severity"] in ev.severities
        for value in values.values():
            assert "evil" not in value
            assert "secret" not in value
            assert "payments" not in value  # the SLO's own labels are not exported


# -- the collector --------------------------------------------------------------------


def test_health_series_from_the_source_status_and_the_evaluator() -> None:
    ev = fed()
    ev.reject("undecodable", 2)
    ev.ingest(ev.classifier.columns([Event(service="api", ts=T0 - 3600, status=200)]))
    got = full_body(ev, status())
    assert got[k("burnrate_records_consumed_total")] == 1234
    assert series_of(got, "burnrate_records_rejected_total") == {
        frozenset({("reason", reason)}): float(n) for reason, n in ev.counts().rejected.items()
    }
    assert got[k("burnrate_records_rejected_total", reason="undecodable")] == 2
    assert got[k("burnrate_records_rejected_total", reason="too_late")] == 1
    assert got[k("burnrate_events_unmatched_total")] == 1  # the evil"svc event
    assert got[k("burnrate_spans_ignored_total")] == 77
    assert series_of(got, "burnrate_consumer_lag") == {
        frozenset({("topic", "events"), ("partition", "0")}): 4.0,
        frozenset({("topic", "events"), ("partition", "1")}): 0.0,
    }
    # the clock says T0 + 5; the watermark is the last accepted event time
    assert got[k("burnrate_event_time_lag_seconds")] == pytest.approx(T0 + 5 - ev.watermark_s)
    assert got[k("burnrate_last_fetch_age_seconds")] == 2.5
    assert got[k("burnrate_webhook_deliveries_total", receiver="hook", outcome="ok")] == 3


def test_without_a_source_the_health_series_are_zero_or_absent() -> None:
    ev = Evaluator(parse_config(CONFIG))
    collector = EngineCollector(ev, lambda: None, clock=lambda: T0)
    families = {f.name: f for f in collector.collect()}
    assert [s.value for s in families["burnrate_records_consumed"].samples] == [0]
    assert [s.value for s in families["burnrate_spans_ignored"].samples] == [0]
    assert families["burnrate_records_rejected"].samples == []
    assert families["burnrate_consumer_lag"].samples == []
    # no event yet: no event-time lag (rather than an infinite one)
    assert families["burnrate_event_time_lag_seconds"].samples == []
    assert "burnrate_last_fetch_age_seconds" not in families
    assert "burnrate_webhook_deliveries" not in families  # not set by the runtime


def test_event_time_lag_is_never_negative() -> None:
    ev = fed()
    collector = EngineCollector(ev, lambda: None, clock=lambda: ev.watermark_s - 30)
    families = {f.name: f for f in collector.collect()}
    assert [s.value for s in families["burnrate_event_time_lag_seconds"].samples] == [0.0]


# -- the cached body ------------------------------------------------------------------


def counts_in(body: bytes) -> Mapping[tuple[str, frozenset[tuple[str, str]]], float]:
    return samples(body.decode())


def test_the_body_is_cached_until_the_next_tick(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(metrics_module, "RENDER_BUDGET_FACTOR", 0)
    ev = fed()
    m = EngineMetrics(ev, lambda: None, clock=lambda: T0)
    renders: list[int] = []
    m.before_render = lambda: renders.append(m.generation)
    first = m.render()
    assert m.render() is first  # no tick since: the same body, not rendered again
    assert renders == [0]
    ev.ingest(ev.classifier.columns([Event(service="idle", ts=T0 + 2, status=200)]))
    ev.advance(T0 + 11)
    assert m.render() is first  # the tick is not announced yet
    m.invalidate()
    assert m.generation == 1
    fresh = m.render()
    assert renders == [0, 1]
    assert counts_in(first)[k("burnrate_slo_events_total", slo="idle-avail")] == 0
    assert counts_in(fresh)[k("burnrate_slo_events_total", slo="idle-avail")] == 1


def test_an_applied_batch_renders_afresh_without_a_tick(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(metrics_module, "RENDER_BUDGET_FACTOR", 0)
    monkeypatch.setattr(metrics_module, "APPLIED_REFRESH_S", 3600.0)
    ev = fed()
    m = EngineMetrics(ev, lambda: None, clock=lambda: T0)
    first = m.render()
    ev.ingest(ev.classifier.columns([Event(service="idle", ts=T0 + 2, status=200)]))
    m.counted()
    assert m.render() is first  # the body is younger than APPLIED_REFRESH_S
    monkeypatch.setattr(metrics_module, "APPLIED_REFRESH_S", 0.0)
    fresh = m.render()
    assert fresh is not first
    assert m.generation == 0  # not a tick: per-tick caches keep theirs
    assert counts_in(first)[k("burnrate_slo_events_total", slo="idle-avail")] == 0
    assert counts_in(fresh)[k("burnrate_slo_events_total", slo="idle-avail")] == 1
    assert m.render() is fresh  # nothing counted since


def test_the_histograms_are_in_the_body(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(metrics_module, "RENDER_BUDGET_FACTOR", 0)
    m = EngineMetrics(fed(), lambda: None, clock=lambda: T0)
    m.observe_batches([5, 500, 20_000])
    m.evaluation_duration.observe(0.002)
    got = counts_in(m.render())
    assert got[k("burnrate_fetch_batch_records_count")] == 3
    assert got[k("burnrate_fetch_batch_records_sum")] == 20_505
    assert got[k("burnrate_fetch_batch_records_bucket", le="10.0")] == 1
    assert got[k("burnrate_fetch_batch_records_bucket", le="1000.0")] == 2
    assert got[k("burnrate_evaluation_duration_seconds_count")] == 1
    assert got[k("burnrate_evaluation_duration_seconds_bucket", le="0.0025")] == 1


def test_calendar_slos_have_period_gauges_and_their_budget_to_date() -> None:
    cfg = parse_config(
        CONFIG.replace("period: 1h\n", "period: {calendar: week, time_zone: Asia/Kolkata}\n", 1)
    )
    ev = Evaluator(cfg)
    ev.ingest(ev.classifier.columns(events()))
    ev.advance(T0 + 1)
    got = samples(SloText(ev).render())
    name = cfg.slos[0].name
    start, end = ev.period_bounds()
    assert series_of(got, "burnrate_slo_period_start_seconds") == {
        frozenset({("slo", name)}): float(start[0])
    }
    assert series_of(got, "burnrate_slo_period_end_seconds") == {
        frozenset({("slo", name)}): float(end[0])
    }
    assert end[0] - start[0] == 7 * 86400  # Kolkata keeps no DST
    budget = series_of(got, "burnrate_slo_error_budget_remaining_ratio")
    assert budget[frozenset({("slo", name)})] == ev.budget_remaining()[0]


def test_a_config_without_calendar_periods_has_no_period_gauges() -> None:
    text = SloText(fed()).render()
    assert "burnrate_slo_period_start_seconds" not in text


def test_time_to_exhaustion_is_the_apis_to_the_bit_and_absent_while_nothing_burns() -> None:
    ev = fed()
    got = series_of(samples(SloText(ev).render()), "burnrate_slo_error_budget_exhaustion_seconds")
    want = {
        frozenset({("slo", v.name)}): v.error_budget.time_to_exhaustion_s
        for v in SloApi(ev).views()
        if v.error_budget.time_to_exhaustion_s is not None
    }
    assert got == want
    assert frozenset({("slo", "idle-avail")}) not in got  # no data: nothing burns
    assert any(v > 0 for v in got.values())  # one still burning, not yet spent


# -- budget alerts and escalations -----------------------------------------------------------


def test_budget_alerts_and_escalations_have_a_series_per_slo_that_has_them() -> None:
    cfg = CONFIG + (
        "budget_alerts: {projected: false}\n"
        "receivers: [{type: console, name: oncall}]\n"
        "budget_policy: [{budget_remaining_at_most: 0, decision: fail, escalate: [oncall]}]\n"
    )
    ev = Evaluator(parse_config(cfg))
    ev.ingest(ev.classifier.columns(events()))
    ev.advance(T0 + 1)
    got = samples(SloText(ev).render())
    # api: 20% bad against a 1% budget: spent; web: 1 slow of 20 against 10%: half left
    assert series_of(got, "burnrate_budget_alert_firing") == {
        frozenset({("slo", "api-avail"), ("alert", "ErrorBudgetExhausted")}): 1.0,
        frozenset({("slo", "web-lat"), ("alert", "ErrorBudgetExhausted")}): 0.0,
        frozenset({("slo", "idle-avail"), ("alert", "ErrorBudgetExhausted")}): 0.0,
    }
    row = {("policy_row", "$.budget_policy[0]"), ("decision", "fail")}
    assert series_of(got, "burnrate_escalation_firing") == {
        frozenset({("slo", "api-avail"), *row}): 1.0,
        frozenset({("slo", "web-lat"), *row}): 0.0,
        frozenset({("slo", "idle-avail"), *row}): 0.0,
    }
    assert "burnrate_budget_alert_firing" not in SloText(fed()).render()


def test_the_api_lists_each_slos_budget_alerts() -> None:
    cfg = CONFIG + "budget_alerts: {}\n"
    ev = Evaluator(parse_config(cfg))
    ev.ingest(ev.classifier.columns(events()))
    ev.advance(T0 + 1)
    view = SloApi(ev).view("api-avail")
    assert view is not None
    assert [(b.alert, b.firing, b.since) for b in view.budget_alerts] == [
        ("ErrorBudgetExhausted", True, T0 - 50),  # the first tick with its first bad event
        ("ErrorBudgetExhaustionProjected", False, None),
    ]
    plain = SloApi(fed()).view("api-avail")
    assert plain is not None
    assert plain.budget_alerts == []
