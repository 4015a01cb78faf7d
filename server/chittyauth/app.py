"""The composition root: config -> store -> domain -> gRPC server (+ HTTP shim).

``create_server(config)`` builds a ``Server``; ``serve(config)`` runs one until SIGTERM/SIGINT.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Sequence
from typing import Any

import grpc
from grpc import aio
from grpc_health.v1 import health_pb2_grpc

from chittyauth.clock import Clock, SystemClock
from chittyauth.config import Config
from chittyauth.domain.errors import DomainError
from chittyauth.rpc.health import NOT_SERVING, SERVING, Health
from chittyauth.rpc.interceptors import CallInterceptor
from chittyauth.rpc.pending import pending_servicer
from chittyauth.rpc.reflection import enable_reflection
from chittyauth.rpc.services import ALL_SERVICES, ServiceSpec
from chittyauth.store.sqlite import SqliteStore

log = logging.getLogger(__name__)

HEALTH_SERVICE = "grpc.health.v1.Health"

# What each not-yet-built service's UNIMPLEMENTED message points at.
_ARRIVES_WITH = {
    "AuthService": "the tokens and OAuth capabilities",
    "SyncService": "the sessions and sync capability",
    "ClientService": "the OAuth clients capability",
    "ApiKeyService": "the API keys capability",
    "PermissionService": "the permissions capability",
    "KeyService": "the signing keys capability",
    "AuditService": "the audit log capability",
}


class Server:
    """A built ChittyAuth server: ``start()``, then ``stop()``; ports known after start."""

    def __init__(
        self,
        config: Config,
        *,
        clock: Clock | None = None,
        extra_services: Sequence[tuple[Any, Any]] = (),
    ) -> None:
        self.config = config
        self.clock = clock or SystemClock()
        self.store = SqliteStore(
            config.store.path, self.clock, busy_timeout_ms=config.store.busy_timeout_ms
        )
        self.health = Health()
        self.grpc_port = 0
        self._extra_services = extra_services
        self._grpc: aio.Server | None = None
        self._stopped = asyncio.Event()

    @property
    def grpc_target(self) -> str:
        return f"{self.config.grpc.host}:{self.grpc_port}"

    async def start(self) -> None:
        """Opens the store, binds the ports and starts serving."""
        await self.store.open()
        self._grpc = self._build_grpc()
        self.grpc_port = self._grpc.add_insecure_port(
            f"{self.config.grpc.host}:{self.config.grpc.port}"
        )
        if self.grpc_port == 0:
            raise OSError(f"cannot bind {self.config.grpc.host}:{self.config.grpc.port}")
        await self._grpc.start()
        for spec in ALL_SERVICES:
            await self.health.set(spec.full_name, SERVING)
        await self.health.set("", SERVING)
        log.info("serving", extra={"grpc": self.grpc_target})

    async def stop(self, grace: float | None = None) -> None:
        """Graceful shutdown: NOT_SERVING, stop accepting, drain in-flight calls, close."""
        if self._stopped.is_set():
            return
        grace = self.config.grpc.grace_period_s if grace is None else grace
        log.info("shutting down", extra={"grace_s": grace})
        await self.health.enter_graceful_shutdown()
        if self._grpc is not None:
            await self._grpc.stop(grace)
        await self.store.close()
        self._stopped.set()
        log.info("stopped")

    async def wait_stopped(self) -> None:
        await self._stopped.wait()

    async def set_serving(self, service: str, serving: bool) -> None:
        """Marks one service (and the overall "" status) SERVING or NOT_SERVING."""
        await self.health.set(service, SERVING if serving else NOT_SERVING)

    def _build_grpc(self) -> aio.Server:
        grpc_config = self.config.grpc
        server = aio.server(
            interceptors=[CallInterceptor()],
            options=[
                ("grpc.max_send_message_length", grpc_config.max_message_bytes),
                ("grpc.max_receive_message_length", grpc_config.max_message_bytes),
                ("grpc.max_concurrent_streams", grpc_config.max_concurrent_streams),
                ("grpc.keepalive_time_ms", int(grpc_config.keepalive_time_s * 1000)),
                ("grpc.keepalive_timeout_ms", int(grpc_config.keepalive_timeout_s * 1000)),
                ("grpc.keepalive_permit_without_calls", 1),
                (
                    "grpc.http2.min_ping_interval_without_data_ms",
                    int(grpc_config.min_ping_interval_s * 1000),
                ),
                # Never share a port with another process by accident.
                ("grpc.so_reuseport", 0),
            ],
        )
        for spec in ALL_SERVICES:
            spec.add(self._servicer_for(spec), server)
        for servicer, add in self._extra_services:
            add(servicer, server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        names = [spec.full_name for spec in ALL_SERVICES]
        enable_reflection([*names, HEALTH_SERVICE], server)
        return server

    def _servicer_for(self, spec: ServiceSpec) -> Any:
        name = spec.descriptor.name
        return pending_servicer(spec.base, spec.descriptor, _ARRIVES_WITH[name])()


def create_server(config: Config, *, clock: Clock | None = None) -> Server:
    """Builds a server from config; nothing is opened or bound until ``start()``."""
    return Server(config, clock=clock)


async def serve(config: Config) -> int:
    """Runs a server until SIGTERM or SIGINT, then shuts it down gracefully."""
    server = create_server(config)
    try:
        await server.start()
    except (OSError, grpc.RpcError, DomainError) as exc:
        log.error("cannot start", extra={"error": str(exc)})
        await server.store.close()
        return 1
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop()
    return 0
