"""A real OAuth client nobody here wrote (Authlib) against the token, introspection and
revocation endpoints of a started server."""

from __future__ import annotations

import pytest
from authlib.integrations.base_client import OAuthError
from authlib.integrations.httpx_client import AsyncOAuth2Client
from grpc import aio

from chitty.auth.v1 import client_pb2
from chittyauth.app import Server
from tests.http_server.conftest import RegisteredClient, audit_events, register_client

_REGISTERED = {
    "client_secret_basic": client_pb2.TOKEN_ENDPOINT_AUTH_METHOD_CLIENT_SECRET_BASIC,
    "client_secret_post": client_pb2.TOKEN_ENDPOINT_AUTH_METHOD_CLIENT_SECRET_POST,
}


@pytest.mark.parametrize("method", ["client_secret_basic", "client_secret_post"])
async def test_client_credentials_introspection_and_revocation(
    base: str, server: Server, channel: aio.Channel, admin_token: str, method: str
) -> None:
    # A client uses the method it registered (token_endpoint_auth_method), at every endpoint.
    service_client = await register_client(
        channel, admin_token, token_endpoint_auth_method=_REGISTERED[method]
    )
    async with AsyncOAuth2Client(
        service_client.client_id,
        service_client.client_secret,
        scope="mcp:read",
        token_endpoint_auth_method=method,
        revocation_endpoint_auth_method=method,
    ) as oauth:
        token = await oauth.fetch_token(f"{base}/token", grant_type="client_credentials")
        assert token["token_type"] == "Bearer"
        assert token["scope"] == "mcp:read"
        assert token["expires_in"] > 0
        access = token["access_token"]

        response = await oauth.introspect_token(f"{base}/introspect", token=access)
        assert response.status_code == 200
        claims = response.json()
        assert claims["active"] is True
        assert claims["client_id"] == service_client.client_id
        assert claims["scope"] == "mcp:read"

        response = await oauth.revoke_token(
            f"{base}/revoke", token=access, token_type_hint="access_token"
        )
        assert response.status_code == 200

        response = await oauth.introspect_token(f"{base}/introspect", token=access)
        assert response.json() == {"active": False}
    assert not server.tokens.validate(access).active
    [revoked] = await audit_events(server, "token.revoked")
    assert revoked.actor == service_client.client_id


async def test_a_wrong_secret_is_reported_to_the_client(
    base: str, service_client: RegisteredClient
) -> None:
    async with AsyncOAuth2Client(service_client.client_id, "cs_wrong") as oauth:
        with pytest.raises(OAuthError) as caught:
            await oauth.fetch_token(f"{base}/token", grant_type="client_credentials")
    assert caught.value.error == "invalid_client"
