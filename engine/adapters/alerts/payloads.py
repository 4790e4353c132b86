"""Alert payloads built from evaluator transitions, in the formats Alertmanager speaks.

Pure functions: an `engine.core.evaluator.Transition` plus the SLO's config in, JSON
bytes out. Two bodies are built:

- `webhook_body`: what Alertmanager itself POSTs to a webhook receiver (format version
  4), so receivers written for Alertmanager accept Burnrate's notifications unchanged;
- `alertmanager_alerts`: the list Alertmanager's API v2 takes on `POST /api/v2/alerts`,
  for users who route Burnrate's alerts through their own Alertmanager.

Identity. The evaluator keeps one alert per (SLO, severity). Its labels (the alert's
identity in Alertmanager and the input of its fingerprint) are `alertname`, `slo`,
`service`, `severity`, the window pair `long_window`/`short_window` of the policy row
that made it fire, then the SLO's configured labels (a composite SLO has no `service`
label: it has no service of its own). Which row holds can change while
an alert fires (a fast burn tapering into a slow one) and the evaluator's `resolved`
transition names the row that held last, so the window labels always come from the
alert's *firing* transition: builders take it as `fired` and the resolve notification
stays the same alert as the one that fired. The windows and burn rates of the row a
transition itself names are annotations.

Budget alerts and escalations (engine.core.budget_alerts) have their own `alertname`
(`ErrorBudgetExhausted`, `ErrorBudgetExhaustionProjected`, `ErrorBudgetEscalation`) and
an `alert_type` label (`budget`, `escalation`) instead of the window labels; an
escalation's labels add its budget policy row (`policy_row`) and `decision`. So the
same SLO's burn-rate alert, budget alerts and escalations are distinct alerts
(fingerprints) that Alertmanager routes and inhibits by label. Their annotations carry
the budget left, the burn rate over the lookback, the time to exhaustion, and an
escalation's reason and receivers.
Changes. A firing transition that came within the attribution window of changes of
its SLO's service (`Transition.changes`, engine.core.changes) carries the annotation
`changes`: each change's kind, version and time, and the share of the SLO's error
budget consumed since it, newest first (`deploy 4.2.1 at 2026-01-01T10:00:00Z: 3.5% of
the error budget consumed since`). Without such changes there is no such annotation,
so other alerts are as before.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

import msgspec

from engine.core.budget import time_to_exhaustion_s
from engine.core.budget_alerts import ALERTNAMES
from engine.core.config import Slo
from engine.core.durations import format_duration
from engine.core.evaluator import AlertKey, ChangeNote, Transition

__all__ = [
    "ALERTNAME",
    "BUILTIN_LABELS",
    "GROUP_BY",
    "ZERO_TIME",
    "FiredLookup",
    "Item",
    "PostableAlert",
    "WebhookAlert",
    "WebhookMessage",
    "alert_annotations",
    "alert_labels",
    "alertmanager_alerts",
    "changes_text",
    "fingerprint",
    "generator_url",
    "group_key",
    "group_transitions",
    "rfc3339",
    "webhook_body",
]

ALERTNAME = ALERTNAMES["burn"]
BUILTIN_LABELS = frozenset(
    {"alertname", "slo", "group", "service", "severity", "long_window", "short_window"}
)
"""Labels Burnrate sets; an SLO's configured labels with these names are ignored."""
GROUP_BY: tuple[str, ...] = ("alertname", "slo", "severity")
"""The labels one webhook body is grouped by (its `groupLabels`)."""
ZERO_TIME = "0001-01-01T00:00:00Z"
"""Go's zero time: Alertmanager's `endsAt` for an alert that is still firing."""

Item = tuple[Transition, Slo]
"""A transition and the config of its SLO."""
FiredLookup = Callable[[Transition], Transition | None]
"""The `firing` transition of the alert a `resolved` transition ends, or None if unknown."""

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_FNV_OFFSET = 0xCBF29CE484222325
_FNV_PRIME = 0x100000001B3
_MASK64 = (1 << 64) - 1


