-- V0002 ClientFailuresAndEvents (postgres); applied once, in order, by schema_version 2.
CREATE INDEX failures_client_at ON failures (client, at);

CREATE TABLE events (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at BIGINT NOT NULL,
    event TEXT NOT NULL,
    user_id TEXT NOT NULL,
    client TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT '{}'
);

CREATE INDEX events_user_at ON events (user_id, at);
