"""SQL for sessions, devices, MCP servers, sealed state blobs and state keys (SQLite).

Write functions take the current ``SqliteTransaction``; read functions take anything with
``fetchone``/``fetchall`` (a transaction, or ``store.read()`` for committed data). The records
defined here are what the domain works with; no SQL leaves this module.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from chittyauth.store.protocol import Change
from chittyauth.store.sqlite import Params, SqliteTransaction

SessionStatus = Literal["active", "revoked", "expired"]

# One SQL parameter list must stay below SQLite's bound-variable limit.
_IN_BATCH = 500


class Queryable(Protocol):
    """A transaction or a reader: something that can run a SELECT."""

    async def fetchone(self, sql: str, params: Params = ()) -> Any: ...

    async def fetchall(self, sql: str, params: Params = ()) -> list[Any]: ...


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    """A device as a client describes it: id, name and client type."""

    device_id: str
    display_name: str
    # claude_desktop | web | mobile
    client_type: str


@dataclass(frozen=True, slots=True)
class DeviceRecord:
    """A device attached to a session."""

    device_id: str
    display_name: str
    client_type: str
    added_at: float
    last_seen_at: float


@dataclass(frozen=True, slots=True)
class AttachedDevice:
    """A device and the session it is attached to."""

    session_id: str
    device: DeviceRecord


@dataclass(frozen=True, slots=True)
class SessionRecord:
    """One session with its devices and MCP servers."""

    session_id: str
    chitty_id: str
    status: SessionStatus
    created_at: float
    updated_at: float
    last_activity_at: float
    expires_at: float
    ended_at: float | None = None
    end_reason: str = ""
    devices: tuple[DeviceRecord, ...] = ()
    mcp_servers: tuple[str, ...] = ()

    @property
    def is_active(self) -> bool:
        return self.status == "active"


@dataclass(frozen=True, slots=True)
class SealedState:
    """A state blob as stored: sealed under ``key_id``, never plaintext."""

    session_id: str
    mcp_server: str
    version: int
    key_id: str
    sealed: bytes
    updated_at: float
    updated_by_device_id: str


@dataclass(frozen=True, slots=True)
class StateKeyRow:
    """A wrapped data-encryption key."""

    key_id: str
    wrapped: bytes
    created_at: float
    retired_at: float | None


# -- sessions ---------------------------------------------------------------------------------

_SESSION_COLUMNS = (
    "session_id, chitty_id, status, created_at, updated_at, last_activity_at, expires_at,"
    " ended_at, end_reason"
)


async def insert_session(tx: SqliteTransaction, record: SessionRecord) -> None:
    """Adds a new session row (devices and servers are added separately)."""
    await tx.execute(
        f"INSERT INTO sessions ({_SESSION_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",  # noqa: S608
        (
            record.session_id,
            record.chitty_id,
            record.status,
            record.created_at,
            record.updated_at,
            record.last_activity_at,
            record.expires_at,
            record.ended_at,
            record.end_reason,
        ),
    )


async def get_session(q: Queryable, session_id: str) -> SessionRecord | None:
    """The session with its devices and servers, or None."""
    row = await q.fetchone(
        f"SELECT {_SESSION_COLUMNS} FROM sessions WHERE session_id = ?",  # noqa: S608
        (session_id,),
    )
    if row is None:
        return None
    return (await _with_parts(q, [row]))[0]


async def list_sessions(
    q: Queryable,
    chitty_id: str,
    *,
    include_ended: bool,
    after: tuple[float, str] | None,
    limit: int,
) -> list[SessionRecord]:
    """A ChittyID's sessions, newest first, strictly after the ``(created_at, id)`` key."""
    clauses = ["chitty_id = ?"]
    params: list[Any] = [chitty_id]
    if not include_ended:
        clauses.append("status = 'active'")
    if after is not None:
        clauses.append("(created_at < ? OR (created_at = ? AND session_id < ?))")
        params.extend([after[0], after[0], after[1]])
    params.append(limit)
    rows = await q.fetchall(
        # Clauses are fixed text; every value is bound.
        f"SELECT {_SESSION_COLUMNS} FROM sessions WHERE {' AND '.join(clauses)}"  # noqa: S608
        " ORDER BY created_at DESC, session_id DESC LIMIT ?",
        params,
    )
    return await _with_parts(q, rows)


