-- WebAssembly mapper modules, stored once for every instance of a cluster; each instance
-- compiles them and keeps a copy in its data directory.
CREATE TABLE modules (
    id TEXT PRIMARY KEY,
    version BIGINT NOT NULL,
    meta TEXT NOT NULL,
    bytes BYTEA NOT NULL
);
