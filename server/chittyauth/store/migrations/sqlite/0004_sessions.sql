-- Sessions and cross-device sync: sessions, their devices and MCP servers, the encrypted
-- per-(session, MCP server) state blobs, and the wrapped data keys those blobs are sealed with.

-- One session of one ChittyID. Times are service time (seconds since the epoch).
CREATE TABLE sessions (
    session_id        TEXT    PRIMARY KEY,          -- ses_…, the `sid` claim of its tokens
    chitty_id         TEXT    NOT NULL,
    status            TEXT    NOT NULL CHECK (status IN ('active', 'revoked', 'expired')),
    created_at        REAL    NOT NULL,
    updated_at        REAL    NOT NULL,
    last_activity_at  REAL    NOT NULL,
    expires_at        REAL    NOT NULL,             -- absolute lifetime
    ended_at          REAL,                         -- NULL while active
    end_reason        TEXT    NOT NULL DEFAULT ''   -- revoked | revoked_all | idle | lifetime
) STRICT;
-- ListSessions: newest first per owner.
CREATE INDEX sessions_owner ON sessions (chitty_id, created_at DESC, session_id DESC);
-- The expiry sweep: active sessions by last activity and by absolute expiry.
CREATE INDEX sessions_idle ON sessions (status, last_activity_at);
CREATE INDEX sessions_lifetime ON sessions (status, expires_at);

-- Devices attached to sessions. A device id is unique per ChittyID among attached devices
-- (`attached` = 1): a device lives in at most one active session at a time. Rows of ended
-- sessions stay (attached = 0) so an ended session still shows what it had.
CREATE TABLE session_devices (
    session_id    TEXT    NOT NULL REFERENCES sessions (session_id),
    device_id     TEXT    NOT NULL,
    chitty_id     TEXT    NOT NULL,
    display_name  TEXT    NOT NULL,
    client_type   TEXT    NOT NULL CHECK (client_type IN ('claude_desktop', 'web', 'mobile')),
    added_at      REAL    NOT NULL,
    last_seen_at  REAL    NOT NULL,
    attached      INTEGER NOT NULL CHECK (attached IN (0, 1)),
    PRIMARY KEY (session_id, device_id)
) STRICT;
CREATE UNIQUE INDEX session_devices_attached
    ON session_devices (chitty_id, device_id) WHERE attached = 1;
-- The per-user device count and the eviction choice (least recently seen first).
CREATE INDEX session_devices_owner ON session_devices (chitty_id, attached, last_seen_at);

-- MCP servers a session reaches.
CREATE TABLE session_servers (
    session_id   TEXT NOT NULL REFERENCES sessions (session_id),
    mcp_server   TEXT NOT NULL,
    attached_at  REAL NOT NULL,
    PRIMARY KEY (session_id, mcp_server)
) STRICT;

-- Data-encryption keys for state blobs, each sealed (AES-256-GCM, 12-byte nonce ‖ ciphertext)
-- under the key-encryption key from [sessions] state_encryption_key. The newest key without
-- retired_at seals new blobs; retired keys stay so older blobs remain readable.
CREATE TABLE session_state_keys (
    key_id      TEXT PRIMARY KEY,
    wrapped     BLOB NOT NULL,
    created_at  REAL NOT NULL,
    retired_at  REAL
) STRICT;

-- One opaque state blob per (session, MCP server), sealed with AES-256-GCM under key_id:
-- sealed = 12-byte nonce ‖ ciphertext+tag, associated data = (session_id, mcp_server, version).
-- `version` only grows; writes are compare-and-set on it.
CREATE TABLE session_states (
    session_id            TEXT    NOT NULL REFERENCES sessions (session_id),
    mcp_server            TEXT    NOT NULL,
    version               INTEGER NOT NULL CHECK (version > 0),
    key_id                TEXT    NOT NULL REFERENCES session_state_keys (key_id),
    sealed                BLOB    NOT NULL,
    updated_at            REAL    NOT NULL,
    updated_by_device_id  TEXT    NOT NULL,
    PRIMARY KEY (session_id, mcp_server)
) STRICT;
