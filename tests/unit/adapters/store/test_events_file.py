"""read_chunks: JSON Lines files, plain or gzip, read in blocks of whole lines with the
position reached in the file."""

from __future__ import annotations

import gzip
import tempfile
from pathlib import Path

import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from engine.adapters.store import events_file
from engine.adapters.store.events_file import EventsFileError, read_chunks

LINES = [b'{"service": "api", "status": 200}', b'{"service": "api", "status": 500}', b"{}"]


def chunks(path: Path) -> list[tuple[bytes, int]]:
    return list(read_chunks(path))


def check_blocks(got: list[tuple[bytes, int]], expected: bytes, file_size: int) -> None:
    """Every block ends at a newline, together they are `expected`, positions rise to
    the file size."""
    assert b"".join(block for block, _ in got) == expected
    for block, _ in got:
        assert block.endswith(b"\n")
    positions = [pos for _, pos in got]
    assert positions == sorted(positions)
    if got:
        assert positions[-1] == file_size


def test_a_plain_file_is_one_block_of_its_lines(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    data = b"\n".join(LINES) + b"\n"
    path.write_bytes(data)
    assert chunks(path) == [(data, len(data))]


def test_a_gzip_file_yields_its_decompressed_lines(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl.gz"
    data = b"\n".join(LINES) + b"\n"
    path.write_bytes(gzip.compress(data))
    got = chunks(path)
    check_blocks(got, data, path.stat().st_size)
    assert got[-1][1] == path.stat().st_size  # the position is in the compressed file


def test_gzip_is_recognised_by_content_not_by_name(tmp_path: Path) -> None:
    data = b"\n".join(LINES) + b"\n"
    packed = tmp_path / "events.jsonl"
    packed.write_bytes(gzip.compress(data))
    plain = tmp_path / "plain.gz"
    plain.write_bytes(data)
    assert b"".join(b for b, _ in chunks(packed)) == data
    assert chunks(plain) == [(data, len(data))]


@pytest.mark.parametrize("compress", [False, True])
def test_a_last_line_without_newline_is_completed(tmp_path: Path, compress: bool) -> None:
    path = tmp_path / "events.jsonl"
    data = b"\n".join(LINES)  # no final newline
    path.write_bytes(gzip.compress(data) if compress else data)
    check_blocks(chunks(path), data + b"\n", path.stat().st_size)


@pytest.mark.parametrize("compress", [False, True])
def test_an_empty_file_yields_nothing(tmp_path: Path, compress: bool) -> None:
    path = tmp_path / "events.jsonl"
    path.write_bytes(gzip.compress(b"") if compress else b"")
    assert chunks(path) == []


def test_blank_lines_inside_the_file_are_kept(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    data = b"{}\n\n{}\n"
    path.write_bytes(data)
    assert chunks(path) == [(data, len(data))]


def test_small_blocks_end_at_line_ends(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(events_file, "CHUNK_BYTES", 10)
    path = tmp_path / "events.jsonl"
    data = b"aaaa\nbbbb\ncccc\ndddd\n"
    path.write_bytes(data)
    got = chunks(path)
    check_blocks(got, data, len(data))
    assert [b for b, _ in got] == [b"aaaa\nbbbb\n", b"cccc\ndddd\n"]
    assert [p for _, p in got] == [10, 20]


def test_a_line_longer_than_a_block_comes_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(events_file, "CHUNK_BYTES", 4)
    path = tmp_path / "events.jsonl"
    long_line = b'{"service": "' + b"x" * 50 + b'"}'
    data = b"{}\n" + long_line + b"\n{}\n"
    path.write_bytes(data)
    got = chunks(path)
    check_blocks(got, data, len(data))
    lines = [line for block, _ in got for line in block.split(b"\n")[:-1]]
    assert lines == [b"{}", long_line, b"{}"]
    assert any(long_line + b"\n" in block for block, _ in got)


def test_a_long_last_line_without_newline_comes_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(events_file, "CHUNK_BYTES", 3)
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"a\n" + b"z" * 20)
    assert chunks(path) == [(b"a\n", 3), (b"z" * 20 + b"\n", 22)]


line_st = st.binary(max_size=40).map(lambda b: b.replace(b"\n", b"."))


@settings(max_examples=200, deadline=None)
@example(lines=[b"", b"\t"], final_newline=False, chunk=1, compress=False)  # ends in blanks
@given(
    lines=st.lists(line_st, max_size=30),
    final_newline=st.booleans(),
    chunk=st.integers(1, 64),
    compress=st.booleans(),
)
def test_blocks_are_the_files_lines_whatever_the_block_size(
    lines: list[bytes], final_newline: bool, chunk: int, compress: bool
) -> None:
    data = b"\n".join(lines) + (b"\n" if final_newline and lines else b"")
    assume(compress or not data.startswith(b"\x1f\x8b"))  # that is a gzip file's magic
    # a last line without newline is completed; one of only whitespace is no line
    if data and not data.endswith(b"\n"):
        tail = data[data.rfind(b"\n") + 1 :]
        expected = data + b"\n" if tail.strip() else data[: len(data) - len(tail)]
    else:
        expected = data
    with tempfile.TemporaryDirectory() as d, pytest.MonkeyPatch.context() as mp:
        mp.setattr(events_file, "CHUNK_BYTES", chunk)
        path = Path(d) / "events.jsonl"
        path.write_bytes(gzip.compress(data) if compress else data)
        got = chunks(path)
        check_blocks(got, expected, path.stat().st_size)
        if not compress:  # the position covers at least what was yielded
            done = 0
            for block, pos in got:
                done += len(block)
                assert pos >= min(done, len(data))
                assert pos <= len(data)


# --- damaged gzip files: the whole lines before the damage, then where it is ------------

MANY = b"".join(
    b'{"service":"api","ts":%d,"status":200}\n' % (1_767_225_600 + i) for i in range(20_000)
)


def _gzip(tmp_path: Path, data: bytes, name: str = "events.jsonl.gz") -> Path:
    path = tmp_path / name
    path.write_bytes(gzip.compress(data, mtime=0))
    return path


def _read(path: Path) -> tuple[bytes, EventsFileError | None]:
    """Everything read_chunks yields, and the EventsFileError it ends with, if any."""
    got: list[bytes] = []
    try:
        for block, _ in read_chunks(path):
            got.append(block)
    except EventsFileError as exc:
        return b"".join(got), exc
    return b"".join(got), None


def _read_until_error(path: Path) -> tuple[bytes, EventsFileError]:
    data, error = _read(path)
    assert error is not None, "the damaged file was read without an error"
    return data, error


@pytest.mark.parametrize("keep", [0.1, 0.5, 0.9, 0.999])
def test_a_truncated_gzip_file_yields_its_whole_lines_then_says_where_it_ends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, keep: float
) -> None:
    monkeypatch.setattr(events_file, "CHUNK_BYTES", 64 << 10)
    path = _gzip(tmp_path, MANY)
    packed = path.read_bytes()
    path.write_bytes(packed[: int(len(packed) * keep)])
    data, err = _read_until_error(path)
    assert MANY.startswith(data)
    assert data.endswith(b"\n")
    assert err.lines == data.count(b"\n") > 0
    assert err.data_bytes == len(data)
    assert err.position == path.stat().st_size
    assert str(err) == (
        f"events.jsonl.gz: the compressed file ends early at byte {err.position:,} of the "
        f"file, after line {err.lines:,} ({len(data):,} bytes)"
    )


def test_a_gzip_file_cut_in_its_trailer_yields_every_line_and_the_error(tmp_path: Path) -> None:
    path = _gzip(tmp_path, MANY)
    path.write_bytes(path.read_bytes()[:-4])  # the CRC is there, the length is not
    data, err = _read_until_error(path)
    assert data == MANY
    assert err.lines == 20_000
    assert "ends early" in str(err)


def test_a_gzip_file_with_a_bad_crc_is_reported_as_corrupt(tmp_path: Path) -> None:
    path = _gzip(tmp_path, MANY)
    packed = bytearray(path.read_bytes())
    packed[-8] ^= 0x01  # the CRC-32 of the trailer
    path.write_bytes(bytes(packed))
    data, err = _read_until_error(path)
    assert data == MANY  # the CRC is checked at the end, after the lines were read
    assert "the compressed data is corrupt (CRC check failed" in str(err)
    assert f"after line {20_000:,}" in str(err)


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(b"\x1f\x8b" + b'{"service":"api"}\n' * 10, id="text after the gzip magic"),
        pytest.param(b"\x1f\x8b\x08\x00", id="a header cut short"),
        pytest.param(b"\x1f\x8b", id="only the magic"),
    ],
)
def test_not_gzip_after_the_magic_is_an_error_before_any_line(
    tmp_path: Path, content: bytes
) -> None:
    path = tmp_path / "events.jsonl.gz"
    path.write_bytes(content)
    data, err = _read_until_error(path)
    assert data == b""
    assert err.lines == 0
    assert str(err).startswith("events.jsonl.gz: the compressed ")
    assert str(err).endswith("of the file, before any line")


