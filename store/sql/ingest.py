"""INSERT ... SELECT statements that decode raw OTLP protobuf requests inside ClickHouse.

The collector hands the store length-delimited ``Export*ServiceRequest`` messages; the engine's
``Protobuf`` input format reads them with the schema in ``otlp.proto`` and the statements below
flatten resource -> scope -> item with ARRAY JOIN. No Python walks the items.

Everything interpolated here is a constant of ours or operator configuration, never request data.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources

from store.backend import INPUT, sql_string
from store.tenancy import check_tenant

#: Where a statement names the tenant its rows belong to: the caller's, never the payload's.
TENANT = "__SLOSCOPE_TENANT__"

_ONEOF = (
    "Enum8('none' = 0, 'string_value' = 1, 'bool_value' = 2, 'int_value' = 3, 'double_value' = 4, "
    "'array_value' = 5, 'kvlist_value' = 6, 'bytes_value' = 7)"
)
_SCALARS = "string_value String, bool_value Bool, int_value Int64, double_value Float64, bytes_value String"
ANY_LEAF = f"Tuple({_SCALARS}, array_value String, kvlist_value String, value {_ONEOF})"
ANY_VALUE = (
    f"Tuple({_SCALARS}, array_value Tuple(values Array({ANY_LEAF})), "
    f"kvlist_value Tuple(values Array(Tuple(key String, value {ANY_LEAF}))), value {_ONEOF})"
)
KEY_VALUES = f"Array(Tuple(key String, value {ANY_VALUE}))"
RESOURCE = f"resource Tuple(attributes {KEY_VALUES}, dropped_attributes_count UInt32)"
SCOPE = "scope Tuple(name String, version String)"

SPAN = (
    "Tuple(trace_id String, span_id String, trace_state String, parent_span_id String, flags UInt32, "
    "name String, kind Int32, start_time_unix_nano UInt64, end_time_unix_nano UInt64, "
    f"attributes {KEY_VALUES}, dropped_attributes_count UInt32, "
    f"events Array(Tuple(time_unix_nano UInt64, name String, attributes {KEY_VALUES})), "
    "dropped_events_count UInt32, "
    f"links Array(Tuple(trace_id String, span_id String, trace_state String, attributes {KEY_VALUES}, "
    "flags UInt32)), dropped_links_count UInt32, status Tuple(message String, code Int32))"
)
# Spans also keep their scope's attributes and both schema URLs (logs and metrics do not read them).
SCOPE_WITH_ATTRIBUTES = f"scope Tuple(name String, version String, attributes {KEY_VALUES})"
TRACES_STRUCTURE = (
    f"resource_spans Array(Tuple({RESOURCE}, scope_spans Array(Tuple({SCOPE_WITH_ATTRIBUTES}, "
    f"spans Array({SPAN}), schema_url String)), schema_url String))"
)

LOG_RECORD = (
    "Tuple(time_unix_nano UInt64, observed_time_unix_nano UInt64, severity_number Int32, "
    f"severity_text String, body {ANY_VALUE}, attributes {KEY_VALUES}, dropped_attributes_count UInt32, "
    "flags UInt32, trace_id String, span_id String, event_name String)"
)
LOGS_STRUCTURE = (
    f"resource_logs Array(Tuple({RESOURCE}, "
    f"scope_logs Array(Tuple({SCOPE}, log_records Array({LOG_RECORD})))))"
)

# Enum values are the oneof's field numbers, which differ between the two messages.
_NUMBER_ONEOF = "value Enum8('none' = 0, 'as_double' = 4, 'as_int' = 6)"
_EXEMPLAR_ONEOF = "value Enum8('none' = 0, 'as_double' = 3, 'as_int' = 6)"
EXEMPLARS = (
    f"exemplars Array(Tuple(filtered_attributes {KEY_VALUES}, time_unix_nano UInt64, as_double Float64, "
    f"as_int Int64, {_EXEMPLAR_ONEOF}, span_id String, trace_id String))"
)
_POINT = f"attributes {KEY_VALUES}, start_time_unix_nano UInt64, time_unix_nano UInt64, flags UInt32"
NUMBER_POINT = f"Tuple({_POINT}, as_double Float64, as_int Int64, {_NUMBER_ONEOF}, {EXEMPLARS})"
HISTOGRAM_POINT = (
    f"Tuple({_POINT}, count UInt64, sum Float64, bucket_counts Array(UInt64), explicit_bounds Array(Float64), "
    f"min Float64, max Float64, {EXEMPLARS})"
)
_BUCKETS = "Tuple(offset Int32, bucket_counts Array(UInt64))"
EXP_HISTOGRAM_POINT = (
    f"Tuple({_POINT}, count UInt64, sum Float64, scale Int32, zero_count UInt64, zero_threshold Float64, "
    f"positive {_BUCKETS}, negative {_BUCKETS}, min Float64, max Float64, {EXEMPLARS})"
)
SUMMARY_POINT = (
    f"Tuple({_POINT}, count UInt64, sum Float64, "
    "quantile_values Array(Tuple(quantile Float64, value Float64)))"
)
METRIC = (
    "Tuple(name String, description String, unit String, "
    f"gauge Tuple(data_points Array({NUMBER_POINT})), "
    f"sum Tuple(data_points Array({NUMBER_POINT}), aggregation_temporality Int32, is_monotonic Bool), "
    f"histogram Tuple(data_points Array({HISTOGRAM_POINT}), aggregation_temporality Int32), "
    f"exponential_histogram Tuple(data_points Array({EXP_HISTOGRAM_POINT}), aggregation_temporality Int32), "
    f"summary Tuple(data_points Array({SUMMARY_POINT})))"
)
METRICS_STRUCTURE = (
    f"resource_metrics Array(Tuple({RESOURCE}, scope_metrics Array(Tuple({SCOPE}, metrics Array({METRIC})))))"
)


def _time(expr: str) -> str:
    return f"fromUnixTimestamp64Nano(toInt64({expr}), 'UTC')"


def _leaf_json(v: str) -> str:
    """An AnyValue item of an array or kvlist as JSON (deeper nesting: base64 of its protobuf)."""
    return (
        f"multiIf({v}.value = 'string_value', toJSONString({v}.string_value), "
        f"{v}.value = 'bool_value', if({v}.bool_value, 'true', 'false'), "
        f"{v}.value = 'int_value', toString({v}.int_value), "
        f"{v}.value = 'double_value', toJSONString({v}.double_value), "
        f"{v}.value = 'bytes_value', toJSONString(base64Encode({v}.bytes_value)), "
        f"{v}.value = 'array_value', toJSONString(base64Encode({v}.array_value)), "
        f"{v}.value = 'kvlist_value', toJSONString(base64Encode({v}.kvlist_value)), 'null')"
    )


def _scalar_branches(v: str) -> str:
    """multiIf branches rendering the scalar kinds of AnyValue ``v`` as text."""
    return (
        f"{v}.value = 'string_value', {v}.string_value, "
        f"{v}.value = 'bool_value', if({v}.bool_value, 'true', 'false'), "
        f"{v}.value = 'int_value', toString({v}.int_value), "
        f"{v}.value = 'double_value', toString({v}.double_value), "
        f"{v}.value = 'bytes_value', base64Encode({v}.bytes_value)"
    )


def any_value_text(v: str) -> str:
    """SQL rendering an AnyValue as text: strings as is, scalars as literals, arrays/kvlists as JSON."""
    array_json = (
        f"concat('[', arrayStringConcat(arrayMap(x -> {_leaf_json('x')}, {v}.array_value.values), ','), ']')"
    )
    kvlist_json = (
        "concat('{', arrayStringConcat(arrayMap(kv -> concat(toJSONString(kv.key), ':', "
        f"{_leaf_json('kv.value')}), {v}.kvlist_value.values), ','), '}}')"
    )
    return (
        f"multiIf({_scalar_branches(v)}, "
        f"{v}.value = 'array_value', {array_json}, "
        f"{v}.value = 'kvlist_value', {kvlist_json}, '')"
    )


def scalar_value_text(v: str) -> str:
    """Like any_value_text for scalars; arrays and kvlists as ``toJSONString`` of their decoded tuples.

    Used where such values are rare and nobody reads them typed (exemplar attributes): the nested
    lambdas of the full rendering cost ~10 ms of query planning each, paid on every insert.
    """
    return (
        f"multiIf({_scalar_branches(v)}, "
        f"{v}.value = 'array_value', toJSONString({v}.array_value.values), "
        f"{v}.value = 'kvlist_value', toJSONString({v}.kvlist_value.values), '')"
    )


#: Kinds of attribute values; the numbers are the AnyValue oneof's field numbers (0: no value).
KIND_TYPE = (
    "Enum8('empty' = 0, 'string' = 1, 'bool' = 2, 'int' = 3, 'double' = 4, 'array' = 5, 'kvlist' = 6, "
    "'bytes' = 7)"
)


def value_type(v: str) -> str:
    """SQL naming an AnyValue's kind (see KIND_TYPE)."""
    return f"CAST(toInt8({v}.value), {sql_string(KIND_TYPE)})"


