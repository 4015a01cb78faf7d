-- The foundation: the ordered change log and the hash-chained audit log.

-- Every durable change that other parts of the service (or other replicas) must learn about:
-- revocations, session events, key changes. Readers follow it by sequence number.
CREATE TABLE changes (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    kind       TEXT    NOT NULL,
    key        TEXT    NOT NULL,
    payload    TEXT    NOT NULL,  -- JSON object
    created_at REAL    NOT NULL
) STRICT;
CREATE INDEX changes_kind_seq ON changes (kind, seq);
CREATE INDEX changes_created_at ON changes (created_at);

-- Append-only and hash-chained: hash = SHA-256 over the record including prev_hash.
CREATE TABLE audit_events (
    seq         INTEGER PRIMARY KEY,
    event_time  REAL    NOT NULL,
    actor       TEXT    NOT NULL,
    subject     TEXT    NOT NULL,
    action      TEXT    NOT NULL,
    outcome     TEXT    NOT NULL CHECK (outcome IN ('success', 'failure')),
    resource    TEXT    NOT NULL,
    request_id  TEXT    NOT NULL,
    attributes  TEXT    NOT NULL,  -- JSON object of strings
    prev_hash   TEXT    NOT NULL,
    hash        TEXT    NOT NULL
) STRICT;
CREATE INDEX audit_events_subject ON audit_events (subject, seq);
CREATE INDEX audit_events_actor ON audit_events (actor, seq);
CREATE INDEX audit_events_action ON audit_events (action, seq);
CREATE INDEX audit_events_time ON audit_events (event_time);

CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END;
CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END;

-- Small named values: the audit chain's head (so removing the newest records is detected too).
CREATE TABLE meta (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
) STRICT;
