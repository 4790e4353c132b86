"""`http.tokens` and the legacy token read and checked (engine.adapters.http.tokens): every
problem with its `$.http.tokens[i].field` path, duplicates refused, a pasted token never
echoed; `burnrate check` reports the same lines."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest

from engine.adapters.http.tokens import DEFAULT_TOKEN_NAME, SCOPES, ApiToken, load_tokens
from engine.core.config import parse_config
from engine.core.config_io import Http, HttpToken
from engine.errors import ConfigError

ROOT = Path(__file__).resolve().parents[4]


def sha(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def errors_of(http: Http, environ: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_tokens(http, environ or {})
    return info.value.errors


def test_no_token_means_an_open_api() -> None:
    assert load_tokens(Http(), {}) == []


def test_named_tokens_with_their_scopes_and_the_legacy_token_as_default() -> None:
    http = Http(
        auth_token_env="T",
        tokens=[
            HttpToken(name="deployer", scopes=["read", "operate"], sha256=sha("dep")),
            HttpToken(name="prometheus", scopes=["read"], sha256=sha("prom").upper()),
        ],
    )
    got = load_tokens(http, {"T": "legacy-token"})
    assert got == [
        ApiToken(DEFAULT_TOKEN_NAME, bytes.fromhex(sha("legacy-token")), frozenset(SCOPES)),
        ApiToken("deployer", bytes.fromhex(sha("dep")), frozenset({"read", "operate"})),
        ApiToken("prometheus", bytes.fromhex(sha("prom")), frozenset({"read"})),
    ]
    assert "digest" not in repr(got[1])
    assert sha("dep") not in repr(got[1])


def test_every_problem_of_every_entry_is_reported_with_its_path() -> None:
    pasted = "my-Secret-token-pasted-here"
    http = Http(
        tokens=[
            HttpToken(name="Deployer!", scopes=[], sha256=pasted),
            HttpToken(name="ci", scopes=["read", "write", "read"], sha256=sha("ci")),
            HttpToken(name="ci", scopes=["admin"], sha256=sha("other")),
            HttpToken(name="ci2", scopes=["read"], sha256=sha("ci")),
        ]
    )
    errors = errors_of(http)
    assert errors == [
        "$.http.tokens[0].name: 1 to 64 lowercase letters, digits, '.', '_' or '-', "
        "got 'Deployer!'",
        "$.http.tokens[0].scopes: give at least one of read, operate, admin",
        "$.http.tokens[0].sha256: must be the 64 hex digits of the token's SHA-256 "
        f"(`burnrate token hash` prints it), got {len(pasted)} characters",
        "$.http.tokens[1].scopes[1]: unknown scope 'write' (expected read, operate, admin)",
        "$.http.tokens[1].scopes[2]: 'read' is listed twice",
        "$.http.tokens[2].name: duplicate token name 'ci' (first at $.http.tokens[1])",
        "$.http.tokens[3].sha256: the same token as $.http.tokens[1] (one token, one name)",
    ]
    assert pasted not in "\n".join(errors)


def test_the_legacy_token_clashes_with_a_named_one_by_name_and_by_digest() -> None:
    http = Http(
        auth_token_env="T",
        tokens=[
            HttpToken(name="default", scopes=["read"], sha256=sha("x")),
            HttpToken(name="again", scopes=["read"], sha256=sha("legacy")),
        ],
    )
    assert errors_of(http, {"T": "legacy"}) == [
        "$.http.tokens[0].name: duplicate token name 'default' (first at $.http.auth_token_env)",
        "$.http.tokens[1].sha256: the same token as $.http.auth_token_env (one token, one name)",
    ]


def test_a_legacy_problem_and_an_entry_problem_come_together() -> None:
    http = Http(auth_token_env="UNSET", tokens=[HttpToken(name="a", scopes=["x"], sha256="00")])
    assert errors_of(http) == [
        "$.http.auth_token_env: environment variable UNSET is not set",
        "$.http.tokens[0].scopes[0]: unknown scope 'x' (expected read, operate, admin)",
        "$.http.tokens[0].sha256: must be the 64 hex digits of the token's SHA-256 "
        "(`burnrate token hash` prints it), got 2 characters",
    ]


def test_the_document_refuses_unknown_token_fields() -> None:
    with pytest.raises(ConfigError, match=r"\$\.http\.tokens\[0\]"):
        parse_config(
            "slos: [{name: a, service: a, sli: availability, objective: 99}]\n"
            "http: {tokens: [{name: a, scopes: [read], sha256: x, token: y}]}\n"
        )


def test_burnrate_check_reports_token_problems_as_run_would(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "slos: [{name: a, service: a, sli: availability, objective: 99}]\n"
        "http:\n"
        "  tokens:\n"
        f"    - {{name: ok, scopes: [read], sha256: {sha('a')}}}\n"
        f"    - {{name: ok, scopes: [reed], sha256: {sha('b')}}}\n"
    )
    proc = subprocess.run(
        [sys.executable, "-m", "engine", "check", str(cfg)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
        timeout=60,
    )
    assert proc.returncode == 2, proc.stderr
    assert "$.http.tokens[1].name: duplicate token name 'ok'" in proc.stderr
    assert "$.http.tokens[1].scopes[0]: unknown scope 'reed'" in proc.stderr


def test_the_connection_limits_come_from_the_config() -> None:
    from engine.adapters.http.server import HttpLimits

    cfg = parse_config(
        "slos: [{name: a, service: a, sli: availability, objective: 99}]\n"
        "http: {max_connections: 1000, idle_timeout: 1m, header_timeout: 2500ms}\n"
    )
    assert HttpLimits.from_config(cfg.http) == HttpLimits(
        idle_timeout_s=60.0, header_timeout_s=2.5, max_connections=1000
    )
    assert HttpLimits.from_config(Http()) == HttpLimits()


def test_limits_out_of_range_are_config_errors() -> None:
    slos = "slos: [{name: a, service: a, sli: availability, objective: 99}]\n"
    with pytest.raises(ConfigError) as info:
        parse_config(slos + "http: {idle_timeout: 0s, header_timeout: 50ms}\n")
    assert info.value.errors == [
        "$.http.idle_timeout: must be at least 100ms, got 0s",
        "$.http.header_timeout: must be at least 100ms, got 50ms",
    ]
    with pytest.raises(ConfigError, match=r"\$\.http\.max_connections"):
        parse_config(slos + "http: {max_connections: 0}\n")
