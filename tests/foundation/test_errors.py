"""Unbuilt RPCs answer UNIMPLEMENTED by name; every call carries a request id."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2
from grpc import aio

from chitty.auth.v1 import sync_service_pb2, sync_service_pb2_grpc
from chittyauth.app import Server
from chittyauth.rpc.errors import STATUS_DETAILS_KEY
from chittyauth.rpc.interceptors import InterceptedServer
from chittyauth.rpc.pending import pending_servicer
from chittyauth.rpc.services import ALL_SERVICES, SYNC


def _error_info(error: aio.AioRpcError) -> error_details_pb2.ErrorInfo:
    raw = dict(error.trailing_metadata() or ())[STATUS_DETAILS_KEY]
    status = status_pb2.Status.FromString(raw)
    info = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(info)
    return info


@pytest.fixture
async def pending_channel() -> AsyncIterator[aio.Channel]:
    """A server whose SyncService is not built yet: the interceptor and pending servicer."""
    server = aio.server()
    servicer = pending_servicer(SYNC.base, SYNC.descriptor, "a later capability")()
    SYNC.add(servicer, InterceptedServer(server))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield channel
    finally:
        await server.stop(None)


async def test_unimplemented_rpc_names_itself(pending_channel: aio.Channel) -> None:
    stub = sync_service_pb2_grpc.SyncServiceStub(pending_channel)
    with pytest.raises(aio.AioRpcError) as caught:
        await stub.GetSessionState(sync_service_pb2.GetSessionStateRequest(name="sessions/x"))
    assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert "SyncService.GetSessionState" in (caught.value.details() or "")
    info = _error_info(caught.value)
    assert info.domain == "auth.chitty.cc"
    assert info.reason == "UNIMPLEMENTED"


async def test_unimplemented_stream_names_itself(pending_channel: aio.Channel) -> None:
    stub = sync_service_pb2_grpc.SyncServiceStub(pending_channel)
    call = stub.WatchSessions(sync_service_pb2.WatchSessionsRequest())
    with pytest.raises(aio.AioRpcError) as caught:
        await call.read()
    assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert "SyncService.WatchSessions" in (caught.value.details() or "")


async def test_undecodable_body_is_invalid_argument_before_the_servicer(
    pending_channel: aio.Channel,
) -> None:
    # Decoded by the wrapper, not by grpc: a refusal with a reason, not UNKNOWN.
    call = pending_channel.unary_unary("/chitty.auth.v1.SyncService/GetSessionState")
    with pytest.raises(aio.AioRpcError) as caught:
        await call(b"\x0a\xff\xff\xff\xff\x03abc", metadata=(("x-request-id", "req-bad"),))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "GetSessionStateRequest" in (caught.value.details() or "")
    assert _error_info(caught.value).reason == "MALFORMED_REQUEST"
    assert dict(caught.value.trailing_metadata() or ())["x-request-id"] == "req-bad"


async def test_request_id_is_echoed(channel: aio.Channel) -> None:
    stub = sync_service_pb2_grpc.SyncServiceStub(channel)  # no token: UNAUTHENTICATED
    with pytest.raises(aio.AioRpcError) as caught:
        await stub.GetSession(
            sync_service_pb2.GetSessionRequest(name="sessions/x"),
            metadata=(("x-request-id", "req-123"),),
        )
    assert dict(caught.value.trailing_metadata() or ())["x-request-id"] == "req-123"


async def test_request_id_is_made_when_absent(channel: aio.Channel) -> None:
    stub = sync_service_pb2_grpc.SyncServiceStub(channel)
    with pytest.raises(aio.AioRpcError) as caught:
        await stub.GetSession(sync_service_pb2.GetSessionRequest(name="sessions/x"))
    request_id = dict(caught.value.trailing_metadata() or ())["x-request-id"]
    assert len(request_id) == 16
    assert all(c in "0123456789abcdef" for c in request_id)


async def test_every_method_is_served_from_the_method_table_and_unknown_ones_are_unimplemented(
    server: Server, channel: aio.Channel
) -> None:
    # Every method of every service is in the one generic handler's table (none registered
    # one by one with grpc), and a name that is not there is UNIMPLEMENTED.
    for spec in ALL_SERVICES:
        for method in spec.descriptor.methods:
            assert f"/{spec.full_name}/{method.name}" in server.method_table
    unknown = channel.unary_unary("/chitty.auth.v1.AuthService/NoSuchMethod")
    with pytest.raises(aio.AioRpcError) as caught:
        await unknown(b"")
    assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED
    health = channel.unary_unary("/grpc.health.v1.Health/Check")
    assert await health(b"") == b"\x08\x01"  # HealthCheckResponse(status=SERVING)
