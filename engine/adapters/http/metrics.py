"""Prometheus exposition: a custom collector over the evaluator, rendered once per tick.

The SLO series are read through the evaluator's read methods (read-only numpy arrays)
at scrape time by one collector, never kept as thousands of Gauge children updated on
the hot path, and the rendered body is cached until the next evaluation tick
(`invalidate()`) or, once a batch was applied (`counted()`), for `APPLIED_REFRESH_S`,
so a scrape of 10k SLOs costs one render per second at most however often Prometheus
or people ask (the render budget bounds it), and new counts show well before a tick.
Windows without events have no series (rather than NaN): absent is "no data".
A composite SLO has the series of any SLO, under the same names: its error ratio and
burn rate are derived from its members' (docs/design.md, "Composite SLOs"), and its
`burnrate_slo_events_total`/`burnrate_slo_bad_events_total` are the sums of its
members' (an event two members select counts twice).

A grouped SLO's series carry `group` (`Evaluator.group_of`: `region=eu`, `__other__`
for the overflow group) next to `slo`, one set per group in use: at most `max_groups +
1` per SLO, so the config bounds them too. They are the one label from event payloads
(label values, operations), escaped for the text format. Group columns not in use
have no series.

`burnrate_slo_error_budget_exhaustion_seconds` is the time to exhaustion the API's
`error_budget.time_to_exhaustion_s` shows (same window, same arithmetic, so the same
bits): 0 once the budget is spent, no series while nothing burns or without data.
`burnrate_gate_decision{service,decision}` is 1 for each service's current gate
decision (engine.core.governance, an override in force included) and 0 for the other
two; `service` is a configured service. `burnrate_changes_total{service,kind}` counts
the changes taken in since the start (engine.core.changes: `service` a configured one,
`kind` one of at most 50, the rest as `other`).

`burnrate_incidents_open{service}` (with `incidents:`) is 1 while the configured
service has an open incident (engine.runtime.incidents), else 0;
`burnrate_incident_time_to_detect_seconds` observes `opened_at - onset_at` of each
incident as it opens with an onset estimate.

With `audit:`, `burnrate_audit_head_info{hash}` is 1 with the hash of the audit log's
last entry, `burnrate_audit_entries_total` its `seq` (entries in the chain, across
restarts) and `burnrate_audit_write_errors_total` the entries lost to failed writes
since the start (engine.adapters.store.audit): a copy of the head kept outside the
host (Prometheus) is what shows a log cut short (`burnrate audit verify
--expect-head`).

`burnrate_budget_alert_firing{slo,alert}` (`alert`: `ErrorBudgetExhausted`,
`ErrorBudgetExhaustionProjected`) and `burnrate_escalation_firing{slo,policy_row,
decision}` (`policy_row`: the budget policy row's config path) are 1 while the budget
alert or escalation fires and 0 while not, for each SLO (group) that has it; no family
when the config gives none (engine.core.budget_alerts).

Other labels are bounded by the config and never carry event payload values: `slo`, `window`
(a Prometheus duration of a configured window), `severity`, `reason` (a fixed set of
rejection reasons), `topic` and `partition` (assigned partitions of configured topics),
`receiver` and `outcome` (a configured receiver, a fixed set of delivery outcomes) and
`le` on the histograms.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Protocol

import numpy as np
import numpy.typing as npt
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from engine.adapters.kafka.status import SourceStatus
from engine.core.budget import times_to_exhaustion_s
from engine.core.budget_alerts import ALERTNAMES
from engine.core.budget_policy import DECISIONS
from engine.core.durations import format_duration
from engine.core.evaluator import Evaluator
from engine.core.governance import ServiceGate, exhaustion_window_s

__all__ = [
    "CONTENT_TYPE",
    "EngineCollector",
    "EngineMetrics",
    "SloBody",
    "SloText",
    "config_families",
    "consumer_lag_family",
]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
RENDER_BUDGET_FACTOR = 20
APPLIED_REFRESH_S = 0.2
"""After a batch is applied (`counted()`), a scrape renders afresh once the body is this
old, rather than waiting for the next tick: the first events show within a fraction of
a second of start-up. Under load it bounds renders to one per this interval (and the
render budget), with no render on the consume path."""
TIME_TO_DETECT_BUCKETS_S = (10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 21600.0)
"""A fast page detects within a minute or two of the onset, a slow one within hours: the
onset is at most one long window (6 h for the slowest default page) before the page."""

StatusFn = Callable[[], SourceStatus | None]


class EngineCollector(Collector):
    """Reads SLO state and engine health at collection time."""

    def __init__(
        self, evaluator: Evaluator, status: StatusFn, clock: Callable[[], float] = time.time
    ) -> None:
        self._init_hooks(status, clock)
        self.use(evaluator)

    def _init_hooks(self, status: StatusFn, clock: Callable[[], float]) -> None:
        """What the runtime and the HTTP server plug in; an evaluator's or not."""
        self.status = status
        self.clock = clock
        self.deliveries: Callable[[], Mapping[tuple[str, str], int]] | None = None
        """Alert delivery outcomes keyed (receiver, outcome), set by the runtime."""
        self.gates: Callable[[], list[ServiceGate]] | None = None
        """Every service's gate now, set by the HTTP server (engine.adapters.http.gates)."""
        self.changes: Callable[[], Mapping[tuple[str, str], int]] | None = None
        """Changes taken in by (service, kind), set by the HTTP server."""
        self.incidents_open: Callable[[], Mapping[str, int]] | None = None
        """Open incidents by configured service, set by the runtime with `incidents:`."""
        self.audit: Callable[[], tuple[int, str, int]] | None = None
        """The audit log's (entries, head hash, write errors), set by the runtime with
        `audit:`."""
        self.config: Callable[[], tuple[str, Mapping[str, int]]] | None = None
        """(SHA-256 of the config running, reloads by result), set by the runtime when
        it can reload its config file (engine.runtime.reload)."""

    def use(self, evaluator: Evaluator) -> None:
        """Read `evaluator` from now on (a config reload swaps it)."""
        self.evaluator = evaluator
        self._window_labels = [format_duration(w) for w in evaluator.windows_s]

    def collect(self) -> Iterable[Metric]:
        """The engine's health series and the gates (the SLO series are written by
        `SloText`)."""
        yield from self._health()
        if self.gates is not None:
            gate = GaugeMetricFamily(
                "burnrate_gate_decision",
                "1 for the service's current release gate decision, 0 for the others",
                labels=["service", "decision"],
            )
            for g in self.gates():
                for d in DECISIONS:
                    gate.add_metric([g.service, d], 1.0 if g.decision == d else 0.0)
            yield gate
        if self.changes is not None:
            changes = CounterMetricFamily(
                "burnrate_changes",
                "Changes (deploys, config pushes, flag flips) taken in since the start",
                labels=["service", "kind"],
            )
            for (service, kind), n in sorted(self.changes().items()):
                changes.add_metric([service, kind], n)
            yield changes
        if self.incidents_open is not None:
            incidents = GaugeMetricFamily(
                "burnrate_incidents_open",
                "Open incidents of the service (at most one)",
                labels=["service"],
            )
            for service, n in sorted(self.incidents_open().items()):
                incidents.add_metric([service], n)
            yield incidents
        if self.audit is not None:
            yield from _audit_families(*self.audit())
        if self.config is not None:
            yield from config_families(*self.config())

    def _health(self) -> Iterable[Metric]:
        status = self.status()
        consumed = CounterMetricFamily(
            "burnrate_records_consumed", "Kafka records consumed and applied"
        )
        consumed.add_metric([], status.records_consumed if status else 0)
        yield consumed
        yield from self._evaluator_counts()
        ignored = CounterMetricFamily(
            "burnrate_spans_ignored",
            "OTLP spans consumed that are not SERVER spans (not requests served; no error)",
        )
        ignored.add_metric([], status.spans_ignored if status else 0)
        yield ignored
        yield consumer_lag_family(status)
        yield self._event_time_lag()
        if self.deliveries is not None:
            deliveries = CounterMetricFamily(
                "burnrate_webhook_deliveries",
                "Alert deliveries to webhook, Alertmanager and PagerDuty receivers, by outcome",
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

    def _evaluator_counts(self) -> Iterable[Metric]:
        """The evaluator's rejections and unmatched events (the evaluate role labels
        them per partition: engine.adapters.http.partitioned_metrics)."""
        counts = self.evaluator.counts()
        rejected = CounterMetricFamily(
            "burnrate_records_rejected",
            "Records or events rejected, by reason",
            labels=["reason"],
        )
        for reason, n in sorted(counts.rejected.items()):
            rejected.add_metric([reason], n)
        yield rejected
        unmatched = CounterMetricFamily(
            "burnrate_events_unmatched", "Accepted events that no SLO selects"
        )
        unmatched.add_metric([], counts.unmatched_events)
        yield unmatched

    def _event_time_lag(self) -> Metric:
        event_lag = GaugeMetricFamily(
            "burnrate_event_time_lag_seconds", "Wall clock minus the event-time watermark"
        )
        ev = self.evaluator
        if math.isfinite(ev.watermark_s):
            event_lag.add_metric([], max(self.clock() - ev.watermark_s, 0.0))
        return event_lag


def _audit_families(entries: int, head: str, write_errors: int) -> Iterable[Metric]:
    info = InfoMetricFamily("burnrate_audit_head", "Hash of the audit log's last entry (its head)")
    info.add_metric([], {"hash": head})
    yield info
    yield CounterMetricFamily(
        "burnrate_audit_entries", "Entries in the audit log's chain (seq of its head)", entries
    )
    yield CounterMetricFamily(
        "burnrate_audit_write_errors",
        "Audit entries lost to failed writes or fsyncs since the start",
        write_errors,
    )


def config_families(sha256: str, reloads: Mapping[str, int]) -> Iterable[Metric]:
    info = InfoMetricFamily("burnrate_config", "SHA-256 of the config file running")
    info.add_metric([], {"sha256": sha256})
    yield info
    total = CounterMetricFamily(
        "burnrate_config_reloads",
        "Config reloads (SIGHUP, POST /-/reload) since the start, by result",
        labels=["result"],
    )
    for result, n in sorted(reloads.items()):
        total.add_metric([result], n)
    yield total


def consumer_lag_family(status: SourceStatus | None) -> GaugeMetricFamily:
    """`burnrate_consumer_lag{topic,partition}`: one definition for every role that
    consumes (the single process, an ingest worker), so one dashboard reads both."""
    lag = GaugeMetricFamily(
        "burnrate_consumer_lag",
        "Records between the last applied offset and the partition's high watermark",
        labels=["topic", "partition"],
    )
    if status is not None:
        for (topic, partition), n in sorted(status.lag.items()):
            lag.add_metric([topic, str(partition)], n)
    return lag


def _family(name: str, kind: str, doc: str) -> str:
    return f"# HELP {name} {doc}\n# TYPE {name} {kind}\n"


def _fam(name: str, kind: str, doc: str, lines: str) -> tuple[str, str, str]:
    return (name, _family(name, kind, doc), lines)


def _escape(value: str) -> str:
    """A label value for the text format: backslash, double quote and newline escaped."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _lines(prefixes: npt.NDArray[np.object_], values: npt.NDArray[np.float64]) -> str:
    """`prefix value` lines for the entries that have data (NaN: no series)."""
    have = ~np.isnan(values)
    if not have.all():
        prefixes, values = prefixes[have], values[have]
    return "".join([f"{p}{v!r}\n" for p, v in zip(prefixes.tolist(), values.tolist(), strict=True)])


class SloText:
    """Writes the per-SLO series straight into the text format from the evaluator's
    read methods.

    Series names and label sets are fixed by the config, so each line's prefix
    (`name{slo="...",window="..."} `) is built once; a render only formats numbers.
    This is what keeps a scrape of 10k SLOs (200k+ series) from stalling consumption:
    measured several times faster than building metric families for `generate_latest`.
    SLO names are `[a-z0-9_.-]+` and severities/windows fixed words, so no label escaping
    is needed.
    """

    def __init__(self, evaluator: Evaluator) -> None:
        self.evaluator = evaluator
        self._groups_version = -1
        self._grouped = any(s.group_by for s in evaluator.config_slos)
        self._build()

    def _build(self) -> None:
        """The line prefixes; built again when groups have been assigned since."""
        evaluator = self.evaluator
        self._groups_version = evaluator.classifier.groups_version
        names = [
            f'slo="{n}"'
            if (g := evaluator.group_of(c)) is None
            else f'slo="{n}",group="{_escape(g)}"'
            for c, n in enumerate(evaluator.names)
        ]
        windows = [format_duration(w) for w in evaluator.windows_s]

        def per_slo(metric: str) -> npt.NDArray[np.object_]:
            return np.array([f"{metric}{{{n}}} " for n in names], dtype=object)

        def per_window(metric: str) -> npt.NDArray[np.object_]:
            return np.array(
                [[f'{metric}{{{n},window="{w}"}} ' for n in names] for w in windows],
                dtype=object,
            ).reshape(len(windows), len(names))

        used = evaluator.column_in_use()
        self._used = None if used.all() else used
        self._objective = "".join(
            f"burnrate_slo_objective_ratio{{{n}}} {s.objective_ratio!r}\n"
            for n, s, u in zip(names, evaluator.slos, used, strict=True)
            if u
        )
        self._error_ratio = per_window("burnrate_slo_error_ratio")
        self._burn_rate = per_window("burnrate_slo_burn_rate")
        self._budget = per_slo("burnrate_slo_error_budget_remaining_ratio")
        self._exhaustion = per_slo("burnrate_slo_error_budget_exhaustion_seconds")
        self._exhaustion_w = evaluator.window_index(exhaustion_window_s(evaluator))
        self._period_s = np.array([float(s.period_s) for s in evaluator.slos])
        self._period_start = per_slo("burnrate_slo_period_start_seconds")
        self._period_end = per_slo("burnrate_slo_period_end_seconds")
        self._events = per_slo("burnrate_slo_events_total")
        self._bad = per_slo("burnrate_slo_bad_events_total")
        self._excluded = per_slo("burnrate_slo_excluded_events_total")
        self._firing = np.array(
            [
                [f'burnrate_alert_firing{{{n},severity="{sev}"}} ' for sev in evaluator.severities]
                for n in names
            ],
            dtype=object,
        ).reshape(len(names), len(evaluator.severities))
        # budget alerts and escalations: a series per (column, alert) the column has (a
        # prefix of None elsewhere: no series)
        cols = evaluator.budget_alert_columns
        self._budget_alerts = np.array(
            [
                [
                    (
                        f'burnrate_budget_alert_firing{{{n},alert="{ALERTNAMES[c.kind]}"}} '
                        if c.kind != "escalation"
                        else f'burnrate_escalation_firing{{{n},policy_row="{c.path}",'
                        f'decision="{c.row.decision if c.row else ""}"}} '
                    )
                    if c.mask[i]
                    else None
                    for c in cols
                ]
                for i, n in enumerate(names)
            ],
            dtype=object,
        ).reshape(len(names), len(cols))
        self._is_escalation = np.array([c.kind == "escalation" for c in cols], dtype=bool)

    def _only_used(self, values: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """`values` (SLO columns last) with NaN, so no series, in the group columns not in
        use."""
        if self._used is None:
            return values
        return np.where(self._used, values, np.nan)

    def render(self) -> str:
        return "".join(header + lines for _, header, lines in self.families())

    def families(self) -> list[tuple[str, str, str]]:
        """Each family as (name, its `# HELP`/`# TYPE` lines, its sample lines), in the
        order `render` writes them: the evaluate role merges several evaluators' by name
        (engine.adapters.http.partitioned_metrics)."""
        ev = self.evaluator
        if self._grouped and ev.classifier.groups_version != self._groups_version:
            self._build()
        counts, firing = ev.counts(), ev.alerts().firing
        only = self._only_used
        return [
            _fam(
                "burnrate_slo_objective_ratio",
                "gauge",
                "SLO objective as a ratio (0..1)",
                self._objective,
            ),
            _fam(
                "burnrate_slo_error_ratio",
                "gauge",
                "Bad / total events in the window ending at the last evaluation",
                _lines(self._error_ratio.ravel(), only(ev.error_ratios()).ravel()),
            ),
            _fam(
                "burnrate_slo_burn_rate",
                "gauge",
                "Error ratio / error budget in the window ending at the last evaluation",
                _lines(self._burn_rate.ravel(), only(ev.burn_rates()).ravel()),
            ),
            _fam(
                "burnrate_slo_error_budget_remaining_ratio",
                "gauge",
                "Share of the error budget left over the SLO period (negative: overspent)",
                _lines(self._budget, only(ev.budget_remaining())),
            ),
            _fam(
                "burnrate_slo_error_budget_exhaustion_seconds",
                "gauge",
                "Seconds until the error budget left is spent at the current burn rate "
                f"({format_duration(ev.windows_s[self._exhaustion_w])}); 0 once spent",
                _lines(self._exhaustion, only(self._time_to_exhaustion())),
            ),
            *self._periods(),
            _fam(
                "burnrate_slo_events_total",
                "counter",
                "Events counted for the SLO since start",
                _lines(self._events, only(counts.events_total.astype(np.float64))),
            ),
            _fam(
                "burnrate_slo_bad_events_total",
                "counter",
                "Bad events counted for the SLO since start",
                _lines(self._bad, only(counts.bad_events_total.astype(np.float64))),
            ),
            _fam(
                "burnrate_slo_excluded_events_total",
                "counter",
                "Events of the SLO left out by a correction (maintenance, bad data) since start",
                _lines(self._excluded, only(counts.excluded_events.astype(np.float64))),
            ),
            _fam(
                "burnrate_alert_firing",
                "gauge",
                "1 while the alert fires",
                _lines(self._firing.ravel(), only(firing.astype(np.float64).T).T.ravel()),
            ),
            *self._budget_alert_parts(),
        ]

    def _budget_alert_parts(self) -> list[tuple[str, str, str]]:
        """`burnrate_budget_alert_firing{slo, alert}` and
        `burnrate_escalation_firing{slo, policy_row, decision}`: 1 while it fires, 0 while
        not, for the columns (in use) that have the alert; no family when none has."""
        if not self.evaluator.budget_alert_columns:
            return []
        firing = self.evaluator.budget_alerts().firing.astype(np.float64)
        firing = self._only_used(firing.T).T
        firing[self._budget_alerts == None] = np.nan  # noqa: E711 (elementwise on objects)
        out: list[tuple[str, str, str]] = []
        for escalations, name, help_text in (
            (False, "burnrate_budget_alert_firing", "1 while the budget alert fires"),
            (True, "burnrate_escalation_firing", "1 while the budget policy row escalates"),
        ):
            pick = self._is_escalation == escalations
            if pick.any():
                lines = _lines(self._budget_alerts[:, pick].ravel(), firing[:, pick].ravel())
                out.append(_fam(name, "gauge", help_text, lines))
        return out

    def _time_to_exhaustion(self) -> npt.NDArray[np.float64]:
        """engine.core.budget.time_to_exhaustion_s of every SLO at once, in the same order
        of operations (so the same bits as the API); NaN (no series) where it is None."""
        ev = self.evaluator
        burn = ev.burn_rates()[self._exhaustion_w]
        return times_to_exhaustion_s(ev.budget_remaining(), burn, self._period_s)

    def _periods(self) -> list[tuple[str, str, str]]:
        """Start and end of the calendar period each calendar SLO's budget is over; no
        series for rolling SLOs, and none at all in a config without calendar periods."""
        ev = self.evaluator
        if not any(s.calendar for s in ev.slos):
            return []
        start, end = ev.period_bounds()
        return [
            _fam(
                "burnrate_slo_period_start_seconds",
                "gauge",
                "Start of the calendar period the error budget is over (epoch seconds)",
                _lines(self._period_start, self._only_used(start)),
            ),
            _fam(
                "burnrate_slo_period_end_seconds",
                "gauge",
                "End of the calendar period the error budget is over (epoch seconds, exclusive)",
                _lines(self._period_end, self._only_used(end)),
            ),
        ]


class SloBody(Protocol):
    """The per-SLO part of the body (`SloText`, or several evaluators' merged)."""

    def render(self) -> str: ...


class EngineMetrics:
    """The registry, the two histograms fed by the runtime, and the cached body."""

    def __init__(
        self, evaluator: Evaluator, status: StatusFn, clock: Callable[[], float] = time.time
    ) -> None:
        self._setup(SloText(evaluator), EngineCollector(evaluator, status, clock))

    def _setup(self, slo_text: SloBody, collector: EngineCollector) -> None:
        """The registry, histograms and cache around the SLO text and the collector
        (the evaluate role's: engine.adapters.http.partitioned_metrics)."""
        self.registry = CollectorRegistry(auto_describe=False)
        self.slo_text = slo_text
        self.collector = collector
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
        self.incident_time_to_detect: Histogram | None = None
        """Set by `track_incidents`."""
        self._body: bytes | None = None
        self._stale = True
        self._counted = False
        """Events were counted since the last render (`counted()`)."""
        self._rendered_at = 0.0
        self._render_s = 0.0
        self.generation = 0
        """Counts evaluation ticks (`invalidate()` calls): other per-tick caches key on it."""
        self.before_render: Callable[[], None] | None = None
        """Called before a fresh render (the runtime drains fetch-batch sizes here), so
        one body is consistent with the evaluator state read by the collector."""

    def track_incidents(self, open_counts: Callable[[], Mapping[str, int]]) -> Histogram:
        """Export the incident series (with `incidents:`): `burnrate_incidents_open` from
        `open_counts` at scrape time, and the time-to-detect histogram, returned for the
        runtime to observe as incidents open."""
        self.collector.incidents_open = open_counts
        if self.incident_time_to_detect is None:
            self.incident_time_to_detect = Histogram(
                "burnrate_incident_time_to_detect_seconds",
                "Time from an incident's estimated onset to the page that opened it",
                buckets=TIME_TO_DETECT_BUCKETS_S,
                registry=self.registry,
            )
        return self.incident_time_to_detect

    def observe_batches(self, sizes: Iterable[int]) -> None:
        for n in sizes:
            self.fetch_batch_records.observe(n)

    def use(self, evaluator: Evaluator) -> None:
        """Render `evaluator`'s series from now on (a config reload swaps it); the
        histograms and the engine's own series go on."""
        self.slo_text = SloText(evaluator)
        self.collector.use(evaluator)
        self.invalidate()

    def invalidate(self) -> None:
        """A new tick was evaluated: the next scrape renders afresh (see `render`)."""
        self._stale = True
        self.generation += 1

    def counted(self) -> None:
        """A batch was applied: a scrape `APPLIED_REFRESH_S` after the last render
        renders afresh (no render here, and no new generation: not a tick)."""
        self._counted = True

    def render(self) -> bytes:
        """The body; rendered afresh after a tick, but at most once per
        `RENDER_BUDGET_FACTOR` times the last render's duration, so rendering (on the
        event loop) never takes more than about 1/RENDER_BUDGET_FACTOR of the time
        however often it is scraped. Small configs render in well under a millisecond
        and are always fresh; 10k SLOs (~80 ms) refresh every couple of seconds."""
        now = time.monotonic()
        age = now - self._rendered_at
        if self._body is None or (
            (self._stale or (self._counted and age >= APPLIED_REFRESH_S))
            and age >= RENDER_BUDGET_FACTOR * self._render_s
        ):
            if self.before_render is not None:
                self.before_render()
            self._body = self.slo_text.render().encode() + generate_latest(self.registry)
            self._stale = self._counted = False
            self._rendered_at = now
            self._render_s = time.monotonic() - now
        return self._body
