"""The config's structs (engine.core.config): SLOs and their periods, policy rows,
event-time evaluation, corrections (and the config times they are given in), change
settings, and the root `Config` with what is derived from it (rows and windows in use,
window memory).

Percentages are converted to ratios once, here at the edge (`objective_ratio`), and
durations to seconds (`*_s` properties).
"""

from __future__ import annotations

import fnmatch
import math
import re
from collections.abc import Sequence
from typing import Annotated, Any, Literal

import msgspec

from engine.core.budget_policy import (
    DEFAULT_BUDGET_POLICY,
    BudgetAlertSettings,
    BudgetPolicyRow,
    GateSettings,
)
from engine.core.config_io import Audit, Http, Incidents, Kafka, Receiver, State
from engine.core.config_types import Duration, Name, Severity
from engine.core.durations import parse_duration_s
from engine.core.ladder import MAX_WINDOW_S, window_bytes
from engine.core.periods import NOMINAL_PERIOD_S, CalendarUnit
from engine.core.taxonomy import SliKind, TaxonomyOptions

__all__ = [
    "DEFAULT_ATTRIBUTION_WINDOW",
    "DEFAULT_MAX_CHANGES",
    "DEFAULT_MAX_GROUPS",
    "DEFAULT_POLICY",
    "GROUP_BY_OPERATION",
    "MAX_ATTRIBUTION_WINDOW_S",
    "MAX_EPOCH_S",
    "MAX_MAX_GROUPS",
    "OTHER_GROUP",
    "WEEK_S",
    "CalendarPeriod",
    "ChangeSettings",
    "CompositeMember",
    "Config",
    "Correction",
    "Evaluation",
    "PolicyRow",
    "Slo",
    "time_s",
]

DEFAULT_MAX_GROUPS = 100
MAX_MAX_GROUPS = 10_000
OTHER_GROUP = "__other__"
"""The group of a grouped SLO's events beyond its `max_groups`."""
GROUP_BY_OPERATION = "operation"
"""The `group_by` key naming the event's operation (every other key is a label)."""


