"""`audit:` in the config: its shape and its `$.audit...` errors."""

from __future__ import annotations

import pytest

from engine.core.config import ConfigError, parse_config

BASE = "slos: [{name: s, service: s, sli: availability, objective: 99}]\n"


def errors(audit: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(BASE + f"audit: {audit}\n")
    return info.value.errors


def test_defaults() -> None:
    cfg = parse_config(BASE + "audit: {path: /var/lib/burnrate/audit.jsonl}\n")
    assert cfg.audit is not None
    assert (cfg.audit.fsync, cfg.audit.fsync_interval_s, cfg.audit.fsync_max_entries) == (
        "entry",
        1.0,
        1000,
    )
    assert parse_config(BASE).audit is None


def test_batch() -> None:
    cfg = parse_config(
        BASE + "audit: {path: a, key_env: K, fsync: batch, fsync_interval: 5s, "
        "fsync_max_entries: 10}\n"
    )
    assert cfg.audit is not None
    assert cfg.audit.fsync_interval_s == 5.0


@pytest.mark.parametrize(
    ("audit", "expected"),
    [
        (
            "{path: a, key_env: K, key_file: F}",
            "$.audit.key_file: give key_env or key_file, not both",
        ),
        ("{path: a, fsync_interval: 2s}", "$.audit.fsync_interval: only with `fsync: batch`"),
        ("{path: a, fsync_max_entries: 5}", "$.audit.fsync_max_entries: only with `fsync: batch`"),
        (
            "{path: a, fsync: batch, fsync_interval: 2m}",
            "$.audit.fsync_interval: must be longer than 0s and at most 1m, got 2m",
        ),
        (
            "{path: a, fsync: batch, fsync_max_entries: 0}",
            "$.audit.fsync_max_entries: must be from 1 to 100000, got 0",
        ),
    ],
)
def test_errors(audit: str, expected: str) -> None:
    assert expected in errors(audit)


@pytest.mark.parametrize(
    ("audit", "expected"),
    [
        ("{}", "$.audit: Object missing required field `path`"),
        ("{path: ''}", "$.audit.path: Expected `str` of length >= 1"),
        ("{path: a, fsync: always}", "$.audit.fsync: Invalid enum value 'always'"),
        ("{path: a, key: inline}", "$.audit: Object contains unknown field `key`"),
    ],
)
def test_shape_errors(audit: str, expected: str) -> None:
    [line] = errors(audit)
    assert line.startswith(expected)
