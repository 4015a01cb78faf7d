"""The official MCP SDK, end to end, against ChittyAuth.

An MCP server (the SDK's ``MCPServer``, streamable HTTP under uvicorn on 127.0.0.1) is
protected by ChittyAuth tokens through ``chitty.auth.client.resource.AsgiProtection`` (RFC 9728
metadata, ``WWW-Authenticate`` with ``resource_metadata``, audience = the MCP URL). An MCP
client with ``OAuthClientProvider`` discovers the authorization server, registers (DCR, or a
Client ID Metadata Document), authorizes with PKCE and ``resource`` through a headless
"browser" that holds the portal cookie and approves the consent page, exchanges the code and
calls a tool.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import httpx2
import uvicorn
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from mcp.client.auth import OAuthClientProvider
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.server.mcpserver import MCPServer
from mcp.shared.auth import (
    AuthorizationCodeResult,
    OAuthClientInformationFull,
    OAuthClientMetadata,
    OAuthToken,
)

from chitty.auth.client.aio import AsyncAuthClient
from chitty.auth.client.resource import AsgiProtection, RemoteVerifier, ResourceProtector
from chittyauth.app import Server
from tests.http_oauth.conftest import (
    Start,
    answer,
    form_fields,
    free_port,
    portal_login,
    query_of,
)
from tests.support.devauthority import DevAuthority

CLIENT_REDIRECT = "http://127.0.0.1:9/callback"  # never dialled: the code is read off the 302


@dataclass
class MemoryStorage:
    tokens: OAuthToken | None = None
    client_info: OAuthClientInformationFull | None = None

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client_info

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client_info = client_info


@dataclass
class HeadlessBrowser:
    """Follows the authorization URL like a person would: consent page, Allow, redirect."""

    session: aiohttp.ClientSession
    base: str
    result: AuthorizationCodeResult | None = None
    visited: list[str] = field(default_factory=list)

    async def redirect(self, authorization_url: str) -> None:
        self.visited.append(authorization_url)
        async with self.session.get(authorization_url, allow_redirects=False) as response:
            page = await response.text()
            assert response.status == 200, page
        approved = await answer(self.session, self.base, form_fields(page))
        assert approved.status == 302
        returned = query_of(approved.headers["Location"])
        self.result = AuthorizationCodeResult(
            code=returned["code"], state=returned["state"], iss=returned.get("iss")
        )

    async def callback(self) -> AuthorizationCodeResult:
        assert self.result is not None
        return self.result


@dataclass
class McpResource:
    url: str
    protector: ResourceProtector


@contextlib.asynccontextmanager
async def protected_mcp_server(server: Server) -> AsyncIterator[McpResource]:
    """The SDK's MCP server on 127.0.0.1, every /mcp request needing mcp:read for its URL."""
    port = free_port()
    resource = f"http://127.0.0.1:{port}/mcp"
    mcp = MCPServer("notes")

    @mcp.tool()
    def echo(text: str) -> str:
        """Returns the text."""
        return f"echo: {text}"

    auth_client = AsyncAuthClient(server.grpc_target)
    protector = ResourceProtector(
        verifier=RemoteVerifier(auth_client, audience=resource),
        resource=resource,
        authorization_servers=[server.config.tokens.issuer],
        routes={"/mcp": ("mcp:read",)},
    )
    app = AsgiProtection(
        mcp.streamable_http_app(stateless_http=True, json_response=True), protector
    )
    uv = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    task = asyncio.create_task(uv.serve())
    try:
        while not uv.started:
            assert not task.done(), "uvicorn did not start"
            await asyncio.sleep(0.02)
        yield McpResource(resource, protector)
    finally:
        uv.should_exit = True
        await task
        await auth_client.close()


