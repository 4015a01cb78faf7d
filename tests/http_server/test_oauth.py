"""The RFC endpoints over real HTTP: metadata, /token, /introspect and /revoke."""

from __future__ import annotations

import base64
import urllib.parse
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from grpc import aio

from chitty.auth.v1 import auth_service_pb2, auth_service_pb2_grpc, client_pb2
from chittyauth.app import Server
from tests.conftest import bearer
from tests.http_server.conftest import (
    FORM,
    RegisteredClient,
    audit_events,
    register_client,
    sql_all,
)

Mint = Callable[..., Awaitable[str]]


def basic(client_id: str, secret: str) -> str:
    """RFC 6749 §2.3.1: form-urlencode each part, then HTTP Basic."""
    raw = f"{urllib.parse.quote_plus(client_id)}:{urllib.parse.quote_plus(secret)}"
    return "Basic " + base64.b64encode(raw.encode()).decode()


async def post_form(
    http: aiohttp.ClientSession,
    url: str,
    form: dict[str, str] | list[tuple[str, str]],
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, Any], aiohttp.ClientResponse]:
    async with http.post(url, data=form, headers=headers or {}) as response:
        body = await response.json() if response.content_length else {}
        return response.status, body, response


async def client_token(
    http: aiohttp.ClientSession, base: str, client: RegisteredClient, **form: str
) -> str:
    status, body, _ = await post_form(
        http,
        f"{base}/token",
        {"grant_type": "client_credentials", **form},
        {"Authorization": basic(client.client_id, client.client_secret)},
    )
    assert status == 200, body
    token: str = body["access_token"]
    return token


# -- metadata --------------------------------------------------------------------------------


async def test_metadata_follows_rfc_8414(
    http: aiohttp.ClientSession, base: str, server: Server
) -> None:
    async with http.get(f"{base}/.well-known/oauth-authorization-server") as response:
        assert response.status == 200
        assert response.content_type == "application/json"
        assert "max-age" in response.headers["Cache-Control"]
        meta = await response.json()
    issuer = server.config.tokens.issuer
    assert meta["issuer"] == issuer
    for name, path in [
        ("authorization_endpoint", "/authorize"),
        ("token_endpoint", "/token"),
        ("introspection_endpoint", "/introspect"),
        ("revocation_endpoint", "/revoke"),
        ("registration_endpoint", "/register"),
        ("jwks_uri", "/jwks.json"),
    ]:
        assert meta[name] == issuer.rstrip("/") + path
    assert meta["response_types_supported"] == ["code"]
    assert set(meta["grant_types_supported"]) == {
        "authorization_code",
        "refresh_token",
        "client_credentials",
        "urn:ietf:params:oauth:grant-type:token-exchange",
    }
    assert meta["token_endpoint_auth_methods_supported"] == [
        "client_secret_basic",
        "client_secret_post",
        "none",
    ]
    assert meta["introspection_endpoint_auth_methods_supported"] == [
        "client_secret_basic",
        "client_secret_post",
    ]
    assert "client_secret_basic" in meta["revocation_endpoint_auth_methods_supported"]
    assert meta["code_challenge_methods_supported"] == ["S256"]
    assert {"mcp:read", "mcp:write", "chittyos:services", "cross_sync"} <= set(
        meta["scopes_supported"]
    )
    assert meta["authorization_response_iss_parameter_supported"] is True
    assert meta["client_id_metadata_document_supported"] is True


# -- /token ----------------------------------------------------------------------------------


async def test_client_credentials_with_basic(
    http: aiohttp.ClientSession,
    base: str,
    server: Server,
    channel: aio.Channel,
    service_client: RegisteredClient,
) -> None:
    status, body, response = await post_form(
        http,
        f"{base}/token",
        {"grant_type": "client_credentials", "scope": "mcp:read"},
        {"Authorization": basic(service_client.client_id, service_client.client_secret)},
    )
    assert status == 200, body
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["Pragma"] == "no-cache"
    assert set(body) == {"access_token", "token_type", "expires_in", "scope"}
    assert body["token_type"] == "Bearer"
    assert body["scope"] == "mcp:read"
    assert body["expires_in"] == server.config.tokens.service_ttl_s

    stub = auth_service_pb2_grpc.AuthServiceStub(channel)
    check = await stub.Validate(auth_service_pb2.ValidateRequest(token=body["access_token"]))
    assert check.active
    assert check.claims.sub == service_client.client_id
    assert check.claims.client_id == service_client.client_id
    rows = sql_all(
        server.config.store.path,
        "SELECT client_id, token_use FROM tokens WHERE jti = ?",
        (check.claims.jti,),
    )
    assert rows == [(service_client.client_id, "service")]
    [issued] = [
        e for e in await audit_events(server, "token.issued") if e.resource == check.claims.jti
    ]
    assert issued.outcome == "success"
    assert issued.attributes["grant"] == "client_credentials"