async def active_session_ids(q: Queryable, chitty_id: str) -> list[str]:
    """Ids of a ChittyID's active sessions."""
    rows = await q.fetchall(
        "SELECT session_id FROM sessions WHERE chitty_id = ? AND status = 'active'",
        (chitty_id,),
    )
    return [row["session_id"] for row in rows]


async def due_session_ids(
    q: Queryable, *, idle_before: float, now: float, chitty_id: str = "", limit: int = 100
) -> list[str]:
    """Active sessions idle since ``idle_before`` or past their absolute expiry."""
    sql = (
        "SELECT session_id FROM sessions WHERE status = 'active'"
        " AND (last_activity_at <= ? OR expires_at <= ?)"
    )
    params: list[Any] = [idle_before, now]
    if chitty_id:
        sql += " AND chitty_id = ?"
        params.append(chitty_id)
    params.append(limit)
    rows = await q.fetchall(sql + " LIMIT ?", params)
    return [row["session_id"] for row in rows]


async def touch_session(tx: SqliteTransaction, session_id: str, now: float) -> None:
    """Records activity (pushes the idle expiry back)."""
    await tx.execute(
        "UPDATE sessions SET last_activity_at = ? WHERE session_id = ? AND status = 'active'",
        (now, session_id),
    )


async def mark_updated(tx: SqliteTransaction, session_id: str, now: float) -> None:
    """Records that the session's devices or servers changed."""
    await tx.execute("UPDATE sessions SET updated_at = ? WHERE session_id = ?", (now, session_id))


async def end_session(
    tx: SqliteTransaction,
    session_id: str,
    *,
    status: Literal["revoked", "expired"],
    reason: str,
    now: float,
) -> bool:
    """Ends an active session, detaches its devices and drops its state; False if not active."""
    cursor = await tx.execute(
        "UPDATE sessions SET status = ?, end_reason = ?, ended_at = ?, updated_at = ?"
        " WHERE session_id = ? AND status = 'active'",
        (status, reason, now, now, session_id),
    )
    if cursor.rowcount != 1:
        return False
    # Rows stay for history but no longer count towards the device limit.
    await tx.execute("UPDATE session_devices SET attached = 0 WHERE session_id = ?", (session_id,))
    # An ended session keeps no state: there is no one left to read it.
    await tx.execute("DELETE FROM session_states WHERE session_id = ?", (session_id,))
    return True


# -- devices ----------------------------------------------------------------------------------


async def attached_device(q: Queryable, chitty_id: str, device_id: str) -> AttachedDevice | None:
    """Where a ChittyID's device is attached, if anywhere."""
    row = await q.fetchone(
        "SELECT * FROM session_devices WHERE chitty_id = ? AND device_id = ? AND attached = 1",
        (chitty_id, device_id),
    )
    return None if row is None else AttachedDevice(row["session_id"], _device(row))


async def count_attached_devices(q: Queryable, chitty_id: str) -> int:
    """How many devices a ChittyID has attached across its active sessions."""
    row = await q.fetchone(
        "SELECT COUNT(*) FROM session_devices WHERE chitty_id = ? AND attached = 1",
        (chitty_id,),
    )
    return int(row[0]) if row else 0


