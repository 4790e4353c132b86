"""The config's settings of the engine's inputs and outputs (engine.core.config): Kafka,
the HTTP server, alert receivers and state snapshots. Their shape only; what needs the
outside world (secrets, TLS files, URLs) is checked by the adapters.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from engine.core.config_types import Duration, Escalations, Name, Severity
from engine.core.durations import parse_duration_s

__all__ = [
    "DEFAULT_INCIDENTS_PATH",
    "PAGERDUTY_EVENTS_URL",
    "AlertmanagerReceiver",
    "Audit",
    "ConsoleReceiver",
    "Http",
    "HttpTls",
    "HttpToken",
    "Incidents",
    "Kafka",
    "KafkaSecurity",
    "PagerDutyReceiver",
    "PagerDutySeverity",
    "PagerDutySeverityName",
    "Receiver",
    "State",
    "WebhookReceiver",
]


class _Base(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """The options every config struct has (those of engine.core.config_model too): frozen,
    unknown fields refused, keyword-only."""


class KafkaSecurity(_Base, frozen=True):
    protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_username_env: str | None = None
    sasl_password_env: str | None = None
    sasl_password_file: str | None = None


class KafkaScale(_Base, frozen=True):
    """`kafka.scale`: the internal topics the ingest and evaluate roles share. Ingest
    workers write count deltas keyed by SLO to `counts_topic` (created with
    `counts_partitions` partitions when missing) in transactions with their source
    offsets; evaluate workers (consumer group `evaluate_group_id`) own the SLOs of their
    counts partitions and keep each partition's state in the compacted
    `changelog_topic`. `flush_interval`: how long (wall time) an ingest worker
    pre-aggregates before it commits a transaction; `snapshot_interval`: how often an
    evaluate worker writes each partition's snapshot."""

    counts_topic: Annotated[str, msgspec.Meta(min_length=1)] = "burnrate-counts"
    counts_partitions: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 12
    changelog_topic: Annotated[str, msgspec.Meta(min_length=1)] = "burnrate-changelog"
    evaluate_group_id: Annotated[str, msgspec.Meta(min_length=1)] = "burnrate-evaluate"
    transactional_id_prefix: Annotated[str, msgspec.Meta(min_length=1)] = "burnrate-ingest"
    flush_interval: Duration = "1s"
    snapshot_interval: Duration = "5s"


class Kafka(_Base, frozen=True):
    bootstrap_servers: str = "localhost:9092"
    topics: list[Annotated[str, msgspec.Meta(min_length=1)]] = msgspec.field(
        default_factory=lambda: ["request-events"]
    )
    group_id: str = "burnrate"
    format: Literal["json", "msgpack", "otlp_proto", "otlp_json"] = "json"
    """How record values are read: the event wire format as JSON or MessagePack, or
    OpenTelemetry traces as the Collector's Kafka exporter writes them (OTLP protobuf
    or OTLP/JSON), whose SERVER spans become events."""
    formats: dict[str, Literal["json", "msgpack", "otlp_proto", "otlp_json"]] = {}
    """Per-topic override of `format`."""
    dead_letter_topic: str | None = None
    changes_topic: str | None = None
    """A topic of change records (deploys, config pushes: the body of `POST
    /v1/changes`), read by a consumer of its own (engine.adapters.kafka.changes)."""
    security: KafkaSecurity = KafkaSecurity()
    scale: KafkaScale = KafkaScale()
    """The internal topics of `burnrate run --role ingest|evaluate` (docs/scaling.md)."""
    session_timeout: Duration = "10s"
    """The consumer-group session timeout (aiokafka's default, 10s): how long the group
    waits for a silent member before its partitions go to another. Brokers hold a new
    member's first JoinGroup for a while so others can join (Tansu for half this timeout),
    so a shorter one starts consuming sooner; Apache Kafka refuses values under its
    `group.min.session.timeout.ms` (6s by default). Heartbeats go every third of it, at
    most every 3s."""


class HttpTls(_Base, frozen=True):
    """`http.tls`: HTTPS with this certificate and key (PEM); with `client_ca_file`,
    clients must show a certificate that CA signed (mutual TLS)."""

    cert_file: Annotated[str, msgspec.Meta(min_length=1)]
    key_file: Annotated[str, msgspec.Meta(min_length=1)]
    client_ca_file: Annotated[str, msgspec.Meta(min_length=1)] | None = None


class HttpToken(_Base, frozen=True):
    """One API token of `http.tokens`: its name (in logs and the audit trail), what it
    may do, and the SHA-256 of the token (never the token). Fields are checked by
    engine.adapters.http.tokens, which reports every problem with its path."""

    name: str
    scopes: list[str]
    sha256: str


class Http(_Base, frozen=True):
    listen: str = "127.0.0.1:9464"
    auth_token_env: str | None = None
    auth_token_file: str | None = None
    tokens: list[HttpToken] = []
    tls: HttpTls | None = None
    max_connections: Annotated[int, msgspec.Meta(ge=1)] = 256
    idle_timeout: Duration = "15s"
    header_timeout: Duration = "10s"


