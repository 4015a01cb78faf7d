"""A real started server for the security tests, and helpers to register clients and mint tokens.

Clients are registered through the same ``ClientAdmin`` the ClientService and /register use;
tokens are minted with the server's own token service. Every request goes over real HTTP (httpx,
aiohttp, Authlib) or real gRPC to the server's ephemeral ports.
"""

from __future__ import annotations

import base64
import dataclasses
import urllib.parse
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from chittyauth.app import Server
from chittyauth.config import Config, RateLimitConfig, replace
from chittyauth.domain.clients import ClientSpec
from tests.conftest import running_server

FORM = "application/x-www-form-urlencoded"
REDIRECT = "https://app.example/callback"


@dataclass(frozen=True)
class Client:
    client_id: str
    secret: str


def base_url(server: Server) -> str:
    return f"http://127.0.0.1:{server.http_port}"


def basic(client_id: str, secret: str) -> str:
    """RFC 6749 §2.3.1 Basic credentials (form-encoded, then base64)."""
    raw = f"{urllib.parse.quote_plus(client_id)}:{urllib.parse.quote_plus(secret)}"
    return "Basic " + base64.b64encode(raw.encode()).decode()


async def register(
    server: Server,
    *,
    kind: str = "service",
    confidential: bool = True,
    scopes: Sequence[str] = ("mcp:read",),
    method: str = "",
    grant_types: Sequence[str] = (),
    redirect_uris: Sequence[str] = (),
    name: str = "Security test client",
) -> Client:
    """A client registered through ClientAdmin, as an operator would create it."""
    if kind == "linked_app" and not redirect_uris:
        redirect_uris = (REDIRECT,)
    issued = await server.client_admin.create_trusted(
        "test",
        ClientSpec(
            display_name=name,
            kind=kind,
            confidential=confidential,
            redirect_uris=tuple(redirect_uris),
            allowed_scopes=tuple(scopes),
            grant_types=tuple(grant_types),
            token_endpoint_auth_method=method,
        ),
        source="api",
    )
    return Client(issued.client.client_id, issued.secret)


async def mint(server: Server, **fields: Any) -> str:
    """A real access token from the server's own token service."""
    fields.setdefault("subject", "chitty-person-1")
    fields.setdefault("token_use", "linked_app")
    fields.setdefault("scopes", ("mcp:read",))
    async with server.store.transaction() as tx:
        issued = await server.tokens.issue(tx, **fields)
    return issued.token


def with_limits(config: Config, **limits: Any) -> Config:
    return replace(config, rate_limits=RateLimitConfig(**limits))


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=10.0) as client:
        yield client


@pytest.fixture
def unlimited(config: Config) -> Config:
    """The test config without rate limits (the client-auth and introspection tests)."""
    return with_limits(config, enabled=False)


@pytest.fixture
async def server(unlimited: Config) -> AsyncIterator[Server]:
    async with running_server(unlimited) as srv:
        yield srv


@pytest.fixture
def base(server: Server) -> str:
    return base_url(server)


def trusting(config: Config, *proxies: str) -> Config:
    """``config`` whose HTTP shim believes X-Forwarded-For from ``proxies``."""
    return replace(config, http=dataclasses.replace(config.http, trusted_proxies=proxies))
