"""Rate limits per operation, per client and per TRUE source address, on every transport.

/token (every grant), /introspect, /revoke and /register are limited as the gRPC operations
are; a refusal is 429 with ``Retry-After`` over HTTP and RESOURCE_EXHAUSTED over gRPC. The
address is the caller's own: ``X-Forwarded-For`` counts only from a configured trusted proxy,
and the HTTP shim hands gRPC the address of the HTTP caller in metadata that a direct gRPC
caller cannot forge (an outside caller's copy of those keys is ignored).
"""

from __future__ import annotations

import dataclasses
import secrets
from collections.abc import AsyncIterator

import grpc
import httpx
import pytest
from grpc import aio

from chitty.auth.v1 import auth_service_pb2, auth_service_pb2_grpc
from chittyauth.app import Server
from chittyauth.config import Config, ConfigError, load_config, replace
from chittyauth.domain import policy, ratelimit
from chittyauth.rpc.forwarded import PEER_KEY, PROOF_KEY
from tests.conftest import running_server
from tests.security.conftest import base_url, mint, register, trusting, with_limits

LIMIT = 3
PROXY = "127.0.0.1/32"
# Documentation addresses (RFC 5737): only ever header values, never contacted.
ALICE = "203.0.113.7"
BOB = "203.0.113.8"


def limited(config: Config) -> Config:
    return with_limits(
        config,
        exchange_per_minute=LIMIT,
        introspect_per_minute=LIMIT,
        revoke_per_minute=LIMIT,
        register_per_minute=LIMIT,
    )


@pytest.fixture
async def server(config: Config) -> AsyncIterator[Server]:
    async with running_server(trusting(limited(config), PROXY)) as srv:
        yield srv


@pytest.fixture
def base(server: Server) -> str:
    return base_url(server)


def assert_limited(response: httpx.Response) -> None:
    assert response.status_code == 429, response.text
    assert int(response.headers["Retry-After"]) >= 1


def token_form(client_id: str) -> dict[str, str]:
    return {"grant_type": "client_credentials", "client_id": client_id, "client_secret": "cs_x"}


def stranger() -> str:
    """A client id nobody registered: its own bucket is always full."""
    return "cli_" + secrets.token_hex(6)


async def test_a_token_flood_is_refused_with_retry_after(server: Server, base: str) -> None:
    client = await register(server)
    form = {"grant_type": "client_credentials", "scope": "mcp:read"}
    auth = httpx.BasicAuth(client.client_id, client.secret)
    async with httpx.AsyncClient() as http:
        for _ in range(LIMIT):
            response = await http.post(f"{base}/token", data=form, auth=auth)
            assert response.status_code == 200, response.text
        response = await http.post(f"{base}/token", data=form, auth=auth)
    assert_limited(response)
    assert response.json()["error"] == "slow_down"
    assert response.headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize(
    "grant",
    ["authorization_code", "refresh_token", "urn:ietf:params:oauth:grant-type:token-exchange"],
)
async def test_every_grant_at_token_is_limited(server: Server, base: str, grant: str) -> None:
    async with httpx.AsyncClient() as http:
        for _ in range(LIMIT):
            response = await http.post(
                f"{base}/token", data={"grant_type": grant, "client_id": stranger()}
            )
            assert response.status_code in (400, 401), response.text
        response = await http.post(
            f"{base}/token", data={"grant_type": grant, "client_id": stranger()}
        )
    assert_limited(response)


async def test_one_client_is_limited_from_any_address(server: Server, base: str) -> None:
    async with httpx.AsyncClient() as http:
        for index in range(LIMIT):
            response = await http.post(
                f"{base}/token",
                data=token_form("cli_guessed"),
                headers={"X-Forwarded-For": f"198.51.100.{index + 1}"},
            )
            assert response.status_code == 401
        response = await http.post(
            f"{base}/token",
            data=token_form("cli_guessed"),
            headers={"X-Forwarded-For": "198.51.100.99"},
        )
    assert_limited(response)


async def test_forwarded_addresses_get_their_own_buckets_at_token(
    server: Server, base: str
) -> None:
    async with httpx.AsyncClient() as http:
        for _ in range(LIMIT):
            response = await http.post(
                f"{base}/token", data=token_form(stranger()), headers={"X-Forwarded-For": ALICE}
            )
            assert response.status_code == 401
        response = await http.post(
            f"{base}/token", data=token_form(stranger()), headers={"X-Forwarded-For": ALICE}
        )
        assert_limited(response)
        # Bob is someone else, even though the same proxy (127.0.0.1) brings him.
        response = await http.post(
            f"{base}/token", data=token_form(stranger()), headers={"X-Forwarded-For": BOB}
        )
        assert response.status_code == 401
        # A spoofed left-most entry does not make Alice someone new: the right-most address
        # the trusted proxy appended is the one that counts.
        response = await http.post(
            f"{base}/token",
            data=token_form(stranger()),
            headers={"X-Forwarded-For": f"192.0.2.1, {ALICE}"},
        )
        assert_limited(response)


async def test_forwarded_addresses_reach_grpc_through_the_shim(server: Server, base: str) -> None:
    async with httpx.AsyncClient() as http:

        async def exchange(address: str) -> httpx.Response:
            # The transcoded gRPC Exchange (google.api.http), not the RFC /token endpoint.
            return await http.post(
                f"{base}/v1/tokens:exchange",
                json={"client_id": stranger(), "client_secret": "cs_x", "client_credentials": {}},
                headers={"X-Forwarded-For": address},
            )

        for _ in range(LIMIT):
            response = await exchange(ALICE)
            assert response.status_code == 401, response.text
        assert_limited(await exchange(ALICE))
        response = await exchange(BOB)
        assert response.status_code == 401, response.text


