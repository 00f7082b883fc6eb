"""Jaeger's v1 query HTTP API over the store, for Grafana's Jaeger data source and the Jaeger UI.

Mounted under ``/jaeger`` on the API port: a Jaeger data source with URL ``http://HOST:8080/jaeger``
calls ``/jaeger/api/services``, ``/jaeger/api/traces`` and so on. Spans are rendered as Jaeger's
OTLP translator renders them (opentelemetry-collector-contrib ``pkg/translator/jaeger``) and then as
Jaeger's JSON model (``model/converter/json``): tags with types, logs from events, microseconds.

Decisions where Jaeger leaves room (noted here because clients see them):

* A search without ``start``/``end`` covers the last 2 days, Jaeger query's own default lookback;
  ``limit`` defaults to Jaeger's 100 and may be at most 1500 (the Jaeger UI's largest choice).
* ``/api/services`` and the operation lists take no time range in Jaeger; here they cover the last
  7 days (the default retention) unless ``start``/``end`` (microseconds) are given, so they never
  read the whole table.
* ``tags`` values may also be JSON numbers or booleans (Jaeger insists on strings); they match the
  stored text (``500``, ``true``).
* Trace ids whose upper 64 bits are zero print as 16 hex digits, as Jaeger prints them; ids of up to
  32 hex digits are accepted and zero-padded.
* No adjusters run (clock skew, span-id deduplication): traces are shown as stored.
* Like the translator, the model has no place for scope attributes, schema URLs or link flags: only
  the JSON API (``/api/v1/traces/{id}``) returns them.
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
from collections.abc import Callable, Mapping
from fractions import Fraction
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.datastructures import QueryParams

from store import search
from store.backend import Backend, StoreError, StoreUnavailable

log = logging.getLogger(__name__)

SEARCH_LOOKBACK_NS = 2 * 24 * 3600 * 10**9
LIST_LOOKBACK_NS = 7 * 24 * 3600 * 10**9
DEPENDENCY_LOOKBACK_MS = 24 * 3600 * 1000
DEFAULT_LIMIT = 100
MAX_LIMIT = 1500

#: Largest time in unix nanoseconds the store's Int64 parameters hold.
_MAX_NS = 2**63 - 1
_JS_SAFE = 2**53 - 1  # Jaeger prints int64 tags beyond this as strings, for JavaScript's sake
_SPAN_KIND_TAG = {k: k.lower() for k in ("INTERNAL", "SERVER", "CLIENT", "PRODUCER", "CONSUMER")}
_DURATION_PART = re.compile(r"(\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_DURATION_UNIT_NS = {
    "ns": 1,
    "us": 10**3,
    "µs": 10**3,
    "μs": 10**3,
    "ms": 10**6,
    "s": 10**9,
    "m": 60 * 10**9,
    "h": 3600 * 10**9,
}
_HEX = re.compile(r"^[0-9a-fA-F]{1,32}$")


class _Problem(Exception):
    """A request Jaeger would refuse: answered with its error envelope."""

    def __init__(self, status: int, msg: str) -> None:
        super().__init__(msg)
        self.status = status
        self.msg = msg


# -- responses ---------------------------------------------------------------------------------


def _envelope(data: Any, total: int = 0, errors: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"data": data, "total": total, "limit": 0, "offset": 0, "errors": errors}


def _error(status: int, msg: str) -> JSONResponse:
    return JSONResponse(_envelope(None, errors=[{"code": status, "msg": msg}]), status_code=status)


def _answer(compute: Callable[[], dict[str, Any]]) -> JSONResponse:
    """Run a handler body; refusals and store failures become Jaeger's error envelope."""
    try:
        return JSONResponse(compute())
    except _Problem as problem:
        return _error(problem.status, problem.msg)
    except StoreUnavailable as exc:
        return _error(503, f"store unavailable: {exc}")
    except StoreError as exc:
        log.exception("Jaeger API query failed")
        return _error(500, f"query failed: {exc}")


# -- parameters --------------------------------------------------------------------------------


def parse_duration(text: str) -> int:
    """Nanoseconds in a Go duration string ("1.2s", "100ms", "1h30m", "5us", "0")."""
    if text == "0":
        return 0
    body = text[1:] if text[:1] == "+" else text
    if body.startswith("-"):
        raise ValueError(f"duration must not be negative: {text!r}")
    pos, total = 0, Fraction(0)
    while pos < len(body):
        part = _DURATION_PART.match(body, pos)
        if part is None:
            raise ValueError(f"invalid duration {text!r} (use a number with a unit: ns, us, ms, s, m, h)")
        total += Fraction(part[1]) * _DURATION_UNIT_NS[part[2]]
        pos = part.end()
    if pos == 0:
        raise ValueError(f"invalid duration {text!r}")
    return int(total)  # Go truncates fractions of a nanosecond too