async def least_recent_devices(q: Queryable, chitty_id: str, count: int) -> list[AttachedDevice]:
    """The ``count`` least recently seen attached devices of a ChittyID (eviction order)."""
    rows = await q.fetchall(
        "SELECT * FROM session_devices WHERE chitty_id = ? AND attached = 1"
        " ORDER BY last_seen_at, added_at, device_id LIMIT ?",
        (chitty_id, count),
    )
    return [AttachedDevice(row["session_id"], _device(row)) for row in rows]


async def attach_device(
    tx: SqliteTransaction, session_id: str, chitty_id: str, device: DeviceRecord
) -> None:
    """Attaches a device (the caller has made sure it is attached nowhere else)."""
    await tx.execute(
        "INSERT INTO session_devices (session_id, device_id, chitty_id, display_name,"
        " client_type, added_at, last_seen_at, attached) VALUES (?, ?, ?, ?, ?, ?, ?, 1)",
        (
            session_id,
            device.device_id,
            chitty_id,
            device.display_name,
            device.client_type,
            device.added_at,
            device.last_seen_at,
        ),
    )


async def refresh_device(
    tx: SqliteTransaction, session_id: str, device: DeviceInfo, now: float
) -> None:
    """Marks an attached device as seen now, with its current name and type."""
    await tx.execute(
        "UPDATE session_devices SET display_name = ?, client_type = ?, last_seen_at = ?"
        " WHERE session_id = ? AND device_id = ?",
        (device.display_name, device.client_type, now, session_id, device.device_id),
    )


async def detach_device(tx: SqliteTransaction, session_id: str, device_id: str) -> bool:
    """Removes a device from a session; False if it was not there."""
    cursor = await tx.execute(
        "DELETE FROM session_devices WHERE session_id = ? AND device_id = ? AND attached = 1",
        (session_id, device_id),
    )
    return cursor.rowcount == 1


# -- MCP servers ------------------------------------------------------------------------------


async def attach_server(tx: SqliteTransaction, session_id: str, server: str, now: float) -> bool:
    """Attaches an MCP server; False if it was attached already."""
    cursor = await tx.execute(
        "INSERT INTO session_servers (session_id, mcp_server, attached_at) VALUES (?, ?, ?)"
        " ON CONFLICT (session_id, mcp_server) DO NOTHING",
        (session_id, server, now),
    )
    return cursor.rowcount == 1


# -- state ------------------------------------------------------------------------------------


async def get_state(q: Queryable, session_id: str, server: str) -> SealedState | None:
    """The sealed state of one MCP server in one session, or None if never written."""
    row = await q.fetchone(
        "SELECT * FROM session_states WHERE session_id = ? AND mcp_server = ?",
        (session_id, server),
    )
    if row is None:
        return None
    return SealedState(
        session_id=row["session_id"],
        mcp_server=row["mcp_server"],
        version=row["version"],
        key_id=row["key_id"],
        sealed=bytes(row["sealed"]),
        updated_at=row["updated_at"],
        updated_by_device_id=row["updated_by_device_id"],
    )


async def state_version(q: Queryable, session_id: str, server: str) -> int:
    """The current version (0 when never written)."""
    row = await q.fetchone(
        "SELECT version FROM session_states WHERE session_id = ? AND mcp_server = ?",
        (session_id, server),
    )
    return int(row[0]) if row else 0


async def write_state_if_version(
    tx: SqliteTransaction, state: SealedState, expected_version: int
) -> bool:
    """Compare-and-set: stores ``state`` only if the current version is ``expected_version``.

    ``state.version`` must be ``expected_version + 1``. The check and the write are one SQL
    statement, so no interleaving can slip a write in between; False means the version moved.
    """
    values = (
        state.version,
        state.key_id,
        state.sealed,
        state.updated_at,
        state.updated_by_device_id,
        state.session_id,
        state.mcp_server,
    )
    if expected_version == 0:
        cursor = await tx.execute(
            "INSERT INTO session_states (version, key_id, sealed, updated_at,"
            " updated_by_device_id, session_id, mcp_server) VALUES (?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (session_id, mcp_server) DO NOTHING",
            values,
        )
    else:
        cursor = await tx.execute(
            "UPDATE session_states SET version = ?, key_id = ?, sealed = ?, updated_at = ?,"
            " updated_by_device_id = ? WHERE session_id = ? AND mcp_server = ? AND version = ?",
            (*values, expected_version),
        )
    return cursor.rowcount == 1


