"""Read queries of the store. Parameters use the engine's ``{name:Type}`` placeholders."""

# The spans of one trace, or of a set of traces (TRACE_IN). Both conditions are on the key of the
# projection by_trace_offset (migration 0014): the engine looks the trace id up there, gets the rows'
# positions in each part and reads only the granules that hold them, with no time bounds first. The
# projection is used from 1M rows on (min_table_rows_to_use_projection_index); smaller tables are scanned.
# What every read of whole spans starts with (TRACE_SPANS, SPAN_DETAIL). Aliases must not reuse
# column names: ClickHouse would apply them in WHERE too.
SPAN_HEAD = """
    lower(hex(trace_id)) AS trace_hex,
    lower(hex(span_id)) AS span_hex,
    if(parent_span_id = toFixedString('', 8), '', lower(hex(parent_span_id))) AS parent_hex,
    trace_state, flags, name, kind, service_name,
    toString(toUnixTimestamp64Nano(timestamp)) AS start_time_unix_nano,
    duration,
"""
TRACE_SPANS = """SELECT""" + SPAN_HEAD + """    status_code, status_message,
    -- Enum kinds arrive in Arrow as numbers; as text they name themselves.
    resource_attributes, CAST(resource_attribute_types, 'Map(String, String)') AS resource_kinds,
    -- The rare parts live in one JSON column (migration 0011); absent or malformed, they read empty.
    JSONExtractString(details, 'resource_schema_url') AS resource_schema_url,
    scope_name, scope_version,
    JSONExtract(details, 'scope_attributes', 'Map(String, String)') AS scope_attributes,
    JSONExtract(details, 'scope_attribute_types', 'Map(String, String)') AS scope_kinds,
    JSONExtractString(details, 'scope_schema_url') AS scope_schema_url,
    attributes, CAST(attribute_types, 'Map(String, String)') AS kinds,
    arrayMap(t -> toString(toUnixTimestamp64Nano(t)), `events.timestamp`) AS event_times,
    `events.name` AS event_names,
    `events.attributes` AS event_attributes,
    arrayResize(JSONExtract(details, 'event_attribute_types', 'Array(Map(String, String))'),
                length(`events.name`)) AS event_kinds,
    arrayMap(t -> lower(hex(t)), `links.trace_id`) AS link_trace_ids,
    arrayMap(s -> lower(hex(s)), `links.span_id`) AS link_span_ids,
    `links.trace_state` AS link_trace_states,
    arrayResize(JSONExtract(details, 'link_flags', 'Array(UInt32)'), length(`links.span_id`)) AS link_flags,
    `links.attributes` AS link_attributes,
    arrayResize(JSONExtract(details, 'link_attribute_types', 'Array(Map(String, String))'),
                length(`links.span_id`)) AS link_kinds,
    dropped_attributes_count, dropped_events_count, dropped_links_count,
    correlation_id
FROM spans
WHERE trace_id = unhex({trace_id:String})
ORDER BY timestamp, span_id
"""

PING = "SELECT 1 AS ok"

# The embedded engine's allocator (jemalloc) keeps freed pages for seconds after a flush; this
# returns them to the kernel at once (collector/admission.py asks for it when memory is high).
RELEASE_MEMORY = "SYSTEM JEMALLOC PURGE"

# -- schema migrations -------------------------------------------------------------------------

MIGRATIONS_TABLE_EXISTS = """
SELECT count() AS n FROM system.tables WHERE database = currentDatabase() AND name = 'schema_migrations'
"""

APPLIED_MIGRATIONS = "SELECT DISTINCT version FROM schema_migrations"

RECORD_MIGRATION = "INSERT INTO schema_migrations (version, name) VALUES ({version:UInt32}, {name:String})"

TABLE_ENGINE = """
SELECT engine_full FROM system.tables WHERE database = currentDatabase() AND name = {table:String}
"""

# Table and column are our constants (store.migrations.TTL_COLUMNS); DDL takes no parameters.
MODIFY_TTL = "ALTER TABLE {table} MODIFY TTL toDateTime({column}) + toIntervalDay({days})"
REMOVE_TTL = "ALTER TABLE {table} REMOVE TTL"

