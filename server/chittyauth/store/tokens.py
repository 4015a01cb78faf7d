"""SQL for issued tokens and revocations."""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

from chittyauth.store.sqlite import SqliteReader, SqliteTransaction


@dataclass(frozen=True, slots=True)
class TokenRow:
    """The bookkeeping row of an issued access token (never the token itself)."""

    jti: str
    subject: str
    client_id: str
    token_use: str
    session_id: str
    family_id: str
    kid: str
    issued_at: float
    expires_at: float


async def insert_token(tx: SqliteTransaction, row: TokenRow) -> None:
    await tx.execute(
        "INSERT INTO tokens (jti, subject, client_id, token_use, session_id, family_id, kid,"
        " issued_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            row.jti,
            row.subject,
            row.client_id,
            row.token_use,
            row.session_id,
            row.family_id,
            row.kid,
            row.issued_at,
            row.expires_at,
        ),
    )


async def upsert_revocation(tx: SqliteTransaction, kind: str, value: str, until: float) -> bool:
    """Records a revocation; returns False when it was already recorded (idempotent)."""
    existing = await tx.fetchone(
        "SELECT until FROM revocations WHERE kind = ? AND value = ?", (kind, value)
    )
    if existing is not None and existing["until"] >= until:
        return False
    await tx.execute(
        "INSERT INTO revocations (kind, value, until, revoked_at) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (kind, value) DO UPDATE SET until = excluded.until",
        (kind, value, until, tx.now),
    )
    return existing is None


async def live_revocations(reader: SqliteReader, now: float) -> list[tuple[str, str, float]]:
    """(kind, value, until) of every revocation that still matters."""
    # Start-up reads every live revocation (100,000 and more): plain tuples straight from
    # sqlite3, no per-row Python work here.
    async with reader.conn.execute(
        "SELECT kind, value, until FROM revocations WHERE until > ?", (now,)
    ) as cursor:
        cursor.row_factory = None
        rows = await cursor.fetchall()
    return cast("list[tuple[str, str, float]]", rows)


async def purge(tx: SqliteTransaction, now: float) -> int:
    """Forgets expired token rows and revocations that no longer cover anything."""
    first = await tx.execute("DELETE FROM revocations WHERE until <= ?", (now,))
    second = await tx.execute("DELETE FROM tokens WHERE expires_at <= ?", (now,))
    return first.rowcount + second.rowcount
