"""Resource-server middleware (aiohttp and ASGI) in front of a real ChittyAuth server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import httpx
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from chitty.auth.client import AsyncAuthClient, ClientCredentials
from chitty.auth.client.resource import (
    TOKEN_KEY,
    AsgiProtection,
    RemoteVerifier,
    ResourceProtector,
    aiohttp_middleware,
    aiohttp_token_key,
)
from chitty.auth.client.verifier import LocalVerifier
from chittyauth.app import Server
from tests.client.conftest import create_service_client
from tests.client.test_verifier import RESOURCE, _mint


def _protector(server: Server, verifier: Any) -> ResourceProtector:
    routes: dict[str, tuple[str, ...]] = {"/docs": ("mcp:read",), "/admin": ("mcp:write",)}
    return ResourceProtector(
        verifier=verifier,
        resource=RESOURCE,
        authorization_servers=[server.config.tokens.issuer],
        routes=routes,
    )


@pytest.fixture
async def local_verifier(
    server: Server, channel: Any, admin_token: str
) -> AsyncIterator[LocalVerifier]:
    creds: ClientCredentials = await create_service_client(
        channel, admin_token, "gateway", ("introspect",)
    )
    client = AsyncAuthClient(server.grpc_target, creds)
    verifier = LocalVerifier(client, issuer=server.config.tokens.issuer, audience=RESOURCE)
    await verifier.start()
    yield verifier
    await verifier.stop()
    await client.close()


def _check_challenge(header: str, error: str | None) -> None:
    assert header.startswith("Bearer ")
    assert 'realm="chittyauth"' in header
    assert f'resource_metadata="{RESOURCE}/.well-known/oauth-protected-resource"' in header
    if error is None:
        assert "error=" not in header
    else:
        assert f'error="{error}"' in header


async def test_aiohttp_middleware(server: Server, local_verifier: LocalVerifier) -> None:
    async def docs(request: web.Request) -> web.Response:
        return web.json_response({"sub": request[aiohttp_token_key()].subject})

    async def public(request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    app = web.Application(middlewares=[aiohttp_middleware(_protector(server, local_verifier))])
    app.router.add_get("/docs/1", docs)
    app.router.add_get("/admin/x", docs)
    app.router.add_get("/public", public)
    good = await _mint(server)
    async with TestServer(app) as http, aiohttp.ClientSession() as session:
        base = f"http://127.0.0.1:{http.port}"
        async with session.get(f"{base}/docs/1") as resp:
            assert resp.status == 401
            _check_challenge(resp.headers["WWW-Authenticate"], None)
        async with session.get(f"{base}/docs/1", headers={"Authorization": "Bearer junk"}) as resp:
            assert resp.status == 401
            _check_challenge(resp.headers["WWW-Authenticate"], "invalid_token")
        auth = {"Authorization": f"Bearer {good}"}
        async with session.get(f"{base}/admin/x", headers=auth) as resp:
            assert resp.status == 403
            _check_challenge(resp.headers["WWW-Authenticate"], "insufficient_scope")
            assert 'scope="mcp:write"' in resp.headers["WWW-Authenticate"]
        async with session.get(f"{base}/docs/1", headers=auth) as resp:
            assert resp.status == 200
            assert await resp.json() == {"sub": "user-1"}
        async with session.get(f"{base}/public") as resp:
            assert resp.status == 200
        async with session.get(f"{base}/.well-known/oauth-protected-resource") as resp:
            assert resp.status == 200
            assert resp.content_type == "application/json"
            document = await resp.json()
    assert document == {
        "resource": RESOURCE,
        "authorization_servers": [server.config.tokens.issuer],
        "scopes_supported": ["mcp:read", "mcp:write"],
        "bearer_methods_supported": ["header"],
    }
    assert local_verifier.validate_calls == 0


async def test_asgi_middleware_with_validate(server: Server) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        token = scope["state"][TOKEN_KEY]
        body = token.subject.encode()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})

    async with AsyncAuthClient(server.grpc_target) as client:
        verifier = RemoteVerifier(client, audience=RESOURCE)
        protected = AsgiProtection(app, _protector(server, verifier))
        transport = httpx.ASGITransport(app=protected)
        good = await _mint(server)
        async with httpx.AsyncClient(transport=transport, base_url="http://rs") as http:
            missing = await http.get("/docs/1")
            assert missing.status_code == 401
            _check_challenge(missing.headers["www-authenticate"], None)
            bad = await http.get("/docs/1", headers={"Authorization": "Bearer nope"})
            assert bad.status_code == 401
            _check_challenge(bad.headers["www-authenticate"], "invalid_token")
            weak = await http.get("/admin/1", headers={"Authorization": f"Bearer {good}"})
            assert weak.status_code == 403
            _check_challenge(weak.headers["www-authenticate"], "insufficient_scope")
            ok = await http.get("/docs/1", headers={"Authorization": f"bearer {good}"})
            assert ok.status_code == 200
            assert ok.text == "user-1"
            meta = await http.get("/.well-known/oauth-protected-resource")
            assert meta.json()["bearer_methods_supported"] == ["header"]
            assert meta.json()["resource"] == RESOURCE
        assert verifier.validate_calls == 3