def attr_map(kvs: str, full: bool = True) -> str:
    """SQL turning a KeyValue array into Map(key, text); ``full=False`` renders nested values cheaply."""
    render = any_value_text("v") if full else scalar_value_text("v")
    return f"mapFromArrays({kvs}.key, arrayMap(v -> {render}, {kvs}.value))"


def attr_types(kvs: str) -> str:
    """SQL for the kinds of the non-string values of a KeyValue array (strings are the default).

    Works on the oneof indicator array as a whole: string conversions per element cost several
    times more.
    """
    kinds = f"{kvs}.value.value"
    return (
        f"mapFromArrays(arrayFilter((k, t) -> t != 'string_value', {kvs}.key, {kinds}), "
        f"CAST(arrayMap(t -> toInt8(t), arrayFilter(t -> t != 'string_value', {kinds})), "
        f"{sql_string('Array(' + KIND_TYPE + ')')}))"
    )


def _service(res_attrs: str) -> str:
    # The service name is what every page groups and filters by: it is made valid UTF-8 here (U+FFFD
    # for each invalid sequence), so a name shown is a name that finds its data. Other strings are
    # stored as sent and repaired when read (store/utf8.py).
    name = f"toValidUTF8({res_attrs}['service.name'])"
    return f"if({name} = '', 'unknown_service', {name})"


