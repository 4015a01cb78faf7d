"""Helpers for the clients and API key tests: stubs, error details, rows read with sqlite3."""

from __future__ import annotations

import random
import sqlite3
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from google.rpc import error_details_pb2, status_pb2
from grpc import aio

from chitty.auth.v1 import client_pb2
from chittyauth.app import Server
from chittyauth.clock import Clock
from chittyauth.config import Config
from chittyauth.domain.chittyid import mint_official
from chittyauth.rpc.errors import STATUS_DETAILS_KEY
from chittyauth.store.protocol import AuditQuery, StoredAuditEvent

# Official-form ChittyIDs with a valid check character, so a dev authority can vouch for them.
OWNER = mint_official("PEO", random.Random(1))
OTHER = mint_official("PEO", random.Random(2))


def reason(error: aio.AioRpcError) -> str:
    """The ErrorInfo reason of a refused call."""
    raw = dict(error.trailing_metadata() or ())[STATUS_DETAILS_KEY]
    status = status_pb2.Status.FromString(raw)
    info = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(info)
    assert info.domain == "auth.chitty.cc"
    return info.reason


def linked_app(**fields: Any) -> client_pb2.Client:
    """A confidential linked app; fields override."""
    values: dict[str, Any] = {
        "display_name": "Linked App",
        "kind": client_pb2.CLIENT_KIND_LINKED_APP,
        "confidential": True,
        "redirect_uris": ["https://app.example/callback"],
        "allowed_scopes": ["mcp:read", "mcp:write"],
    }
    values.update(fields)
    return client_pb2.Client(**values)


def sql_all(db: str | Path, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    """Rows from the database file, read with plain sqlite3 (committed data)."""
    conn = sqlite3.connect(db)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


async def audit_events(server: Server, action: str = "") -> list[StoredAuditEvent]:
    return await server.store.list_audit_events(AuditQuery(action=action, limit=10_000))


@asynccontextmanager
async def running(config: Config, clock: Clock | None = None) -> AsyncIterator[Server]:
    """A started server over ``config`` (for tests that restart or pin time)."""
    srv = Server(config, clock=clock)
    try:
        await srv.start()
    except BaseException:
        await srv.stop(grace=0)  # a failed start leaves nothing running behind
        raise
    try:
        yield srv
    finally:
        await srv.stop(grace=0.5)


async def admin_token(server: Server) -> str:
    """A real access token with chittyauth:admin, minted by the server's token service."""
    async with server.store.transaction() as tx:
        issued = await server.tokens.issue(
            tx, subject="ops", client_id="ops", token_use="service", scopes=("chittyauth:admin",)
        )
    return issued.token
