"""The audit log's file (engine.adapters.store.audit): appends that verify, a reopened
writer going on with the chain, a damaged tail, another key or a second writer refused,
the batch fsync policy on an injected clock, a failed write on a full device, and the
key and file checks of `burnrate check`."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from engine.adapters.store import audit as audit_mod
from engine.adapters.store.audit import (
    AuditLogError,
    FileAudit,
    NullAudit,
    audit_errors,
    audit_key,
    audit_sink,
    check_audit_file,
)
from engine.core.audit import GENESIS, ChainHead, parse_line
from engine.core.audit_verify import verify_lines
from engine.core.config import Audit, parse_config
from engine.errors import ConfigError

KEY = b"0123456789abcdef-key"


class Clock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def write(path: Path, n: int, key: bytes | None = None, clock: Clock | None = None) -> ChainHead:
    log = FileAudit(path, key=key, clock=clock or Clock())
    log.open()
    for i in range(n):
        log.record("burnrate", "alert.firing", f"slo-{i}", {"i": i})
    log.close()
    return log.head


def lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def test_entries_are_appended_and_verify(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    head = write(path, 3, KEY)
    got = lines(path)
    assert len(got) == 3
    assert head.seq == 3
    assert parse_line(got[0]).prev == GENESIS
    assert parse_line(got[0]).at == 1_800_000_000.0
    assert verify_lines(got, KEY) == (True, 3, head.hash, None, None, "")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_a_reopened_writer_goes_on_with_the_chain(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    first = write(path, 2, KEY)
    log = FileAudit(path, key=KEY, clock=Clock())
    assert log.open() == first
    log.record("deployer", "gate.override.created", "shop", {"reason": "hotfix"})
    log.close()
    e = parse_line(lines(path)[2])
    assert (e.seq, e.prev, e.actor) == (3, first.hash, "deployer")
    v = verify_lines(lines(path), KEY)
    assert v.ok
    assert v.entries == 3


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda b: b[:-5], "incomplete line"),
        (lambda b: b.replace(b"slo-1", b"slo-9"), "edited"),
        (lambda b: b + b"not json\n", "malformed"),
    ],
)
def test_a_damaged_tail_is_refused(tmp_path: Path, damage: object, message: str) -> None:
    path = tmp_path / "audit.jsonl"
    write(path, 3)
    before = damage(path.read_bytes())  # type: ignore[operator]
    path.write_bytes(before)
    with pytest.raises(AuditLogError, match=message) as info:
        FileAudit(path, clock=Clock()).open()
    assert "burnrate audit verify" in str(info.value)
    assert path.read_bytes() == before  # never repaired, never appended to
    with pytest.raises(AuditLogError, match=message):
        check_audit_file(path, None)


def test_another_key_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    write(path, 2, KEY)
    with pytest.raises(AuditLogError, match="hash does not match"):
        FileAudit(path, key=b"another key of 16+ bytes", clock=Clock()).open()
    with pytest.raises(AuditLogError, match="hash does not match"):
        FileAudit(path, key=None, clock=Clock()).open()


def test_a_long_log_has_its_tail_checked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Past TAIL_BYTES only the last entries are read, each against the one before."""
    path = tmp_path / "audit.jsonl"
    head = write(path, 40, KEY)
    monkeypatch.setattr(audit_mod, "TAIL_BYTES", 1000)
    log = FileAudit(path, key=KEY, clock=Clock())
    assert log.open() == head
    log.close()
    data = lines(path)
    path.write_bytes(b"".join([*data[:-3], data[-2], data[-3], data[-1]]))
    with pytest.raises(AuditLogError, match="does not follow"):
        FileAudit(path, key=KEY, clock=Clock()).open()
    path.write_bytes(b"".join(data)[:-3])
    with pytest.raises(AuditLogError, match="malformed: incomplete line"):
        FileAudit(path, key=KEY, clock=Clock()).open()


def test_a_second_writer_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    first = FileAudit(path, clock=Clock())
    first.open()
    with pytest.raises(AuditLogError, match="in use by another process"):
        FileAudit(path, clock=Clock()).open()
    first.close()
    second = FileAudit(path, clock=Clock())
    second.open()
    second.close()


def test_an_unopenable_path_is_an_audit_log_error(tmp_path: Path) -> None:
    with pytest.raises(AuditLogError, match="cannot open"):
        FileAudit(tmp_path / "missing" / "audit.jsonl", clock=Clock()).open()