def _first_value(keys: Sequence[str], attrs: str) -> str:
    """The text of the first of ``keys`` that ``attrs`` holds (an empty array counts as absent), as an
    id: an array gives its first element.

    HTTP header attributes (``http.request.header.<name>``) are string arrays in the semantic
    conventions, rendered as JSON text; their id is the first value, not the array. The statement is
    planned on every insert, so each lookup appears once and the chosen text is bound once, by a
    lambda, rather than repeated in every place that reads it.
    """
    if not keys:
        return "''"
    texts = "[" + ", ".join(f"{attrs}[{sql_string(key)}]" for key in keys) + "]"
    chosen = f"arrayFirst(v -> v != '' AND v != '[]', {texts})"
    first = "if(JSONType(x, 1) = 'String', JSONExtractString(x, 1), JSONExtractRaw(x, 1))"
    return f"arrayMap(x -> if(startsWith(x, '[') AND isValidJSON(x), {first}, x), [{chosen}])[1]"


def _correlation(keys: Sequence[str], item_keys: str, attrs: str) -> str:
    """The item's correlation id: the first configured key in its own attributes, else its resource's.

    Most items carry none of the keys; ``hasAny`` over the key array keeps the map lookups off them.
    """
    if not keys:
        return "''"
    listed = "[" + ", ".join(sql_string(key) for key in keys) + "]"
    return f"if(hasAny({item_keys}, {listed}), {_first_value(keys, attrs)}, res_correlation)"


def _resource_scope(
    word: str,
    scope_items: str,
    item_alias: str,
    correlation_keys: Sequence[str] = (),
    scope_details: bool = False,
) -> str:
    """FROM clause flattening resource_<word> -> scope_<word> -> items; resource maps are built once
    per resource and scope maps once per scope, not once per item.

    ``scope_details`` also yields ``scope_details``, the JSON members of the span ``details`` that
    its resource and scope give ('' when they give none, the usual case); the input structure must
    declare them (TRACES_STRUCTURE does).
    """
    scope_extra = res_extra = ""
    if scope_details:
        scope_extra = f"{_scope_details('res_schema_url')} AS scope_details, "
        res_extra = "r.schema_url AS res_schema_url, "
    return f"""FROM (
    SELECT res_attrs, res_types, service_name, res_correlation, ss.scope.name AS scope_name,
           ss.scope.version AS scope_version, {scope_extra}ss.{scope_items} AS items
    FROM (
        SELECT {attr_map("r.resource.attributes")} AS res_attrs,
               {attr_types("r.resource.attributes")} AS res_types,
               {_service("res_attrs")} AS service_name,
               {_first_value(correlation_keys, "res_attrs")} AS res_correlation,
               {res_extra}r.scope_{word} AS scopes
        FROM {INPUT} ARRAY JOIN resource_{word} AS r
    ) ARRAY JOIN scopes AS ss
) ARRAY JOIN items AS {item_alias}"""


