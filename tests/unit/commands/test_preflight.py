"""engine.commands.preflight and the light validators it runs: every problem at once,
each by the function the service itself uses."""

from __future__ import annotations

import base64
import sqlite3
from pathlib import Path

import pytest

from engine.adapters.alerts.receivers import (
    load_routing_key,
    load_secrets,
    receiver_errors,
    receiver_urls,
)
from engine.adapters.kafka.settings import bootstrap_problem, kafka_client_kwargs
from engine.cli import main
from engine.commands.preflight import adapter_errors, load_checked_config
from engine.core.config import (
    AlertmanagerReceiver,
    Config,
    ConsoleReceiver,
    Http,
    Kafka,
    KafkaSecurity,
    PagerDutyReceiver,
    Slo,
    WebhookReceiver,
)
from engine.core.taxonomy import SliKind
from engine.errors import ConfigError

SLO = Slo(name="a", service="s", sli=SliKind.AVAILABILITY, objective=99)
GOOD_SECRET = "whsec_" + base64.b64encode(b"k" * 32).decode()
SHORT_SECRET = "whsec_" + base64.b64encode(b"k" * 8).decode()


@pytest.fixture(autouse=True)
def _no_test_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("BURNRATE_T_UNSET", "BURNRATE_T_UNSET_2"):
        monkeypatch.delenv(name, raising=False)


def test_a_valid_config_has_no_adapter_errors() -> None:
    assert adapter_errors(Config(slos=[SLO], receivers=[ConsoleReceiver()])) == []


def test_every_adapter_problem_is_reported_at_once(tmp_path: Path) -> None:
    config = Config(
        slos=[SLO],
        http=Http(listen="127.0.0.1:99999", auth_token_file=str(tmp_path / "missing")),
        kafka=Kafka(
            bootstrap_servers="k:1,,k:2",
            security=KafkaSecurity(
                protocol="SASL_SSL",
                ssl_cafile=str(tmp_path / "missing.pem"),
                sasl_username="u",
                sasl_password_env="BURNRATE_T_UNSET",
            ),
        ),
        receivers=[
            ConsoleReceiver(),
            WebhookReceiver(urls=["ftp://a", "http://ok"], secret_env="BURNRATE_T_UNSET_2"),
            AlertmanagerReceiver(url="am:9093"),
            PagerDutyReceiver(url="events.pagerduty.com", routing_key_env="BURNRATE_T_UNSET"),
        ],
    )
    assert [line.split(": ")[0] for line in adapter_errors(config)] == [
        "$.http.listen",
        "$.http.auth_token_file",
        "$.kafka.bootstrap_servers",
        "$.kafka.security.ssl_cafile",
        "$.kafka.security.sasl_password_env",
        "$.receivers[1].urls[0]",
        "$.receivers[1].secret_env",
        "$.receivers[2].url",
        "$.receivers[3].url",
        "$.receivers[3].routing_key_env",
    ]


def test_load_checked_config_reports_document_and_adapter_problems_together(
    tmp_path: Path,
) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(
        "slos:\n  - {name: a, service: s, sli: availability, objective: 100}\n"
        "http: {listen: nope}\n"
    )
    with pytest.raises(ConfigError) as info:
        load_checked_config(path)
    assert info.value.errors == [
        "$.slos[0].objective: must be > 0 and < 100 (percent), got 100.0",
        "$.http.listen: expected HOST:PORT, got 'nope'",
    ]


