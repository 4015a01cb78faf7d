-- OAuth clients (linked apps, MCP servers, machine clients) and API keys.
-- Secrets are never stored: a client secret or an API key is kept as its SHA-256 (hex) only.

CREATE TABLE oauth_clients (
    client_id                  TEXT PRIMARY KEY,
    display_name               TEXT NOT NULL,
    kind                       TEXT NOT NULL
                               CHECK (kind IN ('linked_app', 'mcp_server', 'service')),
    confidential               INTEGER NOT NULL CHECK (confidential IN (0, 1)),
    redirect_uris              TEXT NOT NULL,  -- JSON array of exact strings
    allowed_scopes             TEXT NOT NULL,  -- JSON array
    grant_types                TEXT NOT NULL,  -- JSON array of RFC grant_type values
    token_endpoint_auth_method TEXT NOT NULL,
    server_id                  TEXT NOT NULL,
    capabilities               TEXT NOT NULL,  -- JSON array
    metadata_document_uri      TEXT NOT NULL,
    secret_hash                TEXT NOT NULL,  -- '' for a public client
    secret_hint                TEXT NOT NULL,
    -- Who made it: api | file | cli (the clients file never touches what it did not create
    -- from the same entry, but keeping the origin makes audits easier to read).
    source                     TEXT NOT NULL,
    create_time                REAL NOT NULL,
    update_time                REAL NOT NULL
) STRICT;
-- ListClients pages by (create_time, client_id): oldest first, stable under equal times.
CREATE INDEX oauth_clients_created ON oauth_clients (create_time, client_id);

CREATE TABLE api_keys (
    key_id       TEXT PRIMARY KEY,
    key_hash     TEXT NOT NULL UNIQUE,
    chitty_id    TEXT NOT NULL,
    display_name TEXT NOT NULL,
    scopes       TEXT NOT NULL,  -- JSON array
    key_hint     TEXT NOT NULL,
    created_by   TEXT NOT NULL,
    create_time  REAL NOT NULL,
    expire_time  REAL,           -- NULL: never expires
    revoke_time  REAL            -- NULL: not revoked
) STRICT;
CREATE INDEX api_keys_owner ON api_keys (chitty_id, create_time, key_id);
CREATE INDEX api_keys_created ON api_keys (create_time, key_id);
