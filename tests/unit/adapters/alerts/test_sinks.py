"""Wiring the sinks: build_sinks from the receivers config, collect_stats over them."""

from __future__ import annotations

import base64
import io
import time
from pathlib import Path
from typing import Any

import pytest

from engine.adapters.alerts.alertmanager import AlertmanagerSink
from engine.adapters.alerts.console import ConsoleSink, format_transition
from engine.adapters.alerts.http_sink import OUTCOMES
from engine.adapters.alerts.pagerduty import PagerDutySink
from engine.adapters.alerts.sinks import Sink, build_sinks, collect_stats
from engine.adapters.alerts.webhook import WebhookSink
from engine.core.config import (
    AlertmanagerReceiver,
    Config,
    ConsoleReceiver,
    PagerDutyReceiver,
    PagerDutySeverity,
    WebhookReceiver,
)
from engine.errors import ConfigError
from tests.unit.adapters.alerts.factories import (
    EXTERNAL,
    SLO,
    SLOS,
    T0,
    FixedClock,
    firing,
    new_secret,
)

# -- build_sinks ----------------------------------------------------------------------


def test_build_sinks_makes_one_sink_per_url_and_collects_their_stats(tmp_path: Path) -> None:
    secret_file = tmp_path / "secret"
    secret_file.write_text(new_secret() + "\n")
    config = Config(
        slos=[SLO],
        receivers=[
            WebhookReceiver(
                url="https://user:pw@hooks.example/T0/B0/SECRET?token=x",
                urls=["http://b.example:8080/x"],
                secret_file=str(secret_file),
                timeout="20s",
            ),
            AlertmanagerReceiver(urls=["http://am1:9093", "http://am2:9093/"]),
            ConsoleReceiver(),
        ],
    )
    sinks = build_sinks(config, EXTERNAL, clock=FixedClock())
    assert [type(s).__name__ for s in sinks] == [
        "WebhookSink",
        "WebhookSink",
        "AlertmanagerSink",
        "AlertmanagerSink",
        "ConsoleSink",
    ]
    webhook, _, am1, _, _ = sinks
    assert isinstance(webhook, WebhookSink)
    assert webhook.signed
    assert webhook.timeout_s == 20
    assert isinstance(am1, AlertmanagerSink)
    assert am1.url == "http://am1:9093/api/v2/alerts"
    assert (am1.resend_interval_s, am1.horizon_s) == (60, 240)
    stats = collect_stats(sinks)
    receivers = {receiver for receiver, _ in stats}
    # Credentials in user info, path or query never reach a metric label.
    assert receivers == {
        "https://hooks.example",
        "http://b.example:8080",
        "http://am1:9093",
        "http://am2:9093",
    }
    assert set(stats.values()) == {0}
    assert len(stats) == 4 * 4


def test_build_sinks_makes_one_pagerduty_sink_per_entry_named_and_keyed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key_a, key_b = "A" * 32, "B" * 32
    monkeypatch.setenv("BURNRATE_TEST_PD_KEY", key_a)
    (tmp_path / "pd").write_text(key_b + "\n")
    config = Config(
        slos=[SLO],
        receivers=[
            PagerDutyReceiver(name="payments-oncall", routing_key_env="BURNRATE_TEST_PD_KEY"),
            PagerDutyReceiver(
                routing_key_file=str(tmp_path / "pd"),
                severities=["ticket"],
                severity_map=PagerDutySeverity(ticket="info"),
                timeout="3s",
            ),
            ConsoleReceiver(name="stdout"),
        ],
    )
    oncall, tickets, console = build_sinks(config, EXTERNAL, clock=FixedClock())
    assert isinstance(oncall, PagerDutySink)
    assert isinstance(tickets, PagerDutySink)
    assert isinstance(console, ConsoleSink)
    assert (oncall.name, tickets.name, console.name) == ("payments-oncall", None, "stdout")
    assert oncall.url == tickets.url == "https://events.pagerduty.com/v2/enqueue"
    assert oncall.accepts(firing())
    assert oncall.accepts(firing(severity="ticket"))
    assert not tickets.accepts(firing())
    assert tickets.accepts(firing(severity="ticket"))
    assert tickets.severity_map.of("ticket") == "info"
    assert tickets.timeout_s == 3
    # Two services behind one URL keep their undelivered events apart after a restart.
    assert oncall.identity != tickets.identity
    assert {receiver for receiver, _ in collect_stats([oncall, tickets])} == {
        "payments-oncall",
        "https://events.pagerduty.com",
    }
    for key in (key_a, key_b):
        for text in (repr(oncall), repr(tickets), oncall.identity, tickets.identity):
            assert key not in text


