"""The evaluate role's /metrics: the union of the owned partitions' evaluators, checked
against one evaluator of the same SLOs fed the same events, parsed back with
prometheus_client's parser (and promtool in tests/integration/test_partitioned_http.py)."""

from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from engine.adapters.http import metrics as metrics_module
from engine.adapters.http.metrics import EngineMetrics
from engine.adapters.http.partitioned_metrics import PartitionedMetrics
from engine.adapters.http.partitions import OwnedPartitions
from engine.adapters.kafka.status import SourceStatus
from engine.core.deltas import partition_keys
from engine.core.durations import format_duration
from engine.core.evaluator import Evaluator
from engine.core.governance import ServiceGate
from tests.unit.adapters.http.partitioned_sample import (
    config,
    fed,
    names_in,
    owned_partitions,
    subset,
)
from tests.unit.adapters.http.test_metrics import Samples, samples

PER_SLO = re.compile(r"burnrate_(slo_|alert_firing|budget_alert_firing|escalation_firing)")
EVALUATOR_FAMILIES = (
    "burnrate_records_rejected_total",
    "burnrate_events_unmatched_total",
    "burnrate_event_time_lag_seconds",
)


def per_slo(got: Samples) -> Samples:
    return {k: v for k, v in got.items() if PER_SLO.match(k[0])}


def single(names: list[str]) -> Evaluator:
    """One evaluator of exactly the SLOs `names`, fed the same events."""
    return fed(subset(config(), names))


def check_text_format(body: str) -> None:
    """One HELP and one TYPE per family, and each family's samples together."""
    helps = re.findall(r"^# HELP (\S+)", body, re.M)
    types = re.findall(r"^# TYPE (\S+)", body, re.M)
    assert len(helps) == len(set(helps)), helps
    assert helps == types
    done: set[str] = set()
    current = None
    for line in body.splitlines():
        if line.startswith("# TYPE "):
            if current is not None:
                done.add(current)
            current = line.split()[2]
        elif line and not line.startswith("#"):
            name = re.split(r"[{ ]", line, maxsplit=1)[0]
            family = max((f for f in types if name == f or name.startswith(f + "_")), key=len)
            assert family not in done, f"samples of {family} after another family"
            assert family == current, line


@pytest.mark.parametrize("owned", [[0, 1, 2, 3], [0], [1, 2], [2, 3, 1]])
def test_the_union_is_one_evaluators_series_for_the_same_slos(owned: list[int]) -> None:
    parts, engines = owned_partitions(owned)
    body = PartitionedMetrics(parts, lambda: None).render().decode()
    check_text_format(body)
    names = names_in(engines)
    want = per_slo(samples(EngineMetrics(single(names), lambda: None).render().decode()))
    got = per_slo(samples(body))
    assert got == want
    assert {dict(labels)["slo"] for _, labels in got} == set(names)


def test_every_configured_slo_is_exported_by_exactly_one_partition() -> None:
    everything = samples(
        PartitionedMetrics(owned_partitions(range(4))[0], lambda: None).render().decode()
    )
    slos = {
        dict(labels)["slo"] for name, labels in everything if name == "burnrate_slo_objective_ratio"
    }
    assert slos == {s.name for s in config().slos}
    by_partition = [
        {
            dict(labels)["slo"]
            for name, labels in samples(
                PartitionedMetrics(owned_partitions([p])[0], lambda: None).render().decode()
            )
            if name == "burnrate_slo_objective_ratio"
        }
        for p in range(4)
    ]
    assert sum(len(s) for s in by_partition) == len(set().union(*by_partition)) == len(slos)


def test_evaluator_families_carry_the_partition_and_process_families_appear_once() -> None:
    parts, engines = owned_partitions([0, 1, 2, 3])
    for ev in engines.values():
        ev.reject("invalid", 2)
    engines[1].reject("undecodable")
    status = SourceStatus(
        running=True,
        assigned=(("burnrate.counts", 1),),
        last_fetch_age_s=0.5,
        last_fetch_at=None,
        records_consumed=42,
        lag={("burnrate.counts", 1): 3},
    )
    got = samples(PartitionedMetrics(parts, lambda: status, clock=lambda: T_LAG).render().decode())
    for p, ev in engines.items():
        counts = ev.counts()
        assert (
            got[
                (
                    "burnrate_records_rejected_total",
                    frozenset({("reason", "invalid"), ("partition", str(p))}),
                )
            ]
            == 2
        )
        assert (
            got[("burnrate_events_unmatched_total", frozenset({("partition", str(p))}))]
            == counts.unmatched_events
        )
        lag = got[("burnrate_event_time_lag_seconds", frozenset({("partition", str(p))}))]
        assert lag == T_LAG - ev.watermark_s
    assert (
        got[
            (
                "burnrate_records_rejected_total",
                frozenset({("reason", "undecodable"), ("partition", "1")}),
            )
        ]
        == 1
    )
    assert got[("burnrate_records_consumed_total", frozenset())] == 42
    assert (
        got[
            ("burnrate_consumer_lag", frozenset({("topic", "burnrate.counts"), ("partition", "1")}))
        ]
        == 3
    )
    for name in EVALUATOR_FAMILIES:
        assert all(dict(labels).get("partition") for n, labels in got if n == name)


