"""The `incidents:` config section: defaults, one store, secrets never inline."""

from __future__ import annotations

import pytest

from engine.core.config import DEFAULT_INCIDENTS_PATH, parse_config
from engine.errors import ConfigError

BASE = """
slos:
  - {name: api, service: api, sli: availability, objective: 99.9}
"""


def errors(section: str) -> list[str]:
    with pytest.raises(ConfigError) as exc:
        parse_config(BASE + section)
    return exc.value.errors


def test_absent_means_no_incidents_and_existing_configs_stay_valid() -> None:
    assert parse_config(BASE).incidents is None


def test_an_empty_section_is_sqlite_at_the_default_path_with_a_15m_quiet_period() -> None:
    inc = parse_config(BASE + "incidents: {}\n").incidents
    assert inc is not None
    assert (inc.sqlite_path, inc.quiet_period_s) == (DEFAULT_INCIDENTS_PATH, 900.0)


def test_a_dsn_means_postgresql() -> None:
    cfg = parse_config(
        BASE + "incidents: {dsn: 'postgresql://burnrate@db:5432/slo', password_env: PGPW, "
        "quiet_period: 30m}\n"
    )
    assert cfg.incidents is not None
    assert cfg.incidents.sqlite_path is None
    assert cfg.incidents.quiet_period_s == 1800.0


@pytest.mark.parametrize(
    ("section", "message"),
    [
        pytest.param(
            "incidents: {path: a.db, dsn: 'postgresql://h/db'}",
            "$.incidents.dsn: give `path` (SQLite) or `dsn` (PostgreSQL), not both",
            id="two stores",
        ),
        pytest.param(
            "incidents: {dsn: 'postgresql://u:hunter2@h/db'}",
            "$.incidents.dsn: must not hold a password; give it through password_env or "
            "password_file",
            id="a password in the URL",
        ),
        pytest.param(
            "incidents: {dsn: 'postgresql://u@h/db?password=hunter2'}",
            "$.incidents.dsn: must not hold a password; give it through password_env or "
            "password_file",
            id="a password parameter",
        ),
        pytest.param(
            "incidents: {dsn: 'mysql://h/db'}",
            "$.incidents.dsn: must be a postgresql:// URL (postgresql://user@host:5432/db), "
            "got something else",
            id="not postgresql",
        ),
        pytest.param(
            "incidents: {path: a.db, password_file: /run/pw}",
            "$.incidents.password_file: only with `dsn` (a PostgreSQL store)",
            id="a password for sqlite",
        ),
        pytest.param(
            "incidents: {dsn: 'postgresql://h/db', password_env: A, password_file: /b}",
            "$.incidents.password_file: give password_env or password_file, not both",
            id="two password sources",
        ),
        pytest.param(
            "incidents: {quiet_period: 8d}",
            "$.incidents.quiet_period: at most 7d, got 8d",
            id="a quiet period too long",
        ),
    ],
)
def test_bad_sections_name_the_field(section: str, message: str) -> None:
    got = errors(section + "\n")
    assert message in got
    assert not any("hunter2" in e for e in got)


def test_decoding_errors_carry_the_path() -> None:
    assert errors("incidents: {quiet_period: soon}\n")[0].startswith("$.incidents.quiet_period:")
    assert errors("incidents: {paht: a.db}\n")[0].startswith("$.incidents")
