"""SQL for people: portal identities (email -> ChittyID) and password accounts."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import aiosqlite

from chittyauth.store.sqlite import SqliteReader, SqliteTransaction

Conn = SqliteReader | SqliteTransaction


@dataclass(frozen=True, slots=True)
class AccountRow:
    """A password account as stored."""

    chitty_id: str
    email: str
    display_name: str
    # The encoded scrypt hash; out of repr so it never lands in a log line.
    password_hash: str = field(repr=False)
    failed_logins: int
    locked_until: float
    created_at: float


def _account(row: aiosqlite.Row) -> AccountRow:
    return AccountRow(
        chitty_id=row["chitty_id"],
        email=row["email"],
        display_name=row["display_name"],
        password_hash=row["password_hash"],
        failed_logins=int(row["failed_logins"]),
        locked_until=float(row["locked_until"]),
        created_at=float(row["create_time"]),
    )


async def portal_chitty_id(conn: Conn, email: str) -> str | None:
    """The ChittyID mapped to a (normalised) portal email, if any."""
    row = await conn.fetchone("SELECT chitty_id FROM portal_identities WHERE email = ?", (email,))
    return str(row["chitty_id"]) if row is not None else None


async def insert_portal_identity(
    tx: SqliteTransaction, email: str, chitty_id: str, access_subject: str, now: float
) -> bool:
    """Maps ``email`` to ``chitty_id`` unless it is mapped already; True when this call did."""
    cursor = await tx.execute(
        "INSERT INTO portal_identities (email, chitty_id, access_subject, create_time,"
        " last_login_time) VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
        (email, chitty_id, access_subject, now, now),
    )
    return cursor.rowcount == 1


async def touch_portal_identity(tx: SqliteTransaction, email: str, now: float) -> None:
    await tx.execute(
        "UPDATE portal_identities SET last_login_time = ? WHERE email = ?", (now, email)
    )


async def account_by_email(conn: Conn, email: str) -> AccountRow | None:
    row = await conn.fetchone("SELECT * FROM accounts WHERE email = ?", (email,))
    return _account(row) if row is not None else None


async def insert_account(
    tx: SqliteTransaction,
    *,
    chitty_id: str,
    email: str,
    display_name: str,
    password_hash: str,
    metadata: Mapping[str, Any],
    now: float,
) -> bool:
    """Stores a new account; False when the email (or ChittyID) is taken already."""
    cursor = await tx.execute(
        "INSERT INTO accounts (chitty_id, email, display_name, password_hash, metadata,"
        " failed_logins, locked_until, create_time, update_time)"
        " VALUES (?, ?, ?, ?, ?, 0, 0, ?, ?) ON CONFLICT DO NOTHING",
        (
            chitty_id,
            email,
            display_name,
            password_hash,
            json.dumps(dict(metadata), separators=(",", ":"), sort_keys=True),
            now,
            now,
        ),
    )
    return cursor.rowcount == 1


async def count_login_failure(
    tx: SqliteTransaction, chitty_id: str, now: float
) -> tuple[int, float]:
    """Adds one failure to the account's count, in the row itself, and returns
    ``(failed_logins, locked_until)`` as they are after it.

    The increment is one statement, so concurrent failures each count (a count read earlier
    and written back would lose them). A lock that has run out starts a fresh count.
    """
    # fetchall, not fetchone: the statement runs to its end and is finished at once.
    rows = await tx.fetchall(
        "UPDATE accounts SET"
        " failed_logins = CASE WHEN locked_until > 0 AND locked_until <= ?1 THEN 1"
        "   ELSE failed_logins + 1 END,"
        " locked_until = CASE WHEN locked_until > 0 AND locked_until <= ?1 THEN 0"
        "   ELSE locked_until END,"
        " update_time = ?1"
        " WHERE chitty_id = ?2 RETURNING failed_logins, locked_until",
        (now, chitty_id),
    )
    if not rows:
        return 0, 0.0
    return int(rows[0]["failed_logins"]), float(rows[0]["locked_until"])


async def lock_account(tx: SqliteTransaction, chitty_id: str, until: float, now: float) -> bool:
    """Locks the account until ``until`` unless it is locked already; True when this call did."""
    cursor = await tx.execute(
        "UPDATE accounts SET locked_until = ?, update_time = ?"
        " WHERE chitty_id = ? AND locked_until <= ?",
        (until, now, chitty_id, now),
    )
    return cursor.rowcount == 1


async def clear_login_failures(tx: SqliteTransaction, chitty_id: str, now: float) -> bool:
    """Resets the count after a good password, unless the account is locked (False then)."""
    cursor = await tx.execute(
        "UPDATE accounts SET failed_logins = 0, locked_until = 0, update_time = ?"
        " WHERE chitty_id = ? AND locked_until <= ?",
        (now, chitty_id, now),
    )
    return cursor.rowcount == 1