class WebhookAlert(msgspec.Struct, kw_only=True):
    """One alert inside a webhook v4 message."""

    status: str
    labels: dict[str, str]
    annotations: dict[str, str]
    starts_at: str = msgspec.field(name="startsAt")
    ends_at: str = msgspec.field(name="endsAt")
    generator_url: str = msgspec.field(name="generatorURL")
    fingerprint: str


class WebhookMessage(msgspec.Struct, kw_only=True):
    """An Alertmanager webhook body, format version 4 (receivers may decode into this)."""

    version: str = "4"
    group_key: str = msgspec.field(name="groupKey")
    truncated_alerts: int = msgspec.field(name="truncatedAlerts", default=0)
    status: str
    receiver: str
    group_labels: dict[str, str] = msgspec.field(name="groupLabels")
    common_labels: dict[str, str] = msgspec.field(name="commonLabels")
    common_annotations: dict[str, str] = msgspec.field(name="commonAnnotations")
    external_url: str = msgspec.field(name="externalURL")
    alerts: list[WebhookAlert]


class PostableAlert(msgspec.Struct, kw_only=True):
    """One element of the Alertmanager API v2 `POST /api/v2/alerts` body."""

    labels: dict[str, str]
    annotations: dict[str, str]
    starts_at: str = msgspec.field(name="startsAt")
    ends_at: str = msgspec.field(name="endsAt")
    generator_url: str = msgspec.field(name="generatorURL")


_encoder = msgspec.json.Encoder()


# -- labels and annotations ------------------------------------------------------------


def alert_labels(tr: Transition, slo: Slo, fired: Transition | None = None) -> dict[str, str]:
    """The alert's identity: the built-in labels, then the SLO's other configured labels.

    `long_window`/`short_window` are the windows of `fired`, the transition that made this
    alert fire, when given (pass it with a `resolved` transition), else of `tr` itself.
    """
    if tr.slo != slo.name:
        raise ValueError(f"transition is for SLO {tr.slo!r} but the config given is {slo.name!r}")
    row = tr if fired is None else _check_fired(tr, fired)
    labels = {"alertname": ALERTNAMES[tr.kind], "slo": slo.name}
    if tr.group is not None:  # a grouped SLO: each group is an alert of its own
        labels["group"] = tr.group
    if slo.service is not None:  # a composite SLO has none (an empty label is no label)
        labels["service"] = slo.service
    labels["severity"] = tr.severity
    if tr.kind == "burn":
        labels["long_window"] = format_duration(row.long_window_s)
        labels["short_window"] = format_duration(row.short_window_s)
    else:
        labels["alert_type"] = "escalation" if tr.kind == "escalation" else "budget"
    if tr.kind == "escalation":
        labels["policy_row"] = str(tr.policy_row)
        labels["decision"] = str(tr.decision)
    for name in sorted(slo.labels):
        if name not in BUILTIN_LABELS and name not in labels:
            labels[name] = slo.labels[name]
    return labels


def _check_fired(tr: Transition, fired: Transition) -> Transition:
    if fired.state != "firing":
        raise ValueError(f"fired must be a firing transition, got state {fired.state!r}")
    if fired.alert_key != tr.alert_key:
        raise ValueError(f"fired is the alert {_alert(fired)}, not {_alert(tr)}")
    return fired


def _alert(tr: Transition) -> str:
    """`slo/severity`, `slo{group}/severity` for a grouped SLO's alert (a budget alert's
    key in place of the severity)."""
    return f"{tr.slo}{'' if tr.group is None else '{' + tr.group + '}'}/{tr.alert_id}"


def alert_annotations(tr: Transition, slo: Slo) -> dict[str, str]:
    """Human `summary` and `description`, the numbers behind them, and `runbook_url`."""
    if tr.slo != slo.name:
        raise ValueError(f"transition is for SLO {tr.slo!r} but the config given is {slo.name!r}")
    annotations = _budget_annotations(tr, slo) if tr.kind != "burn" else _burn_annotations(tr, slo)
    if tr.changes:
        annotations["changes"] = changes_text(tr.changes)
    return annotations


