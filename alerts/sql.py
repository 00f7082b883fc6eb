"""SQL of the alerts package: the alerting state (``alerts/store.py``, at the end) and burn
attribution (``alerts/attribution.py``): which parts of an SLO's traffic held the bad
events of a window, and example failing traces with their error logs.

The SLI's definitions (its requests, what makes one bad, its group values) are the fragments of
``slo/sql.py``, with the parameters ``slo/sli.py`` builds for them (``span_params``, ``log_params``,
``metric_params``), so attribution counts exactly what the SLI counts. Every value is a
``{name:Type}`` parameter; only our own constants and fragments are formatted in. Every statement
is bounded by a time range and a LIMIT.

Parameters added here: ``{group:Array(String)}`` (the SLO instance's group values, in ``group_by``
order; ``[]`` without ``group_by``), ``{top:UInt32}``, ``{examples:UInt32}``, and for the lookups by
trace ``{trace_ids:Array(String)}`` (lower-case hex), ``{span_ids:Array(String)}``.
"""

from __future__ import annotations

from functools import cache

from slo.sql import (
    LOG_TOTAL_PREWHERE,
    METRIC_POINTS,
    RAW_GROUP,
    RAW_SERVICE_RANGE,
    ROLL_UP_BAD_COLUMNS,
    ROLL_UP_GROUP,
    ROLL_UP_ROWS,
    SPAN_IS_BAD,
    SPAN_IS_REQUEST,
    ZERO_SPAN,
    log_is_bad,
    log_total_where,
)
from store.sql.queries import TRACE_IN

ZERO_TRACE = "toFixedString('', 16)"

# -- contributors -------------------------------------------------------------------------------
# One row per (operation, http_route, service_version) of the instance's requests in the window,
# most bad first. The window's totals and the number of parts with bad events are window functions,
# computed before the LIMIT: the caller learns what the top rows leave out without a second read.
# http_route and service_version are read as red_1m's view reads them (the span's http.route, the
# resource's service.version), so raw spans and the roll-up give the same rows.
_RANKED = """
SELECT operation, http_route, service_version, n_total, n_bad,
    sum(n_total) OVER () AS window_total, sum(n_bad) OVER () AS window_bad,
    countIf(n_bad > 0) OVER () AS n_parts{extra}
FROM (
    SELECT operation, http_route, service_version, {sums}
    FROM ({rows})
    WHERE grp = {{group:Array(String)}}
    GROUP BY operation, http_route, service_version
)
ORDER BY n_bad DESC, n_total DESC, operation, http_route, service_version
LIMIT {{top:UInt32}}
"""

CONTRIBUTORS_RAW = _RANKED.format(
    extra="",
    sums="count() AS n_total, countIf(is_bad) AS n_bad",
    rows=f"""
        SELECT name AS operation, attributes['http.route'] AS http_route,
            resource_attributes['service.version'] AS service_version, {RAW_GROUP} AS grp,
            {SPAN_IS_BAD} AS is_bad
        FROM spans
        PREWHERE {RAW_SERVICE_RANGE}
        WHERE {SPAN_IS_REQUEST}
    """,
)

# n_detailed < n_total: the window has minutes rolled up before migration 0007, whose latency
# details are missing; the caller then reads raw spans (as the SLI does for those minutes).
CONTRIBUTORS_ROLL_UP = _RANKED.format(
    extra=", sum(n_detailed) OVER () AS window_detailed",
    sums="sum(requests) AS n_total, sum(row_bad) AS n_bad, sum(detailed_requests) AS n_detailed",
    rows=f"""
        SELECT operation, http_route, service_version, {ROLL_UP_GROUP} AS grp, requests, detailed_requests,
            {ROLL_UP_BAD_COLUMNS}
        FROM red_1m
        WHERE {ROLL_UP_ROWS}
    """,
)

# -- example failing traces ----------------------------------------------------------------------
# Most recent first, one row per trace (a trace may hold several bad requests of the service).

#: The SLI's bad request spans of the instance.
SPAN_EXAMPLES = f"""
SELECT lower(hex(trace_id)) AS trace_hex, lower(hex(span_id)) AS span_hex, name AS operation
FROM spans
PREWHERE {RAW_SERVICE_RANGE}
WHERE {SPAN_IS_REQUEST}
  AND ({SPAN_IS_BAD})
  AND {RAW_GROUP} = {{group:Array(String)}}
  AND trace_id != {ZERO_TRACE}
ORDER BY timestamp DESC, trace_hex
LIMIT 1 BY trace_id
LIMIT {{examples:UInt32}}
"""


