"""Grouped SLOs in the JSON API and /metrics: one view and one series set per group in
use, labelled `group`."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import msgspec
from aiohttp.test_utils import make_mocked_request

from engine.adapters.http.api import SloApi
from engine.adapters.http.metrics import SloText
from engine.core.config import OTHER_GROUP, parse_config
from engine.core.decode import Event
from engine.core.evaluator import Evaluator

T0 = 1_767_225_600.0
AVAIL = {"service": "api", "sli": "availability", "objective": 99.0}


def _evaluator(max_groups: int = 2) -> Evaluator:
    cfg = parse_config(
        msgspec.yaml.encode(
            {
                "slos": [
                    {"name": "plain", **AVAIL},
                    {"name": "g", **AVAIL, "group_by": ["region"], "max_groups": max_groups},
                ]
            }
        )
    )
    return Evaluator(cfg)


def _feed(ev: Evaluator, regions: list[str], t0: float = T0) -> None:
    events = [
        Event(service="api", ts=t0 + i, status=503 if r == "eu" else 200, labels={"region": r})
        for i, r in enumerate(regions)
    ]
    ev.ingest(ev.classifier.columns(events))
    ev.advance(t0 + len(regions) + 20)


def test_the_list_has_one_view_per_group_in_use() -> None:
    ev = _evaluator()
    _feed(ev, ["eu", "us", "eu"])
    views = SloApi(ev).views()
    assert [(v.name, v.group, v.events_total, v.bad_events_total) for v in views] == [
        ("plain", None, 3, 2),
        ("g", "region=eu", 2, 2),
        ("g", "region=us", 1, 0),
        ("g", OTHER_GROUP, 0, 0),
    ]
    body = json.loads(SloApi(ev).list_body())
    assert "group" not in body["slos"][0]
    assert body["slos"][1]["group"] == "region=eu"


def _get(api: SloApi, path: str, name: str) -> tuple[int, Any]:
    request = make_mocked_request("GET", path, match_info={"name": name})
    response = asyncio.run(api._one(request))
    return response.status, json.loads(response.body)  # type: ignore[arg-type]


def test_one_group_is_read_by_name_and_group() -> None:
    ev = _evaluator(max_groups=1)
    _feed(ev, ["eu", "us", "ap"])
    api = SloApi(ev)
    status, body = _get(api, "/v1/slos/g?group=region%3Deu", "g")
    assert (status, body["group"], body["events_total"]) == (200, "region=eu", 1)
    status, body = _get(api, "/v1/slos/g?group=__other__", "g")
    assert (status, body["events_total"]) == (200, 2)
    status, body = _get(api, "/v1/slos/g", "g")
    assert status == 400
    assert "region=eu" in body["error"]
    assert _get(api, "/v1/slos/g?group=region%3Dus", "g")[0] == 404  # in __other__
    assert _get(api, "/v1/slos/plain?group=x", "plain")[0] == 404
    assert _get(api, "/v1/slos/plain", "plain")[0] == 200
    assert api.view("g") is None


def test_metrics_label_groups_and_leave_out_unused_columns() -> None:
    ev = _evaluator(max_groups=3)
    text = SloText(ev)
    _feed(ev, ["eu"])
    body = text.render()
    assert 'burnrate_slo_events_total{slo="g",group="region=eu"} 1.0' in body
    assert 'burnrate_slo_events_total{slo="g",group="__other__"} 0.0' in body
    assert 'burnrate_slo_events_total{slo="plain"} 1.0' in body
    assert body.count('burnrate_slo_events_total{slo="g"') == 2  # 2 unused columns: none
    assert 'burnrate_alert_firing{slo="g",group="region=eu",severity="page"}' in body
    _feed(ev, ['us"\\\n'], T0 + 100)  # a new group, with characters to escape
    body = text.render()
    # the group name escapes the backslash (`region=us"\\` and a newline), and the
    # exposition format then escapes the quote, both backslashes and the newline
    assert 'burnrate_slo_events_total{slo="g",group="region=us\\"\\\\\\\\\\n"} 1.0' in body
    assert body.count('burnrate_slo_events_total{slo="g"') == 3
    assert body.count('burnrate_slo_objective_ratio{slo="g"') == 3
