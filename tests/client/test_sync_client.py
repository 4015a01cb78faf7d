"""AuthClient (blocking) against a real server, called from a worker thread."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from chitty.auth.client import AuthClient, ClientCredentials, NotFound, StaticToken
from chitty.auth.v1 import (
    api_key_service_pb2,
    audit_service_pb2,
    auth_service_pb2,
    client_service_pb2,
    key_service_pb2,
    permission_service_pb2,
    sync_service_pb2,
)
from chittyauth.app import Server
from tests.client.test_async_client import OWNER


def _exercise(target: str, creds: ClientCredentials) -> dict[str, object]:
    with AuthClient(target, creds) as client:
        token = client.access_token()
        out: dict[str, object] = {
            "active": client.validate(auth_service_pb2.ValidateRequest(token=token)).active,
            "jwks": len(client.get_jwks(auth_service_pb2.GetJwksRequest()).keys),
            "clients": [
                c.client_id
                for c in client.list_clients(client_service_pb2.ListClientsRequest()).clients
            ],
            "keys": len(client.list_signing_keys(key_service_pb2.ListSigningKeysRequest()).keys),
            "audit_valid": client.verify_audit_log(audit_service_pb2.VerifyAuditLogRequest()).valid,
            "api_keys": len(
                client.list_api_keys(
                    api_key_service_pb2.ListApiKeysRequest(chitty_id=OWNER)
                ).api_keys
            ),
            "sessions": len(
                client.list_sessions(sync_service_pb2.ListSessionsRequest(chitty_id=OWNER)).sessions
            ),
            "allowed": client.check_permission(
                permission_service_pb2.CheckPermissionRequest(
                    chitty_id=OWNER, permission="docs:read", resource="docs/1"
                )
            ).allowed,
        }
        assert client.token_source is not None
        out["exchanges"] = client.token_source.exchanges
        with pytest.raises(NotFound) as missing:
            client.get_client(client_service_pb2.GetClientRequest(client_id="nobody"))
        out["missing"] = missing.value.code
        return out


async def test_every_service_sync(server: Server, admin_creds: ClientCredentials) -> None:
    result = await asyncio.to_thread(_exercise, server.grpc_target, admin_creds)
    assert result["active"] is True
    assert result["jwks"]
    assert result["keys"]
    assert result["clients"] == ["ops-admin"]
    assert result["audit_valid"] is True
    assert result["api_keys"] == 0
    assert result["sessions"] == 0
    assert result["allowed"] is False
    assert result["exchanges"] == 1
    assert result["missing"] == grpc.StatusCode.NOT_FOUND


async def test_sync_stream_and_static_token(server: Server, admin_token: str) -> None:
    server.revocation_hub.heartbeat_interval_s = 0.1

    def first_heartbeat() -> str:
        with AuthClient(server.grpc_target, StaticToken(admin_token)) as client:
            stream = client.watch_revocations(auth_service_pb2.WatchRevocationsRequest())
            for message in stream:
                if not message.HasField("event"):
                    stream.close()
                    return message.cursor
        return ""

    assert await asyncio.to_thread(first_heartbeat)
