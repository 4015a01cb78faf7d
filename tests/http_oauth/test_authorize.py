"""GET/POST /authorize with consent, the portal cookie, and /token afterwards."""

from __future__ import annotations

import sqlite3

import aiohttp
from grpc import aio
from yarl import URL

from chitty.auth.v1 import auth_service_pb2, auth_service_pb2_grpc
from chittyauth.app import Server
from chittyauth.store.protocol import AuditQuery
from tests.http_oauth.conftest import (
    ASSERTION,
    REDIRECT,
    Start,
    answer,
    authorize_params,
    base_url,
    consent,
    form_fields,
    linked_app,
    pkce,
    portal_login,
    query_of,
)
from tests.support.devauthority import DevAuthority


def code_rows(server: Server) -> int:
    conn = sqlite3.connect(server.config.store.path)
    try:
        return int(conn.execute("SELECT count(*) FROM authorization_codes").fetchone()[0])
    finally:
        conn.close()


async def test_consent_flow_with_the_portal_cookie(
    server: Server, base: str, browser: aiohttp.ClientSession, dev_authority: DevAuthority
) -> None:
    client_id, _ = await linked_app(server, name="Notes <App> & Co")
    assertion = await dev_authority.mint_assertion("ada@example.com")
    async with browser.post(f"{base}/portal/login", headers={ASSERTION: assertion}) as response:
        assert response.status == 200
        login = await response.json()
        set_cookie = response.headers["Set-Cookie"]
    # Loopback http issuer: no Secure flag (and so no __Host- prefix); never readable by JS.
    assert set_cookie.startswith("chittyauth_portal=")
    assert "HttpOnly" in set_cookie
    assert "SameSite=Lax" in set_cookie
    assert "Path=/" in set_cookie
    assert "Secure" not in set_cookie
    assert "access_token" not in login
    assert "token" not in login
    assert login["chitty_id"]
    assert login["session_id"]

    pair = pkce()
    response, page = await consent(browser, base, authorize_params(client_id, pair.challenge))
    assert response.status == 200, page
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["X-Frame-Options"] == "DENY"
    csp = response.headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp
    assert "frame-ancestors 'none'" in csp
    assert "form-action 'self' https://app.example" in csp
    # Everything rendered is escaped.
    assert "Notes &lt;App&gt; &amp; Co" in page
    assert "<App>" not in page
    assert "app.example" in page
    assert "mcp:read" in page
    fields = form_fields(page)
    assert dict(fields)["csrf_token"]

    approved = await answer(browser, base, fields)
    assert approved.status == 302
    location = approved.headers["Location"]
    assert location.startswith(REDIRECT + "?")
    returned = query_of(location)
    assert returned["state"] == "st-123"
    assert returned["iss"] == server.config.tokens.issuer
    code = returned["code"]

    async with browser.post(
        f"{base}/token",
        data={
            "grant_type": "authorization_code",
            "client_id": client_id,
            "code": code,
            "redirect_uri": REDIRECT,
            "code_verifier": pair.verifier,
        },
    ) as response:
        assert response.status == 200, await response.text()
        token = await response.json()
    assert token["scope"] == "mcp:read"
    async with aio.insecure_channel(server.grpc_target) as channel:
        check = await auth_service_pb2_grpc.AuthServiceStub(channel).Validate(
            auth_service_pb2.ValidateRequest(token=token["access_token"])
        )
    assert check.active
    assert check.claims.sub == login["chitty_id"]
    assert check.claims.sid == login["session_id"]


async def test_csrf_token_missing_or_wrong_is_403_without_a_code(
    server: Server, base: str, browser: aiohttp.ClientSession, dev_authority: DevAuthority
) -> None:
    client_id, _ = await linked_app(server)
    await portal_login(browser, base, dev_authority, "ada@example.com")
    _, page = await consent(browser, base, authorize_params(client_id, pkce().challenge))
    fields = form_fields(page)
    without = [(n, v) for n, v in fields if n != "csrf_token"]
    wrong = [*without, ("csrf_token", "9999999999.AAAA")]
    # A valid token for other parameters (here: another state) does not carry over either.
    tampered = [(n, "other-state" if n == "state" else v) for n, v in fields]
    for form in (without, wrong, tampered):
        response = await answer(browser, base, form)
        assert response.status == 403
        assert "Location" not in response.headers
    assert code_rows(server) == 0
    failures = await server.store.list_audit_events(AuditQuery(action="oauth.consent"))
    assert [e.attributes["reason"] for e in failures] == ["CSRF_TOKEN_INVALID"] * 3


async def test_an_expired_consent_form_is_refused(
    server: Server, base: str, browser: aiohttp.ClientSession, dev_authority: DevAuthority
) -> None:
    client_id, _ = await linked_app(server)
    await portal_login(browser, base, dev_authority, "ada@example.com")
    _, page = await consent(browser, base, authorize_params(client_id, pkce().challenge))
    server.clock.advance(server.config.oauth.consent_ttl_s + 1)  # type: ignore[attr-defined]
    response = await answer(browser, base, form_fields(page))
    assert response.status == 403


async def test_unknown_client_or_unregistered_redirect_is_a_page_not_a_redirect(
    server: Server, base: str, browser: aiohttp.ClientSession, dev_authority: DevAuthority
) -> None:
    client_id, _ = await linked_app(server)
    await portal_login(browser, base, dev_authority, "ada@example.com")
    challenge = pkce().challenge
    for params in (
        authorize_params("no-such-client", challenge),
        authorize_params(client_id, challenge, redirect_uri="https://evil.example/cb"),
        authorize_params(client_id, challenge, redirect_uri=""),
        {**authorize_params(client_id, challenge), "client_id": ""},
    ):
        response, page = await consent(browser, base, params)
        assert response.status == 400
        assert "Location" not in response.headers
        assert response.content_type == "text/html"
        assert "evil.example" not in response.headers.get("Content-Security-Policy", "")
        assert "Authorization failed" in page


