-- V0007 SecurityKeys (sqlite); applied once, in order, by schema_version 7.
-- WebAuthn credentials (security keys, passkeys): a second factor beside the TOTP secret.
-- A user with keys has users.enabled_at set (2FA on) even without a secret.
CREATE TABLE webauthn_credentials (
    credential_id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    public_key TEXT NOT NULL,
    sign_count BIGINT NOT NULL DEFAULT 0,
    name TEXT NOT NULL,
    transports TEXT NOT NULL DEFAULT '',
    created_at BIGINT NOT NULL,
    last_used BIGINT,
    aaguid TEXT
);

CREATE INDEX webauthn_credentials_user ON webauthn_credentials (user_id);

-- Each challenge is used once, by the app session (fingerprint) that asked for it.
CREATE TABLE webauthn_challenges (
    challenge TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    session TEXT NOT NULL,
    purpose TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);

CREATE INDEX webauthn_challenges_expires ON webauthn_challenges (expires_at);