def _burn_annotations(tr: Transition, slo: Slo) -> dict[str, str]:
    """A burn-rate alert's `summary`, `description`, numbers and runbook."""
    annotations = {
        "summary": _summary(tr, slo),
        "description": _description(tr, slo),
        "burn_rate_long": _number(tr.burn_rate_long),
        "burn_rate_short": _number(tr.burn_rate_short),
        "factor": _number(tr.factor),
        "error_budget_remaining": _number(tr.error_budget_remaining_ratio),
        "long_window": format_duration(tr.long_window_s),
        "short_window": format_duration(tr.short_window_s),
    }
    if slo.runbook_url:
        annotations["runbook_url"] = slo.runbook_url
    return annotations


def _budget_annotations(tr: Transition, slo: Slo) -> dict[str, str]:
    """A budget alert's or escalation's `summary`, `description` and numbers."""
    lookback = format_duration(tr.long_window_s)
    annotations = {
        "summary": _budget_summary(tr, slo),
        "description": _budget_description(tr, slo),
        "error_budget_remaining": _number(tr.error_budget_remaining_ratio),
        "burn_rate": _number(tr.burn_rate_long),
        "lookback": lookback,
        "time_to_exhaustion_s": _number(tr.time_to_exhaustion_s),
    }
    if tr.horizon_s is not None:
        annotations["horizon"] = format_duration(tr.horizon_s)
    if tr.kind == "escalation":
        annotations |= {
            "reason": str(tr.reason),
            "decision": str(tr.decision),
            "policy_row": str(tr.policy_row),
            "receivers": ",".join(tr.receivers),
        }
    if slo.runbook_url:
        annotations["runbook_url"] = slo.runbook_url
    return annotations


def _budget_summary(tr: Transition, slo: Slo) -> str:
    who = f"SLO {slo.name}{_group(tr)} ({_what(slo)})"
    firing = tr.state == "firing"
    horizon = "" if tr.horizon_s is None else format_duration(tr.horizon_s)
    if tr.kind == "budget_exhausted":
        if firing:
            return f"{who} has exhausted its error budget"
        return f"{who} has error budget again"
    if tr.kind == "budget_exhaustion_projected":
        if firing:
            left = tr.time_to_exhaustion_s
            when = "" if left is None else f" in about {_approx_duration(left)}"
            return f"{who} error budget runs out{when} (within {horizon})"
        return f"{who} error budget is no longer projected to run out within {horizon}"
    if firing:
        return f"{who} budget policy {tr.policy_row} ({tr.decision}): {tr.reason}"
    return f"{who} budget policy {tr.policy_row} ({tr.decision}) {tr.reason}"


def _budget_description(tr: Transition, slo: Slo) -> str:
    of = "composite SLO" if slo.composite is not None else "SLO"
    head = (
        f"{of} {slo.name}{_group(tr)} {_of_what(slo)} "
        f"(objective {slo.objective:g}% over {slo.period_text})"
    )
    rate = (
        f"It burns at {_times(tr.burn_rate_long)} over the last "
        f"{format_duration(tr.long_window_s)} (1x spends exactly the whole budget in "
        f"{_length(slo)})."
    )
    text = f"{head}: {_budget(tr.error_budget_remaining_ratio)} {rate}"
    left = tr.time_to_exhaustion_s
    if left:
        text += f" At that rate what remains is spent in about {_approx_duration(left)}."
    if tr.kind == "escalation":
        text += (
            f" Budget policy row {tr.policy_row} decides {tr.decision}: {tr.reason}."
            f" Escalated to {', '.join(tr.receivers)}."
        )
    if slo.description:
        text += f"\n\n{slo.description}"
    return text


def changes_text(notes: Sequence[ChangeNote]) -> str:
    """The `changes` annotation: `kind version at time: share consumed since`, `; `-joined."""
    parts = []
    for n in notes:
        what = n.kind if n.version is None else f"{n.kind} {n.version}"
        share = n.error_budget_consumed_ratio
        since = "no data yet" if share is None else f"{_percent(share)} of the error budget"
        parts.append(f"{what} at {rfc3339(n.at)}: {since} consumed since")
    return "; ".join(parts)


def _group(tr: Transition) -> str:
    """` group region=eu` for a grouped SLO's transition, else nothing."""
    return "" if tr.group is None else f" group {tr.group}"


