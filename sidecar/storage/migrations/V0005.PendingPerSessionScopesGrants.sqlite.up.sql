-- V0005 PendingPerSessionScopesGrants (sqlite); applied once, in order, by schema_version 5.
-- Pending secrets were keyed by user alone; they expire within minutes anyway.
DROP TABLE pending;

CREATE TABLE pending (
    user_id TEXT NOT NULL,
    session TEXT NOT NULL,
    secret TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (user_id, session)
);

ALTER TABLE failures ADD COLUMN scope TEXT NOT NULL DEFAULT 'signin';

DROP INDEX failures_user_at;

CREATE INDEX failures_user_scope_at ON failures (user_id, scope, at);

-- Pruning runs at every attempt.
CREATE INDEX failures_at ON failures (at);

CREATE TABLE grants (
    grant_id TEXT PRIMARY KEY,
    account TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at BIGINT
);
