"""Small helpers shared by the session tests."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from google.rpc import error_details_pb2, status_pb2
from grpc import aio

from chitty.auth.v1 import session_pb2, sync_service_pb2, sync_service_pb2_grpc
from chittyauth.app import Server
from chittyauth.rpc.errors import STATUS_DETAILS_KEY
from chittyauth.store.protocol import AuditQuery, StoredAuditEvent
from tests.conftest import bearer

WEB = session_pb2.CLIENT_TYPE_WEB
DESKTOP = session_pb2.CLIENT_TYPE_CLAUDE_DESKTOP
MOBILE = session_pb2.CLIENT_TYPE_MOBILE


def error_info(error: aio.AioRpcError) -> error_details_pb2.ErrorInfo:
    raw = dict(error.trailing_metadata() or ())[STATUS_DETAILS_KEY]
    status = status_pb2.Status.FromString(raw)
    info = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(info)
    return info


def device(device_id: str, client_type: int = WEB) -> sync_service_pb2.DeviceRegistration:
    return sync_service_pb2.DeviceRegistration(
        device_id=device_id, display_name=f"{device_id} name", client_type=client_type
    )


async def sync(
    stub: sync_service_pb2_grpc.SyncServiceStub,
    token: str,
    *,
    name: str = "",
    device_id: str = "",
    servers: tuple[str, ...] = (),
    remove: tuple[str, ...] = (),
) -> sync_service_pb2.SyncSessionResponse:
    request = sync_service_pb2.SyncSessionRequest(
        name=name, mcp_servers=servers, remove_device_ids=remove
    )
    if device_id:
        request.device.CopyFrom(device(device_id))
    reply: sync_service_pb2.SyncSessionResponse = await stub.SyncSession(
        request, metadata=bearer(token)
    )
    return reply


async def put_state(
    stub: sync_service_pb2_grpc.SyncServiceStub,
    token: str,
    name: str,
    data: bytes,
    expected: int,
    *,
    server: str = "chittymcp",
    device_id: str = "",
) -> sync_service_pb2.PutSessionStateResponse:
    reply: sync_service_pb2.PutSessionStateResponse = await stub.PutSessionState(
        sync_service_pb2.PutSessionStateRequest(
            name=name, mcp_server=server, data=data, expected_version=expected, device_id=device_id
        ),
        metadata=bearer(token),
    )
    return reply


def rows(server: Server, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Rows read back from the server's database file with plain sqlite3."""
    conn = sqlite3.connect(Path(server.config.store.path))
    try:
        return list(conn.execute(sql, params).fetchall())
    finally:
        conn.close()


def session_snapshot(server: Server) -> list[list[tuple[Any, ...]]]:
    """Everything session-related in the database (to prove nothing changed)."""
    return [
        rows(server, f"SELECT * FROM {table} ORDER BY 1, 2")
        for table in ("sessions", "session_devices", "session_servers", "session_states")
    ] + [rows(server, "SELECT seq, kind FROM changes WHERE kind LIKE 'session.%'")]


async def audit_events(server: Server, action: str) -> list[StoredAuditEvent]:
    return await server.store.list_audit_events(AuditQuery(action=action, limit=1000))
