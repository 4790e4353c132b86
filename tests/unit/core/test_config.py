"""Configuration: the example parses, every mistake is reported with its `$.path`."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest

from engine.core.config import (
    DEFAULT_POLICY,
    MAX_WINDOW_MEMORY_BYTES,
    AlertmanagerReceiver,
    ConsoleReceiver,
    PagerDutyReceiver,
    PagerDutySeverity,
    PolicyRow,
    Slo,
    WebhookReceiver,
    config_errors,
    decode_config,
    format_bytes,
    load_config,
    parse_config,
)
from engine.core.evaluator import Evaluator
from engine.core.taxonomy import SliKind
from engine.errors import BurnrateError, ConfigError

EXAMPLE = Path(__file__).resolve().parents[3] / "configs" / "example.yaml"
DAY_S = 86_400

Doc = dict[str, Any]


def _base() -> Doc:
    """Three valid SLOs (indices 0..2), so errors can be pinned to `$.slos[2]`."""
    return {
        "slos": [
            {
                "name": "api-availability",
                "service": "api",
                "sli": "availability",
                "objective": 99.9,
            },
            {
                "name": "api-latency",
                "service": "api",
                "sli": "latency",
                "threshold_ms": 300,
                "objective": 99,
            },
            {
                "name": "orders-availability",
                "service": "orders",
                "operation": "POST /orders",
                "sli": "availability",
                "objective": 99.5,
            },
        ]
    }


def _yaml(doc: Doc) -> bytes:
    return msgspec.yaml.encode(doc)


def _errors(data: bytes | str, fmt: str = "yaml") -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(data, fmt=fmt)  # type: ignore[arg-type]
    return info.value.errors


def _set(path: str, value: Any) -> Callable[[Doc], None]:
    """A mutation of the base document: `slos.2.objective` = value."""

    def apply(doc: Doc) -> None:
        *parents, last = path.split(".")
        node: Any = doc
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node.setdefault(key, {})
        if isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value

    return apply


def _drop(path: str) -> Callable[[Doc], None]:
    def apply(doc: Doc) -> None:
        *parents, last = path.split(".")
        node: Any = doc
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node[key]
        del node[last]

    return apply


def _policy(*rows: Doc) -> Callable[[Doc], None]:
    return _set("policy", list(rows))


# --- the valid example -------------------------------------------------------------------


def test_the_example_config_parses() -> None:
    cfg = load_config(EXAMPLE)
    assert [s.name for s in cfg.slos] == [
        "checkout-availability",
        "checkout-latency",
        "catalog-availability",
        "ledger-availability",
    ]
    checkout, latency, catalog, ledger = cfg.slos
    assert checkout.operation == "POST /orders"
    assert checkout.labels == {"team": "payments", "tier": "1"}
    assert latency.sli is SliKind.LATENCY
    assert latency.threshold_ms == 300
    assert catalog.matches_operation("GET /products/238")
    assert ledger.period_s == 28 * DAY_S
    assert checkout.period_s == 30 * DAY_S
    assert [(r.severity, r.long_s, r.short_s) for r in cfg.policy] == [
        ("page", 3600, 300),
        ("page", 6 * 3600, 1800),
        ("ticket", DAY_S, 2 * 3600),
        ("ticket", 3 * DAY_S, 6 * 3600),
    ]
    assert cfg.kafka.dead_letter_topic == "request-events-dlq"
    assert cfg.receivers == [ConsoleReceiver()]


def test_the_example_spells_out_the_default_policy() -> None:
    assert load_config(EXAMPLE).policy == list(DEFAULT_POLICY)


def test_a_minimal_config_gets_every_default() -> None:
    cfg = parse_config(_yaml(_base()))
    assert cfg.policy == list(DEFAULT_POLICY)
    assert cfg.receivers == []
    assert cfg.kafka.topics == ["request-events"]
    assert cfg.kafka.format == "json"
    assert cfg.kafka.session_timeout == "10s"
    assert cfg.evaluation.tick_s == 10
    assert cfg.evaluation.for_s == 0
    assert cfg.evaluation.keep_firing_for_s == 0
    assert cfg.evaluation.min_events == 0


def test_percent_is_converted_to_ratios_once_at_the_edge() -> None:
    slo = parse_config(_yaml(_base())).slos[0]
    assert slo.objective == 99.9
    assert slo.objective_ratio == pytest.approx(0.999)
    assert slo.error_budget_ratio == pytest.approx(0.001)
    assert slo.period == "30d"
    assert slo.period_s == 30 * DAY_S


def test_a_pagerduty_receiver_defaults_to_every_severity_at_the_events_api() -> None:
    doc = _base()
    doc["receivers"] = [
        {"type": "pagerduty", "name": "oncall", "routing_key_file": "/run/secrets/pd"},
        {
            "type": "pagerduty",
            "routing_key_env": "PD_TICKETS",
            "url": "http://pd-proxy:8080/v2/enqueue",
            "severities": ["ticket"],
            "severity_map": {"ticket": "info"},
            "timeout": "3s",
        },
        {"type": "console", "name": "stdout"},
    ]
    cfg = parse_config(_yaml(doc))
    oncall, tickets, console = cfg.receivers
    assert isinstance(oncall, PagerDutyReceiver)
    assert oncall.url == "https://events.pagerduty.com/v2/enqueue"
    assert oncall.severities == ["page", "ticket"]
    assert oncall.severity_map == PagerDutySeverity(page="critical", ticket="warning")
    assert oncall.severity_map.of("page") == "critical"
    assert isinstance(tickets, PagerDutyReceiver)
    assert tickets.severities == ["ticket"]
    assert tickets.severity_map.of("ticket") == "info"
    assert tickets.severity_map.of("page") == "critical"
    # Receivers are addressable by name (budget-policy escalations name them).
    assert cfg.receiver_named("oncall") is oncall
    assert cfg.receiver_named("stdout") is console
    assert cfg.receiver_named("nobody") is None
    assert tickets.name is None


def test_config_structs_are_frozen() -> None:
    cfg = parse_config(_yaml(_base()))
    with pytest.raises(AttributeError):
        cfg.slos[0].objective = 50  # type: ignore[misc]


def test_receivers_are_told_apart_by_type() -> None:
    doc = _base()
    doc["receivers"] = [
        {"type": "webhook", "url": "https://hooks.example/x", "secret_env": "HOOK_SECRET"},
        {"type": "alertmanager", "urls": ["http://am-1:9093", "http://am-2:9093"]},
        {"type": "console"},
    ]
    webhook, am, console = parse_config(_yaml(doc)).receivers
    assert isinstance(webhook, WebhookReceiver)
    assert webhook.secret_env == "HOOK_SECRET"
    assert isinstance(am, AlertmanagerReceiver)
    assert am.urls == ["http://am-1:9093", "http://am-2:9093"]
    assert isinstance(console, ConsoleReceiver)


def test_evaluation_for_is_spelled_for_in_the_file() -> None:
    doc = _base()
    doc["evaluation"] = {"for": "2m", "keep_firing_for": "5m", "min_events": 10}
    ev = parse_config(_yaml(doc)).evaluation
    assert (ev.for_s, ev.keep_firing_for_s, ev.min_events) == (120, 300, 10)


# --- every error with its path -----------------------------------------------------------

URL_RCV = {"type": "webhook", "url": "https://hooks.example/x"}
PD_RCV = {"type": "pagerduty", "routing_key_env": "PD_KEY"}


@pytest.mark.parametrize(
    ("mutate", "path", "message"),
    [
        # objectives
        pytest.param(
            _set("slos.2.objective", 0),
            "$.slos[2].objective",
            "must be > 0 and < 100",
            id="an objective of 0 percent is rejected",
        ),
        pytest.param(
            _set("slos.2.objective", 100),
            "$.slos[2].objective",
            "must be > 0 and < 100",
            id="an objective of 100 percent leaves no budget and is rejected",
        ),
        pytest.param(
            _set("slos.2.objective", 150),
            "$.slos[2].objective",
            "must be > 0 and < 100",
            id="an objective of 150 percent is rejected",
        ),
        pytest.param(
            _set("slos.1.objective", "99.9%"),
            "$.slos[1].objective",
            "Expected `float`",
            id="an objective written as a string is a type error",
        ),
        # names
        pytest.param(
            _set("slos.2.name", "api-availability"),
            "$.slos[2].name",
            "duplicate SLO name 'api-availability' (first at $.slos[0])",
            id="a duplicate name points at the second one and names the first",
        ),
        pytest.param(
            _set("slos.1.name", "Checkout"),
            "$.slos[1].name",
            "matching regex",
            id="an upper-case name is rejected",
        ),
        pytest.param(
            _set("slos.1.name", "check out"),
            "$.slos[1].name",
            "matching regex",
            id="a name with a space is rejected",
        ),
        pytest.param(
            _set("slos.1.name", ""),
            "$.slos[1].name",
            "matching regex",
            id="an empty name is rejected",
        ),
        pytest.param(
            _set("slos.1.name", "api-latency\n"),
            "$.slos[1].name",
            "matching regex",
            id="a name with a trailing newline is rejected",
        ),
        pytest.param(
            _set("slos.1.name", "a" * 129),
            "$.slos[1].name",
            "length <= 128",
            id="a name longer than 128 characters is rejected",
        ),
        pytest.param(
            _drop("slos.0.service"),
            "$.slos[0].service",
            "required (or give `composite` for a composite SLO)",
            id="an SLO without a service is rejected",
        ),
        pytest.param(
            _set("slos.0.service", ""),
            "$.slos[0].service",
            "length >= 1",
            id="an SLO with an empty service is rejected",
        ),
        pytest.param(
            _set("slos.0.sli", "freshness"),
            "$.slos[0].sli",
            "Invalid enum value 'freshness'",
            id="an unknown sli kind is rejected",
        ),
        # thresholds
        pytest.param(
            _drop("slos.1.threshold_ms"),
            "$.slos[1].threshold_ms",
            "required for a latency SLO",
            id="a latency SLO without threshold_ms is rejected",
        ),
        pytest.param(
            _set("slos.2.threshold_ms", 300),
            "$.slos[2].threshold_ms",
            "only latency SLOs take a threshold",
            id="a threshold on an availability SLO is rejected",
        ),
        pytest.param(
            _set("slos.1.threshold_ms", 0),
            "$.slos[1].threshold_ms",
            "> 0",
            id="a threshold of 0 ms is rejected",
        ),
        # durations
        pytest.param(
            _set("slos.2.period", "30x"),
            "$.slos[2].period",
            "matching regex",
            id="a period with an unknown unit is rejected",
        ),
        pytest.param(
            _set("slos.2.period", "thirty days"),
            "$.slos[2].period",
            "matching regex",
            id="a period in words is rejected",
        ),
        pytest.param(
            _set("slos.2.period", "30d\n"),
            "$.slos[2].period",
            "matching regex",
            id="a period with a trailing newline is a config error, not a crash",
        ),
        pytest.param(
            _set("slos.2.period", "9" * 400 + "d"),
            "$.slos[2].period",
            "",
            id="a period too long for a float is a config error, not a crash",
        ),
        pytest.param(
            _set("slos.2.period", "30m"),
            "$.slos[2].period",
            "must be at least 1h",
            id="a period shorter than an hour is rejected",
        ),
        pytest.param(
            _set("evaluation.tick", "10"),
            "$.evaluation.tick",
            "matching regex",
            id="a tick without a unit is rejected",
        ),
        pytest.param(
            _set("evaluation.tick", "500ms"),
            "$.evaluation.tick",
            "must be at least 1s",
            id="a tick below one second is rejected",
        ),
        pytest.param(
            _set("evaluation.allowed_lateness", "2h"),
            "$.evaluation.allowed_lateness",
            "at most 1h",
            id="an allowed lateness above an hour is rejected",
        ),
        pytest.param(
            _set("evaluation.future_limit", "2d"),
            "$.evaluation.future_limit",
            "at most 1d",
            id="a future limit above a day is rejected",
        ),
        # policy
        pytest.param(
            _policy({"severity": "page", "long": "1 hour", "short": "5m", "burn_rate": 14.4}),
            "$.policy[0].long",
            "matching regex",
            id="a bad policy window is rejected",
        ),
        pytest.param(
            _policy(
                {"severity": "page", "long": "1h", "short": "5m", "burn_rate": 14.4},
                {"severity": "page", "long": "5m", "short": "1h", "burn_rate": 6},
            ),
            "$.policy[1].short",
            "must be shorter than long (1h >= 5m)",
            id="a policy row whose short window is longer than its long window is rejected",
        ),
        pytest.param(
            _policy({"severity": "page", "long": "1h", "short": "60m", "burn_rate": 14.4}),
            "$.policy[0].short",
            "must be shorter than long",
            id="a policy row with equal windows is rejected",
        ),
        pytest.param(
            _policy({"severity": "page", "long": "1h", "short": "5s", "burn_rate": 14.4}),
            "$.policy[0].short",
            "must be at least the evaluation tick (10s)",
            id="a short window below the evaluation tick is rejected",
        ),
        pytest.param(
            _policy({"severity": "page", "long": "1h", "short": "5m"}),
            "$.policy[0]",
            "give exactly one of burn_rate or budget_consumed_ratio",
            id="a policy row with neither burn_rate nor budget_consumed_ratio is rejected",
        ),
        pytest.param(
            _policy(
                {
                    "severity": "page",
                    "long": "1h",
                    "short": "5m",
                    "burn_rate": 14.4,
                    "budget_consumed_ratio": 0.02,
                }
            ),
            "$.policy[0]",
            "give exactly one of burn_rate or budget_consumed_ratio",
            id="a policy row with both burn_rate and budget_consumed_ratio is rejected",
        ),
        pytest.param(
            _policy({"severity": "page", "long": "1h", "short": "5m", "burn_rate": 0}),
            "$.policy[0].burn_rate",
            "> 0",
            id="a burn rate of 0 is rejected",
        ),
        pytest.param(
            _policy(
                {"severity": "page", "long": "1h", "short": "5m", "budget_consumed_ratio": 1.5}
            ),
            "$.policy[0].budget_consumed_ratio",
            "<= 1",
            id="a budget share above 1 is rejected",
        ),
        pytest.param(
            _policy({"severity": "critical", "long": "1h", "short": "5m", "burn_rate": 14.4}),
            "$.policy[0].severity",
            "Invalid enum value 'critical'",
            id="a severity other than page or ticket is rejected",
        ),
        pytest.param(
            _set("policy", []),
            "$.policy",
            "at least one row is required",
            id="an empty policy is rejected rather than never alerting",
        ),
        # an SLO's own policy: the top-level rows' checks, at the SLO's path
        pytest.param(
            _set("slos.2.policy", []),
            "$.slos[2].policy",
            "at least one row is required (omit the key for the top-level policy)",
            id="an empty per-SLO policy is rejected rather than silencing the SLO",
        ),
        pytest.param(
            _set("slos.1.policy", [{"severity": "page", "long": "1 hour", "short": "5m"}]),
            "$.slos[1].policy[0].long",
            "Expected `str` matching regex",
            id="a bad window in a per-SLO row is rejected",
        ),
        pytest.param(
            _set(
                "slos.2.policy",
                [
                    {"severity": "ticket", "long": "1d", "short": "2h", "burn_rate": 1},
                    {"severity": "page", "long": "5m", "short": "1h", "burn_rate": 14.4},
                ],
            ),
            "$.slos[2].policy[1].short",
            "must be shorter than long (1h >= 5m)",
            id="a per-SLO row whose short window is longer than its long window is rejected",
        ),
        pytest.param(
            _set(
                "slos.2.policy", [{"severity": "page", "long": "1h", "short": "5s", "burn_rate": 2}]
            ),
            "$.slos[2].policy[0].short",
            "must be at least the evaluation tick (10s), got 5s",
            id="a per-SLO short window under the tick is rejected",
        ),
        pytest.param(
            _set("slos.0.policy", [{"severity": "page", "long": "1h", "short": "5m"}]),
            "$.slos[0].policy[0]",
            "give exactly one of burn_rate or budget_consumed_ratio",
            id="a per-SLO row with neither burn_rate nor budget_consumed_ratio is rejected",
        ),
        pytest.param(
            _set("slos.2.policy", [{"severity": "warn", "long": "1h", "short": "5m"}]),
            "$.slos[2].policy[0].severity",
            "Invalid enum value 'warn'",
            id="a per-SLO severity other than page or ticket is rejected",
        ),
        pytest.param(
            _set(
                "slos.2.policy",
                [{"severity": "page", "long": "1h", "short": "5m", "burn_rate": 2, "for": "5m"}],
            ),
            "$.slos[2].policy[0]",
            "unknown field `for`",
            id="an unknown key in a per-SLO row is rejected",
        ),
        pytest.param(
            _set("slos.2.policy", {"severity": "page", "long": "1h", "short": "5m"}),
            "$.slos[2].policy",
            "Expected `array | null`, got `object`",
            id="a per-SLO policy that is one row rather than a list is rejected",
        ),
        pytest.param(
            _set("slos", []),
            "$.slos",
            "at least one SLO is required",
            id="a config without SLOs is rejected",
        ),
        pytest.param(
            _drop("slos"),
            "$",
            "missing required field `slos`",
            id="a config without the slos key is rejected",
        ),
        # receivers
        pytest.param(
            _set("receivers", [{"type": "webhook", "secret_env": "X"}]),
            "$.receivers[0]",
            "needs url or urls",
            id="a webhook receiver without url is rejected",
        ),
        pytest.param(
            _set("receivers", [URL_RCV, {"type": "alertmanager"}]),
            "$.receivers[1]",
            "needs url or urls",
            id="an alertmanager receiver without url is rejected",
        ),
        pytest.param(
            _set("receivers", [{**PD_RCV, "severity_map": {"page": "high"}}]),
            "$.receivers[0].severity_map.page",
            "Invalid enum value 'high'",
            id="a PagerDuty severity PagerDuty does not have",
        ),
        pytest.param(
            _set("receivers", [{**PD_RCV, "routing_key": "inline"}]),
            "$.receivers[0]",
            "unknown field `routing_key`",
            id="an inline routing key is rejected",
        ),
        pytest.param(
            _set("receivers", [{"type": "console", "name": "Ops Team"}]),
            "$.receivers[0].name",
            "Expected `str` matching",
            id="a receiver name outside [a-z0-9_.-]",
        ),
        pytest.param(
            _set("receivers", [{"type": "opsgenie"}]),
            "$.receivers[0].type",
            "Invalid value 'opsgenie'",
            id="an unknown receiver type is rejected",
        ),
        # unknown fields, everywhere
        pytest.param(
            _set("slo", []),
            "$",
            "unknown field `slo`",
            id="an unknown top-level key (a typo of slos) is rejected",
        ),
        pytest.param(
            _set("slos.2.objectve", 99),
            "$.slos[2]",
            "unknown field `objectve`",
            id="an unknown key in an SLO is rejected",
        ),
        pytest.param(
            _policy(
                {"severity": "page", "long": "1h", "short": "5m", "burn_rate": 14.4, "for": "5m"}
            ),
            "$.policy[0]",
            "unknown field `for`",
            id="an unknown key in a policy row is rejected",
        ),
        pytest.param(
            _set("evaluation.for_", "1m"),
            "$.evaluation",
            "unknown field `for_`",
            id="the python name for_ is not a config key",
        ),
        pytest.param(
            _set("slos.2.match_labels", {"region": "x" * 129}),
            "$.slos[2].match_labels.region",
            "label value over 128 bytes",
            id="a match_labels value no event can carry",
        ),
        pytest.param(
            _set("slos.2.match_labels", {str(i): "x" for i in range(17)}),
            "$.slos[2].match_labels",
            "at most 16 labels",
            id="more match_labels than an event carries",
        ),
        pytest.param(
            _set("slos.2.match_labels", {"": "x"}),
            "$.slos[2].match_labels",
            "must not be empty",
            id="an empty match_labels name",
        ),
        pytest.param(
            _set("slos.2.match_labels", {"region": 1}),
            "$.slos[2].match_labels[...]",
            "Expected `str`",
            id="a match_labels value that is not a string",
        ),
        pytest.param(
            _set("taxonomy.http_503_is_error", True),
            "$.taxonomy",
            "unknown field `http_503_is_error`",
            id="an unknown key in taxonomy is rejected",
        ),
        pytest.param(
            _set("kafka.bootstrap", "x:9092"),
            "$.kafka",
            "unknown field `bootstrap`",
            id="an unknown key in kafka is rejected",
        ),
        pytest.param(
            _set("kafka.security.password", "hunter2"),
            "$.kafka.security",
            "unknown field `password`",
            id="an inline password in kafka security is rejected",
        ),
        pytest.param(
            _set("http.port", 9464),
            "$.http",
            "unknown field `port`",
            id="an unknown key in http is rejected",
        ),
        pytest.param(
            _set("receivers", [{**URL_RCV, "secret": "inline"}]),
            "$.receivers[0]",
            "unknown field `secret`",
            id="an inline webhook secret is an unknown field",
        ),
        pytest.param(
            _set("receivers", [{"type": "console", "colour": True}]),
            "$.receivers[0]",
            "unknown field `colour`",
            id="an unknown key in a console receiver is rejected",
        ),
    ],
)
def test_config_errors_carry_their_path(
    mutate: Callable[[Doc], None], path: str, message: str
) -> None:
    doc = copy.deepcopy(_base())
    mutate(doc)
    errors = _errors(_yaml(doc))
    assert any(line.startswith(f"{path}: ") and message in line for line in errors), errors


def test_every_semantic_error_is_reported_at_once() -> None:
    doc = _base()
    doc["slos"][0]["objective"] = 150
    doc["slos"][2]["name"] = "api-latency"
    doc["receivers"] = [{"type": "webhook"}]
    errors = _errors(_yaml(doc))
    assert [line.split(": ", 1)[0] for line in errors] == [
        "$.slos[0].objective",
        "$.slos[2].name",
        "$.receivers[0]",
    ]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        pytest.param(b"slos: [\n", "$: not valid YAML", id="broken YAML syntax"),
        pytest.param(b"", "$: Expected `object`, got `null`", id="an empty document"),
        pytest.param(b"- a\n- b\n", "$: Expected `object`, got `array`", id="a YAML list"),
    ],
)
def test_documents_that_are_not_a_config(data: bytes, message: str) -> None:
    [line] = _errors(data)
    assert line.startswith(message)


def test_config_error_is_a_burnrate_error_with_lines() -> None:
    error = ConfigError(["$.a: x", "$.b: y"])
    assert isinstance(error, BurnrateError)
    assert error.errors == ["$.a: x", "$.b: y"]
    assert str(error) == "$.a: x; $.b: y"


# --- TOML and files ----------------------------------------------------------------------

TOML = """
[[slos]]
name = "api-availability"
service = "api"
sli = "availability"
objective = 99.9

