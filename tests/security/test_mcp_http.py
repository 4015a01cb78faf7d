"""`chittyauth mcp --http` is a protected resource, and every tool call acts as its caller.

The agent runs as a real process (with the operator's admin credentials in its environment,
as the old setup told operators to give it); ChittyAuth runs with the dev authority; callers
use the official MCP client over streamable HTTP.
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

import httpx2
import pytest
from grpc import aio
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

from chitty.auth.v1 import auth_service_pb2, auth_service_pb2_grpc
from chittyauth.app import Server
from chittyauth.store.protocol import AuditQuery
from tests.identity_flows.conftest import clock, id_channel, id_config, id_server, mint_token
from tests.mcp.test_agent import _agent_client, call, refused
from tests.support.devauthority import DevAuthority

__all__ = ["clock", "id_channel", "id_config", "id_server", "mint_token"]

Mint = Callable[..., Awaitable[str]]
PASSWORD = "correct horse battery staple"
WELL_KNOWN = "/.well-known/oauth-protected-resource/mcp"


@dataclass(frozen=True)
class RunningAgent:
    base: str  # http://127.0.0.1:PORT

    @property
    def url(self) -> str:
        """The MCP endpoint, which is also the agent's resource URL (the tokens' audience)."""
        return f"{self.base}/mcp"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
async def agent(
    id_server: Server, id_channel: aio.Channel, mint_token: Mint
) -> AsyncIterator[RunningAgent]:
    """`chittyauth mcp --http` as a subprocess, given admin client credentials it must not use."""
    admin = await mint_token()
    client_id, secret = await _agent_client(id_channel, admin)
    port = _free_port()
    env = {
        "CHITTYAUTH_MCP_TARGET": id_server.grpc_target,
        "CHITTYAUTH_MCP_CLIENT_ID": client_id,
        "CHITTYAUTH_MCP_CLIENT_SECRET": secret,
        "CHITTYAUTH_MCP_ISSUER": id_server.config.tokens.issuer,
        "PYTHONPATH": os.pathsep.join(sys.path),
        "PATH": os.environ.get("PATH", ""),
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "chittyauth.cli", "mcp", "--http", "--port", str(port), env=env
    )
    running = RunningAgent(f"http://127.0.0.1:{port}")
    try:
        async with httpx2.AsyncClient() as http:
            for _ in range(200):
                try:
                    await http.get(running.base + WELL_KNOWN)
                    break  # listening (whatever it answers)
                except httpx2.TransportError:
                    pass
                assert process.returncode is None, "the agent exited"
                await asyncio.sleep(0.05)
            else:
                pytest.fail("the agent did not start")
        yield running
    finally:
        process.terminate()
        await process.wait()


@asynccontextmanager
async def mcp_session(agent: RunningAgent, token: str) -> AsyncIterator[ClientSession]:
    headers = {"Authorization": f"Bearer {token}"}
    async with (
        create_mcp_http_client(headers=headers) as http,
        streamable_http_client(agent.url, http_client=http) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        yield session


async def person_login(
    channel: aio.Channel, email: str, resources: list[str]
) -> auth_service_pb2.AuthenticateResponse:
    """Registers ``email`` and logs in with a password, for ``resources`` (RFC 8707)."""
    stub = auth_service_pb2_grpc.AuthServiceStub(channel)
    await stub.RegisterAccount(
        auth_service_pb2.RegisterAccountRequest(email=email, password=PASSWORD)
    )
    return await stub.Authenticate(
        auth_service_pb2.AuthenticateRequest(
            password=auth_service_pb2.PasswordCredential(email=email, password=PASSWORD),
            resources=resources,
        )
    )


INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "attacker", "version": "0"},
    },
}


async def post_mcp(agent: RunningAgent, headers: dict[str, str] | None = None) -> httpx2.Response:
    async with httpx2.AsyncClient() as http:
        return await http.post(
            agent.url,
            json=INITIALIZE,
            headers={"Accept": "application/json, text/event-stream", **(headers or {})},
        )


def challenge_of(response: httpx2.Response, agent: RunningAgent) -> str:
    assert response.status_code == 401, response.text
    challenge = response.headers["WWW-Authenticate"]
    assert challenge.startswith("Bearer ")
    assert f'resource_metadata="{agent.base}{WELL_KNOWN}"' in challenge
    return challenge


async def test_no_token_is_401_with_resource_metadata(
    agent: RunningAgent, id_server: Server
) -> None:
    challenge = challenge_of(await post_mcp(agent), agent)
    assert "error=" not in challenge  # RFC 6750 §3.1: no error code without credentials
    challenge_of(await post_mcp(agent, {"Authorization": "Basic YTpi"}), agent)

    async with httpx2.AsyncClient() as http:
        metadata = (await http.get(agent.base + WELL_KNOWN)).json()
    assert metadata["resource"] == agent.url
    assert metadata["authorization_servers"] == [id_server.config.tokens.issuer]
    assert metadata["bearer_methods_supported"] == ["header"]

    # Nor can an anonymous caller reach a tool through the official client.
    with pytest.raises(Exception):  # noqa: B017,PT011 - the SDK's error type varies by version
        async with mcp_session(agent, ""):
            pass
    issued = await id_server.store.list_audit_events(AuditQuery(action="token.issued"))
    assert not [e for e in issued if e.attributes.get("grant") == "issue_token"]


async def test_a_token_for_another_resource_is_401(
    agent: RunningAgent, id_channel: aio.Channel, mint_token: Mint
) -> None:
    elsewhere = await person_login(id_channel, "eve@example.com", ["https://other.example/mcp"])
    challenge = challenge_of(
        await post_mcp(agent, {"Authorization": f"Bearer {elsewhere.access_token}"}), agent
    )
    assert 'error="invalid_token"' in challenge
    # A token with no resource named is for ChittyAuth itself, not for the agent.
    plain = await mint_token(subject="svc", scopes=("chittyauth:admin",))
    challenge_of(await post_mcp(agent, {"Authorization": f"Bearer {plain}"}), agent)
    challenge_of(await post_mcp(agent, {"Authorization": "Bearer not-a-token"}), agent)


async def test_tools_act_as_the_person(
    agent: RunningAgent,
    id_server: Server,
    id_channel: aio.Channel,
    dev_authority: DevAuthority,
) -> None:
    alice = await person_login(id_channel, "alice@example.com", [agent.url])
    bob = await person_login(id_channel, "bob@example.com", [agent.url])
    async with mcp_session(agent, alice.access_token) as session:
        # Her sessions, as herself: the one her login opened, and not Bob's.
        ok, listed = await call(session, "list_sessions")
        assert not ok, listed
        assert [s["session_id"] for s in listed["sessions"]] == [alice.session_id]
        assert {s["chitty_id"] for s in listed["sessions"]} == {alice.chitty_id}

        # Issuing a token for any ChittyID is for admins and token issuers: refused for her,
        # although the agent's environment holds admin credentials.
        error = refused(
            await call(session, "generate_jwt", chitty_id=bob.chitty_id), "PERMISSION_DENIED"
        )
        assert error["reason"] == "PRINCIPAL_NOT_ALLOWED"
        error = refused(
            await call(session, "generate_jwt", chitty_id=alice.chitty_id), "PERMISSION_DENIED"
        )

        # Bob's data is not hers to reach.
        outcome = await call(session, "list_sessions", chitty_id=bob.chitty_id)
        assert refused(outcome)["code"] in ("PERMISSION_DENIED", "NOT_FOUND")

    issued = await id_server.store.list_audit_events(AuditQuery(action="token.issued"))
    assert not [e for e in issued if e.attributes.get("grant") == "issue_token"]


async def test_an_admin_caller_acts_as_the_admin(
    agent: RunningAgent,
    id_server: Server,
    dev_authority: DevAuthority,
    mint_token: Mint,
) -> None:
    minted = await dev_authority.request("POST", "/v1/mint", json={"entity": "PEO"})
    chitty_id = str(minted["chittyId"])
    admin = await mint_token(subject="ops-admin", audience=[agent.url])
    async with mcp_session(agent, admin) as session:
        ok, token = await call(session, "generate_jwt", chitty_id=chitty_id)
        assert not ok, token
        assert token["chitty_id"] == chitty_id
    issued = await id_server.store.list_audit_events(AuditQuery(action="token.issued"))
    by_tool = [e for e in issued if e.attributes.get("grant") == "issue_token"]
    # Issued on the admin's own authority, not the agent's client.
    assert [e.actor for e in by_tool] == ["ops-admin"]


async def test_a_session_serves_only_the_caller_who_opened_it(
    agent: RunningAgent, id_channel: aio.Channel
) -> None:
    alice = await person_login(id_channel, "ann@example.com", [agent.url])
    mallory = await person_login(id_channel, "mal@example.com", [agent.url])
    async with httpx2.AsyncClient() as http:
        headers = {"Accept": "application/json, text/event-stream"}
        opened = await http.post(
            agent.url,
            json=INITIALIZE,
            headers={**headers, "Authorization": f"Bearer {alice.access_token}"},
        )
        assert opened.status_code == 200, opened.text
        session_id = opened.headers["mcp-session-id"]
        hijack = await http.post(
            agent.url,
            json={"jsonrpc": "2.0", "id": 2, "method": "tools/list"},
            headers={
                **headers,
                "Authorization": f"Bearer {mallory.access_token}",
                "mcp-session-id": session_id,
            },
        )
    assert hijack.status_code == 404
