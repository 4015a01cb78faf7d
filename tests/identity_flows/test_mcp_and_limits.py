"""MCP server tokens, and rate limits answering RESOURCE_EXHAUSTED with RetryInfo."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import grpc
import pytest
from grpc import aio

from chitty.auth.v1 import (
    auth_service_pb2,
    auth_service_pb2_grpc,
    client_pb2,
    client_service_pb2,
    client_service_pb2_grpc,
    token_pb2,
)
from chittyauth.app import Server
from chittyauth.clock import FakeClock
from chittyauth.config import Config
from tests.identity_flows.conftest import identity_config
from tests.identity_flows.helpers import details
from tests.support.consent import record_consent
from tests.support.devauthority import DevAuthority

Mint = Callable[..., Awaitable[str]]


async def mcp_client(channel: aio.Channel, admin: str) -> tuple[str, str]:
    reply = await client_service_pb2_grpc.ClientServiceStub(channel).CreateClient(
        client_service_pb2.CreateClientRequest(
            client=client_pb2.Client(
                display_name="ChittyChat",
                kind=client_pb2.CLIENT_KIND_MCP_SERVER,
                confidential=True,
                allowed_scopes=["mcp:read"],
                grant_types=[client_pb2.GRANT_TYPE_CLIENT_CREDENTIALS],
                token_endpoint_auth_method=client_pb2.TOKEN_ENDPOINT_AUTH_METHOD_CLIENT_SECRET_BASIC,
                server_id="chittychat",
                capabilities=["tools", "resources"],
            )
        ),
        metadata=(("authorization", f"Bearer {admin}"),),
    )
    return reply.client.client_id, reply.client_secret


def mcp_request(
    client_id: str, secret: str, *capabilities: str, chitty_id: str = ""
) -> auth_service_pb2.AuthenticateRequest:
    return auth_service_pb2.AuthenticateRequest(
        mcp_server=auth_service_pb2.McpServerCredential(
            client_id=client_id, client_secret=secret, chitty_id=chitty_id,
            capabilities=capabilities,
        )
    )  # fmt: skip


async def test_mcp_server_token_round_trip(
    id_server: Server, id_channel: aio.Channel, dev_authority: DevAuthority, mint_token: Mint
) -> None:
    stub = auth_service_pb2_grpc.AuthServiceStub(id_channel)
    client_id, secret = await mcp_client(id_channel, await mint_token())
    person = (await dev_authority.request("POST", "/v1/mint", json={"entity": "PEO"}))["chittyId"]
    # The server acts for the person only after they consented to it.
    await record_consent(id_server, person, client_id, ["mcp:read"])

    issued = await stub.Authenticate(mcp_request(client_id, secret, "tools", chitty_id=person))
    assert issued.token_use == token_pb2.TOKEN_USE_MCP_SERVER
    validated = await stub.Validate(
        auth_service_pb2.ValidateRequest(
            token=issued.access_token, token_use=token_pb2.TOKEN_USE_MCP_SERVER
        )
    )
    assert validated.active
    assert validated.claims.sub == client_id
    assert validated.claims.chitty_id == person
    assert validated.claims.act.sub == client_id
    assert validated.claims.server_id == "chittychat"
    assert list(validated.claims.capabilities) == ["tools"]
    as_portal = await stub.Validate(
        auth_service_pb2.ValidateRequest(
            token=issued.access_token, token_use=token_pb2.TOKEN_USE_PORTAL
        )
    )
    assert not as_portal.active

    with pytest.raises(aio.AioRpcError) as caught:
        await stub.Authenticate(mcp_request(client_id, secret, "admin"))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert details(caught.value)[0] == "INVALID_SCOPE"
    with pytest.raises(aio.AioRpcError) as caught:
        await stub.Authenticate(mcp_request(client_id, "wrong-secret"))
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED


@pytest.fixture
async def limited_server(
    config: Config, dev_authority: DevAuthority, clock: FakeClock
) -> AsyncIterator[Server]:
    limited = identity_config(config, dev_authority, enabled=True, authenticate_per_minute=3)
    server = Server(limited, clock=clock)
    await server.start()
    try:
        yield server
    finally:
        await server.stop(grace=1.0)


async def test_rate_limit_answers_resource_exhausted_with_retry_info(
    limited_server: Server, clock: FakeClock
) -> None:
    request = auth_service_pb2.AuthenticateRequest(
        password=auth_service_pb2.PasswordCredential(email="x@example.com", password="nope")
    )
    async with aio.insecure_channel(limited_server.grpc_target) as channel:
        stub = auth_service_pb2_grpc.AuthServiceStub(channel)
        for _ in range(3):
            with pytest.raises(aio.AioRpcError) as caught:
                await stub.Authenticate(request)
            assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
        with pytest.raises(aio.AioRpcError) as caught:
            await stub.Authenticate(request)
        assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        reason, retry = details(caught.value)
        assert reason == "RATE_LIMITED"
        assert retry is not None
        assert 0 < retry <= 20

        clock.advance(20)  # one token back at 3 per minute
        with pytest.raises(aio.AioRpcError) as caught:
            await stub.Authenticate(request)
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
