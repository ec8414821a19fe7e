-- V0001 Initial (postgres); applied once, in order, by schema_version 1.
CREATE TABLE users (
    user_id TEXT PRIMARY KEY,
    secret TEXT,
    enabled_at BIGINT,
    last_step BIGINT NOT NULL DEFAULT -1,
    generation BIGINT NOT NULL DEFAULT 0,
    locked_until BIGINT NOT NULL DEFAULT 0
);

CREATE TABLE pending (
    user_id TEXT PRIMARY KEY,
    secret TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);

CREATE TABLE recovery_codes (
    user_id TEXT NOT NULL,
    code_hash TEXT NOT NULL,
    used_at BIGINT,
    PRIMARY KEY (user_id, code_hash)
);

CREATE TABLE failures (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id TEXT NOT NULL,
    client TEXT NOT NULL,
    at BIGINT NOT NULL
);

CREATE INDEX failures_user_at ON failures (user_id, at);
