-- The twin events of every instance, in the order their changes were made durable: each
-- instance reads them from here (its own included), so an event reaches every instance's
-- routes whether or not NATS carried the word that it was written.
CREATE TABLE events (
    seq BIGSERIAL PRIMARY KEY,
    thing_id TEXT NOT NULL,
    -- The thing's revision after the change (NULL: the event names none).
    revision BIGINT,
    -- The event as written for brokers (Ditto Protocol JSON).
    body TEXT NOT NULL
);

-- How far each instance has read the events, and when it last said so: the log is trimmed
-- below the lowest point of the instances that said so within the last minute.
CREATE TABLE event_readers (
    node_id TEXT PRIMARY KEY,
    read_to BIGINT NOT NULL,
    at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- `ferrule_write_things` (0005), and the batch's events in the same statement, in the order
-- given: an event is in the log exactly when its change is durable. `event_revisions[i]` NULL:
-- an event that names no revision.
CREATE FUNCTION ferrule_write_batch(
    ids TEXT[], revisions BIGINT[], docs TEXT[], bases BIGINT[],
    event_things TEXT[], event_revisions BIGINT[], event_bodies TEXT[]
) RETURNS VOID LANGUAGE plpgsql AS $$
BEGIN
    PERFORM ferrule_write_things(ids, revisions, docs, bases);
    INSERT INTO events (thing_id, revision, body)
        SELECT e.thing_id, e.revision, e.body
        FROM unnest(event_things, event_revisions, event_bodies)
            WITH ORDINALITY AS e(thing_id, revision, body, position)
        ORDER BY e.position;
END $$;
