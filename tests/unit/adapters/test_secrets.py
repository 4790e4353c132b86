"""read_secret: one reader for every secret the config names, one error line per problem."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from engine.adapters.secrets import MAX_SECRET_BYTES, read_secret
from engine.errors import ConfigError

SECRET = "s3cr3t-\u00e9t\u00e9"
ENV_PATH = "$.x.token_env"
FILE_PATH = "$.x.token_file"


def error_of(path: str, *, env: str | None = None, file: str | None = None) -> str:
    """The one line of the ConfigError read_secret raises (and never the secret)."""
    with pytest.raises(ConfigError) as info:
        read_secret(path, env=env, file=file)
    assert len(info.value.errors) == 1, info.value.errors
    assert SECRET not in str(info.value)
    return info.value.errors[0]


# --- environment ---------------------------------------------------------------------


def test_env_value_is_stripped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BURNRATE_TEST_SECRET", f"  {SECRET}\n")
    assert read_secret(ENV_PATH, env="BURNRATE_TEST_SECRET") == SECRET


def test_env_comes_from_the_given_mapping_when_there_is_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("BURNRATE_TEST_SECRET", raising=False)
    assert read_secret(ENV_PATH, env="BURNRATE_TEST_SECRET", environ={"BURNRATE_TEST_SECRET": "a"})
    assert read_secret(ENV_PATH, env="V", environ={"V": "\tb \r\n"}) == "b"


def test_env_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BURNRATE_TEST_SECRET", raising=False)
    assert error_of(ENV_PATH, env="BURNRATE_TEST_SECRET") == (
        "$.x.token_env: environment variable BURNRATE_TEST_SECRET is not set"
    )


@pytest.mark.parametrize("value", ["", "   ", "\n\t"])
def test_env_empty_or_blank(value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BURNRATE_TEST_SECRET", value)
    assert error_of(ENV_PATH, env="BURNRATE_TEST_SECRET") == (
        "$.x.token_env: environment variable BURNRATE_TEST_SECRET is empty"
    )


def test_env_not_utf8(monkeypatch: pytest.MonkeyPatch) -> None:
    # How os.environ hands over bytes that are not UTF-8: lone surrogates.
    monkeypatch.setenv("BURNRATE_TEST_SECRET", os.fsdecode(SECRET.encode() + b"\xff"))
    assert error_of(ENV_PATH, env="BURNRATE_TEST_SECRET") == (
        "$.x.token_env: environment variable BURNRATE_TEST_SECRET is not UTF-8"
    )


# --- file ------------------------------------------------------------------------------


def test_file_content_is_stripped(tmp_path: Path) -> None:
    f = tmp_path / "secret"
    f.write_bytes(f"\n {SECRET}\r\n\n".encode())
    assert read_secret(FILE_PATH, file=str(f)) == SECRET


def test_inner_whitespace_is_kept_for_the_caller(tmp_path: Path) -> None:
    f = tmp_path / "secrets"
    f.write_text("one two\nthree\n")
    assert read_secret(FILE_PATH, file=str(f)) == "one two\nthree"


def test_file_missing(tmp_path: Path) -> None:
    f = tmp_path / "missing"
    assert error_of(FILE_PATH, file=str(f)) == (
        f"$.x.token_file: cannot read {f}: No such file or directory"
    )


def test_file_is_a_directory(tmp_path: Path) -> None:
    assert error_of(FILE_PATH, file=str(tmp_path)) == (
        f"$.x.token_file: cannot read {tmp_path}: Is a directory"
    )


def test_file_without_read_permission(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    f = tmp_path / "secret"
    f.write_text(SECRET)
    f.chmod(0)
    if os.geteuid() == 0:  # root reads a file whatever its mode: make the open refuse
        real_open = open

        def refusing_open(file: object, *args: object, **kwargs: object) -> object:
            if str(file) == str(f):
                raise PermissionError(13, "Permission denied", str(f))
            return real_open(file, *args, **kwargs)  # type: ignore[call-overload]

        monkeypatch.setattr("builtins.open", refusing_open)
    assert error_of(FILE_PATH, file=str(f)) == (
        f"$.x.token_file: cannot read {f}: Permission denied"
    )


@pytest.mark.parametrize("content", [b"", b"  \n\t\r\n"])
def test_file_empty_or_blank(content: bytes, tmp_path: Path) -> None:
    f = tmp_path / "secret"
    f.write_bytes(content)
    assert error_of(FILE_PATH, file=str(f)) == f"$.x.token_file: {f} is empty"


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(b"\xff\xfe" + SECRET.encode(), id="a byte order mark of UTF-16"),
        pytest.param(SECRET.encode("latin-1"), id="latin-1"),
        pytest.param(b"\x80", id="a lone continuation byte"),
    ],
)
def test_file_not_utf8(content: bytes, tmp_path: Path) -> None:
    f = tmp_path / "secret"
    f.write_bytes(content)
    line = error_of(FILE_PATH, file=str(f))
    assert line == f"$.x.token_file: cannot read {f}: not UTF-8"
    assert "\\x" not in line  # no byte of the secret quoted


def test_file_too_large_to_be_a_secret(tmp_path: Path) -> None:
    f = tmp_path / "big"
    f.write_bytes(b"a" * (MAX_SECRET_BYTES + 1))
    assert error_of(FILE_PATH, file=str(f)) == (
        f"$.x.token_file: cannot read {f}: larger than {MAX_SECRET_BYTES} bytes, not a secret"
    )
    f.write_bytes(b"a" * MAX_SECRET_BYTES)
    assert read_secret(FILE_PATH, file=str(f)) == "a" * MAX_SECRET_BYTES


def test_needs_exactly_one_source(tmp_path: Path) -> None:
    with pytest.raises(TypeError):
        read_secret(FILE_PATH)
    with pytest.raises(TypeError):
        read_secret(FILE_PATH, env="A", file=str(tmp_path / "x"))