async def test_client_credentials_with_post_and_all_allowed_scopes(
    http: aiohttp.ClientSession, base: str, channel: aio.Channel, admin_token: str
) -> None:
    # client_secret_post is accepted from a client registered for it (and only from one).
    service_client = await register_client(
        channel,
        admin_token,
        token_endpoint_auth_method=client_pb2.TOKEN_ENDPOINT_AUTH_METHOD_CLIENT_SECRET_POST,
    )
    status, body, _ = await post_form(
        http,
        f"{base}/token",
        {
            "grant_type": "client_credentials",
            "client_id": service_client.client_id,
            "client_secret": service_client.client_secret,
        },
    )
    assert status == 200, body
    assert body["scope"].split() == ["mcp:read", "mcp:write"]


async def test_basic_credentials_are_form_urlencoded(
    http: aiohttp.ClientSession, base: str, channel: aio.Channel, admin_token: str
) -> None:
    # A ':' in the client id only works if the id is form-urlencoded before Basic (§2.3.1).
    client = await register_client(channel, admin_token, client_id="reports:nightly")
    status, body, _ = await post_form(
        http,
        f"{base}/token",
        {"grant_type": "client_credentials"},
        {"Authorization": basic(client.client_id, client.client_secret)},
    )
    assert status == 200, body
    raw = base64.b64encode(f"{client.client_id}:{client.client_secret}".encode()).decode()
    status, body, _ = await post_form(
        http,
        f"{base}/token",
        {"grant_type": "client_credentials"},
        {"Authorization": f"Basic {raw}"},
    )
    assert (status, body["error"]) == (401, "invalid_client")


async def test_wrong_secret_is_invalid_client_and_audited(
    http: aiohttp.ClientSession, base: str, server: Server, service_client: RegisteredClient
) -> None:
    status, body, response = await post_form(
        http,
        f"{base}/token",
        {"grant_type": "client_credentials"},
        {"Authorization": basic(service_client.client_id, "cs_not-the-secret")},
    )
    assert status == 401
    assert body["error"] == "invalid_client"
    assert response.headers["WWW-Authenticate"].startswith("Basic ")
    assert response.headers["Cache-Control"] == "no-store"
    status, body, _ = await post_form(
        http,
        f"{base}/token",
        {
            "grant_type": "client_credentials",
            "client_id": service_client.client_id,
            "client_secret": "cs_not-the-secret",
        },
    )
    assert (status, body["error"]) == (401, "invalid_client")
    failures = await audit_events(server, "token.client_credentials")
    assert [(e.actor, e.outcome) for e in failures] == [
        (service_client.client_id, "failure"),
        (service_client.client_id, "failure"),
    ]
    assert "cs_not-the-secret" not in repr(failures)


@pytest.mark.parametrize(
    ("form", "headers", "status", "error"),
    [
        ({"grant_type": "password", "username": "a"}, {}, 400, "unsupported_grant_type"),
        ({"scope": "mcp:read"}, {}, 400, "invalid_request"),
        ([("grant_type", "client_credentials")] * 2, {}, 400, "invalid_request"),
        ({"grant_type": "client_credentials"}, {}, 401, "invalid_client"),
        (
            {"grant_type": "client_credentials", "client_secret": "x"},
            {"Authorization": "Basic YTpi"},
            400,
            "invalid_request",
        ),
        (
            {"grant_type": "client_credentials"},
            {"Authorization": "Basic !!!"},
            401,
            "invalid_client",
        ),
        (
            {"grant_type": "client_credentials", "scope": 'bad"scope'},
            {"Authorization": "Basic YTpi"},
            400,
            "invalid_scope",
        ),
    ],
    ids=[
        "unsupported-grant",
        "missing-grant-type",
        "repeated-parameter",
        "no-client",
        "two-auth-methods",
        "malformed-basic",
        "malformed-scope",
    ],
)
async def test_token_errors(
    http: aiohttp.ClientSession,
    base: str,
    form: Any,
    headers: dict[str, str],
    status: int,
    error: str,
) -> None:
    got_status, body, response = await post_form(http, f"{base}/token", form, headers)
    assert (got_status, body["error"]) == (status, error)
    assert body["error_description"]
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["X-Request-Id"]


async def test_scope_beyond_the_clients_is_invalid_scope(
    http: aiohttp.ClientSession, base: str, service_client: RegisteredClient
) -> None:
    status, body, _ = await post_form(
        http,
        f"{base}/token",
        {"grant_type": "client_credentials", "scope": "chittyauth:admin"},
        {"Authorization": basic(service_client.client_id, service_client.client_secret)},
    )
    assert (status, body["error"]) == (400, "invalid_scope")


