-- Things shared by the instances of a cluster: every write is conditional on the revision the
-- writing instance based it on, so two instances never overwrite each other's change.
CREATE TABLE things (
    id TEXT PRIMARY KEY,
    revision BIGINT NOT NULL,
    doc TEXT NOT NULL
);