class _Base(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """The options every config struct has (those of engine.core.config_io too): frozen,
    unknown fields refused, keyword-only."""


class PolicyRow(_Base, frozen=True):
    """One multi-window condition: fire `severity` when both windows burn at >= the factor."""

    severity: Severity
    long: Duration
    short: Duration
    burn_rate: Annotated[float, msgspec.Meta(gt=0)] | None = None
    budget_consumed_ratio: Annotated[float, msgspec.Meta(gt=0, le=1)] | None = None
    """Alternative to `burn_rate`: the share of the period's budget that burning for `long`
    would consume; the factor is then derived per SLO period (2% of 30d in 1h = 14.4)."""

    @property
    def long_s(self) -> int:
        return int(parse_duration_s(self.long))

    @property
    def short_s(self) -> int:
        return int(parse_duration_s(self.short))

    @property
    def key(self) -> tuple[str, int, int, float | None, float | None]:
        """What the row means, whatever the spelling of its windows (`1h` or `60m`): rows
        with equal keys fire alike, so the evaluator keeps one of them."""
        return (
            self.severity,
            self.long_s,
            self.short_s,
            self.burn_rate,
            self.budget_consumed_ratio,
        )

    def factor_for(self, period_s: float) -> float:
        if self.burn_rate is not None:
            return self.burn_rate
        assert self.budget_consumed_ratio is not None
        return self.budget_consumed_ratio * period_s / self.long_s


DEFAULT_POLICY: tuple[PolicyRow, ...] = (
    PolicyRow(severity="page", long="1h", short="5m", budget_consumed_ratio=0.02),
    PolicyRow(severity="page", long="6h", short="30m", budget_consumed_ratio=0.05),
    PolicyRow(severity="ticket", long="1d", short="2h", budget_consumed_ratio=0.10),
    PolicyRow(severity="ticket", long="3d", short="6h", budget_consumed_ratio=0.10),
)


class CalendarPeriod(_Base, frozen=True):
    """`period: {calendar: month, time_zone: Europe/Berlin}`: the budget covers the current
    calendar month (ISO week, quarter) in that zone to date (engine.core.periods)."""

    calendar: CalendarUnit
    time_zone: Annotated[str, msgspec.Meta(min_length=1)] = "UTC"


class CompositeMember(_Base, frozen=True):
    """One member of a composite SLO: a plain SLO of the same config and its weight."""

    slo: str
    weight: float = 1.0
    """OpenSLO `compositeWeight`: the member's share of the composite's good ratio,
    renormalised over the members with events in a window (> 0)."""


class Slo(_Base, frozen=True, kw_only=True):
    name: Name
    service: Annotated[str, msgspec.Meta(min_length=1)] | None = None
    """Required for a plain SLO; a composite has none (None)."""
    sli: SliKind | None = None
    """Required for a plain SLO; a composite has none (None)."""
    composite: list[CompositeMember] | None = None
    """A composite SLO: the weighted average of its members' good ratios (docs/design.md,
    "Composite SLOs"); it has no service, operation, sli or threshold of its own."""
    objective: float
    """Target in percent, e.g. 99.9."""
    period: Duration | CalendarPeriod = "30d"
    """Rolling (`30d`), or a calendar period."""
    operation: str | None = None
    """Exact operation, or a glob (`GET /orders/*`)."""
    threshold_ms: Annotated[float, msgspec.Meta(gt=0)] | None = None
    failed_counts_bad: bool = True
    """Latency SLOs: a failed request is bad whatever its latency."""
    description: str | None = None
    runbook_url: str | None = None
    labels: dict[Annotated[str, msgspec.Meta(pattern=r"\A[a-zA-Z_][a-zA-Z0-9_]*\Z")], str] = {}
    match_labels: dict[str, str] = {}
    """Event labels this SLO selects on: every one must be on the event with this value
    (an event without the label does not match)."""
    group_by: list[str] = []
    """Fan out into one SLO per distinct group key: `operation` or label names, in
    this order (docs/design.md, "Groups")."""
    max_groups: int | None = None
    """Most groups with their own column (default `DEFAULT_MAX_GROUPS`); events of
    groups beyond count in one `OTHER_GROUP` column. Only with `group_by`."""
    policy: list[PolicyRow] | None = None
    """This SLO's own policy rows, in place of the top-level `policy` (None: those).
    Replaces rather than adds, so an SLO can drop a tier (tickets only, one page row);
    an empty list is refused, as an SLO that can never alert is a mistake, not a plan."""
    budget_policy: list[BudgetPolicyRow] | None = None
    """This SLO's own budget policy rows, in place of the top-level `budget_policy`
    (None: those). An empty list is allowed: the SLO never holds a gate back."""

    @property
    def group_limit(self) -> int:
        """Groups with a column of their own (0: not grouped)."""
        if not self.group_by:
            return 0
        return DEFAULT_MAX_GROUPS if self.max_groups is None else self.max_groups

    @property
    def column_count(self) -> int:
        """Columns of the evaluator's arrays this SLO takes: its groups and the overflow
        group when grouped, else 1."""
        return self.group_limit + 1 if self.group_by else 1

    @property
    def objective_ratio(self) -> float:
        return self.objective / 100.0

    @property
    def is_composite(self) -> bool:
        return self.composite is not None

    @property
    def error_budget_ratio(self) -> float:
        return 1.0 - self.objective / 100.0

    @property
    def period_s(self) -> int:
        """The rolling period; for a calendar one its nominal length (30d for a month)."""
        if isinstance(self.period, CalendarPeriod):
            return NOMINAL_PERIOD_S[self.period.calendar]
        return int(parse_duration_s(self.period))

    @property
    def calendar(self) -> CalendarPeriod | None:
        return self.period if isinstance(self.period, CalendarPeriod) else None

    @property
    def period_text(self) -> str:
        """The period for people: `30d` as configured, or `calendar month (Europe/Berlin)`."""
        cal = self.calendar
        if cal is None:
            return str(self.period)
        return f"calendar {cal.calendar} ({cal.time_zone})"

    def matches_operation(self, operation: str | None) -> bool:
        if self.operation is None:
            return True
        if operation is None:
            return False
        if any(c in self.operation for c in "*?["):
            return fnmatch.fnmatchcase(operation, self.operation)
        return operation == self.operation

    def matches_labels(self, labels: dict[str, str] | None) -> bool:
        """Whether an event with `labels` carries every `match_labels` pair."""
        if not self.match_labels:
            return True
        if not labels:
            return False
        return all(labels.get(k) == v for k, v in self.match_labels.items())


class Evaluation(_Base, frozen=True):
    """Event-time evaluation. Defaults reproduce the SRE Workbook rule exactly."""

    tick: Duration = "10s"
    allowed_lateness: Duration = "60s"
    future_limit: Duration = "10m"
    for_: Duration = msgspec.field(default="0s", name="for")
    """A condition must hold this long before the alert fires (0s: at once)."""
    keep_firing_for: Duration = "0s"
    """Hysteresis: an alert resolves only after its condition has been false this long."""
    min_events: Annotated[int, msgspec.Meta(ge=0)] = 0
    """Per window: fewer events than this is no data, so no alert."""
    min_bad_events: Annotated[int, msgspec.Meta(ge=0)] = 0

    @property
    def tick_s(self) -> float:
        return parse_duration_s(self.tick)

    @property
    def allowed_lateness_s(self) -> float:
        return parse_duration_s(self.allowed_lateness)

    @property
    def future_limit_s(self) -> float:
        return parse_duration_s(self.future_limit)

    @property
    def for_s(self) -> float:
        return parse_duration_s(self.for_)

    @property
    def keep_firing_for_s(self) -> float:
        return parse_duration_s(self.keep_firing_for)

    @property
    def ahead_s(self) -> float:
        """How far past the evaluation time the window rings must hold events: the
        future limit, the allowed lateness and two ticks (what the evaluator sizes its
        `WindowSet` with)."""
        return self.future_limit_s + self.allowed_lateness_s + 2 * self.tick_s


DEFAULT_ATTRIBUTION_WINDOW = "1h"
DEFAULT_MAX_CHANGES = 1000
MAX_ATTRIBUTION_WINDOW_S = 86400


class ChangeSettings(_Base, frozen=True):
    """`changes:`: how changes (engine.core.changes) are kept and judged."""

    attribution_window: Duration = DEFAULT_ATTRIBUTION_WINDOW
    """The budget a change is charged with is the one consumed this long after it."""
    max_kept: Annotated[int, msgspec.Meta(ge=1, le=100_000)] = DEFAULT_MAX_CHANGES
    """Changes kept (in memory and the state file); the oldest go first."""

    @property
    def attribution_window_s(self) -> float:
        return parse_duration_s(self.attribution_window)


WEEK_S = 7 * 86400


class Correction(_Base, frozen=True, kw_only=True):
    """A stretch of event time whose events the SLOs it names do not count (maintenance,
    known bad data): `[start, end)`, or every 7 days from `start` with `weekly`
    recurrence. `start`/`end` are RFC 3339 times with an offset or epoch seconds (held
    as decoded; `start_s`/`end_s` after `correction_errors` found no problem).
    engine.core.corrections applies them."""

    name: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
    start: Any
    end: Any = None
    duration: Duration | None = None
    recurrence: Literal["weekly"] | None = None
    slos: list[str] | None = None
    services: list[str] | None = None
    reason: Annotated[str, msgspec.Meta(min_length=1, max_length=1024)]

    @property
    def start_s(self) -> float:
        return time_s(self.start)

    @property
    def end_s(self) -> float:
        """The end of the (first) interval: `end`, or `start + duration`."""
        if self.duration is not None:
            return self.start_s + parse_duration_s(self.duration)
        return time_s(self.end)

    def targets(self, slos: Sequence[Slo]) -> list[int]:
        """Indices of the SLOs the correction applies to (named, or of a named service)."""
        if self.slos is not None:
            names = set(self.slos)
            return [i for i, s in enumerate(slos) if s.name in names]
        services = set(self.services or ())
        return [i for i, s in enumerate(slos) if s.service in services]


_RFC3339 = re.compile(
    r"\A(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(\.\d{1,9})?"
    r"(?:([Zz])|([+-])(\d{2}):(\d{2}))\Z"
)
MAX_EPOCH_S = 253402300799.0
"""9999-12-31T23:59:59Z: later is a typo (milliseconds given for seconds)."""


def _days_from_civil(y: int, m: int, d: int) -> int:
    """Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm)."""
    y -= m <= 2
    era = (y if y >= 0 else y - 399) // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def time_s(value: Any) -> float:
    """Epoch seconds of a config time: an RFC 3339 string with an offset, epoch seconds,
    or a datetime with an offset (YAML and TOML decode unquoted times to those; read by
    duck typing, the core does not import datetime). ValueError says what is wrong."""
    if isinstance(value, bool) or value is None:
        raise ValueError(f"expected an RFC 3339 time or epoch seconds, got {value!r}")
    if isinstance(value, int | float):
        t = float(value)
    elif isinstance(value, str):
        t = _rfc3339_s(value)
    elif callable(getattr(value, "utcoffset", None)) and callable(
        getattr(value, "timestamp", None)
    ):
        if value.utcoffset() is None:
            raise ValueError(f"{value} has no UTC offset (add Z or +HH:MM)")
        t = float(value.timestamp())
    else:
        raise ValueError(f"expected an RFC 3339 time or epoch seconds, got {value!r}")
    if not (math.isfinite(t) and 0 <= t <= MAX_EPOCH_S):
        raise ValueError(f"must be from 1970 to 9999, got {value!r}")
    return t


def _rfc3339_s(text: str) -> float:
    m = _RFC3339.match(text)
    if m is None:
        raise ValueError(
            f"expected an RFC 3339 time with an offset (2024-05-01T02:00:00Z) or epoch "
            f"seconds, got {text!r}"
        )
    y, mo, d, h, mi, sec = (int(g) for g in m.group(1, 2, 3, 4, 5, 6))
    leap = y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)
    days_in = (31, 29 if leap else 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
    if not (1 <= mo <= 12 and 1 <= d <= days_in[mo - 1] and h < 24 and mi < 60 and sec < 60):
        raise ValueError(f"not a valid date and time: {text!r}")
    offset = 0
    if m.group(9):
        oh, om = int(m.group(10)), int(m.group(11))
        if oh >= 24 or om >= 60:
            raise ValueError(f"not a valid UTC offset: {text!r}")
        offset = (oh * 60 + om) * 60 * (1 if m.group(9) == "+" else -1)
    whole = _days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec - offset
    return whole + (float(m.group(7)) if m.group(7) else 0.0)


class Config(_Base, frozen=True):
    slos: list[Slo]
    policy: list[PolicyRow] = msgspec.field(default_factory=lambda: list(DEFAULT_POLICY))
    evaluation: Evaluation = Evaluation()
    taxonomy: TaxonomyOptions = TaxonomyOptions()
    kafka: Kafka = Kafka()
    http: Http = Http()
    receivers: list[Receiver] = []
    state: State | None = None
    corrections: list[Correction] = []
    budget_policy: list[BudgetPolicyRow] = msgspec.field(
        default_factory=lambda: list(DEFAULT_BUDGET_POLICY)
    )
    """Gate decisions from budget conditions (engine.core.budget_policy, governance)."""
    gate: GateSettings = GateSettings()
    budget_alerts: BudgetAlertSettings | None = None
    """Budget exhausted / exhaustion projected alerts (absent: none)."""
    changes: ChangeSettings = ChangeSettings()
    incidents: Incidents | None = None
    """The incident lifecycle and its store (absent: no incidents are kept)."""
    audit: Audit | None = None
    """The tamper-evident audit log (absent: none)."""

    def budget_policy_of(self, slo: Slo) -> list[BudgetPolicyRow]:
        """The budget policy rows `slo` is judged with: its own, else the top-level ones."""
        return self.budget_policy if slo.budget_policy is None else slo.budget_policy

    def lookbacks_s(self) -> set[int]:
        """The burn-rate windows of the budget policy rows some SLO is judged with."""
        out: set[int] = set()
        for slo in self.slos:
            out.update(r.lookback_s for r in self.budget_policy_of(slo) if r.lookback_s)
        if self.budget_alerts is not None and self.budget_alerts.lookback_s:
            out.add(self.budget_alerts.lookback_s)
        return out

    def receiver_named(self, name: str) -> Receiver | None:
        """The receiver called `name` (`receivers[i].name`), None if there is none."""
        return next((rcv for rcv in self.receivers if rcv.name == name), None)

    def policy_of(self, slo: Slo) -> list[PolicyRow]:
        """The rows `slo` is evaluated with: its own `policy` if it has one, else the
        top-level one."""
        return self.policy if slo.policy is None else slo.policy

    def policy_rows(self) -> list[PolicyRow]:
        """Every distinct row some SLO is evaluated with (by `PolicyRow.key`), first
        occurrence first: the top-level rows when any SLO uses them, then the rows of
        the SLOs' own policies, in config order. The evaluator evaluates all of them for
        every SLO at once and masks out the rows an SLO does not have; a top-level row
        no SLO uses is left out, so its windows cost nothing."""
        rows: dict[tuple[str, int, int, float | None, float | None], PolicyRow] = {}
        if any(slo.policy is None for slo in self.slos):
            for row in self.policy:
                rows.setdefault(row.key, row)
        for slo in self.slos:
            for row in slo.policy or ():
                rows.setdefault(row.key, row)
        return list(rows.values())

    def windows_s(self) -> list[int]:
        """Every window length the evaluator keeps: the windows of every row some SLO
        uses (`policy_rows`) and the rolling SLO periods (a calendar period is counted
        apart, in engine.core.periods), and the lookbacks of the budget policy's
        `exhaustion_within` rows. All SLOs keep all of them (one ring per resolution
        serves every SLO), so an SLO's own long window costs every SLO."""
        rows = self.policy_rows()
        spans = {row.long_s for row in rows} | {row.short_s for row in rows}
        spans |= {w for w in self.lookbacks_s() if 0 < w <= MAX_WINDOW_S}
        spans |= {slo.period_s for slo in self.slos if slo.calendar is None}
        return sorted(spans)

    def window_bytes_per_slo(self) -> int:
        """Bytes of window arrays the evaluator allocates per SLO (engine.core.ladder)."""
        ev = self.evaluation
        return window_bytes(self.windows_s(), ev.ahead_s, ev.tick_s)

    def column_count(self) -> int:
        """Columns of the evaluator's arrays: one per SLO, `max_groups + 1` per grouped
        SLO."""
        return sum(slo.column_count for slo in self.slos)

    def window_bytes(self) -> int:
        """Bytes of window arrays the evaluator allocates for all SLOs (composites
        included: their columns stay empty, see docs/design.md "Composite SLOs"; a
        grouped SLO takes `max_groups + 1` columns)."""
        return self.column_count() * self.window_bytes_per_slo()