async def test_forwarded_for_is_ignored_without_a_trusted_proxy(config: Config) -> None:
    async with running_server(limited(config)) as server, httpx.AsyncClient() as http:
        base = base_url(server)
        for index in range(LIMIT):
            response = await http.post(
                f"{base}/token",
                data=token_form(stranger()),
                headers={"X-Forwarded-For": f"198.51.100.{index + 1}"},
            )
            assert response.status_code == 401
        response = await http.post(
            f"{base}/token", data=token_form(stranger()), headers={"X-Forwarded-For": BOB}
        )
        assert_limited(response)


async def test_forged_peer_metadata_is_ignored_on_direct_grpc(
    server: Server, channel: aio.Channel
) -> None:
    stub = auth_service_pb2_grpc.AuthServiceStub(channel)

    async def exchange(forged_address: str) -> None:
        await stub.Exchange(
            auth_service_pb2.ExchangeRequest(
                client_id=stranger(),
                client_secret="cs_x",
                client_credentials=auth_service_pb2.ClientCredentialsGrant(),
            ),
            metadata=((PEER_KEY, forged_address), (PROOF_KEY, secrets.token_urlsafe(32))),
        )

    for index in range(LIMIT):
        with pytest.raises(aio.AioRpcError) as caught:
            await exchange(f"198.51.100.{index + 1}")
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(aio.AioRpcError) as caught:
        await exchange("198.51.100.99")
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


async def test_forged_peer_headers_are_not_forwarded_by_the_shim(config: Config) -> None:
    # Even an operator who lists the keys among the forwarded headers cannot open that door.
    http_config = dataclasses.replace(
        config.http, forwarded_headers=(*config.http.forwarded_headers, PEER_KEY, PROOF_KEY)
    )
    async with running_server(replace(limited(config), http=http_config)) as server:
        base = base_url(server)
        async with httpx.AsyncClient() as http:
            statuses = []
            for index in range(LIMIT + 1):
                response = await http.post(
                    f"{base}/v1/tokens:exchange",
                    json={"client_id": stranger(), "client_secret": "x", "client_credentials": {}},
                    headers={PEER_KEY: f"198.51.100.{index + 1}", PROOF_KEY: "guess"},
                )
                statuses.append(response.status_code)
    assert statuses == [401] * LIMIT + [429]


async def test_introspection_and_revocation_floods_are_refused(server: Server, base: str) -> None:
    client = await register(server)
    token = await mint(server, client_id=client.client_id, token_use="service")
    auth = httpx.BasicAuth(client.client_id, client.secret)
    async with httpx.AsyncClient() as http:
        for path in ("/introspect", "/revoke"):
            for _ in range(LIMIT):
                response = await http.post(f"{base}{path}", data={"token": "x"}, auth=auth)
                assert response.status_code == 200, response.text
            assert_limited(await http.post(f"{base}{path}", data={"token": token}, auth=auth))
    # The refused revocation changed nothing.
    assert server.tokens.validate(token).active


async def test_registration_flood_is_refused(server: Server, base: str) -> None:
    async with httpx.AsyncClient() as http:
        statuses = []
        for _ in range(LIMIT + 1):
            response = await http.post(f"{base}/register", json={"client_name": "x"})
            statuses.append(response.status_code)
    assert statuses[:LIMIT] == [401] * LIMIT
    assert statuses[LIMIT] == 429


def test_every_policy_bucket_is_an_operation_the_limiter_knows() -> None:
    buckets = {rule.bucket for rule in policy.POLICY.values() if rule.bucket}
    buckets |= {rule.bucket for rule in policy.HTTP_ROUTES.values() if rule.bucket}
    assert buckets <= set(ratelimit.OPERATIONS)
    for route in ("POST /token", "POST /introspect", "POST /revoke", "POST /register"):
        assert policy.http_rule(route).bucket


@pytest.mark.parametrize(
    ("direct", "forwarded", "expected"),
    [
        # No trusted peer: the header is the caller's own words.
        ("198.51.100.5", ["203.0.113.7"], "198.51.100.5"),
        # A trusted proxy: the right-most address it appended.
        ("127.0.0.1", ["192.0.2.1, 203.0.113.7"], "203.0.113.7"),
        # Two trusted hops, then the caller; the left-most entry is ignored.
        ("127.0.0.1", ["192.0.2.1, 203.0.113.7", "10.1.2.3"], "203.0.113.7"),
        # An unparsable entry stops the walk at the last hop that could vouch for it.
        ("127.0.0.1", ["203.0.113.7, not-an-ip"], "127.0.0.1"),
        # Every hop trusted: the left-most one is all there is.
        ("127.0.0.1", ["10.0.0.9"], "10.0.0.9"),
        # IPv6, and an IPv4 peer reported by a dual-stack listener.
        ("::ffff:127.0.0.1", ["2001:db8::7"], "2001:db8::7"),
    ],
)
def test_the_true_source_address(direct: str, forwarded: list[str], expected: str) -> None:
    trusted = ratelimit.trusted_networks(["127.0.0.1/32", "10.0.0.0/8"])
    assert ratelimit.source_address(direct, forwarded, trusted) == expected


def test_a_bad_trusted_proxy_stops_start_up() -> None:
    with pytest.raises(ConfigError, match=r"http\.trusted_proxies"):
        load_config(env={"CHITTYAUTH_HTTP__TRUSTED_PROXIES": "127.0.0.1/32,proxy.example"})
    config = load_config(env={"CHITTYAUTH_HTTP__TRUSTED_PROXIES": "127.0.0.1/32, 10.0.0.0/8"})
    assert config.http.trusted_proxies == ("127.0.0.1/32", "10.0.0.0/8")
