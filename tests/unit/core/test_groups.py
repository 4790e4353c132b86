"""Grouped SLOs (`group_by`, `max_groups`): one column per group key, assigned on first
sight in event order, and one overflow group beyond `max_groups`."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from engine.core.config import OTHER_GROUP, Config, parse_config
from engine.core.decode import Event
from engine.core.evaluator import Evaluator

T0 = 1_767_225_600.0


def _config(*slos: dict[str, Any], **top: Any) -> Config:
    return parse_config(msgspec.yaml.encode({"slos": list(slos), **top}))


def _errors(*slos: dict[str, Any]) -> list[str]:
    from engine.errors import ConfigError as Err

    with pytest.raises(Err) as info:
        _config(*slos)
    return info.value.errors


AVAIL = {"service": "api", "sli": "availability", "objective": 99.0}


def test_group_by_and_max_groups_are_read_with_defaults() -> None:
    cfg = _config({"name": "a", **AVAIL, "group_by": ["region"]}, {"name": "b", **AVAIL})
    a, b = cfg.slos
    assert (a.group_by, a.group_limit, a.column_count) == (["region"], 100, 101)
    assert (b.group_limit, b.column_count) == (0, 1)
    assert cfg.column_count() == 102
    assert cfg.window_bytes() == 102 * cfg.window_bytes_per_slo()


@pytest.mark.parametrize(
    ("extra", "line"),
    [
        pytest.param(
            {"group_by": ["region"], "max_groups": 0},
            "$.slos[0].max_groups: must be from 1 to 10000, got 0",
            id="0",
        ),
        pytest.param(
            {"group_by": ["region"], "max_groups": 10001},
            "$.slos[0].max_groups: must be from 1 to 10000, got 10001",
            id="10001",
        ),
        pytest.param(
            {"max_groups": 5}, "$.slos[0].max_groups: only with group_by", id="no group_by"
        ),
        pytest.param(
            {"group_by": ["region", "region"]}, "$.slos[0].group_by[1]: 'region' twice", id="twice"
        ),
        pytest.param({"group_by": [""]}, "$.slos[0].group_by[0]: must not be empty", id="empty"),
        pytest.param(
            {"group_by": ["operation", "tier"], "match_labels": {"tier": "gold"}},
            "$.slos[0].group_by[1]: 'tier' is fixed to 'gold' by match_labels, so every event "
            "of the SLO is in one group (group by another label, or drop it)",
            id="a label match_labels fixes",
        ),
    ],
)
def test_group_settings_are_checked_with_their_path(extra: dict[str, Any], line: str) -> None:
    assert line in _errors({"name": "a", **AVAIL, **extra})


def test_composites_may_not_name_grouped_slos_nor_be_grouped() -> None:
    errors = _errors(
        {"name": "a", **AVAIL, "group_by": ["operation"]},
        {"name": "c", "objective": 99.0, "composite": [{"slo": "a"}], "group_by": ["x"]},
    )
    assert (
        '$.slos[1].composite[0].slo: "a" is grouped (group_by); members must be ungrouped' in errors
    )
    assert "$.slos[1].group_by: a composite SLO cannot be grouped" in errors


def test_the_memory_limit_counts_the_group_columns() -> None:
    slos = [
        {"name": f"s{i}", **AVAIL, "group_by": ["region"], "max_groups": 10000} for i in range(4)
    ]
    (line,) = _errors(*slos)
    assert line.startswith("$.slos: the windows of 4 SLOs (40004 columns with their groups)")
    assert "fewer SLOs or max_groups" in line


# --- counting: against a naive reference ----------------------------------------------


def _written(value: str | None) -> str:
    """A value as a group name shows it (naive: character by character)."""
    return "".join("\\" + c if c in "\\,=" else c for c in value or "")


def _naive_groups(
    events: list[Event], group_by: list[str], limit: int, match: dict[str, str]
) -> dict[str, tuple[int, int]]:
    """Per group text, (total, bad) of an availability SLO on service `api`: groups in
    order of first appearance, the ones past `limit` in `__other__`. An empty value is
    no value; `\\`, `,` and `=` of a value are written behind a backslash."""

    order: list[tuple[str | None, ...]] = []
    out: dict[str, tuple[int, int]] = {}
    for e in events:
        labels = e.labels or {}
        if e.service != "api" or any(
            (labels.get(k) or None) != (v or None) for k, v in match.items()
        ):
            continue
        gk = tuple((e.operation if k == "operation" else labels.get(k)) or None for k in group_by)
        if gk not in order and len(order) < limit:
            order.append(gk)
        if gk in order:
            text = ",".join(f"{k}={_written(v)}" for k, v in zip(group_by, gk, strict=True))
        else:
            text = OTHER_GROUP
        bad = e.status is not None and int(e.status) >= 500
        total0, bad0 = out.get(text, (0, 0))
        out[text] = (total0 + e.count, bad0 + e.count * bad)
    return out


def _engine_groups(ev: Evaluator, name: str) -> dict[str, tuple[int, int]]:
    counts = ev.counts()
    used = ev.column_in_use()
    out: dict[str, tuple[int, int]] = {}
    for c, n in enumerate(ev.names):
        if n != name or not used[c] or counts.events_total[c] == 0:
            continue
        group = ev.group_of(c)
        assert group is not None
        assert group not in out, f"two groups named {group!r}"
        out[group] = (int(counts.events_total[c]), int(counts.bad_events_total[c]))
    return out


_events = st.lists(
    st.builds(
        lambda svc, op, region, tier, status, count: Event(
            service=svc,
            operation=op,
            status=status,
            count=count,
            labels={k: v for k, v in (("region", region), ("tier", tier)) if v is not None} or None,
        ),
        st.sampled_from(["api", "api", "db"]),
        st.sampled_from([None, "GET /a", "GET /b", "POST /c", "", "a=b,c"]),
        st.one_of(
            st.none(),
            st.sampled_from(["eu", "us", "ap", "sa", "af", "", "e,u", "e=u", "e\\", "e\\,u"]),
        ),
        st.one_of(st.none(), st.sampled_from(["gold", "free", ""])),
        st.sampled_from([200, 200, 503]),
        st.integers(1, 3),
    ),
    max_size=60,
)


@settings(deadline=None, max_examples=60)
@given(
    _events,
    st.sampled_from([["region"], ["operation"], ["operation", "region"], ["tier", "region"]]),
    st.integers(1, 4),
    st.sampled_from([{}, {"tier": "gold"}, {"tier": ""}]),
    st.integers(1, 4),
)
def test_group_counts_follow_a_naive_reference(
    events: list[Event],
    group_by: list[str],
    limit: int,
    match: dict[str, str],
    splits: int,
) -> None:
    assume(not set(match) & set(group_by))  # a label match_labels fixes is refused
    cfg = _config(
        {"name": "plain", **AVAIL},
        {"name": "g", **AVAIL, "group_by": group_by, "max_groups": limit, "match_labels": match},
        {"name": "db", **{**AVAIL, "service": "db"}, "group_by": ["region"], "max_groups": 2},
    )
    ev = Evaluator(cfg)
    timed = [msgspec.structs.replace(e, ts=T0 + i) for i, e in enumerate(events)]
    size = max(1, len(timed) // splits)
    for start in range(0, len(timed), size):
        ev.ingest(ev.classifier.columns(timed[start : start + size]))
    assert _engine_groups(ev, "g") == _naive_groups(timed, group_by, limit, match)
    plain = ev.names.index("plain")
    assert int(ev.counts().events_total[plain]) == sum(e.count for e in timed if e.service == "api")
    used = ev.column_in_use()
    g = [c for c, n in enumerate(ev.names) if n == "g"]
    assert len(g) == limit + 1
    assert sum(used[c] for c in g) == min(limit, len(ev.classifier.groups[1])) + 1


@settings(deadline=None, max_examples=20)
@given(st.lists(st.text(min_size=1, max_size=8), min_size=1, max_size=200), st.integers(1, 20))
def test_many_label_values_leave_at_most_max_groups_plus_one_groups(
    values: list[str], limit: int
) -> None:
    cfg = _config({"name": "g", **AVAIL, "group_by": ["pod"], "max_groups": limit})
    ev = Evaluator(cfg)
    events = [Event(service="api", ts=T0 + i, labels={"pod": v}) for i, v in enumerate(values)]
    ev.ingest(ev.classifier.columns(events))
    groups = _engine_groups(ev, "g")
    distinct = list(dict.fromkeys(values))
    expected = {f"pod={_written(v)}" for v in distinct[:limit]}
    if len(distinct) > limit:
        expected.add(OTHER_GROUP)
    assert set(groups) == expected
    assert len(groups) <= limit + 1
    assert sum(t for t, _ in groups.values()) == len(values)
    assert len(ev.classifier.groups[0]) == min(limit, len(distinct))


def test_assignment_survives_a_key_cache_reset(monkeypatch: pytest.MonkeyPatch) -> None:
    from engine.core import matching

    monkeypatch.setattr(matching, "MAX_KEYS", 1)
    ev = Evaluator(_config({"name": "g", **AVAIL, "group_by": ["region"], "max_groups": 2}))
    for i, region in enumerate(["eu", "us", "ap", "us", "eu", "ap"]):
        ev.ingest(
            ev.classifier.columns([Event(service="api", ts=T0 + i, labels={"region": region})])
        )
    assert _engine_groups(ev, "g") == {
        "region=eu": (2, 0),
        "region=us": (2, 0),
        OTHER_GROUP: (2, 0),
    }


def test_rejected_events_do_not_take_a_group() -> None:
    ev = Evaluator(_config({"name": "g", **AVAIL, "group_by": ["region"], "max_groups": 1}))
    ev.ingest(ev.classifier.columns([Event(service="api", ts=T0 + 1000, labels={"region": "eu"})]))
    late = Event(service="api", ts=T0, labels={"region": "us"})  # too late: not counted
    ev.ingest(
        ev.classifier.columns([late, Event(service="api", ts=T0 + 1000, labels={"region": "ap"})])
    )
    assert ev.rejected_counts() == {"too_late": 1}
    assert _engine_groups(ev, "g") == {"region=eu": (1, 0), OTHER_GROUP: (1, 0)}


def test_groups_alert_on_their_own_and_transitions_name_the_group() -> None:
    ev = Evaluator(_config({"name": "g", **AVAIL, "group_by": ["region"], "max_groups": 5}))
    events = [
        Event(
            service="api",
            ts=T0 + i,
            status=503 if region == "eu" else 200,
            labels={"region": region},
        )
        for i in range(0, 3600, 5)
        for region in ("eu", "us")
    ]
    transitions = ev.ingest(ev.classifier.columns(events))
    fired = {(t.slo, t.group, t.severity) for t in transitions if t.state == "firing"}
    assert ("g", "region=eu", "page") in fired
    assert all(t.group == "region=eu" for t in transitions)


def test_a_correction_by_slo_name_applies_to_every_group() -> None:
    cfg = _config(
        {"name": "g", **AVAIL, "group_by": ["region"], "max_groups": 1},
        corrections=[{"name": "c", "start": T0, "end": T0 + 10, "slos": ["g"], "reason": "x"}],
    )
    ev = Evaluator(cfg)
    events = [
        Event(service="api", ts=T0 + i, labels={"region": r})
        for i, r in enumerate(["eu", "us", "eu"])
    ]
    ev.ingest(ev.classifier.columns(events))
    assert int(ev.counts().excluded_events.sum()) == 3
    assert int(ev.counts().events_total.sum()) == 0


# --- snapshots --------------------------------------------------------------------------


def _grouped(max_groups: int = 2, group_by: list[str] | None = None) -> Config:
    return _config(
        {"name": "plain", **AVAIL},
        {"name": "g", **AVAIL, "group_by": group_by or ["region"], "max_groups": max_groups},
    )


def _region_events(regions: list[str], t0: float) -> list[Event]:
    return [
        Event(service="api", ts=t0 + i, status=503 if i % 3 else 200, labels={"region": r})
        for i, r in enumerate(regions)
    ]


@settings(deadline=None, max_examples=25)
@given(
    st.lists(st.sampled_from(["eu", "us", "ap", "sa"]), max_size=30),
    st.lists(st.sampled_from(["eu", "us", "ap", "sa"]), max_size=30),
)
def test_a_snapshot_keeps_the_group_assignment(first: list[str], second: list[str]) -> None:
    from engine.core.snapshot import dump, load

    whole = Evaluator(_grouped())
    ev = Evaluator(_grouped())
    a, b = _region_events(first, T0), _region_events(second, T0 + 100)
    for e in (whole, ev):
        e.ingest(e.classifier.columns(a))
    restored = Evaluator(_grouped())
    load(restored, dump(ev))
    assert restored.classifier.group_state() == ev.classifier.group_state()
    for e in (whole, restored):
        e.ingest(e.classifier.columns(b))
    assert _engine_groups(restored, "g") == _engine_groups(whole, "g")
    assert dump(restored) == dump(whole)


def test_a_snapshot_of_other_groups_is_refused() -> None:
    from engine.core.snapshot import SnapshotError, dump, load

    ev = Evaluator(_grouped())
    ev.ingest(ev.classifier.columns(_region_events(["eu", "us"], T0)))
    data = dump(ev)
    for other in (_grouped(max_groups=3), _grouped(group_by=["operation"])):
        with pytest.raises(SnapshotError, match="grouped SLOs"):
            load(Evaluator(other), data)
    ungrouped = _config({"name": "plain", **AVAIL}, {"name": "g", **AVAIL})
    with pytest.raises(SnapshotError, match="grouped SLOs"):
        load(Evaluator(ungrouped), data)


@pytest.mark.parametrize(
    "groups",
    [
        pytest.param([[["eu"], ["us"], ["ap"]]], id="more groups than max_groups"),
        pytest.param([[["eu"], ["eu"]]], id="a group twice"),
        pytest.param([[["eu", "x"]]], id="a key of the wrong length"),
        pytest.param([], id="no assignment"),
    ],
)
def test_a_snapshot_with_a_bad_assignment_is_corrupt(groups: list[Any]) -> None:
    from engine.core.snapshot import SnapshotError, dump, load

    ev = Evaluator(_grouped())
    ev.ingest(ev.classifier.columns(_region_events(["eu"], T0)))
    data = msgspec.msgpack.decode(dump(ev))
    data["groups"] = groups
    target = Evaluator(_grouped())
    before = dump(target)
    with pytest.raises(SnapshotError, match="corrupt snapshot: groups"):
        load(target, msgspec.msgpack.encode(data))
    assert dump(target) == before


def test_only_grouped_configs_write_version_3() -> None:
    from engine.core.snapshot import dump

    grouped, plain = Evaluator(_grouped()), Evaluator(_config({"name": "plain", **AVAIL}))
    assert msgspec.msgpack.decode(dump(grouped))["version"] == 3
    data = msgspec.msgpack.decode(dump(plain))
    assert data["version"] == 2
    assert "groups" not in data["shape"]
    assert "groups" not in data  # an engine from before groups reads it


def test_the_run_summary_has_a_row_per_group_with_events() -> None:
    from engine.core.summary import summarize

    ev = Evaluator(_grouped(max_groups=3))
    regions = ["eu"] * 400 + ["us"] * 400
    events = [
        Event(service="api", ts=T0 + i, status=503 if r == "eu" else 200, labels={"region": r})
        for i, r in enumerate(regions)
    ]
    transitions = ev.ingest(ev.classifier.columns(events))
    rows = summarize(ev, transitions, len(events)).slos
    assert [(r.slo, r.group, r.events, r.bad) for r in rows] == [
        ("plain", None, 800, 400),
        ("g", "region=eu", 400, 400),
        ("g", "region=us", 400, 0),
    ]
    eu = next(r for r in rows if r.group == "region=eu")
    assert eu.pages == 1
    assert eu.still_firing


def test_alerts_firing_in_a_restored_state_keep_their_group() -> None:
    from engine.core.snapshot import dump, load
    from engine.runtime.delivery import firing_alerts

    ev = Evaluator(_grouped(max_groups=3))
    events = [
        Event(service="api", ts=T0 + i, status=503 if r == "eu" else 200, labels={"region": r})
        for i in range(0, 3600, 5)
        for r in ("us", "eu")
    ]
    transitions = ev.ingest(ev.classifier.columns(events))
    restored = Evaluator(_grouped(max_groups=3))
    load(restored, dump(ev))
    again = firing_alerts(restored)
    assert again
    fired = {t.alert_key for t in transitions if t.state == "firing"}
    resolved = {t.alert_key for t in transitions if t.state == "resolved"}
    assert {t.alert_key for t in again} == fired - resolved
    assert {t.group for t in again if t.slo == "g"} == {"region=eu"}


@pytest.mark.slow
def test_a_million_random_label_values_leave_max_groups_plus_one_and_flat_memory() -> None:
    """Hostile cardinality: 1,000,000 events, nearly all with a label value never seen
    before. Exactly `max_groups` groups and `__other__` are in use, every event is
    counted once, and after the first 100,000 events nothing grows: the arrays keep their
    preallocated size, the key cache stays under its bound, and the process's peak
    resident memory rises by less than the cache may hold."""
    import random
    import resource

    from engine.core import matching

    limit = 50
    ev = Evaluator(_config({"name": "g", **AVAIL, "group_by": ["user"], "max_groups": limit}))
    rng = random.Random(7)
    arrays = ev.windows.nbytes()
    batch = 10_000

    def feed(first: int) -> None:
        events = [
            Event(
                service="api",
                ts=T0 + (first + i) / 1000,
                labels={"user": f"{rng.getrandbits(64):x}"},
            )
            for i in range(batch)
        ]
        ev.ingest(ev.classifier.columns(events))

    def peak_rss() -> int:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux

    for k in range(10):
        feed(k * batch)
    base = peak_rss()
    for k in range(10, 100):
        feed(k * batch)
        assert ev.classifier.key_count <= matching.MAX_KEYS + batch
        assert ev.classifier.key_bytes <= matching.MAX_KEY_BYTES + batch * 1024
    groups = _engine_groups(ev, "g")
    assert len(groups) == limit + 1
    assert OTHER_GROUP in groups
    assert sum(t for t, _ in groups.values()) == 100 * batch
    assert ev.windows.nbytes() == arrays
    assert peak_rss() - base < matching.MAX_KEY_BYTES + 32 * 2**20