async def test_token_needs_a_form_body(
    http: aiohttp.ClientSession, base: str, service_client: RegisteredClient
) -> None:
    auth = {"Authorization": basic(service_client.client_id, service_client.client_secret)}
    async with http.post(
        f"{base}/token", json={"grant_type": "client_credentials"}, headers=auth
    ) as response:
        assert response.status == 415
        body = await response.json()
    assert body["error"] == "invalid_request"
    assert "application/x-www-form-urlencoded" in body["error_description"]
    async with http.post(
        f"{base}/token",
        data=b"grant_type=client_credentials&scope=%FF",
        headers={**auth, "Content-Type": FORM},
    ) as response:
        assert response.status == 400
        assert (await response.json())["error"] == "invalid_request"


async def test_token_endpoint_is_post_only(http: aiohttp.ClientSession, base: str) -> None:
    async with http.get(f"{base}/token") as response:
        assert response.status == 405
        assert response.headers["Allow"] == "POST"
        assert (await response.json())["error"] == "invalid_request"


# -- /introspect -----------------------------------------------------------------------------


async def test_introspect_active_token_as_a_client(
    http: aiohttp.ClientSession, base: str, server: Server, service_client: RegisteredClient
) -> None:
    token = await client_token(http, base, service_client, scope="mcp:read")
    status, body, response = await post_form(
        http,
        f"{base}/introspect",
        {"token": token, "token_type_hint": "access_token"},
        {"Authorization": basic(service_client.client_id, service_client.client_secret)},
    )
    assert status == 200
    assert response.headers["Cache-Control"] == "no-store"
    assert body["active"] is True
    assert body["token_type"] == "Bearer"
    assert body["scope"] == "mcp:read"
    assert body["client_id"] == body["sub"] == service_client.client_id
    assert body["iss"] == server.config.tokens.issuer
    assert body["token_use"] == "service"
    assert body["exp"] > body["iat"]
    assert body["jti"].startswith("at_")
    assert "aud" in body


async def test_introspect_inactive_says_only_that(
    http: aiohttp.ClientSession, base: str, service_client: RegisteredClient
) -> None:
    status, body, _ = await post_form(
        http,
        f"{base}/introspect",
        {"token": "eyJhbGciOiJub25lIn0.e30."},
        {"Authorization": basic(service_client.client_id, service_client.client_secret)},
    )
    assert (status, body) == (200, {"active": False})


async def test_introspect_with_a_bearer_holding_the_scope(
    http: aiohttp.ClientSession, base: str, token_for: Mint, service_client: RegisteredClient
) -> None:
    token = await client_token(http, base, service_client)
    resource_server = await token_for(subject="rs", scopes=("introspect",))
    status, body, _ = await post_form(
        http,
        f"{base}/introspect",
        {"token": token},
        {"Authorization": f"Bearer {resource_server}"},
    )
    assert (status, body["active"]) == (200, True)

    weak = await token_for(subject="rs", scopes=("mcp:read",))
    status, body, response = await post_form(
        http, f"{base}/introspect", {"token": token}, {"Authorization": f"Bearer {weak}"}
    )
    assert (status, body["error"]) == (403, "insufficient_scope")
    assert 'error="insufficient_scope"' in response.headers["WWW-Authenticate"]


async def test_introspect_refuses_unauthenticated_callers(
    http: aiohttp.ClientSession, base: str, server: Server, service_client: RegisteredClient
) -> None:
    token = await client_token(http, base, service_client)
    status, body, response = await post_form(http, f"{base}/introspect", {"token": token})
    assert (status, body["error"]) == (401, "invalid_client")
    assert "WWW-Authenticate" in response.headers
    status, body, response = await post_form(
        http, f"{base}/introspect", {"token": token}, {"Authorization": "Bearer not-a-token"}
    )
    assert (status, body["error"]) == (401, "invalid_token")
    assert response.headers["WWW-Authenticate"].startswith("Bearer ")
    # A registered client that does not prove its secret is not enough either.
    status, body, _ = await post_form(
        http, f"{base}/introspect", {"token": token, "client_id": service_client.client_id}
    )
    assert (status, body["error"]) == (401, "invalid_client")
    failures = await audit_events(server, "token.introspect")
    assert len(failures) == 3
    assert {e.outcome for e in failures} == {"failure"}


async def test_introspect_needs_a_token(
    http: aiohttp.ClientSession, base: str, service_client: RegisteredClient
) -> None:
    status, body, _ = await post_form(
        http,
        f"{base}/introspect",
        {},
        {"Authorization": basic(service_client.client_id, service_client.client_secret)},
    )
    assert (status, body["error"]) == (400, "invalid_request")