@cache
def log_examples(total_tokens: int, bad_tokens: int) -> str:
    """The SLI's bad log records of the instance that carry a trace id, with their body as a line."""
    return f"""
SELECT lower(hex(trace_id)) AS trace_hex, lower(hex(span_id)) AS span_hex, {_LINE} AS line
FROM logs
PREWHERE {LOG_TOTAL_PREWHERE}
WHERE {log_total_where(total_tokens)}
  AND ({log_is_bad(bad_tokens)})
  AND {RAW_GROUP} = {{group:Array(String)}}
  AND trace_id != {ZERO_TRACE}
ORDER BY timestamp DESC, trace_hex
LIMIT 1 BY trace_id
LIMIT {{examples:UInt32}}
"""


# Exemplars of the points the SLI reads for the window: a point at t reports the minute before t, so
# (start, end]. {min_value_on}: only exemplars whose measurement is above {min_value} (a histogram
# SLI's threshold: those observations are the bad ones).
_EXEMPLARS = """
SELECT lower(hex(ex_trace)) AS trace_hex, lower(hex(ex_span)) AS span_hex
FROM {table}
ARRAY JOIN `exemplars.trace_id` AS ex_trace, `exemplars.span_id` AS ex_span,
    `exemplars.timestamp` AS ex_time, `exemplars.value` AS ex_value
WHERE {points}{extra}
  AND timestamp > fromUnixTimestamp64Nano({{start_ns:Int64}})
  AND {group} = {{group:Array(String)}}
  AND ex_trace != {zero}
  AND ({{min_value_on:UInt8}} = 0 OR ex_value > {{min_value:Float64}})
ORDER BY ex_time DESC, trace_hex
LIMIT 1 BY ex_trace
LIMIT {{examples:UInt32}}
"""
SUM_EXEMPLARS = _EXEMPLARS.format(
    table="metrics_sum", points=METRIC_POINTS, extra="\n  AND is_monotonic", group=RAW_GROUP, zero=ZERO_TRACE
)
HISTOGRAM_EXEMPLARS = _EXEMPLARS.format(
    table="metrics_histogram", points=METRIC_POINTS, extra="", group=RAW_GROUP, zero=ZERO_TRACE
)

# -- what the examples show ----------------------------------------------------------------------
_RANGE = (
    "timestamp >= fromUnixTimestamp64Nano({start_ns:Int64}) "
    "AND timestamp < fromUnixTimestamp64Nano({end_ns:Int64})"
)
# One line per record: whitespace (a stack trace's newlines) collapsed, cut at {max_chars} with '…'.
_FLAT = "trim(replaceRegexpAll(body, '[[:space:]]+', ' '))"
_LINE = (
    f"if(lengthUTF8({_FLAT}) > {{max_chars:UInt32}}, "
    f"concat(substringUTF8({_FLAT}, 1, {{max_chars:UInt32}} - 1), '…'), {_FLAT})"
)

#: Log records of the traces (any service) at or above {min_severity}, oldest first, {lines} each.
ERROR_LOGS = f"""
SELECT lower(hex(trace_id)) AS trace_hex, {_LINE} AS line
FROM logs
WHERE {TRACE_IN}
  AND {_RANGE}
  AND severity_number >= {{min_severity:UInt8}}
ORDER BY trace_id, timestamp, line
LIMIT {{lines:UInt32}} BY trace_id
LIMIT {{max_rows:UInt32}}
"""

#: The spans named by (trace, span) of log records and exemplars, and the traces' root spans: the
#: operation an example shows.
EXAMPLE_SPANS = f"""
SELECT lower(hex(trace_id)) AS trace_hex, lower(hex(span_id)) AS span_hex, name AS operation,
    parent_span_id = {ZERO_SPAN} AS is_root
FROM spans
WHERE {TRACE_IN}
  AND {_RANGE}
  AND (span_id IN (SELECT arrayJoin(arrayMap(x -> toFixedString(unhex(x), 8), {{span_ids:Array(String)}})))
       OR parent_span_id = {ZERO_SPAN})
ORDER BY timestamp, trace_hex, span_hex
LIMIT {{max_rows:UInt32}}
"""


# -- alerting state (alerts/store.py, tables of migration 0009) -------------------------------------


ALERT_STATES = """
SELECT id, slo, severity, group_labels, state,
       toUnixTimestamp(firing_since) AS firing_since_s, toUnixTimestamp(resolved_at) AS resolved_at_s,
       toUnixTimestamp(keep_firing_since) AS keep_firing_since_s, toUnixTimestamp(updated_at) AS updated_at_s
FROM alert_states FINAL
ORDER BY id
"""