def test_fsync_each_entry(tmp_path: Path) -> None:
    log = FileAudit(tmp_path / "a.jsonl", clock=Clock())
    log.open()
    base = log.syncs
    for _ in range(5):
        log.record("a", "alert.firing", "s")
    assert log.syncs - base == 5
    log.close()


def test_batch_fsync_by_age_and_count(tmp_path: Path) -> None:
    clock = Clock()
    log = FileAudit(
        tmp_path / "a.jsonl", fsync="batch", fsync_interval_s=1.0, fsync_max_entries=4, clock=clock
    )
    log.open()
    base = log.syncs
    for _ in range(3):
        log.record("a", "alert.firing", "s")
    assert log.syncs == base  # written, not yet synced
    assert len(lines(tmp_path / "a.jsonl")) == 3  # a process crash loses none of them
    log.record("a", "alert.firing", "s")
    assert log.syncs == base + 1  # fourth entry: the count bound
    log.record("a", "alert.firing", "s")
    clock.now += 0.5
    log.tick()
    assert log.syncs == base + 1
    clock.now += 0.5
    log.tick()  # the oldest waiting entry is 1 s old: the age bound
    assert log.syncs == base + 2
    log.record("a", "alert.firing", "s")
    log.close()  # what waits is synced at close
    assert log.syncs == base + 3
    assert verify_lines(lines(tmp_path / "a.jsonl")).entries == 6


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full (Linux)")
def test_a_failed_write_loses_that_entry_and_keeps_the_chain(
    caplog: pytest.LogCaptureFixture,
) -> None:
    log = FileAudit("/dev/full", clock=Clock())
    log.open()
    log.record("a", "gate.override.created", "shop", {"reason": "x"})
    assert log.write_errors == 1
    assert log.head == ChainHead()
    assert "cannot write entry gate.override.created shop" in caplog.text
    log.close()


def test_null_audit_records_nothing() -> None:
    null = NullAudit()
    assert not null.enabled
    null.record("a", "alert.firing", "s", {})


CONFIG = "slos: [{name: s, service: s, sli: availability, objective: 99}]\n"


def test_audit_key_from_env_or_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUDIT_KEY", " 0123456789abcdef \n")
    assert audit_key(Audit(path="x", key_env="AUDIT_KEY")) == b"0123456789abcdef"
    f = tmp_path / "key"
    f.write_text("short\n")
    with pytest.raises(ConfigError, match=r"\$\.audit\.key_file: the key must be at least 16"):
        audit_key(Audit(path="x", key_file=str(f)))
    monkeypatch.delenv("AUDIT_KEY")
    with pytest.raises(ConfigError, match=r"\$\.audit\.key_env: environment variable AUDIT_KEY"):
        audit_key(Audit(path="x", key_env="AUDIT_KEY"))
    assert audit_key(Audit(path="x")) is None


def test_audit_sink_follows_the_config(tmp_path: Path) -> None:
    assert isinstance(audit_sink(parse_config(CONFIG), Clock()), NullAudit)
    cfg = parse_config(CONFIG + f"audit: {{path: {tmp_path / 'a.jsonl'}, fsync: batch}}\n")
    sink = audit_sink(cfg, Clock())
    assert isinstance(sink, FileAudit)
    assert sink.fsync == "batch"


def test_check_errors(tmp_path: Path) -> None:
    missing_dir = parse_config(CONFIG + f"audit: {{path: {tmp_path / 'no' / 'a.jsonl'}}}\n")
    assert audit_errors(missing_dir) == [
        f"$.audit.path: audit log {tmp_path / 'no' / 'a.jsonl'}: directory "
        f"{tmp_path / 'no'} does not exist"
    ]
    fine = parse_config(CONFIG + f"audit: {{path: {tmp_path / 'a.jsonl'}}}\n")
    assert audit_errors(fine) == []
    assert not (tmp_path / "a.jsonl").exists()  # check creates nothing
    write(tmp_path / "a.jsonl", 2, KEY)
    (tmp_path / "k").write_bytes(KEY)
    keyed = parse_config(
        CONFIG + f"audit: {{path: {tmp_path / 'a.jsonl'}, key_file: {tmp_path / 'k'}}}\n"
    )
    assert audit_errors(keyed) == []
    [line] = audit_errors(fine)  # written with a key, checked without
    assert line.startswith("$.audit.path: ")
    assert "hash does not match" in line
