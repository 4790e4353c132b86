"""Synthetic request events for `burnrate produce`: deterministic, columnar, no I/O.

Theory of operation. A run of a `LoadSpec` emits events at a constant `rate`, event
`i` at offset `i / rate` seconds after the start, for `duration_s`. What each event
looks like (service, operation, status, latency) is drawn from numpy generators
seeded per block of `BLOCK_EVENTS` consecutive events from `(seed, block number)`, so
any time slice of a run is the same whether the run is generated in one piece or in
many slices of any size, and a run paced to the wall clock carries the same events
as one produced as fast as possible (only `start_ts` differs). Time is passed in:
the module never reads a clock.

Every event draws the same uniforms whatever the spec's error ratio or incidents, and
the error ratio in force only decides which of them fall below it ("common random
numbers"): an incident changes the events inside its window and nothing else.

An event is bad for availability with the probability in force at its time and for
its service: the baseline `error_ratio`, or the largest error ratio among the
incidents covering it. Bad events get a server-failure status (HTTP 5xx, or gRPC
UNAVAILABLE, INTERNAL, DEADLINE_EXCEEDED, UNKNOWN), good ones a success or a client
error (HTTP 2xx/304/400/404, gRPC OK, NOT_FOUND, INVALID_ARGUMENT), so the engine's
taxonomy judges exactly the events the generator flagged. Latency is log-normal
with the spec's median and p99; a latency incident moves the median (the p99 moves
by the same factor).

Incident grammar (`parse_incident`), one incident per string:

    [SERVICE:]EFFECT[,EFFECT...]@[+]START[:DURATION]

    EFFECT    20%  or  0.2         error ratio during the incident (errors=20% too)
              latency=800ms        median latency during the incident (p99 scales)
              service=NAME         same as the SERVICE: prefix
    START     offset from the start of the run: 90s, 5m, 1h30m (the `+` is optional)
    DURATION  how long it lasts: 30s, 5m, 2h; without it, until the end of the run

    20%@+60s:5m                    every service fails 20% of requests from 1m to 6m
    checkout:20%@+60s:5m           only checkout
    latency=800ms@+60s:5m          every service slows down to an 800 ms median
    checkout:50%,latency=2s@10m    checkout fails half its requests, slowly, from 10m on
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

import msgspec
import numpy as np
import numpy.typing as npt

from engine.core.durations import format_duration, parse_duration_s

__all__ = [
    "BLOCK_EVENTS",
    "INCIDENT_EXAMPLES_TEXT",
    "INCIDENT_SYNTAX",
    "EventColumns",
    "Incident",
    "LoadGenerator",
    "LoadSpec",
    "RecordFormat",
    "StatusVocabulary",
    "Tally",
    "WireEvent",
    "encode_records",
    "generate",
    "operation_names",
    "parse_incident",
    "parse_ratio",
    "parse_services",
    "wire_events",
]

StatusVocabulary = Literal["http", "grpc"]
RecordFormat = Literal["json", "msgpack"]

BLOCK_EVENTS: Final = 4096
"""Events per random block: the unit of reproducibility, independent of slicing."""

INCIDENT_SYNTAX: Final = "[SERVICE:]EFFECT[,EFFECT...]@[+]START[:DURATION]"
INCIDENT_EXAMPLES_TEXT: Final = """\
    20%@+60s:5m                    every service fails 20% of requests from 1m to 6m
    checkout:20%@+60s:5m           only checkout
    latency=800ms@+60s:5m          every service slows down to an 800 ms median
    checkout:50%,latency=2s@10m    checkout fails half its requests, slowly, from 10m on"""

_SERVICE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
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


def _fmt_number(value: float) -> str:
    return f"{value:.12g}"


def parse_ratio(text: str, what: str = "error ratio") -> float:
    """A ratio in 0..1 written as a fraction (`0.001`) or a percentage (`0.1%`)."""
    raw = text.strip()
    percent = raw.endswith("%")
    number = raw[:-1].strip() if percent else raw
    try:
        value = float(number)
    except ValueError:
        raise ValueError(f"{what} {text!r} is not a number (write e.g. 0.001 or 0.1%)") from None
    if not math.isfinite(value):
        raise ValueError(f"{what} {text!r} is not a finite number")
    if percent:
        value /= 100
    elif value > 1:
        raise ValueError(f"{what} {text!r} is more than 1: write {number}% for a percentage")
    if not 0 <= value <= 1:
        raise ValueError(f"{what} {text!r} must be between 0 and 100%")
    return value


def parse_services(text: str) -> tuple[str, ...]:
    """`3` means svc-0, svc-1, svc-2; otherwise comma-separated names (`checkout,search`)."""
    raw = text.strip()
    if raw.isdigit():
        count = int(raw)
        if not 1 <= count <= 10_000:
            raise ValueError(f"service count {raw} must be between 1 and 10000")
        return tuple(f"svc-{i}" for i in range(count))
    names = tuple(name.strip() for name in raw.split(","))
    for name in names:
        _check_service_name(name)
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"service names must be unique; repeated: {', '.join(duplicates)}")
    return names


def _check_service_name(name: str) -> None:
    if not _SERVICE_NAME.fullmatch(name):
        raise ValueError(
            f"bad service name {name!r}: use letters, digits, '.', '_' and '-', "
            "starting with a letter or digit"
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


class Incident(msgspec.Struct, frozen=True, kw_only=True):
    """A window of the run with a different error ratio and/or median latency.

    Times are offsets in seconds from the start of the run. `service=None` applies
    to every service. `str(incident)` is its text in the `parse_incident` grammar.
    """

    start_s: float
    duration_s: float = math.inf
    error_ratio: float | None = None
    latency_median_ms: float | None = None
    service: str | None = None

    def __post_init__(self) -> None:
        if not (math.isfinite(self.start_s) and self.start_s >= 0):
            raise ValueError(f"incident start {self.start_s!r} must be a finite offset >= 0")
        if not self.duration_s > 0:
            raise ValueError(f"incident duration {self.duration_s!r} must be > 0")
        if self.error_ratio is None and self.latency_median_ms is None:
            raise ValueError("an incident needs an error ratio or a latency (or both)")
        if self.error_ratio is not None and not 0 <= self.error_ratio <= 1:
            raise ValueError(f"incident error ratio {self.error_ratio!r} must be in 0..1")
        if self.latency_median_ms is not None and not (
            math.isfinite(self.latency_median_ms) and self.latency_median_ms > 0
        ):
            raise ValueError(f"incident latency {self.latency_median_ms!r} ms must be > 0")
        if self.service is not None:
            _check_service_name(self.service)

    @property
    def end_s(self) -> float:
        return self.start_s + self.duration_s

    def __str__(self) -> str:
        effects = []
        if self.error_ratio is not None:
            effects.append(f"{_fmt_number(self.error_ratio * 100)}%")
        if self.latency_median_ms is not None:
            effects.append(f"latency={_fmt_number(self.latency_median_ms)}ms")
        text = ",".join(effects)
        if self.service is not None:
            text = f"{self.service}:{text}"
        text += f"@+{format_duration(self.start_s)}"
        if math.isfinite(self.duration_s):
            text += f":{format_duration(self.duration_s)}"
        return text


def parse_incident(text: str) -> Incident:
    """Parse one incident, e.g. `checkout:20%@+60s:5m`; see the module docstring.

    Raises ValueError naming the problem and showing the syntax.
    """

    def fail(why: str) -> ValueError:
        return ValueError(
            f"bad incident {text!r}: {why}; expected {INCIDENT_SYNTAX}, e.g. checkout:20%@+60s:5m"
        )

    source = text.strip()
    if source.count("@") != 1:
        raise fail("put exactly one '@' between the effect and the start offset")
    what, when = (part.strip() for part in source.split("@"))

    when = when.removeprefix("+")
    start_text, has_duration, duration_text = when.partition(":")
    if not start_text:
        raise fail("missing the start offset after '@'")
    try:
        start_s = _parse_offset(start_text, "start offset")
        duration_s = _parse_offset(duration_text, "duration") if has_duration else math.inf
    except ValueError as exc:
        raise fail(str(exc)) from None
    if duration_s <= 0:
        raise fail("the duration must be longer than 0s")

    service: str | None = None
    prefix, has_prefix, effects_text = what.partition(":")
    if has_prefix:
        service = prefix.strip()
    else:
        effects_text = what
    error_ratio: float | None = None
    latency_ms: float | None = None
    seen: set[str] = set()
    for raw_item in effects_text.split(","):
        item = raw_item.strip()
        if not item:
            raise fail("missing an effect such as 20% or latency=800ms before '@'")
        key, has_key, value = (s.strip() for s in item.partition("="))
        if not has_key:
            key, value = "errors", item
            if not (item.endswith("%") or _looks_numeric(item)):
                raise fail(
                    f"unknown effect {item!r}; effects are an error ratio (20% or 0.2), "
                    "latency=800ms or service=NAME"
                )
        key = key.lower()
        if key in seen or (key == "service" and service is not None):
            raise fail(f"{key} is given more than once")
        seen.add(key)
        try:
            if key == "errors":
                error_ratio = parse_ratio(value, "error ratio")
            elif key == "latency":
                latency_ms = _parse_latency_ms(value)
            elif key == "service":
                service = value
            else:
                raise ValueError(
                    f"unknown effect {key!r}; the keys are errors=, latency= and service="
                )
        except ValueError as exc:
            raise fail(str(exc)) from None
    if error_ratio is None and latency_ms is None:
        raise fail("give an error ratio (20%) or a latency (latency=800ms)")
    if service is not None:
        try:
            _check_service_name(service)
        except ValueError as exc:
            raise fail(str(exc)) from None
    return Incident(
        start_s=start_s,
        duration_s=duration_s,
        error_ratio=error_ratio,
        latency_median_ms=latency_ms,
        service=service,
    )


def _looks_numeric(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _parse_offset(text: str, what: str) -> float:
    value = text.strip()
    if _looks_numeric(value):
        raise ValueError(f"{what} {value!r} needs a unit, e.g. {value}s")
    try:
        seconds = parse_duration_s(value)
    except ValueError:
        raise ValueError(f"{what} {value!r} is not a duration like 90s, 5m or 1h30m") from None
    return round(seconds, 9)  # 1255 * 0.001 is 1.2550000000000001: keep what was written


def _parse_latency_ms(text: str) -> float:
    value = text.strip()
    if _looks_numeric(value):
        raise ValueError(f"latency {value!r} needs a unit, e.g. {value}ms")
    try:
        latency_ms = round(parse_duration_s(value) * 1000, 6)
    except ValueError:
        raise ValueError(f"latency {value!r} is not a duration like 800ms or 1.5s") from None
    if latency_ms <= 0:
        raise ValueError(f"latency {value!r} must be more than 0ms")
    return latency_ms


class LoadSpec(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """What to generate. Validated on construction (ValueError with the reason)."""

    rate: float = 1000.0
    """Events per second, spread evenly: event i is at offset i / rate."""
    duration_s: float = 300.0
    """Length of the run; `math.inf` runs until stopped."""
    services: tuple[str, ...] = ("svc-0", "svc-1", "svc-2")
    operations_per_service: int = 4
    error_ratio: float = 0.001
    """Baseline probability that a request fails (outside incidents)."""
    latency_median_ms: float = 40.0
    latency_p99_ms: float = 250.0
    statuses: StatusVocabulary = "http"
    incidents: tuple[Incident, ...] = ()
    count: int = 1
    """Every event stands for `count` identical requests (the wire's `count` field)."""
    seed: int = 0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.rate) and self.rate > 0):
            raise ValueError(f"rate {self.rate!r} must be a positive number of events per second")
        if not self.duration_s > 0:
            raise ValueError(f"duration {self.duration_s!r}s must be > 0")
        if not self.services:
            raise ValueError("at least one service is needed")
        for name in self.services:
            _check_service_name(name)
        if len(set(self.services)) != len(self.services):
            raise ValueError("service names must be unique")
        if not 1 <= self.operations_per_service <= 1000:
            raise ValueError("operations per service must be between 1 and 1000")
        if not 0 <= self.error_ratio <= 1:
            raise ValueError(f"error ratio {self.error_ratio!r} must be in 0..1")
        if not (math.isfinite(self.latency_median_ms) and self.latency_median_ms > 0):
            raise ValueError(f"median latency {self.latency_median_ms!r} ms must be > 0")
        if not (
            math.isfinite(self.latency_p99_ms) and self.latency_p99_ms >= self.latency_median_ms
        ):
            raise ValueError(
                f"p99 latency {self.latency_p99_ms!r} ms must be >= the median "
                f"({self.latency_median_ms!r} ms)"
            )
        if self.statuses not in _STATUSES:
            raise ValueError(f"status vocabulary {self.statuses!r} must be http or grpc")
        if not 1 <= self.count <= 2**40:
            raise ValueError(f"count {self.count!r} must be >= 1")
        if self.seed < 0:
            raise ValueError(f"seed {self.seed!r} must be >= 0")
        for incident in self.incidents:
            if incident.service is not None and incident.service not in self.services:
                raise ValueError(
                    f"incident {str(incident)!r} names service {incident.service!r}, "
                    f"which is not one of the services ({', '.join(self.services)})"
                )
            if incident.start_s >= self.duration_s:
                raise ValueError(
                    f"incident {str(incident)!r} starts after the end of the "
                    f"{format_duration(self.duration_s)} run"
                )

    @property
    def total_events(self) -> int | None:
        """Events in the whole run; None when it has no end."""
        if math.isinf(self.duration_s):
            return None
        return _index_at(self.duration_s, self.rate)


