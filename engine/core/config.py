"""Configuration: frozen msgspec Structs decoded from YAML or TOML, validated with `$.path` errors.

Percentages are converted to ratios once, here at the edge (`objective_ratio`), and
durations to seconds (`*_s` properties); the rest of the engine never sees either form.

`parse_config` checks everything that can be known from the document alone, the
windows' sizes included (no window or period over `MAX_WINDOW_S`, window arrays within
`MAX_WINDOW_MEMORY_BYTES`); what needs the outside world (secrets, TLS files, the listen
address, receiver URLs) is checked by the adapters, and `burnrate check` and `burnrate
run` run both through engine.commands.preflight.
"""

from __future__ import annotations

import fnmatch
import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec

from engine.core.budget_policy import (
    DEFAULT_BUDGET_POLICY,
    BudgetAlertSettings,
    BudgetPolicyRow,
    GateSettings,
    budget_alert_errors,
    budget_policy_errors,
    escalation_errors,
    gate_settings_errors,
)
from engine.core.decode import MAX_LABEL_BYTES, MAX_LABELS
from engine.core.durations import DURATION_PATTERN, format_duration, parse_duration_s
from engine.core.ladder import MAX_WINDOW_S, window_bytes
from engine.core.periods import NOMINAL_PERIOD_S, CalendarUnit, time_zone
from engine.core.taxonomy import SliKind, TaxonomyOptions
from engine.errors import ConfigError

MAX_WINDOW_MEMORY_BYTES = 1 << 30
"""The most window arrays (rings and running sums, all SLOs) a config may need: 1 GiB.
The default policy with a 30-day period needs about 60 KiB per SLO at the default tick,
so this is over 17,000 SLOs; a config over it is a mistake (a window of 1 s buckets held a day ahead
for thousands of SLOs) far more often than a plan. The arrays are also copied whole
into every state snapshot, so a process holding 1 GiB of them needs about twice that
while it writes one."""

Duration = Annotated[str, msgspec.Meta(pattern=DURATION_PATTERN)]
Name = Annotated[str, msgspec.Meta(pattern=r"\A[a-z0-9_.-]+\Z", max_length=128)]
Severity = Literal["page", "ticket"]
Escalations = Literal["named", "all"]

DEFAULT_MAX_GROUPS = 100
MAX_MAX_GROUPS = 10_000
OTHER_GROUP = "__other__"
"""The group of a grouped SLO's events beyond its `max_groups`."""
GROUP_BY_OPERATION = "operation"
"""The `group_by` key naming the event's operation (every other key is a label)."""


