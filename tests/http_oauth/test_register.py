"""POST /register (RFC 7591): policies, metadata checks, rate limit, and a flow afterwards."""

from __future__ import annotations

import sqlite3
from typing import Any

import aiohttp

from chittyauth.app import Server
from chittyauth.store.protocol import AuditQuery
from tests.http_oauth.conftest import REDIRECT, Start, base_url

METADATA: dict[str, Any] = {
    "client_name": "Claude Desktop",
    "redirect_uris": ["http://127.0.0.1:33418/callback", REDIRECT],
    "grant_types": ["authorization_code", "refresh_token"],
    "response_types": ["code"],
    "token_endpoint_auth_method": "none",
    "scope": "mcp:read mcp:write",
    "logo_uri": "https://app.example/logo.png",
}


async def register(
    http: aiohttp.ClientSession, server: Server, body: Any, **headers: str
) -> tuple[int, dict[str, Any], aiohttp.ClientResponse]:
    async with http.post(f"{base_url(server)}/register", json=body, headers=headers) as response:
        return response.status, await response.json(), response


def stored(server: Server, client_id: str) -> tuple[Any, ...]:
    conn = sqlite3.connect(server.config.store.path)
    try:
        row = conn.execute(
            "SELECT kind, confidential, redirect_uris, token_endpoint_auth_method, secret_hash"
            " FROM oauth_clients WHERE client_id = ?",
            (client_id,),
        ).fetchone()
        assert row is not None
        return tuple(row)
    finally:
        conn.close()


async def test_open_registration_of_a_public_client(
    server: Server, browser: aiohttp.ClientSession
) -> None:
    status, body, response = await register(browser, server, METADATA)
    assert status == 201, body
    assert response.headers["Cache-Control"] == "no-store"
    assert "client_secret" not in body
    assert body["token_endpoint_auth_method"] == "none"
    assert body["redirect_uris"] == METADATA["redirect_uris"]
    assert body["grant_types"] == ["authorization_code", "refresh_token"]
    assert body["response_types"] == ["code"]
    assert body["scope"] == "mcp:read mcp:write"
    assert body["client_name"] == "Claude Desktop"
    assert isinstance(body["client_id_issued_at"], int)
    assert "logo_uri" not in body  # ignored, not echoed
    kind, confidential, _, method, secret_hash = stored(server, body["client_id"])
    assert (kind, confidential, method, secret_hash) == ("linked_app", 0, "none", "")
    # The registry knows it at once.
    assert server.clients.get(body["client_id"]) is not None
    created = await server.store.list_audit_events(AuditQuery(action="client.created"))
    assert [(e.actor, e.outcome) for e in created] == [("system:registration", "success")]


async def test_confidential_registration_gets_a_secret_once(
    server: Server, browser: aiohttp.ClientSession
) -> None:
    metadata = {**METADATA, "token_endpoint_auth_method": "client_secret_basic"}
    del metadata["scope"]
    status, body, _ = await register(browser, server, metadata)
    assert status == 201, body
    assert body["client_secret"].startswith("cs_")
    assert body["client_secret_expires_at"] == 0
    assert set(body["scope"].split()) == {
        "mcp:read",
        "mcp:write",
        "chittyos:services",
        "cross_sync",
    }
    *_, secret_hash = stored(server, body["client_id"])
    assert secret_hash
    assert body["client_secret"] not in secret_hash
    server.clients.authenticate(body["client_id"], body["client_secret"])


async def test_bad_metadata_is_refused_with_rfc_7591_errors(
    server: Server, browser: aiohttp.ClientSession
) -> None:
    cases: list[tuple[Any, str]] = [
        ({**METADATA, "redirect_uris": ["http://app.example/cb"]}, "invalid_redirect_uri"),
        ({**METADATA, "redirect_uris": ["https://app.example/cb#x"]}, "invalid_redirect_uri"),
        ({**METADATA, "redirect_uris": []}, "invalid_redirect_uri"),
        ({**METADATA, "redirect_uris": "https://app.example/cb"}, "invalid_redirect_uri"),
        ({**METADATA, "redirect_uris": [f"https://a.example/{i}" for i in range(11)]},
         "invalid_redirect_uri"),
        ({**METADATA, "grant_types": ["client_credentials"]}, "invalid_client_metadata"),
        ({**METADATA, "response_types": ["token"]}, "invalid_client_metadata"),
        ({**METADATA, "token_endpoint_auth_method": "private_key_jwt"},
         "invalid_client_metadata"),
        ({**METADATA, "scope": "mcp:read chittyauth:admin"}, "invalid_client_metadata"),
        ({**METADATA, "client_name": "x" * 201}, "invalid_client_metadata"),
        ({**METADATA, "client_name": 7}, "invalid_client_metadata"),
        (["not", "an", "object"], "invalid_client_metadata"),
    ]  # fmt: skip
    for metadata, error in cases:
        status, body, _ = await register(browser, server, metadata)
        assert (status, body["error"]) == (400, error), metadata
    async with browser.post(
        f"{base_url(server)}/register",
        data=b"{not json",
        headers={"Content-Type": "application/json"},
    ) as response:
        assert response.status == 400
        assert (await response.json())["error"] == "invalid_client_metadata"
    conn = sqlite3.connect(server.config.store.path)
    try:
        assert conn.execute("SELECT count(*) FROM oauth_clients").fetchone()[0] == 0
    finally:
        conn.close()
    failures = await server.store.list_audit_events(AuditQuery(action="client.created", limit=100))
    assert len(failures) == len(cases) + 1
    assert {e.outcome for e in failures} == {"failure"}


async def test_token_policy_needs_the_initial_access_token(
    start: Start, browser: aiohttp.ClientSession
) -> None:
    server = await start(registration_policy="token", initial_access_token="iat-" + "x" * 40)
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic eDp5"}):
        status, body, response = await register(browser, server, METADATA, **headers)
        assert (status, body["error"]) == (401, "invalid_token")
        assert response.headers["WWW-Authenticate"].startswith("Bearer ")
    status, body, _ = await register(
        browser, server, METADATA, Authorization="Bearer iat-" + "x" * 40
    )
    assert status == 201, body
    refused = await server.store.list_audit_events(AuditQuery(action="client.created"))
    reasons = [e.attributes.get("reason") for e in refused if e.outcome == "failure"]
    assert reasons == ["INVALID_INITIAL_ACCESS_TOKEN"] * 3


async def test_token_policy_without_a_token_configured_refuses_everyone(
    start: Start, browser: aiohttp.ClientSession
) -> None:
    server = await start(registration_policy="token")
    status, body, _ = await register(browser, server, METADATA, Authorization="Bearer ")
    assert (status, body["error"]) == (401, "invalid_token")


async def test_registration_is_rate_limited(start: Start, browser: aiohttp.ClientSession) -> None:
    server = await start(rate_limits={"enabled": True, "register_per_minute": 2})
    for _ in range(2):
        status, _, _ = await register(browser, server, METADATA)
        assert status == 201
    status, body, response = await register(browser, server, METADATA)
    assert status == 429
    assert int(response.headers["Retry-After"]) >= 1
    assert body["error"] == "slow_down"