def _index_at(offset_s: float, rate: float) -> int:
    """The first event index whose offset `i / rate` is at or after `offset_s`."""
    exact = offset_s * rate
    nearest = round(exact)
    # Snap float noise (0.7 * 10 = 7.000000000000001) so a boundary lands where people expect.
    if abs(exact - nearest) <= 1e-9 * max(1.0, abs(exact)):
        return int(nearest)
    return math.ceil(exact)


@dataclass(frozen=True, slots=True)
class EventColumns:
    """Events of one time slice as columns; the name tables decode the index columns."""

    first_index: int
    """Run-wide index of the first event (event i is at offset i / rate)."""
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

    def __len__(self) -> int:
        return int(self.ts.shape[0])


@dataclass(slots=True)
class _Block:
    service: npt.NDArray[np.int32]
    op_draw: npt.NDArray[np.float64]
    error_draw: npt.NDArray[np.float64]
    status_draw: npt.NDArray[np.float64]
    latency_z: npt.NDArray[np.float64]


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
        )
        self._cache = (number, block)
        return block

    def index_range(self, t_from: float, t_to: float) -> tuple[int, int]:
        """Indices [first, stop) of the events with offsets in [t_from, t_to)."""
        rate = self.spec.rate
        first = _index_at(max(t_from, 0.0), rate)
        stop = _index_at(min(t_to, self.spec.duration_s), rate) if t_to > t_from else first
        return first, max(first, stop)

    def columns(self, start_ts: float, t_from: float, t_to: float) -> EventColumns:
        """Events with offsets in [t_from, t_to) of a run started at epoch `start_ts`."""
        first, stop = self.index_range(t_from, t_to)
        return self.columns_for(start_ts, first, stop)

    def columns_for(self, start_ts: float, first: int, stop: int) -> EventColumns:
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
    ) -> EventColumns:
        spec = self.spec

        def take(field: str) -> npt.NDArray[Any]:
            arrays = [getattr(block, field)[lo:hi] for block, lo, hi in parts]
            return np.concatenate(arrays) if arrays else np.empty(0, np.float64)

        index = np.arange(first, stop, dtype=np.int64)
        offset_s = index / spec.rate
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
        return EventColumns(
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
        )

    def slices(self, start_ts: float, slice_events: int = 65_536) -> Iterator[EventColumns]:
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


