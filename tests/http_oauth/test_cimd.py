"""Client ID Metadata Documents served by a local aiohttp server on 127.0.0.1."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from chittyauth.app import Server
from chittyauth.domain.cimd import cache_ttl
from chittyauth.store.protocol import AuditQuery
from tests.http_oauth.conftest import (
    REDIRECT,
    Start,
    answer,
    authorize_params,
    base_url,
    consent,
    form_fields,
    pkce,
    portal_login,
    query_of,
)
from tests.support.devauthority import DevAuthority


class DocumentServer:
    def __init__(self) -> None:
        self.base = ""
        self.fetches = 0

    def url(self, path: str) -> str:
        return f"{self.base}{path}"

    def document(self, path: str, **overrides: Any) -> dict[str, Any]:
        return {
            "client_id": self.url(path),
            "client_name": "Doc Client",
            "redirect_uris": [REDIRECT],
            "grant_types": ["authorization_code"],
            "response_types": ["code"],
            "token_endpoint_auth_method": "none",
            **overrides,
        }

    def app(self) -> web.Application:
        async def good(request: web.Request) -> web.Response:
            self.fetches += 1
            return web.json_response(
                self.document(request.path), headers={"Cache-Control": "max-age=600"}
            )

        async def other_id(request: web.Request) -> web.Response:
            return web.json_response(self.document(request.path, client_id=self.url("/x")))

        async def oversized(request: web.Request) -> web.Response:
            return web.json_response(self.document(request.path, padding="x" * 70_000))

        async def redirect(request: web.Request) -> web.Response:
            raise web.HTTPFound(self.url("/clients/good.json"))

        async def with_secret(request: web.Request) -> web.Response:
            return web.json_response(self.document(request.path, client_secret="s"))

        app = web.Application()
        app.router.add_get("/clients/good.json", good)
        app.router.add_get("/clients/other.json", other_id)
        app.router.add_get("/clients/big.json", oversized)
        app.router.add_get("/clients/redirect.json", redirect)
        app.router.add_get("/clients/secret.json", with_secret)
        return app


@pytest.fixture
async def documents() -> AsyncIterator[DocumentServer]:
    served = DocumentServer()
    runner = web.AppRunner(served.app())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    served.base = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        yield served
    finally:
        await runner.cleanup()


@pytest.fixture
async def cimd_server(start: Start) -> Server:
    return await start(cimd_allow_loopback=True)


async def test_authorize_and_exchange_with_a_document_client_id(
    cimd_server: Server,
    documents: DocumentServer,
    browser: aiohttp.ClientSession,
    dev_authority: DevAuthority,
) -> None:
    base = base_url(cimd_server)
    client_id = documents.url("/clients/good.json")
    await portal_login(browser, base, dev_authority, "ada@example.com")
    pair = pkce()
    response, page = await consent(browser, base, authorize_params(client_id, pair.challenge))
    assert response.status == 200, page
    assert "Doc Client" in page
    approved = await answer(browser, base, form_fields(page))
    assert approved.status == 302
    code = query_of(approved.headers["Location"])["code"]
    async with browser.post(
        f"{base}/token",
        data={
            "grant_type": "authorization_code",
            "client_id": client_id,
            "code": code,
            "redirect_uri": REDIRECT,
            "code_verifier": pair.verifier,
        },
    ) as token_response:
        assert token_response.status == 200, await token_response.text()
        token = await token_response.json()
    claims = cimd_server.tokens.validate(token["access_token"]).claims
    assert claims["client_id"] == client_id
    assert documents.fetches == 1  # cached per Cache-Control: max-age=600
    # Only the document's redirect URIs are accepted.
    response, _ = await consent(
        browser,
        base,
        authorize_params(client_id, pair.challenge, redirect_uri="https://evil.example/cb"),
    )
    assert response.status == 400
    assert "Location" not in response.headers


@pytest.mark.parametrize(
    "path", ["/clients/other.json", "/clients/big.json", "/clients/redirect.json",
             "/clients/secret.json", "/clients/missing.json"],
)  # fmt: skip
async def test_unusable_documents_are_refused(
    path: str,
    cimd_server: Server,
    documents: DocumentServer,
    browser: aiohttp.ClientSession,
    dev_authority: DevAuthority,
) -> None:
    base = base_url(cimd_server)
    client_id = documents.url(path)
    await portal_login(browser, base, dev_authority, "ada@example.com")
    response, _page = await consent(browser, base, authorize_params(client_id, pkce().challenge))
    assert response.status == 400
    assert "Location" not in response.headers
    async with browser.post(
        f"{base}/token",
        data={
            "grant_type": "authorization_code",
            "client_id": client_id,
            "code": "ac_x",
            "redirect_uri": REDIRECT,
            "code_verifier": pkce().verifier,
        },
    ) as token_response:
        assert token_response.status == 401
        assert (await token_response.json())["error"] == "invalid_client"
    refusals = await cimd_server.store.list_audit_events(
        AuditQuery(action="client.metadata_document")
    )
    assert len(refusals) == 2
    assert {e.attributes["reason"] for e in refusals} == {"CLIENT_METADATA_DOCUMENT_REFUSED"}


async def test_loopback_documents_are_refused_unless_allowed(
    server: Server, documents: DocumentServer, browser: aiohttp.ClientSession
) -> None:
    client_id = documents.url("/clients/good.json")
    response, _page = await consent(
        browser, base_url(server), authorize_params(client_id, pkce().challenge)
    )
    assert response.status == 400
    assert documents.fetches == 0
    # Metadata advertises CIMD (it is on by default; only loopback hosts are refused).
    async with browser.get(f"{base_url(server)}/.well-known/oauth-authorization-server") as r:
        assert (await r.json())["client_id_metadata_document_supported"] is True


async def test_metadata_stops_advertising_cimd_when_off(
    start: Start, browser: aiohttp.ClientSession
) -> None:
    server = await start(cimd_enabled=False)
    async with browser.get(f"{base_url(server)}/.well-known/oauth-authorization-server") as r:
        assert (await r.json())["client_id_metadata_document_supported"] is False


def test_cache_ttl_follows_cache_control() -> None:
    assert cache_ttl("public, max-age=600") == 600
    assert cache_ttl("max-age=999999") == 86400
    assert cache_ttl("no-store") == 0
    assert cache_ttl("") == 300
    assert json.dumps(cache_ttl("no-cache, max-age=60")) == "0.0"
