"""`burnrate run` with an unusable Kafka secret stops at start with exit 2 and one line.

Before the shared secret reader, a `sasl_password_file` that was not UTF-8 escaped as a
UnicodeDecodeError, was taken for an unreachable broker and retried forever. The error
must come before any connection attempt, so no broker is needed: bootstrap points at a
port nothing listens on.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

TIMEOUT_S = 30.0
PASSWORD = "hunter2-h\u00fcnter"

CONFIG = """\
slos:
  - name: api-availability
    service: api
    sli: availability
    objective: 99.9
kafka:
  bootstrap_servers: 127.0.0.1:1
  security:
    protocol: SASL_PLAINTEXT
    sasl_username: burnrate
{source}
http:
  listen: 127.0.0.1:0
"""


def run_burnrate(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "KAFKA_BOOTSTRAP_SERVERS"}
    env.pop("BURNRATE_TEST_UNSET_PASSWORD", None)
    try:
        return subprocess.run(
            [sys.executable, "-m", "engine", *args],
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=TIMEOUT_S,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(
            f"burnrate {' '.join(args)} still running after {TIMEOUT_S:.0f}s (retrying a "
            f"config error as an outage?); stderr:\n{exc.stderr!r}"
        )


@pytest.mark.parametrize(
    ("source", "field", "reason"),
    [
        pytest.param(
            "file",
            "sasl_password_file",
            "cannot read {file}: not UTF-8",
            id="password file not UTF-8",
        ),
        pytest.param(
            "env",
            "sasl_password_env",
            "environment variable BURNRATE_TEST_UNSET_PASSWORD is not set",
            id="password variable unset",
        ),
    ],
)
def test_an_unusable_kafka_secret_is_a_config_error_at_start(
    source: str, field: str, reason: str, tmp_path: Path
) -> None:
    pw = tmp_path / "kafka-password"
    pw.write_bytes(b"\xff\xfe" + PASSWORD.encode("utf-16-le"))  # UTF-16 with its BOM
    line = (
        f"    sasl_password_file: {pw}"
        if source == "file"
        else "    sasl_password_env: BURNRATE_TEST_UNSET_PASSWORD"
    )
    config = tmp_path / "burnrate.yaml"
    config.write_text(CONFIG.format(source=line))

    t0 = time.monotonic()
    proc = run_burnrate(["run", "--config", str(config)], tmp_path)
    elapsed = time.monotonic() - t0

    report = f"exit {proc.returncode} after {elapsed:.1f}s; stderr:\n{proc.stderr}"
    expected = f"{config}: $.kafka.security.{field}: {reason.format(file=pw)}"
    assert proc.returncode == 2, report
    assert "Traceback" not in proc.stderr, report
    assert "cannot reach Kafka" not in proc.stderr, report
    assert proc.stderr.splitlines() == [expected], report  # checked before anything starts
    assert PASSWORD not in proc.stderr + proc.stdout
    assert elapsed < TIMEOUT_S / 2, report
