"""Fail closed: nothing is issued for a ChittyID while the authority is known to be down.

The ChittyID cache is on (as in production), warmed while the authority is up, and the real
dev authority process is then stopped. Every path that issues or writes for a named ChittyID
(MCP server login for a person, IssueToken, GrantPermission, CreateApiKey) must
answer UNAVAILABLE ``AUTHORITY_UNAVAILABLE`` rather than vouch for the ID from memory; and a
cached verdict must not outlive the outage (the authority may have disowned the ID meanwhile).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import pytest
from grpc import aio
from grpc_health.v1 import health_pb2

from chitty.auth.v1 import (
    api_key_service_pb2,
    api_key_service_pb2_grpc,
    auth_service_pb2,
    auth_service_pb2_grpc,
    client_pb2,
    permission_service_pb2,
    permission_service_pb2_grpc,
)
from chittyauth.app import Server
from chittyauth.clock import FakeClock
from chittyauth.config import Config, replace
from tests.conftest import bearer, running_server, token_minter
from tests.http_server.conftest import RegisteredClient, register_client
from tests.identity_flows.conftest import clock, identity_config
from tests.identity_flows.helpers import count, details, wait_for_health
from tests.support.consent import record_consent
from tests.support.devauthority import DevAuthority

__all__ = ["clock"]

Call = Callable[[], Awaitable[Any]]


@pytest.fixture
async def cached_server(
    config: Config, dev_authority: DevAuthority, clock: FakeClock
) -> AsyncIterator[Server]:
    """A server whose authority client caches positive verdicts for five minutes."""
    cfg = identity_config(config, dev_authority)
    cfg = replace(cfg, authority=dataclasses.replace(cfg.authority, cache_ttl_s=300.0))
    async with running_server(cfg, clock) as server:
        yield server


@pytest.fixture
async def channel(cached_server: Server) -> AsyncIterator[aio.Channel]:
    async with aio.insecure_channel(cached_server.grpc_target) as chan:
        yield chan


async def mint_person(authority: DevAuthority) -> str:
    return str((await authority.request("POST", "/v1/mint", json={"entity": "PEO"}))["chittyId"])


def disown(authority: DevAuthority, chitty_id: str) -> None:
    """Removes ``chitty_id`` from the stopped authority's ledger: it no longer vouches for it."""
    document = json.loads(authority.data_file.read_text())
    del document["minted"][chitty_id]
    authority.data_file.write_text(json.dumps(document))


async def mcp_server(channel: aio.Channel, admin: str) -> RegisteredClient:
    return await register_client(
        channel,
        admin,
        kind=client_pb2.CLIENT_KIND_MCP_SERVER,
        scopes=["mcp:read"],
        grant_types=[client_pb2.GRANT_TYPE_CLIENT_CREDENTIALS],
        server_id="chittychat",
        capabilities=["tools"],
    )


async def issuing_calls(
    server: Server, channel: aio.Channel, person: str, grantee: str
) -> dict[str, Call]:
    """One call per path that issues or writes for ``person``, each allowed to (consents made)."""
    mint = token_minter(server)
    admin = await mint(subject="ops", client_id="ops")
    issuer = await mint(subject="issuer", client_id="issuer", scopes=("tokens:issue",))
    grantor = await mint(
        subject=person, chitty_id=person, client_id="chittyauth-portal", token_use="portal",
        scopes=("authorizations:grant",),
    )  # fmt: skip
    mcp = await mcp_server(channel, admin)
    await record_consent(server, person, mcp.client_id, ["mcp:read"])
    await record_consent(server, person, "issuer", ["mcp:read"])
    auth = auth_service_pb2_grpc.AuthServiceStub(channel)
    permissions = permission_service_pb2_grpc.PermissionServiceStub(channel)
    return {
        "mcp_server": lambda: auth.Authenticate(
            auth_service_pb2.AuthenticateRequest(
                mcp_server=auth_service_pb2.McpServerCredential(
                    client_id=mcp.client_id, client_secret=mcp.client_secret, chitty_id=person
                )
            )
        ),
        "issue_token": lambda: auth.IssueToken(
            auth_service_pb2.IssueTokenRequest(chitty_id=person), metadata=bearer(issuer)
        ),
        "grant_permission": lambda: permissions.GrantPermission(
            permission_service_pb2.GrantPermissionRequest(
                grantee_chitty_id=grantee, permission="docs:read"
            ),
            metadata=bearer(grantor),
        ),
    }


async def key_calls(server: Server, channel: aio.Channel, person: str) -> dict[str, Call]:
    """API keys for ``person``: the person's own, and one an admin creates for them."""
    mint = token_minter(server)
    admin = await mint(subject="ops", client_id="ops")
    own = await mint(
        subject=person, chitty_id=person, client_id="chittyauth-portal", token_use="portal",
        scopes=("api_keys:generate",),
    )  # fmt: skip
    keys = api_key_service_pb2_grpc.ApiKeyServiceStub(channel)
    return {
        "own_api_key": lambda: keys.CreateApiKey(
            api_key_service_pb2.CreateApiKeyRequest(), metadata=bearer(own)
        ),
        "admin_api_key": lambda: keys.CreateApiKey(
            api_key_service_pb2.CreateApiKeyRequest(chitty_id=person), metadata=bearer(admin)
        ),
    }


async def test_nothing_is_issued_from_cache_while_the_authority_is_down(
    cached_server: Server, channel: aio.Channel, dev_authority: DevAuthority
) -> None:
    person, grantee = await mint_person(dev_authority), await mint_person(dev_authority)
    calls = {
        **await issuing_calls(cached_server, channel, person, grantee),
        **await key_calls(cached_server, channel, person),
    }
    for call in calls.values():
        await call()  # each path works, and the authority's verdicts are now cached
    tables = ("tokens", "permission_grants", "api_keys")
    before = {table: count(cached_server, table) for table in tables}

    await dev_authority.stop()
    await wait_for_health(channel, health_pb2.HealthCheckResponse.NOT_SERVING)
    outcomes = {}
    for name, call in calls.items():
        with pytest.raises(aio.AioRpcError) as caught:
            await call()
        outcomes[name] = (caught.value.code(), details(caught.value)[0])
    assert outcomes == dict.fromkeys(calls, (grpc.StatusCode.UNAVAILABLE, "AUTHORITY_UNAVAILABLE"))
    assert {table: count(cached_server, table) for table in tables} == before

    await dev_authority.start()
    await wait_for_health(channel, health_pb2.HealthCheckResponse.SERVING)
    for call in calls.values():
        await call()


async def test_a_cached_verdict_does_not_outlive_an_outage(
    cached_server: Server, channel: aio.Channel, dev_authority: DevAuthority
) -> None:
    person, grantee = await mint_person(dev_authority), await mint_person(dev_authority)
    calls = await issuing_calls(cached_server, channel, person, grantee)
    for call in calls.values():
        await call()

    # While it was down, the authority disowned the person; it comes back without them.
    await dev_authority.stop()
    await wait_for_health(channel, health_pb2.HealthCheckResponse.NOT_SERVING)
    disown(dev_authority, person)
    await dev_authority.start()
    await wait_for_health(channel, health_pb2.HealthCheckResponse.SERVING)

    for name, call in calls.items():
        with pytest.raises(aio.AioRpcError) as caught:
            await call()
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, name
        assert details(caught.value)[0] == "INVALID_CHITTY_ID", name
