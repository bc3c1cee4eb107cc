-- The kept versions of every mapper module (pinning and rollback); `modules` holds the
-- current one. The current versions stored so far are the first kept ones.
CREATE TABLE module_versions (
    id TEXT NOT NULL,
    version BIGINT NOT NULL,
    meta TEXT NOT NULL,
    bytes BYTEA NOT NULL,
    PRIMARY KEY (id, version)
);
INSERT INTO module_versions (id, version, meta, bytes)
    SELECT id, version, meta, bytes FROM modules;
