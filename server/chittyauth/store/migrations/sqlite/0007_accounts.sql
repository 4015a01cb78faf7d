-- People: the email -> ChittyID map of Cloudflare Access (portal) logins, and password
-- accounts. Emails are stored normalised (lower case); times are service time.

-- One row per portal email. The unique constraints make "exactly one ChittyID per email"
-- hold even when two first logins race (the loser re-reads the winner's row).
CREATE TABLE portal_identities (
    email            TEXT PRIMARY KEY,
    chitty_id        TEXT NOT NULL UNIQUE,
    access_subject   TEXT NOT NULL,      -- Cloudflare's stable user id (`sub`), for support
    create_time      REAL NOT NULL,
    last_login_time  REAL NOT NULL
) STRICT;

-- Password accounts. The password is kept only as an scrypt hash with its parameters:
-- "scrypt$<n>$<r>$<p>$<salt b64>$<hash b64>".
CREATE TABLE accounts (
    chitty_id        TEXT PRIMARY KEY,
    email            TEXT NOT NULL UNIQUE,
    display_name     TEXT NOT NULL,
    password_hash    TEXT NOT NULL,
    metadata         TEXT NOT NULL,      -- JSON object given at registration
    failed_logins    INTEGER NOT NULL DEFAULT 0,   -- consecutive failures since the last success
    locked_until     REAL NOT NULL DEFAULT 0,      -- 0: not locked
    create_time      REAL NOT NULL,
    update_time      REAL NOT NULL
) STRICT;
