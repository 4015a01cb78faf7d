"""The HTTP side of a real started server: an aiohttp client, its base URL, registered clients."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from grpc import aio

from chitty.auth.v1 import client_pb2, client_service_pb2, client_service_pb2_grpc
from chittyauth.app import Server
from chittyauth.store.protocol import AuditQuery, StoredAuditEvent
from tests.conftest import bearer

FORM = "application/x-www-form-urlencoded"


@dataclass(frozen=True)
class RegisteredClient:
    client_id: str
    client_secret: str


def base_url(server: Server) -> str:
    return f"http://127.0.0.1:{server.http_port}"


@pytest.fixture
def base(server: Server) -> str:
    return base_url(server)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def register_client(
    channel: aio.Channel,
    admin: str,
    *,
    client_id: str = "",
    kind: int = client_pb2.CLIENT_KIND_SERVICE,
    scopes: Sequence[str] = ("mcp:read", "mcp:write"),
    **fields: Any,
) -> RegisteredClient:
    """A confidential client created through ClientService with an admin token."""
    stub = client_service_pb2_grpc.ClientServiceStub(channel)
    reply = await stub.CreateClient(
        client_service_pb2.CreateClientRequest(
            client=client_pb2.Client(
                client_id=client_id,
                display_name="Reports service",
                kind=kind,
                confidential=True,
                allowed_scopes=scopes,
                **fields,
            )
        ),
        metadata=bearer(admin),
    )
    return RegisteredClient(reply.client.client_id, reply.client_secret)


@pytest.fixture
async def service_client(channel: aio.Channel, admin_token: str) -> RegisteredClient:
    """A confidential service client allowed mcp:read and mcp:write (client_credentials)."""
    return await register_client(channel, admin_token)


async def audit_events(server: Server, action: str) -> list[StoredAuditEvent]:
    return await server.store.list_audit_events(AuditQuery(action=action, limit=1000))


def sql_all(db: str | Path, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    """Committed rows, read from the database file with plain sqlite3."""
    conn = sqlite3.connect(db)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()