# -- trace search and the Jaeger query API (store/search.py) -----------------------------------
# Times are unix nanoseconds (Int64); every query below is bounded by a timestamp range, which prunes
# day partitions and, with the service, granules of the (service_name, timestamp) key.

# Trace ids with at least ONE span matching every criterion (Jaeger's semantics), newest first.
# {service}: hex, '' for any; {operation}: hex, '' for any; {tags}: hex of a JSON array of [key, value]
# pairs. A tag matches span or resource attributes, event attributes, the event name ('event'), or the
# span fields Jaeger shows as tags: span.kind, otel.status_code, error=true, otel.status_description,
# otel.scope.name/version, w3c.tracestate. mapContains keeps an empty value from matching a missing key.
SEARCH_TRACE_IDS = """
SELECT lower(hex(trace_id)) AS trace_hex, toUnixTimestamp64Nano(max(timestamp)) AS latest
FROM spans
-- PREWHERE: the narrow columns first; the attribute maps are read only for rows that pass them.
PREWHERE timestamp >= fromUnixTimestamp64Nano({start:Int64}) AND timestamp <= fromUnixTimestamp64Nano({end:Int64})
  AND ({service:String} = '' OR service_name = {service:String})
  AND ({operation:String} = '' OR name = {operation:String})
  AND duration >= {min_duration:UInt64} AND duration <= {max_duration:UInt64}
WHERE arrayAll(
      t -> (mapContains(attributes, t.1) AND attributes[t.1] = t.2)
        OR (mapContains(resource_attributes, t.1) AND resource_attributes[t.1] = t.2)
        OR (t.1 = 'span.kind' AND lower(kind) = t.2)
        OR (t.1 = 'otel.status_code' AND status_code = t.2)
        OR (t.1 = 'error' AND t.2 = 'true' AND status_code = 'ERROR')
        OR (t.1 = 'otel.status_description' AND status_message = t.2)
        OR (t.1 = 'otel.scope.name' AND scope_name = t.2)
        OR (t.1 = 'otel.scope.version' AND scope_version = t.2)
        OR (t.1 = 'w3c.tracestate' AND trace_state = t.2)
        OR (t.1 = 'event' AND has(`events.name`, t.2))
        OR arrayExists(m -> mapContains(m, t.1) AND m[t.1] = t.2, `events.attributes`),
      arrayZip({tag_keys:Array(String)}, {tag_values:Array(String)}))
GROUP BY trace_id
ORDER BY latest DESC, trace_hex
LIMIT {limit:UInt32}
"""

# {trace_ids}: lower-case hex ids. An IN over a subquery is what the projection's key can use (has()
# over the array would read every part whole: 23 s against 0.1 s for 1000 ids over 3M spans). The set is
# built when the query runs, so EXPLAIN does not show the projection for it; the engine still uses it.
TRACE_IN = (
    "trace_id IN (SELECT arrayJoin(arrayMap(x -> toFixedString(unhex(x), 16), {trace_ids:Array(String)})))"
)

# The spans of several traces in one read, in the shape of TRACE_SPANS.
TRACES_SPANS = (
    TRACE_SPANS[: TRACE_SPANS.index("FROM spans")]
    + f"""FROM spans
WHERE {TRACE_IN}
ORDER BY trace_hex, timestamp, span_id
"""
)

SERVICES = """
SELECT service_name
FROM spans
WHERE timestamp >= fromUnixTimestamp64Nano({start:Int64}) AND timestamp <= fromUnixTimestamp64Nano({end:Int64})
GROUP BY service_name
ORDER BY service_name
"""

# {kind}: a stored kind ('SERVER', ...) or '' for any.
OPERATIONS = """
SELECT name, kind
FROM spans
WHERE service_name = {service:String}
  AND timestamp >= fromUnixTimestamp64Nano({start:Int64}) AND timestamp <= fromUnixTimestamp64Nano({end:Int64})
  AND ({kind:String} = '' OR kind = {kind:String})
GROUP BY name, kind
ORDER BY name, kind
"""