def _summary(tr: Transition, slo: Slo) -> str:
    who = f"SLO {slo.name}{_group(tr)} ({_what(slo)})"
    if tr.state == "firing":
        return (
            f"{who} is burning its error budget at {_times(tr.burn_rate_long)} over "
            f"{format_duration(tr.long_window_s)} ({tr.severity} threshold "
            f"{_times(tr.factor)})"
        )
    return (
        f"{who} error budget burn is back under the {tr.severity} threshold of {_times(tr.factor)}"
    )


def _description(tr: Transition, slo: Slo) -> str:
    lw, sw = format_duration(tr.long_window_s), format_duration(tr.short_window_s)
    rates = (
        f"{_times(tr.burn_rate_long)} over the last {lw} and "
        f"{_times(tr.burn_rate_short)} over the last {sw}"
    )
    of = "composite SLO" if slo.composite is not None else "SLO"
    head = (
        f"{of} {slo.name}{_group(tr)} {_of_what(slo)} "
        f"(objective {slo.objective:g}% over {slo.period_text})"
    )
    if tr.state == "firing":
        text = (
            f"{head} is burning its error budget at {rates}; both are at or above the "
            f"{tr.severity} threshold of {_times(tr.factor)} (1x spends exactly the whole "
            f"budget in {_length(slo)}). {_budget(tr.error_budget_remaining_ratio)}"
            f"{_exhaustion(tr, slo)}"
        )
    else:
        text = (
            f"{head} is no longer burning its error budget at the {tr.severity} threshold "
            f"of {_times(tr.factor)}: {rates}. {_budget(tr.error_budget_remaining_ratio)}"
        )
    if slo.description:
        text += f"\n\n{slo.description}"
    return text


def _what(slo: Slo) -> str:
    """`api`, or `composite of a, b` for a composite SLO."""
    if slo.composite is None:
        return str(slo.service)
    return "composite of " + ", ".join(m.slo for m in slo.composite)


def _of_what(slo: Slo) -> str:
    """`of service api`, or `of a (weight 1), b (weight 3)` for a composite SLO."""
    if slo.composite is None:
        return f"of service {slo.service}"
    return "of " + ", ".join(f"{m.slo} (weight {m.weight:g})" for m in slo.composite)


def _budget(remaining: float | None) -> str:
    if remaining is None:
        return "Error budget remaining: no data."
    if remaining <= 0:
        return f"The error budget is exhausted ({_percent(remaining)} remaining)."
    return f"{_percent(remaining)} of the error budget remains."


def _exhaustion(tr: Transition, slo: Slo) -> str:
    """How long a whole budget, and what is left of it, lasts at the long window's burn
    rate (`engine.core.budget`), rounded for people by `_approx_duration`."""
    rate = tr.burn_rate_long
    if rate is None or not (0 < rate < math.inf):
        return ""
    whole = time_to_exhaustion_s(1.0, rate, slo.period_s)
    assert whole is not None  # a whole budget at a positive rate runs out
    text = (
        f" At {_times(rate)}, a whole {_length(slo)} budget would be spent in "
        f"{_approx_duration(whole)}"
    )
    left = time_to_exhaustion_s(tr.error_budget_remaining_ratio, rate, slo.period_s)
    if left:  # None: no data; 0: already spent, which `_budget` says
        text += f", and what remains in about {_approx_duration(left)}"
    return text + "."


def _length(slo: Slo) -> str:
    """The period's length: as configured when rolling, the nominal length the factors
    use (`30d` for a month) when calendar."""
    return slo.period if isinstance(slo.period, str) else format_duration(slo.period_s)


def _times(x: float | None) -> str:
    """A burn rate or factor for people: `14.4x`, `6x`, `0.35x`, `120x`."""
    if x is None:
        return "no data"
    if not math.isfinite(x):
        return f"{x}x"
    text = f"{x:.0f}" if x >= 100 else f"{x:.1f}" if x >= 10 else f"{x:.2f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text + "x"


def _percent(ratio: float) -> str:
    text = f"{ratio * 100:.1f}".removesuffix(".0")
    return f"{text}%"