T_LAG = 1_700_000_100.0


def test_the_gate_and_change_families_are_written_from_their_hooks() -> None:
    parts, _ = owned_partitions([0, 1])
    metrics = PartitionedMetrics(parts, lambda: None)
    metrics.collector.gates = lambda: [ServiceGate("api", "fail", ("burning",), (), None, (), None)]
    metrics.collector.changes = lambda: {("api", "deploy"): 1}
    body = metrics.render().decode()
    assert 'burnrate_changes_total{kind="deploy",service="api"} 1.0' in body
    assert 'burnrate_gate_decision{decision="fail",service="api"} 1.0' in body
    check_text_format(body)


def test_ownership_changes_show_at_the_next_scrape_without_a_tick() -> None:
    parts, _ = owned_partitions([0, 1, 2, 3])
    metrics = PartitionedMetrics(parts, lambda: None)
    first = samples(metrics.render().decode())
    assert any(dict(labels).get("slo") == "db-avail" for _, labels in first)
    revoked = parts.owned.pop(3)
    gone = samples(metrics.render().decode())  # no invalidate(): the cache must not hide it
    assert not any(dict(labels).get("slo") == "db-avail" for _, labels in gone)
    assert ("burnrate_event_time_lag_seconds", frozenset({("partition", "3")})) not in gone
    parts.owned[3] = revoked
    back = samples(metrics.render().decode())
    assert per_slo(back) == per_slo(first)
    # a reload replaces an evaluator: the new one's series, not the old one's
    cfg = config()
    parts.owned[3] = (Evaluator(subset(cfg, ["db-avail"])), None)
    replaced = samples(metrics.render().decode())
    key = ("burnrate_slo_events_total", frozenset({("slo", "db-avail")}))
    assert first[key] == 10
    assert replaced[key] == 0


def test_the_cache_holds_until_the_next_tick(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(metrics_module, "RENDER_BUDGET_FACTOR", 0)
    parts, engines = owned_partitions([3])
    metrics = PartitionedMetrics(parts, lambda: None)
    body = metrics.render()
    engines[3].reject("invalid")
    assert metrics.render() is body
    metrics.invalidate()
    assert metrics.render() != body


def test_an_slo_two_evaluators_hold_is_exported_once() -> None:
    parts, _ = owned_partitions([0, 1])
    cfg = config()
    parts.owned[2] = (fed(subset(cfg, ["queue-avail", "shop-avail"])), None)  # queue is in 1
    got = samples(PartitionedMetrics(parts, lambda: None).render().decode())
    slos = [dict(labels)["slo"] for n, labels in got if n == "burnrate_slo_objective_ratio"]
    assert len(slos) == len(set(slos))
    assert "shop-avail" not in slos  # partition 2 broke the contract: left out whole


def test_no_partitions_owned_is_a_valid_body() -> None:
    parts, _ = owned_partitions([])
    body = PartitionedMetrics(parts, lambda: None).render().decode()
    check_text_format(body)
    assert not per_slo(samples(body))
    assert list(text_string_to_metric_families(body))


FAMILIES = sorted(set(partition_keys(config()).values()))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    where=st.lists(st.integers(0, 5), min_size=len(FAMILIES), max_size=len(FAMILIES)),
    owned=st.sets(st.integers(0, 5)),
)
def test_any_split_of_the_slos_exports_what_one_evaluator_of_the_owned_ones_does(
    where: list[int], owned: set[int]
) -> None:
    """Whatever partitions the SLO families land in and whichever a worker owns."""
    cfg = config()
    keys = partition_keys(cfg)
    partition = dict(zip(FAMILIES, where, strict=True))

    def partition_of(slo: str) -> int:
        return partition[keys[slo]]

    engines = {}
    for p in owned:
        names = [s.name for s in cfg.slos if partition_of(s.name) == p]
        if names:
            engines[p] = fed(subset(cfg, names))
    parts = OwnedPartitions(cfg, partition_of, {p: (ev, None) for p, ev in engines.items()})
    body = PartitionedMetrics(parts, lambda: None).render().decode()
    check_text_format(body)
    names = names_in(engines)
    want = {}
    if names:
        want = per_slo(samples(EngineMetrics(single(names), lambda: None).render().decode()))
    # a partition keeps the windows its own SLOs use (docs/scaling.md): one evaluator of
    # all of them has more where another partition's SLO needs a window this one does not
    kept = {
        s.name: {format_duration(w) for w in ev.windows_s}
        for ev in engines.values()
        for s in ev.config_slos
    }
    want = {
        (name, labels): v
        for (name, labels), v in want.items()
        if (w := dict(labels).get("window")) is None or w in kept[dict(labels)["slo"]]
    }
    assert per_slo(samples(body)) == want
