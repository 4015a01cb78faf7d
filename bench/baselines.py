"""The baselines every scenario is compared with, each run as its own process.

``python -m bench.baselines grpc --port N``: a bare grpc.aio server whose one generic unary
handler echoes its request bytes (no (de)serialisation, no interceptors).
``python -m bench.baselines http --port N``: a bare aiohttp handler that reads the body and
returns a small JSON object.

Both run on uvloop when it is installed, as ``chittyauth serve`` does, and print ``ready``
once they listen.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Callable, Coroutine
from typing import Any

import grpc
from aiohttp import web
from grpc import aio


class _Echo(grpc.GenericRpcHandler):
    """Answers every unary method with the request's own bytes."""

    def __init__(self) -> None:
        self._handler = grpc.unary_unary_rpc_method_handler(self._echo)

    async def _echo(self, request: bytes, context: aio.ServicerContext) -> bytes:
        return request

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler:
        return self._handler


async def _wait_for_signal() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


async def serve_grpc_echo(port: int) -> None:
    # The same stream limit as the real server's default, so neither side is capped lower.
    server = aio.server(options=[("grpc.max_concurrent_streams", 1024), ("grpc.so_reuseport", 0)])
    server.add_generic_rpc_handlers((_Echo(),))
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    print("ready", flush=True)
    await _wait_for_signal()
    await server.stop(0.5)


async def serve_http_json(port: int) -> None:
    body = {"active": True, "scope": "mcp:read", "client_id": "bench", "token_type": "Bearer"}

    async def handle(request: web.Request) -> web.Response:
        await request.read()
        return web.json_response(body)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    print("ready", flush=True)
    await _wait_for_signal()
    await runner.cleanup()


def run_loop(coro: Coroutine[Any, Any, None]) -> None:
    """Runs ``coro`` on uvloop when installed (as ``chittyauth serve`` does), else asyncio."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(coro)
        return
    uvloop.run(coro)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.baselines")
    parser.add_argument("kind", choices=["grpc", "http"])
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    servers: dict[str, Callable[[int], Coroutine[Any, Any, None]]] = {
        "grpc": serve_grpc_echo,
        "http": serve_http_json,
    }
    run_loop(servers[args.kind](args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