def _number(x: float | None) -> str:
    """A number for machines (parses as a float in Go and Python); no data is `NaN`."""
    if x is None or math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "+Inf" if x > 0 else "-Inf"
    return f"{x:.6g}"


def _approx_duration(seconds: float) -> str:
    """Rounded to what matters: hours beyond a day, minutes beyond an hour, else seconds."""
    if seconds >= 86400:
        whole = round(seconds / 3600) * 3600
    elif seconds >= 3600:
        whole = round(seconds / 60) * 60
    else:
        whole = max(1, round(seconds))
    return format_duration(whole)


# -- identity, times, urls ---------------------------------------------------------------


def fingerprint(labels: Mapping[str, str]) -> str:
    """16 hex digits identifying a label set, independent of label order.

    FNV-1a 64 over the labels sorted by name, each name and value followed by a 0xff
    byte: the construction Prometheus and Alertmanager use, so the value matches the
    `fingerprint` Alertmanager reports for the same labels.
    """
    h = _FNV_OFFSET
    for name in sorted(labels):
        for part in (name, labels[name]):
            for byte in part.encode():
                h = ((h ^ byte) * _FNV_PRIME) & _MASK64
            h = ((h ^ 0xFF) * _FNV_PRIME) & _MASK64
    return f"{h:016x}"


def rfc3339(epoch_s: float) -> str:
    """UTC RFC 3339 time, `2021-02-21T18:42:10Z`, with milliseconds only when non-zero."""
    if not math.isfinite(epoch_s):
        raise ValueError(f"not a time: {epoch_s}")
    whole_s, ms = divmod(round(epoch_s * 1000), 1000)
    text = (_EPOCH + timedelta(seconds=whole_s)).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{text}.{ms:03d}Z" if ms else f"{text}Z"


def generator_url(external_url: str, slo_name: str, group: str | None = None) -> str:
    """The engine's API page of one SLO: `<external_url>/v1/slos/<name>`, of a grouped
    SLO's group `...?group=<group>`."""
    url = f"{external_url.rstrip('/')}/v1/slos/{quote(slo_name, safe='')}"
    return url if group is None else f"{url}?group={quote(group, safe='')}"


def group_key(group_labels: Mapping[str, str]) -> str:
    """An Alertmanager-style group key, `{}:{alertname="...", severity="...", slo="..."}`."""
    pairs = ", ".join(f"{name}={_go_quote(group_labels[name])}" for name in sorted(group_labels))
    return "{}:{" + pairs + "}"