[[slos]]
name = "api-latency"
service = "api"
sli = "latency"
threshold_ms = 250
objective = 99
period = "28d"

[[policy]]
severity = "page"
long = "1h"
short = "5m"
burn_rate = 14.4

[evaluation]
for = "2m"

[[receivers]]
type = "alertmanager"
url = "http://alertmanager:9093"
"""


def test_toml_is_accepted() -> None:
    cfg = parse_config(TOML, fmt="toml")
    assert [s.name for s in cfg.slos] == ["api-availability", "api-latency"]
    assert cfg.slos[1].period_s == 28 * DAY_S
    assert cfg.policy == [PolicyRow(severity="page", long="1h", short="5m", burn_rate=14.4)]
    assert cfg.evaluation.for_s == 120
    assert cfg.receivers == [AlertmanagerReceiver(url="http://alertmanager:9093")]


def test_toml_errors_carry_the_same_paths() -> None:
    errors = _errors(TOML.replace("objective = 99\n", "objective = 150\n"), fmt="toml")
    assert errors == ["$.slos[1].objective: must be > 0 and < 100 (percent), got 150.0"]
    assert _errors("slos = [", fmt="toml")[0].startswith("$: not valid TOML")


def test_load_config_picks_the_format_by_suffix(tmp_path: Path) -> None:
    toml_file = tmp_path / "burnrate.toml"
    toml_file.write_text(TOML)
    yml_file = tmp_path / "burnrate.yml"
    yml_file.write_bytes(_yaml(_base()))
    assert load_config(toml_file) == parse_config(TOML, fmt="toml")
    assert load_config(str(yml_file)) == parse_config(_yaml(_base()))


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("missing.yaml", id="a file that does not exist"),
        pytest.param(".", id="a directory"),
    ],
)
def test_an_unreadable_file_is_a_config_error(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    with pytest.raises(ConfigError) as info:
        load_config(path)
    [line] = info.value.errors
    assert line.startswith(f"$: cannot read {path}")


# --- policy factors ----------------------------------------------------------------------


def test_default_policy_rows_are_the_sre_workbook_windows() -> None:
    assert [(r.severity, r.long, r.short) for r in DEFAULT_POLICY] == [
        ("page", "1h", "5m"),
        ("page", "6h", "30m"),
        ("ticket", "1d", "2h"),
        ("ticket", "3d", "6h"),
    ]


@pytest.mark.parametrize(
    ("period", "factors"),
    [
        pytest.param("30d", [14.4, 6, 3, 1], id="a 30 day period gives 14.4, 6, 3 and 1"),
        pytest.param(
            "28d", [13.44, 5.6, 2.8, 0.9333], id="a 28 day period scales to 13.44, 5.6, 2.8, 0.93"
        ),
        pytest.param("7d", [3.36, 1.4, 0.7, 0.2333], id="a 7 day period scales down"),
    ],
)
def test_default_policy_factors_follow_the_period(period: str, factors: list[float]) -> None:
    doc = _base()
    doc["slos"][0]["period"] = period
    slo = parse_config(_yaml(doc)).slos[0]
    got = [row.factor_for(slo.period_s) for row in DEFAULT_POLICY]
    assert got == pytest.approx(factors, abs=1e-4)


@pytest.mark.parametrize(
    "period_s",
    [
        pytest.param(30 * DAY_S, id="over 30 days"),
        pytest.param(28 * DAY_S, id="over 28 days"),
        pytest.param(7 * DAY_S, id="over 7 days"),
        pytest.param(90 * DAY_S, id="over 90 days"),
    ],
)
def test_burn_rate_rows_keep_their_factor_whatever_the_period(period_s: int) -> None:
    rows = [
        PolicyRow(severity="page", long="1h", short="5m", burn_rate=14.4),
        PolicyRow(severity="ticket", long="3d", short="6h", burn_rate=1),
    ]
    assert [row.factor_for(period_s) for row in rows] == [14.4, 1]


def test_windows_cover_policy_windows_and_periods() -> None:
    cfg = load_config(EXAMPLE)
    assert cfg.windows_s() == [
        300,
        1800,
        3600,
        7200,
        21600,
        DAY_S,
        3 * DAY_S,
        28 * DAY_S,
        30 * DAY_S,
    ]


def test_slo_operation_globs_and_exact_names() -> None:
    exact = Slo(name="a", service="s", sli=SliKind.AVAILABILITY, objective=99, operation="GET /x")
    glob = Slo(name="b", service="s", sli=SliKind.AVAILABILITY, objective=99, operation="GET /x/*")
    anything = Slo(name="c", service="s", sli=SliKind.AVAILABILITY, objective=99)
    assert exact.matches_operation("GET /x")
    assert not exact.matches_operation("GET /x/1")
    assert glob.matches_operation("GET /x/1")
    assert not glob.matches_operation("get /x/1")
    assert not glob.matches_operation(None)
    assert anything.matches_operation(None)
    assert anything.matches_operation("whatever")


# --- bounds: what the evaluator could not keep, and what the clients would ignore ----------


def _slos(n: int) -> Callable[[Doc], None]:
    return _set(
        "slos",
        [
            {"name": f"s{i}", "service": "api", "sli": "availability", "objective": 99}
            for i in range(n)
        ],
    )


def _both(*mutations: Callable[[Doc], None]) -> Callable[[Doc], None]:
    def apply(doc: Doc) -> None:
        for mutate in mutations:
            mutate(doc)

    return apply


FINE_AND_FAR_AHEAD = _both(
    _policy({"severity": "page", "long": "1h", "short": "30s", "burn_rate": 14.4}),
    _set("evaluation", {"future_limit": "1d", "tick": "1s"}),
)
"""A 30 s window at a 1 s tick (1 s buckets; at the 10 s tick it is 3 exact buckets of
10 s) held a day ahead: about 1.6 MiB per SLO."""


@pytest.mark.parametrize(
    ("mutate", "line"),
    [
        pytest.param(
            _set("slos.2.period", "999999999999d"),
            "$.slos[2].period: at most 400d, got 999999999999d",
            id="a period of a trillion days",
        ),
        pytest.param(
            _set("slos.2.period", "401d"),
            "$.slos[2].period: at most 400d, got 401d",
            id="a period one day over the maximum",
        ),
        pytest.param(
            _set("slos.2.period", "100000007s"),
            "$.slos[2].period: at most 400d, got 100000007s",
            id="a prime number of seconds over the maximum",
        ),
        pytest.param(
            _policy({"severity": "page", "long": "999999999999w", "short": "5m", "burn_rate": 2}),
            "$.policy[0].long: at most 400d, got 999999999999w",
            id="a policy window of a trillion weeks",
        ),
        pytest.param(
            _both(_slos(2000), FINE_AND_FAR_AHEAD),
            "$.slos: the windows of 2000 SLOs need about 1.6 GiB (822.4 KiB per SLO), more than "
            "the limit of 1 GiB; use fewer SLOs, fewer or longer policy windows, or a shorter "
            "evaluation.future_limit",
            id="window arrays over 1 GiB",
        ),
        pytest.param(
            _set(
                "slos.2.policy",
                [{"severity": "ticket", "long": "401d", "short": "1d", "burn_rate": 1}],
            ),
            "$.slos[2].policy[0].long: at most 400d, got 401d",
            id="a per-SLO policy window over the maximum",
        ),
        pytest.param(
            _both(
                _slos(2000),
                _set("evaluation", {"future_limit": "1d", "tick": "1s"}),
                _set(
                    "slos.999.policy",
                    [{"severity": "page", "long": "1h", "short": "30s", "burn_rate": 14.4}],
                ),
            ),
            "$.slos: the windows of 2000 SLOs need about 1.8 GiB (958 KiB per SLO), more than "
            "the limit of 1 GiB; use fewer SLOs, fewer or longer policy windows, or a shorter "
            "evaluation.future_limit",
            id="window arrays over 1 GiB through one SLO's own fine window",
        ),
        pytest.param(
            _set("receivers", [{**URL_RCV, "timeout": "0s"}]),
            "$.receivers[0].timeout: must be longer than 0s",
            id="a webhook timeout of 0s",
        ),
        pytest.param(
            _set(
                "receivers", [{"type": "alertmanager", "url": "http://am", "resend_interval": "0s"}]
            ),
            "$.receivers[0].resend_interval: must be longer than 0s",
            id="an Alertmanager resend interval of 0s",
        ),
        pytest.param(
            _set("receivers", [{"type": "pagerduty"}]),
            "$.receivers[0]: needs routing_key_env or routing_key_file (the integration key)",
            id="a PagerDuty receiver without a routing key",
        ),
        pytest.param(
            _set("receivers", [{**PD_RCV, "routing_key_file": "/run/pd"}]),
            "$.receivers[0]: give one of routing_key_env and routing_key_file, not both",
            id="a PagerDuty receiver with two routing key sources",
        ),
        pytest.param(
            _set("receivers", [{**PD_RCV, "severities": []}]),
            "$.receivers[0].severities: at least one severity (omit the key for all)",
            id="a PagerDuty receiver that takes no severity",
        ),
        pytest.param(
            _set("receivers", [{**PD_RCV, "severities": ["page", "page"]}]),
            "$.receivers[0].severities[1]: 'page' is given twice",
            id="a severity twice",
        ),
        pytest.param(
            _set("receivers", [{**PD_RCV, "timeout": "0s"}]),
            "$.receivers[0].timeout: must be longer than 0s",
            id="a PagerDuty timeout of 0s",
        ),
        pytest.param(
            _set(
                "receivers", [{**PD_RCV, "name": "oncall"}, {"type": "console", "name": "oncall"}]
            ),
            "$.receivers[1].name: duplicate receiver name 'oncall' (first at $.receivers[0])",
            id="two receivers of one name",
        ),
        pytest.param(
            _set("kafka", {"topics": []}),
            "$.kafka.topics: at least one topic is required",
            id="no topic to consume",
        ),
        pytest.param(
            _set("kafka", {"topics": ["a", "b"], "dead_letter_topic": "b"}),
            "$.kafka.dead_letter_topic: 'b' is also in kafka.topics: rejected records would be "
            "consumed and rejected again",
            id="the dead-letter topic is consumed too",
        ),
        pytest.param(
            _set("kafka", {"session_timeout": "500ms"}),
            "$.kafka.session_timeout: from 1s to 5m, got 500ms",
            id="a session timeout under a second",
        ),
        pytest.param(
            _set("kafka", {"session_timeout": "10m"}),
            "$.kafka.session_timeout: from 1s to 5m, got 10m",
            id="a session timeout over five minutes",
        ),
        pytest.param(
            _set("kafka", {"topics": ["a"], "formats": {"A": "msgpack"}}),
            "$.kafka.formats['A']: not one of kafka.topics",
            id="a format for a topic not consumed",
        ),
        pytest.param(
            _set("kafka", {"topics": ["a"], "formats": {"a": "otlp"}}),
            "$.kafka.formats[...]: Invalid enum value 'otlp'",
            id="an unknown format",
        ),
        pytest.param(
            _set("kafka", {"security": {"sasl_username": "u", "sasl_password_env": "PW"}}),
            "$.kafka.security.protocol: PLAINTEXT sends no SASL credentials, but sasl_username, "
            "sasl_password_env are set (use SASL_PLAINTEXT or SASL_SSL, or remove them)",
            id="SASL credentials with PLAINTEXT",
        ),
        pytest.param(
            _set("kafka", {"security": {"protocol": "SSL", "sasl_mechanism": "PLAIN"}}),
            "$.kafka.security.protocol: SSL sends no SASL credentials, but sasl_mechanism is set "
            "(use SASL_PLAINTEXT or SASL_SSL, or remove it)",
            id="a SASL mechanism with SSL",
        ),
        pytest.param(
            _set("kafka", {"security": {"protocol": "SASL_PLAINTEXT", "ssl_cafile": "/ca.pem"}}),
            "$.kafka.security.protocol: SASL_PLAINTEXT uses no TLS, but ssl_cafile is set "
            "(use SSL or SASL_SSL, or remove it)",
            id="a CA file without TLS",
        ),
    ],
)
def test_configs_the_engine_could_not_run_are_refused(
    mutate: Callable[[Doc], None], line: str
) -> None:
    doc = copy.deepcopy(_base())
    mutate(doc)
    assert line in _errors(_yaml(doc))


@pytest.mark.parametrize(
    "mutate",
    [
        pytest.param(_set("slos.2.period", "400d"), id="a period of exactly 400 days"),
        pytest.param(_set("slos.2.period", "2591999s"), id="a period no ladder step divides"),
        pytest.param(
            _policy({"severity": "ticket", "long": "400d", "short": "1d", "burn_rate": 1}),
            id="a policy window of exactly 400 days",
        ),
        pytest.param(_both(_slos(600), FINE_AND_FAR_AHEAD), id="window arrays just under 1 GiB"),
        pytest.param(
            _set(
                "kafka",
                {
                    "topics": ["a", "b"],
                    "formats": {"b": "msgpack"},
                    "dead_letter_topic": "a-dlq",
                    "security": {
                        "protocol": "SASL_SSL",
                        "ssl_cafile": "/ca.pem",
                        "sasl_username": "u",
                    },
                },
            ),
            id="Kafka settings the clients use",
        ),
        pytest.param(
            _set(
                "kafka",
                {
                    "topics": ["events", "spans", "spans-json"],
                    "format": "otlp_proto",
                    "formats": {"events": "json", "spans-json": "otlp_json"},
                },
            ),
            id="OTLP trace topics",
        ),
    ],
)
def test_configs_within_the_bounds_are_accepted(mutate: Callable[[Doc], None]) -> None:
    doc = copy.deepcopy(_base())
    mutate(doc)
    parse_config(_yaml(doc))


def test_the_memory_estimate_is_what_the_evaluator_allocates() -> None:
    for cfg in [
        load_config(EXAMPLE),
        parse_config(_yaml({**_base(), "evaluation": {"tick": "7s", "future_limit": "1d"}})),
    ]:
        assert cfg.window_bytes() == Evaluator(cfg).windows.nbytes()
        assert cfg.window_bytes() == len(cfg.slos) * cfg.window_bytes_per_slo()


def test_the_default_windows_cost_a_few_tens_of_kib_per_slo() -> None:
    """The example is the default policy with 28- and 30-day periods: 10 s, 30 s, 2 min,
    5 min, 1 h and 30 min rings of uint32 buckets (docs/design.md, "Windows")."""
    assert 16 * 1024 < load_config(EXAMPLE).window_bytes_per_slo() <= 32 * 1024
    assert MAX_WINDOW_MEMORY_BYTES // load_config(EXAMPLE).window_bytes_per_slo() > 34_000


def test_window_sizes_are_not_estimated_for_windows_already_refused() -> None:
    doc = _base()
    doc["slos"][2]["period"] = "999999999999d"
    assert _errors(_yaml(doc)) == ["$.slos[2].period: at most 400d, got 999999999999d"]


def test_decode_config_checks_types_and_config_errors_the_rest() -> None:
    doc = _base()
    doc["slos"][0]["objective"] = 150
    cfg = decode_config(_yaml(doc))
    assert config_errors(cfg) == ["$.slos[0].objective: must be > 0 and < 100 (percent), got 150.0"]
    with pytest.raises(ConfigError):
        decode_config(b"slos: 1\n")


@pytest.mark.parametrize(
    ("n", "text"),
    [(0, "0 B"), (1023, "1023 B"), (1024, "1 KiB"), (23472, "22.9 KiB"), (1 << 30, "1 GiB")],
)
def test_sizes_are_written_for_people(n: int, text: str) -> None:
    assert format_bytes(n) == text


# --- per-SLO policies --------------------------------------------------------------------

PAGE_ONLY = [{"severity": "page", "long": "2h", "short": "10m", "burn_rate": 10}]


def test_an_slo_without_its_own_policy_uses_the_top_level_one() -> None:
    doc = _base()
    doc["slos"][1]["policy"] = PAGE_ONLY
    cfg = parse_config(_yaml(doc))
    assert cfg.slos[0].policy is None
    assert cfg.policy_of(cfg.slos[0]) == list(DEFAULT_POLICY)
    assert cfg.policy_of(cfg.slos[1]) == [
        PolicyRow(severity="page", long="2h", short="10m", burn_rate=10)
    ]


def test_the_rows_used_are_the_union_without_repeats_or_unused_top_level_rows() -> None:
    doc = _base()
    doc["slos"][1]["policy"] = [*PAGE_ONLY, {**DEFAULT_ROW_1H, "long": "60m"}]
    cfg = parse_config(_yaml(doc))
    assert cfg.policy_rows() == [*DEFAULT_POLICY, cfg.slos[1].policy[0]]  # type: ignore[index]
    for slo in doc["slos"]:
        slo["policy"] = PAGE_ONLY
    cfg = parse_config(_yaml(doc))
    assert [r.key for r in cfg.policy_rows()] == [("page", 7200, 600, 10.0, None)]
    assert cfg.windows_s() == [600, 7200, 30 * DAY_S]  # no 1d, 3d... of the unused default


DEFAULT_ROW_1H = {"severity": "page", "long": "1h", "short": "5m", "budget_consumed_ratio": 0.02}


def test_per_slo_policies_are_accepted_in_toml() -> None:
    cfg = parse_config(
        """
