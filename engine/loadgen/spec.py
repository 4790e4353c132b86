"""What a synthetic run looks like (`LoadSpec`), its incidents, and their text grammar.

A run emits events at a constant `rate_per_s`, event `i` at offset `i / rate_per_s`
seconds after the start, for `duration_s`. An event is bad for availability with the
probability in force at its time and for its service: the baseline `error_ratio`, or
the largest error ratio among the incidents covering it. Latency is log-normal with the
spec's median and p99; a latency incident moves the median (the p99 moves by the same
factor). Events may carry labels (`labels`): per label, a value drawn evenly from its
values, to try SLOs that select or group on labels. How events are drawn is
`engine.loadgen.generator`.

The rate is at most `MAX_RATE_PER_S` (10,000,000 events/s, some 15 times what one
producer process generates and encodes), and a finite run has at most `MAX_RUN_EVENTS`
events (2**53, so event offsets stay exact).

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

The `parse_*` functions read the command-line spelling of a spec's fields; each raises
ValueError with a message fit to show as is.
"""

from __future__ import annotations

import math
import re
from typing import Final, Literal, get_args

import msgspec

from engine.core.decode import MAX_COUNT, MAX_LABEL_BYTES, MAX_LABELS
from engine.core.durations import format_duration, parse_duration_s

__all__ = [
    "INCIDENT_HELP_TEXT",
    "INCIDENT_SYNTAX",
    "MAX_LABEL_VALUES",
    "MAX_RATE_PER_S",
    "MAX_RUN_EVENTS",
    "Incident",
    "LoadSpec",
    "StatusVocabulary",
    "check_service_name",
    "parse_incident",
    "parse_label",
    "parse_rate",
    "parse_ratio",
    "parse_run_duration_s",
    "parse_services",
]

StatusVocabulary = Literal["http", "grpc"]

MAX_RATE_PER_S: Final = 10_000_000.0
"""Events per second at most: far beyond what one producer sends (about 0.6M/s of
generated and encoded events per core), so a higher rate can only be a mistake."""
MAX_RUN_EVENTS: Final = 2**53
"""Events in a finite run at most: event indices and offsets stay exact in float64."""
MAX_LABEL_VALUES: Final = 10_000
"""Values of one label at most: as many groups as a grouped SLO's `max_groups` allows."""

INCIDENT_SYNTAX: Final = "[SERVICE:]EFFECT[,EFFECT...]@[+]START[:DURATION]"
INCIDENT_HELP_TEXT: Final = f"""\
  {INCIDENT_SYNTAX}
    EFFECT    20% or 0.2        error ratio during the incident (also errors=20%)
              latency=800ms     median latency during the incident (p99 scales with it)
              service=NAME      same as the SERVICE: prefix (default: every service)
    START     offset from the start of the run: 90s, 5m, 1h30m ('+' optional)
    DURATION  how long it lasts; without it, until the end of the run

    20%@+60s:5m                    every service fails 20% of requests from 1m to 6m
    checkout:20%@+60s:5m           only checkout
    latency=800ms@+60s:5m          every service slows down to an 800 ms median
    checkout:50%,latency=2s@10m    checkout fails half its requests, slowly, from 10m on"""
"""The grammar and examples as a command's help shows them."""

_SERVICE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_FOREVER: Final = frozenset({"forever", "inf", "infinite"})


def _fmt_number(value: float) -> str:
    return f"{value:.12g}"


def check_service_name(name: str) -> None:
    """ValueError unless `name` can name a service (and a label value) as is."""
    if not _SERVICE_NAME.fullmatch(name):
        raise ValueError(
            f"bad service name {name!r}: use letters, digits, '.', '_' and '-', "
            "starting with a letter or digit"
        )


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


def _check_rate(rate_per_s: float, text: str) -> None:
    if not (math.isfinite(rate_per_s) and rate_per_s > 0):
        raise ValueError(f"rate {text} must be a number > 0")
    if rate_per_s > MAX_RATE_PER_S:
        raise ValueError(
            f"rate {text} is more than {MAX_RATE_PER_S:,.0f} events per second, far more "
            "than one producer can send"
        )


def parse_rate(text: str) -> float:
    """Events per second: a number > 0 and at most MAX_RATE_PER_S (`500`, `2.5e4`)."""
    try:
        value = float(text.strip())
    except ValueError:
        raise ValueError(f"rate {text!r} is not a number") from None
    _check_rate(value, repr(text))
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
        check_service_name(name)
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"service names must be unique; repeated: {', '.join(duplicates)}")
    return names