class _Base(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    pass


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


class KafkaSecurity(_Base, frozen=True):
    protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_username_env: str | None = None
    sasl_password_env: str | None = None
    sasl_password_file: str | None = None


class Kafka(_Base, frozen=True):
    bootstrap_servers: str = "localhost:9092"
    topics: list[Annotated[str, msgspec.Meta(min_length=1)]] = msgspec.field(
        default_factory=lambda: ["request-events"]
    )
    group_id: str = "burnrate"
    format: Literal["json", "msgpack"] = "json"
    formats: dict[str, Literal["json", "msgpack"]] = {}
    """Per-topic override of `format`."""
    dead_letter_topic: str | None = None
    changes_topic: str | None = None
    """A topic of change records (deploys, config pushes: the body of `POST
    /v1/changes`), read by a consumer of its own (engine.adapters.kafka.changes)."""
    security: KafkaSecurity = KafkaSecurity()


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


class Http(_Base, frozen=True):
    listen: str = "127.0.0.1:9464"
    auth_token_env: str | None = None
    auth_token_file: str | None = None


class WebhookReceiver(_Base, frozen=True, tag="webhook", tag_field="type"):
    name: Name | None = None
    """How other parts of the config (budget-policy escalations) refer to this
    receiver; unique among the receivers. Optional: an unnamed receiver still gets
    every transition of the severities it takes."""
    escalations: Escalations = "named"
    """Which budget-policy escalations this receiver hears: `named` (those of rows whose
    `escalate` names it) or `all` (every one, e.g. an Alertmanager that routes by label)."""
    url: str | None = None
    urls: list[str] = []
    secret_env: str | None = None
    secret_file: str | None = None
    timeout: Duration = "15s"


class AlertmanagerReceiver(_Base, frozen=True, tag="alertmanager", tag_field="type"):
    name: Name | None = None
    escalations: Escalations = "named"
    url: str | None = None
    urls: list[str] = []
    resend_interval: Duration = "1m"


class ConsoleReceiver(_Base, frozen=True, tag="console", tag_field="type"):
    name: Name | None = None
    escalations: Escalations = "named"


PagerDutySeverityName = Literal["critical", "error", "warning", "info"]
PAGERDUTY_EVENTS_URL = "https://events.pagerduty.com/v2/enqueue"


class PagerDutySeverity(_Base, frozen=True):
    """The PagerDuty `payload.severity` each of our severities is sent with."""

    page: PagerDutySeverityName = "critical"
    ticket: PagerDutySeverityName = "warning"

    def of(self, severity: Severity) -> PagerDutySeverityName:
        return self.page if severity == "page" else self.ticket


class PagerDutyReceiver(_Base, frozen=True, tag="pagerduty", tag_field="type"):
    """A PagerDuty service through its Events API v2 integration (engine.adapters.alerts
    .pagerduty): the integration key is the routing key, read from `routing_key_env` or
    `routing_key_file` (exactly one), never given inline."""

    name: Name | None = None
    escalations: Escalations = "named"
    routing_key_env: str | None = None
    routing_key_file: str | None = None
    url: str = PAGERDUTY_EVENTS_URL
    severities: list[Severity] = msgspec.field(default_factory=lambda: ["page", "ticket"])
    """Which alerts this receiver hears about; the others are not sent to it."""
    severity_map: PagerDutySeverity = PagerDutySeverity()
    timeout: Duration = "10s"


class State(_Base, frozen=True):
    """Evaluator snapshots, so a restart keeps its windows and budgets (absent: none)."""

    path: Annotated[str, msgspec.Meta(min_length=1)]
    """The snapshot file; written atomically (temp file in the same directory + rename)."""
    interval: Duration = "30s"
    """How often a snapshot is written (and once more on shutdown)."""

    @property
    def interval_s(self) -> float:
        return parse_duration_s(self.interval)


Receiver = WebhookReceiver | AlertmanagerReceiver | ConsoleReceiver | PagerDutyReceiver

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


def config_errors(cfg: Config) -> list[str]:
    """Every problem of a decoded config that the document alone shows, one
    `$.path: message` line each (empty: the config is valid)."""
    errors: list[str] = []
    if not cfg.slos:
        errors.append("$.slos: at least one SLO is required")
    seen: dict[str, int] = {}
    for i, slo in enumerate(cfg.slos):
        path = f"$.slos[{i}]"
        if slo.name in seen:
            first = seen[slo.name]
            errors.append(
                f"{path}.name: duplicate SLO name {slo.name!r} (first at $.slos[{first}])"
            )
        seen.setdefault(slo.name, i)
        if not 0 < slo.objective < 100:
            errors.append(f"{path}.objective: must be > 0 and < 100 (percent), got {slo.objective}")
        if slo.composite is not None:
            errors += _composite_errors(path, slo, cfg.slos)
        elif slo.service is None or slo.sli is None:
            errors += [
                f"{path}.{field}: required (or give `composite` for a composite SLO)"
                for field in ("service", "sli")
                if getattr(slo, field) is None
            ]
        elif slo.sli == SliKind.LATENCY and slo.threshold_ms is None:
            errors.append(f"{path}.threshold_ms: required for a latency SLO")
        elif slo.sli != SliKind.LATENCY and slo.threshold_ms is not None:
            errors.append(f"{path}.threshold_ms: only latency SLOs take a threshold")
        errors += _match_labels_errors(path, slo)
        errors += _group_errors(path, slo)
        if slo.calendar is not None:
            try:
                time_zone(slo.calendar.time_zone)
            except ValueError as exc:
                errors.append(f"{path}.period.time_zone: {exc}")
        elif slo.period_s < 3600:
            errors.append(f"{path}.period: must be at least 1h, got {slo.period}")
        elif slo.period_s > MAX_WINDOW_S:
            errors.append(f"{path}.period: {_too_long(slo.period_text)}")
        if slo.policy is not None:
            if not slo.policy:
                errors.append(
                    f"{path}.policy: at least one row is required (omit the key for the "
                    "top-level policy)"
                )
            errors += _policy_errors(f"{path}.policy", slo.policy, cfg.evaluation)
        if slo.budget_policy is not None:
            errors += budget_policy_errors(
                f"{path}.budget_policy", slo.budget_policy, cfg.evaluation.tick_s
            )
    ev = cfg.evaluation
    errors += budget_policy_errors("$.budget_policy", cfg.budget_policy, ev.tick_s)
    errors += gate_settings_errors(cfg.gate)
    if cfg.budget_alerts is not None:
        errors += budget_alert_errors(cfg.budget_alerts, ev.tick_s)
    names = [rcv.name for rcv in cfg.receivers if rcv.name is not None]
    errors += escalation_errors("$.budget_policy", cfg.budget_policy, names)
    for i, slo in enumerate(cfg.slos):
        if slo.budget_policy is not None:
            errors += escalation_errors(f"$.slos[{i}].budget_policy", slo.budget_policy, names)
    if not cfg.policy:
        errors.append("$.policy: at least one row is required (omit the key for the default)")
    errors += _policy_errors("$.policy", cfg.policy, ev)
    if ev.tick_s < 1:
        errors.append(f"$.evaluation.tick: must be at least 1s, got {ev.tick}")
    if ev.allowed_lateness_s > 3600:
        errors.append(f"$.evaluation.allowed_lateness: at most 1h, got {ev.allowed_lateness}")
    if ev.future_limit_s > 86400:
        errors.append(f"$.evaluation.future_limit: at most 1d, got {ev.future_limit}")
    if cfg.state is not None and cfg.state.interval_s < 1:
        errors.append(f"$.state.interval: must be at least 1s, got {cfg.state.interval}")
    errors += _kafka_errors(cfg.kafka)
    errors += _change_errors(cfg)
    for i, corr in enumerate(cfg.corrections):
        errors += correction_errors(corr, cfg.slos, f"$.corrections[{i}]")
    errors += _receiver_errors(cfg.receivers)
    if cfg.slos and all(0 < w <= MAX_WINDOW_S for w in cfg.windows_s()):
        errors += _memory_errors(cfg)  # (windows refused above have no size worth saying)
    return errors


_NOT_IN_COMPOSITE = ("service", "operation", "sli", "threshold_ms")


def _receiver_errors(receivers: Sequence[Receiver]) -> list[str]:
    """Shape of each receiver and unique names; URLs and secrets need the outside world
    (engine.adapters.alerts.receivers)."""
    errors: list[str] = []
    named: dict[str, int] = {}
    for i, rcv in enumerate(receivers):
        path = f"$.receivers[{i}]"
        if rcv.name is not None:
            if rcv.name in named:
                errors.append(
                    f"{path}.name: duplicate receiver name {rcv.name!r} (first at "
                    f"$.receivers[{named[rcv.name]}])"
                )
            named.setdefault(rcv.name, i)
        if isinstance(rcv, WebhookReceiver | AlertmanagerReceiver) and not (rcv.url or rcv.urls):
            errors.append(f"{path}: needs url or urls")
        if isinstance(rcv, WebhookReceiver | PagerDutyReceiver) and not (
            parse_duration_s(rcv.timeout) > 0
        ):
            errors.append(f"{path}.timeout: must be longer than 0s")
        if isinstance(rcv, AlertmanagerReceiver) and not parse_duration_s(rcv.resend_interval) > 0:
            errors.append(f"{path}.resend_interval: must be longer than 0s")
        if isinstance(rcv, PagerDutyReceiver):
            errors += _pagerduty_errors(path, rcv)
    return errors


def _pagerduty_errors(path: str, rcv: PagerDutyReceiver) -> list[str]:
    errors: list[str] = []
    sources = [rcv.routing_key_env, rcv.routing_key_file]
    if all(source is None for source in sources):
        errors.append(f"{path}: needs routing_key_env or routing_key_file (the integration key)")
    elif None not in sources:
        errors.append(f"{path}: give one of routing_key_env and routing_key_file, not both")
    if not rcv.severities:
        errors.append(f"{path}.severities: at least one severity (omit the key for all)")
    for j, severity in enumerate(rcv.severities):
        if severity in rcv.severities[:j]:
            errors.append(f"{path}.severities[{j}]: {severity!r} is given twice")
    return errors


def _group_errors(path: str, slo: Slo) -> list[str]:
    """`group_by` and `max_groups`: keys distinct, non-empty, short enough to be a
    label name and not fixed by `match_labels` (one group); 1 <= max_groups <=
    MAX_MAX_GROUPS, and only with group_by; not on a composite SLO."""
    errors: list[str] = []
    if slo.composite is not None and slo.group_by:
        errors.append(f"{path}.group_by: a composite SLO cannot be grouped")
    if slo.max_groups is not None:
        if not slo.group_by:
            errors.append(f"{path}.max_groups: only with group_by")
        elif not 1 <= slo.max_groups <= MAX_MAX_GROUPS:
            errors.append(
                f"{path}.max_groups: must be from 1 to {MAX_MAX_GROUPS}, got {slo.max_groups}"
            )
    seen: set[str] = set()
    for j, key in enumerate(slo.group_by):
        at = f"{path}.group_by[{j}]"
        if not key:
            errors.append(f"{at}: must not be empty")
        elif len(key.encode("utf-8", "surrogatepass")) > MAX_LABEL_BYTES:
            errors.append(f"{at}: label name over {MAX_LABEL_BYTES} bytes (no event carries one)")
        elif key in seen:
            errors.append(f"{at}: {key!r} twice")
        elif key in slo.match_labels:
            errors.append(
                f"{at}: {key!r} is fixed to {slo.match_labels[key]!r} by match_labels, so "
                "every event of the SLO is in one group (group by another label, or drop it)"
            )
        seen.add(key)
    if len(slo.group_by) > MAX_LABELS + 1:
        errors.append(f"{path}.group_by: at most {MAX_LABELS} labels and operation")
    return errors


def _match_labels_errors(path: str, slo: Slo) -> list[str]:
    """`match_labels` no event could satisfy (an event carries at most `MAX_LABELS`
    labels of at most `MAX_LABEL_BYTES` bytes each) or on a composite SLO."""
    at = f"{path}.match_labels"
    if slo.composite is not None and slo.match_labels:
        return [f"{at}: a composite SLO has no match_labels of its own (its members do)"]
    errors: list[str] = []
    if len(slo.match_labels) > MAX_LABELS:
        errors.append(f"{at}: at most {MAX_LABELS} labels (an event carries no more)")
    for k, v in slo.match_labels.items():
        if not k:
            errors.append(f"{at}: a label name must not be empty")
        for text, what in ((k, "name"), (v, "value")):
            if len(text.encode("utf-8", "surrogatepass")) > MAX_LABEL_BYTES:
                errors.append(
                    f"{at}.{k[:32]}: label {what} over {MAX_LABEL_BYTES} bytes (no event "
                    "carries one)"
                )
    return errors


def _composite_errors(path: str, slo: Slo, slos: list[Slo]) -> list[str]:
    """The problems of a composite SLO at `path`: members must be distinct plain SLOs of
    the same config with weights > 0, and it has no selector or SLI of its own."""
    assert slo.composite is not None
    errors = [
        f"{path}.{field}: a composite SLO has no {field} of its own (its members do)"
        for field in _NOT_IN_COMPOSITE
        if getattr(slo, field) is not None
    ]
    if not slo.failed_counts_bad:
        errors.append(f"{path}.failed_counts_bad: a composite SLO has no SLI of its own")
    if slo.calendar is not None:
        errors.append(
            f"{path}.period: a composite SLO's period is rolling (e.g. 30d); calendar "
            "periods are for plain SLOs"
        )
    if not slo.composite:
        errors.append(f"{path}.composite: at least one member is required")
    by_name = {s.name: s for s in slos}
    first: dict[str, int] = {}
    for j, member in enumerate(slo.composite):
        at = f"{path}.composite[{j}]"
        target = by_name.get(member.slo)
        if member.slo in first:
            k = first[member.slo]
            errors.append(f'{at}.slo: duplicate member "{member.slo}" (first at composite[{k}])')
        elif target is None:
            errors.append(f'{at}.slo: unknown SLO "{member.slo}"')
        elif target.is_composite:
            errors.append(
                f'{at}.slo: "{member.slo}" is a composite SLO; members must be plain SLOs'
            )
        elif target.group_by:
            errors.append(
                f'{at}.slo: "{member.slo}" is grouped (group_by); members must be ungrouped'
            )
        first.setdefault(member.slo, j)
        if not member.weight > 0:  # NaN too
            errors.append(f"{at}.weight: must be > 0, got {member.weight}")
        elif member.weight == math.inf:
            errors.append(f"{at}.weight: must be finite, got {member.weight}")
    return errors


def _policy_errors(path: str, rows: list[PolicyRow], ev: Evaluation) -> list[str]:
    """The problems of one list of policy rows, the top-level one or an SLO's own."""
    errors: list[str] = []
    for i, row in enumerate(rows):
        at = f"{path}[{i}]"
        if (row.burn_rate is None) == (row.budget_consumed_ratio is None):
            errors.append(f"{at}: give exactly one of burn_rate or budget_consumed_ratio")
        if row.short_s <= 0 or row.long_s <= 0:
            errors.append(f"{at}: windows must be longer than 0s")
        elif row.long_s > MAX_WINDOW_S:
            errors.append(f"{at}.long: {_too_long(row.long)}")
        elif row.short_s >= row.long_s:
            errors.append(f"{at}.short: must be shorter than long ({row.short} >= {row.long})")
    for i, row in enumerate(rows):
        if 0 < row.short_s < ev.tick_s:
            errors.append(
                f"{path}[{i}].short: must be at least the evaluation tick ({ev.tick}), "
                f"got {row.short}"
            )
    return errors


def correction_errors(c: Correction, slos: Sequence[Slo], path: str) -> list[str]:
    """The problems of one correction, at `path` (`$.corrections[i]` in a config, `$` in
    a body posted to the API)."""
    errors: list[str] = []
    start = end = None
    try:
        start = c.start_s
    except ValueError as exc:
        errors.append(f"{path}.start: {exc}")
    if (c.end is None) == (c.duration is None):
        errors.append(f"{path}: give exactly one of end or duration")
    elif c.duration is not None:
        length = parse_duration_s(c.duration)
        if not length > 0:
            errors.append(f"{path}.duration: must be longer than 0s")
        elif c.recurrence == "weekly" and length > WEEK_S:
            errors.append(f"{path}.duration: at most 7d with weekly recurrence, got {c.duration}")
    else:
        try:
            end = time_s(c.end)
        except ValueError as exc:
            errors.append(f"{path}.end: {exc}")
    if start is not None and end is not None:
        if not end > start:
            errors.append(f"{path}.end: must be after start")
        elif c.recurrence == "weekly" and end - start > WEEK_S:
            errors.append(f"{path}.end: at most 7d after start with weekly recurrence")
    if (c.slos is None) == (c.services is None):
        errors.append(f"{path}: give exactly one of slos or services")
    names = {s.name for s in slos}
    services = {s.service for s in slos}
    composites = {s.name for s in slos if s.composite is not None}
    for field, given, known, what in (
        ("slos", c.slos, names, "no SLO named"),
        ("services", c.services, services, "no SLO has the service"),
    ):
        if given is None:
            continue
        if not given:
            errors.append(f"{path}.{field}: at least one is required")
        errors += [
            f"{path}.{field}[{j}]: {what} {v!r}" for j, v in enumerate(given) if v not in known
        ]
    errors += [
        f"{path}.slos[{j}]: {v!r} is a composite SLO, which has no events of its own: "
        "correct its members"
        for j, v in enumerate(c.slos or ())
        if v in composites
    ]
    return errors


def _too_long(duration: str) -> str:
    return f"at most {format_duration(MAX_WINDOW_S)}, got {duration}"


_SASL_FIELDS = (
    "sasl_mechanism",
    "sasl_username",
    "sasl_username_env",
    "sasl_password_env",
    "sasl_password_file",
)
_TLS_FIELDS = ("ssl_cafile", "ssl_certfile", "ssl_keyfile")


def _change_errors(cfg: Config) -> list[str]:
    """The attribution window must be whole seconds and held by the window rings (at
    most the longest window kept), so a change's budget can be read back when its
    window closes."""
    w = cfg.changes.attribution_window_s
    text = cfg.changes.attribution_window
    path = "$.changes.attribution_window"
    if not w >= 1 or w != int(w):
        return [f"{path}: must be whole seconds, at least 1s, got {text}"]
    if w > MAX_ATTRIBUTION_WINDOW_S:
        return [f"{path}: at most 1d, got {text}"]
    windows = [x for x in cfg.windows_s() if 0 < x <= MAX_WINDOW_S]
    if windows and w > max(windows):
        return [
            f"{path}: at most the longest window kept ({format_duration(max(windows))}), got {text}"
        ]
    return []


def _kafka_errors(kafka: Kafka) -> list[str]:
    """Settings the Kafka clients would silently ignore or could never use."""
    errors: list[str] = []
    if not kafka.topics:
        errors.append("$.kafka.topics: at least one topic is required")
    if kafka.dead_letter_topic and kafka.dead_letter_topic in kafka.topics:
        errors.append(
            f"$.kafka.dead_letter_topic: {kafka.dead_letter_topic!r} is also in kafka.topics: "
            "rejected records would be consumed and rejected again"
        )
    if kafka.changes_topic is not None:
        if not kafka.changes_topic:
            errors.append("$.kafka.changes_topic: must not be empty")
        elif kafka.changes_topic in kafka.topics or kafka.changes_topic == kafka.dead_letter_topic:
            errors.append(
                f"$.kafka.changes_topic: {kafka.changes_topic!r} is also a topic of request "
                "events or dead letters"
            )
    for topic in kafka.formats:
        if topic not in kafka.topics:
            errors.append(f"$.kafka.formats[{topic!r}]: not one of kafka.topics")
    sec = kafka.security
    sasl = [name for name in _SASL_FIELDS if getattr(sec, name) is not None]
    if sasl and sec.protocol not in ("SASL_PLAINTEXT", "SASL_SSL"):
        errors.append(
            f"$.kafka.security.protocol: {sec.protocol} sends no SASL credentials, but "
            f"{_are_set(sasl)} (use SASL_PLAINTEXT or SASL_SSL, or remove {_them(sasl)})"
        )
    tls = [name for name in _TLS_FIELDS if getattr(sec, name) is not None]
    if tls and sec.protocol not in ("SSL", "SASL_SSL"):
        errors.append(
            f"$.kafka.security.protocol: {sec.protocol} uses no TLS, but "
            f"{_are_set(tls)} (use SSL or SASL_SSL, or remove {_them(tls)})"
        )
    return errors


def _are_set(names: list[str]) -> str:
    return f"{names[0]} is set" if len(names) == 1 else f"{', '.join(names)} are set"


def _them(names: list[str]) -> str:
    return "it" if len(names) == 1 else "them"


def _memory_errors(cfg: Config) -> list[str]:
    """The window arrays the evaluator would allocate, against MAX_WINDOW_MEMORY_BYTES."""
    per_slo = cfg.window_bytes_per_slo()
    columns = cfg.column_count()
    total = columns * per_slo
    if total <= MAX_WINDOW_MEMORY_BYTES:
        return []
    what, fewer = f"{len(cfg.slos)} SLOs", "fewer SLOs"
    if columns != len(cfg.slos):
        what += f" ({columns} columns with their groups)"
        fewer = "fewer SLOs or max_groups"
    return [
        f"$.slos: the windows of {what} need about {format_bytes(total)} "
        f"({format_bytes(per_slo)} per SLO), more than the limit of "
        f"{format_bytes(MAX_WINDOW_MEMORY_BYTES)}; use {fewer}, fewer or longer policy "
        "windows, or a shorter evaluation.future_limit"
    ]


def format_bytes(n: int) -> str:
    """`512 B`, `20.5 KiB`, `1 GiB`: a size for people."""
    size = float(n)
    for unit in ("B", "KiB", "MiB"):
        if size < 1024:
            return f"{n} B" if unit == "B" else f"{_one_decimal(size)} {unit}"
        size /= 1024
    return f"{_one_decimal(size)} GiB"


def _one_decimal(x: float) -> str:
    return f"{x:.1f}".removesuffix(".0")


def decode_config(data: bytes | str, *, fmt: Literal["yaml", "toml"] = "yaml") -> Config:
    """Decode a config document, types and value ranges only (`config_errors` has the
    rest); raises ConfigError with the first problem the decoder met."""
    try:
        if fmt == "toml":
            return msgspec.toml.decode(data, type=Config)
        return msgspec.yaml.decode(data, type=Config)
    except msgspec.ValidationError as exc:
        raise ConfigError([_path_first(str(exc))]) from None
    except msgspec.DecodeError as exc:
        raise ConfigError([f"$: not valid {fmt.upper()}: {exc}"]) from None


def parse_config(data: bytes | str, *, fmt: Literal["yaml", "toml"] = "yaml") -> Config:
    """Decode and validate a config document; raises ConfigError listing every problem."""
    cfg = decode_config(data, fmt=fmt)
    errors = config_errors(cfg)
    if errors:
        raise ConfigError(errors)
    return cfg


def decode_config_file(path: str | Path) -> Config:
    """Read and decode a `.yaml`/`.yml` or `.toml` file (not validated: see `load_config`)."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise ConfigError([f"$: cannot read {p}: {exc.strerror}"]) from None
    return decode_config(data, fmt="toml" if p.suffix == ".toml" else "yaml")


def load_config(path: str | Path) -> Config:
    """Read a `.yaml`/`.yml` or `.toml` file into a validated Config."""
    cfg = decode_config_file(path)
    errors = config_errors(cfg)
    if errors:
        raise ConfigError(errors)
    return cfg


def _path_first(message: str) -> str:
    """msgspec says `Expected ... - at `$.slos[0].objective``; we say `$.slos[0].objective: ...`."""
    text, sep, where = message.rpartition(" - at `")
    if sep:
        return f"{where.rstrip('`')}: {text}"
    return f"$: {message}"
