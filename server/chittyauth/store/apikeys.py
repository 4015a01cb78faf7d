"""SQL for API keys (table ``api_keys``); a key is stored as its SHA-256 only."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import aiosqlite

from chittyauth.store.sqlite import SqliteReader, SqliteTransaction

Conn = SqliteReader | SqliteTransaction

_COLUMNS = (
    "key_id, key_hash, chitty_id, display_name, scopes, key_hint, created_by, create_time,"
    " expire_time, revoke_time"
)


@dataclass(frozen=True, slots=True)
class ApiKeyRow:
    """An API key's metadata as stored (and as the in-memory registry holds it)."""

    key_id: str
    # Hex SHA-256 of the key; kept out of repr so it never lands in a log line by accident.
    key_hash: str = field(repr=False)
    chitty_id: str
    display_name: str
    scopes: tuple[str, ...]
    key_hint: str
    created_by: str
    created_at: float
    expires_at: float | None
    revoked_at: float | None

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None

    def expired(self, now: float) -> bool:
        return self.expires_at is not None and now >= self.expires_at

    def status(self, now: float) -> str:
        """``active``, ``revoked`` or ``expired`` (revoked wins: it is the stronger fact)."""
        if self.revoked:
            return "revoked"
        if self.expired(now):
            return "expired"
        return "active"


def _from_row(row: aiosqlite.Row) -> ApiKeyRow:
    return ApiKeyRow(
        key_id=row["key_id"],
        key_hash=row["key_hash"],
        chitty_id=row["chitty_id"],
        display_name=row["display_name"],
        scopes=tuple(json.loads(row["scopes"])),
        key_hint=row["key_hint"],
        created_by=row["created_by"],
        created_at=row["create_time"],
        expires_at=row["expire_time"],
        revoked_at=row["revoke_time"],
    )


async def insert_api_key(tx: SqliteTransaction, row: ApiKeyRow) -> None:
    await tx.execute(
        f"INSERT INTO api_keys ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",  # noqa: S608
        (
            row.key_id,
            row.key_hash,
            row.chitty_id,
            row.display_name,
            json.dumps(list(row.scopes)),
            row.key_hint,
            row.created_by,
            row.created_at,
            row.expires_at,
            row.revoked_at,
        ),
    )


async def mark_revoked(tx: SqliteTransaction, key_id: str, at: float) -> bool:
    """Sets the revoke time once; False when the key was already revoked or does not exist."""
    cursor = await tx.execute(
        "UPDATE api_keys SET revoke_time = ? WHERE key_id = ? AND revoke_time IS NULL",
        (at, key_id),
    )
    return cursor.rowcount > 0


async def get_api_key(conn: Conn, key_id: str) -> ApiKeyRow | None:
    row = await conn.fetchone(
        f"SELECT {_COLUMNS} FROM api_keys WHERE key_id = ?",  # noqa: S608
        (key_id,),
    )
    return None if row is None else _from_row(row)


async def count_active(conn: Conn, chitty_id: str, now: float) -> int:
    """How many unrevoked, unexpired keys ``chitty_id`` owns."""
    row = await conn.fetchone(
        "SELECT COUNT(*) FROM api_keys WHERE chitty_id = ? AND revoke_time IS NULL"
        " AND (expire_time IS NULL OR expire_time > ?)",
        (chitty_id, now),
    )
    return int(row[0]) if row is not None else 0


async def api_keys_by_id(conn: Conn, key_ids: Sequence[str]) -> list[ApiKeyRow]:
    """The keys among ``key_ids`` that exist (any order)."""
    found: list[ApiKeyRow] = []
    for start in range(0, len(key_ids), 500):
        chunk = key_ids[start : start + 500]
        rows = await conn.fetchall(
            f"SELECT {_COLUMNS} FROM api_keys"  # noqa: S608 - placeholders only
            f" WHERE key_id IN ({', '.join('?' * len(chunk))})",
            tuple(chunk),
        )
        found.extend(_from_row(row) for row in rows)
    return found


async def all_api_keys(conn: Conn) -> list[ApiKeyRow]:
    rows = await conn.fetchall(f"SELECT {_COLUMNS} FROM api_keys")  # noqa: S608
    return [_from_row(row) for row in rows]


async def list_api_keys(
    conn: Conn,
    *,
    chitty_id: str,
    include_revoked: bool,
    after: tuple[float, str] | None,
    limit: int,
) -> list[ApiKeyRow]:
    """``chitty_id``'s keys oldest first, after the (create_time, key_id) position."""
    clauses = ["chitty_id = ?"]
    params: list[Any] = [chitty_id]
    if not include_revoked:
        clauses.append("revoke_time IS NULL")
    if after is not None:
        clauses.append("(create_time, key_id) > (?, ?)")
        params.extend(after)
    params.append(limit)
    rows = await conn.fetchall(
        # Clauses are fixed text; every value is bound.
        f"SELECT {_COLUMNS} FROM api_keys WHERE {' AND '.join(clauses)}"  # noqa: S608
        " ORDER BY create_time, key_id LIMIT ?",
        params,
    )
    return [_from_row(row) for row in rows]
