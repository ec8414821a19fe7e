-- V0002 ClientFailuresAndEvents (sqlite); applied once, in order, by schema_version 2.
CREATE INDEX failures_client_at ON failures (client, at);

CREATE TABLE events (
    id INTEGER PRIMARY KEY,
    at INTEGER NOT NULL,
    event TEXT NOT NULL,
    user_id TEXT NOT NULL,
    client TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT '{}'
);

CREATE INDEX events_user_at ON events (user_id, at);
