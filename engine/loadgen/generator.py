"""The events of a `LoadSpec`: deterministic, columnar, no I/O.

Theory of operation. What each event looks like (service, operation, status, latency)
is drawn from numpy generators seeded per block of `BLOCK_EVENTS` consecutive events
from `(seed, block number)`, so any time slice of a run is the same whether the run
is generated in one piece or in many slices of any size, and a run paced to the wall
clock carries the same events as one produced as fast as possible (only `start_ts`
differs). Time is passed in: the module never reads a clock.

Every event draws the same uniforms whatever the spec's error ratio or incidents, and
the error ratio in force only decides which of them fall below it ("common random
numbers"): an incident changes the events inside its window and nothing else. Label
values come from a stream of their own per block, so adding labels to a spec changes
nothing else about its events.

Bad events get a server-failure status (HTTP 5xx, or gRPC UNAVAILABLE, INTERNAL,
DEADLINE_EXCEEDED, UNKNOWN), good ones a success or a client error (HTTP
2xx/304/400/404, gRPC OK, NOT_FOUND, INVALID_ARGUMENT), so the engine's taxonomy
judges exactly the events the generator flagged.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from engine.loadgen.spec import LoadSpec, StatusVocabulary

__all__ = [
    "BLOCK_EVENTS",
    "GeneratedEvents",
    "LoadGenerator",
    "Tally",
    "generate",
    "operation_names",
]

BLOCK_EVENTS: Final = 4096
"""Events per random block: the unit of reproducibility, independent of slicing."""

_Z_99: Final = 2.3263478740408408  # the standard normal's 99th percentile
_TS_DECIMALS: Final = 6  # microseconds: keeps the wire text short and exact to replay
_LATENCY_DECIMALS: Final = 3

# (status, weight) tables. Good statuses include client errors: good for the server's SLO.
_STATUSES: Final[dict[str, tuple[tuple[tuple[int | str, float], ...], ...]]] = {
    "http": (
        ((200, 0.90), (201, 0.04), (204, 0.02), (304, 0.01), (400, 0.015), (404, 0.015)),
        ((500, 0.40), (502, 0.20), (503, 0.30), (504, 0.10)),
    ),
    "grpc": (
        (("OK", 0.96), ("NOT_FOUND", 0.025), ("INVALID_ARGUMENT", 0.015)),
        (("UNAVAILABLE", 0.50), ("INTERNAL", 0.20), ("DEADLINE_EXCEEDED", 0.25), ("UNKNOWN", 0.05)),
    ),
}
_HTTP_ROUTES: Final = (
    "GET /items",
    "POST /orders",
    "GET /users/{id}",
    "PUT /cart",
    "GET /search",
    "POST /payments",
    "DELETE /sessions/{id}",
    "GET /recommendations",
)
_GRPC_METHODS: Final = (
    "GetItem",
    "CreateOrder",
    "GetUser",
    "UpdateCart",
    "Search",
    "Pay",
    "DeleteSession",
    "Recommend",
)


def operation_names(
    service: str, count: int, statuses: StatusVocabulary = "http"
) -> tuple[str, ...]:
    """The `count` operations of `service`: HTTP routes, or `service.Method` gRPC names."""
    if statuses == "http":
        table = _HTTP_ROUTES
        return tuple(table[k] if k < len(table) else f"GET /op{k}" for k in range(count))
    table = _GRPC_METHODS
    return tuple(f"{service}.{table[k] if k < len(table) else f'Method{k}'}" for k in range(count))


@dataclass(frozen=True, slots=True)
class GeneratedEvents:
    """Events of one time slice as columns; the name tables decode the index columns."""

    first_index: int
    """Run-wide index of the first event (event i is at offset i / rate_per_s)."""
    ts: npt.NDArray[np.float64]
    """Event time, epoch seconds (microsecond resolution)."""
    service: npt.NDArray[np.int32]
    """Index into `services`."""
    operation: npt.NDArray[np.int32]
    """Index into `operations` (which are grouped per service)."""
    status: npt.NDArray[np.int16]
    """Index into `statuses`."""
    bad: npt.NDArray[np.bool_]
    """Bad for an availability SLO (the status is a server failure)."""
    latency_ms: npt.NDArray[np.float64]
    services: tuple[str, ...]
    operations: tuple[str, ...]
    statuses: tuple[int | str, ...]
    count: int = 1
    """Weight of every event (the wire's `count`)."""
    labels: tuple[tuple[str, tuple[str, ...], npt.NDArray[np.int32]], ...] = ()
    """Per label of the spec: its key, its values, and each event's value (an index
    into them)."""

    def __len__(self) -> int:
        return int(self.ts.shape[0])


@dataclass(slots=True)
class _Block:
    service: npt.NDArray[np.int32]
    op_draw: npt.NDArray[np.float64]
    error_draw: npt.NDArray[np.float64]
    status_draw: npt.NDArray[np.float64]
    latency_z: npt.NDArray[np.float64]
    labels: tuple[npt.NDArray[np.int32], ...]
    """Per label of the spec, each event's value (an index into its values)."""


class LoadGenerator:
    """Generates the events of a `LoadSpec` slice by slice; keeps the last random block."""

    def __init__(self, spec: LoadSpec) -> None:
        self.spec = spec
        ops = spec.operations_per_service
        self.operations: tuple[str, ...] = tuple(
            name
            for service in spec.services
            for name in operation_names(service, ops, spec.statuses)
        )
        good, bad = _STATUSES[spec.statuses]
        self.statuses: tuple[int | str, ...] = tuple(s for s, _ in good) + tuple(s for s, _ in bad)
        self._good_cdf = _cdf([w for _, w in good])
        self._bad_cdf = _cdf([w for _, w in bad])
        self._n_good = len(good)
        # Skewed traffic: operation k gets weight 1 / (k + 1), like a few hot routes.
        self._op_cdf = _cdf([1 / (k + 1) for k in range(ops)])
        self._sigma = math.log(spec.latency_p99_ms / spec.latency_median_ms) / _Z_99
        self._service_index = {name: i for i, name in enumerate(spec.services)}
        self._cache: tuple[int, _Block] | None = None

    def _block(self, number: int) -> _Block:
        if self._cache is not None and self._cache[0] == number:
            return self._cache[1]
        seq = np.random.SeedSequence(self.spec.seed, spawn_key=(number,))
        rng = np.random.Generator(np.random.PCG64(seq))
        n = BLOCK_EVENTS
        block = _Block(
            service=rng.integers(0, len(self.spec.services), n, dtype=np.int32),
            op_draw=rng.random(n),
            error_draw=rng.random(n),
            status_draw=rng.random(n),
            latency_z=rng.standard_normal(n),
            labels=self._label_draws(number, n),
        )
        self._cache = (number, block)
        return block

    def _label_draws(self, number: int, n: int) -> tuple[npt.NDArray[np.int32], ...]:
        """Block `number`'s label values, from a stream apart from the other draws."""
        if not self.spec.labels:
            return ()
        seq = np.random.SeedSequence(self.spec.seed, spawn_key=(number, 1))
        rng = np.random.Generator(np.random.PCG64(seq))
        return tuple(
            rng.integers(0, len(values), n, dtype=np.int32) for _, values in self.spec.labels
        )

    def index_range(self, t_from: float, t_to: float) -> tuple[int, int]:
        """Indices [first, stop) of the events with offsets in [t_from, t_to)."""
        spec = self.spec
        first = spec.index_at(max(t_from, 0.0))
        stop = spec.index_at(min(t_to, spec.duration_s)) if t_to > t_from else first
        return first, max(first, stop)

    def columns(self, start_ts: float, t_from: float, t_to: float) -> GeneratedEvents:
        """Events with offsets in [t_from, t_to) of a run started at epoch `start_ts`."""
        first, stop = self.index_range(t_from, t_to)
        return self.columns_for(start_ts, first, stop)

    def columns_for(self, start_ts: float, first: int, stop: int) -> GeneratedEvents:
        """Events with indices [first, stop), clipped to the run."""
        total = self.spec.total_events
        if total is not None:
            stop = min(stop, total)
        first = max(0, min(first, stop))
        parts: list[tuple[_Block, int, int]] = []
        i = first
        while i < stop:
            number, lo = divmod(i, BLOCK_EVENTS)
            hi = min(BLOCK_EVENTS, lo + stop - i)
            parts.append((self._block(number), lo, hi))
            i += hi - lo
        return self._derive(start_ts, first, stop, parts)

    def _derive(
        self, start_ts: float, first: int, stop: int, parts: Sequence[tuple[_Block, int, int]]
    ) -> GeneratedEvents:
        spec = self.spec

        def take(field: str) -> npt.NDArray[Any]:
            arrays = [getattr(block, field)[lo:hi] for block, lo, hi in parts]
            return np.concatenate(arrays) if arrays else np.empty(0, np.float64)

        index = np.arange(first, stop, dtype=np.int64)
        offset_s = index / spec.rate_per_s
        service = take("service").astype(np.int32, copy=False)
        ops = spec.operations_per_service
        op_in_service = np.searchsorted(self._op_cdf, take("op_draw"), side="right")
        operation = (service * ops + op_in_service).astype(np.int32)

        error_ratio = np.full(len(index), spec.error_ratio)
        median_ms = np.full(len(index), spec.latency_median_ms)
        for incident in spec.incidents:
            window = (offset_s >= incident.start_s) & (offset_s < incident.end_s)
            if incident.service is not None:
                window &= service == self._service_index[incident.service]
            # Overlapping incidents: the worst error ratio and the slowest median win.
            if incident.error_ratio is not None:
                error_ratio[window] = np.maximum(error_ratio[window], incident.error_ratio)
            if incident.latency_median_ms is not None:
                median_ms[window] = np.maximum(median_ms[window], incident.latency_median_ms)

        bad = take("error_draw") < error_ratio
        status_draw = take("status_draw")
        good_status = np.searchsorted(self._good_cdf, status_draw, side="right")
        bad_status = self._n_good + np.searchsorted(self._bad_cdf, status_draw, side="right")
        status = np.where(bad, bad_status, good_status).astype(np.int16)
        latency = np.round(median_ms * np.exp(self._sigma * take("latency_z")), _LATENCY_DECIMALS)
        ts = np.round(start_ts + offset_s, _TS_DECIMALS)
        labels = tuple(
            (
                key,
                values,
                np.concatenate([block.labels[k][lo:hi] for block, lo, hi in parts])
                if parts
                else np.empty(0, np.int32),
            )
            for k, (key, values) in enumerate(spec.labels)
        )
        return GeneratedEvents(
            first_index=first,
            ts=ts,
            service=service,
            operation=operation,
            status=status,
            bad=bad,
            latency_ms=latency,
            services=spec.services,
            operations=self.operations,
            statuses=self.statuses,
            count=spec.count,
            labels=labels,
        )

    def slices(self, start_ts: float, slice_events: int = 65_536) -> Iterator[GeneratedEvents]:
        """The whole run in slices of `slice_events` events (endless if the run is)."""
        if slice_events < 1:
            raise ValueError("slice_events must be >= 1")
        total = self.spec.total_events
        first = 0
        while total is None or first < total:
            stop = first + slice_events if total is None else min(total, first + slice_events)
            yield self.columns_for(start_ts, first, stop)
            first = stop

    def tally(self) -> Tally:
        """Counts for the whole (finite) run, computed without encoding anything."""
        if self.spec.total_events is None:
            raise ValueError("a run without an end has no total")
        tally = Tally(self.spec.services)
        for cols in self.slices(0.0):
            tally.add(cols)
        return tally


def _cdf(weights: Sequence[float]) -> npt.NDArray[np.float64]:
    """Cumulative weights normalised to end at exactly 1 (searchsorted right -> index)."""
    cdf = np.cumsum(np.asarray(weights, dtype=np.float64))
    cdf /= cdf[-1]
    # Without its last edge, searchsorted(..., side="right") maps every draw in [0, 1) to
    # a valid index, even when rounding leaves the sum of the weights a hair below 1.
    return cdf[:-1]


def generate(spec: LoadSpec, start_ts: float, t_from: float, t_to: float) -> GeneratedEvents:
    """Events of `spec` with offsets in [t_from, t_to) for a run started at `start_ts`."""
    return LoadGenerator(spec).columns(start_ts, t_from, t_to)


class Tally:
    """Per-service counts of what was generated, weighted by `count` like the engine does."""

    def __init__(self, services: Sequence[str]) -> None:
        self.services = tuple(services)
        self._events = np.zeros(len(self.services), np.int64)
        self._bad = np.zeros(len(self.services), np.int64)
        self.event_objects = 0
        """Event objects (not weighted by count)."""
        self.records = 0

    def add(self, cols: GeneratedEvents, records: int = 0) -> None:
        n = len(self.services)
        self._events += np.bincount(cols.service, minlength=n)[:n] * cols.count
        self._bad += np.bincount(cols.service[cols.bad], minlength=n)[:n] * cols.count
        self.event_objects += len(cols)
        self.records += records

    @property
    def events(self) -> dict[str, int]:
        return dict(zip(self.services, self._events.tolist(), strict=True))

    @property
    def bad(self) -> dict[str, int]:
        return dict(zip(self.services, self._bad.tolist(), strict=True))

    @property
    def total_events(self) -> int:
        return int(self._events.sum())

    @property
    def total_bad(self) -> int:
        return int(self._bad.sum())
