-- OAuth 2.1: authorization codes, refresh tokens (rotated, grouped in families) and consent.
-- Codes and refresh tokens are stored only as their SHA-256.
CREATE TABLE authorization_codes (
    code_hash       TEXT PRIMARY KEY,
    client_id       TEXT NOT NULL,
    subject         TEXT NOT NULL,
    chitty_id       TEXT NOT NULL,
    session_id      TEXT NOT NULL,
    redirect_uri    TEXT NOT NULL,
    scopes          TEXT NOT NULL,  -- space-separated
    resources       TEXT NOT NULL,  -- JSON array
    code_challenge  TEXT NOT NULL,
    family_id       TEXT NOT NULL,  -- every token issued from this code carries it
    created_at      REAL NOT NULL,
    expires_at      REAL NOT NULL,
    used_at         REAL
) STRICT;
CREATE INDEX authorization_codes_expires_at ON authorization_codes (expires_at);

CREATE TABLE refresh_tokens (
    token_hash  TEXT PRIMARY KEY,
    family_id   TEXT NOT NULL,
    client_id   TEXT NOT NULL,
    subject     TEXT NOT NULL,
    chitty_id   TEXT NOT NULL,
    session_id  TEXT NOT NULL,
    scopes      TEXT NOT NULL,
    resources   TEXT NOT NULL,
    created_at  REAL NOT NULL,
    expires_at  REAL NOT NULL,
    used_at     REAL,
    -- The hash of the token that replaced this one (rotation), once used.
    replaced_by TEXT NOT NULL DEFAULT ''
) STRICT;
CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_expires_at ON refresh_tokens (expires_at);

CREATE TABLE consents (
    chitty_id   TEXT NOT NULL,
    client_id   TEXT NOT NULL,
    scopes      TEXT NOT NULL,
    granted_at  REAL NOT NULL,
    PRIMARY KEY (chitty_id, client_id)
) STRICT;
