"""Prometheus exposition: a custom collector over the evaluator's arrays, rendered once per tick.

The SLO series are read from the evaluator's numpy arrays at scrape time by one
collector, never kept as thousands of Gauge children updated on the hot path, and the
rendered body is cached until the next evaluation tick (`invalidate()`), so a scrape of
10k SLOs costs one render per second at most however often Prometheus or people ask.
Windows without events have no series (rather than NaN): absent is "no data".

Labels are bounded by the config and never carry event payload values: `slo`, `window`
(a Prometheus duration of a configured window), `severity`, `reason` (a fixed set of
rejection reasons), `topic` and `partition` (assigned partitions of configured topics),
and `le` on the histograms.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence

import numpy as np
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from engine.adapters.source import SourceStatus
from engine.core.durations import format_duration
from engine.core.evaluator import Evaluator

__all__ = ["CONTENT_TYPE", "EngineCollector", "EngineMetrics"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

StatusFn = Callable[[], SourceStatus | None]


class EngineCollector(Collector):
    """Reads SLO state and engine health at collection time."""

    def __init__(
        self, evaluator: Evaluator, status: StatusFn, clock: Callable[[], float] = time.time
    ) -> None:
        self.evaluator = evaluator
        self.status = status
        self.clock = clock
        self.deliveries: Callable[[], Mapping[tuple[str, str], int]] | None = None
        """Alert delivery outcomes keyed (receiver, outcome), set by the runtime."""
        self._window_labels = [format_duration(w) for w in evaluator.windows.windows_s]

    def collect(self) -> Iterable[Metric]:
        ev = self.evaluator
        names: Sequence[str] = ev.names

        objective = GaugeMetricFamily(
            "burnrate_slo_objective_ratio", "SLO objective as a ratio (0..1)", labels=["slo"]
        )
        for name, slo in zip(names, ev.slos, strict=True):
            objective.add_metric([name], slo.objective_ratio)
        yield objective

        yield from self._windowed(
            "burnrate_slo_error_ratio",
            "Bad / total events in the window ending at the last evaluation",
            ev.error_ratios(),
        )
        yield from self._windowed(
            "burnrate_slo_burn_rate",
            "Error ratio / error budget in the window ending at the last evaluation",
            ev.burn_rates(),
        )

        budget = GaugeMetricFamily(
            "burnrate_slo_error_budget_remaining_ratio",
            "Share of the error budget left over the SLO period (negative: overspent)",
            labels=["slo"],
        )
        for name, value in zip(names, ev.budget_remaining().tolist(), strict=True):
            if not math.isnan(value):
                budget.add_metric([name], value)
        yield budget

        events = CounterMetricFamily(
            "burnrate_slo_events", "Events counted for the SLO since start", labels=["slo"]
        )
        bad = CounterMetricFamily(
            "burnrate_slo_bad_events", "Bad events counted for the SLO since start", labels=["slo"]
        )
        for name, total, nbad in zip(
            names, ev.events_total.tolist(), ev.bad_events_total.tolist(), strict=True
        ):
            events.add_metric([name], total)
            bad.add_metric([name], nbad)
        yield events
        yield bad

        firing = GaugeMetricFamily(
            "burnrate_alert_firing", "1 while the alert fires", labels=["slo", "severity"]
        )
        for i, name in enumerate(names):
            for j, sev in enumerate(ev.severities):
                firing.add_metric([name, sev], float(ev.firing[i, j]))
        yield firing

        yield from self._health()

    def _windowed(self, metric: str, doc: str, values: np.ndarray) -> Iterable[Metric]:
        family = GaugeMetricFamily(metric, doc, labels=["slo", "window"])
        names = self.evaluator.names
        for w, label in enumerate(self._window_labels):
            row = values[w]
            for i in np.flatnonzero(~np.isnan(row)).tolist():
                family.add_metric([names[i], label], float(row[i]))
        yield family

    def _health(self) -> Iterable[Metric]:
        ev = self.evaluator
        status = self.status()
        consumed = CounterMetricFamily(
            "burnrate_records_consumed", "Kafka records consumed and applied"
        )
        consumed.add_metric([], status.records_consumed if status else 0)
        yield consumed
        rejected = CounterMetricFamily(
            "burnrate_records_rejected",
            "Records or events rejected, by reason",
            labels=["reason"],
        )
        for reason, n in sorted(ev.rejected.items()):
            rejected.add_metric([reason], n)
        yield rejected
        unmatched = CounterMetricFamily(
            "burnrate_events_unmatched", "Accepted events that no SLO selects"
        )
        unmatched.add_metric([], ev.unmatched_events)
        yield unmatched
        lag = GaugeMetricFamily(
            "burnrate_consumer_lag",
            "Records between the last applied offset and the partition's high watermark",
            labels=["topic", "partition"],
        )
        if status is not None:
            for (topic, partition), n in sorted(status.lag.items()):
                lag.add_metric([topic, str(partition)], n)
        yield lag
        event_lag = GaugeMetricFamily(
            "burnrate_event_time_lag_seconds", "Wall clock minus the event-time watermark"
        )
        if math.isfinite(ev.watermark_s):
            event_lag.add_metric([], max(self.clock() - ev.watermark_s, 0.0))
        yield event_lag
        if self.deliveries is not None:
            deliveries = CounterMetricFamily(
                "burnrate_webhook_deliveries",
                "Alert deliveries to webhook and Alertmanager receivers, by outcome",
                labels=["receiver", "outcome"],
            )
            for (receiver, outcome), n in sorted(self.deliveries().items()):
                deliveries.add_metric([receiver, outcome], n)
            yield deliveries
        if status is not None and status.last_fetch_age_s is not None:
            age = GaugeMetricFamily(
                "burnrate_last_fetch_age_seconds", "Seconds since the broker last answered a fetch"
            )
            age.add_metric([], status.last_fetch_age_s)
            yield age


class EngineMetrics:
    """The registry, the two histograms fed by the runtime, and the cached body."""

    def __init__(
        self, evaluator: Evaluator, status: StatusFn, clock: Callable[[], float] = time.time
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.collector = EngineCollector(evaluator, status, clock)
        self.registry.register(self.collector)
        self.evaluation_duration = Histogram(
            "burnrate_evaluation_duration_seconds",
            "Wall time of one evaluation tick (advance and alert evaluation)",
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
            registry=self.registry,
        )
        self.fetch_batch_records = Histogram(
            "burnrate_fetch_batch_records",
            "Records per non-empty Kafka fetch",
            buckets=(1, 10, 100, 1000, 5000, 10_000, 25_000, 50_000, 100_000),
            registry=self.registry,
        )
        self._body: bytes | None = None
        self.generation = 0
        """Counts evaluation ticks (`invalidate()` calls): other per-tick caches key on it."""
        self.before_render: Callable[[], None] | None = None
        """Called before a fresh render (the runtime drains fetch-batch sizes here), so
        one body is consistent with the evaluator state read by the collector."""

    def observe_batches(self, sizes: Iterable[int]) -> None:
        for n in sizes:
            self.fetch_batch_records.observe(n)

    def invalidate(self) -> None:
        """A new tick was evaluated: the next scrape renders afresh."""
        self._body = None
        self.generation += 1

    def render(self) -> bytes:
        if self._body is None:
            if self.before_render is not None:
                self.before_render()
            self._body = generate_latest(self.registry)
        return self._body
