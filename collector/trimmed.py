"""Message classes that declare only the fields the receiver checks (ids, times, links, record lists).

Parsing a trace request with these is about 1.6x faster than with the full classes: upb skips
attributes, events and values as unknown fields instead of building them, and keeps their bytes, so
serialising a trimmed message (after dropping invalid spans) reproduces the rest of the request
exactly. Field numbers are those of opentelemetry-proto v1. Anything malformed deep inside a value
is then found by the engine at flush time, and such a request is quarantined, not lost.
"""

from __future__ import annotations

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import Message

_F = descriptor_pb2.FieldDescriptorProto
_BYTES = (_F.TYPE_BYTES, None)
_FIXED64 = (_F.TYPE_FIXED64, None)

# message -> [(field, number, type, repeated message type or None)]
_SCHEMA: dict[str, list[tuple[str, int, int, str | None]]] = {
    "Link": [("trace_id", 1, *_BYTES), ("span_id", 2, *_BYTES)],
    "Span": [
        ("trace_id", 1, *_BYTES),
        ("span_id", 2, *_BYTES),
        ("parent_span_id", 4, *_BYTES),
        ("start_time_unix_nano", 7, *_FIXED64),
        ("links", 13, _F.TYPE_MESSAGE, "Link"),
    ],
    "ScopeSpans": [("spans", 2, _F.TYPE_MESSAGE, "Span")],
    "ResourceSpans": [("scope_spans", 2, _F.TYPE_MESSAGE, "ScopeSpans")],
    "ExportTraceServiceRequest": [("resource_spans", 1, _F.TYPE_MESSAGE, "ResourceSpans")],
    "LogRecord": [
        ("time_unix_nano", 1, *_FIXED64),
        ("trace_id", 9, *_BYTES),
        ("span_id", 10, *_BYTES),
        ("observed_time_unix_nano", 11, *_FIXED64),
    ],
    "ScopeLogs": [("log_records", 2, _F.TYPE_MESSAGE, "LogRecord")],
    "ResourceLogs": [("scope_logs", 2, _F.TYPE_MESSAGE, "ScopeLogs")],
    "ExportLogsServiceRequest": [("resource_logs", 1, _F.TYPE_MESSAGE, "ResourceLogs")],
}


def _build() -> dict[str, type[Message]]:
    file = descriptor_pb2.FileDescriptorProto(name="sloscope_trimmed.proto", package="sloscope.trimmed")
    file.syntax = "proto3"
    for name, fields in _SCHEMA.items():
        message = file.message_type.add(name=name)
        for field, number, kind, child in fields:
            label = _F.LABEL_REPEATED if child else _F.LABEL_OPTIONAL
            proto = message.field.add(name=field, number=number, type=kind, label=label)
            if child:
                proto.type_name = f".sloscope.trimmed.{child}"
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return {
        signal: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"sloscope.trimmed.{name}"))
        for signal, name in (("traces", "ExportTraceServiceRequest"), ("logs", "ExportLogsServiceRequest"))
    }


#: signal -> trimmed request class (traces and logs; metrics are parsed whole)
REQUESTS = _build()