@pytest.mark.parametrize(
    ("receiver_config", "message"),
    [
        (WebhookReceiver(url="ftp://x"), r"\$\.receivers\[0\]\.url: must be an absolute"),
        (WebhookReceiver(urls=["/relative"]), r"\$\.receivers\[0\]\.urls\[0\]"),
        (
            WebhookReceiver(url="http://x", secret_env="BURNRATE_TEST_UNSET_SECRET"),
            r"secret_env: environment variable BURNRATE_TEST_UNSET_SECRET is not set",
        ),
        (
            WebhookReceiver(url="http://x", secret_file="/nonexistent/secret"),
            r"secret_file: cannot read /nonexistent/secret",
        ),
        (
            WebhookReceiver(url="http://x", secret_env="BURNRATE_TEST_SHORT_SECRET"),
            r"secret_env: secret #1: webhook secret is too short",
        ),
        (AlertmanagerReceiver(url="http://am", resend_interval="0s"), r"resend_interval"),
        (
            PagerDutyReceiver(routing_key_env="BURNRATE_TEST_UNSET_SECRET"),
            r"\$\.receivers\[0\]\.routing_key_env: environment variable",
        ),
        (
            PagerDutyReceiver(url="pagerduty", routing_key_env="BURNRATE_TEST_SHORT_SECRET"),
            r"\$\.receivers\[0\]\.url: must be an absolute",
        ),
    ],
)
def test_build_sinks_reports_bad_receivers_with_their_path(
    receiver_config: Any, message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("BURNRATE_TEST_UNSET_SECRET", raising=False)
    monkeypatch.setenv("BURNRATE_TEST_SHORT_SECRET", "whsec_" + base64.b64encode(b"x" * 8).decode())
    with pytest.raises(ConfigError, match=message):
        build_sinks(Config(slos=[SLO], receivers=[receiver_config]), EXTERNAL, clock=time.time)


@pytest.mark.parametrize(
    ("receiver_config", "error"),
    [
        (WebhookReceiver(), "$.receivers[1]: needs url or urls"),
        (AlertmanagerReceiver(), "$.receivers[1]: needs url or urls"),
        (WebhookReceiver(url="http://x", timeout="0s"), "$.receivers[1].timeout: must be longer"),
        (AlertmanagerReceiver(urls=["http://am", "am:9093"]), "$.receivers[1].urls[1]: must be"),
    ],
)
def test_build_sinks_names_the_receiver_that_is_wrong(receiver_config: Any, error: str) -> None:
    config = Config(slos=[SLO], receivers=[ConsoleReceiver(), receiver_config])
    with pytest.raises(ConfigError) as info:
        build_sinks(config, EXTERNAL, clock=time.time)
    [line] = info.value.errors
    assert line.startswith(error)


def test_a_url_given_twice_gets_one_sink() -> None:
    config = Config(
        slos=[SLO],
        receivers=[
            WebhookReceiver(url="http://a.example/x", urls=["http://a.example/x", "http://b/y"]),
            AlertmanagerReceiver(urls=["http://am:9093", "http://am:9093"]),
        ],
    )
    sinks = build_sinks(config, EXTERNAL, clock=time.time)
    assert [s.url for s in sinks if isinstance(s, WebhookSink | AlertmanagerSink)] == [
        "http://a.example/x",
        "http://b/y",
        "http://am:9093/api/v2/alerts",
    ]


def test_no_receivers_no_sinks_and_no_secret_no_signing() -> None:
    assert build_sinks(Config(slos=[SLO]), EXTERNAL, clock=time.time) == []
    [sink] = build_sinks(
        Config(slos=[SLO], receivers=[WebhookReceiver(url="http://x")]), EXTERNAL, clock=time.time
    )
    assert isinstance(sink, WebhookSink)
    assert not sink.signed
    assert sink.timeout_s == 15  # the config's default


@pytest.mark.asyncio
async def test_console_sinks_write_to_the_stream_given() -> None:
    out = io.StringIO()
    config = Config(slos=[SLO], receivers=[ConsoleReceiver(), ConsoleReceiver()])
    sinks = build_sinks(config, EXTERNAL, clock=time.time, stream=out)
    assert [type(s) for s in sinks] == [ConsoleSink, ConsoleSink]
    for sink in sinks:
        await sink.deliver(firing())
    assert out.getvalue() == (format_transition(firing()) + "\n") * 2


# -- collect_stats --------------------------------------------------------------------


class Counted:
    """A sink that only counts: enough for collect_stats."""

    def __init__(self, counts: dict[tuple[str, str], int]) -> None:
        self.counts = counts

    async def start(self) -> None:
        return None

    async def deliver(self, tr: Any) -> None:
        return None

    async def close(self, timeout_s: float) -> None:
        return None

    def stats(self) -> dict[tuple[str, str], int]:
        return dict(self.counts)


def test_collect_stats_of_nothing_is_empty() -> None:
    assert collect_stats([]) == {}
    assert collect_stats([ConsoleSink(io.StringIO())]) == {}


def test_collect_stats_sums_where_keys_meet_and_sorts_the_keys() -> None:
    sinks: list[Sink] = [
        Counted({("http://b", "delivered"): 2, ("http://a", "failed"): 1}),
        ConsoleSink(io.StringIO()),
        Counted({("http://b", "delivered"): 3, ("http://b", "retried"): 4}),
        Counted({("http://a", "delivered"): 0}),
    ]
    stats = collect_stats(sinks)
    assert stats == {
        ("http://a", "delivered"): 0,
        ("http://a", "failed"): 1,
        ("http://b", "delivered"): 5,
        ("http://b", "retried"): 4,
    }
    assert list(stats) == sorted(stats)


def test_collect_stats_keeps_a_zero_count_so_every_series_exists_from_the_start() -> None:
    sinks = [
        WebhookSink("http://hooks.example/a", SLOS, external_url=EXTERNAL, clock=FixedClock()),
        WebhookSink("http://hooks.example/b", SLOS, external_url=EXTERNAL, clock=FixedClock()),
    ]
    assert collect_stats(sinks) == {("http://hooks.example", o): 0 for o in sorted(OUTCOMES)}


def test_collect_stats_adds_up_sinks_that_share_a_receiver_label() -> None:
    # Two paths of one host: the label is the origin, so their counts add up.
    a = WebhookSink(
        "http://hooks.example/a", SLOS, external_url=EXTERNAL, clock=FixedClock(), queue_size=1
    )
    b = WebhookSink(
        "http://hooks.example/b", SLOS, external_url=EXTERNAL, clock=FixedClock(), queue_size=1
    )
    for sink, n in ((a, 3), (b, 2)):  # not started: the first is queued, the rest dropped
        for i in range(n):
            sink.enqueue(firing(at=1_700_000_000.0 + i))
    b.enqueue(firing(slo="unknown"))
    stats = collect_stats([a, b])
    assert stats[("http://hooks.example", "dropped_queue_full")] == 2 + 1
    assert stats[("http://hooks.example", "failed")] == 1
    assert stats[("http://hooks.example", "delivered")] == 0
    assert list(stats) == sorted(stats)


def test_a_pagerduty_sink_restores_and_announces_only_the_severities_it_takes() -> None:
    def sink(severities: list[Any]) -> PagerDutySink:
        return PagerDutySink(
            SLOS,
            routing_key="K" * 32,
            external_url=EXTERNAL,
            clock=FixedClock(),
            severities=severities,
        )

    both = sink(["page", "ticket"])
    both.enqueue(firing())
    both.enqueue(firing(severity="ticket"))
    state = both.delivery_state()
    assert [job.tr.severity for job in state.queued] == ["page", "ticket"]
    # After a restart with a config that sends it tickets only:
    tickets = sink(["ticket"])
    assert tickets.restore(state, [firing(at=T0 + 1)], [firing(), firing(severity="ticket")]) == 1
    assert [job.tr.severity for job in tickets.delivery_state().queued] == ["ticket"]
