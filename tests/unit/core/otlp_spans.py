"""OTLP trace records made by the OpenTelemetry Python SDK and its own OTLP encoder.

Spans are recorded by an SDK `TracerProvider` into memory with the times given, then
encoded by `opentelemetry.exporter.otlp.proto.common.trace_encoder.encode_spans`, the
encoder of the SDK's OTLP exporters. `otlp_json` turns that message into OTLP/JSON as
the Collector writes it: protobuf's `json_format` gives lowerCamelCase names and 64-bit
integers as strings, but enum names and base64 ids, where OTLP/JSON has enum numbers and
hex ids; `canonical_json` is `json_format`'s own output, which the decoder reads too.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from google.protobuf import json_format
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.util.types import AttributeValue


@dataclass(frozen=True)
class SpanSpec:
    """One span to record: its kind, attributes, status and times (epoch nanoseconds)."""

    start_ns: int
    end_ns: int
    kind: SpanKind = SpanKind.SERVER
    attributes: Mapping[str, AttributeValue] = field(default_factory=dict)
    status: StatusCode = StatusCode.UNSET
    name: str = "span"


def record_spans(service: str | None, specs: Sequence[SpanSpec]) -> list[ReadableSpan]:
    """Finished SDK spans of a resource with `service.name` = `service` (None: a
    resource without `service.name`)."""
    attrs = {} if service is None else {"service.name": service}
    provider = TracerProvider(resource=Resource(attrs))
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("burnrate.tests")
    for spec in specs:
        span = tracer.start_span(
            spec.name, kind=spec.kind, attributes=dict(spec.attributes), start_time=spec.start_ns
        )
        if spec.status != StatusCode.UNSET:
            span.set_status(Status(spec.status))
        span.end(end_time=spec.end_ns)
    provider.shutdown()
    return list(exporter.get_finished_spans())


def request(*resources: tuple[str | None, Sequence[SpanSpec]]) -> ExportTraceServiceRequest:
    """One export request with the spans of every (service, specs)."""
    spans: list[ReadableSpan] = []
    for service, specs in resources:
        spans += record_spans(service, specs)
    return encode_spans(spans)


def otlp_proto(*resources: tuple[str | None, Sequence[SpanSpec]]) -> bytes:
    return request(*resources).SerializeToString()


def otlp_json(*resources: tuple[str | None, Sequence[SpanSpec]]) -> bytes:
    """OTLP/JSON as the Collector's Kafka exporter writes it (hex ids, enum numbers)."""
    doc = json_format.MessageToDict(request(*resources), use_integers_for_enums=True)
    for rs in doc.get("resourceSpans", []):
        for ss in rs.get("scopeSpans", []):
            for span in ss.get("spans", []):
                for key in ("traceId", "spanId", "parentSpanId"):
                    if key in span:
                        span[key] = base64.b64decode(span[key]).hex()
    return json.dumps(doc).encode()


def canonical_json(*resources: tuple[str | None, Sequence[SpanSpec]]) -> bytes:
    """protobuf's own JSON mapping (enum names, base64 ids)."""
    return json_format.MessageToJson(request(*resources)).encode()


ENCODERS = {"otlp_proto": otlp_proto, "otlp_json": otlp_json}
