"""The historical identity routes over real HTTP, against a real server and dev authority."""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest

from chitty.auth.v1 import client_pb2
from chittyauth.app import Server
from chittyauth.clock import FakeClock
from chittyauth.config import Config
from tests.conftest import running_server, token_minter
from tests.http_server.conftest import audit_events, base_url, register_client
from tests.identity_flows.conftest import identity_config
from tests.support.consent import record_consent
from tests.support.devauthority import DevAuthority

Mint = Callable[..., Awaitable[str]]
REDIRECT = "https://app.example/callback"


@pytest.fixture
async def legacy_server(config: Config, dev_authority: DevAuthority) -> AsyncIterator[Server]:
    # Wall time: Access assertions from the dev authority carry real timestamps.
    async with running_server(identity_config(config, dev_authority), FakeClock(time.time())) as s:
        yield s


@pytest.fixture
def url(legacy_server: Server) -> str:
    return base_url(legacy_server)


@pytest.fixture
def mint(legacy_server: Server) -> Mint:
    return token_minter(legacy_server)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def call(
    http: aiohttp.ClientSession,
    method: str,
    url: str,
    *,
    token: str = "",
    headers: dict[str, str] | None = None,
    **kwargs: Any,
) -> tuple[int, dict[str, Any]]:
    sent = dict(headers or {})
    if token:
        sent["Authorization"] = f"Bearer {token}"
    async with http.request(method, url, headers=sent, **kwargs) as response:
        return response.status, await response.json()


async def mint_person(dev_authority: DevAuthority) -> str:
    return str(
        (await dev_authority.request("POST", "/v1/mint", json={"entity": "PEO"}))["chittyId"]
    )


def basic(client_id: str, secret: str) -> dict[str, str]:
    raw = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


async def test_portal_then_linked_app_code_flow(
    http: aiohttp.ClientSession, url: str, legacy_server: Server, dev_authority: DevAuthority
) -> None:
    assertion = await dev_authority.mint_assertion("ada@example.com")
    status, body = await call(
        http,
        "POST",
        f"{url}/v1/mcp/portal/authenticate",
        headers={
            "Cf-Access-Jwt-Assertion": assertion,
            "Cf-Access-Authenticated-User-Email": "ada@example.com",
        },
    )
    assert status == 200
    assert body["authenticated"] is True
    assert body["cf_identity"] == "ada@example.com"
    assert set(body) == {
        "authenticated", "chitty_id", "cf_identity", "portal_token", "mcp_portal_url"
    }  # fmt: skip
    person, portal = body["chitty_id"], body["portal_token"]
    assert legacy_server.tokens.validate(portal, token_use="portal").active

    status, body = await call(http, "POST", f"{url}/v1/mcp/portal/authenticate")
    assert (status, body["success"]) == (401, False)
    assert body["reason"] == "MISSING_ASSERTION"
    status, body = await call(
        http,
        "POST",
        f"{url}/v1/mcp/portal/authenticate",
        headers={"Cf-Access-Jwt-Assertion": assertion[:-4] + "AAAA"},
    )
    assert (status, body["success"]) == (401, False)

    admin = await token_minter(legacy_server)()
    async with legacy_server_channel(legacy_server) as channel:
        app = await register_client(
            channel,
            admin,
            kind=client_pb2.CLIENT_KIND_LINKED_APP,
            redirect_uris=[REDIRECT],
            grant_types=[
                client_pb2.GRANT_TYPE_AUTHORIZATION_CODE,
                client_pb2.GRANT_TYPE_REFRESH_TOKEN,
            ],
        )
    verifier = secrets.token_urlsafe(48)
    challenge = (
        base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    )
    request = {
        "app_id": app.client_id,
        "chitty_id": person,
        "redirect_uri": REDIRECT,
        "scopes": ["mcp:read"],
        "state": "xyz",
    }
    oauth_url = f"{url}/v1/mcp/linked-app/oauth"
    status, body = await call(http, "POST", oauth_url, token=portal, json=request)
    assert (status, body["success"], body["reason"]) == (400, False, "PKCE_REQUIRED")
    assert "code_challenge" in body["error"]
    status, body = await call(
        http, "POST", oauth_url, json={**request, "code_challenge": challenge}
    )
    assert (status, body["success"]) == (401, False)
    other = {**request, "code_challenge": challenge, "chitty_id": "AB-C-PEO-1234-P-56-H-7"}
    status, body = await call(http, "POST", oauth_url, token=portal, json=other)
    assert (status, body["reason"]) == (403, "CHITTY_ID_MISMATCH")
    status, body = await call(
        http, "POST", oauth_url, token=portal, json={**request, "code_challenge": challenge}
    )
    assert status == 200
    assert body["authorized"] is True
    assert body["redirect_uri"] == REDIRECT
    assert 0 < body["expires_in"] <= 600
    code = body["authorization_code"]

    token_url = f"{url}/v1/mcp/linked-app/token"
    exchange = {
        "code": code,
        "client_id": app.client_id,
        "client_secret": app.client_secret,
        "grant_type": "authorization_code",
        "code_verifier": verifier,
        "redirect_uri": REDIRECT,
    }
    status, body = await call(http, "POST", token_url, json={**exchange, "grant_type": "password"})
    assert (status, body["error"]) == (400, "unsupported_grant_type")
    status, body = await call(http, "POST", token_url, json={**exchange, "client_secret": "nope"})
    assert (status, body["error"]) == (400, "invalid_client")
    status, body = await call(http, "POST", token_url, json=exchange)
    assert status == 200
    assert body["token_type"] == "Bearer"
    assert body["scope"] == "mcp:read"
    assert body["refresh_token"]
    assert 0 < body["expires_in"] <= 3600
    claims = legacy_server.tokens.validate(body["access_token"]).claims
    assert claims["chitty_id"] == person
    status, body = await call(http, "POST", token_url, json=exchange)
    assert (status, body["error"]) == (400, "invalid_grant")
    assert set(body) == {"error", "error_description"}