# -- the trace view's outline and find (store/traces.py) ---------------------------------------
# What a waterfall row needs and nothing more: no attribute maps, so a span with a million tags costs
# what any other span costs. Found through the by_trace_offset projection like TRACE_SPANS.
TRACE_OUTLINE = """SELECT
    lower(hex(span_id)) AS span_hex,
    if(parent_span_id = toFixedString('', 8), '', lower(hex(parent_span_id))) AS parent_hex,
    service_name, name, CAST(kind, 'String') AS kind_name,
    toUnixTimestamp64Nano(timestamp) AS start_ns, duration,
    CAST(status_code, 'String') AS status, length(`events.name`) AS event_count
FROM spans
WHERE trace_id = unhex({trace_id:String})
ORDER BY timestamp, span_id
"""

# Spans of one trace with {needle} (lower case) in their service, name, id, status message, an
# attribute key or value (span or resource), or an event name: case-insensitive substring, as Jaeger's
# find. The engine scans the maps; only the matching ids come back.
TRACE_FIND = """SELECT lower(hex(span_id)) AS span_hex
FROM spans
WHERE trace_id = unhex({trace_id:String})
  AND (positionCaseInsensitiveUTF8(service_name, {needle:String}) > 0
    OR positionCaseInsensitiveUTF8(name, {needle:String}) > 0
    OR position(lower(hex(span_id)), {needle:String}) > 0
    OR positionCaseInsensitiveUTF8(status_message, {needle:String}) > 0
    OR arrayExists(x -> positionCaseInsensitiveUTF8(x, {needle:String}) > 0,
                   arrayConcat(mapKeys(attributes), mapValues(attributes),
                               mapKeys(resource_attributes), mapValues(resource_attributes), `events.name`)))
"""

