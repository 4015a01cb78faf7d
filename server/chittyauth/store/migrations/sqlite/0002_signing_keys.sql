-- Signing keys: one ring per algorithm, each key moving next -> active -> retired -> deleted.

CREATE TABLE signing_keys (
    kid           TEXT PRIMARY KEY,
    algorithm     TEXT NOT NULL CHECK (algorithm IN ('ES256', 'EdDSA', 'RS256', 'HS256')),
    state         TEXT NOT NULL CHECK (state IN ('next', 'active', 'retired')),
    -- Private key (PKCS#8 DER) or HS256 secret, sealed with AES-256-GCM under the
    -- key-encryption key: 12-byte nonce || ciphertext || tag, the kid as associated data.
    sealed_key    BLOB NOT NULL,
    create_time   REAL NOT NULL,
    -- For a next key, when it is planned to start signing; otherwise when it did.
    activate_time REAL,
    retire_time   REAL,
    -- When the last token it can have signed has expired; the key is removed after that.
    delete_time   REAL,
    CHECK ((state = 'retired') = (retire_time IS NOT NULL AND delete_time IS NOT NULL))
) STRICT;

-- At most one active and one next key per algorithm, even with several writers.
CREATE UNIQUE INDEX signing_keys_one_active ON signing_keys (algorithm) WHERE state = 'active';
CREATE UNIQUE INDEX signing_keys_one_next ON signing_keys (algorithm) WHERE state = 'next';
CREATE INDEX signing_keys_delete_time ON signing_keys (delete_time) WHERE state = 'retired';
