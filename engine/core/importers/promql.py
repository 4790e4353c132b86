"""Reading an SLI from Prometheus queries by their label matchers.

Theory of operation
-------------------
This is not a PromQL parser. A ratio SLI in Prometheus is two queries: the bad (or
good) events and all events, each a few selectors inside aggregations. What burnrate
needs from them is in the selectors' label matchers, so this module finds the
selectors (`metric{label="v", ...}`, and bare metric names), reads their matchers, and
judges them:

- the service: an equality matcher on `service`, `job` or `app`, the same value in
  every selector that has one (differing values, or a regex, are ambiguous);
- the operation: an equality matcher on `operation`;
- availability: the bad query selects HTTP 5xx on a status label (`code=~"5.."` and
  equivalent regexes, `status_class="5xx"`), or the good query excludes exactly them
  (`code!~"5.."`);
- latency: the bad or good query selects one histogram bucket (`le="0.3"`), the
  threshold in seconds for `*_seconds*` metrics and milliseconds for `*_milliseconds*`
  or `*_ms*` ones (another name is read as seconds, the Prometheus base unit, with a
  problem saying so).

Every other matcher is a problem naming it: burnrate selects events by service,
operation and event labels, and a Prometheus label (`namespace`, `instance`) is not one
it can assume events carry. Templates (`{{.window}}`) are replaced before reading.
Nothing is guessed: when the queries do not say exactly one thing, the reading is not
usable and the problems say why.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from engine.core.importers.common import Notes

__all__ = [
    "Matcher",
    "QueryError",
    "Selector",
    "SliReading",
    "mapped_sli",
    "read_ratio",
    "selectors",
]

SERVICE_LABELS: Final = ("service", "job", "app")
OPERATION_LABEL: Final = "operation"
STATUS_LABELS: Final = ("code", "status", "status_code", "http_status", "http_status_code")
STATUS_CLASS_LABELS: Final = ("status_class", "code_class")
_FIVE_XX: Final = frozenset(
    {"5..", "5.*", "5.+", r"5\d\d", r"5\d{2}", "5[0-9][0-9]", "5[0-9]{2}", "5xx", "5XX"}
)
_KEYWORDS: Final = frozenset(
    {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset"}
    | {"and", "or", "unless", "atan2", "inf", "nan", "start", "end"}
    | {"sum", "min", "max", "avg", "count", "stddev", "stdvar", "topk", "bottomk", "group"}
    | {"quantile", "count_values", "limitk", "limit_ratio"}
)
"""Words that are not metric names even when no `(` follows them (`sum by (job) (...)`)."""
_GROUPING: Final = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right"})
_IDENT = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_OP = re.compile(r"=~|!~|!=|=")
_TEMPLATE = re.compile(r"\{\{.*?\}\}", re.DOTALL)

Where = Literal["bad", "good", "total"]


class QueryError(ValueError):
    """A query whose selectors cannot be read (an unclosed brace or string)."""


@dataclass(frozen=True, slots=True)
class Matcher:
    name: str
    op: str
    value: str

    def __str__(self) -> str:
        return f'{self.name}{self.op}"{self.value}"'


@dataclass(frozen=True, slots=True)
class Selector:
    metric: str | None
    matchers: tuple[Matcher, ...]


def _string(text: str, i: int) -> tuple[str, int]:
    """The PromQL string literal starting at `text[i]` (a quote) and the index after it."""
    quote = text[i]
    out: list[str] = []
    j = i + 1
    while j < len(text):
        c = text[j]
        if c == quote:
            return "".join(out), j + 1
        if c == "\\" and quote != "`" and j + 1 < len(text):
            nxt = text[j + 1]
            out.append({"n": "\n", "t": "\t"}.get(nxt, nxt))
            j += 2
            continue
        out.append(c)
        j += 1
    raise QueryError(f"unclosed string at character {i}")


def _after_space(text: str, j: int) -> int:
    """The index of the first character at or after `j` that is not white space."""
    while j < len(text) and text[j] in " \t\r\n":
        j += 1
    return j


def _matchers(text: str, i: int) -> tuple[list[Matcher], int]:
    """The matchers of the braces opened at `text[i]`, and the index after the `}`."""
    out: list[Matcher] = []
    j = i + 1
    while True:
        while j < len(text) and text[j] in " \t\r\n,":
            j += 1
        if j >= len(text):
            raise QueryError(f"unclosed '{{' at character {i}")
        if text[j] == "}":
            return out, j + 1
        name = _LABEL.match(text, j)
        if name is None:
            raise QueryError(f"expected a label name at character {j}")
        op = _OP.match(text, _after_space(text, name.end()))
        if op is None:
            raise QueryError(f"expected =, !=, =~ or !~ after {name.group()!r}")
        j = _after_space(text, op.end())
        if j >= len(text) or text[j] not in "\"'`":
            raise QueryError(f"expected a quoted value for {name.group()!r}")
        value, j = _string(text, j)
        out.append(Matcher(name.group(), op.group(), value))


def _skip_parens(text: str, i: int) -> int:
    """The index after the parenthesis group opened at `text[i]`."""
    depth = 0
    for j in range(i, len(text)):
        if text[j] == "(":
            depth += 1
        elif text[j] == ")":
            depth -= 1
            if depth == 0:
                return j + 1
    raise QueryError(f"unclosed '(' at character {i}")


def selectors(query: str) -> list[Selector]:
    """Every selector of `query`: `metric{...}`, `{...}` and bare metric names."""
    text = _TEMPLATE.sub("5m", query)
    out: list[Selector] = []
    i = 0
    while i < len(text):
        c = text[i]
        if c in "\"'`":
            _, i = _string(text, i)
        elif c == "{":
            found, i = _matchers(text, i)
            out.append(Selector(None, tuple(found)))
        elif c == "[":
            end = text.find("]", i)
            if end < 0:
                raise QueryError(f"unclosed '[' at character {i}")
            i = end + 1
        elif c.isdigit() or c == ".":
            m = re.compile(r"[0-9a-zA-Z_.]+").match(text, i)
            i = m.end() if m else i + 1
        elif (m := _IDENT.match(text, i)) is not None:
            word, i = m.group(), m.end()
            j = _after_space(text, i)
            if word in _GROUPING and j < len(text) and text[j] == "(":
                i = _skip_parens(text, j)
            elif j < len(text) and text[j] == "{":
                found, i = _matchers(text, j)
                out.append(Selector(word, tuple(found)))
            elif word not in _KEYWORDS and not (j < len(text) and text[j] == "("):
                out.append(Selector(word, ()))
        else:
            i += 1
    return out


@dataclass(slots=True)
class SliReading:
    """What the queries say: config fields (`service`, `operation`, `sli`,
    `threshold_ms`), and problems as (which query, message). `usable` is False when the
    SLI itself could not be told."""

    fields: dict[str, Any] = field(default_factory=dict)
    problems: list[tuple[Where, str]] = field(default_factory=list)
    usable: bool = True


def _bare(regex: str) -> str:
    return regex.removeprefix("^").removesuffix("$")


def _status_verdict(m: Matcher, where: Where) -> bool | None:
    """True if `m` in the `where` query says "the server's 5xx failures" exactly, False if
    it is a status matcher saying something else, None if it is not one."""
    if m.name in STATUS_CLASS_LABELS:
        is_5xx = _bare(m.value) in ("5xx", "5XX")
        return is_5xx and m.op in (("=", "=~") if where == "bad" else ("!=", "!~"))
    if m.name not in STATUS_LABELS:
        return None
    five_xx = _bare(m.value) in _FIVE_XX and m.value not in ("5xx", "5XX")
    return five_xx and m.op == ("=~" if where == "bad" else "!~")


def _unit_scale_ms(metric: str | None) -> tuple[float, bool]:
    """Milliseconds per `le` unit of a histogram named `metric`, and whether the name says."""
    name = metric or ""
    if "_milliseconds" in name or re.search(r"_ms(_|$)", name):
        return 1.0, True
    return 1000.0, "_seconds" in name


def read_ratio(queries: dict[Where, str]) -> SliReading:
    """Read an SLI from a bad (or good) query and a total query (see the module docstring)."""
    reading = SliReading()
    parsed: dict[Where, list[Selector]] = {}
    for where, query in queries.items():
        try:
            parsed[where] = selectors(query)
        except QueryError as exc:
            reading.problems.append((where, f"cannot read the query: {exc}"))
            reading.usable = False
    if not reading.usable:
        return reading
    services: dict[str, Matcher] = {}
    operations: dict[str, Matcher] = {}
    status: list[tuple[Where, Matcher, bool]] = []
    buckets: list[tuple[Where, Matcher, str | None]] = []
    for where, sels in parsed.items():
        for sel in sels:
            for m in sel.matchers:
                if m.name in SERVICE_LABELS or m.name == OPERATION_LABEL:
                    if m.op != "=":
                        reading.problems.append((where, f"{m}: only an exact value is read"))
                        reading.usable = False
                    target = operations if m.name == OPERATION_LABEL else services
                    target.setdefault(m.value, m)
                elif (verdict := _status_verdict(m, where)) is not None:
                    status.append((where, m, verdict))
                elif m.name == "le":
                    if where != "total" and _bare(m.value) != "+Inf":
                        buckets.append((where, m, sel.metric))
                elif m.name != "__name__":
                    reading.problems.append(
                        (
                            where,
                            f"{m}: not mapped (burnrate selects events by service, "
                            "operation and event labels; add match_labels by hand if your "
                            "events carry this label)",
                        )
                    )
    for label, found in (("service", services), ("operation", operations)):
        if len(found) > 1:
            values = ", ".join(str(m) for m in found.values())
            reading.problems.append(("total", f"ambiguous {label}: {values}"))
            reading.usable = False
        elif found:
            reading.fields[label] = next(iter(found))
    if not services:
        reading.problems.append(("total", "no service, job or app matcher names the service"))
    _read_kind(reading, "bad" if "bad" in queries else "good", status, buckets)
    return reading


def _read_kind(
    reading: SliReading,
    which: Where,
    status: list[tuple[Where, Matcher, bool]],
    buckets: list[tuple[Where, Matcher, str | None]],
) -> None:
    """Availability from status matchers or latency from one bucket, into `reading`."""
    for where, m, verdict in status:
        if not verdict or where == "total":
            reading.problems.append(
                (
                    where,
                    f"{m}: not exactly the HTTP 5xx responses burnrate counts as bad "
                    "(availability); cannot map",
                )
            )
            reading.usable = False
    if status and buckets:
        reading.problems.append(
            (
                buckets[0][0],
                "both a status and an `le` matcher: cannot tell availability from latency",
            )
        )
        reading.usable = False
    if not reading.usable:
        return
    if status:
        reading.fields["sli"] = "availability"
        return
    if not buckets:
        reading.problems.append(
            (which, "no 5xx status matcher and no `le` bucket: cannot tell the SLI")
        )
        reading.usable = False
        return
    thresholds: set[float] = set()
    for where, m, metric in buckets:
        try:
            le = float(m.value)
        except ValueError:
            reading.problems.append((where, f"{m}: not a number"))
            reading.usable = False
            continue
        scale, said = _unit_scale_ms(metric)
        if not said:
            reading.problems.append(
                (where, f"{m}: the metric name {metric!r} gives no unit; read as seconds")
            )
        thresholds.add(round(le * scale, 6))
    if len(thresholds) > 1 or not reading.usable:
        if len(thresholds) > 1:
            reading.problems.append((which, f"several `le` buckets: {sorted(thresholds)} ms"))
        reading.usable = False
        return
    threshold = thresholds.pop()
    if not threshold > 0:
        reading.problems.append((which, f"`le` bucket of {threshold} ms: must be > 0"))
        reading.usable = False
        return
    reading.fields["sli"] = "latency"
    reading.fields["threshold_ms"] = int(threshold) if threshold.is_integer() else threshold


def mapped_sli(
    queries: dict[Where, str],
    paths: dict[Where, str],
    source: str,
    service: str | None,
    notes: Notes,
) -> dict[str, Any] | None:
    """The SLI fields the queries map to, every problem a note at its query's path; the
    declared `service` (OpenSLO's `spec.service`, Sloth's `service`) when no matcher names
    one, with a note. None when the SLI cannot be told."""
    reading = read_ratio(queries)
    for where, message in reading.problems:
        if "no service, job or app matcher" in message and service:
            message += f"; the declared service {service!r} is used"
        notes.warn(source, paths[where], message)
    if not reading.usable:
        return None
    fields = dict(reading.fields)
    if "service" not in fields:
        if not service:
            return None
        fields["service"] = service
    return {
        key: fields[key] for key in ("service", "operation", "sli", "threshold_ms") if key in fields
    }
