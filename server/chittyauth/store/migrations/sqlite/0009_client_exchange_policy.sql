-- Each client's token exchange (RFC 8693) policy. The defaults are the safe ones: no audience
-- may be requested, and the client may delegate but not impersonate.
ALTER TABLE oauth_clients
    ADD COLUMN exchange_audiences TEXT NOT NULL DEFAULT '[]';  -- JSON array of exact strings
ALTER TABLE oauth_clients
    ADD COLUMN exchange_may_impersonate INTEGER NOT NULL DEFAULT 0
    CHECK (exchange_may_impersonate IN (0, 1));