@dataclass(frozen=True)
class IngestStatement:
    """One INSERT ... SELECT over raw requests of one signal."""

    table: str
    sql: str


def _fixed(expr: str, n: int) -> str:
    return f"toFixedString({expr}, {n})"


def _json_members(values: Sequence[tuple[str, str, str]]) -> str:
    """SQL for the JSON members ``"name":value,...`` (an object without its braces) of
    ``(name, SQL expression, type to write it as)`` triples; each expression appears once."""
    parts = []
    for i, (name, expr, kind) in enumerate(values):
        parts += [
            sql_string(("," if i else "") + f'"{name}":'),
            f"toJSONString(CAST({expr}, {sql_string(kind)}))",
        ]
    return f"concat({', '.join(parts)})"


_KINDS_TEXT = "Map(String, String)"
#: the AnyValue oneof's names (see _ONEOF)
_ONEOF_NAMES = (
    "none",
    "string_value",
    "bool_value",
    "int_value",
    "double_value",
    "array_value",
    "kvlist_value",
    "bytes_value",
)


def _scope_details(res_schema_url: str) -> str:
    """The resource's and scope's members of a span's ``details`` (migration 0011), once per scope."""
    members = _json_members(
        [
            ("resource_schema_url", res_schema_url, "String"),
            ("scope_attributes", attr_map("ss.scope.attributes"), "Map(String, String)"),
            ("scope_attribute_types", attr_types("ss.scope.attributes"), _KINDS_TEXT),
            ("scope_schema_url", "ss.schema_url", "String"),
        ]
    )
    return f"if(empty(ss.scope.attributes) AND ss.schema_url = '' AND {res_schema_url} = '', '', {members})"


def _span_details() -> str:
    """A span's ``details`` JSON: '' for most spans; else its scope's members and the kinds of its
    event and link values and its link flags. Every expression appears once: the statement is planned
    on every insert."""
    # hasAny over the flattened kinds: no lambda, which is what a per-span test here can afford.
    others = ", ".join(f"'{kind}'" for kind in _ONEOF_NAMES if kind != "string_value")
    typed_events = f"hasAny(arrayFlatten(s.events.attributes.value.value), [{others}])"
    span_members = _json_members(
        [
            (
                "event_attribute_types",
                f"arrayMap(e -> {attr_types('e.attributes')}, s.events)",
                f"Array({_KINDS_TEXT})",
            ),
            (
                "link_attribute_types",
                f"arrayMap(l -> {attr_types('l.attributes')}, s.links)",
                f"Array({_KINDS_TEXT})",
            ),
            ("link_flags", "s.links.flags", "Array(UInt32)"),
        ]
    )
    return (
        f"if(scope_details = '' AND empty(s.links) AND NOT {typed_events}, '', "
        f"concat('{{', scope_details, if(scope_details = '', '', ','), {span_members}, '}}'))"
    )


