"""FileStateStore: one atomic file with the snapshot and its offsets; crashes never mix them."""

from __future__ import annotations

import os
import tempfile
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
            mock.patch.object(state_module.os, target.split(".")[1], boom),
            pytest.raises(OSError, match="No space left"),
        ):
            store.save(new, new_offsets)
        assert store.load() == (old, old_offsets)
        assert os.listdir(d) == ["state.bin"]

        # 2. a process killed mid-write leaves a partial temp file: it is never read
        with (
            mock.patch.object(state_module.os, "replace", boom),
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
