"""gRPC Revoke and ``/v1/tokens:revoke`` apply RFC 7009 §2.1 exactly like ``/revoke``.

Before, both took no credential and revoked any token they were handed: anyone holding (or
having seen) a token could end it, and nothing told who.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import aiohttp
import grpc
import pytest
from grpc import aio

from chitty.auth.v1 import auth_service_pb2, auth_service_pb2_grpc
from chittyauth.app import Server
from chittyauth.store.protocol import AuditQuery
from tests.conftest import bearer
from tests.http_server.conftest import base, http
from tests.security.helpers import error_info

__all__ = ["base", "http"]
PERSON = "AB-C-PEO-1234-P-56-H-7"
Mint = Callable[..., Awaitable[str]]


async def test_revoke_needs_a_credential_and_the_tokens_owner(
    server: Server, channel: aio.Channel, token_for: Mint
) -> None:
    mint = token_for
    victim = await mint(subject="svc-a", client_id="client-a", scopes=("mcp:read",))
    stranger = await mint(subject="svc-b", client_id="client-b", scopes=("mcp:read",))
    stub = auth_service_pb2_grpc.AuthServiceStub(channel)

    with pytest.raises(aio.AioRpcError) as anonymous:
        await stub.Revoke(auth_service_pb2.RevokeRequest(token=victim))
    assert anonymous.value.code() == grpc.StatusCode.UNAUTHENTICATED

    with pytest.raises(aio.AioRpcError) as other_client:
        await stub.Revoke(auth_service_pb2.RevokeRequest(token=victim), metadata=bearer(stranger))
    assert other_client.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_info(other_client.value)[0] == "INVALID_GRANT"
    assert (await stub.Validate(auth_service_pb2.ValidateRequest(token=victim))).active
    [refusal] = await server.store.list_audit_events(AuditQuery(action="token.revoke"))
    assert (refusal.actor, refusal.outcome) == ("svc-b", "failure")

    # A person may not end another person's token either; the token's own client may.
    someone = await mint(subject=PERSON, chitty_id=PERSON, token_use="portal", scopes=("mcp:read",))
    with pytest.raises(aio.AioRpcError) as person:
        await stub.Revoke(auth_service_pb2.RevokeRequest(token=victim), metadata=bearer(someone))
    assert person.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    sibling = await mint(subject="svc-a2", client_id="client-a", scopes=())
    await stub.Revoke(auth_service_pb2.RevokeRequest(token=victim), metadata=bearer(sibling))
    assert not (await stub.Validate(auth_service_pb2.ValidateRequest(token=victim))).active


async def test_the_transcoded_route_refuses_the_same(
    server: Server, channel: aio.Channel, http: aiohttp.ClientSession, base: str, token_for: Mint
) -> None:
    mint = token_for
    victim = await mint(subject="svc-a", client_id="client-a", scopes=())
    stranger = await mint(subject="svc-b", client_id="client-b", scopes=())
    url = f"{base}/v1/tokens:revoke"
    async with http.post(url, json={"token": victim}) as reply:
        assert reply.status == 401
    headers = {"Authorization": f"Bearer {stranger}"}
    async with http.post(url, json={"token": victim}, headers=headers) as reply:
        assert reply.status == 400
        assert (await reply.json())["details"][0]["reason"] == "INVALID_GRANT"
    stub = auth_service_pb2_grpc.AuthServiceStub(channel)
    assert (await stub.Validate(auth_service_pb2.ValidateRequest(token=victim))).active
    headers = {"Authorization": f"Bearer {victim}"}
    async with http.post(url, json={"token": victim}, headers=headers) as reply:
        assert reply.status == 200
    assert not (await stub.Validate(auth_service_pb2.ValidateRequest(token=victim))).active
