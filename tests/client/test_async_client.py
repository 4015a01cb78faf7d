"""AsyncAuthClient against a real server: every service, typed errors, refresh, retries."""

from __future__ import annotations

import asyncio
import dataclasses
import random
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from chitty.auth.client import (
    AsyncAuthClient,
    ClientCredentials,
    InvalidArgument,
    InvalidClient,
    InvalidScope,
    NotFound,
    PermissionDenied,
    StaticToken,
    Unauthenticated,
)
from chitty.auth.client.errors import Aborted, RateLimited, error_from_status
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
from chittyauth.clock import FakeClock
from chittyauth.config import Config, replace
from chittyauth.domain import errors as domain_errors
from chittyauth.domain.chittyid import mint_official
from chittyauth.rpc.errors import STATUS_DETAILS_KEY, status_for
from tests.client.conftest import create_service_client
from tests.clients.helpers import running
from tests.support.fixtures import vouching_authority, with_authority


@pytest.fixture
async def config(config: Config, tmp_path: Path) -> AsyncIterator[Config]:
    """Keys are made for ChittyIDs only while the authority vouches for them (fail closed)."""
    async with vouching_authority(tmp_path, OWNER) as authority:
        yield with_authority(config, authority)


OWNER = mint_official("PEO", random.Random(7))


async def test_every_service_with_client_credentials(
    server: Server, admin_creds: ClientCredentials
) -> None:
    async with AsyncAuthClient(server.grpc_target, admin_creds) as client:
        jwks = await client.get_jwks(auth_service_pb2.GetJwksRequest())
        assert jwks.keys
        assert all(key.kid for key in jwks.keys)
        token = await client.access_token()
        validated = await client.validate(auth_service_pb2.ValidateRequest(token=token))
        assert validated.active
        assert validated.claims.client_id == "ops-admin"

        clients = await client.list_clients(client_service_pb2.ListClientsRequest())
        assert [c.client_id for c in clients.clients] == ["ops-admin"]
        got = await client.get_client(client_service_pb2.GetClientRequest(client_id="ops-admin"))
        assert got.client.kind == clients.clients[0].kind

        keys = await client.list_signing_keys(key_service_pb2.ListSigningKeysRequest())
        assert {k.kid for k in keys.keys} >= {k.kid for k in jwks.keys}

        audit = await client.list_audit_events(audit_service_pb2.ListAuditEventsRequest())
        assert any(e.action == "client.created" for e in audit.events)
        verified = await client.verify_audit_log(audit_service_pb2.VerifyAuditLogRequest())
        assert verified.valid

        created = await client.create_api_key(
            api_key_service_pb2.CreateApiKeyRequest(chitty_id=OWNER, display_name="ci")
        )
        assert created.key.startswith("sk_")
        listed = await client.list_api_keys(api_key_service_pb2.ListApiKeysRequest(chitty_id=OWNER))
        assert len(listed.api_keys) == 1

        sessions = await client.list_sessions(sync_service_pb2.ListSessionsRequest(chitty_id=OWNER))
        assert list(sessions.sessions) == []

        check = permission_service_pb2.CheckPermissionRequest(
            chitty_id=OWNER, permission="docs:read", resource="docs/1"
        )
        assert not (await client.check_permission(check)).allowed
        assert client.token_source is not None
        assert client.token_source.exchanges == 1


async def test_static_token_and_typed_errors(server: Server, admin_token: str) -> None:
    async with AsyncAuthClient(server.grpc_target, StaticToken(admin_token)) as client:
        with pytest.raises(NotFound) as missing:
            await client.get_client(client_service_pb2.GetClientRequest(client_id="nobody"))
        assert missing.value.code == grpc.StatusCode.NOT_FOUND
        assert missing.value.reason
        with pytest.raises(InvalidArgument) as bad:
            await client.list_clients(client_service_pb2.ListClientsRequest(page_token="%%%"))
        assert bad.value.code == grpc.StatusCode.INVALID_ARGUMENT

    async with AsyncAuthClient(server.grpc_target) as anonymous:
        with pytest.raises(Unauthenticated) as unauth:
            await anonymous.list_clients(client_service_pb2.ListClientsRequest())
        assert unauth.value.reason == "MISSING_CREDENTIALS"
        with pytest.raises(InvalidClient) as invalid_client:
            await anonymous.exchange(ClientCredentials("ops-admin", "cs_wrong").request())
        assert invalid_client.value.code == grpc.StatusCode.UNAUTHENTICATED