class WebhookReceiver(_Base, frozen=True, tag="webhook", tag_field="type"):
    name: Name | None = None
    """How other parts of the config (budget-policy escalations) refer to this
    receiver; unique among the receivers. Optional: an unnamed receiver still gets
    every transition of the severities it takes."""
    escalations: Escalations = "named"
    """Which budget-policy escalations this receiver hears: `named` (those of rows whose
    `escalate` names it) or `all` (every one, e.g. an Alertmanager that routes by label)."""
    url: str | None = None
    urls: list[str] = []
    secret_env: str | None = None
    secret_file: str | None = None
    timeout: Duration = "15s"


class AlertmanagerReceiver(_Base, frozen=True, tag="alertmanager", tag_field="type"):
    name: Name | None = None
    escalations: Escalations = "named"
    url: str | None = None
    urls: list[str] = []
    resend_interval: Duration = "1m"


class ConsoleReceiver(_Base, frozen=True, tag="console", tag_field="type"):
    name: Name | None = None
    escalations: Escalations = "named"


PagerDutySeverityName = Literal["critical", "error", "warning", "info"]
PAGERDUTY_EVENTS_URL = "https://events.pagerduty.com/v2/enqueue"


class PagerDutySeverity(_Base, frozen=True):
    """The PagerDuty `payload.severity` each of our severities is sent with."""

    page: PagerDutySeverityName = "critical"
    ticket: PagerDutySeverityName = "warning"

    def of(self, severity: Severity) -> PagerDutySeverityName:
        return self.page if severity == "page" else self.ticket


class PagerDutyReceiver(_Base, frozen=True, tag="pagerduty", tag_field="type"):
    """A PagerDuty service through its Events API v2 integration (engine.adapters.alerts
    .pagerduty): the integration key is the routing key, read from `routing_key_env` or
    `routing_key_file` (exactly one), never given inline."""

    name: Name | None = None
    escalations: Escalations = "named"
    routing_key_env: str | None = None
    routing_key_file: str | None = None
    url: str = PAGERDUTY_EVENTS_URL
    severities: list[Severity] = msgspec.field(default_factory=lambda: ["page", "ticket"])
    """Which alerts this receiver hears about; the others are not sent to it."""
    severity_map: PagerDutySeverity = PagerDutySeverity()
    timeout: Duration = "10s"


class State(_Base, frozen=True):
    """Evaluator snapshots, so a restart keeps its windows and budgets (absent: none)."""

    path: Annotated[str, msgspec.Meta(min_length=1)]
    """The snapshot file; written atomically (temp file in the same directory + rename)."""
    interval: Duration = "30s"
    """How often a snapshot is written (and once more on shutdown)."""

    @property
    def interval_s(self) -> float:
        return parse_duration_s(self.interval)


Receiver = WebhookReceiver | AlertmanagerReceiver | ConsoleReceiver | PagerDutyReceiver


DEFAULT_INCIDENTS_PATH = "burnrate-incidents.db"
DEFAULT_QUIET_PERIOD = "15m"


class Incidents(_Base, frozen=True):
    """`incidents:`: the incident lifecycle (engine.core.incidents) and where incidents
    are kept (absent: no incidents). SQLite at `path` (default `DEFAULT_INCIDENTS_PATH`,
    relative to the working directory) unless `dsn` names a PostgreSQL database shared
    by several instances; its password from `password_env` or `password_file`, never
    inline in the DSN."""

    quiet_period: Duration = DEFAULT_QUIET_PERIOD
    """An incident closes once all its alerts have stayed resolved this long (event time)."""
    path: Annotated[str, msgspec.Meta(min_length=1)] | None = None
    dsn: Annotated[str, msgspec.Meta(min_length=1)] | None = None
    password_env: Annotated[str, msgspec.Meta(min_length=1)] | None = None
    password_file: Annotated[str, msgspec.Meta(min_length=1)] | None = None

    @property
    def quiet_period_s(self) -> float:
        return parse_duration_s(self.quiet_period)

    @property
    def sqlite_path(self) -> str | None:
        """The SQLite file, or None when the store is PostgreSQL."""
        if self.dsn is not None:
            return None
        return DEFAULT_INCIDENTS_PATH if self.path is None else self.path


class Audit(_Base, frozen=True):
    """`audit:`: the tamper-evident audit log (engine.core.audit, written by
    engine.adapters.store.audit; absent: none). Entries are hashed with SHA-256, or
    HMAC-SHA256 with the key read from `key_env` or `key_file` (at most one; never
    inline)."""

    path: Annotated[str, msgspec.Meta(min_length=1)]
    key_env: Annotated[str, msgspec.Meta(min_length=1)] | None = None
    key_file: Annotated[str, msgspec.Meta(min_length=1)] | None = None
    fsync: Literal["entry", "batch"] = "entry"
    """`entry`: fsync after each entry; `batch`: once the oldest unsynced entry is
    `fsync_interval` old or `fsync_max_entries` wait (the loss window on power loss)."""
    fsync_interval: Duration = "1s"
    fsync_max_entries: int = 1000

    @property
    def fsync_interval_s(self) -> float:
        return parse_duration_s(self.fsync_interval)
