"""The edge of the shim: body limit, content types, request ids, methods and CORS."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import aiohttp
import pytest

from chittyauth.config import Config, HttpConfig, replace
from tests.http_server.conftest import FORM

ORIGIN = "https://portal.chitty.example"
LIMIT = 2048


@pytest.fixture
def config(config: Config) -> Config:
    return replace(config, http=HttpConfig(port=0, max_body_bytes=LIMIT, cors_origins=(ORIGIN,)))


async def chunked(total: int) -> AsyncIterator[bytes]:
    """A body without Content-Length: the limit applies while it is read."""
    for _ in range(total // 512):
        yield b"a" * 512


@pytest.mark.parametrize(
    ("path", "content_type", "shape"),
    [
        ("/token", FORM, "oauth"),
        ("/introspect", FORM, "oauth"),
        ("/revoke", FORM, "oauth"),
        ("/v1/tokens/validate", "application/json", "legacy"),
        ("/v1/api-keys/validate", "application/json", "legacy"),
        ("/v1/tokens:validate", "application/json", "status"),
    ],
)
@pytest.mark.parametrize("sized", [True, False], ids=["content-length", "chunked"])
async def test_a_body_over_the_limit_is_413_everywhere(
    http: aiohttp.ClientSession, base: str, path: str, content_type: str, shape: str, sized: bool
) -> None:
    data: bytes | AsyncIterator[bytes] = b"a" * (LIMIT + 1) if sized else chunked(LIMIT * 2)
    async with http.post(
        f"{base}{path}", data=data, headers={"Content-Type": content_type}
    ) as response:
        assert response.status == 413
        body = await response.json()
        assert response.headers["X-Request-Id"]
    if shape == "oauth":
        assert body["error"] == "invalid_request"
        assert response.headers["Cache-Control"] == "no-store"
    elif shape == "legacy":
        assert (body["valid"], body["reason"]) == (False, "PAYLOAD_TOO_LARGE")
    else:
        assert body["details"][0]["reason"] == "PAYLOAD_TOO_LARGE"


async def test_a_large_content_length_is_refused_on_a_get_route(
    http: aiohttp.ClientSession, base: str
) -> None:
    async with http.request("GET", f"{base}/healthz", data=b"x" * (LIMIT + 1)) as response:
        assert response.status == 413
        assert (await response.json())["details"][0]["reason"] == "PAYLOAD_TOO_LARGE"


@pytest.mark.parametrize(
    ("path", "content_type", "data"),
    [
        ("/v1/tokens/validate", "text/plain", b'{"token": "x"}'),
        ("/v1/tokens/validate", "application/json; charset=latin-1", b"{}"),
        ("/introspect", "application/json", b'{"token": "x"}'),
        ("/revoke", "multipart/form-data; boundary=x", b"--x--"),
    ],
)
async def test_wrong_content_type_is_415(
    http: aiohttp.ClientSession, base: str, path: str, content_type: str, data: bytes
) -> None:
    async with http.post(
        f"{base}{path}", data=data, headers={"Content-Type": content_type}
    ) as response:
        assert response.status == 415
        body = await response.json()
    if path.startswith("/v1/"):
        assert (body["valid"], body["reason"]) == (False, "UNSUPPORTED_MEDIA_TYPE")
    else:
        assert body["error"] == "invalid_request"
        assert "application/x-www-form-urlencoded" in body["error_description"]


async def test_request_id_is_echoed_or_generated(http: aiohttp.ClientSession, base: str) -> None:
    for path in ("/healthz", "/metrics", "/jwks.json", "/health", "/v1/jwks"):
        async with http.get(f"{base}{path}", headers={"X-Request-Id": "abc-123"}) as response:
            assert response.status == 200, path
            assert response.headers["X-Request-Id"] == "abc-123"
        async with http.get(f"{base}{path}") as response:
            first = response.headers["X-Request-Id"]
        async with http.get(f"{base}{path}") as response:
            second = response.headers["X-Request-Id"]
        assert first
        assert second != first
    # An unusable id (too long) is replaced, never echoed.
    async with http.get(f"{base}/healthz", headers={"X-Request-Id": "x" * 500}) as response:
        assert len(response.headers["X-Request-Id"]) <= 128


async def test_wrong_method_is_405_with_allow(http: aiohttp.ClientSession, base: str) -> None:
    async with http.delete(f"{base}/healthz") as response:
        assert response.status == 405
        assert response.headers["Allow"] == "GET, HEAD"
        body = await response.json()
    assert body["details"][0]["reason"] == "METHOD_NOT_ALLOWED"
    async with http.get(f"{base}/v1/tokens/validate") as response:
        assert response.status == 405
        assert (await response.json())["valid"] is False


async def test_cors_only_for_configured_origins(http: aiohttp.ClientSession, base: str) -> None:
    async with http.get(f"{base}/jwks.json", headers={"Origin": ORIGIN}) as response:
        assert response.headers["Access-Control-Allow-Origin"] == ORIGIN
        assert "Access-Control-Allow-Credentials" not in response.headers
        assert "X-Request-Id" in response.headers["Access-Control-Expose-Headers"]
    async with http.get(f"{base}/jwks.json", headers={"Origin": "https://evil.example"}) as resp:
        assert "Access-Control-Allow-Origin" not in resp.headers
    preflight = {"Origin": ORIGIN, "Access-Control-Request-Method": "POST"}
    async with http.options(f"{base}/token", headers=preflight) as response:
        assert response.status == 204
        assert response.headers["Access-Control-Allow-Origin"] == ORIGIN
        assert "POST" in response.headers["Access-Control-Allow-Methods"]
        assert "authorization" in response.headers["Access-Control-Allow-Headers"]
    evil = {**preflight, "Origin": "https://evil.example"}
    async with http.options(f"{base}/token", headers=evil) as response:
        assert "Access-Control-Allow-Origin" not in response.headers
    # Transcoded routes: one header, not two.
    async with http.post(
        f"{base}/v1/tokens:validate", json={"token": "x"}, headers={"Origin": ORIGIN}
    ) as response:
        assert response.headers.getall("Access-Control-Allow-Origin") == [ORIGIN]


@pytest.mark.parametrize(
    "data",
    [b"{not json", b"[1, 2]", b'{"token": 5}', b'{"token": ""}', b"{}", b"\xff\xfe"],
    ids=["bad-json", "not-object", "wrong-type", "empty", "missing", "not-utf8"],
)
async def test_malformed_legacy_bodies_are_400(
    http: aiohttp.ClientSession, base: str, data: bytes
) -> None:
    async with http.post(
        f"{base}/v1/tokens/validate", data=data, headers={"Content-Type": "application/json"}
    ) as response:
        assert response.status == 400
        body = await response.json()
    assert body["valid"] is False
    assert body["reason"] in ("MALFORMED_JSON", "MISSING_FIELD")
    assert json.dumps(body)  # a plain JSON answer, never a 500 page
