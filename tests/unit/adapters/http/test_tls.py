"""`http.tls` loaded into the server's SSLContext (engine.adapters.http.tls): the good case,
and one clear `$.http.tls.<field>` line for each file problem; `burnrate check` reports
them as `run` would. Handshakes over real sockets are tests/integration/test_https.py."""

from __future__ import annotations

import ssl
import subprocess
import sys
from pathlib import Path

import pytest

from engine.adapters.http.tls import server_ssl_context
from engine.core.config_io import HttpTls
from engine.errors import ConfigError
from tests.certs import CA

ROOT = Path(__file__).resolve().parents[4]


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> tuple[CA, CA, Path]:
    d = tmp_path_factory.mktemp("pki")
    return CA(d, "ca one"), CA(d, "ca two"), d


def errors_of(tls: HttpTls) -> list[str]:
    with pytest.raises(ConfigError) as info:
        server_ssl_context(tls)
    return info.value.errors


def test_a_certificate_and_its_key_make_a_server_context(pki: tuple[CA, CA, Path]) -> None:
    ca, _, _ = pki
    server = ca.issue("server-ok", server=True)
    ctx = server_ssl_context(
        HttpTls(cert_file=str(server.cert_file), key_file=str(server.key_file))
    )
    assert ctx.verify_mode == ssl.CERT_NONE
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2
    mtls = server_ssl_context(
        HttpTls(
            cert_file=str(server.cert_file),
            key_file=str(server.key_file),
            client_ca_file=str(ca.cert_file),
        )
    )
    assert mtls.verify_mode == ssl.CERT_REQUIRED


def test_file_problems_name_their_field(pki: tuple[CA, CA, Path]) -> None:
    ca, other, d = pki
    server = ca.issue("server-a", server=True)
    stranger = other.issue("server-b", server=True)
    garbage = d / "garbage.pem"
    garbage.write_text("not a certificate\n")
    missing = str(d / "missing.pem")
    cert, key = str(server.cert_file), str(server.key_file)
    assert errors_of(HttpTls(cert_file=missing, key_file=missing)) == [
        f"$.http.tls.cert_file: cannot read {missing}: No such file or directory",
        f"$.http.tls.key_file: cannot read {missing}: No such file or directory",
    ]
    assert errors_of(HttpTls(cert_file=str(garbage), key_file=key)) == [
        f"$.http.tls.cert_file: {garbage} holds no PEM certificate"
    ]
    assert errors_of(HttpTls(cert_file=cert, key_file=cert)) == [
        f"$.http.tls.key_file: {cert} holds no PEM private key"
    ]
    mismatched = str(stranger.key_file)
    assert errors_of(HttpTls(cert_file=cert, key_file=mismatched)) == [
        f"$.http.tls.key_file: {mismatched} is not the key of the certificate in {cert}"
    ]
    assert errors_of(HttpTls(cert_file=cert, key_file=key, client_ca_file=str(garbage))) == [
        f"$.http.tls.client_ca_file: {garbage} holds no PEM certificate"
    ]


def test_an_encrypted_key_is_refused_at_once_never_prompted_for(pki: tuple[CA, CA, Path]) -> None:
    ca, _, _ = pki
    locked = ca.issue("server-locked", server=True, password=b"pass-phrase")
    assert errors_of(HttpTls(cert_file=str(locked.cert_file), key_file=str(locked.key_file))) == [
        f"$.http.tls.key_file: {locked.key_file} is encrypted; give the key unencrypted "
        "(readable by the service's user only)"
    ]


def test_burnrate_check_reports_a_mismatched_key(pki: tuple[CA, CA, Path], tmp_path: Path) -> None:
    ca, other, _ = pki
    server = ca.issue("server-c", server=True)
    stranger = other.issue("server-d", server=True)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "slos: [{name: a, service: a, sli: availability, objective: 99}]\n"
        f"http: {{tls: {{cert_file: '{server.cert_file}', key_file: '{stranger.key_file}'}}}}\n"
    )
    proc = subprocess.run(
        [sys.executable, "-m", "engine", "check", str(cfg)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
        timeout=60,
    )
    assert proc.returncode == 2
    assert f"$.http.tls.key_file: {stranger.key_file} is not the key of the certificate" in (
        proc.stderr
    )
