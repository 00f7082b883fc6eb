-- Alerting state (alerts/store.py, docs/alerting.md). Everything a restart needs so that it neither
-- pages again nor forgets an open incident, and what the incident pages and the API show. Not
-- subject to retention_days: the tables are small, and an incident's history outlives its spans.

-- One row per alert (SLO, severity, group labels); the newest version wins.
CREATE TABLE IF NOT EXISTS alert_states (
    id String,
    slo LowCardinality(String),
    severity LowCardinality(String),
    group_labels Map(LowCardinality(String), String),
    state LowCardinality(String),
    firing_since Nullable(DateTime('UTC')),
    resolved_at Nullable(DateTime('UTC')),
    keep_firing_since Nullable(DateTime('UTC')),
    updated_at DateTime('UTC')
) ENGINE = ReplacingMergeTree(updated_at)
ORDER BY id;

-- Every state change of every alert.
CREATE TABLE IF NOT EXISTS alert_transitions (
    alert_id String,
    slo LowCardinality(String),
    severity LowCardinality(String),
    group_labels Map(LowCardinality(String), String),
    at DateTime('UTC'),
    from_state LowCardinality(String),
    to_state LowCardinality(String)
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(at)
ORDER BY (alert_id, at, to_state);

-- The notification dispatcher's state (JSON), after each evaluation.
CREATE TABLE IF NOT EXISTS dispatch_state (
    name LowCardinality(String),
    at DateTime('UTC'),
    state String CODEC(ZSTD(3))
) ENGINE = ReplacingMergeTree(at)
ORDER BY name;

-- Incidents (the dispatcher's aggregation groups) as last seen; the newest version wins.
CREATE TABLE IF NOT EXISTS incidents (
    id String,
    receiver LowCardinality(String),
    group_labels Map(LowCardinality(String), String),
    status LowCardinality(String),
    opened_at DateTime('UTC'),
    closed_at Nullable(DateTime('UTC')),
    alert_ids Array(String),
    slos Array(String),
    services Array(String),
    severities Array(String),
    updated_at DateTime('UTC')
) ENGINE = ReplacingMergeTree(updated_at)
ORDER BY id;

-- Notifications decided by the dispatcher (one per receiver, incident, kind and time); the id is
-- deterministic, so an evaluator that takes over sends nothing that was already decided.
CREATE TABLE IF NOT EXISTS notifications (
    id String,
    incident_id String,
    receiver LowCardinality(String),
    kind LowCardinality(String),
    at DateTime('UTC'),
    alert_ids Array(String),
    payload String CODEC(ZSTD(3))
) ENGINE = ReplacingMergeTree
ORDER BY (incident_id, at, id);

-- Every delivery attempt of a notification.
CREATE TABLE IF NOT EXISTS deliveries (
    notification_id String,
    incident_id String,
    receiver LowCardinality(String),
    attempt UInt16,
    at DateTime64(3, 'UTC'),
    ok Bool,
    error String
) ENGINE = MergeTree
ORDER BY (incident_id, notification_id, attempt, at);

-- Silences: matchers (JSON) and a time range; expiring one early writes a newer version.
CREATE TABLE IF NOT EXISTS silences (
    id String,
    matchers String,
    starts_at DateTime('UTC'),
    ends_at DateTime('UTC'),
    created_by String,
    comment String,
    updated_at DateTime64(3, 'UTC')
) ENGINE = ReplacingMergeTree(updated_at)
ORDER BY id;

CREATE TABLE IF NOT EXISTS incident_acks (
    incident_id String,
    at DateTime64(3, 'UTC'),
    by String,
    comment String
) ENGINE = ReplacingMergeTree(at)
ORDER BY incident_id;

-- Evaluators alive on one store: the oldest live one decides alerts and sends notifications.
CREATE TABLE IF NOT EXISTS evaluator_leases (
    evaluator_id String,
    started_at DateTime64(3, 'UTC'),
    heartbeat_at DateTime64(3, 'UTC')
) ENGINE = ReplacingMergeTree(heartbeat_at)
ORDER BY evaluator_id;
