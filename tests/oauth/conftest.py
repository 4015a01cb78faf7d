"""A linked app registered through ClientService, and a signed-in person to authorize it."""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import pytest
from grpc import aio

from chitty.auth.v1 import client_pb2, client_service_pb2, client_service_pb2_grpc
from chittyauth.app import Server
from chittyauth.clock import FakeClock
from chittyauth.config import Config, TokenConfig, replace
from tests.conftest import bearer, running_server, token_minter

USER = "AB-C-PEO-1234-P-56-H-7"
REDIRECT = "https://app.example/callback"
# What a portal login grants by default; the person's token passes on only scopes it holds.
PORTAL_SCOPES = ("mcp:read", "mcp:write", "chittyos:services", "cross_sync")


@dataclass
class App:
    client_id: str
    client_secret: str
    redirect_uri: str


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
    return verifier, challenge.rstrip(b"=").decode()


async def register(
    channel: aio.Channel,
    admin: str,
    *,
    redirect_uris: tuple[str, ...] = (REDIRECT,),
    scopes: tuple[str, ...] = ("mcp:read", "mcp:write", "cross_sync"),
    public: bool = False,
    name: str = "Linked App",
    exchange_audiences: tuple[str, ...] = (),
) -> App:
    stub = client_service_pb2_grpc.ClientServiceStub(channel)
    reply = await stub.CreateClient(
        client_service_pb2.CreateClientRequest(
            client=client_pb2.Client(
                display_name=name,
                kind=client_pb2.CLIENT_KIND_LINKED_APP,
                confidential=not public,
                redirect_uris=redirect_uris,
                allowed_scopes=scopes,
                grant_types=[
                    client_pb2.GRANT_TYPE_AUTHORIZATION_CODE,
                    client_pb2.GRANT_TYPE_REFRESH_TOKEN,
                    client_pb2.GRANT_TYPE_TOKEN_EXCHANGE,
                ],
                token_endpoint_auth_method=(
                    client_pb2.TOKEN_ENDPOINT_AUTH_METHOD_NONE
                    if public
                    else client_pb2.TOKEN_ENDPOINT_AUTH_METHOD_CLIENT_SECRET_BASIC
                ),
                exchange_audiences=exchange_audiences,
            )
        ),
        metadata=bearer(admin),
    )
    return App(reply.client.client_id, reply.client_secret, redirect_uris[0])


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(time.time())


@pytest.fixture
def oauth_config(config: Config) -> Config:
    return replace(config, tokens=TokenConfig(refresh_grace_s=5, code_ttl_s=60))


@pytest.fixture
async def oauth_server(oauth_config: Config, clock: FakeClock) -> AsyncIterator[Server]:
    async with running_server(oauth_config, clock) as srv:
        yield srv


@pytest.fixture
async def oauth_channel(oauth_server: Server) -> AsyncIterator[aio.Channel]:
    async with aio.insecure_channel(oauth_server.grpc_target) as chan:
        yield chan


@pytest.fixture
def mint(oauth_server: Server) -> Callable[..., Awaitable[str]]:
    return token_minter(oauth_server)


@pytest.fixture
async def admin(mint: Callable[..., Awaitable[str]]) -> str:
    return await mint(
        subject="ops", client_id="ops", token_use="service", scopes=("chittyauth:admin",)
    )


@pytest.fixture
async def user_token(mint: Callable[..., Awaitable[str]]) -> str:
    return await mint(
        subject=USER, chitty_id=USER, client_id="chittyauth-portal", token_use="portal",
        scopes=PORTAL_SCOPES, session_id="ses_test",
    )  # fmt: skip


@pytest.fixture
async def app(oauth_channel: aio.Channel, admin: str) -> App:
    return await register(oauth_channel, admin)
