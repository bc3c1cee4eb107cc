-- A client slot's cursor: every twin event of the slot's share of the things up to `cursor`
-- (an `events.seq`) was published by its owner, for a connection of `cursor_slots` clients.
-- Whoever takes the slot next publishes again what came after it. Written only by the lease's
-- owner with the lease's epoch. `cursor_at`: when the cursor last moved; a cursor that has not
-- moved for a minute no longer holds the log back.
ALTER TABLE leases
    ADD COLUMN cursor BIGINT,
    ADD COLUMN cursor_slots INTEGER,
    ADD COLUMN cursor_at TIMESTAMPTZ;

-- How far the event log was trimmed: a cursor below this can no longer be replayed.
CREATE TABLE event_trim (
    only_row BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (only_row),
    trimmed_to BIGINT NOT NULL
);
INSERT INTO event_trim (trimmed_to)
    SELECT coalesce((SELECT min(seq) - 1 FROM events), (
        SELECT CASE WHEN is_called THEN last_value ELSE last_value - 1 END FROM events_seq_seq
    ));
