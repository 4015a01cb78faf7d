"""`chittyauth mcp` over stdio, driven by the official MCP client against a real server."""

from __future__ import annotations

import os
import random
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from grpc import aio
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client

from chitty.auth.v1 import client_pb2, client_service_pb2, client_service_pb2_grpc
from chittyauth.app import Server
from chittyauth.config import Config
from chittyauth.domain.chittyid import mint_official
from tests.conftest import bearer, running_server, token_minter
from tests.oauth.conftest import register
from tests.support.fixtures import vouching_authority, with_authority

USER = mint_official("PEO", random.Random(1))  # a dev authority can vouch for it
TOOLS = {
    "generate_api_key",
    "validate_api_key",
    "check_permission",
    "generate_jwt",
    "validate_jwt",
    "grant_authorization",
    "list_sessions",
    "mcp_portal_authenticate",
    "create_linked_app_oauth",
    "exchange_oauth_tokens",
    "validate_mcp_token",
}


async def _agent_client(channel: aio.Channel, admin: str) -> tuple[str, str]:
    stub = client_service_pb2_grpc.ClientServiceStub(channel)
    reply = await stub.CreateClient(
        client_service_pb2.CreateClientRequest(
            client=client_pb2.Client(
                display_name="MCP agent",
                kind=client_pb2.CLIENT_KIND_SERVICE,
                confidential=True,
                allowed_scopes=["chittyauth:admin"],
                grant_types=[
                    client_pb2.GRANT_TYPE_CLIENT_CREDENTIALS,
                    client_pb2.GRANT_TYPE_TOKEN_EXCHANGE,
                ],
            )
        ),
        metadata=bearer(admin),
    )
    return reply.client.client_id, reply.client_secret


@asynccontextmanager
async def agent(target: str, client_id: str, secret: str) -> AsyncIterator[ClientSession]:
    env = {
        "CHITTYAUTH_MCP_TARGET": target,
        "CHITTYAUTH_MCP_CLIENT_ID": client_id,
        "CHITTYAUTH_MCP_CLIENT_SECRET": secret,
        "PYTHONPATH": os.pathsep.join(sys.path),
    }
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "chittyauth.cli", "mcp"], env=env
    )
    async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        yield session


async def call(
    session: ClientSession, tool: str, /, **arguments: Any
) -> tuple[bool, dict[str, Any]]:
    result = await session.call_tool(tool, arguments)
    assert result.content
    assert result.content[0].type == "text"
    structured = result.structured_content
    assert isinstance(structured, dict)
    return bool(result.is_error), structured


def refused(outcome: tuple[bool, dict[str, Any]], *codes: str) -> dict[str, Any]:
    is_error, body = outcome
    assert is_error, body
    error: dict[str, Any] = body["error"]
    assert error["reason"], error
    if codes:
        assert error["code"] in codes, error
    return error


Opener = Callable[[], AbstractAsyncContextManager[ClientSession]]


@pytest.fixture
async def open_agent(server: Server, channel: aio.Channel, admin_token: str) -> Opener:
    """Starts the agent inside the test's own task (anyio scopes must not cross tasks)."""
    client_id, secret = await _agent_client(channel, admin_token)
    return lambda: agent(server.grpc_target, client_id, secret)


async def test_lists_exactly_the_eleven_tools(open_agent: Opener) -> None:
    async with open_agent() as session:
        listed = await session.list_tools()
        assert {tool.name for tool in listed.tools} == TOOLS
        for tool in listed.tools:
            assert tool.description
            assert tool.input_schema["type"] == "object"
            for prop in tool.input_schema["properties"].values():
                assert prop.get("description") or prop.get("type") in ("integer", "string")


async def test_api_keys(config: Config, tmp_path: Path) -> None:
    # An admin's key for another ChittyID: only while the authority vouches for it.
    async with (
        vouching_authority(tmp_path, USER) as authority,
        running_server(with_authority(config, authority)) as server,
        aio.insecure_channel(server.grpc_target) as channel,
    ):
        client_id, secret = await _agent_client(channel, await token_minter(server)())
        async with agent(server.grpc_target, client_id, secret) as session:
            await _api_key_tools(session)


async def _api_key_tools(session: ClientSession) -> None:
    ok, key = await call(session, "generate_api_key", chitty_id=USER, name="ci", scopes=["read"])
    assert not ok, key
    assert key["api_key"].startswith("sk_live_")
    assert key["chitty_id"] == USER
    assert key["scopes"] == ["read"]
    assert key["key_id"]
    assert key["created_at"]

    ok, verdict = await call(session, "validate_api_key", api_key=key["api_key"])
    assert not ok
    assert verdict["valid"]
    assert verdict["chitty_id"] == USER
    assert verdict["scopes"] == ["read"]

    _, verdict = await call(session, "validate_api_key", api_key="sk_live_" + "A" * 43)
    assert verdict["valid"] is False
    assert verdict["reason"]

    refused(await call(session, "validate_api_key"), "INVALID_ARGUMENT")
    refused(await call(session, "generate_api_key", chitty_id=USER, scopes="read"))
    refused(
        await call(session, "generate_api_key", chitty_id="not a chitty id"), "INVALID_ARGUMENT"
    )


