"""FileStateStore: one atomic file with the snapshot and its offsets; crashes never mix them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path
from unittest import mock

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.adapters.store import state as state_module
from engine.adapters.store.state import FileStateStore
from engine.core.snapshot import SnapshotError

offsets_st = st.dictionaries(
    st.tuples(st.sampled_from(["events", "other-topic"]), st.integers(0, 63)),
    st.integers(0, 2**62),
    max_size=8,
)


def test_load_without_a_file_is_none(tmp_path: Path) -> None:
    assert FileStateStore(tmp_path / "state.bin").load() is None


@given(blob=st.binary(max_size=4096), offsets=offsets_st)
def test_save_then_load_round_trips(blob: bytes, offsets: dict[tuple[str, int], int]) -> None:
    with tempfile.TemporaryDirectory() as d:
        store = FileStateStore(Path(d) / "sub" / "state.bin")  # the directory is created
        store.save(blob, offsets)
        assert store.load() == (blob, offsets)
        assert os.listdir(Path(d) / "sub") == ["state.bin"]  # no temp file left behind


def test_a_second_save_replaces_the_first(tmp_path: Path) -> None:
    store = FileStateStore(tmp_path / "state.bin")
    store.save(b"one", {("t", 0): 5})
    store.save(b"two", {("t", 0): 9, ("t", 1): 3})
    assert store.load() == (b"two", {("t", 0): 9, ("t", 1): 3})


FAIL_AT = ("write", "fsync", "replace")


@settings(max_examples=60, deadline=None)
@given(
    old=st.binary(min_size=1, max_size=512),
    new=st.binary(min_size=1, max_size=512),
    old_offsets=offsets_st,
    new_offsets=offsets_st,
    fail_at=st.sampled_from(FAIL_AT),
    partial=st.integers(0, 2000),
)
def test_a_save_that_fails_or_crashes_midway_never_replaces_a_good_file(
    old: bytes,
    new: bytes,
    old_offsets: dict[tuple[str, int], int],
    new_offsets: dict[tuple[str, int], int],
    fail_at: str,
    partial: int,
) -> None:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "state.bin"
        store = FileStateStore(path)
        store.save(old, old_offsets)

        # 1. a save that fails at some step: an error, the old file intact, no temp left
        def boom(*_args: object, **_kwargs: object) -> None:
            raise OSError(28, "No space left on device")

        target = {"write": "os.fdopen", "fsync": "os.fsync", "replace": "os.replace"}[fail_at]
        with (
            mock.patch.object(os, target.split(".")[1], boom),
            pytest.raises(OSError, match="No space left"),
        ):
            store.save(new, new_offsets)
        assert store.load() == (old, old_offsets)
        assert os.listdir(d) == ["state.bin"]

        # 2. a process killed mid-write leaves a partial temp file: it is never read
        with (
            mock.patch.object(os, "replace", boom),
            pytest.raises(OSError, match="No space left"),
        ):
            store.save(new, new_offsets)
        full = FileStateStore(Path(d) / "full.bin")
        full.save(new, new_offsets)
        data = (Path(d) / "full.bin").read_bytes()
        (Path(d) / "full.bin").unlink()
        stray = Path(d) / f"{state_module.TEMP_PREFIX}crashed.tmp"
        stray.write_bytes(data[: partial % (len(data) + 1)])
        assert store.load() == (old, old_offsets)

        # 3. the next good save wins, stray temp or not
        store.save(new, new_offsets)
        assert store.load() == (new, new_offsets)


@given(cut=st.integers(0, 10_000), flip=st.integers(0, 10_000))
def test_a_damaged_file_is_a_snapshot_error_not_garbage(cut: int, flip: int) -> None:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "state.bin"
        store = FileStateStore(path)
        store.save(b"x" * 300, {("t", 0): 42})
        data = bytearray(path.read_bytes())
        if cut % 2:
            data = data[: cut % len(data)]
        else:
            data[flip % len(data)] ^= 0xFF
        path.write_bytes(bytes(data))
        try:
            got = store.load()
        except SnapshotError:
            return
        # a flip inside msgpack framing that still decodes must not go unnoticed
        assert got == (b"x" * 300, {("t", 0): 42})


def test_a_file_of_another_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "state.bin"
    FileStateStore(path).save(b"blob", {})
    data = msgspec.msgpack.decode(path.read_bytes())
    data["version"] = 99
    path.write_bytes(msgspec.msgpack.encode(data))
    with pytest.raises(SnapshotError, match="version 99"):
        FileStateStore(path).load()


def test_a_payload_changed_under_its_checksum_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "state.bin"
    FileStateStore(path).save(b"blob", {("t", 0): 1})
    data = msgspec.msgpack.decode(path.read_bytes())
    payload = msgspec.msgpack.decode(data["payload"])
    payload["evaluator"] = b"blub"  # well-formed, but not what was written
    data["payload"] = msgspec.msgpack.encode(payload)
    path.write_bytes(msgspec.msgpack.encode(data))
    with pytest.raises(SnapshotError, match="damaged: checksum mismatch"):
        FileStateStore(path).load()


def test_a_file_of_another_format_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "state.bin"
    FileStateStore(path).save(b"blob", {})
    data = msgspec.msgpack.decode(path.read_bytes())
    data["format"] = "something-else"
    path.write_bytes(msgspec.msgpack.encode(data))
    with pytest.raises(SnapshotError, match="is damaged"):
        FileStateStore(path).load()


def test_a_state_path_that_cannot_be_read_is_a_snapshot_error(tmp_path: Path) -> None:
    (tmp_path / "state.bin").mkdir()
    with pytest.raises(SnapshotError, match=r"cannot read state file .*state\.bin"):
        FileStateStore(tmp_path / "state.bin").load()


def test_a_save_leaves_other_files_in_the_directory_alone(tmp_path: Path) -> None:
    (tmp_path / "config.yaml").write_text("slos: []\n")
    store = FileStateStore(tmp_path / "state.bin")
    for i in range(3):
        store.save(b"blob%d" % i, {("t", 0): i})
    assert sorted(os.listdir(tmp_path)) == ["config.yaml", "state.bin"]
    assert (tmp_path / "config.yaml").read_text() == "slos: []\n"
    assert store.load() == (b"blob2", {("t", 0): 2})


# -- what a file may hold -------------------------------------------------------------


def write_raw(path: Path, offsets: list[list[object]], *, version: int = 2) -> None:
    """A well-formed, CRC-correct file holding exactly these offset entries."""
    payload = msgspec.msgpack.encode({"offsets": offsets, "evaluator": b"blob"})
    path.write_bytes(
        msgspec.msgpack.encode(
            {
                "format": "burnrate-state",
                "version": version,
                "crc32": zlib.crc32(payload),
                "payload": payload,
            }
        )
    )


@pytest.mark.parametrize(
    ("offsets", "reason"),
    [
        ([["events", 0, -5]], "'events'[0]: offset -5 is out of range"),
        ([["events", -1, 5]], "'events'[-1]: partition -1 is out of range"),
        ([["events", 2**31, 5]], "partition 2147483648 is out of range"),
        ([["", 0, 5]], "an empty topic name"),
        ([["bad topic!", 0, 5]], "is not a legal Kafka topic name"),
        ([["..", 0, 5]], "is not a legal Kafka topic name"),
        ([["t" * 250, 0, 5]], "is not a legal Kafka topic name"),
        ([["events", 0, 2**63]], "offset 9223372036854775808 is out of range"),
        ([["events", 0, 5], ["events", 0, 7]], "'events'[0] is listed twice"),
    ],
)
def test_a_file_with_impossible_offsets_is_refused_saying_why(
    tmp_path: Path, offsets: list[list[object]], reason: str
) -> None:
    path = tmp_path / "state.bin"
    write_raw(path, [["events", 1, 3], *offsets])
    with pytest.raises(SnapshotError) as err:
        FileStateStore(path).read()
    assert "holds impossible offsets" in str(err.value)
    assert reason in str(err.value)
    assert str(path) in str(err.value)


def test_the_largest_possible_offsets_and_partitions_are_accepted(tmp_path: Path) -> None:
    path = tmp_path / "state.bin"
    write_raw(path, [["events", 2**31 - 1, 2**63 - 1], ["a.b_c-D", 0, 0]])
    saved = FileStateStore(path).read()
    assert saved is not None
    assert saved.offsets == {("events", 2**31 - 1): 2**63 - 1, ("a.b_c-D", 0): 0}


def test_a_version_1_file_is_still_read_with_no_deliveries(tmp_path: Path) -> None:
    path = tmp_path / "state.bin"
    write_raw(path, [["events", 0, 42]], version=1)
    saved = FileStateStore(path).read()
    assert saved == (b"blob", {("events", 0): 42}, b"", b"", b"")
    assert FileStateStore(path).load() == (b"blob", {("events", 0): 42})


def test_deliveries_round_trip_and_are_checksummed(tmp_path: Path) -> None:
    path = tmp_path / "state.bin"
    store = FileStateStore(path)
    store.save(b"blob", {("t", 0): 1}, b"undelivered")
    assert store.read() == (b"blob", {("t", 0): 1}, b"undelivered", b"", b"")
    assert store.load() == (b"blob", {("t", 0): 1})
    data = msgspec.msgpack.decode(path.read_bytes())
    assert data["version"] == 2  # no overrides: written as before them
    payload = msgspec.msgpack.decode(data["payload"])
    payload["deliveries"] = b"something else"
    data["payload"] = msgspec.msgpack.encode(payload)
    path.write_bytes(msgspec.msgpack.encode(data))
    with pytest.raises(SnapshotError, match="checksum mismatch"):
        store.read()


def test_overrides_round_trip_in_a_version_3_file(tmp_path: Path) -> None:
    path = tmp_path / "state.bin"
    store = FileStateStore(path)
    store.save(b"blob", {("t", 0): 1}, b"", b"overrides")
    assert store.read() == (b"blob", {("t", 0): 1}, b"", b"overrides", b"")
    data = msgspec.msgpack.decode(path.read_bytes())
    assert data["version"] == 3  # no changes: written as before them
    store.save(b"blob", {("t", 0): 2})  # none left: an older engine can read it again
    assert msgspec.msgpack.decode(path.read_bytes())["version"] == 2


@pytest.mark.parametrize("version", [1, 2])
def test_overrides_in_a_file_older_than_version_3_are_damage(tmp_path: Path, version: int) -> None:
    path = tmp_path / "state.bin"
    payload = msgspec.msgpack.encode({"offsets": [], "evaluator": b"b", "overrides": b"x"})
    path.write_bytes(
        msgspec.msgpack.encode(
            {"version": version, "crc32": zlib.crc32(payload), "payload": payload}
        )
    )
    with pytest.raises(SnapshotError, match=f"overrides in version {version}"):
        FileStateStore(path).read()


def test_changes_round_trip_in_a_version_4_file(tmp_path: Path) -> None:
    path = tmp_path / "state.bin"
    store = FileStateStore(path)
    store.save(b"blob", {("t", 0): 1}, b"", b"", b"changes")
    assert store.read() == (b"blob", {("t", 0): 1}, b"", b"", b"changes")
    data = msgspec.msgpack.decode(path.read_bytes())
    assert data["version"] == state_module.STATE_FILE_VERSION == 4
    store.save(b"blob", {("t", 0): 2}, b"", b"overrides")  # no changes left
    assert msgspec.msgpack.decode(path.read_bytes())["version"] == 3


@pytest.mark.parametrize("version", [1, 2, 3])
def test_changes_in_a_file_older_than_version_4_are_damage(tmp_path: Path, version: int) -> None:
    path = tmp_path / "state.bin"
    payload = msgspec.msgpack.encode({"offsets": [], "evaluator": b"b", "changes": b"x"})
    path.write_bytes(
        msgspec.msgpack.encode(
            {"version": version, "crc32": zlib.crc32(payload), "payload": payload}
        )
    )
    with pytest.raises(SnapshotError, match=f"changes in version {version}"):
        FileStateStore(path).read()


# -- temp files a killed write left ---------------------------------------------------


def test_clean_temp_files_removes_only_this_state_files_temp_files(tmp_path: Path) -> None:
    store = FileStateStore(tmp_path / "state.bin")
    store.save(b"blob", {("t", 0): 1})
    ours = [tmp_path / f"{store.temp_prefix}{tag}{state_module.TEMP_SUFFIX}" for tag in "abc"]
    for i, path in enumerate(ours):
        path.write_bytes(b"x" * (1000 * (i + 1)))  # partial writes of killed processes
    keep = [
        tmp_path / f"{FileStateStore(tmp_path / 'other.bin').temp_prefix}zz.tmp",  # another file's
        tmp_path / ".burnrate-state-state.bin.abc.txt",  # not a temp name
        tmp_path / "notes.tmp",
        tmp_path / "config.yaml",
    ]
    for path in keep:
        path.write_text("keep")
    elsewhere = tmp_path / "sub"
    elsewhere.mkdir()
    (elsewhere / ours[0].name).write_text("another directory")
    assert store.clean_temp_files() == 3
    assert sorted(os.listdir(tmp_path)) == sorted(["state.bin", "sub", *(p.name for p in keep)])
    assert (elsewhere / ours[0].name).exists()
    assert store.load() == (b"blob", {("t", 0): 1})
    assert store.clean_temp_files() == 0


def test_a_kill_during_a_write_leaves_a_temp_file_the_next_start_removes(tmp_path: Path) -> None:
    """A real killed writer: a child process stopped with SIGKILL inside the write."""
    path = tmp_path / "state.bin"
    FileStateStore(path).save(b"old", {("t", 0): 1})
    code = (
        "import os, signal, sys\n"
        "from engine.adapters.store import state\n"
        "def die(*_a):\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
        "state.os.replace = die\n"  # killed after the temp file is written, before the rename
        f"state.FileStateStore({str(path)!r}).save(b'new' * 100000, {{('t', 0): 2}})\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], check=False, timeout=60)
    assert proc.returncode == -signal.SIGKILL
    left = [name for name in os.listdir(tmp_path) if name != "state.bin"]
    assert len(left) == 1
    assert left[0].endswith(".tmp")
    store = FileStateStore(path)
    assert store.load() == (b"old", {("t", 0): 1})  # the orphan is never read
    assert store.clean_temp_files() == 1
    assert os.listdir(tmp_path) == ["state.bin"]


def test_old_style_temp_files_are_removed_only_once_stale(tmp_path: Path) -> None:
    store = FileStateStore(tmp_path / "state.bin")
    stale = tmp_path / f"{state_module.TEMP_PREFIX}k3j_x9a2{state_module.TEMP_SUFFIX}"
    fresh = tmp_path / f"{state_module.TEMP_PREFIX}q8w2e7r1{state_module.TEMP_SUFFIX}"
    for path in (stale, fresh):
        path.write_bytes(b"partial")
    old = time.time() - state_module.LEGACY_TEMP_MIN_AGE_S - 60
    os.utime(stale, (old, old))
    assert store.clean_temp_files() == 1
    assert not stale.exists()
    assert fresh.exists()  # may be another state file's write in progress


def test_clean_temp_files_survives_a_missing_or_unreadable_directory(tmp_path: Path) -> None:
    assert FileStateStore(tmp_path / "missing" / "state.bin").clean_temp_files() == 0
    (tmp_path / "file").write_text("")
    assert FileStateStore(tmp_path / "file" / "state.bin").clean_temp_files() == 0


def test_temp_names_stay_short_for_a_long_state_file_name(tmp_path: Path) -> None:
    store = FileStateStore(tmp_path / ("s" * 200))
    assert len(store.temp_prefix) < 60
    store.save(b"blob", {})
    assert store.load() == (b"blob", {})