def trace_statements(correlation_keys: Sequence[str]) -> list[IngestStatement]:
    """Statements storing ExportTraceServiceRequest messages."""
    sql = f"""INSERT INTO spans (timestamp, trace_id, span_id, parent_span_id, trace_state, flags, name, kind,
    service_name, resource_attributes, resource_attribute_types, scope_name, scope_version, attributes,
    attribute_types, duration, status_code, status_message, `events.timestamp`, `events.name`,
    `events.attributes`, `links.trace_id`, `links.span_id`, `links.trace_state`, `links.attributes`, details,
    dropped_attributes_count, dropped_events_count, dropped_links_count, correlation_id, tenant)
SELECT {_time("s.start_time_unix_nano")}, {_fixed("s.trace_id", 16)}, {_fixed("s.span_id", 8)},
    {_fixed("s.parent_span_id", 8)}, s.trace_state, s.flags, s.name,
    transform(s.kind, [0, 1, 2, 3, 4, 5],
              ['UNSPECIFIED', 'INTERNAL', 'SERVER', 'CLIENT', 'PRODUCER', 'CONSUMER'], 'UNSPECIFIED'),
    service_name, res_attrs, res_types, scope_name, scope_version,
    {attr_map("s.attributes")} AS span_attrs, {attr_types("s.attributes")},
    if(s.end_time_unix_nano > s.start_time_unix_nano, s.end_time_unix_nano - s.start_time_unix_nano, 0),
    transform(s.status.code, [0, 1, 2], ['UNSET', 'OK', 'ERROR'], 'UNSET'), s.status.message,
    arrayMap(e -> {_time("e.time_unix_nano")}, s.events), s.events.name,
    arrayMap(e -> {attr_map("e.attributes")}, s.events),
    arrayMap(l -> {_fixed("l.trace_id", 16)}, s.links), arrayMap(l -> {_fixed("l.span_id", 8)}, s.links),
    s.links.trace_state, arrayMap(l -> {attr_map("l.attributes")}, s.links), {_span_details()},
    s.dropped_attributes_count, s.dropped_events_count, s.dropped_links_count,
    {_correlation(correlation_keys, "s.attributes.key", "span_attrs")}, {TENANT}
{_resource_scope("spans", "spans", "s", correlation_keys, scope_details=True)}"""
    return [IngestStatement("spans", sql)]


def log_statements(correlation_keys: Sequence[str]) -> list[IngestStatement]:
    """Statements storing ExportLogsServiceRequest messages."""
    sql = f"""INSERT INTO logs (timestamp, observed_timestamp, trace_id, span_id, flags, severity_text,
    severity_number, service_name, body, body_type, event_name, resource_attributes, resource_attribute_types,
    scope_name, scope_version, attributes, attribute_types, dropped_attributes_count, correlation_id, tenant)
SELECT {_time("if(l.time_unix_nano != 0, l.time_unix_nano, l.observed_time_unix_nano)")},
    {_time("l.observed_time_unix_nano")}, {_fixed("l.trace_id", 16)}, {_fixed("l.span_id", 8)}, l.flags,
    l.severity_text, toUInt8(greatest(least(l.severity_number, 24), 0)), service_name,
    {any_value_text("l.body")}, {value_type("l.body")}, l.event_name, res_attrs, res_types, scope_name,
    scope_version, {attr_map("l.attributes")} AS log_attrs, {attr_types("l.attributes")},
    l.dropped_attributes_count, {_correlation(correlation_keys, "l.attributes.key", "log_attrs")}, {TENANT}
{_resource_scope("logs", "log_records", "l", correlation_keys)}"""
    return [IngestStatement("logs", sql)]


_METRIC_COLUMNS = (
    "service_name, resource_attributes, scope_name, scope_version, metric_name, metric_description, "
    "metric_unit, attributes, start_timestamp, timestamp, flags, tenant"
)


def _metric_values(point: str) -> str:
    return (
        f"service_name, res_attrs, scope_name, scope_version, m.name, m.description, m.unit, "
        f"{attr_map(point + '.attributes')}, {_time(point + '.start_time_unix_nano')}, "
        f"{_time(point + '.time_unix_nano')}, {point}.flags, {TENANT}"
    )


def _exemplar_values(point: str) -> str:
    ex = f"{point}.exemplars"
    return (
        f"arrayMap(x -> {attr_map('x.filtered_attributes', full=False)}, {ex}), "
        f"arrayMap(x -> {_time('x.time_unix_nano')}, {ex}), "
        f"arrayMap(x -> if(x.value = 'as_int', toFloat64(x.as_int), x.as_double), {ex}), "
        f"arrayMap(x -> {_fixed('x.span_id', 8)}, {ex}), arrayMap(x -> {_fixed('x.trace_id', 16)}, {ex})"
    )


_EXEMPLAR_COLUMNS = (
    "`exemplars.filtered_attributes`, `exemplars.timestamp`, `exemplars.value`, `exemplars.span_id`, "
    "`exemplars.trace_id`"
)


