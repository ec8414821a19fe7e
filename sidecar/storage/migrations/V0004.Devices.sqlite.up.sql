-- V0004 Devices (sqlite); applied once, in order, by schema_version 4.
CREATE TABLE devices (
    device_id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    last_seen BIGINT NOT NULL,
    browser TEXT NOT NULL
);

CREATE INDEX devices_user ON devices (user_id);
