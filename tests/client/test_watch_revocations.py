"""WatchRevocations against a real server: snapshot, live, resume, retention, access."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import grpc
import pytest
from grpc import aio

from chitty.auth.v1 import auth_service_pb2, auth_service_pb2_grpc, token_pb2
from chittyauth.app import Server
from chittyauth.domain.watch import encode_cursor
from tests.clients.helpers import reason
from tests.conftest import bearer

Mint = Callable[..., Awaitable[str]]
Response = auth_service_pb2.WatchRevocationsResponse


@pytest.fixture(autouse=True)
def fast_heartbeats(server: Server) -> None:
    server.revocation_hub.heartbeat_interval_s = 0.2


async def _revoke(channel: aio.Channel, token: str) -> None:
    await auth_service_pb2_grpc.AuthServiceStub(channel).Revoke(
        auth_service_pb2.RevokeRequest(token=token), metadata=bearer(token)
    )


def _jti(server: Server, token: str) -> str:
    claims = server.tokens.signed_claims(token)
    assert claims is not None
    return str(claims["jti"])


async def _next(stream: AsyncIterator[Response], *, events_only: bool = True) -> Response:
    async def read() -> Response:
        async for item in stream:
            if item.HasField("event") or not events_only:
                return item
        raise AssertionError("stream ended")

    return await asyncio.wait_for(read(), 5)


def _watch(channel: aio.Channel, token: str, cursor: str = "") -> aio.UnaryStreamCall:  # type: ignore[type-arg]
    stub = auth_service_pb2_grpc.AuthServiceStub(channel)
    return stub.WatchRevocations(
        auth_service_pb2.WatchRevocationsRequest(cursor=cursor), metadata=bearer(token)
    )


async def test_snapshot_then_heartbeat_then_live(
    server: Server, channel: aio.Channel, token_for: Mint, admin_token: str
) -> None:
    early = await token_for(subject="u1", scopes=("mcp:read",))
    await _revoke(channel, early)
    call = _watch(channel, admin_token)
    stream = call.__aiter__()
    first = await _next(stream, events_only=False)
    assert first.event.kind == token_pb2.REVOCATION_KIND_TOKEN
    assert first.event.value == _jti(server, early)
    assert first.event.cursor == ""  # snapshot rows are not resume points
    assert first.event.expire_time.seconds > first.event.revoke_time.seconds
    marker = await _next(stream, events_only=False)
    assert not marker.HasField("event")
    assert marker.cursor
    assert marker.heartbeat_time.seconds > 0

    late = await token_for(subject="u2", scopes=("mcp:read",))
    await _revoke(channel, late)
    live = await _next(stream)
    assert live.event.value == _jti(server, late)
    assert live.event.cursor
    call.cancel()


async def test_resume_from_cursor_has_no_gap_and_no_duplicate(
    server: Server, channel: aio.Channel, token_for: Mint, admin_token: str
) -> None:
    call = _watch(channel, admin_token)
    stream = call.__aiter__()
    await _next(stream, events_only=False)  # the (empty) snapshot's heartbeat
    first = await token_for(subject="a")
    await _revoke(channel, first)
    seen = await _next(stream)
    call.cancel()

    missed = [await token_for(subject=f"m{i}") for i in range(3)]
    for token in missed:
        await _revoke(channel, token)
    resumed = _watch(channel, admin_token, seen.event.cursor)
    stream = resumed.__aiter__()
    values = [(await _next(stream)).event.value for _ in missed]
    assert values == [_jti(server, t) for t in missed]
    after = await _next(stream, events_only=False)
    assert not after.HasField("event")  # a heartbeat: nothing repeated
    resumed.cancel()


async def test_cursor_older_than_the_log_is_out_of_range(
    server: Server, channel: aio.Channel, token_for: Mint, admin_token: str
) -> None:
    for i in range(3):
        await _revoke(channel, await token_for(subject=f"old{i}"))
    await server.store.prune_changes(before=server.clock.now() + 3600)
    await _revoke(channel, await token_for(subject="new"))
    with pytest.raises(aio.AioRpcError) as caught:
        async for _ in _watch(channel, admin_token, encode_cursor(1)):
            pass
    assert caught.value.code() == grpc.StatusCode.OUT_OF_RANGE
    assert reason(caught.value) == "CURSOR_EXPIRED"


@pytest.mark.parametrize("cursor", ["not-a-cursor", "x" * 100, encode_cursor(10**9)])
async def test_bad_cursor_is_invalid_argument(
    channel: aio.Channel, admin_token: str, cursor: str
) -> None:
    with pytest.raises(aio.AioRpcError) as caught:
        async for _ in _watch(channel, admin_token, cursor):
            pass
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert reason(caught.value) == "INVALID_CURSOR"


async def test_access_needs_a_watching_token(channel: aio.Channel, token_for: Mint) -> None:
    stub = auth_service_pb2_grpc.AuthServiceStub(channel)
    with pytest.raises(aio.AioRpcError) as caught:
        async for _ in stub.WatchRevocations(auth_service_pb2.WatchRevocationsRequest()):
            pass
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED

    user = await token_for(subject="u", scopes=("mcp:read",), token_use="portal")
    with pytest.raises(aio.AioRpcError) as caught:
        async for _ in _watch(channel, user):
            pass
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert reason(caught.value) == "INSUFFICIENT_SCOPE"

    reader = await token_for(subject="rs", scopes=("revocations:read",), token_use="portal")
    service = await token_for(subject="svc", scopes=("mcp:read",), token_use="service")
    for token in (reader, service):
        call = _watch(channel, token)
        heartbeat = await _next(call.__aiter__(), events_only=False)
        assert heartbeat.cursor
        call.cancel()


async def test_stop_ends_open_streams(
    server: Server, channel: aio.Channel, admin_token: str
) -> None:
    call = _watch(channel, admin_token)
    stream = call.__aiter__()
    await _next(stream, events_only=False)
    assert server.revocation_hub.watcher_count == 1
    await server.stop(grace=1.0)
    rest = [item async for item in stream]
    assert all(not item.HasField("event") for item in rest)
    assert server.revocation_hub.watcher_count == 0