def generate(spec: LoadSpec, start_ts: float, t_from: float, t_to: float) -> EventColumns:
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

    def add(self, cols: EventColumns, records: int = 0) -> None:
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


class WireEvent(msgspec.Struct, omit_defaults=True, gc=False):
    """One event as the wire format spells it (DESIGN section 3); `count` omitted when 1."""

    service: str
    ts: float
    operation: str
    status: int | str
    latency_ms: float
    count: int = 1


_ENCODERS: Final[dict[str, msgspec.json.Encoder | msgspec.msgpack.Encoder]] = {
    "json": msgspec.json.Encoder(),
    "msgpack": msgspec.msgpack.Encoder(),
}


def wire_events(cols: EventColumns) -> list[WireEvent]:
    """The slice's events as wire structs (the slow, per-event part of encoding)."""
    services = np.asarray(cols.services, dtype=object)[cols.service].tolist()
    operations = np.asarray(cols.operations, dtype=object)[cols.operation].tolist()
    statuses = np.asarray(cols.statuses, dtype=object)[cols.status].tolist()
    ts = cols.ts.tolist()
    latency = cols.latency_ms.tolist()
    if cols.count == 1:
        return [
            WireEvent(s, t, o, st, lat)
            for s, t, o, st, lat in zip(services, ts, operations, statuses, latency, strict=True)
        ]
    c = cols.count
    return [
        WireEvent(s, t, o, st, lat, c)
        for s, t, o, st, lat in zip(services, ts, operations, statuses, latency, strict=True)
    ]


def encode_records(cols: EventColumns, fmt: RecordFormat = "json", batch: int = 1) -> list[bytes]:
    """Kafka record values for the slice's events, in event order.

    `batch=1`: one event object per record. `batch=N`: a JSON/MessagePack array of up
    to N events per record (the last record of the slice may hold fewer).
    """
    if batch < 1:
        raise ValueError(f"batch {batch!r} must be >= 1")
    try:
        encode = _ENCODERS[fmt].encode
    except KeyError:
        raise ValueError(f"format {fmt!r} must be json or msgpack") from None
    events = wire_events(cols)
    if batch == 1:
        return [encode(e) for e in events]
    return [encode(events[i : i + batch]) for i in range(0, len(events), batch)]