TRANSITIONS = """
SELECT alert_id, slo, severity, group_labels, toUnixTimestamp(at) AS at_s, from_state, to_state
FROM alert_transitions FINAL
WHERE alert_id IN {ids:Array(String)}
ORDER BY at_s, alert_id
LIMIT {limit:UInt32}
"""

DISPATCH_STATE = "SELECT state FROM dispatch_state FINAL WHERE name = {name:String}"

_INCIDENT_COLUMNS = """id, receiver, group_labels, status, toUnixTimestamp(opened_at) AS opened_at_s,
       toUnixTimestamp(closed_at) AS closed_at_s, alert_ids, slos, services, severities,
       toUnixTimestamp(updated_at) AS updated_at_s"""

INCIDENTS = f"""
SELECT {_INCIDENT_COLUMNS}
FROM incidents FINAL
WHERE {{status:String}} = '' OR status = {{status:String}}
ORDER BY status = 'open' DESC, opened_at DESC, id
LIMIT {{limit:UInt32}}
"""

INCIDENT = f"SELECT {_INCIDENT_COLUMNS} FROM incidents FINAL WHERE id = {{id:String}}"

KNOWN_NOTIFICATIONS = "SELECT DISTINCT id FROM notifications WHERE id IN {ids:Array(String)}"

INCIDENT_NOTIFICATIONS = """
SELECT id, receiver, kind, toUnixTimestamp(at) AS at_s, alert_ids, payload
FROM notifications FINAL
WHERE incident_id = {id:String}
ORDER BY at_s, kind, receiver
LIMIT 10000
"""

INCIDENT_DELIVERIES = """
SELECT notification_id, attempt, toUnixTimestamp64Milli(at) AS at_ms, ok, error
FROM deliveries
WHERE incident_id = {id:String}
ORDER BY notification_id, attempt, at_ms
LIMIT 100000
"""

DELIVERED = (
    "SELECT DISTINCT notification_id FROM deliveries WHERE ok AND notification_id IN {ids:Array(String)}"
)

# updated_at_ms: when the newest version was written (an expiry writes one: alerts/store.py).
SILENCES = """
SELECT id, matchers, toUnixTimestamp(starts_at) AS starts_at_s, toUnixTimestamp(ends_at) AS ends_at_s,
       created_by, comment, toUnixTimestamp64Milli(updated_at) AS updated_at_ms
FROM silences FINAL
ORDER BY starts_at_s, id
LIMIT 100000
"""

# Since migration 0013 an incident has one row per acknowledgement (ack_id in the sorting key): the
# latest of each incident is what stops its repeats and what the lists show.
ACKS = """
SELECT incident_id, toUnixTimestamp64Milli(at) AS at_ms, by, comment
FROM incident_acks FINAL
ORDER BY incident_id, at DESC, ack_id DESC
LIMIT 1 BY incident_id
LIMIT 100000
"""

INCIDENT_ACKS = """
SELECT toUnixTimestamp64Milli(at) AS at_ms, by, comment
FROM incident_acks FINAL
WHERE incident_id = {id:String}
ORDER BY at, ack_id
LIMIT 10000
"""

# The oldest live evaluator leads; argMin over (started_at, id) so every evaluator picks the same one.
LEADER = """
SELECT evaluator_id
FROM evaluator_leases FINAL
WHERE heartbeat_at >= fromUnixTimestamp64Milli({since_ms:Int64})
ORDER BY started_at, evaluator_id
LIMIT 1
"""

# A graceful stop gives the lease up at once (a lightweight delete), so a restarted or second
# evaluator does not wait lease_ttl_s before it leads.
RELEASE_LEASE = "DELETE FROM evaluator_leases WHERE evaluator_id = {id:String}"
# An exclusive evaluator (the embedded store: one process per data directory) takes over at start-up
# from whatever a crashed predecessor left.
RELEASE_OTHER_LEASES = "DELETE FROM evaluator_leases WHERE evaluator_id != {id:String}"

# Decided notifications that no attempt delivered: what a new leader sends again.
UNDELIVERED = """
SELECT payload
FROM notifications FINAL
WHERE at >= toDateTime({since_s:UInt32}, 'UTC')
  AND id NOT IN (SELECT notification_id FROM deliveries WHERE ok AND at >= toDateTime({since_s:UInt32}, 'UTC'))
ORDER BY at, id
LIMIT {limit:UInt32}
"""