# -- state keys -------------------------------------------------------------------------------


async def list_state_keys(q: Queryable) -> list[StateKeyRow]:
    """Every data key, oldest first."""
    rows = await q.fetchall("SELECT * FROM session_state_keys ORDER BY created_at, key_id")
    return [
        StateKeyRow(row["key_id"], bytes(row["wrapped"]), row["created_at"], row["retired_at"])
        for row in rows
    ]


async def add_state_key(tx: SqliteTransaction, key_id: str, wrapped: bytes, now: float) -> None:
    """Stores a new data key as the current one and retires the others."""
    await tx.execute(
        "UPDATE session_state_keys SET retired_at = ? WHERE retired_at IS NULL", (now,)
    )
    await tx.execute(
        "INSERT INTO session_state_keys (key_id, wrapped, created_at) VALUES (?, ?, ?)",
        (key_id, wrapped, now),
    )


# -- change log -------------------------------------------------------------------------------


async def session_changes_after(q: Queryable, seq: int, *, limit: int) -> list[Change]:
    """``session.*`` change-log entries after ``seq``, in order."""
    rows = await q.fetchall(
        "SELECT seq, kind, key, payload, created_at FROM changes"
        " WHERE seq > ? AND kind LIKE 'session.%' ORDER BY seq LIMIT ?",
        (seq, limit),
    )
    return [
        Change(
            seq=row["seq"],
            kind=row["kind"],
            key=row["key"],
            payload=json.loads(row["payload"]),
            created_at=row["created_at"],
        )
        for row in rows
    ]


# -- helpers ----------------------------------------------------------------------------------


def _device(row: Any) -> DeviceRecord:
    return DeviceRecord(
        device_id=row["device_id"],
        display_name=row["display_name"],
        client_type=row["client_type"],
        added_at=row["added_at"],
        last_seen_at=row["last_seen_at"],
    )


async def _with_parts(q: Queryable, rows: Sequence[Any]) -> list[SessionRecord]:
    """Builds records for session rows, loading their devices and servers in bulk."""
    ids = [row["session_id"] for row in rows]
    devices: dict[str, list[DeviceRecord]] = {sid: [] for sid in ids}
    servers: dict[str, list[str]] = {sid: [] for sid in ids}
    for chunk in _chunks(ids, _IN_BATCH):
        marks = ",".join("?" * len(chunk))
        for row in await q.fetchall(
            # Only placeholders are formatted in; every value is bound.
            f"SELECT * FROM session_devices WHERE session_id IN ({marks})"  # noqa: S608
            " ORDER BY added_at, device_id",
            chunk,
        ):
            devices[row["session_id"]].append(_device(row))
        for row in await q.fetchall(
            f"SELECT session_id, mcp_server FROM session_servers"  # noqa: S608
            f" WHERE session_id IN ({marks}) ORDER BY attached_at, mcp_server",
            chunk,
        ):
            servers[row["session_id"]].append(row["mcp_server"])
    return [
        SessionRecord(
            session_id=row["session_id"],
            chitty_id=row["chitty_id"],
            status=row["status"],
            created_at=row["created_at"],
            updated_at=row["updated_at"],
            last_activity_at=row["last_activity_at"],
            expires_at=row["expires_at"],
            ended_at=row["ended_at"],
            end_reason=row["end_reason"],
            devices=tuple(devices[row["session_id"]]),
            mcp_servers=tuple(servers[row["session_id"]]),
        )
        for row in rows
    ]


def _chunks(items: Sequence[str], size: int) -> Iterable[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
