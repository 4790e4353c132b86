"""A real PostgreSQL server for the incident store tests.

`BURNRATE_TEST_POSTGRES_DSN` set: that server (a DSN whose user may create databases).
Otherwise scripts/postgres.sh starts one from Debian's `postgresql` package on a free
loopback port, in a throwaway directory, for the test session (`scripts/test.sh` and
`.ci/run` install the package). Neither: the tests fail rather than skip, so a run
without PostgreSQL cannot pass by testing nothing.

Each test gets a database of its own (`fresh_database`), dropped afterwards.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from tests.integration.prometheus_server import free_port

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "postgres.sh"
DSN_ENV = "BURNRATE_TEST_POSTGRES_DSN"


@contextlib.contextmanager
def postgres_server() -> Iterator[str]:
    """The DSN of a running PostgreSQL server (module docstring)."""
    external = os.environ.get(DSN_ENV, "").strip()
    if external:
        yield external
        return
    # Not under pytest's tmp_path: the server runs as the `postgres` user when the tests
    # run as root, and pytest's directories are private to their owner.
    root = Path(tempfile.mkdtemp(prefix="burnrate-pg-"))
    root.chmod(0o755)
    port = str(free_port())
    try:
        started = subprocess.run(
            ["bash", str(SCRIPT), "start", port, str(root / "pg")],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if started.returncode != 0:
            pytest.fail(
                f"PostgreSQL did not start ({SCRIPT.name}): {started.stderr.strip()}\n"
                "Install Debian's `postgresql` package (scripts/test.sh does), or set "
                f"{DSN_ENV} to a server's DSN.",
                pytrace=False,
            )
        try:
            yield started.stdout.strip()
        finally:
            subprocess.run(
                ["bash", str(SCRIPT), "stop", port, str(root / "pg")],
                capture_output=True,
                timeout=120,
                check=False,
            )
    finally:
        shutil.rmtree(root, ignore_errors=True)


@contextlib.contextmanager
def fresh_database(server_dsn: str) -> Iterator[str]:
    """A new, empty database on the server; its DSN. Dropped on the way out."""
    name = f"burnrate_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server_dsn, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')  # type: ignore[arg-type]
    try:
        yield make_conninfo(server_dsn, dbname=name)
    finally:
        with psycopg.connect(server_dsn, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')  # type: ignore[arg-type]