def legacy_server_channel(server: Server) -> Any:
    from grpc import aio

    return aio.insecure_channel(server.grpc_target)


async def test_mcp_server_authenticate_and_validate(
    http: aiohttp.ClientSession,
    url: str,
    legacy_server: Server,
    dev_authority: DevAuthority,
    mint: Mint,
) -> None:
    async with legacy_server_channel(legacy_server) as channel:
        client = await register_client(
            channel,
            await mint(),
            kind=client_pb2.CLIENT_KIND_MCP_SERVER,
            scopes=["mcp:read"],
            grant_types=[client_pb2.GRANT_TYPE_CLIENT_CREDENTIALS],
            server_id="chittychat",
            capabilities=["tools", "resources"],
        )
    person = await mint_person(dev_authority)
    auth_url = f"{url}/v1/mcp/authenticate"
    request = {"server_id": "chittychat", "chitty_id": person, "capabilities": ["tools"]}
    # Naming a ChittyID grants nothing: the person must have consented to the server first.
    status, body = await call(
        http, "POST", auth_url, headers=basic(client.client_id, client.client_secret), json=request
    )
    assert (status, body["success"], body["reason"]) == (403, False, "CONSENT_REQUIRED")
    await record_consent(legacy_server, person, client.client_id, ["mcp:read"])
    status, body = await call(
        http, "POST", auth_url, headers=basic(client.client_id, client.client_secret), json=request
    )
    assert status == 200
    assert body["success"] is True
    assert (body["server_id"], body["chitty_id"], body["capabilities"]) == (
        "chittychat", person, ["tools"]
    )  # fmt: skip
    server_token = body["token"]

    status, body = await call(http, "POST", auth_url, json=request)
    assert (status, body["success"], body["reason"]) == (401, False, "MISSING_CLIENT_CREDENTIALS")
    status, body = await call(
        http, "POST", auth_url, headers=basic(client.client_id, "wrong"), json=request
    )
    assert (status, body["success"]) == (401, False)
    status, body = await call(
        http,
        "POST",
        auth_url,
        headers=basic(client.client_id, client.client_secret),
        json={**request, "server_id": "chittyrouter"},
    )
    assert (status, body["reason"]) == (400, "SERVER_ID_MISMATCH")

    validate_url = f"{url}/v1/mcp/validate"
    status, body = await call(http, "POST", validate_url, token=server_token)
    assert status == 200
    assert body == {
        "valid": True, "server_id": "chittychat", "chitty_id": person, "capabilities": ["tools"]
    }  # fmt: skip
    status, body = await call(http, "POST", validate_url, token=await mint())
    assert (status, body["valid"], body["reason"]) == (401, False, "WRONG_TOKEN_USE")
    status, body = await call(http, "POST", validate_url)
    assert (status, body["valid"]) == (401, False)