def test_garbage_after_a_whole_gzip_member_is_corrupt(tmp_path: Path) -> None:
    path = _gzip(tmp_path, MANY[:1000])
    path.write_bytes(path.read_bytes() + b"garbage")
    data, err = _read_until_error(path)
    assert data == MANY[: MANY[:1000].rfind(b"\n") + 1]
    assert "corrupt" in str(err)


def test_damage_inside_the_deflate_stream_is_an_error_not_a_crash(tmp_path: Path) -> None:
    path = _gzip(tmp_path, MANY)
    packed = bytearray(path.read_bytes())
    for i in range(len(packed) // 2, len(packed) // 2 + 64):
        packed[i] ^= 0x5A
    path.write_bytes(bytes(packed))
    _, err = _read_until_error(path)
    assert "corrupt" in str(err) or "ends early" in str(err)


_SOURCE = MANY[:20_000]  # ends inside a line: a complete file's last line is completed
_PACKED = gzip.compress(_SOURCE, mtime=0)


@settings(max_examples=150, deadline=None)
@given(cut=st.integers(2, len(_PACKED)), chunk=st.integers(1, 4096))
def test_a_gzip_file_cut_anywhere_yields_a_prefix_of_whole_lines(cut: int, chunk: int) -> None:
    """Whatever byte the file ends at and whatever the block size: the blocks are the
    file's first lines, whole, and either the file ends cleanly or EventsFileError says
    how many lines came before; nothing else is raised."""
    with tempfile.TemporaryDirectory() as d, pytest.MonkeyPatch.context() as mp:
        mp.setattr(events_file, "CHUNK_BYTES", chunk)
        path = Path(d) / "events.jsonl.gz"
        path.write_bytes(_PACKED[:cut])
        data, error = _read(path)
        assert not data or data.endswith(b"\n")
        if cut == len(_PACKED):
            assert error is None
            assert data == _SOURCE + b"\n"
        else:
            assert _SOURCE.startswith(data)
            assert error is not None
            assert error.lines == data.count(b"\n")
