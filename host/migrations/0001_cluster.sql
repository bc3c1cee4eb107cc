-- Ferrule's cluster mode: PostgreSQL is the store of record and the arbiter of ownership.

-- Connections as the embedded store keeps them: the record's JSON (credentials encrypted when
-- [encryption] says so) and its revision, which every write checks (one winner per revision).
CREATE TABLE connections (
    id TEXT PRIMARY KEY,
    revision BIGINT NOT NULL,
    doc TEXT NOT NULL
);

-- The instances: each renews its row; one whose row expired is gone.
CREATE TABLE nodes (
    node_id TEXT PRIMARY KEY,
    started_at TIMESTAMPTZ NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL
);

-- Who runs what: one row per client slot (`<connection id>/<client index>`), owned until
-- `expires_at` (the database's clock). `epoch` grows on every change of owner: the fencing token.
CREATE TABLE leases (
    resource TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    epoch BIGINT NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX leases_owner ON leases (owner);
