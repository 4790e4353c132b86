"""`burnrate token hash`: the SHA-256 of the token on stdin, as `http.tokens[].sha256`
expects it; empty or non-visible-ASCII input refused with exit 2 and one line."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest

from engine.adapters.http.tokens import load_tokens
from engine.core.config_io import Http, HttpToken

ROOT = Path(__file__).resolve().parents[3]


def token_hash(stdin: bytes) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "engine", "token", "hash"],
        input=stdin,
        capture_output=True,
        cwd=ROOT,
        check=False,
        timeout=60,
    )


def test_prints_the_sha256_the_config_takes() -> None:
    token = "f3e1-Deploy_token.value~42"
    proc = token_hash(f"  {token}\n".encode())
    assert proc.returncode == 0, proc.stderr
    digest = proc.stdout.decode().strip()
    assert digest == hashlib.sha256(token.encode()).hexdigest()
    assert proc.stderr == b""
    # and the config accepts it as the token's digest
    tokens = load_tokens(Http(tokens=[HttpToken(name="d", scopes=["read"], sha256=digest)]), {})
    assert tokens[0].digest == hashlib.sha256(token.encode()).digest()


@pytest.mark.parametrize(
    ("stdin", "message"),
    [
        (b"", "no token on stdin (it is empty or only whitespace)"),
        (b" \n\t\n", "no token on stdin (it is empty or only whitespace)"),
        (b"two words", "the token must be visible ASCII without spaces or control characters"),
        (b"bell\x07", "the token must be visible ASCII without spaces or control characters"),
        ("t\u00f6ken".encode(), "the token must be visible ASCII without spaces (not ASCII)"),
        (b"x" * 5000, "stdin holds more than 4096 bytes: not a token"),
    ],
)
def test_refuses_what_is_no_token(stdin: bytes, message: str) -> None:
    proc = token_hash(stdin)
    assert proc.returncode == 2
    assert proc.stdout == b""
    assert proc.stderr.decode() == f"burnrate token hash: {message}\n"
