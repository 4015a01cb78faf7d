"""Revoke: immediate, idempotent, survives a restart; unknown tokens are not an error."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from grpc import aio

from chitty.auth.v1 import auth_service_pb2, auth_service_pb2_grpc, token_pb2
from chittyauth.app import Server
from chittyauth.config import Config
from chittyauth.store.protocol import AuditQuery
from tests.conftest import bearer

Mint = Callable[..., Awaitable[str]]


async def test_revoke_then_validate_is_revoked_also_after_restart(
    config: Config, token_for: Mint, server: Server
) -> None:
    token = await token_for(subject="svc-a")
    other = await token_for(subject="svc-b")
    async with aio.insecure_channel(server.grpc_target) as channel:
        stub = auth_service_pb2_grpc.AuthServiceStub(channel)
        assert (await stub.Validate(auth_service_pb2.ValidateRequest(token=token))).active
        await stub.Revoke(auth_service_pb2.RevokeRequest(token=token), metadata=bearer(token))
        # Idempotent; asked again by another token of the same client.
        await stub.Revoke(auth_service_pb2.RevokeRequest(token=token), metadata=bearer(other))
        reply = await stub.Validate(auth_service_pb2.ValidateRequest(token=token))
        assert not reply.active
        assert reply.inactive_reason == token_pb2.INACTIVE_REASON_REVOKED
        assert (await stub.Validate(auth_service_pb2.ValidateRequest(token=other))).active
    events = await server.store.list_audit_events(AuditQuery(action="token.revoked"))
    assert len(events) == 1
    assert events[0].subject == "svc-a"
    assert token not in repr(events)
    await server.stop(grace=0.5)

    restarted = Server(config)
    await restarted.start()
    try:
        async with aio.insecure_channel(restarted.grpc_target) as channel:
            stub = auth_service_pb2_grpc.AuthServiceStub(channel)
            reply = await stub.Validate(auth_service_pb2.ValidateRequest(token=token))
            assert reply.inactive_reason == token_pb2.INACTIVE_REASON_REVOKED
            assert (await stub.Validate(auth_service_pb2.ValidateRequest(token=other))).active
    finally:
        await restarted.stop(grace=0.5)


async def test_unknown_token_revokes_nothing_and_is_ok(
    channel: aio.Channel, server: Server, token_for: Mint
) -> None:
    stub = auth_service_pb2_grpc.AuthServiceStub(channel)
    caller = bearer(await token_for(subject="svc-a"))
    await stub.Revoke(auth_service_pb2.RevokeRequest(token="not.a.token"), metadata=caller)
    await stub.Revoke(auth_service_pb2.RevokeRequest(token="x" * 100_000), metadata=caller)
    assert await server.store.list_audit_events(AuditQuery(action="token.revoked")) == []