# -- /revoke ---------------------------------------------------------------------------------


async def test_revoke_then_introspect_is_inactive(
    http: aiohttp.ClientSession, base: str, server: Server, service_client: RegisteredClient
) -> None:
    auth = {"Authorization": basic(service_client.client_id, service_client.client_secret)}
    token = await client_token(http, base, service_client)
    async with http.post(f"{base}/revoke", data={"token": token}, headers=auth) as response:
        assert response.status == 200
        assert response.headers["Cache-Control"] == "no-store"
    status, body, _ = await post_form(http, f"{base}/introspect", {"token": token}, auth)
    assert (status, body) == (200, {"active": False})
    revoked = sql_all(server.config.store.path, "SELECT kind FROM revocations")
    assert revoked == [("jti",)]
    [event] = await audit_events(server, "token.revoked")
    assert event.outcome == "success"
    # Revoking again, or a token we never issued, is still 200 (RFC 7009 §2.2).
    for again in (token, "not-a-token-at-all"):
        async with http.post(f"{base}/revoke", data={"token": again}, headers=auth) as response:
            assert response.status == 200


async def test_revoke_refuses_another_clients_token(
    http: aiohttp.ClientSession,
    base: str,
    server: Server,
    channel: aio.Channel,
    admin_token: str,
    service_client: RegisteredClient,
) -> None:
    other = await register_client(channel, admin_token)
    token = await client_token(http, base, service_client)
    status, body, _ = await post_form(
        http,
        f"{base}/revoke",
        {"token": token},
        {"Authorization": basic(other.client_id, other.client_secret)},
    )
    assert (status, body["error"]) == (400, "invalid_grant")
    assert server.tokens.validate(token).active
    status, body, _ = await post_form(http, f"{base}/revoke", {"token": token})
    assert (status, body["error"]) == (401, "invalid_client")
    outcomes = [(e.actor, e.outcome) for e in await audit_events(server, "token.revoke")]
    assert outcomes == [(other.client_id, "failure"), ("unknown", "failure")]


# -- the code flow's grants at /token ------------------------------------------------------------


async def test_authorization_code_and_refresh_at_the_token_endpoint(
    http: aiohttp.ClientSession,
    base: str,
    channel: aio.Channel,
    admin_token: str,
    token_for: Mint,
) -> None:
    import hashlib
    import secrets

    from chitty.auth.v1 import client_pb2

    redirect = "https://app.example/callback"
    app = await register_client(
        channel,
        admin_token,
        kind=client_pb2.CLIENT_KIND_LINKED_APP,
        redirect_uris=[redirect],
        grant_types=[
            client_pb2.GRANT_TYPE_AUTHORIZATION_CODE,
            client_pb2.GRANT_TYPE_REFRESH_TOKEN,
        ],
    )
    person = "AB-C-PEO-1234-P-56-H-7"
    user = await token_for(
        subject=person,
        chitty_id=person,
        token_use="portal",
        scopes=("mcp:read",),
        session_id="ses_1",
    )
    verifier = secrets.token_urlsafe(48)
    challenge = (
        base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    )
    stub = auth_service_pb2_grpc.AuthServiceStub(channel)
    grant = await stub.Authorize(
        auth_service_pb2.AuthorizeRequest(
            response_type="code",
            client_id=app.client_id,
            redirect_uri=redirect,
            scopes=["mcp:read"],
            state="s1",
            code_challenge=challenge,
            code_challenge_method="S256",
        ),
        metadata=bearer(user),
    )
    auth = {"Authorization": basic(app.client_id, app.client_secret)}
    status, body, _ = await post_form(
        http,
        f"{base}/token",
        {
            "grant_type": "authorization_code",
            "code": grant.code,
            "redirect_uri": redirect,
            "code_verifier": verifier,
        },
        auth,
    )
    assert status == 200, body
    assert body["refresh_token"].startswith("rt_")
    assert body["scope"] == "mcp:read"
    check = await stub.Validate(auth_service_pb2.ValidateRequest(token=body["access_token"]))
    assert (check.active, check.claims.sub) == (True, person)

    status, rotated, _ = await post_form(
        http,
        f"{base}/token",
        {"grant_type": "refresh_token", "refresh_token": body["refresh_token"]},
        auth,
    )
    assert status == 200, rotated
    assert rotated["refresh_token"] != body["refresh_token"]
    # The code is single-use.
    status, replay, _ = await post_form(
        http,
        f"{base}/token",
        {
            "grant_type": "authorization_code",
            "code": grant.code,
            "redirect_uri": redirect,
            "code_verifier": verifier,
        },
        auth,
    )
    assert (status, replay["error"]) == (400, "invalid_grant")
