"""Authlib's OAuth 2 client runs the authorization code flow with PKCE through the consent
page, then refreshes — against the real server, with the person signed in by the portal."""

from __future__ import annotations

import aiohttp
from authlib.common.security import generate_token
from authlib.integrations.httpx_client import AsyncOAuth2Client

from chittyauth.app import Server
from tests.http_oauth.conftest import (
    REDIRECT,
    answer,
    form_fields,
    linked_app,
    portal_login,
    query_of,
)
from tests.support.devauthority import DevAuthority


async def test_authlib_code_flow_with_pkce_then_refresh(
    server: Server, base: str, browser: aiohttp.ClientSession, dev_authority: DevAuthority
) -> None:
    client_id, secret = await linked_app(server, name="Authlib App", confidential=True)
    login = await portal_login(browser, base, dev_authority, "grace@example.com")
    verifier = generate_token(48)
    async with AsyncOAuth2Client(
        client_id,
        secret,
        scope="mcp:read",
        redirect_uri=REDIRECT,
        code_challenge_method="S256",
        token_endpoint_auth_method="client_secret_basic",
    ) as oauth:
        url, state = oauth.create_authorization_url(f"{base}/authorize", code_verifier=verifier)
        # The person's browser (with the portal cookie) sees the consent page and approves.
        async with browser.get(url, allow_redirects=False) as response:
            assert response.status == 200
            page = await response.text()
        approved = await answer(browser, base, form_fields(page))
        assert approved.status == 302
        location = approved.headers["Location"]
        returned = query_of(location)
        assert returned["state"] == state
        assert returned["iss"] == server.config.tokens.issuer

        token = await oauth.fetch_token(
            f"{base}/token", authorization_response=location, code_verifier=verifier
        )
        assert token["token_type"].lower() == "bearer"
        assert token["scope"] == "mcp:read"
        first = server.tokens.validate(token["access_token"])
        assert first.active
        assert first.claims["sub"] == login["chitty_id"]

        refreshed = await oauth.refresh_token(f"{base}/token", refresh_token=token["refresh_token"])
        assert refreshed["access_token"] != token["access_token"]
        assert refreshed["refresh_token"] != token["refresh_token"]
        assert server.tokens.validate(refreshed["access_token"]).active