# -- one span (store/traces.py get_span) -------------------------------------------------------
# One span of one trace, found through the by_trace_offset projection like TRACE_SPANS, with the engine doing
# the capping so that a span with a million attributes moves only what a page shows:
#   {attr_limit}: span and resource attributes, the first N by key (arrayPartialSort sorts only those N);
#   {item_limit}: the first N events and links, as stored;
#   {value_limit}: every attribute value and the status message cut to N characters, with the full
#   length of a cut one reported (attr_lengths, the *_cut maps of key -> length).
# The totals come along (length() of a Map or Nested column reads only its sizes). Kinds are stored for
# non-string values only; the first {attr_limit} kinds by key hold those of the shown keys, as the kinds'
# keys are a subset of the attributes' keys. WITH expressions are not returned: full values stay in the
# engine. Several rows share a span id only through a duplicate delivery: the first one is read.
SPAN_DETAIL = """WITH
    arraySlice(arrayPartialSort({attr_limit:UInt32}, arrayZip(mapKeys(attributes), mapValues(attributes))),
               1, {attr_limit:UInt32}) AS attr_pairs,
    arraySlice(arrayPartialSort({attr_limit:UInt32}, arrayZip(mapKeys(resource_attributes),
               mapValues(resource_attributes))), 1, {attr_limit:UInt32}) AS res_pairs,
    CAST(attribute_types, 'Map(String, String)') AS kinds_all,
    CAST(resource_attribute_types, 'Map(String, String)') AS res_kinds_all,
    arraySlice(arrayPartialSort({attr_limit:UInt32}, arrayZip(mapKeys(kinds_all), mapValues(kinds_all))),
               1, {attr_limit:UInt32}) AS kind_pairs,
    arraySlice(arrayPartialSort({attr_limit:UInt32}, arrayZip(mapKeys(res_kinds_all), mapValues(res_kinds_all))),
               1, {attr_limit:UInt32}) AS res_kind_pairs,
    arraySlice(`events.attributes`, 1, {item_limit:UInt32}) AS event_maps,
    arraySlice(`links.attributes`, 1, {item_limit:UInt32}) AS link_maps
SELECT""" + SPAN_HEAD + """    status_code,
    substringUTF8(status_message, 1, {value_limit:UInt32}) AS status_text,
    lengthUTF8(status_message) AS status_length,
    length(attributes) AS attribute_count,
    arrayMap(p -> p.1, attr_pairs) AS attr_keys,
    arrayMap(p -> substringUTF8(p.2, 1, {value_limit:UInt32}), attr_pairs) AS attr_values,
    arrayMap(p -> lengthUTF8(p.2), attr_pairs) AS attr_lengths,
    arrayMap(p -> p.1, kind_pairs) AS kind_keys,
    arrayMap(p -> p.2, kind_pairs) AS kind_values,
    length(resource_attributes) AS resource_attribute_count,
    arrayMap(p -> p.1, res_pairs) AS res_keys,
    arrayMap(p -> substringUTF8(p.2, 1, {value_limit:UInt32}), res_pairs) AS res_values,
    arrayMap(p -> lengthUTF8(p.2), res_pairs) AS res_lengths,
    arrayMap(p -> p.1, res_kind_pairs) AS res_kind_keys,
    arrayMap(p -> p.2, res_kind_pairs) AS res_kind_values,
    JSONExtractString(details, 'resource_schema_url') AS resource_schema_url,
    scope_name, scope_version,
    JSONExtract(details, 'scope_attributes', 'Map(String, String)') AS scope_attributes,
    JSONExtract(details, 'scope_attribute_types', 'Map(String, String)') AS scope_kinds,
    JSONExtractString(details, 'scope_schema_url') AS scope_schema_url,
    length(`events.name`) AS event_count,
    arrayMap(t -> toString(toUnixTimestamp64Nano(t)), arraySlice(`events.timestamp`, 1, {item_limit:UInt32}))
        AS event_times,
    arraySlice(`events.name`, 1, {item_limit:UInt32}) AS event_names,
    arrayMap(m -> mapApply((k, v) -> (k, substringUTF8(v, 1, {value_limit:UInt32})), m), event_maps)
        AS event_attributes,
    arrayMap(m -> mapApply((k, v) -> (k, lengthUTF8(v)), mapFilter((k, v) -> lengthUTF8(v) > {value_limit:UInt32}, m)),
             event_maps) AS event_cut,
    arraySlice(arrayResize(JSONExtract(details, 'event_attribute_types', 'Array(Map(String, String))'),
                           length(`events.name`)), 1, {item_limit:UInt32}) AS event_kinds,
    length(`links.span_id`) AS link_count,
    arrayMap(t -> lower(hex(t)), arraySlice(`links.trace_id`, 1, {item_limit:UInt32})) AS link_trace_ids,
    arrayMap(s -> lower(hex(s)), arraySlice(`links.span_id`, 1, {item_limit:UInt32})) AS link_span_ids,
    arraySlice(`links.trace_state`, 1, {item_limit:UInt32}) AS link_trace_states,
    arraySlice(arrayResize(JSONExtract(details, 'link_flags', 'Array(UInt32)'), length(`links.span_id`)),
               1, {item_limit:UInt32}) AS link_flags,
    arrayMap(m -> mapApply((k, v) -> (k, substringUTF8(v, 1, {value_limit:UInt32})), m), link_maps)
        AS link_attributes,
    arrayMap(m -> mapApply((k, v) -> (k, lengthUTF8(v)), mapFilter((k, v) -> lengthUTF8(v) > {value_limit:UInt32}, m)),
             link_maps) AS link_cut,
    arraySlice(arrayResize(JSONExtract(details, 'link_attribute_types', 'Array(Map(String, String))'),
                           length(`links.span_id`)), 1, {item_limit:UInt32}) AS link_kinds,
    dropped_attributes_count, dropped_events_count, dropped_links_count,
    correlation_id
FROM spans
WHERE trace_id = unhex({trace_id:String}) AND span_id = unhex({span_id:String})
ORDER BY timestamp
LIMIT 1
"""

# What a span's page says about its trace: the trace's first start and last end (the "+offset" of the
# span, the time bounds of its logs) and the parent's service and name when the parent is stored. Reads
# the narrow columns of the trace's spans only ({parent_id}: hex, '' for a root).
SPAN_TRACE_CONTEXT = """SELECT
    min(toUnixTimestamp64Nano(timestamp)) AS trace_start,
    max(toUnixTimestamp64Nano(timestamp) + toInt64(duration)) AS trace_end,
    countIf({parent_id:String} != '' AND span_id = unhex({parent_id:String})) AS parent_found,
    anyIf(service_name, {parent_id:String} != '' AND span_id = unhex({parent_id:String})) AS parent_service,
    anyIf(name, {parent_id:String} != '' AND span_id = unhex({parent_id:String})) AS parent_name
FROM spans
WHERE trace_id = unhex({trace_id:String})
"""
