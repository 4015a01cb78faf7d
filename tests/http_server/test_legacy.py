"""The historical routes keep their shapes and statuses over the new domain."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import aiohttp
import jwt
import pytest
from google.protobuf import timestamp_pb2
from grpc import aio

import chittyauth
from chitty.auth.v1 import (
    api_key_service_pb2,
    api_key_service_pb2_grpc,
    auth_service_pb2,
    auth_service_pb2_grpc,
)
from chittyauth.app import Server
from chittyauth.clock import FakeClock
from chittyauth.config import Config
from tests.conftest import bearer

Mint = Callable[..., Awaitable[str]]
PERSON = "AB-C-PEO-1234-P-56-H-7"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(time.time())


@pytest.fixture
async def server(config: Config, clock: FakeClock) -> AsyncIterator[Server]:
    srv = Server(config, clock=clock)
    await srv.start()
    try:
        yield srv
    finally:
        await srv.stop(grace=0.5)


def rfc3339(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


async def post_json(
    http: aiohttp.ClientSession, url: str, payload: dict[str, Any]
) -> tuple[int, dict[str, Any]]:
    async with http.post(url, json=payload) as response:
        return response.status, await response.json()


async def create_api_key(channel: aio.Channel, token_for: Mint, **fields: Any) -> str:
    owner = await token_for(
        subject=PERSON, chitty_id=PERSON, token_use="portal", scopes=("api_keys:generate",)
    )
    stub = api_key_service_pb2_grpc.ApiKeyServiceStub(channel)
    reply = await stub.CreateApiKey(
        api_key_service_pb2.CreateApiKeyRequest(display_name="laptop", **fields),
        metadata=bearer(owner),
    )
    key: str = reply.key
    return key


async def test_a_valid_token(http: aiohttp.ClientSession, base: str, token_for: Mint) -> None:
    token = await token_for(
        subject=PERSON, chitty_id=PERSON, token_use="portal", scopes=("mcp:read",)
    )
    claims = jwt.decode(token, options={"verify_signature": False})
    status, body = await post_json(http, f"{base}/v1/tokens/validate", {"token": token})
    assert status == 200
    assert body == {
        "valid": True,
        "chitty_id": PERSON,
        "issued_at": rfc3339(claims["iat"]),
        "expires_at": rfc3339(claims["exp"]),
    }


async def test_a_machine_token_names_its_subject(
    http: aiohttp.ClientSession, base: str, token_for: Mint
) -> None:
    token = await token_for(subject="reports-service", scopes=("mcp:read",))
    status, body = await post_json(http, f"{base}/v1/tokens/validate", {"token": token})
    assert (status, body["chitty_id"]) == (200, "reports-service")


async def test_invalid_tokens_are_401_with_a_reason(
    http: aiohttp.ClientSession,
    base: str,
    server: Server,
    channel: aio.Channel,
    clock: FakeClock,
    token_for: Mint,
) -> None:
    url = f"{base}/v1/tokens/validate"
    status, body = await post_json(http, url, {"token": "not.a.jwt"})
    assert (status, body["valid"], body["reason"]) == (401, False, "MALFORMED")
    assert body["error"]

    revoked = await token_for(subject="svc")
    await auth_service_pb2_grpc.AuthServiceStub(channel).Revoke(
        auth_service_pb2.RevokeRequest(token=revoked), metadata=bearer(revoked)
    )
    status, body = await post_json(http, url, {"token": revoked})
    assert (status, body["reason"]) == (401, "REVOKED")

    api_key = await create_api_key(channel, token_for)
    status, body = await post_json(http, url, {"token": api_key})
    assert (status, body["reason"]) == (401, "WRONG_TOKEN_USE")

    expiring = await token_for(subject="svc")
    clock.advance(server.config.tokens.service_ttl_s + server.config.tokens.leeway_s + 1)
    status, body = await post_json(http, url, {"token": expiring})
    assert (status, body["valid"], body["reason"]) == (401, False, "EXPIRED")
    assert set(body) == {"valid", "error", "reason"}


async def test_a_valid_api_key(
    http: aiohttp.ClientSession, base: str, channel: aio.Channel, clock: FakeClock, token_for: Mint
) -> None:
    forever = await create_api_key(channel, token_for)
    status, body = await post_json(http, f"{base}/v1/api-keys/validate", {"api_key": forever})
    assert status == 200
    assert body == {"valid": True, "chitty_id": PERSON, "scopes": ["read"], "expires_at": None}

    ends = int(clock.now()) + 3600
    dated = await create_api_key(
        channel, token_for, expire_time=timestamp_pb2.Timestamp(seconds=ends)
    )
    status, body = await post_json(http, f"{base}/v1/api-keys/validate", {"api_key": dated})
    assert (status, body["expires_at"]) == (200, rfc3339(ends))
    clock.advance(3601)
    status, body = await post_json(http, f"{base}/v1/api-keys/validate", {"api_key": dated})
    assert (status, body["valid"], body["reason"]) == (401, False, "EXPIRED")


async def test_api_key_route_refuses_other_credentials(
    http: aiohttp.ClientSession, base: str, token_for: Mint
) -> None:
    url = f"{base}/v1/api-keys/validate"
    token = await token_for(subject="svc")
    for candidate in (token, "sk_live_" + "A" * 43):
        status, body = await post_json(http, url, {"api_key": candidate})
        assert (status, body["valid"], body["reason"]) == (401, False, "UNKNOWN_CREDENTIAL")
    status, body = await post_json(http, url, {"token": token})
    assert (status, body["reason"]) == (400, "MISSING_FIELD")


async def test_health(http: aiohttp.ClientSession, base: str, server: Server) -> None:
    async with http.get(f"{base}/health") as response:
        assert response.status == 200
        assert await response.json() == {
            "status": "healthy",
            "service": "chittyauth",
            "version": chittyauth.__version__,
        }
    await server.set_serving("", False)
    async with http.get(f"{base}/health") as response:
        assert response.status == 503
        assert (await response.json())["status"] == "unhealthy"
