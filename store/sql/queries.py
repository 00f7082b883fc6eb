"""Read queries of the store. Parameters use the engine's ``{name:Type}`` placeholders."""

TRACE_BOUNDS = """
SELECT toUnixTimestamp64Nano(min(start)) AS start, toUnixTimestamp64Nano(max(end)) AS end, count() AS n
FROM trace_index
WHERE trace_id = unhex({trace_id:String})
"""

# Spans of one trace; the time bounds from trace_index prune partitions and granules.
TRACE_SPANS = """
SELECT
    -- Aliases must not reuse column names: ClickHouse would apply them in WHERE too.
    lower(hex(trace_id)) AS trace_hex,
    lower(hex(span_id)) AS span_hex,
    if(parent_span_id = toFixedString('', 8), '', lower(hex(parent_span_id))) AS parent_hex,
    trace_state, flags, name, kind, service_name,
    toString(toUnixTimestamp64Nano(timestamp)) AS start_time_unix_nano,
    duration,
    status_code, status_message,
    -- Enum kinds arrive in Arrow as numbers; as text they name themselves.
    resource_attributes, CAST(resource_attribute_types, 'Map(String, String)') AS resource_kinds,
    scope_name, scope_version, attributes, CAST(attribute_types, 'Map(String, String)') AS kinds,
    arrayMap(t -> toString(toUnixTimestamp64Nano(t)), `events.timestamp`) AS event_times,
    `events.name` AS event_names,
    `events.attributes` AS event_attributes,
    arrayMap(t -> lower(hex(t)), `links.trace_id`) AS link_trace_ids,
    arrayMap(s -> lower(hex(s)), `links.span_id`) AS link_span_ids,
    `links.trace_state` AS link_trace_states,
    `links.attributes` AS link_attributes,
    dropped_attributes_count, dropped_events_count, dropped_links_count,
    correlation_id
FROM spans
WHERE trace_id = unhex({trace_id:String})
  AND timestamp >= fromUnixTimestamp64Nano({start:Int64}) AND timestamp <= fromUnixTimestamp64Nano({end:Int64})
ORDER BY timestamp, span_id
"""

PING = "SELECT 1 AS ok"

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