def _int_param(params: QueryParams, name: str, default: int, low: int = 0, high: int = _MAX_NS) -> int:
    text = params.get(name, "")
    if text == "":
        return default
    try:
        value = int(text, 10)
    except ValueError:
        raise _Problem(400, f"unable to parse param '{name}': {text!r} is not an integer") from None
    if not low <= value <= high:
        raise _Problem(400, f"unable to parse param '{name}': {value} is out of range [{low}, {high}]")
    return value


def _time_range_ns(params: QueryParams, lookback_ns: int) -> tuple[int, int]:
    """``start``/``end`` in unix microseconds; missing ones mean now and now minus ``lookback_ns``."""
    now = time.time_ns()
    end = _int_param(params, "end", now // 1000, high=_MAX_NS // 1000) * 1000
    start = _int_param(params, "start", max(0, end - lookback_ns) // 1000, high=_MAX_NS // 1000) * 1000
    if end < start:
        raise _Problem(400, "'end' must not be before 'start'")
    return start, end


def _duration_param(params: QueryParams, name: str) -> int | None:
    text = params.get(name, "")
    if text == "":
        return None
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise _Problem(400, f"unable to parse param '{name}': {exc}") from None


def _tag_value(key: str, value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return json.dumps(value)
    raise _Problem(400, f"malformed 'tags' parameter: value of {key!r} must be a string")


def parse_tags(simple: list[str], as_json: list[str]) -> dict[str, str]:
    """Tags from repeated ``tag=key:value`` and ``tags={"key": "value"}`` parameters."""
    tags: dict[str, str] = {}
    for item in simple:
        key, colon, value = item.partition(":")
        if not colon or not key:
            raise _Problem(400, f"malformed 'tag' parameter, expecting key:value, received: {item}")
        tags[key] = value
    for text in as_json:
        try:
            decoded = json.loads(text)
        except ValueError as exc:
            raise _Problem(400, f"malformed 'tags' parameter, cannot unmarshal JSON: {exc}") from None
        if not isinstance(decoded, dict):
            raise _Problem(400, "malformed 'tags' parameter: expecting a JSON object of key/value strings")
        tags.update({str(k): _tag_value(k, v) for k, v in decoded.items()})
    return tags


def _trace_id(text: str) -> str:
    """32 lower-case hex digits from Jaeger's trace id text (1-32 hex digits, zero-padded)."""
    if not _HEX.match(text):
        raise _Problem(400, f"cannot parse trace id {text!r}: expecting 1 to 32 hex digits")
    return text.lower().rjust(32, "0")


def _span_kind(params: QueryParams) -> str | None:
    kind = params.get("spanKind", "")
    if not kind:
        return None
    stored = kind.upper()
    if stored not in _SPAN_KIND_TAG:
        raise _Problem(400, f"unsupported span kind {kind!r} (server, client, producer, consumer, internal)")
    return stored


# -- Jaeger JSON model -------------------------------------------------------------------------


def jaeger_id(hex_id: str) -> str:
    """Jaeger's rendering of a trace id: 16 hex digits when its upper 64 bits are zero."""
    return hex_id[16:] if len(hex_id) == 32 and hex_id[:16] == "0" * 16 else hex_id


def _kv(key: str, value: Any) -> dict[str, Any]:
    """A Jaeger key/value with its type, from a typed value of ``store.traces.typed_attributes``."""
    if isinstance(value, bool):
        return {"key": key, "type": "bool", "value": value}
    if isinstance(value, int):
        return {"key": key, "type": "int64", "value": value if abs(value) <= _JS_SAFE else str(value)}
    if isinstance(value, float):
        if not math.isfinite(value):  # JSON has no NaN or infinities
            return {"key": key, "type": "string", "value": str(value)}
        return {"key": key, "type": "float64", "value": value}
    if isinstance(value, dict) and set(value) == {"bytes"} and isinstance(value["bytes"], str):
        return {"key": key, "type": "binary", "value": value["bytes"]}  # base64, as Go renders []byte
    if value is None:
        return {"key": key, "type": "string", "value": ""}
    if isinstance(value, list | dict):
        # Arrays and maps become their JSON text, as the OTLP translator's AsString does.
        return {"key": key, "type": "string", "value": json.dumps(value, separators=(",", ":"))}
    return {"key": key, "type": "string", "value": str(value)}


def _string_kv(key: str, value: str) -> dict[str, Any]:
    return {"key": key, "type": "string", "value": value}


def _span_tags(span: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Tags in the OTLP translator's order: scope, attributes, kind, status, trace state."""
    tags = []
    scope = span["scope"]
    if scope["name"]:
        tags.append(_string_kv("otel.scope.name", scope["name"]))
    if scope["version"]:
        tags.append(_string_kv("otel.scope.version", scope["version"]))
    failed = span["status"]["code"] == "ERROR"
    # A failed span's own ``error`` attribute (Zipkin's error tag, whose text is already the status
    # message) gives way to the one bool tag that Jaeger UI and Grafana read as "this span failed".
    tags.extend(_kv(k, v) for k, v in span["attributes"].items() if not (failed and k == "error"))
    if span["kind"] in _SPAN_KIND_TAG:
        tags.append(_string_kv("span.kind", _SPAN_KIND_TAG[span["kind"]]))
    status = span["status"]
    if status["code"] in ("OK", "ERROR"):
        tags.append(_string_kv("otel.status_code", status["code"]))
    if failed:
        tags.append({"key": "error", "type": "bool", "value": True})
    if status["message"]:
        tags.append(_string_kv("otel.status_description", status["message"]))
    if span["trace_state"]:
        tags.append(_string_kv("w3c.tracestate", span["trace_state"]))
    return tags


def _references(span: Mapping[str, Any]) -> list[dict[str, str]]:
    """CHILD_OF the parent first, then a reference per link (FOLLOWS_FROM unless it says child_of)."""
    trace_id, parent = span["trace_id"], span["parent_span_id"]
    refs = []
    if parent:
        refs.append({"refType": "CHILD_OF", "traceID": jaeger_id(trace_id), "spanID": parent})
    for link in span["links"]:
        ref_type = (
            "CHILD_OF" if link["attributes"].get("opentracing.ref_type") == "child_of" else "FOLLOWS_FROM"
        )
        if parent and link["trace_id"] == trace_id and link["span_id"] == parent:
            refs[0]["refType"] = ref_type  # the link names the parent: it decides the parent's type
            continue
        refs.append({"refType": ref_type, "traceID": jaeger_id(link["trace_id"]), "spanID": link["span_id"]})
    return refs


def _logs(span: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A log per event: its name as field ``event`` (unless an attribute has that key), then attributes,
    typed as span tags are (events stored before migration 0011 have no kinds: string fields)."""
    logs = []
    for event in span["events"]:
        fields = []
        if event["name"] and "event" not in event["attributes"]:
            fields.append(_string_kv("event", event["name"]))
        fields.extend(_kv(k, v) for k, v in event["attributes"].items())
        logs.append({"timestamp": int(event["time_unix_nano"]) // 1000, "fields": fields})
    return logs


def to_jaeger_trace(spans: list[Mapping[str, Any]]) -> dict[str, Any]:
    """One trace in Jaeger's JSON model from the store's span dicts (``store.traces.get_trace``).

    Processes (service name and resource attributes but ``service.name``) are keyed p1, p2, ... in
    order of first appearance; spans with equal processes share a key.
    """
    processes: dict[str, dict[str, Any]] = {}
    process_keys: dict[str, str] = {}
    out_spans = []
    for span in spans:
        tags = [_kv(k, v) for k, v in span["resource"]["attributes"].items() if k != "service.name"]
        process = {"serviceName": span["service_name"], "tags": tags}
        identity = json.dumps(process, sort_keys=True)
        if identity not in process_keys:
            process_keys[identity] = f"p{len(process_keys) + 1}"
            processes[process_keys[identity]] = process
        out: dict[str, Any] = {"traceID": jaeger_id(span["trace_id"]), "spanID": span["span_id"]}
        if span["flags"] & 0x01:  # W3C sampled bit; Jaeger omits flags when zero
            out["flags"] = 1
        out.update(
            operationName=span["name"],
            references=_references(span),
            startTime=int(span["start_time_unix_nano"]) // 1000,
            duration=span["duration_ns"] // 1000,
            tags=_span_tags(span),
            logs=_logs(span),
            processID=process_keys[identity],
            warnings=None,
        )
        out_spans.append(out)
    trace_id = jaeger_id(spans[0]["trace_id"]) if spans else ""
    return {"traceID": trace_id, "spans": out_spans, "processes": processes, "warnings": None}


# -- routes ------------------------------------------------------------------------------------


def router(backend: Backend) -> APIRouter:
    """Jaeger's v1 query API (``/api/...``) over ``backend``; mount it under ``/jaeger``."""
    api = APIRouter(tags=["jaeger"])

    def list_window(params: QueryParams) -> tuple[int, int]:
        return _time_range_ns(params, LIST_LOOKBACK_NS)

    def operations_of(service: str, params: QueryParams, kind: str | None) -> list[tuple[str, str]]:
        start, end = list_window(params)
        return search.operations(backend, service, kind, start, end)

    @api.get("/api/services")
    def services(request: Request) -> JSONResponse:
        """Service names (Jaeger: ``data`` is a list of strings)."""

        def compute() -> dict[str, Any]:
            names = search.services(backend, *list_window(request.query_params))
            return _envelope(names, total=len(names))

        return _answer(compute)

    @api.get("/api/services/{service}/operations")
    def service_operations(service: str, request: Request) -> JSONResponse:
        """Operation names of one service, of every span kind (Jaeger's legacy form)."""

        def compute() -> dict[str, Any]:
            names = sorted({name for name, _ in operations_of(service, request.query_params, None)})
            return _envelope(names, total=len(names))

        return _answer(compute)

    @api.get("/api/operations")
    def all_operations(request: Request) -> JSONResponse:
        """Operations of ``service`` as ``{name, spanKind}``, optionally of one ``spanKind``."""

        def compute() -> dict[str, Any]:
            params = request.query_params
            service = params.get("service", "")
            if not service:
                raise _Problem(400, "parameter 'service' is required")
            ops = operations_of(service, params, _span_kind(params))
            data = [{"name": name, "spanKind": _SPAN_KIND_TAG.get(kind, "")} for name, kind in ops]
            return _envelope(data, total=len(data))

        return _answer(compute)

    @api.get("/api/traces/{trace_id}")
    def get_trace(trace_id: str, request: Request) -> JSONResponse:
        """One trace; 404 if it is not stored."""

        def compute() -> dict[str, Any]:
            full_id = _trace_id(trace_id)
            _time_range_ns(request.query_params, 0)  # accepted like Jaeger's hints; the index knows better
            spans = search.get_traces(backend, [full_id]).get(full_id)
            if not spans:
                raise _Problem(404, "trace not found")
            return _envelope([to_jaeger_trace(spans)])

        return _answer(compute)

    @api.get("/api/traces")
    def find_traces(request: Request) -> JSONResponse:
        """Trace search: each matching trace in full, newest first; or the traces named by ``traceID``."""

        def compute() -> dict[str, Any]:
            params = request.query_params
            wanted = [_trace_id(t) for t in params.getlist("traceID")]
            if wanted:
                found = search.get_traces(backend, wanted)
                errors = [
                    {"msg": "trace not found", "traceID": jaeger_id(t)}
                    for t in dict.fromkeys(wanted)
                    if t not in found
                ]
                data = [to_jaeger_trace(found[t]) for t in dict.fromkeys(wanted) if t in found]
                return _envelope(data, errors=errors or None)
            query = _trace_query(params)
            ids = search.find_trace_ids(backend, query)
            found = search.get_traces(backend, ids)
            return _envelope([to_jaeger_trace(found[t]) for t in ids if t in found])

        return _answer(compute)

    @api.get("/api/dependencies")
    def dependencies(request: Request) -> JSONResponse:
        """Calls between services in ``[endTs - lookback, endTs]`` (milliseconds), as ``{parent, child, callCount}``."""

        def compute() -> dict[str, Any]:
            params = request.query_params
            end_ms = _int_param(params, "endTs", time.time_ns() // 10**6, high=_MAX_NS // 10**6)
            lookback_ms = _int_param(params, "lookback", DEPENDENCY_LOOKBACK_MS, high=_MAX_NS // 10**6)
            start_ms = max(0, end_ms - lookback_ms)
            service = params.get("service", "")
            links = search.dependencies(backend, start_ms * 10**6, end_ms * 10**6)
            data = [
                {"parent": parent, "child": child, "callCount": calls}
                for parent, child, calls in links
                if not service or service in (parent, child)
            ]
            return _envelope(data)

        return _answer(compute)

    return api


def _trace_query(params: QueryParams) -> search.TraceQuery:
    """A store search from Jaeger's search parameters, refusing what Jaeger refuses."""
    service = params.get("service", "")
    if not service:
        raise _Problem(400, "parameter 'service' is required")
    start, end = _time_range_ns(params, SEARCH_LOOKBACK_NS)
    limit = _int_param(params, "limit", DEFAULT_LIMIT, high=MAX_LIMIT) or DEFAULT_LIMIT
    # Zero means no bound, as in Jaeger.
    min_duration = _duration_param(params, "minDuration") or None
    max_duration = _duration_param(params, "maxDuration") or None
    if min_duration and max_duration and max_duration < min_duration:
        raise _Problem(400, "'maxDuration' should be greater than 'minDuration'")
    return search.TraceQuery(
        service=service,
        operation=params.get("operation") or None,
        tags=parse_tags(params.getlist("tag"), params.getlist("tags")),
        start_ns=start,
        end_ns=end,
        min_duration_ns=min_duration,
        max_duration_ns=max_duration,
        limit=limit,
    )
