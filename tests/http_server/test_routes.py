"""The plain routes of the shim on a started server, and a transcoded route next to gRPC."""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable

import aiohttp
import jwt
from google.protobuf import json_format
from grpc import aio
from prometheus_client.parser import text_string_to_metric_families

import chittyauth
from chitty.auth.v1 import auth_service_pb2, auth_service_pb2_grpc
from chittyauth.app import Server
from chittyauth.http.transcoder import http_rules
from chittyauth.rpc.services import ALL_SERVICES
from tests.http_server.conftest import RegisteredClient, audit_events

Mint = Callable[..., Awaitable[str]]


def sample(text: str, name: str, **labels: str) -> float:
    """The value of one sample of the Prometheus text exposition (0 when absent)."""
    for family in text_string_to_metric_families(text):
        for found in family.samples:
            if found.name == name and all(found.labels.get(k) == v for k, v in labels.items()):
                return float(found.value)
    return 0.0


async def test_readyz_follows_the_overall_health_and_healthz_stays_alive(
    http: aiohttp.ClientSession, base: str, server: Server
) -> None:
    async with http.get(f"{base}/readyz") as response:
        assert response.status == 200
        assert (await response.json())["status"] == "READY"
    await server.set_serving("", False)
    async with http.get(f"{base}/readyz") as response:
        assert response.status == 503
        assert (await response.json())["status"] == "NOT_READY"
    async with http.head(f"{base}/readyz") as response:
        assert response.status == 503
    # Liveness: the process answers, whatever readiness says.
    async with http.get(f"{base}/healthz") as response:
        assert response.status == 200
        assert await response.json() == {"status": "ALIVE"}
    async with http.head(f"{base}/healthz") as response:
        assert response.status == 200


async def test_metrics_count_requests_tokens_and_validations(
    http: aiohttp.ClientSession, base: str, server: Server, service_client: RegisteredClient
) -> None:
    async with http.get(f"{base}/metrics") as response:
        before = await response.text()
    for _ in range(2):
        async with http.get(f"{base}/healthz") as response:
            assert response.status == 200
    credentials = f"{service_client.client_id}:{service_client.client_secret}"
    auth = {"Authorization": "Basic " + base64.b64encode(credentials.encode()).decode()}
    async with http.post(
        f"{base}/token", data={"grant_type": "client_credentials"}, headers=auth
    ) as response:
        token = (await response.json())["access_token"]
    for candidate in (token, "garbage"):
        async with http.post(
            f"{base}/introspect", data={"token": candidate}, headers=auth
        ) as response:
            assert response.status == 200
    # The interceptor's hook, as the gRPC side calls it.
    server.metrics.observe_rpc("/chitty.auth.v1.AuthService/Validate", "OK", 0.002)

    async with http.get(f"{base}/metrics") as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        after = await response.text()
    healthz = {"route": "/healthz", "method": "GET", "status": "200"}
    name = "chittyauth_http_requests_total"
    assert sample(after, name, **healthz) - sample(before, name, **healthz) == 2
    assert sample(after, name, route="/token", method="POST", status="200") == 1
    assert sample(after, "chittyauth_http_request_duration_seconds_count", route="/token") == 1
    assert sample(after, "chittyauth_tokens_issued_total", kind="service") == 1
    assert sample(after, "chittyauth_token_validations_total", result="active") == 1
    assert sample(after, "chittyauth_token_validations_total", result="malformed") == 1
    method = "/chitty.auth.v1.AuthService/Validate"
    assert sample(after, "chittyauth_grpc_requests_total", method=method, code="OK") == 1


async def test_each_server_counts_alone(server: Server) -> None:
    other = type(server.metrics)()
    other.token_issued("service")
    text, _ = server.metrics.render()
    assert sample(text.decode(), "chittyauth_tokens_issued_total", kind="service") == 0


async def test_openapi_lists_every_rpc(http: aiohttp.ClientSession, base: str) -> None:
    async with http.get(f"{base}/openapi.json") as response:
        assert response.status == 200
        document = await response.json()
    assert document["openapi"].startswith("3.1")
    assert document["info"]["version"] == chittyauth.__version__
    served = {
        operation["x-grpc-method"]
        for item in document["paths"].values()
        for operation in item.values()
    }
    expected = {
        f"/{spec.full_name}/{method.name}"
        for spec in ALL_SERVICES
        for method in spec.descriptor.methods
        if http_rules(method)
    }
    every = {f"/{s.full_name}/{m.name}" for s in ALL_SERVICES for m in s.descriptor.methods}
    assert served == expected == every


async def test_jwks_verifies_a_token_with_plain_pyjwt(
    http: aiohttp.ClientSession, base: str, server: Server, token_for: Mint
) -> None:
    token = await token_for(subject="svc", scopes=("mcp:read",))
    for path in ("/jwks.json", "/.well-known/jwks.json"):
        async with http.get(f"{base}{path}") as response:
            assert response.status == 200
            assert "max-age=" in response.headers["Cache-Control"]
            jwks = await response.json()
        key = jwt.PyJWKSet.from_dict(jwks)[jwt.get_unverified_header(token)["kid"]]
        claims = jwt.decode(
            token,
            key.key,
            algorithms=[key.algorithm_name],
            audience=server.config.tokens.issuer,
            issuer=server.config.tokens.issuer,
        )
        assert claims["sub"] == "svc"
    assert all("d" not in jwk for jwk in jwks["keys"])  # public halves only


async def test_transcoded_validate_matches_the_grpc_answer(
    http: aiohttp.ClientSession, base: str, channel: aio.Channel, token_for: Mint
) -> None:
    token = await token_for(subject="svc", scopes=("mcp:read",))
    stub = auth_service_pb2_grpc.AuthServiceStub(channel)
    for candidate in (token, "not-a-token"):
        reply = await stub.Validate(auth_service_pb2.ValidateRequest(token=candidate))
        expected = json_format.MessageToDict(
            reply, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
        )
        async with http.post(f"{base}/v1/tokens:validate", json={"token": candidate}) as response:
            assert response.status == 200
            assert await response.json() == expected


async def test_transcoded_calls_carry_the_request_id_to_grpc(
    http: aiohttp.ClientSession, base: str, server: Server, admin_token: str
) -> None:
    async with http.post(
        f"{base}/v1/clients",
        json={"display_name": "Via HTTP", "kind": "CLIENT_KIND_SERVICE", "confidential": True},
        headers={"Authorization": f"Bearer {admin_token}"},
    ) as response:
        assert response.status == 200, await response.text()
        generated = response.headers["X-Request-Id"]
        created = await response.json()
    [event] = await audit_events(server, "client.created")
    assert event.request_id == generated
    assert event.subject == created["client"]["client_id"]

    async with http.get(f"{base}/v1/clients", headers={"X-Request-Id": "trace-42"}) as response:
        assert response.status == 401
        assert response.headers["X-Request-Id"] == "trace-42"
        body = await response.json()
    assert body["details"][0]["reason"] == "MISSING_CREDENTIALS"


async def test_unknown_paths_stay_404_status_json(http: aiohttp.ClientSession, base: str) -> None:
    async with http.get(f"{base}/v1/not-a-route") as response:
        assert response.status == 404
        assert (await response.json())["details"][0]["reason"] == "ROUTE_NOT_FOUND"
