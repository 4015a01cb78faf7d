"""Fail closed: with the authority down nothing is issued or written, and health says so."""

from __future__ import annotations

import grpc
import pytest
from grpc import aio
from grpc_health.v1 import health_pb2

from chitty.auth.v1 import (
    auth_service_pb2,
    auth_service_pb2_grpc,
    permission_service_pb2,
    permission_service_pb2_grpc,
)
from chittyauth.app import Server
from tests.identity_flows.helpers import count, details, wait_for_health
from tests.support.devauthority import DevAuthority


async def test_outage_refuses_everything_then_recovers(
    id_server: Server,
    id_channel: aio.Channel,
    dev_authority: DevAuthority,
    mint_token: object,
) -> None:
    auth = auth_service_pb2_grpc.AuthServiceStub(id_channel)
    permissions = permission_service_pb2_grpc.PermissionServiceStub(id_channel)
    # Assertions and ChittyIDs are made while the authority is up.
    assertion = await dev_authority.mint_assertion("carol@example.com")
    grantor = await dev_authority.request("POST", "/v1/mint", json={"entity": "PEO"})
    grantee = await dev_authority.request("POST", "/v1/mint", json={"entity": "PEO"})
    token = await mint_token(  # type: ignore[operator]
        subject=grantor["chittyId"], scopes=("authorizations:grant",), token_use="portal"
    )
    portal = auth_service_pb2.AuthenticateRequest(
        portal=auth_service_pb2.PortalCredential(assertion=assertion)
    )
    register = auth_service_pb2.RegisterAccountRequest(
        email="carol@example.com", password="correct horse battery"
    )
    grant = permission_service_pb2.GrantPermissionRequest(
        grantee_chitty_id=grantee["chittyId"], permission="docs:read"
    )
    tables = ("portal_identities", "accounts", "permission_grants", "tokens", "sessions")
    before = {table: count(id_server, table) for table in tables}

    await dev_authority.stop()
    await wait_for_health(id_channel, health_pb2.HealthCheckResponse.NOT_SERVING)
    for call in (
        auth.Authenticate(portal),
        auth.RegisterAccount(register),
        permissions.GrantPermission(grant, metadata=(("authorization", f"Bearer {token}"),)),
    ):
        with pytest.raises(aio.AioRpcError) as caught:
            await call
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
        assert details(caught.value)[0] == "AUTHORITY_UNAVAILABLE"
    assert {table: count(id_server, table) for table in tables} == before

    await dev_authority.start()
    await wait_for_health(id_channel, health_pb2.HealthCheckResponse.SERVING)
    logged_in = await auth.Authenticate(portal)
    registered = await auth.RegisterAccount(register)
    granted = await permissions.GrantPermission(
        grant, metadata=(("authorization", f"Bearer {token}"),)
    )
    assert logged_in.access_token
    assert registered.account.chitty_id
    assert granted.grant.grant_id
    assert count(id_server, "portal_identities") == before["portal_identities"] + 1
    assert count(id_server, "accounts") == before["accounts"] + 1
    assert count(id_server, "permission_grants") == before["permission_grants"] + 1
