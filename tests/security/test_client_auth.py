"""Client authentication: the registered token_endpoint_auth_method is the only one accepted.

Every endpoint that authenticates a client (/token, /introspect, /revoke, gRPC Exchange) asks
one method table (``domain/client_auth.py``). A client registered for ``client_secret_basic``
that sends its secret in the form body is refused, and the other way round; a public client
(``none``) is accepted only where the endpoint allows one.
"""

from __future__ import annotations

import grpc
import httpx
import pytest
from authlib.integrations.base_client import OAuthError
from authlib.integrations.httpx_client import AsyncOAuth2Client
from grpc import aio

from chitty.auth.v1 import auth_service_pb2, auth_service_pb2_grpc
from chittyauth.app import Server
from chittyauth.store.protocol import AuditQuery
from tests.security.conftest import FORM, basic, mint, register

BASIC = "client_secret_basic"
POST = "client_secret_post"


def assert_invalid_client(response: httpx.Response) -> None:
    assert response.status_code == 401, response.text
    assert response.json()["error"] == "invalid_client"
    assert response.headers["WWW-Authenticate"].startswith("Basic ")
    assert response.headers["Cache-Control"] == "no-store"


async def test_post_credentials_for_a_basic_client_are_refused_at_token(
    server: Server, base: str
) -> None:
    client = await register(server, method=BASIC)
    async with AsyncOAuth2Client(
        client.client_id, client.secret, scope="mcp:read", token_endpoint_auth_method=POST
    ) as oauth:
        with pytest.raises(OAuthError) as caught:
            await oauth.fetch_token(f"{base}/token", grant_type="client_credentials")
    assert caught.value.error == "invalid_client"

    async with httpx.AsyncClient() as http:
        response = await http.post(
            f"{base}/token",
            data={
                "grant_type": "client_credentials",
                "client_id": client.client_id,
                "client_secret": client.secret,
            },
        )
    assert_invalid_client(response)
    failures = await server.store.list_audit_events(
        AuditQuery(action="token.client_credentials", limit=10)
    )
    assert [event.outcome for event in failures] == ["failure", "failure"]


async def test_basic_credentials_for_a_post_client_are_refused_at_token(
    server: Server, base: str
) -> None:
    client = await register(server, method=POST)
    async with AsyncOAuth2Client(
        client.client_id, client.secret, scope="mcp:read", token_endpoint_auth_method=BASIC
    ) as oauth:
        with pytest.raises(OAuthError) as caught:
            await oauth.fetch_token(f"{base}/token", grant_type="client_credentials")
    assert caught.value.error == "invalid_client"


@pytest.mark.parametrize("method", [BASIC, POST])
async def test_the_registered_method_is_accepted(server: Server, base: str, method: str) -> None:
    client = await register(server, method=method)
    async with AsyncOAuth2Client(
        client.client_id,
        client.secret,
        scope="mcp:read",
        token_endpoint_auth_method=method,
        # Authlib's setting for /introspect and /revoke (it defaults to Basic).
        revocation_endpoint_auth_method=method,
    ) as oauth:
        token = await oauth.fetch_token(f"{base}/token", grant_type="client_credentials")
        assert token["scope"] == "mcp:read"
        # Its own token: introspection and revocation accept the same method.
        response = await oauth.introspect_token(f"{base}/introspect", token=token["access_token"])
        assert response.json()["active"] is True
        response = await oauth.revoke_token(f"{base}/revoke", token=token["access_token"])
        assert response.status_code == 200
    assert not server.tokens.validate(token["access_token"]).active


async def test_a_wrong_method_is_refused_at_introspect_and_revoke(
    server: Server, base: str
) -> None:
    client = await register(server, method=BASIC)
    token = await mint(server, client_id=client.client_id, token_use="service")
    form = {"token": token, "client_id": client.client_id, "client_secret": client.secret}
    async with httpx.AsyncClient() as http:
        assert_invalid_client(await http.post(f"{base}/introspect", data=form))
        assert_invalid_client(await http.post(f"{base}/revoke", data=form))
    # Nothing was revoked by the refused call.
    assert server.tokens.validate(token).active


async def test_a_public_client_may_not_introspect(server: Server, base: str) -> None:
    public = await register(server, kind="linked_app", confidential=False)
    token = await mint(server, client_id=public.client_id)
    async with httpx.AsyncClient() as http:
        response = await http.post(
            f"{base}/introspect", data={"token": token, "client_id": public.client_id}
        )
    assert_invalid_client(response)


async def test_a_public_client_revokes_its_own_token_with_its_id_alone(
    server: Server, base: str
) -> None:
    public = await register(server, kind="linked_app", confidential=False)
    token = await mint(server, client_id=public.client_id)
    async with httpx.AsyncClient() as http:
        response = await http.post(
            f"{base}/revoke", data={"token": token, "client_id": public.client_id}
        )
    assert response.status_code == 200
    assert not server.tokens.validate(token).active


async def test_a_confidential_client_must_prove_its_secret(server: Server, base: str) -> None:
    confidential = await register(server, kind="linked_app", method=POST)
    token = await mint(server, client_id=confidential.client_id)
    async with httpx.AsyncClient() as http:
        # Its id alone is the "none" method, which it did not register.
        response = await http.post(
            f"{base}/revoke", data={"token": token, "client_id": confidential.client_id}
        )
        assert_invalid_client(response)
        response = await http.post(
            f"{base}/token",
            data={
                "grant_type": "refresh_token",
                "refresh_token": "rt_x",
                "client_id": confidential.client_id,
            },
        )
        assert_invalid_client(response)
    assert server.tokens.validate(token).active


async def test_a_public_client_cannot_use_client_credentials(server: Server, base: str) -> None:
    public = await register(server, kind="linked_app", confidential=False)
    async with httpx.AsyncClient() as http:
        response = await http.post(
            f"{base}/token",
            data={"grant_type": "client_credentials", "client_id": public.client_id},
            headers={"Content-Type": FORM},
        )
    assert_invalid_client(response)


async def test_grpc_exchange_carries_the_secret_in_the_message(
    server: Server, channel: aio.Channel
) -> None:
    # gRPC has one way to carry a secret (the request), so either secret method is accepted
    # there; a wrong secret is still refused.
    stub = auth_service_pb2_grpc.AuthServiceStub(channel)
    for method in (BASIC, POST):
        client = await register(server, method=method)
        reply = await stub.Exchange(
            auth_service_pb2.ExchangeRequest(
                client_id=client.client_id,
                client_secret=client.secret,
                client_credentials=auth_service_pb2.ClientCredentialsGrant(),
            )
        )
        assert reply.access_token
        with pytest.raises(aio.AioRpcError) as caught:
            await stub.Exchange(
                auth_service_pb2.ExchangeRequest(
                    client_id=client.client_id,
                    client_secret="cs_wrong",
                    client_credentials=auth_service_pb2.ClientCredentialsGrant(),
                )
            )
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_basic_with_a_contradicting_client_id_is_refused(server: Server, base: str) -> None:
    client = await register(server, method=BASIC)
    other = await register(server, method=BASIC)
    async with httpx.AsyncClient() as http:
        response = await http.post(
            f"{base}/token",
            data={"grant_type": "client_credentials", "client_id": other.client_id},
            headers={"Authorization": basic(client.client_id, client.secret)},
        )
    assert_invalid_client(response)