async def test_accounts_register_login_validate_logout(
    http: aiohttp.ClientSession, url: str, legacy_server: Server
) -> None:
    account = {"email": "grace@example.com", "password": "correct horse battery", "name": "Grace"}
    status, body = await call(http, "POST", f"{url}/v1/auth/register", json=account)
    assert status == 200
    assert body["success"] is True
    chitty_id = body["chitty_id"]
    status, body = await call(http, "POST", f"{url}/v1/auth/register", json=account)
    assert (status, body["success"], body["reason"]) == (409, False, "EMAIL_TAKEN")

    login = {"email": account["email"], "password": account["password"]}
    status, body = await call(http, "POST", f"{url}/v1/auth/login", json=login)
    assert status == 200
    assert (body["success"], body["chitty_id"]) == (True, chitty_id)
    token = body["token"]
    status, body = await call(
        http, "POST", f"{url}/v1/auth/login", json={**login, "password": "wrong password!"}
    )
    assert (status, body["success"]) == (401, False)

    status, body = await call(http, "POST", f"{url}/v1/auth/validate", token=token)
    assert (status, body) == (200, {"valid": True, "chitty_id": chitty_id})
    status, body = await call(http, "POST", f"{url}/v1/auth/logout", token=token)
    assert (status, body) == (200, {"success": True})
    status, body = await call(http, "POST", f"{url}/v1/auth/validate", token=token)
    assert (status, body["valid"], body["reason"]) == (401, False, "REVOKED")
    status, body = await call(http, "POST", f"{url}/v1/auth/logout", token=token)
    assert (status, body["success"]) == (401, False)
    assert await audit_events(legacy_server, "token.revoked")


async def test_tokens_api_keys_and_authorizations(
    http: aiohttp.ClientSession,
    url: str,
    legacy_server: Server,
    dev_authority: DevAuthority,
    mint: Mint,
) -> None:
    admin = await mint()
    person = await mint_person(dev_authority)
    other = await mint_person(dev_authority)

    gen_url = f"{url}/v1/tokens/generate"
    status, body = await call(
        http, "POST", gen_url, token=admin, json={"chitty_id": person, "expires_in": "30m"}
    )
    assert status == 200
    assert (body["type"], body["expires_in"]) == ("Bearer", 1800)
    assert legacy_server.tokens.validate(body["token"]).claims["chitty_id"] == person
    status, body = await call(http, "POST", gen_url, token=admin, json={"chitty_id": person})
    assert (status, body["expires_in"]) == (200, 3600)
    weak = await mint(scopes=("mcp:read",))
    status, body = await call(http, "POST", gen_url, token=weak, json={"chitty_id": person})
    assert (status, body["success"]) == (403, False)
    status, body = await call(http, "POST", gen_url, json={"chitty_id": person})
    assert (status, body["reason"]) == (401, "MISSING_BEARER")

    key_url = f"{url}/v1/api-keys/generate"
    status, body = await call(
        http, "POST", key_url, token=admin,
        json={"chitty_id": person, "name": "ci", "scopes": ["read"]},
    )  # fmt: skip
    assert status == 200
    assert (body["chitty_id"], body["scopes"]) == (person, ["read"])
    assert body["api_key"].startswith("sk_live_")
    assert body["key_id"]
    assert body["created_at"].endswith("Z")
    status, checked = await call(
        http, "POST", f"{url}/v1/api-keys/validate", json={"api_key": body["api_key"]}
    )
    assert (status, checked["chitty_id"]) == (200, person)
    status, body = await call(http, "POST", key_url, token=weak, json={"chitty_id": person})
    assert (status, body["success"]) == (403, False)

    grant = {
        "grantor_chitty_id": person,
        "grantee_chitty_id": other,
        "permission": "documents:read",
        "resource": "case-42",
    }
    status, body = await call(
        http, "POST", f"{url}/v1/authorizations/grant", token=admin, json=grant
    )
    assert status == 200
    assert body["success"] is True
    assert body["authorization"]["grantee_chitty_id"] == other
    assert body["authorization"]["authorization_id"]
    status, body = await call(
        http, "POST", f"{url}/v1/authorizations/grant", token=weak, json=grant
    )
    assert (status, body["success"]) == (403, False)

    check = {"chitty_id": other, "permission": "documents:read", "resource": "case-42"}
    status, body = await call(
        http, "POST", f"{url}/v1/authorizations/check", token=admin, json=check
    )
    assert (status, body) == (200, {"authorized": True, **check})
    status, body = await call(
        http, "POST", f"{url}/v1/authorizations/check", token=admin,
        json={**check, "resource": "case-43"},
    )  # fmt: skip
    assert (status, body["authorized"]) == (200, False)

    status, body = await call(http, "GET", f"{url}/v1/authorizations/{other}", token=admin)
    assert status == 200
    assert [a["permission"] for a in body["authorizations"]] == ["documents:read"]
    status, body = await call(http, "GET", f"{url}/v1/authorizations/{other}", token=weak)
    assert (status, body["success"]) == (403, False)
    status, body = await call(
        http, "GET", f"{url}/v1/authorizations/{other}?page_size=x", token=admin
    )
    assert (status, body["reason"]) == (400, "BAD_PAGE_SIZE")


