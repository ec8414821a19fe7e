-- V0001 Initial (sqlite); applied once, in order, by schema_version 1.
CREATE TABLE users (
    user_id TEXT PRIMARY KEY,
    secret TEXT,
    enabled_at INTEGER,
    last_step INTEGER NOT NULL DEFAULT -1,
    generation INTEGER NOT NULL DEFAULT 0,
    locked_until INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE pending (
    user_id TEXT PRIMARY KEY,
    secret TEXT NOT NULL,
    expires_at INTEGER NOT NULL
);

CREATE TABLE recovery_codes (
    user_id TEXT NOT NULL,
    code_hash TEXT NOT NULL,
    used_at INTEGER,
    PRIMARY KEY (user_id, code_hash)
);

CREATE TABLE failures (
    id INTEGER PRIMARY KEY,
    user_id TEXT NOT NULL,
    client TEXT NOT NULL,
    at INTEGER NOT NULL
);

CREATE INDEX failures_user_at ON failures (user_id, at);
