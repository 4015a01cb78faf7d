"""The in-memory client registry: authenticate, check_scopes, and staying current."""

from __future__ import annotations

import asyncio

import pytest
from grpc import aio

from chitty.auth.v1 import client_pb2, client_service_pb2, client_service_pb2_grpc
from chittyauth.app import Server
from chittyauth.clients_cli import clients_create
from chittyauth.config import Config
from chittyauth.domain.errors import InvalidClient, InvalidRequest, InvalidScope
from tests.clients.helpers import linked_app
from tests.conftest import bearer

pb = client_service_pb2


async def create(channel: aio.Channel, token: str, client: client_pb2.Client) -> str:
    stub = client_service_pb2_grpc.ClientServiceStub(channel)
    reply = await stub.CreateClient(pb.CreateClientRequest(client=client), metadata=bearer(token))
    return reply.client_secret


async def test_authenticate_right_wrong_and_unknown(
    channel: aio.Channel, server: Server, admin_token: str
) -> None:
    secret = await create(channel, admin_token, linked_app(client_id="app"))
    await create(channel, admin_token, linked_app(client_id="pub", confidential=False))

    assert server.clients.authenticate("app", secret).client_id == "app"
    messages = []
    for client_id, presented in [
        ("app", secret[:-1] + ("A" if secret[-1] != "A" else "B")),  # wrong secret
        ("app", ""),  # no secret
        ("app", secret + "x" * 600),  # absurdly long
        ("nobody", secret),  # unknown client
        ("pub", ""),  # a public client has no secret to authenticate with
        ("pub", "cs_no-such-client-placeholder"),  # the placeholder compared for unknown ids
        ("nobody", "cs_no-such-client-placeholder"),
    ]:
        with pytest.raises(InvalidClient) as caught:
            server.clients.authenticate(client_id, presented)
        messages.append((caught.value.message, caught.value.reason))
    # One message and reason for every failure: nothing tells which part was wrong.
    assert set(messages) == {("client authentication failed", "INVALID_CLIENT")}


async def test_check_scopes(channel: aio.Channel, server: Server, admin_token: str) -> None:
    await create(channel, admin_token, linked_app(client_id="app"))
    client = server.clients.get("app")
    assert client is not None
    assert server.clients.check_scopes(client, []) == ("mcp:read", "mcp:write")
    assert server.clients.check_scopes(client, ["mcp:write"]) == ("mcp:write",)
    assert server.clients.check_scopes(client, ["mcp:read", "mcp:read"]) == ("mcp:read",)
    with pytest.raises(InvalidScope) as caught:
        server.clients.check_scopes(client, ["mcp:read", "chittyauth:admin"])
    assert "chittyauth:admin" in caught.value.message
    assert caught.value.metadata == {"scope": "chittyauth:admin"}


async def test_check_redirect_uri_is_exact(
    channel: aio.Channel, server: Server, admin_token: str
) -> None:
    await create(channel, admin_token, linked_app(client_id="app"))
    client = server.clients.get("app")
    assert client is not None
    assert server.clients.check_redirect_uri(client, "https://app.example/callback")
    for near_miss in (
        "https://app.example/callback/",
        "https://APP.example/callback",
        "https://app.example/callback?x=1",
    ):
        with pytest.raises(InvalidRequest):
            server.clients.check_redirect_uri(client, near_miss)


async def test_registry_follows_changes_made_by_another_process(
    server: Server, config: Config
) -> None:
    # The CLI writes to the same database file from its own store; the running server learns
    # of the new client through the change log.
    assert await clients_create(config, client_id="from-cli", name="From CLI", admin=True) == 0
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 5.0
    while server.clients.get("from-cli") is None and loop.time() < deadline:
        await asyncio.sleep(0.05)  # the feed polls for other processes' commits
    record = server.clients.get("from-cli")
    assert record is not None
    assert record.allowed_scopes == ("chittyauth:admin",)
    assert record.source == "cli"
