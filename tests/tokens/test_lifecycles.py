"""Credential lifecycles that agree, each against a real server (Validate over gRPC, the HTTP
routes, and a LocalVerifier following the server):

- a token claiming to be issued after its signing key retired is refused;
- an API key revoked by any path ends the key, every token it obtained, and shows revoked;
- the claims RFC 9068 requires, and numeric date claims, are enforced by Validate and the
  LocalVerifier alike (API key validations, which are no JWTs and may lack exp, still work).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from grpc import aio

from chitty.auth.client import AsyncAuthClient, StaticToken
from chitty.auth.client.verifier import LocalVerifier, TokenRejected
from chitty.auth.v1 import (
    api_key_service_pb2,
    api_key_service_pb2_grpc,
    auth_service_pb2,
    auth_service_pb2_grpc,
    token_pb2,
)
from chittyauth.app import Server
from chittyauth.clock import FakeClock
from chittyauth.config import Config
from chittyauth.domain.keys import SigningKey
from tests.clients.helpers import OWNER, audit_events, running
from tests.conftest import bearer
from tests.support.fixtures import vouching_authority, with_authority

RESOURCE = "https://api.example"
Mint = Callable[..., Awaitable[str]]


@pytest.fixture
async def config(config: Config, tmp_path: Path) -> AsyncIterator[Config]:
    async with vouching_authority(tmp_path, OWNER) as authority:
        yield with_authority(config, authority)


@contextlib.asynccontextmanager
async def verifier_for(server: Server, **options: Any) -> AsyncIterator[LocalVerifier]:
    """A started verifier whose credentials are a service token with introspect."""
    async with server.store.transaction() as tx:
        watcher = await server.tokens.issue(
            tx, subject="gw", client_id="gw", token_use="service", scopes=("introspect",)
        )
    client = AsyncAuthClient(server.grpc_target, StaticToken(watcher.token))
    verifier = LocalVerifier(
        client, issuer=server.config.tokens.issuer, audience=RESOURCE, **options
    )
    try:
        await verifier.start(ready_timeout_s=5.0)
        yield verifier
    finally:
        await verifier.stop()
        await client.close()


async def validate(server: Server, token: str) -> auth_service_pb2.ValidateResponse:
    async with aio.insecure_channel(server.grpc_target) as channel:
        return await auth_service_pb2_grpc.AuthServiceStub(channel).Validate(
            auth_service_pb2.ValidateRequest(token=token)
        )


def forge(key: SigningKey, claims: dict[str, Any]) -> str:
    """A JWT signed with ``key`` exactly as the service signs, carrying ``claims`` as given."""
    return jwt.encode(
        claims,
        key.key,
        algorithm=key.algorithm,
        headers={"kid": key.kid, "typ": "at+jwt"},
    )


def claims_for(server: Server, issued_at: float, **changes: Any) -> dict[str, Any]:
    claims: dict[str, Any] = {
        "iss": server.config.tokens.issuer,
        "sub": "person-1",
        "aud": RESOURCE,
        "client_id": "app",
        "scope": "mcp:read",
        "iat": int(issued_at),
        "exp": int(issued_at) + 600,
        "jti": f"at_forged_{time.monotonic_ns()}",
        "token_use": "linked_app",
    }
    claims.update(changes)
    return {name: value for name, value in claims.items() if value is not None}


# -- a signing key that retired vouches for nothing signed afterwards -----------------------


async def test_a_token_issued_after_its_key_retired_is_refused(config: Config) -> None:
    clock = FakeClock(time.time() - 600)
    async with running(config, clock) as server:
        async with server.store.transaction() as tx:
            before = await server.tokens.issue(
                tx, subject="person-1", client_id="app", token_use="linked_app",
                scopes=("mcp:read",), audience=(RESOURCE,), ttl_s=3600,
            )  # fmt: skip
        stolen = server.keys.signer()  # what a thief of the old key holds
        rotation = await server.keys.rotate()
        assert rotation.retired is not None
        assert rotation.retired.kid == stolen.kid
        retired_at = rotation.retired.retire_time or 0.0
        clock.set(time.time())
        leeway = server.config.tokens.leeway_s
        forged = forge(stolen, claims_for(server, time.time()))
        # A replica that had not yet heard of the rotation signs within the leeway: accepted.
        lagging = forge(stolen, claims_for(server, retired_at + leeway - 5))

        answer = await validate(server, forged)
        assert (answer.active, answer.inactive_reason) == (
            False, token_pb2.INACTIVE_REASON_BAD_SIGNATURE,
        )  # fmt: skip
        assert (await validate(server, before.token)).active
        assert (await validate(server, lagging)).active

        async with verifier_for(server) as verifier:
            with pytest.raises(TokenRejected, match="retired"):
                await verifier.verify(forged)
            assert (await verifier.verify(before.token)).client_id == "app"
            assert (await verifier.verify(lagging)).client_id == "app"


async def test_a_running_verifier_learns_of_a_retirement(config: Config) -> None:
    clock = FakeClock(time.time() - 600)
    async with running(config, clock) as server:
        stolen = server.keys.signer()
        async with verifier_for(server, jwks_refresh_interval_s=0.2) as verifier:
            forged = forge(stolen, claims_for(server, time.time()))
            assert (await verifier.verify(forged)).client_id == "app"  # the key still signs
            await server.keys.rotate()
            clock.set(time.time())
            answer = await validate(server, forged)
            assert answer.inactive_reason == token_pb2.INACTIVE_REASON_BAD_SIGNATURE
            deadline = time.monotonic() + 3
            while await _accepted(verifier, forged):
                assert time.monotonic() < deadline, "the verifier never learnt of the retirement"
                await asyncio.sleep(0.05)
            with pytest.raises(TokenRejected, match="retired"):
                await verifier.verify(forged)


async def _accepted(verifier: LocalVerifier, token: str) -> bool:
    try:
        await verifier.verify(token)
    except TokenRejected:
        return False
    return True


# -- an API key revoked by any path ends with everything it obtained ----------------------


async def _owner(server: Server) -> str:
    async with server.store.transaction() as tx:
        issued = await server.tokens.issue(
            tx, subject=OWNER, chitty_id=OWNER, client_id="portal", token_use="portal",
            scopes=("api_keys:generate", "api_keys:read", "mcp:read"),
        )  # fmt: skip
    return issued.token


async def _revoke_with_api(server: Server, key: str, key_id: str, owner: str) -> None:
    async with aio.insecure_channel(server.grpc_target) as channel:
        await api_key_service_pb2_grpc.ApiKeyServiceStub(channel).RevokeApiKey(
            api_key_service_pb2.RevokeApiKeyRequest(key_id=key_id), metadata=bearer(owner)
        )


async def _revoke_itself(server: Server, key: str, key_id: str, owner: str) -> None:
    async with aio.insecure_channel(server.grpc_target) as channel:
        await auth_service_pb2_grpc.AuthServiceStub(channel).Revoke(
            auth_service_pb2.RevokeRequest(token=key), metadata=bearer(key)
        )


async def _revoke_by_owner(server: Server, key: str, key_id: str, owner: str) -> None:
    async with aio.insecure_channel(server.grpc_target) as channel:
        await auth_service_pb2_grpc.AuthServiceStub(channel).Revoke(
            auth_service_pb2.RevokeRequest(token=key), metadata=bearer(owner)
        )


async def _revoke_over_http(server: Server, key: str, key_id: str, owner: str) -> None:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.http_port}") as http:
        reply = await http.post(
            "/v1/tokens:revoke", json={"token": key}, headers={"Authorization": f"Bearer {key}"}
        )
    assert reply.status_code == 200, reply.text


async def _log_out(server: Server, key: str, key_id: str, owner: str) -> None:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.http_port}") as http:
        reply = await http.post("/v1/auth/logout", headers={"Authorization": f"Bearer {key}"})
    assert reply.status_code == 200, reply.text


PATHS = {
    "ApiKeyService.RevokeApiKey": _revoke_with_api,
    "AuthService.Revoke by the key": _revoke_itself,
    "AuthService.Revoke by its owner": _revoke_by_owner,
    "POST /v1/tokens:revoke": _revoke_over_http,
    "POST /v1/auth/logout": _log_out,
}


@pytest.mark.parametrize("path", list(PATHS))
async def test_revoking_an_api_key_by_any_path_ends_it_and_its_tokens(
    server: Server, path: str
) -> None:
    owner = await _owner(server)
    async with aio.insecure_channel(server.grpc_target) as channel:
        keys = api_key_service_pb2_grpc.ApiKeyServiceStub(channel)
        created = await keys.CreateApiKey(
            api_key_service_pb2.CreateApiKeyRequest(scopes=["mcp:read"]), metadata=bearer(owner)
        )
        obtained = await auth_service_pb2_grpc.AuthServiceStub(channel).Authenticate(
            auth_service_pb2.AuthenticateRequest(
                api_key=auth_service_pb2.ApiKeyCredential(api_key=created.key),
                resources=[RESOURCE],
            )
        )
    key_id = created.api_key.key_id
    assert (await validate(server, obtained.access_token)).active

    await PATHS[path](server, created.key, key_id, owner)

    for credential in (created.key, obtained.access_token):
        answer = await validate(server, credential)
        assert (answer.active, answer.inactive_reason) == (
            False, token_pb2.INACTIVE_REASON_REVOKED,
        ), credential[:12]  # fmt: skip
    async with aio.insecure_channel(server.grpc_target) as channel:
        keys = api_key_service_pb2_grpc.ApiKeyServiceStub(channel)
        listed = await keys.ListApiKeys(
            api_key_service_pb2.ListApiKeysRequest(include_revoked=True), metadata=bearer(owner)
        )
        active = await keys.ListApiKeys(
            api_key_service_pb2.ListApiKeysRequest(), metadata=bearer(owner)
        )
    [shown] = [k for k in listed.api_keys if k.key_id == key_id]
    assert shown.HasField("revoke_time")
    assert key_id not in {k.key_id for k in active.api_keys}
    revoked = await audit_events(server, "apikey.revoked")
    assert [e.resource for e in revoked] == [f"apiKeys/{key_id}"]
    async with verifier_for(server) as verifier:
        with pytest.raises(TokenRejected, match="revoked"):
            await verifier.verify(obtained.access_token)


# -- RFC 9068 claims, enforced by Validate and the LocalVerifier alike -----------------------

MALFORMED = {
    "no client_id": {"client_id": None},
    "no aud": {"aud": None},
    "no sub": {"sub": None},
    "no jti": {"jti": None},
    "no iat": {"iat": None},
    "empty client_id": {"client_id": ""},
    "numeric client_id": {"client_id": 7},
    "string exp": {"exp": str(int(time.time()) + 600)},
    "string iat": {"iat": str(int(time.time()))},
    "string nbf": {"nbf": str(int(time.time()))},
    "boolean exp": {"exp": True},
    "NaN exp": {"exp": float("nan")},
    "aud of numbers": {"aud": [1, 2]},
}


async def test_rfc9068_claims_are_required_by_validate_and_the_verifier(server: Server) -> None:
    signer = server.keys.signer()
    good = forge(signer, claims_for(server, time.time()))
    async with verifier_for(server) as verifier:
        assert (await validate(server, good)).active
        assert (await verifier.verify(good)).client_id == "app"
        for name, changes in MALFORMED.items():
            claims = claims_for(server, time.time(), **changes)
            if name == "NaN exp":
                # json.dumps writes NaN, which Python's json (and so pyjwt) reads back.
                assert "NaN" in json.dumps(claims)
            token = forge(signer, claims)
            answer = await validate(server, token)
            assert (answer.active, answer.inactive_reason) == (
                False, token_pb2.INACTIVE_REASON_MALFORMED,
            ), name  # fmt: skip
            with pytest.raises(TokenRejected) as refused:
                await verifier.verify(token)
            assert refused.value.error == "invalid_token", name


async def test_api_key_validations_without_exp_still_work(server: Server) -> None:
    owner = await _owner(server)
    async with aio.insecure_channel(server.grpc_target) as channel:
        created = await api_key_service_pb2_grpc.ApiKeyServiceStub(channel).CreateApiKey(
            api_key_service_pb2.CreateApiKeyRequest(scopes=["mcp:read"]), metadata=bearer(owner)
        )
    answer = await validate(server, created.key)
    assert answer.active
    assert answer.credential_kind == token_pb2.CREDENTIAL_KIND_API_KEY
    assert not answer.claims.HasField("expire_time")
    assert answer.claims.client_id == f"apikey:{created.api_key.key_id}"
