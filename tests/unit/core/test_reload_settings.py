"""Which config changes a reload takes, and which it refuses as needing a restart."""

from __future__ import annotations

import pytest

from engine.core.config import Config, parse_config
from engine.core.reload_settings import restart_fields

DIGEST = "ab" * 32
BASE = """
slos:
  - {name: a, service: a, sli: availability, objective: 99}
kafka: {bootstrap_servers: "k:9092", topics: [events], group_id: burnrate}
http:
  listen: 127.0.0.1:9464
  tokens: [{name: ops, scopes: [admin], sha256: DIGEST}]
receivers: [{type: console}]
""".replace("DIGEST", DIGEST)


def cfg() -> Config:
    return parse_config(BASE)


@pytest.mark.parametrize(
    "changed",
    [
        BASE.replace("objective: 99", "objective: 95"),
        BASE + "policy: [{severity: page, long: 1h, short: 5m, burn_rate: 10}]\n",
        BASE + "evaluation: {tick: 5s}\n",
        BASE + "corrections: [{name: m, start: 0, duration: 1h, services: [a], reason: r}]\n",
        BASE + "gate: {}\n",
        BASE.replace("name: ops", "name: deployer"),
        BASE.replace(DIGEST, "cd" * 32),
    ],
)
def test_slos_policies_corrections_and_tokens_are_taken_live(changed: str) -> None:
    assert restart_fields(cfg(), parse_config(changed)) == []


@pytest.mark.parametrize(
    ("changed", "field"),
    [
        (BASE.replace("k:9092", "other:9092"), "$.kafka.bootstrap_servers"),
        (BASE.replace("[events]", "[events, more]"), "$.kafka.topics"),
        (BASE.replace("group_id: burnrate", "group_id: g2"), "$.kafka.group_id"),
        (BASE.replace("127.0.0.1:9464", "0.0.0.0:9464"), "$.http.listen"),
        (BASE + "state: {path: /tmp/s}\n", "$.state"),
        (BASE.replace("[{type: console}]", "[]"), "$.receivers"),
        (BASE + "audit: {path: /tmp/a}\n", "$.audit"),
        (BASE + "changes: {max_kept: 10}\n", "$.changes.max_kept"),
    ],
)
def test_a_change_a_reload_cannot_take_is_named_as_needing_a_restart(
    changed: str, field: str
) -> None:
    assert restart_fields(cfg(), parse_config(changed)) == [f"{field}: changed; needs a restart"]


def test_turning_token_auth_on_or_off_needs_a_restart() -> None:
    open_ = BASE.replace(f"  tokens: [{{name: ops, scopes: [admin], sha256: {DIGEST}}}]\n", "")
    assert open_ != BASE
    [line] = restart_fields(cfg(), parse_config(open_))
    assert line.startswith("$.http.tokens: turning token auth on or off needs a restart")
    assert restart_fields(parse_config(open_), cfg()) == [line]