[[slos]]
name = "api"
service = "api"
sli = "availability"
objective = 99.9

[[slos]]
name = "batch"
service = "batch"
sli = "availability"
objective = 99

[[slos.policy]]
severity = "ticket"
long = "1d"
short = "2h"
burn_rate = 2
""",
        fmt="toml",
    )
    assert cfg.policy_of(cfg.slos[-1]) == [
        PolicyRow(severity="ticket", long="1d", short="2h", burn_rate=2)
    ]


def test_per_slo_policy_errors_come_with_their_slo_and_all_at_once() -> None:
    doc = _base()
    doc["slos"][0]["policy"] = []
    doc["slos"][2]["policy"] = [
        {"severity": "page", "long": "5m", "short": "1h", "burn_rate": 2},
        {"severity": "page", "long": "1h", "short": "5m"},
    ]
    doc["slos"][2]["objective"] = 100
    assert _errors(_yaml(doc)) == [
        "$.slos[0].policy: at least one row is required (omit the key for the top-level policy)",
        "$.slos[2].objective: must be > 0 and < 100 (percent), got 100.0",
        "$.slos[2].policy[0].short: must be shorter than long (1h >= 5m)",
        "$.slos[2].policy[1]: give exactly one of burn_rate or budget_consumed_ratio",
    ]


def test_match_labels_are_read_and_all_must_match() -> None:
    doc = _base()
    doc["slos"][0]["match_labels"] = {"region": "eu", "tier": "gold"}
    cfg = parse_config(_yaml(doc))
    slo = cfg.slos[0]
    assert slo.match_labels == {"region": "eu", "tier": "gold"}
    assert slo.matches_labels({"region": "eu", "tier": "gold", "x": "y"})
    assert not slo.matches_labels({"region": "eu"})
    assert not slo.matches_labels(None)
    assert cfg.slos[1].matches_labels(None)  # no selector: every event