def _go_quote(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def _fired_of(items: Sequence[Item], lookup: FiredLookup | None) -> list[Transition | None]:
    """For each item, the transition that fired its alert (identity and start time).

    A firing transition is its own. For a resolved one: `lookup(tr)`, else the latest
    firing of the same alert earlier in `items`, else None (unknown, e.g. after a
    restart: the resolved transition then stands in for it).
    """
    out: list[Transition | None] = []
    latest: dict[AlertKey, Transition] = {}
    for tr, _slo in items:
        key = tr.alert_key
        if tr.state == "firing":
            latest[key] = tr
            out.append(tr)
            continue
        found = lookup(tr) if lookup is not None else None
        if found is None:
            found = latest.get(key)
        out.append(None if found is None else _check_fired(tr, found))
    return out


# -- bodies -----------------------------------------------------------------------------


def group_transitions(items: Sequence[Item]) -> list[list[Item]]:
    """Split items into webhook bodies: one group (`GROUP_BY` labels) per body, in order.

    An alert (one SLO and severity) appears at most once per body: when the same alert
    changes state again within `items` (fired, then resolved), the later change starts a
    new body, so a body's `status` never contradicts one of its alerts' later state.
    """
    done: list[tuple[int, list[Item]]] = []
    open_: dict[tuple[str, ...], tuple[int, list[Item], set[AlertKey]]] = {}
    for position, (tr, slo) in enumerate(items):
        labels = alert_labels(tr, slo)
        key = tuple(labels[name] for name in GROUP_BY)
        fp = tr.alert_key
        current = open_.get(key)
        if current is not None and fp in current[2]:
            done.append((current[0], current[1]))
            current = None
        if current is None:
            current = (position, [], set())
            open_[key] = current
        current[1].append((tr, slo))
        current[2].add(fp)
    done.extend((first, group) for first, group, _ in open_.values())
    done.sort(key=lambda entry: entry[0])
    return [group for _, group in done]


def webhook_body(
    items: Sequence[Item],
    *,
    receiver: str,
    external_url: str,
    fired: FiredLookup | None = None,
) -> bytes:
    """An Alertmanager webhook v4 body for transitions of one group (see group_transitions).

    `status` is `firing` if any alert fires. Firing alerts have `endsAt` = Go's zero time,
    as Alertmanager sends them; resolved ones end at the transition's time. A resolved
    alert takes its `startsAt` and window labels from the transition that fired it:
    `fired(tr)` when given and known, else a firing of the same alert earlier in `items`,
    else the resolved transition itself (so pass a lookup of what fired).
    """
    if not items:
        raise ValueError("webhook_body needs at least one transition")
    first_labels = alert_labels(*items[0])
    group = {name: first_labels[name] for name in GROUP_BY}
    alerts: list[WebhookAlert] = []
    for (tr, slo), origin in zip(items, _fired_of(items, fired), strict=True):
        labels = alert_labels(tr, slo, origin)
        this_group = {name: labels[name] for name in GROUP_BY}
        if this_group != group:
            raise ValueError(
                f"transitions of different groups in one webhook body: {group} and "
                f"{this_group}; split them with group_transitions()"
            )
        alerts.append(
            WebhookAlert(
                status=tr.state,
                labels=labels,
                annotations=alert_annotations(tr, slo),
                starts_at=rfc3339((origin or tr).at),
                ends_at=ZERO_TIME if tr.state == "firing" else rfc3339(tr.at),
                generator_url=generator_url(external_url, slo.name, tr.group),
                fingerprint=fingerprint(labels),
            )
        )
    message = WebhookMessage(
        group_key=group_key(group),
        status="firing" if any(a.status == "firing" for a in alerts) else "resolved",
        receiver=receiver,
        group_labels=group,
        common_labels=_common([a.labels for a in alerts]),
        common_annotations=_common([a.annotations for a in alerts]),
        external_url=external_url,
        alerts=alerts,
    )
    return _encoder.encode(message)


def _common(maps: Sequence[Mapping[str, str]]) -> dict[str, str]:
    first, rest = maps[0], maps[1:]
    return {k: v for k, v in first.items() if all(m.get(k) == v for m in rest)}


def alertmanager_alerts(
    items: Sequence[Item],
    *,
    external_url: str,
    now_s: float,
    horizon_s: float,
    fired: FiredLookup | None = None,
) -> bytes:
    """The body of Alertmanager API v2 `POST /api/v2/alerts` for these transitions.

    A firing alert gets `endsAt` = `now_s` + `horizon_s` (wall clock): Alertmanager
    resolves it by itself unless it is re-sent before then, so re-send firing alerts
    well within the horizon (Prometheus uses about 4x its resend interval). A resolved
    alert ends at the transition's time, or at `now_s` if that is earlier: Alertmanager
    resolves an alert only once `endsAt` has passed on its clock, and event time may run
    ahead of the wall clock. `startsAt` and the window labels as in webhook_body, with
    `startsAt` never after `now_s` nor after `endsAt` (Alertmanager rejects the whole
    request if an alert ends before it starts).
    """
    if not horizon_s > 0:
        raise ValueError(f"horizon_s must be > 0, got {horizon_s}")
    alerts = []
    for (tr, slo), origin in zip(items, _fired_of(items, fired), strict=True):
        ends_s = now_s + horizon_s if tr.state == "firing" else min(tr.at, now_s)
        alerts.append(
            PostableAlert(
                labels=alert_labels(tr, slo, origin),
                annotations=alert_annotations(tr, slo),
                starts_at=rfc3339(min((origin or tr).at, now_s, ends_s)),
                ends_at=rfc3339(ends_s),
                generator_url=generator_url(external_url, slo.name, tr.group),
            )
        )
    return _encoder.encode(alerts)
