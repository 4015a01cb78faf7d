"""SQL for OAuth clients (table ``oauth_clients``); the secret is stored as its SHA-256 only."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import aiosqlite

from chittyauth.store.sqlite import SqliteReader, SqliteTransaction

Conn = SqliteReader | SqliteTransaction

_COLUMNS = (
    "client_id, display_name, kind, confidential, redirect_uris, allowed_scopes, grant_types,"
    " token_endpoint_auth_method, server_id, capabilities, metadata_document_uri, secret_hash,"
    " secret_hint, source, create_time, update_time, exchange_audiences,"
    " exchange_may_impersonate"
)


@dataclass(frozen=True, slots=True)
class ClientRow:
    """A registered client as stored (and as the in-memory registry holds it)."""

    client_id: str
    display_name: str
    # linked_app | mcp_server | service
    kind: str
    confidential: bool
    redirect_uris: tuple[str, ...]
    allowed_scopes: tuple[str, ...]
    # RFC 6749 / RFC 8693 grant_type values.
    grant_types: tuple[str, ...]
    # client_secret_basic | client_secret_post | none
    token_endpoint_auth_method: str
    server_id: str
    capabilities: tuple[str, ...]
    metadata_document_uri: str
    # Hex SHA-256 of the current secret; '' for a public client. Kept out of repr so it never
    # lands in a log line by accident.
    secret_hash: str = field(repr=False)
    secret_hint: str
    # api | file | cli
    source: str
    create_time: float
    update_time: float
    # Token exchange policy (RFC 8693): the audiences / resources the client may request, and
    # whether it may impersonate (issue without an act claim) rather than only delegate.
    exchange_audiences: tuple[str, ...] = ()
    exchange_may_impersonate: bool = False


def _from_row(row: aiosqlite.Row) -> ClientRow:
    return ClientRow(
        client_id=row["client_id"],
        display_name=row["display_name"],
        kind=row["kind"],
        confidential=bool(row["confidential"]),
        redirect_uris=tuple(json.loads(row["redirect_uris"])),
        allowed_scopes=tuple(json.loads(row["allowed_scopes"])),
        grant_types=tuple(json.loads(row["grant_types"])),
        token_endpoint_auth_method=row["token_endpoint_auth_method"],
        server_id=row["server_id"],
        capabilities=tuple(json.loads(row["capabilities"])),
        metadata_document_uri=row["metadata_document_uri"],
        secret_hash=row["secret_hash"],
        secret_hint=row["secret_hint"],
        source=row["source"],
        create_time=row["create_time"],
        update_time=row["update_time"],
        exchange_audiences=tuple(json.loads(row["exchange_audiences"])),
        exchange_may_impersonate=bool(row["exchange_may_impersonate"]),
    )


def _values(row: ClientRow) -> tuple[Any, ...]:
    return (
        row.client_id,
        row.display_name,
        row.kind,
        int(row.confidential),
        json.dumps(list(row.redirect_uris)),
        json.dumps(list(row.allowed_scopes)),
        json.dumps(list(row.grant_types)),
        row.token_endpoint_auth_method,
        row.server_id,
        json.dumps(list(row.capabilities)),
        row.metadata_document_uri,
        row.secret_hash,
        row.secret_hint,
        row.source,
        row.create_time,
        row.update_time,
        json.dumps(list(row.exchange_audiences)),
        int(row.exchange_may_impersonate),
    )


async def insert_client(tx: SqliteTransaction, row: ClientRow) -> None:
    """Adds a client; the caller has checked that the id is free."""
    await tx.execute(
        f"INSERT INTO oauth_clients ({_COLUMNS}) VALUES ({', '.join('?' * 18)})",  # noqa: S608
        _values(row),
    )


async def replace_client(tx: SqliteTransaction, row: ClientRow) -> None:
    """Overwrites every column of an existing client (client_id and create_time stay)."""
    values = _values(row)
    await tx.execute(
        "UPDATE oauth_clients SET display_name = ?, kind = ?, confidential = ?,"
        " redirect_uris = ?, allowed_scopes = ?, grant_types = ?,"
        " token_endpoint_auth_method = ?, server_id = ?, capabilities = ?,"
        " metadata_document_uri = ?, secret_hash = ?, secret_hint = ?, source = ?,"
        " update_time = ?, exchange_audiences = ?, exchange_may_impersonate = ?"
        " WHERE client_id = ?",
        (*values[1:14], row.update_time, *values[16:18], row.client_id),
    )


async def delete_client(tx: SqliteTransaction, client_id: str) -> bool:
    """Removes a client; False when there was none."""
    cursor = await tx.execute("DELETE FROM oauth_clients WHERE client_id = ?", (client_id,))
    return cursor.rowcount > 0


async def get_client(conn: Conn, client_id: str) -> ClientRow | None:
    row = await conn.fetchone(
        f"SELECT {_COLUMNS} FROM oauth_clients WHERE client_id = ?",  # noqa: S608
        (client_id,),
    )
    return None if row is None else _from_row(row)


async def clients_by_id(conn: Conn, client_ids: Sequence[str]) -> list[ClientRow]:
    """The clients among ``client_ids`` that exist (any order)."""
    found: list[ClientRow] = []
    # Bounded batches keep under SQLite's bound-parameter limit.
    for start in range(0, len(client_ids), 500):
        chunk = client_ids[start : start + 500]
        rows = await conn.fetchall(
            f"SELECT {_COLUMNS} FROM oauth_clients"  # noqa: S608 - placeholders only
            f" WHERE client_id IN ({', '.join('?' * len(chunk))})",
            tuple(chunk),
        )
        found.extend(_from_row(row) for row in rows)
    return found


async def all_clients(conn: Conn) -> list[ClientRow]:
    rows = await conn.fetchall(f"SELECT {_COLUMNS} FROM oauth_clients")  # noqa: S608
    return [_from_row(row) for row in rows]


async def list_clients(
    conn: Conn, *, after: tuple[float, str] | None, kind: str, limit: int
) -> list[ClientRow]:
    """Clients oldest first, after the (create_time, client_id) position, optionally of a kind."""
    clauses: list[str] = []
    params: list[Any] = []
    if after is not None:
        clauses.append("(create_time, client_id) > (?, ?)")
        params.extend(after)
    if kind:
        clauses.append("kind = ?")
        params.append(kind)
    where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
    params.append(limit)
    rows = await conn.fetchall(
        # Clauses are fixed text; every value is bound.
        f"SELECT {_COLUMNS} FROM oauth_clients{where}"  # noqa: S608
        " ORDER BY create_time, client_id LIMIT ?",
        params,
    )
    return [_from_row(row) for row in rows]