def test_a_document_that_does_not_decode_stops_there(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("slos: [\n")
    with pytest.raises(ConfigError) as info:
        load_checked_config(path)
    [line] = info.value.errors
    assert line.startswith("$: not valid YAML")


def test_a_line_found_twice_is_reported_once(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(
        "slos:\n  - {name: a, service: s, sli: availability, objective: 99}\n"
        "receivers:\n  - {type: webhook}\n"
    )
    with pytest.raises(ConfigError) as info:
        load_checked_config(path)
    assert info.value.errors == ["$.receivers[0]: needs url or urls"]


# -- receivers ----------------------------------------------------------------------------


def test_load_secrets_reports_every_source_and_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BURNRATE_T_SECRETS", f"{GOOD_SECRET} {SHORT_SECRET} whsec_!!")
    rcv = WebhookReceiver(
        url="http://x", secret_env="BURNRATE_T_SECRETS", secret_file=str(tmp_path / "missing")
    )
    with pytest.raises(ConfigError) as info:
        load_secrets(rcv, "$.receivers[0]")
    assert [line.split(": ")[:2] for line in info.value.errors] == [
        ["$.receivers[0].secret_env", "secret #2"],
        ["$.receivers[0].secret_env", "secret #3"],
        ["$.receivers[0].secret_file", f"cannot read {tmp_path / 'missing'}"],
    ]
    assert GOOD_SECRET not in str(info.value)


def test_load_secrets_gives_every_key_in_order(tmp_path: Path) -> None:
    other = "whsec_" + base64.b64encode(b"o" * 24).decode()
    secret_file = tmp_path / "s"
    secret_file.write_text(f"{GOOD_SECRET}\n{other}\n")
    keys = load_secrets(WebhookReceiver(url="http://x", secret_file=str(secret_file)), "$.r")
    assert keys == [b"k" * 32, b"o" * 24]


def test_receiver_urls_reports_every_bad_url_and_keeps_the_good_ones_once() -> None:
    rcv = AlertmanagerReceiver(url="http://a", urls=["http://a", "x", "http://b", "ftp://c"])
    with pytest.raises(ConfigError) as info:
        receiver_urls(rcv, "$.r")
    assert [line.split(": ")[0] for line in info.value.errors] == ["$.r.urls[1]", "$.r.urls[3]"]
    assert receiver_urls(AlertmanagerReceiver(url="http://a", urls=["http://a"]), "$.r") == [
        "http://a"
    ]


def test_receivers_without_urls_are_left_to_the_config_check() -> None:
    assert receiver_errors(Config(slos=[SLO], receivers=[WebhookReceiver()])) == []


# -- Kafka ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "servers",
    ["localhost:9092", "a:1,b:2", " a:1 , b:2 ", "[::1]:9092", "[::1]", "::1", "broker", "h:65535"],
)
def test_usable_bootstrap_lists(servers: str) -> None:
    assert bootstrap_problem(servers) is None


@pytest.mark.parametrize(
    ("servers", "problem"),
    [
        ("", "no broker given"),
        (" , ", "no broker given"),
        ("a:1,,b:2", "an empty entry in 'a:1,,b:2'"),
        ("a:1,", "an empty entry"),
        (":9092", "no host in ':9092'"),
        ("h:99999", "the port of 'h:99999' is not a number from 1 to 65535"),
        ("h:0", "the port of 'h:0' is not"),
        ("h:abc", "the port of 'h:abc' is not"),
        ("h:\u0663", "the port of"),
        ("[::1]x", "expected [IPv6]:PORT"),
        ("[::1]:", "the port of '[::1]:' is not"),
    ],
)
def test_unusable_bootstrap_lists(servers: str, problem: str) -> None:
    found = bootstrap_problem(servers)
    assert found is not None
    assert found.startswith(problem)


def test_kafka_client_kwargs_reports_brokers_tls_and_sasl_together(tmp_path: Path) -> None:
    kafka = Kafka(
        bootstrap_servers="h:99999",
        security=KafkaSecurity(
            protocol="SASL_SSL",
            ssl_cafile=str(tmp_path / "ca.pem"),
            sasl_username="u",
            sasl_password_file=str(tmp_path / "pw"),
        ),
    )
    with pytest.raises(ConfigError) as info:
        kafka_client_kwargs(kafka)
    assert [line.split(": ")[0] for line in info.value.errors] == [
        "$.kafka.bootstrap_servers",
        "$.kafka.security.ssl_cafile",
        "$.kafka.security.sasl_password_file",
    ]


def test_a_calendar_period_in_an_unknown_zone_is_reported_with_the_rest(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(
        "slos:\n"
        "  - {name: a, service: s, sli: availability, objective: 99,\n"
        "     period: {calendar: month, time_zone: Europe/Atlantis}}\n"
        "http: {listen: nope}\n"
    )
    with pytest.raises(ConfigError) as info:
        load_checked_config(path)
    assert info.value.errors == [
        "$.slos[0].period.time_zone: unknown time zone 'Europe/Atlantis' "
        "(an IANA name, e.g. Europe/Berlin)",
        "$.http.listen: expected HOST:PORT, got 'nope'",
    ]


# -- PagerDuty routing keys ----------------------------------------------------------------


def test_a_routing_key_comes_from_env_or_file_and_is_never_in_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = "R0UTINGKEY0123456789abcdefABCDEF"
    monkeypatch.setenv("BURNRATE_T_PD", f"  {key}\n")
    (tmp_path / "pd").write_text(key + "\n")
    assert load_routing_key(PagerDutyReceiver(routing_key_env="BURNRATE_T_PD"), "$.r") == key
    from_file = PagerDutyReceiver(routing_key_file=str(tmp_path / "pd"))
    assert load_routing_key(from_file, "$.r") == key

    monkeypatch.setenv("BURNRATE_T_PD", f"{key} {key}")
    (tmp_path / "empty").write_text("\n")
    problems = [
        (PagerDutyReceiver(routing_key_env="BURNRATE_T_PD"), "$.r.routing_key_env: must hold one"),
        (PagerDutyReceiver(routing_key_env="BURNRATE_T_UNSET"), "$.r.routing_key_env: environment"),
        (PagerDutyReceiver(routing_key_file=str(tmp_path / "empty")), "$.r.routing_key_file: "),
        (PagerDutyReceiver(routing_key_file=str(tmp_path / "no")), "$.r.routing_key_file: cannot"),
    ]
    for rcv, start in problems:
        with pytest.raises(ConfigError) as info:
            load_routing_key(rcv, "$.r")
        [line] = info.value.errors
        assert line.startswith(start)
        assert key not in line


INCIDENT_SLOS = "slos:\n  - {name: a1, service: a, sli: availability, objective: 99}\n"


def test_check_opens_the_store_read_only(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "i.db"
    config = tmp_path / "c.yaml"
    config.write_text(INCIDENT_SLOS + f"incidents: {{path: '{db}'}}\n")
    assert main(["check", str(config)]) == 0
    assert not db.exists()  # a check writes nothing

    future = sqlite3.connect(db)
    future.execute("PRAGMA user_version = 99")
    future.close()
    before = db.read_bytes()
    assert main(["check", str(config)]) == 2
    assert capsys.readouterr().err == (
        f"{config}: $.incidents.path: incident store {db}: schema version 99 was written by a "
        "newer burnrate (this one knows up to 1); it is left as it is\n"
    )
    assert db.read_bytes() == before

    (tmp_path / "c2.yaml").write_text(INCIDENT_SLOS + "incidents: {path: /nonexistent/dir/i.db}\n")
    assert main(["check", str(tmp_path / "c2.yaml")]) == 2
    assert "its directory /nonexistent/dir does not exist" in capsys.readouterr().err