async def test_request_errors_go_back_to_the_client(
    server: Server, base: str, browser: aiohttp.ClientSession, dev_authority: DevAuthority
) -> None:
    client_id, _ = await linked_app(server)
    await portal_login(browser, base, dev_authority, "ada@example.com")
    challenge = pkce().challenge
    cases = [
        (authorize_params(client_id, challenge, scope="chittyauth:admin"), "invalid_scope"),
        (authorize_params(client_id, "short"), "invalid_request"),
        ({**authorize_params(client_id, challenge), "code_challenge_method": "plain"},
         "invalid_request"),
        ({**authorize_params(client_id, challenge), "response_type": "token"},
         "unsupported_response_type"),
        (authorize_params(client_id, challenge, resource="https://api.example/#frag"),
         "invalid_target"),
    ]  # fmt: skip
    for params, error in cases:
        response, _ = await consent(browser, base, params)
        assert response.status == 302, params
        returned = query_of(response.headers["Location"])
        assert response.headers["Location"].startswith(REDIRECT + "?")
        assert returned["error"] == error
        assert returned["error_description"]
        assert returned["state"] == "st-123"
        assert returned["iss"] == server.config.tokens.issuer


async def test_bad_scope_is_redirected_before_the_user_is_needed(
    server: Server, base: str, browser: aiohttp.ClientSession
) -> None:
    client_id, _ = await linked_app(server)
    params = authorize_params(client_id, pkce().challenge, scope="mcp:read not-allowed")
    response, _ = await consent(browser, base, params)
    assert response.status == 302
    assert query_of(response.headers["Location"])["error"] == "invalid_scope"


async def test_denial_is_access_denied(
    server: Server, base: str, browser: aiohttp.ClientSession, dev_authority: DevAuthority
) -> None:
    client_id, _ = await linked_app(server)
    await portal_login(browser, base, dev_authority, "ada@example.com")
    _, page = await consent(browser, base, authorize_params(client_id, pkce().challenge))
    response = await answer(browser, base, form_fields(page), decision="deny")
    assert response.status == 302
    returned = query_of(response.headers["Location"])
    assert returned["error"] == "access_denied"
    assert returned["state"] == "st-123"
    assert returned["iss"] == server.config.tokens.issuer
    assert "code" not in returned
    assert code_rows(server) == 0


async def test_the_access_header_works_without_a_cookie(
    server: Server, base: str, dev_authority: DevAuthority
) -> None:
    client_id, _ = await linked_app(server)
    pair = pkce()
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as plain:
        headers = {ASSERTION: await dev_authority.mint_assertion("bob@example.com")}
        response, page = await consent(
            plain, base, authorize_params(client_id, pair.challenge), headers=headers
        )
        assert response.status == 200, page
        assert "chittyauth_portal=" in response.headers["Set-Cookie"]
        headers = {ASSERTION: await dev_authority.mint_assertion("bob@example.com")}
        approved = await answer(plain, base, form_fields(page), headers=headers)
    assert approved.status == 302
    assert "code" in query_of(approved.headers["Location"])


async def test_without_a_user_it_is_401_or_the_login_url(
    start: Start, browser: aiohttp.ClientSession, dev_authority: DevAuthority
) -> None:
    server = await start()
    client_id, _ = await linked_app(server)
    params = authorize_params(client_id, pkce().challenge)
    response, page = await consent(browser, base_url(server), params)
    assert response.status == 401
    assert "Sign in" in page
    # A bad assertion is no user either.
    response, _ = await consent(browser, base_url(server), params, headers={ASSERTION: "not-a-jwt"})
    assert response.status == 401

    login = "https://portal.example/login"
    other = await start(login_url=login)
    client_id, _ = await linked_app(other)
    params = authorize_params(client_id, pkce().challenge)
    response, _ = await consent(browser, base_url(other), params)
    assert response.status == 302
    location = response.headers["Location"]
    assert location.startswith(login + "?")
    assert query_of(location)["return_to"].startswith("/authorize?")


async def test_portal_login_needs_an_assertion_and_refuses_cross_origin(
    server: Server, base: str, browser: aiohttp.ClientSession, dev_authority: DevAuthority
) -> None:
    async with browser.post(f"{base}/portal/login") as response:
        assert response.status == 401
    assertion = await dev_authority.mint_assertion("ada@example.com")
    async with browser.post(
        f"{base}/portal/login",
        headers={ASSERTION: assertion, "Origin": "https://evil.example"},
    ) as response:
        assert response.status == 403
    assert not browser.cookie_jar.filter_cookies(URL(base))
    async with browser.post(
        f"{base}/portal/login",
        params={"return_to": "/authorize?client_id=x"},
        headers={ASSERTION: assertion},
        allow_redirects=False,
    ) as response:
        assert response.status == 303
        assert response.headers["Location"] == "/authorize?client_id=x"
    async with browser.post(
        f"{base}/portal/login",
        params={"return_to": "https://evil.example/"},
        headers={ASSERTION: await dev_authority.mint_assertion("ada@example.com")},
        allow_redirects=False,
    ) as response:
        assert response.status == 200
        assert "Location" not in response.headers


def test_the_cookie_is_secure_except_on_a_loopback_http_issuer() -> None:
    from chittyauth.http.authorize import cookie_is_secure

    assert cookie_is_secure("https://auth.chitty.cc")
    assert cookie_is_secure("http://auth.chitty.cc")  # Secure anyway: never sent over http
    assert not cookie_is_secure("http://127.0.0.1:8080")
    assert not cookie_is_secure("http://localhost:8080")
