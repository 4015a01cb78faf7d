"""A server with its HTTP shim on a known port (issuer = its base URL) and a real dev authority.

``start`` builds and starts one per call (tests that need other ``[oauth]`` settings pass them);
every server started is stopped at the end of the test.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import html
import re
import secrets
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest

from chittyauth.app import Server
from chittyauth.clock import FakeClock
from chittyauth.config import Config, OAuthConfig, replace
from chittyauth.domain.clients import ClientSpec
from tests.identity_flows.conftest import identity_config
from tests.support.devauthority import DevAuthority

REDIRECT = "https://app.example/callback"
ASSERTION = "Cf-Access-Jwt-Assertion"
_HIDDEN = re.compile(r'<input type="hidden" name="([^"]*)" value="([^"]*)">')

Start = Callable[..., Awaitable[Server]]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def base_url(server: Server) -> str:
    return f"http://127.0.0.1:{server.http_port}"


@pytest.fixture
def clock() -> FakeClock:
    # Wall time: Access assertions from the dev authority carry real timestamps.
    return FakeClock(time.time())


@pytest.fixture
async def start(
    config: Config, dev_authority: DevAuthority, clock: FakeClock
) -> AsyncIterator[Start]:
    started: list[Server] = []

    async def start_server(
        rate_limits: dict[str, Any] | None = None, login_url: str = "", **oauth: Any
    ) -> Server:
        port = free_port()
        cfg = identity_config(config, dev_authority, **(rate_limits or {}))
        cfg = replace(
            cfg,
            http=dataclasses.replace(cfg.http, port=port, login_url=login_url),
            tokens=dataclasses.replace(cfg.tokens, issuer=f"http://127.0.0.1:{port}"),
            oauth=OAuthConfig(**{"registration_policy": "open", **oauth}),
        )
        server = Server(cfg, clock=clock)
        await server.start()
        started.append(server)
        return server

    yield start_server
    for server in started:
        await server.stop(grace=1.0)


@pytest.fixture
async def server(start: Start) -> Server:
    return await start()


@pytest.fixture
def base(server: Server) -> str:
    return base_url(server)


@pytest.fixture
async def browser() -> AsyncIterator[aiohttp.ClientSession]:
    """A client that keeps cookies for 127.0.0.1 (aiohttp refuses IP cookies by default)."""
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        yield session


async def portal_login(
    browser: aiohttp.ClientSession, base: str, authority: DevAuthority, email: str
) -> dict[str, Any]:
    """POST /portal/login with an Access assertion; the browser keeps the cookie."""
    assertion = await authority.mint_assertion(email)
    async with browser.post(f"{base}/portal/login", headers={ASSERTION: assertion}) as response:
        assert response.status == 200, await response.text()
        body: dict[str, Any] = await response.json()
        return body


async def linked_app(
    server: Server,
    *,
    name: str = "Notes App",
    redirect_uris: Sequence[str] = (REDIRECT,),
    scopes: Sequence[str] = ("mcp:read", "mcp:write"),
    confidential: bool = False,
) -> tuple[str, str]:
    """A registered linked app (public unless asked): (client_id, secret or '')."""
    issued = await server.client_admin.create_trusted(
        "test",
        ClientSpec(
            display_name=name,
            kind="linked_app",
            confidential=confidential,
            redirect_uris=tuple(redirect_uris),
            allowed_scopes=tuple(scopes),
        ),
        source="api",
    )
    return issued.client.client_id, issued.secret


@dataclass(frozen=True)
class Pkce:
    verifier: str
    challenge: str


def pkce() -> Pkce:
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return Pkce(verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode())


def authorize_params(
    client_id: str,
    challenge: str,
    *,
    redirect_uri: str = REDIRECT,
    scope: str = "mcp:read",
    state: str = "st-123",
    **extra: str,
) -> dict[str, str]:
    return {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": redirect_uri,
        "scope": scope,
        "state": state,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        **extra,
    }


def form_fields(page: str) -> list[tuple[str, str]]:
    """The hidden fields of the consent form, unescaped."""
    return [(html.unescape(n), html.unescape(v)) for n, v in _HIDDEN.findall(page)]


def query_of(location: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


async def consent(
    browser: aiohttp.ClientSession, base: str, params: dict[str, str], **kwargs: Any
) -> tuple[aiohttp.ClientResponse, str]:
    """GET /authorize: the response and its page."""
    async with browser.get(
        f"{base}/authorize", params=params, allow_redirects=False, **kwargs
    ) as response:
        return response, await response.text()


async def answer(
    browser: aiohttp.ClientSession,
    base: str,
    fields: list[tuple[str, str]],
    decision: str = "approve",
    **kwargs: Any,
) -> aiohttp.ClientResponse:
    """POST the consent form back with ``decision``."""
    async with browser.post(
        f"{base}/authorize",
        data=[*fields, ("decision", decision)],
        allow_redirects=False,
        **kwargs,
    ) as response:
        await response.read()
        return response