async def call_tool(resource: str, provider: OAuthClientProvider) -> tuple[str, MemoryStorage]:
    async with (
        httpx2.AsyncClient(auth=provider, timeout=30) as http,
        streamable_http_client(resource, http_client=http) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        result = await session.call_tool("echo", {"text": "hi"})
    text = result.content[0].text  # type: ignore[union-attr]
    return str(text), provider.context.storage  # type: ignore[return-value]


def client_metadata() -> OAuthClientMetadata:
    return OAuthClientMetadata(
        client_name="SDK test client",
        redirect_uris=[CLIENT_REDIRECT],  # type: ignore[list-item]
        grant_types=["authorization_code", "refresh_token"],
        response_types=["code"],
    )


async def test_mcp_sdk_discovers_registers_authorizes_and_calls_a_tool(
    server: Server, base: str, browser: aiohttp.ClientSession, dev_authority: DevAuthority
) -> None:
    person = await portal_login(browser, base, dev_authority, "ada@example.com")
    headless = HeadlessBrowser(browser, base)
    async with protected_mcp_server(server) as mcp:
        storage = MemoryStorage()
        provider = OAuthClientProvider(
            server_url=mcp.url,
            client_metadata=client_metadata(),
            storage=storage,
            redirect_handler=headless.redirect,
            callback_handler=headless.callback,
        )
        text, _ = await call_tool(mcp.url, provider)
        assert text == "echo: hi"

        # It registered through /register (DCR) and asked for the MCP URL as resource.
        assert storage.client_info is not None
        client_id = storage.client_info.client_id
        assert client_id
        assert server.clients.get(client_id) is not None
        sent = query_of(headless.visited[0])
        assert sent["resource"] == mcp.url
        assert sent["code_challenge_method"] == "S256"
        assert storage.tokens is not None
        claims = server.tokens.validate(storage.tokens.access_token).claims
        assert claims["aud"] in (mcp.url, [mcp.url])
        assert claims["sub"] == person["chitty_id"]

        # A token for another resource is refused by this server.
        async with server.store.transaction() as tx:
            other = await server.tokens.issue(
                tx,
                subject=person["chitty_id"],
                client_id=client_id,
                token_use="linked_app",
                scopes=("mcp:read",),
                audience=("https://other.example/mcp",),
                chitty_id=person["chitty_id"],
            )
        async with httpx2.AsyncClient() as plain:
            refused = await plain.post(
                mcp.url,
                headers={"Authorization": f"Bearer {other.token}"},
                json={"jsonrpc": "2.0", "id": 1, "method": "ping"},
            )
            assert refused.status_code in (401, 403)
            assert "resource_metadata=" in refused.headers["WWW-Authenticate"]
            anonymous = await plain.post(
                mcp.url, json={"jsonrpc": "2.0", "id": 1, "method": "ping"}
            )
            assert anonymous.status_code == 401


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 (and its key), PEM files in ``directory``."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


async def test_mcp_sdk_with_a_client_id_metadata_document(
    start: Start, browser: aiohttp.ClientSession, dev_authority: DevAuthority, tmp_path: Path
) -> None:
    cert_file, key_file = self_signed(tmp_path)
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(cert_file, key_file)
    port = free_port()
    document_url = f"https://127.0.0.1:{port}/oauth/client.json"
    fetched: list[str] = []

    async def document(request: web.Request) -> web.Response:
        fetched.append(request.path)
        return web.json_response(
            {
                "client_id": document_url,
                "client_name": "SDK CIMD client",
                "redirect_uris": [CLIENT_REDIRECT],
                "grant_types": ["authorization_code", "refresh_token"],
                "response_types": ["code"],
                "token_endpoint_auth_method": "none",
            }
        )

    app = web.Application()
    app.router.add_get("/oauth/client.json", document)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, ssl_context=tls).start()
    try:
        server = await start(cimd_allow_loopback=True, cimd_ca_file=str(cert_file))
        base = f"http://127.0.0.1:{server.http_port}"
        await portal_login(browser, base, dev_authority, "ada@example.com")
        headless = HeadlessBrowser(browser, base)
        async with protected_mcp_server(server) as mcp:
            storage = MemoryStorage()
            provider = OAuthClientProvider(
                server_url=mcp.url,
                client_metadata=client_metadata(),
                storage=storage,
                redirect_handler=headless.redirect,
                callback_handler=headless.callback,
                client_metadata_url=document_url,
            )
            text, _ = await call_tool(mcp.url, provider)
        assert text == "echo: hi"
        assert storage.client_info is not None
        assert storage.client_info.client_id == document_url  # no registration happened
        assert fetched == ["/oauth/client.json"]
        assert storage.tokens is not None
        claims = server.tokens.validate(storage.tokens.access_token).claims
        assert claims["client_id"] == document_url
        assert storage.tokens.refresh_token  # the document allows refresh_token
    finally:
        await runner.cleanup()
