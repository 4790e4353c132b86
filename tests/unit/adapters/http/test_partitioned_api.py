"""The evaluate role's list bodies without a server: partitions that keep different
windows, and the per-tick cache (the routes over HTTP are
tests/integration/test_partitioned_http.py)."""

from __future__ import annotations

import json

from engine.adapters.http.partitioned import PartitionedApi
from engine.adapters.http.partitions import OwnedPartitions
from engine.adapters.http.summary import SummaryApi
from engine.core.config import parse_config
from tests.unit.adapters.http.partitioned_sample import (
    CONFIG,
    fed,
    partition_evaluators,
    partition_of,
    subset,
)

OWN_POLICY = CONFIG.replace(
    "{name: queue-avail, service: queue, sli: availability, objective: 99, period: 1h}",
    "{name: queue-avail, service: queue, sli: availability, objective: 99, period: 1h,\n"
    "     policy: [{severity: page, long: 2h, short: 10m, burn_rate: 5}]}",
)


def test_a_window_a_partition_does_not_keep_has_null_burn_rates() -> None:
    cfg = parse_config(OWN_POLICY)
    engines = partition_evaluators(cfg, [1, 3])  # 1: idle, queue (2h, 10m too); 3: db
    parts = OwnedPartitions(cfg, partition_of(cfg), {p: (ev, None) for p, ev in engines.items()})
    doc = json.loads(PartitionedApi(parts).summary_body())
    assert doc["windows"] == ["1m", "5m", "10m", "30m", "2h"]
    slos = doc["slos"]
    assert slos["name"] == ["idle-avail", "db-avail", "queue-avail"]
    burns = dict(zip(doc["windows"], doc["slos"]["burn_rates"], strict=True))
    db = slos["name"].index("db-avail")
    assert burns["10m"][db] is None  # partition 3 does not keep 10m
    assert burns["2h"][db] is None
    one = SummaryApi(fed(subset(cfg, ["db-avail"]))).columns()
    for w, rates in zip(["1m", "5m", "30m"], one["burn_rates"], strict=True):
        assert burns[w][db] == rates[0]
    assert burns["5m"][db] > 0  # the numbers are there: db fails
    queue = slos["name"].index("queue-avail")
    assert burns["10m"][queue] is not None
    assert slos["firing"] == {"page": [db], "ticket": [db]}


def test_the_lists_are_built_once_per_tick_and_ownership() -> None:
    cfg = parse_config(CONFIG)
    engines = partition_evaluators(cfg, [0, 1, 2, 3])
    parts = OwnedPartitions(cfg, partition_of(cfg), {p: (ev, None) for p, ev in engines.items()})
    generation = [0]
    api = PartitionedApi(parts, generation=lambda: generation[0])
    body, summary = api.list_body(), api.summary_body()
    assert api.list_body() is body
    assert api.summary_body() is summary
    generation[0] += 1
    assert api.list_body() is not body
    assert api.list_body() == body  # nothing changed in the evaluators
    body = api.list_body()
    del parts.owned[3]  # no tick, but the ownership changed
    fresh = json.loads(api.list_body())
    assert "db-avail" not in {v["name"] for v in fresh["slos"]}
    assert [p["partition"] for p in fresh["partitions"]] == [0, 1, 2]
    assert "db-avail" not in json.loads(api.summary_body())["slos"]["name"]
