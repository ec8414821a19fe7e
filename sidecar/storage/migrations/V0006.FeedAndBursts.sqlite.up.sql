-- V0006 FeedAndBursts (sqlite); applied once, in order, by schema_version 6.
-- The change feed: one row per change of a user's 2FA state, written in the transaction of
-- the change; instances apply it to the user states they keep in memory. AUTOINCREMENT: a
-- sequence number is never used twice, even after pruning.
CREATE TABLE feed (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    device_id TEXT,
    at INTEGER NOT NULL
);

CREATE INDEX feed_at ON feed (at);

-- The X-OTP burst window of an API credential, shared by every instance; the key is a keyed
-- digest of credential, user, code and generation (never the credential itself).
CREATE TABLE bursts (
    burst_key TEXT PRIMARY KEY,
    until INTEGER NOT NULL
);

CREATE INDEX bursts_until ON bursts (until);
