"""Bad HTTP input is a 4xx with a reason, never a 500 or a traceback in the log.

JSON nested past any bound (or past the parser's own recursion limit), NaN literals, and
header bytes that are not UTF-8, on the transcoded, legacy and OAuth routes of a real server:
over real HTTP (httpx), and over a raw TCP socket where the header bytes themselves are the
attack (no client library would send them).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging

import httpx
import pytest

from chittyauth.app import Server
from chittyauth.config import Config, replace
from tests.conftest import running_server


def _tracebacks(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.exc_info is not None or r.levelno >= logging.ERROR]


# -- JSON nested too deeply -------------------------------------------------------------------

DEEP_ARRAY = b"[" * 5_000 + b"]" * 5_000
# Within what the JSON parser itself takes, beyond what any route reads.
DEEP_VALUE = b'{"token": ' + b"[" * 200 + b"]" * 200 + b"}"


def _reason(body: dict) -> str:
    for detail in body.get("details", ()):
        if detail.get("@type", "").endswith("ErrorInfo"):
            return str(detail["reason"])
    return str(body.get("reason", ""))


@pytest.mark.parametrize("body", [DEEP_ARRAY, DEEP_VALUE], ids=["recursion", "deep-value"])
@pytest.mark.parametrize("path", ["/v1/tokens:validate", "/v1/tokens/validate", "/v1/auth/login"])
async def test_deeply_nested_json_is_400_with_a_reason(
    server: Server,
    http: httpx.AsyncClient,
    caplog: pytest.LogCaptureFixture,
    path: str,
    body: bytes,
) -> None:
    reply = await http.post(
        f"http://127.0.0.1:{server.http_port}{path}",
        content=body,
        headers={"Content-Type": "application/json"},
    )
    assert reply.status_code == 400, reply.text
    assert _reason(reply.json()) == "JSON_TOO_DEEP"
    assert _tracebacks(caplog) == []


@pytest.mark.parametrize("body", [DEEP_ARRAY, DEEP_VALUE], ids=["recursion", "deep-value"])
async def test_deeply_nested_registration_is_invalid_client_metadata(
    unlimited: Config, http: httpx.AsyncClient, caplog: pytest.LogCaptureFixture, body: bytes
) -> None:
    config = replace(
        unlimited, oauth=dataclasses.replace(unlimited.oauth, registration_policy="open")
    )
    async with running_server(config) as server:
        reply = await http.post(
            f"http://127.0.0.1:{server.http_port}/register",
            content=body,
            headers={"Content-Type": "application/json"},
        )
    assert reply.status_code == 400, reply.text
    assert reply.json()["error"] == "invalid_client_metadata"  # RFC 7591 §3.2.2
    assert "deeper than" in reply.json()["error_description"]
    assert _tracebacks(caplog) == []


async def test_nan_in_json_is_400(server: Server, http: httpx.AsyncClient) -> None:
    reply = await http.post(
        f"http://127.0.0.1:{server.http_port}/v1/accounts",
        content=b'{"email": "a@example.com", "metadata": {"x": NaN}}',
        headers={"Content-Type": "application/json"},
    )
    assert reply.status_code == 400, reply.text
    assert _reason(reply.json()) == "MALFORMED_JSON"


# -- header bytes -----------------------------------------------------------------------------


async def _raw_http(port: int, request: bytes) -> tuple[int, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    finally:
        writer.close()
        await writer.wait_closed()
    status = int(head.split(b" ", 2)[1])
    return status, head


@pytest.mark.parametrize(
    "header",
    [b"X-Anything: caf\xe9", b"X-Request-Id: \xff\xfe", b"Authorization: Bearer \xc3\x28"],
    ids=["other", "request-id", "authorization"],
)
@pytest.mark.parametrize(
    "target",
    [b"GET /v1/jwks", b"POST /v1/tokens:validate", b"POST /v1/tokens/validate", b"GET /healthz"],
)
async def test_non_utf8_header_byte_is_never_500(
    server: Server, caplog: pytest.LogCaptureFixture, header: bytes, target: bytes
) -> None:
    body = b'{"token": "x"}' if target.startswith(b"POST") else b""
    request = (
        target + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
        b"Content-Type: application/json\r\n" + header + b"\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )
    status, head = await _raw_http(server.http_port, request)
    assert status < 500, head
    assert _tracebacks(caplog) == []


async def test_non_ascii_request_id_is_replaced_not_echoed(server: Server) -> None:
    request = (
        b"GET /v1/jwks HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
        b"X-Request-Id: \xff\xfe\r\n\r\n"
    )
    status, head = await _raw_http(server.http_port, request)
    assert status == 200, head
    request_id = [
        line.split(b":", 1)[1].strip()
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"x-request-id:")
    ]
    assert len(request_id) == 1
    assert request_id[0].isascii()
    assert len(request_id[0]) == 16


def test_json_fixtures_are_what_they_claim() -> None:
    # The deep value is valid JSON the parser reads; the deep array is beyond its recursion.
    assert json.loads(DEEP_VALUE)
    with pytest.raises(RecursionError):
        json.loads(DEEP_ARRAY)


HOSTILE_HEADERS = [
    b"Authorization: Basic \xff\xfe\xfd",
    b"Authorization: Bearer caf\xe9",
    b"Authorization: \xff",
    b"Cf-Access-Jwt-Assertion: ey\xac.\xff",
    b"Cf-Access-Authenticated-User-Email: \xffa@example.com",
    b"X-Forwarded-For: 10.0.0.\xff",
    b"Origin: https://\xffexample.com",
    b"Cookie: chittyauth_consent=\xff\xfe",
    b"Content-Type: application/json; charset=\xff",
    b"Accept: \xc3\x28",
    b"\xff\xfe: value",
]

EVERY_KIND_OF_ROUTE = [
    b"GET /healthz",
    b"GET /jwks.json",
    b"GET /.well-known/oauth-authorization-server",
    b"POST /token",
    b"POST /introspect",
    b"POST /revoke",
    b"GET /authorize?client_id=x",
    b"POST /portal/login",
    b"POST /register",
    b"POST /v1/tokens/validate",
    b"POST /v1/auth/login",
    b"GET /v1/authorizations/chitty-1",
    b"POST /v1/tokens:validate",
    b"GET /v1/jwks",
    b"GET /v1/revocations:watch",
    b"OPTIONS /v1/tokens:validate",
    b"DELETE /token",
]


@pytest.mark.parametrize("header", HOSTILE_HEADERS)
async def test_hostile_header_bytes_on_every_kind_of_route_are_never_500(
    unlimited: Config, caplog: pytest.LogCaptureFixture, header: bytes
) -> None:
    # Behind a trusted proxy, so X-Forwarded-For is read too.
    config = replace(
        unlimited, http=dataclasses.replace(unlimited.http, trusted_proxies=("127.0.0.1",))
    )
    async with running_server(config) as server:
        for target in EVERY_KIND_OF_ROUTE:
            body = b'{"token": "x"}' if target.startswith(b"POST") else b""
            request = (
                target + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n" + header + b"\r\n"
                b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
            )
            status, head = await _raw_http(server.http_port, request)
            assert status < 500, (target, head)
    assert _tracebacks(caplog) == []
