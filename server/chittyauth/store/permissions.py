"""SQL for permission grants (table ``permission_grants``)."""

from __future__ import annotations

from dataclasses import dataclass

import aiosqlite

from chittyauth.store.sqlite import SqliteReader, SqliteTransaction

Conn = SqliteReader | SqliteTransaction


@dataclass(frozen=True, slots=True)
class GrantRow:
    """One permission grant as stored."""

    grant_id: str
    grantor: str
    grantee: str
    permission: str
    resource: str
    created_by: str
    created_at: float
    expires_at: float | None
    revoked_at: float | None
    revoked_by: str = ""

    def active(self, now: float) -> bool:
        """Neither revoked nor lapsed at ``now``."""
        return self.revoked_at is None and (self.expires_at is None or now < self.expires_at)


def _grant(row: aiosqlite.Row) -> GrantRow:
    return GrantRow(
        grant_id=row["grant_id"],
        grantor=row["grantor"],
        grantee=row["grantee"],
        permission=row["permission"],
        resource=row["resource"],
        created_by=row["created_by"],
        created_at=float(row["create_time"]),
        expires_at=None if row["expire_time"] is None else float(row["expire_time"]),
        revoked_at=None if row["revoke_time"] is None else float(row["revoke_time"]),
        revoked_by=row["revoked_by"],
    )


async def insert_grant(tx: SqliteTransaction, grant: GrantRow) -> None:
    await tx.execute(
        "INSERT INTO permission_grants (grant_id, grantor, grantee, permission, resource,"
        " created_by, create_time, expire_time, revoke_time, revoked_by)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL, '')",
        (
            grant.grant_id,
            grant.grantor,
            grant.grantee,
            grant.permission,
            grant.resource,
            grant.created_by,
            grant.created_at,
            grant.expires_at,
        ),
    )


async def get_grant(conn: Conn, grant_id: str) -> GrantRow | None:
    row = await conn.fetchone("SELECT * FROM permission_grants WHERE grant_id = ?", (grant_id,))
    return _grant(row) if row is not None else None


async def mark_revoked(tx: SqliteTransaction, grant_id: str, now: float, by: str) -> None:
    await tx.execute(
        "UPDATE permission_grants SET revoke_time = ?, revoked_by = ?"
        " WHERE grant_id = ? AND revoke_time IS NULL",
        (now, by, grant_id),
    )


async def live_grants_of(conn: Conn, grantee: str, now: float) -> list[GrantRow]:
    """The grantee's unrevoked, unexpired grants, oldest first (one indexed lookup)."""
    rows = await conn.fetchall(
        "SELECT * FROM permission_grants WHERE grantee = ? AND revoke_time IS NULL"
        " AND (expire_time IS NULL OR expire_time > ?) ORDER BY create_time, grant_id",
        (grantee, now),
    )
    return [_grant(row) for row in rows]


async def page_of(
    conn: Conn,
    grantee: str,
    *,
    after: tuple[float, str] | None,
    limit: int,
    include_inactive: bool,
    now: float,
) -> list[GrantRow]:
    """A page of the grantee's grants ordered by (create_time, grant_id), after ``after``."""
    sql = "SELECT * FROM permission_grants WHERE grantee = ?"
    params: list[object] = [grantee]
    if not include_inactive:
        sql += " AND revoke_time IS NULL AND (expire_time IS NULL OR expire_time > ?)"
        params.append(now)
    if after is not None:
        sql += " AND (create_time > ? OR (create_time = ? AND grant_id > ?))"
        params += [after[0], after[0], after[1]]
    sql += " ORDER BY create_time, grant_id LIMIT ?"
    params.append(limit)
    rows = await conn.fetchall(sql, tuple(params))
    return [_grant(row) for row in rows]