BODY_ROUTES = [
    ("/v1/mcp/linked-app/oauth", {"app_id": 5, "chitty_id": "x", "redirect_uri": "y"}),
    ("/v1/mcp/authenticate", {"capabilities": "tools"}),
    ("/v1/tokens/generate", {"chitty_id": "AB-C-PEO-1234-P-56-H-7", "expires_in": "forever"}),
    ("/v1/api-keys/generate", {"chitty_id": ["x"]}),
    ("/v1/authorizations/grant", {"grantee_chitty_id": "x", "permission": "p", "expires_at": True}),
    ("/v1/authorizations/check", {"chitty_id": "x"}),
    ("/v1/auth/register", {"email": "a@example.com", "password": 12345678}),
    ("/v1/auth/login", {"email": "a@example.com"}),
]


@pytest.mark.parametrize(("path", "wrong"), BODY_ROUTES)
async def test_malformed_bodies_are_400_with_a_reason(
    http: aiohttp.ClientSession, url: str, mint: Mint, path: str, wrong: dict[str, Any]
) -> None:
    headers = basic("some-client", "secret") if path == "/v1/mcp/authenticate" else {}
    token = "" if headers else await mint()
    if path == "/v1/mcp/linked-app/oauth":  # consent: only a person's own token approves
        token = await mint(subject="AB-C-PEO-1234-P-56-H-7", token_use="portal", scopes=())
    for body in (b"{not json", b"[1, 2]"):
        status, answer = await call(
            http, "POST", f"{url}{path}", token=token, headers={
                **headers, "Content-Type": "application/json"}, data=body,
        )  # fmt: skip
        assert (status, answer["success"], answer["reason"]) == (400, False, "MALFORMED_JSON")
    status, answer = await call(
        http, "POST", f"{url}{path}", token=token, headers=headers, json=wrong
    )
    assert status == 400
    assert answer["success"] is False
    assert answer["reason"] in {"MISSING_FIELD", "INVALID_FIELD"}
    plain = {**headers, "Content-Type": "text/plain"}
    status, answer = await call(
        http, "POST", f"{url}{path}", token=token, headers=plain, data=b"{}"
    )
    assert status == 415


async def test_linked_app_token_malformed_is_oauth_400(
    http: aiohttp.ClientSession, url: str
) -> None:
    token_url = f"{url}/v1/mcp/linked-app/token"
    status, body = await call(
        http, "POST", token_url, headers={"Content-Type": "application/json"}, data=b"{"
    )
    assert (status, body["error"]) == (400, "invalid_request")
    status, body = await call(http, "POST", token_url, json={"grant_type": "authorization_code"})
    assert (status, body["error"]) == (400, "invalid_request")
    assert "client_id" in body["error_description"]
