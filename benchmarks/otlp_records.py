"""OTLP trace records for the benchmarks: events of `bench_decode` as SERVER spans.

Built with opentelemetry-proto's message classes (a runtime dependency), the way the
Collector's Kafka exporter sends them after its batch processor: one
`ExportTraceServiceRequest` per record, 100 spans a record, grouped by service (one
resource per service in the record, as the batch processor merges them). Each span carries the
attributes an HTTP server instrumentation sets, not only those the engine reads.
"""

from __future__ import annotations

import base64
import json

from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span

SPANS_PER_RECORD = 100


def _kv(key: str, value: str | int) -> KeyValue:
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    return KeyValue(key=key, value=AnyValue(string_value=value))


def _requests(events: list[dict[str, object]]) -> list[ExportTraceServiceRequest]:
    out = []
    for k in range(0, len(events), SPANS_PER_RECORD):
        request = ExportTraceServiceRequest()
        by_service: dict[str, list[dict[str, object]]] = {}
        for e in events[k : k + SPANS_PER_RECORD]:
            by_service.setdefault(str(e["service"]), []).append(e)
        for service, group in by_service.items():
            rs = request.resource_spans.add()
            rs.resource.attributes.extend(
                [
                    _kv("service.name", service),
                    _kv("telemetry.sdk.language", "python"),
                    _kv("telemetry.sdk.name", "opentelemetry"),
                    _kv("telemetry.sdk.version", "1.45.2"),
                ]
            )
            ss = rs.scope_spans.add()
            ss.scope.name = "opentelemetry.instrumentation.asgi"
            for i, e in enumerate(group):
                end_ns = int(float(e["ts"]) * 1e9)  # type: ignore[arg-type]
                method, route = str(e["operation"]).split(" ", 1)
                ss.spans.append(
                    Span(
                        trace_id=(k + i).to_bytes(16, "big"),
                        span_id=(k + i + 1).to_bytes(8, "big"),
                        name=str(e["operation"]),
                        kind=Span.SPAN_KIND_SERVER,
                        start_time_unix_nano=end_ns - int(float(e["latency_ms"]) * 1e6),  # type: ignore[arg-type]
                        end_time_unix_nano=end_ns,
                        attributes=[
                            _kv("http.request.method", method),
                            _kv("http.route", route),
                            _kv("http.response.status_code", int(e["status"])),  # type: ignore[call-overload]
                            _kv("url.scheme", "https"),
                            _kv("url.path", route),
                            _kv("server.address", "api.example"),
                            _kv("network.protocol.version", "1.1"),
                            _kv("user_agent.original", "Mozilla/5.0"),
                        ],
                    )
                )
        out.append(request)
    return out


def otlp_proto_records(events: list[dict[str, object]]) -> list[bytes]:
    return [r.SerializeToString() for r in _requests(events)]


def otlp_json_records(events: list[dict[str, object]]) -> list[bytes]:
    """OTLP/JSON as the Collector writes it: enums as numbers, ids in hex."""
    out = []
    for r in _requests(events):
        doc = json_format.MessageToDict(r, use_integers_for_enums=True)
        for rs in doc["resourceSpans"]:
            for ss in rs["scopeSpans"]:
                for span in ss["spans"]:
                    for key in ("traceId", "spanId"):
                        span[key] = base64.b64decode(span[key]).hex()
        out.append(json.dumps(doc, separators=(",", ":")).encode())
    return out
