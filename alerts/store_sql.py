"""SQL of the alerting state (``alerts/store.py``, tables of migration 0009)."""

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

SILENCES = """
SELECT id, matchers, toUnixTimestamp(starts_at) AS starts_at_s, toUnixTimestamp(ends_at) AS ends_at_s,
       created_by, comment
FROM silences FINAL
ORDER BY starts_at_s, id
LIMIT 100000
"""

ACKS = """
SELECT incident_id, toUnixTimestamp64Milli(at) AS at_ms, by, comment
FROM incident_acks FINAL
LIMIT 100000
"""

# The oldest live evaluator leads; argMin over (started_at, id) so every evaluator picks the same one.
LEADER = """
SELECT evaluator_id
FROM evaluator_leases FINAL
WHERE heartbeat_at >= fromUnixTimestamp64Milli({since_ms:Int64})
ORDER BY started_at, evaluator_id
LIMIT 1
"""