async def test_invalid_scope_and_permission_denied(
    server: Server, channel: object, admin_token: str
) -> None:
    creds = await create_service_client(channel, admin_token, "reader", ("mcp:read",))  # type: ignore[arg-type]
    greedy = dataclasses.replace(creds, scopes=("chittyauth:admin",))
    async with AsyncAuthClient(server.grpc_target, greedy) as client:
        with pytest.raises(InvalidScope) as caught:
            await client.list_clients(client_service_pb2.ListClientsRequest())
        assert caught.value.reason == "INVALID_SCOPE"
    async with AsyncAuthClient(server.grpc_target, creds) as client:
        with pytest.raises(PermissionDenied):
            await client.list_clients(client_service_pb2.ListClientsRequest())


def test_error_details_decode_reason_metadata_and_retry_info() -> None:
    code, status = status_for(
        domain_errors.Aborted("stale", reason="VERSION_CONFLICT", metadata={"current_version": "7"})
    )
    error = error_from_status(code, "stale", ((STATUS_DETAILS_KEY, status.SerializeToString()),))
    assert isinstance(error, Aborted)
    assert error.current_version == 7
    code, status = status_for(domain_errors.RateLimited("slow down", retry_after=2.5))
    limited = error_from_status(code, "", ((STATUS_DETAILS_KEY, status.SerializeToString()),))
    assert isinstance(limited, RateLimited)
    assert limited.retry_after == 2.5
    assert limited.reason == "RATE_LIMITED"


async def test_client_credentials_token_is_refreshed_before_expiry(
    config: Config, admin_token: str
) -> None:
    clock = FakeClock()
    short = replace(config, tokens=dataclasses.replace(config.tokens, service_ttl_s=100))
    async with running(short, clock) as srv:
        async with srv.store.transaction() as tx:
            issued = await srv.tokens.issue(
                tx, subject="ops", client_id="ops", token_use="service",
                scopes=("chittyauth:admin",),
            )  # fmt: skip
        async with AsyncAuthClient(srv.grpc_target, StaticToken(issued.token)) as bootstrap:
            reply = await bootstrap.create_client(
                client_service_pb2.CreateClientRequest(
                    client=_service_client("svc", ("chittyauth:admin",))
                )
            )
        creds = ClientCredentials("svc", reply.client_secret)
        async with AsyncAuthClient(srv.grpc_target, creds, clock=clock.now) as client:
            await client.list_clients(client_service_pb2.ListClientsRequest())
            source = client.token_source
            assert source is not None
            first = source.current_jti
            clock.advance(70)  # 70% of the lifetime: still the same token
            await client.list_clients(client_service_pb2.ListClientsRequest())
            assert source.current_jti == first
            assert source.exchanges == 1
            clock.advance(15)  # past 80%: refreshed before it expires, by one Exchange
            await asyncio.gather(
                *(client.list_clients(client_service_pb2.ListClientsRequest()) for _ in range(5))
            )
            assert source.exchanges == 2
            assert source.current_jti != first


async def test_idempotent_call_survives_a_server_restart(config: Config, admin_token: str) -> None:
    async with running(config) as first:
        port = first.grpc_port
        async with first.store.transaction() as tx:
            issued = await first.tokens.issue(
                tx, subject="ops", client_id="ops", token_use="service",
                scopes=("chittyauth:admin",),
            )  # fmt: skip
    pinned = replace(config, grpc=dataclasses.replace(config.grpc, port=port))
    async with running(pinned) as srv:
        client = AsyncAuthClient(srv.grpc_target, StaticToken(issued.token))
        before = await client.list_signing_keys(key_service_pb2.ListSigningKeysRequest())
        await srv.stop(grace=0)
    call = asyncio.create_task(client.list_signing_keys(key_service_pb2.ListSigningKeysRequest()))
    await asyncio.sleep(0.2)
    async with running(pinned) as again:
        after = await call
        assert again.grpc_port == port
    assert [k.kid for k in after.keys] == [k.kid for k in before.keys]
    await client.close()


def _service_client(client_id: str, scopes: tuple[str, ...]) -> object:
    from chitty.auth.v1 import client_pb2

    return client_pb2.Client(
        client_id=client_id,
        display_name=client_id,
        kind=client_pb2.CLIENT_KIND_SERVICE,
        confidential=True,
        allowed_scopes=list(scopes),
        grant_types=[client_pb2.GRANT_TYPE_CLIENT_CREDENTIALS],
    )
