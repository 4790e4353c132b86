"""`burnrate audit verify`: its output and exit codes over real files, in process
(engine.cli.main) and once as the installed command would run (a subprocess)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from engine.adapters.store.audit import FileAudit
from engine.cli import main
from engine.core.audit import ChainHead

KEY = "an HMAC key of more than 16 bytes"
ROOT = Path(__file__).resolve().parents[3]


def write(path: Path, n: int, key: str | None = None) -> ChainHead:
    log = FileAudit(path, key=None if key is None else key.encode(), clock=lambda: 1.7e9)
    log.open()
    for i in range(n):
        log.record("deployer", "gate.override.created", "shop", {"i": i})
    log.close()
    return log.head


def test_ok(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    head = write(tmp_path / "a.jsonl", 4)
    assert main(["audit", "verify", str(tmp_path / "a.jsonl")]) == 0
    assert capsys.readouterr().out == f"ok: 4 entries, head {head.hash}\n"


def test_an_empty_log_is_ok(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "a.jsonl").write_bytes(b"")
    assert main(["audit", "verify", str(tmp_path / "a.jsonl")]) == 0
    assert capsys.readouterr().out == f"ok: 0 entries, head {'0' * 64}\n"


def test_first_bad_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "a.jsonl"
    write(path, 4)
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join([lines[0], lines[2], lines[3]]))
    assert main(["audit", "verify", str(path)]) == 1
    err = capsys.readouterr().err
    assert err == (
        f"{path}: line 2: removed: seq 2 missing before this line (seq 3) "
        "(1 entries verified before it)\n"
    )


def test_with_a_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "a.jsonl"
    head = write(path, 3, KEY)
    monkeypatch.setenv("AUDIT_KEY", KEY)
    assert main(["audit", "verify", str(path), "--key-env", "AUDIT_KEY"]) == 0
    assert capsys.readouterr().out == f"ok: 3 entries, head {head.hash}\n"
    (tmp_path / "wrong").write_text("a wrong key, long enough\n")
    assert main(["audit", "verify", str(path), "--key-file", str(tmp_path / "wrong")]) == 1
    err = capsys.readouterr().err
    assert "line 1: edited: hash does not match the entry" in err
    assert KEY not in err
    assert main(["audit", "verify", str(path)]) == 1  # keyed log, no key
    assert "give --key-env or --key-file" in capsys.readouterr().err


def test_expect_head(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "a.jsonl"
    head = write(path, 3)
    lines = path.read_bytes().splitlines(keepends=True)
    assert main(["audit", "verify", str(path), "--expect-head", head.hash.upper()]) == 0
    capsys.readouterr()
    path.write_bytes(b"".join(lines[:2]))
    assert main(["audit", "verify", str(path)]) == 0  # cut short: only the head shows it
    capsys.readouterr()
    assert main(["audit", "verify", str(path), "--expect-head", head.hash]) == 1
    assert (
        f"line 3: truncated: no entry has the expected head {head.hash}" in capsys.readouterr().err
    )


def test_usage_and_io_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "a.jsonl"
    write(path, 1)
    assert main(["audit", "verify", str(tmp_path / "missing.jsonl")]) == 2
    assert capsys.readouterr().err == (
        f"burnrate audit verify: {tmp_path / 'missing.jsonl'}: cannot read: "
        "No such file or directory\n"
    )
    assert main(["audit", "verify", str(tmp_path)]) == 2
    assert "Is a directory" in capsys.readouterr().err
    monkeypatch.delenv("NO_SUCH_KEY", raising=False)
    assert main(["audit", "verify", str(path), "--key-env", "NO_SUCH_KEY"]) == 2
    assert capsys.readouterr().err == (
        "burnrate audit verify: --key-env: environment variable NO_SUCH_KEY is not set\n"
    )
    (tmp_path / "short").write_text("short")
    assert main(["audit", "verify", str(path), "--key-file", str(tmp_path / "short")]) == 2
    assert "at least 16 bytes" in capsys.readouterr().err
    for argv in (
        ["audit", "verify", str(path), "--expect-head", "abc"],
        ["audit", "verify", str(path), "--key-env", "A", "--key-file", "B"],
        ["audit"],
        ["audit", "verify"],
    ):
        with pytest.raises(SystemExit) as info:
            main(argv)
        assert info.value.code == 2
    assert "must be 64 hex digits" in capsys.readouterr().err


def test_as_a_command(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    head = write(path, 2)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    ok = subprocess.run(
        [sys.executable, "-m", "engine", "audit", "verify", str(path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert (ok.returncode, ok.stdout, ok.stderr) == (0, f"ok: 2 entries, head {head.hash}\n", "")
    path.write_bytes(path.read_bytes().replace(b'"i":1', b'"i":7'))
    bad = subprocess.run(
        [sys.executable, "-m", "engine", "audit", "verify", str(path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert bad.returncode == 1
    assert bad.stderr.startswith(f"{path}: line 2: edited: ")
    helped = subprocess.run(
        [sys.executable, "-m", "engine", "audit", "verify", "--help"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert helped.returncode == 0
    assert "--expect-head" in helped.stdout
