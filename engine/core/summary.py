"""What a stretch of evaluation amounted to, per SLO: events, bad events, budget left,
alerts fired and time spent firing (event time). `burnrate replay` prints it; the
postmortem builds on it."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

import msgspec

from engine.core.evaluator import AlertKey, Evaluator, Transition

__all__ = ["RunSummary", "SloSummary", "summarize"]


class SloSummary(msgspec.Struct, frozen=True, kw_only=True):
    slo: str
    events: int
    bad: int
    excluded: int = 0
    """Events a correction left out of the SLO (not in `events` or `bad`)."""
    budget_remaining_ratio: float | None
    """None when the SLO's period holds no events."""
    pages: int
    tickets: int
    time_firing_s: float
    still_firing: list[str]
    """Severities still firing at the end."""
    group: str | None = None
    """A grouped SLO's group (one row per group with events); None without groups."""
    budget_alerts_firing: list[str] = []
    """Budget alerts and escalations still firing at the end (their keys:
    `budget_exhausted`, `escalation:$.budget_policy[0]`); burn-rate alerts are the other
    fields'."""


class RunSummary(msgspec.Struct, frozen=True, kw_only=True):
    records: int
    accepted_events: int
    unmatched_events: int
    """Accepted events that no SLO selects."""
    unknown_status_events: int
    rejected: dict[str, int]
    """Rejected records (decode) and events (time) by reason."""
    slos: list[SloSummary]


def summarize(ev: Evaluator, transitions: Sequence[Transition], records: int) -> RunSummary:
    """The summary of `ev` after `transitions`; time firing runs to the last evaluation."""
    fired: Counter[AlertKey] = Counter()
    firing_s: dict[tuple[str, str | None], float] = {}
    open_since: dict[AlertKey, float] = {}
    budget_open: dict[AlertKey, None] = {}
    for tr in transitions:
        key = tr.alert_key
        if tr.kind != "burn":  # budget alerts and escalations: only what is left firing
            if tr.state == "firing":
                budget_open[key] = None
            else:
                budget_open.pop(key, None)
            continue
        if tr.state == "firing":
            fired[key] += 1
            open_since[key] = tr.at
        elif key in open_since:
            k = (tr.slo, tr.group)
            firing_s[k] = firing_s.get(k, 0.0) + tr.at - open_since.pop(key)
    end = ev.evaluated_at_s if ev.evaluated_at_s is not None else 0.0
    for (slo, group, _), since in open_since.items():
        firing_s[(slo, group)] = firing_s.get((slo, group), 0.0) + end - since
    used = ev.column_in_use()
    groups = [ev.group_of(i) for i in range(len(ev.names))]
    budget = ev.budget_remaining()
    counts = ev.counts()
    slos = [
        SloSummary(
            slo=name,
            events=int(counts.events_total[i]),
            bad=int(counts.bad_events_total[i]),
            excluded=int(counts.excluded_events[i]),
            budget_remaining_ratio=None if math.isnan(budget[i]) else float(budget[i]),
            pages=fired[(name, groups[i], "page")],
            tickets=fired[(name, groups[i], "ticket")],
            time_firing_s=firing_s.get((name, groups[i]), 0.0),
            still_firing=[sev for (s, g, sev) in open_since if (s, g) == (name, groups[i])],
            group=groups[i],
            budget_alerts_firing=[a for (s, g, a) in budget_open if (s, g) == (name, groups[i])],
        )
        for i, name in enumerate(ev.names)
        if used[i] and (groups[i] is None or counts.events_total[i] or counts.excluded_events[i])
    ]
    return RunSummary(
        records=records,
        accepted_events=counts.accepted_events,
        unmatched_events=counts.unmatched_events,
        unknown_status_events=counts.unknown_status_events,
        rejected=dict(sorted(counts.rejected.items())),
        slos=slos,
    )
