"""`/v1/summary`'s rows are `/v1/slos`'s numbers: plain, firing, composite and grouped
SLOs, built from whole arrays and compared with the per-SLO views."""

from __future__ import annotations

import json

import numpy as np

from engine.adapters.http.api import SloApi, SloView
from engine.adapters.http.summary import SummaryApi
from engine.core.config import parse_config
from engine.core.evaluator import Evaluator
from tests.unit.adapters.http import test_composite, test_groups
from tests.unit.adapters.http.api_sample import CONFIG, fed_evaluator


def rounded(x: float | None, digits: int) -> float | None:
    """As numpy rounds (scale, round half to even, unscale), which may differ from
    Python's correctly rounded `round` in the last bit."""
    return None if x is None else float(np.round(x, digits))


def expected(v: SloView, windows: list[str]) -> tuple[object, ...]:
    burns = {w.window: w.burn_rate for w in v.windows}
    firing: list[str] = [s for s, a in v.alerts.items() if a.firing]
    firing += [a.alert for a in v.budget_alerts if a.firing]
    return (
        v.name,
        v.group,
        v.service,
        v.objective,
        v.error_budget.remaining_ratio,
        rounded(v.error_budget.time_to_exhaustion_s, 0),
        [rounded(burns[w], 4) for w in windows],
        firing,
    )


def same_as_views(ev: Evaluator) -> list[tuple[object, ...]]:
    summary = SummaryApi(ev)
    rows = summary.rows()
    assert rows == [expected(v, summary.windows) for v in SloApi(ev).views()]
    body = json.loads(summary.body())
    assert body["windows"] == summary.windows
    assert body["evaluated_at"] == ev.evaluated_at_s
    c = body["slos"]
    from_body = [
        (
            c["name"][k],
            c["group"][k],
            c["service"][k],
            c["objective"][k],
            c["budget_remaining_ratio"][k],
            c["time_to_exhaustion_s"][k],
            [col[k] for col in c["burn_rates"]],
            [alert for alert, at in c["firing"].items() if k in at],
        )
        for k in range(len(c["name"]))
    ]
    assert from_body == rows
    return rows


def test_plain_slos_with_a_page_firing() -> None:
    ev, transitions = fed_evaluator(parse_config(CONFIG))
    assert transitions, "search-availability pages"
    rows = same_as_views(ev)
    search = next(r for r in rows if r[0] == "search-availability")
    assert "page" in search[7]
    idle = next(r for r in rows if r[0] == "idle-availability")
    assert idle[4] is None
    assert idle[5] is None


def test_composites_and_groups() -> None:
    ev, _ = fed_evaluator(test_composite.config())
    same_as_views(ev)
    grouped = test_groups._evaluator()
    test_groups._feed(grouped, ["eu", "us", "eu"])
    rows = same_as_views(grouped)
    assert [(r[0], r[1]) for r in rows][:2] == [("plain", None), ("g", "region=eu")]


def test_the_body_is_encoded_once_per_generation() -> None:
    ev, _ = fed_evaluator(parse_config(CONFIG))
    gen = [1]
    summary = SummaryApi(ev, generation=lambda: gen[0])
    first = summary.body()
    assert summary.body() is first
    gen[0] = 2
    assert summary.body() is not first
    assert summary.body() == first  # nothing changed in the evaluator