def metric_statements() -> list[IngestStatement]:
    """Statements storing ExportMetricsServiceRequest messages, one per point type."""
    number = "if(p.value = 'as_int', toFloat64(p.as_int), p.as_double)"
    per_type = {
        "metrics_gauge": (
            "gauge",
            f"value, {_EXEMPLAR_COLUMNS}",
            f"{number}, {_exemplar_values('p')}",
        ),
        "metrics_sum": (
            "sum",
            f"value, aggregation_temporality, is_monotonic, {_EXEMPLAR_COLUMNS}",
            f"{number}, m.sum.aggregation_temporality, m.sum.is_monotonic, {_exemplar_values('p')}",
        ),
        "metrics_histogram": (
            "histogram",
            f"count, sum, bucket_counts, explicit_bounds, min, max, aggregation_temporality, {_EXEMPLAR_COLUMNS}",
            "p.count, p.sum, p.bucket_counts, p.explicit_bounds, p.min, p.max, "
            f"m.histogram.aggregation_temporality, {_exemplar_values('p')}",
        ),
        "metrics_exponential_histogram": (
            "exponential_histogram",
            "count, sum, scale, zero_count, zero_threshold, positive_offset, positive_bucket_counts, "
            f"negative_offset, negative_bucket_counts, min, max, aggregation_temporality, {_EXEMPLAR_COLUMNS}",
            "p.count, p.sum, p.scale, p.zero_count, p.zero_threshold, p.positive.offset, "
            "p.positive.bucket_counts, p.negative.offset, p.negative.bucket_counts, p.min, p.max, "
            f"m.exponential_histogram.aggregation_temporality, {_exemplar_values('p')}",
        ),
        "metrics_summary": (
            "summary",
            "count, sum, quantiles, quantile_values",
            "p.count, p.sum, p.quantile_values.quantile, p.quantile_values.value",
        ),
    }
    statements = []
    for table, (field, columns, values) in per_type.items():
        sql = f"""INSERT INTO {table} ({_METRIC_COLUMNS}, {columns})
SELECT {_metric_values("p")}, {values}
{_resource_scope("metrics", "metrics", "m")}
ARRAY JOIN m.{field}.data_points AS p"""
        statements.append(IngestStatement(table, sql))
    return statements


@cache
def schema_text() -> str:
    """The ``.proto`` schema the engine decodes requests with."""
    return resources.files("store.sql").joinpath("otlp.proto").read_text(encoding="utf-8")


#: signal -> (message name, input structure)
SIGNALS = {
    "traces": ("ExportTraceServiceRequest", TRACES_STRUCTURE),
    "logs": ("ExportLogsServiceRequest", LOGS_STRUCTURE),
    "metrics": ("ExportMetricsServiceRequest", METRICS_STRUCTURE),
}


def statements_for(signal: str, correlation_keys: Sequence[str]) -> list[IngestStatement]:
    """All statements that store one signal's requests."""
    if signal == "traces":
        return trace_statements(correlation_keys)
    if signal == "logs":
        return log_statements(correlation_keys)
    if signal == "metrics":
        return metric_statements()
    raise ValueError(f"unknown signal {signal!r}")


def for_tenant(sql: str, tenant: str) -> str:
    """``sql`` storing its rows under ``tenant`` (checked: it is inlined as a literal)."""
    return sql.replace(TENANT, sql_string(check_tenant(tenant)) if tenant else "''")


#: Requests decoded per block of input. Each ARRAY JOIN level copies its block, so a statement read
#: as one block held ~3.8 KB per span while it ran (4.5 KB with the views); blocks of 4 MiB of
#: requests hold ~1.3 KB, and the rows are joined into full-size parts again before they are written
#: (min_insert_block_size_*), so parts and views see the blocks they saw before.
INPUT_BLOCK_BYTES = 4 << 20


def format_settings(signal: str) -> dict[str, str | int]:
    """Settings that make the engine read ``signal``'s requests with our schema."""
    message, _ = SIGNALS[signal]
    return {
        "format_schema_source": "string",
        "format_schema": schema_text(),
        "format_schema_message_name": message,
        "input_format_protobuf_oneof_presence": 1,
        "input_format_max_block_size_bytes": INPUT_BLOCK_BYTES,
        # One stream: the input blocks reach the table in file order, so a replay cuts the same rows
        # into the same parts, and each part's deduplication token names the same rows. (Parallel
        # streams would interleave them by timing.) Batches are written by several statements at once.
        "max_threads": 1,
        "deduplicate_blocks_in_dependent_materialized_views": 1,
    }
