-- Every acknowledgement of an incident is kept (alerts/store.py, docs/alerting.md). Migration 0009 keyed
-- incident_acks by incident alone, so a second acknowledgement replaced the first. ack_id (a hash of the
-- acknowledgement, unique per incident) joins the sorting key: a column added in the same ALTER without
-- a default expression may be appended to it. Rows written before this migration have ack_id '' and
-- still collapse to one per incident, the last acknowledgement, as they did.
ALTER TABLE incident_acks
    ADD COLUMN IF NOT EXISTS ack_id String,
    MODIFY ORDER BY (incident_id, ack_id);
