-- Issued access tokens (bookkeeping: who got what, for audit and bulk revocation), and
-- revocations still in force. Validation never reads these tables: it uses in-memory sets
-- loaded from `revocations` at start and kept current through the change log.
CREATE TABLE tokens (
    jti         TEXT PRIMARY KEY,
    subject     TEXT NOT NULL,
    client_id   TEXT NOT NULL,
    token_use   TEXT NOT NULL,
    session_id  TEXT NOT NULL,
    family_id   TEXT NOT NULL,
    kid         TEXT NOT NULL,
    issued_at   REAL NOT NULL,
    expires_at  REAL NOT NULL
) STRICT;
CREATE INDEX tokens_expires_at ON tokens (expires_at);
CREATE INDEX tokens_session ON tokens (session_id) WHERE session_id != '';
CREATE INDEX tokens_family ON tokens (family_id) WHERE family_id != '';

CREATE TABLE revocations (
    kind        TEXT NOT NULL CHECK (kind IN ('jti', 'sid', 'family', 'api_key', 'client')),
    value       TEXT NOT NULL,
    -- After this time nothing it covers can still be valid, so it can be forgotten.
    until       REAL NOT NULL,
    revoked_at  REAL NOT NULL,
    PRIMARY KEY (kind, value)
) STRICT;
CREATE INDEX revocations_until ON revocations (until);