async def test_tokens(open_agent: Opener, token_for: Callable[..., Awaitable[str]]) -> None:
    async with open_agent() as session:
        portal = await token_for(
            subject=USER,
            chitty_id=USER,
            client_id="chittyauth-portal",
            token_use="portal",
            scopes=("mcp:read",),
            session_id="ses_mcp",
        )
        ok, verdict = await call(session, "validate_jwt", token=portal)
        assert not ok
        assert verdict["valid"]
        assert verdict["chitty_id"] == USER
        assert verdict["claims"]["sub"] == USER
        _, verdict = await call(session, "validate_jwt", token="not.a.jwt")
        assert verdict == {"valid": False, "reason": "MALFORMED"}

        _, verdict = await call(session, "validate_mcp_token", token=portal, token_type="portal")
        assert verdict["valid"]
        assert verdict["chitty_id"] == USER
        _, verdict = await call(session, "validate_mcp_token", token=portal, token_type="server")
        assert verdict["valid"] is False
        assert verdict["reason"] == "WRONG_TOKEN_USE"
        refused(await call(session, "validate_mcp_token", token=portal, token_type="bogus"))

        # generate_jwt is IssueToken: it checks the ChittyID with the authority, which this
        # server has none of, so it fails closed (tests/mcp/test_identity_tools.py issues).
        error = refused(await call(session, "generate_jwt", chitty_id=USER), "UNAVAILABLE")
        assert error["reason"] == "AUTHORITY_UNAVAILABLE"
        error = refused(
            await call(session, "generate_jwt", chitty_id=USER, claims={"chitty_id": "XX"}),
            "INVALID_ARGUMENT",
        )
        assert error["reason"] == "RESERVED_CLAIM"
        refused(
            await call(session, "generate_jwt", chitty_id=USER, expires_in="forever"),
            "INVALID_ARGUMENT",
        )
        # The old token-exchange argument is gone: unknown fields are refused by the schema.
        refused(
            await call(session, "generate_jwt", chitty_id=USER, subject_token=portal),
            "INVALID_ARGUMENT",
        )


async def test_linked_app_oauth(
    open_agent: Opener,
    channel: aio.Channel,
    admin_token: str,
    token_for: Callable[..., Awaitable[str]],
) -> None:
    async with open_agent() as session:
        app = await register(channel, admin_token)
        user = await token_for(
            subject=USER,
            chitty_id=USER,
            client_id="chittyauth-portal",
            token_use="portal",
            scopes=("mcp:read",),
            session_id="ses_mcp",
        )
        ok, grant = await call(
            session,
            "create_linked_app_oauth",
            user_token=user,
            app_id=app.client_id,
            redirect_uri=app.redirect_uri,
            chitty_id=USER,
            scopes=["mcp:read"],
        )
        assert not ok, grant
        assert grant["authorized"]
        assert grant["authorization_code"]
        assert grant["expires_in"] > 0

        ok, tokens = await call(
            session,
            "exchange_oauth_tokens",
            grant_type="authorization_code",
            authorization_code=grant["authorization_code"],
            client_id=app.client_id,
            client_secret=app.client_secret,
        )
        assert not ok, tokens
        assert tokens["token_type"] == "Bearer"
        assert tokens["scope"] == "mcp:read"
        assert tokens["refresh_token"]
        _, verdict = await call(
            session, "validate_mcp_token", token=tokens["access_token"], token_type="linked_app"
        )
        assert verdict["valid"]
        assert verdict["chitty_id"] == USER

        ok, refreshed = await call(
            session,
            "exchange_oauth_tokens",
            grant_type="refresh_token",
            refresh_token=tokens["refresh_token"],
            client_id=app.client_id,
            client_secret=app.client_secret,
        )
        assert not ok
        assert refreshed["access_token"] != tokens["access_token"]

        # The code is single use; a wrong redirect URI and a non-user token are refused.
        error = refused(
            await call(
                session,
                "exchange_oauth_tokens",
                grant_type="authorization_code",
                authorization_code=grant["authorization_code"],
                client_id=app.client_id,
                client_secret=app.client_secret,
            )
        )
        assert error["code"] != "INTERNAL"
        refused(
            await call(
                session,
                "create_linked_app_oauth",
                user_token=user,
                app_id=app.client_id,
                redirect_uri="https://evil.example/cb",
            ),
            "INVALID_ARGUMENT",
        )
        refused(await call(session, "exchange_oauth_tokens", grant_type="password", client_id="x"))
        refused(
            await call(session, "exchange_oauth_tokens", grant_type="refresh_token", client_id="x"),
            "INVALID_ARGUMENT",
        )


async def test_sessions_permissions_and_portal(open_agent: Opener) -> None:
    async with open_agent() as session:
        ok, listed = await call(session, "list_sessions", chitty_id=USER)
        assert not ok, listed
        assert listed["sessions"] == []
        refused(await call(session, "list_sessions", page_size=0), "INVALID_ARGUMENT")
        refused(
            await call(session, "list_sessions", page_token="!!not-a-token"), "INVALID_ARGUMENT"
        )

        # Without a reachable ChittyID authority, grants fail closed (UNAVAILABLE), named;
        # tests/mcp/test_identity_tools.py grants and checks against the dev authority.
        other = "AB-C-PEO-4321-P-56-H-7"
        outcome = await call(
            session,
            "grant_authorization",
            grantor_chitty_id=USER,
            grantee_chitty_id=other,
            permission="documents:read",
            resource="doc-1",
        )
        assert refused(outcome)["code"] in ("UNAVAILABLE", "NOT_FOUND")
        refused(await call(session, "check_permission", chitty_id=other), "INVALID_ARGUMENT")
        refused(
            await call(
                session,
                "grant_authorization",
                grantor_chitty_id=USER,
                grantee_chitty_id=other,
                permission="p",
                expires_at="soon",
            ),
            "INVALID_ARGUMENT",
        )

        # A forged Access assertion is refused (UNAUTHENTICATED), or UNIMPLEMENTED until built.
        error = refused(await call(session, "mcp_portal_authenticate", cf_access_jwt="forged"))
        assert error["code"] in ("UNAUTHENTICATED", "UNIMPLEMENTED", "UNAVAILABLE"), error
        refused(await call(session, "mcp_portal_authenticate"), "INVALID_ARGUMENT")
