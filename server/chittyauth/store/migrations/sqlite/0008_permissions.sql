-- Permissions granted from one ChittyID to another (PermissionService).
CREATE TABLE permission_grants (
    grant_id      TEXT PRIMARY KEY,                 -- prm_…
    grantor       TEXT NOT NULL,                    -- ChittyID
    grantee       TEXT NOT NULL,                    -- ChittyID
    permission    TEXT NOT NULL,                    -- `docs:read`, `docs:*` or `*`
    resource      TEXT NOT NULL,                    -- '' = every resource, `a/b`, `a/*`
    created_by    TEXT NOT NULL,                    -- the caller's subject (an admin may differ)
    create_time   REAL NOT NULL,
    expire_time   REAL,                             -- NULL: never lapses
    revoke_time   REAL,                             -- NULL: not revoked
    revoked_by    TEXT NOT NULL DEFAULT ''
) STRICT;
-- CheckPermission and ListPermissions: a grantee's grants, oldest first.
CREATE INDEX permission_grants_grantee ON permission_grants (grantee, create_time, grant_id);
