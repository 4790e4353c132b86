"""`/metrics` of an evaluate worker: the union of the evaluators of the partitions it owns.

An evaluate worker (`burnrate run --role evaluate`) keeps one evaluator per counts
partition it owns, each over the SLOs of that partition (engine.adapters.http.partitioned
has the `Partitions` it reads them from). Its body is what one evaluator of exactly those
SLOs would export, so a Prometheus scraping every worker sees each SLO once, at the
worker that owns it, and a dashboard or rule written for one process works unchanged:

- Per-SLO families: each partition's `SloText` writes its own samples; the union keeps
  one `# HELP`/`# TYPE` per family (the first partition's, in partition order) with the
  samples of every partition under it, so each family stays together as the text format
  requires. An SLO is written by one partition only: should two evaluators both hold an
  SLO (a `Partitions` breaking its contract), the one of the lower partition number
  keeps it and the other partition's series are left out, with a warning. An SLO that
  leaves the worker (its partition revoked, or its evaluator replaced by a reload) has
  no series from the next scrape on: a change of ownership renders afresh whatever the
  per-tick cache holds.
- A partition's evaluator keeps the windows its own SLOs need (`Config.windows_s` of its
  SLOs), where one process keeps the windows of every SLO for every SLO: a window that
  only another partition's SLOs use has no series here. The exhaustion family's help
  text names the burn-rate window of the first partition.
- Families of an evaluator rather than of an SLO carry a `partition` label (the counts
  partition, a number): `burnrate_records_rejected{reason,partition}`,
  `burnrate_events_unmatched{partition}` and `burnrate_event_time_lag_seconds{partition}`.
  Summing them across partitions instead would make a counter go down when a partition
  moves to another worker (which `rate()` reads as a reset, a false spike), and the
  event-time lag of one stuck partition would hide behind the others. With the label
  each series, like each SLO's, lives at one worker at a time and moves with its
  partition; `sum by (reason)` gives the worker-wide numbers.
- Families of the process (records consumed, consumer lag, fetch age, deliveries,
  audit) are written once, from the worker's own source status, as in one process.
- The release gate (`burnrate_gate_decision`): the services whose partitions this
  worker owns (engine.adapters.http.partitioned_gates), each service on one worker.
- The change counters (`burnrate_changes_total`): the changes this worker took, of
  the services it owns (engine.adapters.http.partitioned_changes).

Cost: each partition renders only its own SLOs and the merge joins strings, so a
render costs about what one evaluator of the same SLOs costs, plus a few array
operations per family per partition (`python -m benchmarks.bench_partitioned_metrics`).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from engine.adapters.http.metrics import EngineCollector, EngineMetrics, SloText, StatusFn
from engine.adapters.http.partitions import Partitions, ownership
from engine.core.evaluator import Evaluator

__all__ = ["PartitionedCollector", "PartitionedMetrics", "PartitionedSloText"]

log = logging.getLogger("burnrate.adapters.http.partitioned_metrics")


class PartitionedSloText:
    """The per-SLO families of every owned partition, merged family by family."""

    def __init__(self, partitions: Partitions) -> None:
        self.partitions = partitions
        self._texts: dict[int, tuple[Evaluator, SloText]] = {}
        self._owned: tuple[tuple[int, int], ...] = ()
        self._skipped: frozenset[int] = frozenset()
        """Partitions left out because an earlier one holds one of their SLOs."""

    def render(self) -> str:
        engines = self.partitions.engines()
        self._follow(engines)
        headers: dict[str, str] = {}
        samples: dict[str, list[str]] = {}
        for p in sorted(engines):
            if p in self._skipped:
                continue
            for name, header, lines in self._texts[p][1].families():
                got = samples.get(name)
                if got is None:
                    headers[name] = header
                    samples[name] = got = []
                got.append(lines)
        return "".join([headers[name] + "".join(got) for name, got in samples.items()])

    def _follow(self, engines: Mapping[int, Evaluator]) -> None:
        """Keep a `SloText` per owned partition (its line prefixes are built once per
        evaluator), and drop those of partitions gone or evaluators replaced."""
        owned = ownership(engines)
        if owned == self._owned:
            return
        self._owned = owned
        texts = {}
        for p, ev in engines.items():
            kept = self._texts.get(p)
            texts[p] = kept if kept is not None and kept[0] is ev else (ev, SloText(ev))
        self._texts = texts
        seen: dict[str, int] = {}
        skipped = set()
        for p in sorted(engines):
            names = {s.name for s in engines[p].config_slos}
            twice = sorted(n for n in names if n in seen)
            if twice:
                skipped.add(p)
                log.warning(
                    "partition %d holds SLOs partition %d holds too (%s): its series are "
                    "left out of /metrics",
                    p,
                    seen[twice[0]],
                    ", ".join(twice),
                    extra={"data": {"event": "slo_owned_twice", "partition": p, "slos": twice}},
                )
                continue
            seen.update(dict.fromkeys(names, p))
        self._skipped = frozenset(skipped)


class PartitionedCollector(EngineCollector):
    """The worker's health series: the evaluators' per partition, the rest once."""

    def __init__(
        self, partitions: Partitions, status: StatusFn, clock: Callable[[], float] = time.time
    ) -> None:
        # no single evaluator: the evaluator families below read every partition's
        self.partitions = partitions
        self._init_hooks(status, clock)

    def _evaluator_counts(self) -> Iterable[Metric]:
        rejected = CounterMetricFamily(
            "burnrate_records_rejected",
            "Records or events rejected, by reason",
            labels=["reason", "partition"],
        )
        unmatched = CounterMetricFamily(
            "burnrate_events_unmatched",
            "Accepted events that no SLO selects",
            labels=["partition"],
        )
        for p, ev in sorted(self.partitions.engines().items()):
            counts = ev.counts()
            for reason, n in sorted(counts.rejected.items()):
                rejected.add_metric([reason, str(p)], n)
            unmatched.add_metric([str(p)], counts.unmatched_events)
        yield rejected
        yield unmatched

    def _event_time_lag(self) -> Metric:
        event_lag = GaugeMetricFamily(
            "burnrate_event_time_lag_seconds",
            "Wall clock minus the event-time watermark",
            labels=["partition"],
        )
        now = self.clock()
        for p, ev in sorted(self.partitions.engines().items()):
            if math.isfinite(ev.watermark_s):
                event_lag.add_metric([str(p)], max(now - ev.watermark_s, 0.0))
        return event_lag


class PartitionedMetrics(EngineMetrics):
    """`EngineMetrics` over the owned partitions: the same histograms and per-tick
    cache (the worker calls `invalidate()` after evaluating any partition), and a
    fresh render whenever the partitions owned, or their evaluators, changed."""

    def __init__(
        self, partitions: Partitions, status: StatusFn, clock: Callable[[], float] = time.time
    ) -> None:
        self.partitions = partitions
        self._setup(PartitionedSloText(partitions), PartitionedCollector(partitions, status, clock))
        self._owned: tuple[tuple[int, int], ...] = ()

    def render(self) -> bytes:
        owned = ownership(self.partitions.engines())
        if owned != self._owned:
            self._owned = owned
            self._body = None  # a cached body may hold SLOs that left
            self.generation += 1
        return super().render()
