"""gRPC health: a status per service, NOT_SERVING at shutdown, in-flight calls drain."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import aiohttp
import grpc
import pytest
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from chittyauth.app import Server
from chittyauth.config import Config
from chittyauth.rpc.services import ALL_SERVICES
from tests.conftest import running_server
from tests.identity_flows.conftest import identity_config
from tests.support.devauthority import DevAuthority

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


@pytest.mark.parametrize("service", ["", *(spec.full_name for spec in ALL_SERVICES)])
async def test_check_is_serving_for_every_service(channel: aio.Channel, service: str) -> None:
    stub = health_pb2_grpc.HealthStub(channel)
    reply = await stub.Check(health_pb2.HealthCheckRequest(service=service))
    assert reply.status == SERVING


async def test_check_unknown_service_is_not_found(channel: aio.Channel) -> None:
    stub = health_pb2_grpc.HealthStub(channel)
    with pytest.raises(aio.AioRpcError) as info:
        await stub.Check(health_pb2.HealthCheckRequest(service="no.such.Service"))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


def _slow_handler(started: asyncio.Event) -> grpc.GenericRpcHandler:
    """A probe method registered on the real server: it answers after 0.5 s."""

    async def sleep(request: bytes, context: aio.ServicerContext) -> bytes:
        started.set()
        await asyncio.sleep(0.5)
        return b"done:" + request

    return grpc.method_handlers_generic_handler(
        "probe.Slow", {"Sleep": grpc.unary_unary_rpc_method_handler(sleep)}
    )


async def test_watch_sees_not_serving_and_in_flight_call_completes(config: Config) -> None:
    started = asyncio.Event()
    handler = _slow_handler(started)
    server = Server(
        config,
        extra_services=[(handler, lambda h, s: s.add_generic_rpc_handlers((h,)))],
    )
    await server.start()
    async with aio.insecure_channel(server.grpc_target) as channel:
        watch = health_pb2_grpc.HealthStub(channel).Watch(
            health_pb2.HealthCheckRequest(service="chitty.auth.v1.AuthService")
        )
        first = await watch.read()
        assert first.status == SERVING

        slow = channel.unary_unary("/probe.Slow/Sleep")(b"x", timeout=5)
        await asyncio.wait_for(started.wait(), 5)
        stopping = asyncio.create_task(server.stop(grace=3.0))

        second = await asyncio.wait_for(watch.read(), 5)
        assert second.status == NOT_SERVING
        # The call that was in flight when shutdown began still completes.
        assert await slow == b"done:x"
        await asyncio.wait_for(stopping, 5)
        # The watch stream ended with the server instead of holding the drain.
        assert await watch.code() == grpc.StatusCode.OK
    # New calls are refused once the server is down.
    async with aio.insecure_channel(server.grpc_target) as channel:
        with pytest.raises(aio.AioRpcError) as info:
            await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=1
            )
        assert info.value.code() in (
            grpc.StatusCode.UNAVAILABLE,
            grpc.StatusCode.DEADLINE_EXCEEDED,
        )


async def test_set_serving_flips_one_service(server: Server, channel: aio.Channel) -> None:
    stub = health_pb2_grpc.HealthStub(channel)
    await server.set_serving("chitty.auth.v1.AuthService", False)
    reply = await stub.Check(health_pb2.HealthCheckRequest(service="chitty.auth.v1.AuthService"))
    assert reply.status == NOT_SERVING
    other = await stub.Check(health_pb2.HealthCheckRequest(service="chitty.auth.v1.SyncService"))
    assert other.status == SERVING


async def _readyz(server: Server) -> tuple[int, dict[str, object]]:
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"http://127.0.0.1:{server.http_port}/readyz") as answer,
    ):
        assert answer.headers["Cache-Control"] == "no-store"
        return answer.status, await answer.json()


async def _until(condition: Callable[[], Awaitable[bool]], timeout_s: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not await condition():
        assert asyncio.get_running_loop().time() < deadline, "condition never held"
        await asyncio.sleep(0.05)


async def test_readiness_follows_the_authority_and_overall_health_follows_readiness(
    config: Config, dev_authority: DevAuthority
) -> None:
    async with (
        running_server(identity_config(config, dev_authority)) as server,
        aio.insecure_channel(server.grpc_target) as channel,
    ):
        stub = health_pb2_grpc.HealthStub(channel)

        async def status(service: str) -> int:
            reply = await stub.Check(health_pb2.HealthCheckRequest(service=service))
            return int(reply.status)

        assert await _readyz(server) == (
            200,
            {"status": "READY", "checks": {"store": "ok", "authority": "ok", "keys": "ok"}},
        )
        assert await status("") == SERVING

        await dev_authority.stop()
        await _until(lambda: _is(status(""), NOT_SERVING))
        code, body = await _readyz(server)
        assert code == 503
        assert body == {
            "status": "NOT_READY",
            "checks": {"store": "ok", "authority": "unreachable", "keys": "ok"},
        }
        assert await status("chitty.auth.v1.AuthService") == NOT_SERVING
        # The store still writes: services that do not need the authority keep serving.
        assert await status("chitty.auth.v1.SyncService") == SERVING
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"http://127.0.0.1:{server.http_port}/healthz") as answer,
        ):
            assert answer.status == 200  # alive all along
            assert await answer.json() == {"status": "ALIVE"}

        await dev_authority.start()
        await _until(lambda: _is(status(""), SERVING))
        assert (await _readyz(server))[0] == 200


async def _is(value: Awaitable[int], expected: int) -> bool:
    return await value == expected


async def test_readyz_is_not_ready_once_shutdown_begins(server: Server) -> None:
    assert (await _readyz(server))[0] == 200
    await server.health.enter_graceful_shutdown()
    code, body = await _readyz(server)
    assert code == 503
    assert body["status"] == "NOT_READY"


async def test_list_answers_every_service(channel: aio.Channel) -> None:
    reply = await health_pb2_grpc.HealthStub(channel).List(health_pb2.HealthListRequest())
    expected = {"", *(spec.full_name for spec in ALL_SERVICES)}
    assert expected <= set(reply.statuses)
    assert {reply.statuses[name].status for name in expected} == {SERVING}


async def test_list_follows_a_service_going_not_serving(
    server: Server, channel: aio.Channel
) -> None:
    await server.set_serving("chitty.auth.v1.SyncService", False)
    reply = await health_pb2_grpc.HealthStub(channel).List(health_pb2.HealthListRequest())
    assert reply.statuses["chitty.auth.v1.SyncService"].status == NOT_SERVING
    assert reply.statuses["chitty.auth.v1.AuthService"].status == SERVING