def parse_label(text: str) -> tuple[str, tuple[str, ...]]:
    """`KEY=VALUES`: a label and the values events draw it from, comma-separated
    (`region=eu,us,ap`) or a count (`customer=50`: customer-0 ... customer-49)."""
    key, has_values, values_text = (part.strip() for part in text.partition("="))
    if not has_values or not key or not values_text:
        raise ValueError(
            f"label {text!r}: expected KEY=VALUE[,VALUE...] or KEY=COUNT, e.g. region=eu,us,ap"
        )
    if values_text.isdigit():
        count = int(values_text)
        if not 1 <= count <= MAX_LABEL_VALUES:
            raise ValueError(
                f"label {text!r}: count {count} must be between 1 and {MAX_LABEL_VALUES}"
            )
        return key, tuple(f"{key}-{i}" for i in range(count))
    return key, tuple(value.strip() for value in values_text.split(","))


def _check_labels(labels: tuple[tuple[str, tuple[str, ...]], ...]) -> None:
    """ValueError unless every event can carry these labels as the wire format bounds
    them (at most MAX_LABELS, keys and values at most MAX_LABEL_BYTES of UTF-8)."""
    if len(labels) > MAX_LABELS:
        raise ValueError(
            f"at most {MAX_LABELS} labels (an event carries no more), got {len(labels)}"
        )
    keys = [key for key, _ in labels]
    repeated = sorted({k for k in keys if keys.count(k) > 1})
    if repeated:
        raise ValueError(f"label keys must be unique; repeated: {', '.join(repeated)}")
    for key, values in labels:
        if not values or len(values) > MAX_LABEL_VALUES:
            raise ValueError(f"label {key!r} needs 1 to {MAX_LABEL_VALUES} values")
        if len(set(values)) != len(values):
            raise ValueError(f"label {key!r}: its values must be unique")
        for what, text in (("key", key), *(("value", v) for v in values)):
            if not text:
                raise ValueError(f"label {key!r}: an empty {what}")
            if len(text.encode()) > MAX_LABEL_BYTES:
                raise ValueError(f"label {what} {text[:32]!r}... is over {MAX_LABEL_BYTES} bytes")


def parse_run_duration_s(text: str) -> float:
    """The length of a run: a duration such as `90s` or `1h30m`, or `forever` (`math.inf`)."""
    if text.strip().lower() in _FOREVER:
        return math.inf
    try:
        seconds = parse_duration_s(text.strip())
    except ValueError:
        raise ValueError(
            f"duration {text!r} is not a duration like 90s, 10m, 1h30m, or 'forever'"
        ) from None
    if seconds <= 0:
        raise ValueError(f"duration {text!r} must be longer than 0s")
    return seconds


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
            check_service_name(self.service)

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
        start_s = _parse_offset_s(start_text, "start offset")
        duration_s = _parse_offset_s(duration_text, "duration") if has_duration else math.inf
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
            check_service_name(service)
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


def _parse_offset_s(text: str, what: str) -> float:
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

    rate_per_s: float = 1000.0
    """Events per second, spread evenly: event i is at offset i / rate_per_s."""
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
    labels: tuple[tuple[str, tuple[str, ...]], ...] = ()
    """(key, values) per label every event carries, its value drawn evenly from
    `values` (`parse_label`); none by default."""
    seed: int = 0

    def __post_init__(self) -> None:
        _check_rate(self.rate_per_s, repr(self.rate_per_s))
        if not self.duration_s > 0:
            raise ValueError(f"duration {self.duration_s!r}s must be > 0")
        if math.isfinite(self.duration_s) and self.duration_s * self.rate_per_s > MAX_RUN_EVENTS:
            raise ValueError(
                f"a {format_duration(self.duration_s)} run at {self.rate_per_s:g} events/s "
                f"is more than {MAX_RUN_EVENTS:,} events; shorten it"
            )
        if not self.services:
            raise ValueError("at least one service is needed")
        for name in self.services:
            check_service_name(name)
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
        if self.statuses not in get_args(StatusVocabulary):
            raise ValueError(f"status vocabulary {self.statuses!r} must be http or grpc")
        if not 1 <= self.count <= MAX_COUNT:
            raise ValueError(f"count {self.count!r} must be between 1 and {MAX_COUNT:,}")
        if self.seed < 0:
            raise ValueError(f"seed {self.seed!r} must be >= 0")
        _check_labels(self.labels)
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
        return self.index_at(self.duration_s)

    def index_at(self, offset_s: float) -> int:
        """The first event index whose offset `i / rate_per_s` is at or after `offset_s`."""
        exact = offset_s * self.rate_per_s
        nearest = round(exact)
        # Snap float noise (0.7 * 10 = 7.000000000000001) so a boundary lands where people
        # expect.
        if abs(exact - nearest) <= 1e-9 * max(1.0, abs(exact)):
            return int(nearest)
        return math.ceil(exact)
