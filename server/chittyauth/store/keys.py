"""Rows of ``signing_keys``: the SQL behind the key ring.

Private material arrives here already sealed (AES-256-GCM, see ``domain/keys.py``); this module
never sees a plaintext key.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from chittyauth.store.sqlite import Params, SqliteTransaction

_COLUMNS = "kid, algorithm, state, sealed_key, create_time, activate_time, retire_time, delete_time"


class Queryable(Protocol):
    """A write transaction or a committed-data reader."""

    async def fetchall(self, sql: str, params: Params = ()) -> list[Any]: ...


@dataclass(frozen=True, slots=True)
class KeyRow:
    """One stored signing key."""

    kid: str
    algorithm: str
    # next | active | retired
    state: str
    sealed_key: bytes
    create_time: float
    activate_time: float | None = None
    retire_time: float | None = None
    delete_time: float | None = None


async def list_keys(db: Queryable, algorithm: str = "") -> list[KeyRow]:
    """Every key (of ``algorithm`` when given), newest first."""
    if algorithm:
        rows = await db.fetchall(
            f"SELECT {_COLUMNS} FROM signing_keys WHERE algorithm = ?"  # noqa: S608 - fixed columns
            " ORDER BY create_time DESC, kid",
            (algorithm,),
        )
    else:
        rows = await db.fetchall(
            f"SELECT {_COLUMNS} FROM signing_keys ORDER BY create_time DESC, kid"  # noqa: S608
        )
    return [_row(row) for row in rows]


async def live_keys(tx: SqliteTransaction, algorithm: str) -> dict[str, KeyRow]:
    """The next and active keys of one algorithm, by state, as this transaction sees them."""
    rows = await tx.fetchall(
        f"SELECT {_COLUMNS} FROM signing_keys"  # noqa: S608 - fixed columns
        " WHERE algorithm = ? AND state IN ('next', 'active')",
        (algorithm,),
    )
    return {row["state"]: _row(row) for row in rows}


async def insert_key(tx: SqliteTransaction, key: KeyRow) -> None:
    """Stores a new key."""
    await tx.execute(
        f"INSERT INTO signing_keys ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",  # noqa: S608
        (
            key.kid,
            key.algorithm,
            key.state,
            key.sealed_key,
            key.create_time,
            key.activate_time,
            key.retire_time,
            key.delete_time,
        ),
    )


async def activate(tx: SqliteTransaction, kid: str, activate_time: float) -> None:
    """Moves a next key to active."""
    await tx.execute(
        "UPDATE signing_keys SET state = 'active', activate_time = ?"
        " WHERE kid = ? AND state = 'next'",
        (activate_time, kid),
    )


async def retire(tx: SqliteTransaction, kid: str, retire_time: float, delete_time: float) -> None:
    """Moves an active key to retired; it keeps verifying until ``delete_time``."""
    await tx.execute(
        "UPDATE signing_keys SET state = 'retired', retire_time = ?, delete_time = ?"
        " WHERE kid = ? AND state = 'active'",
        (retire_time, delete_time, kid),
    )


async def expired_keys(tx: SqliteTransaction, now: float) -> list[KeyRow]:
    """Retired keys whose delete time has passed."""
    rows = await tx.fetchall(
        f"SELECT {_COLUMNS} FROM signing_keys"  # noqa: S608 - fixed columns
        " WHERE state = 'retired' AND delete_time <= ? ORDER BY delete_time, kid",
        (now,),
    )
    return [_row(row) for row in rows]


async def delete_keys(tx: SqliteTransaction, kids: Sequence[str]) -> None:
    """Removes keys for good."""
    await tx.executemany("DELETE FROM signing_keys WHERE kid = ?", [(kid,) for kid in kids])


def _row(row: Any) -> KeyRow:
    return KeyRow(
        kid=row["kid"],
        algorithm=row["algorithm"],
        state=row["state"],
        sealed_key=bytes(row["sealed_key"]),
        create_time=row["create_time"],
        activate_time=row["activate_time"],
        retire_time=row["retire_time"],
        delete_time=row["delete_time"],
    )
