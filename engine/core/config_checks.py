"""The checks of a decoded config (engine.core.config): `config_errors`, every problem
the document alone shows as `$.path: message` lines, and the checks it is made of (one
function per part of the config; `correction_errors` is also used for corrections
posted to the API).

The windows' sizes are checked here too: no window or period over `MAX_WINDOW_S`, the
window arrays of all SLOs within `MAX_WINDOW_MEMORY_BYTES`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

from engine.core.budget_policy import (
    budget_alert_errors,
    budget_policy_errors,
    escalation_errors,
    gate_settings_errors,
)
from engine.core.config_io import (
    AlertmanagerReceiver,
    Audit,
    Incidents,
    Kafka,
    PagerDutyReceiver,
    Receiver,
    WebhookReceiver,
)
from engine.core.config_model import (
    MAX_ATTRIBUTION_WINDOW_S,
    MAX_MAX_GROUPS,
    WEEK_S,
    Config,
    Correction,
    Evaluation,
    PolicyRow,
    Slo,
    time_s,
)
from engine.core.decode import MAX_LABEL_BYTES, MAX_LABELS
from engine.core.durations import format_duration, parse_duration_s
from engine.core.ladder import MAX_WINDOW_S
from engine.core.periods import time_zone
from engine.core.taxonomy import SliKind

__all__ = ["MAX_WINDOW_MEMORY_BYTES", "config_errors", "correction_errors", "format_bytes"]

MAX_WINDOW_MEMORY_BYTES = 1 << 30
"""The most window arrays (rings and running sums, all SLOs) a config may need: 1 GiB.
The default policy with a 30-day period needs about 60 KiB per SLO at the default tick,
so this is over 17,000 SLOs; a config over it is a mistake (a window of 1 s buckets held a day ahead
for thousands of SLOs) far more often than a plan. The arrays are also copied whole
into every state snapshot, so a process holding 1 GiB of them needs about twice that
while it writes one."""


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
    for key in ("idle_timeout", "header_timeout"):
        if not parse_duration_s(getattr(cfg.http, key)) >= 0.1:
            errors.append(f"$.http.{key}: must be at least 100ms, got {getattr(cfg.http, key)}")
    errors += _change_errors(cfg)
    if cfg.incidents is not None:
        errors += _incident_errors(cfg.incidents)
    if cfg.audit is not None:
        errors += _audit_errors(cfg.audit)
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


MAX_QUIET_PERIOD_S = 7 * 86400
_DSN = re.compile(r"\A(postgres|postgresql)://(?:([^@/]*)@)?[^/?#]*(?:/[^?#]*)?(?:\?[^#]*)?\Z")


def _incident_errors(inc: Incidents) -> list[str]:
    """One store (a file or a DSN), the password only through a secret source, and a
    quiet period the lifecycle can wait out."""
    errors: list[str] = []
    path = "$.incidents"
    q = inc.quiet_period_s
    if q > MAX_QUIET_PERIOD_S:
        errors.append(f"{path}.quiet_period: at most 7d, got {inc.quiet_period}")
    if inc.path is not None and inc.dsn is not None:
        errors.append(f"{path}.dsn: give `path` (SQLite) or `dsn` (PostgreSQL), not both")
    secrets = [k for k in ("password_env", "password_file") if getattr(inc, k) is not None]
    if len(secrets) > 1:
        errors.append(f"{path}.password_file: give password_env or password_file, not both")
    if inc.dsn is None:
        errors += [f"{path}.{k}: only with `dsn` (a PostgreSQL store)" for k in secrets]
        return errors
    m = _DSN.match(inc.dsn)
    if m is None:
        errors.append(
            f"{path}.dsn: must be a postgresql:// URL (postgresql://user@host:5432/db), "
            "got something else"
        )
    elif (m.group(2) is not None and ":" in m.group(2)) or "password=" in inc.dsn:
        errors.append(
            f"{path}.dsn: must not hold a password; give it through password_env or password_file"
        )
    return errors


MAX_AUDIT_FSYNC_INTERVAL_S = 60.0
MAX_AUDIT_FSYNC_ENTRIES = 100_000


def _audit_errors(audit: Audit) -> list[str]:
    """At most one key source, and a batch loss window that is bounded and only given
    with `fsync: batch`."""
    errors: list[str] = []
    path = "$.audit"
    if audit.key_env is not None and audit.key_file is not None:
        errors.append(f"{path}.key_file: give key_env or key_file, not both")
    given = [k for k in ("fsync_interval", "fsync_max_entries") if k in _given(audit)]
    if audit.fsync != "batch":
        errors += [f"{path}.{k}: only with `fsync: batch`" for k in given]
    interval = audit.fsync_interval_s
    if not 0 < interval <= MAX_AUDIT_FSYNC_INTERVAL_S:
        errors.append(
            f"{path}.fsync_interval: must be longer than 0s and at most 1m, got "
            f"{audit.fsync_interval}"
        )
    if not 1 <= audit.fsync_max_entries <= MAX_AUDIT_FSYNC_ENTRIES:
        errors.append(
            f"{path}.fsync_max_entries: must be from 1 to {MAX_AUDIT_FSYNC_ENTRIES}, got "
            f"{audit.fsync_max_entries}"
        )
    return errors


def _given(audit: Audit) -> set[str]:
    """The fields of `audit` set to other than their defaults."""
    default = Audit(path=audit.path)
    return {f for f in audit.__struct_fields__ if getattr(audit, f) != getattr(default, f)}


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
    scale = kafka.scale
    internal = {"counts_topic": scale.counts_topic, "changelog_topic": scale.changelog_topic}
    for field, topic in internal.items():
        if topic in kafka.topics or topic in (kafka.dead_letter_topic, kafka.changes_topic):
            errors.append(
                f"$.kafka.scale.{field}: {topic!r} is also a topic of request events, "
                "dead letters or changes"
            )
    if scale.counts_topic == scale.changelog_topic:
        errors.append("$.kafka.scale.changelog_topic: must differ from counts_topic")
    if scale.evaluate_group_id == kafka.group_id:
        errors.append("$.kafka.scale.evaluate_group_id: must differ from kafka.group_id")
    if not 1 <= parse_duration_s(kafka.session_timeout) <= 300:
        errors.append(f"$.kafka.session_timeout: from 1s to 5m, got {kafka.session_timeout}")
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
