"""A server on a FakeClock with short session timeouts, and helpers to call SyncService."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

import pytest
from grpc import aio

from chitty.auth.v1 import sync_service_pb2_grpc
from chittyauth.app import Server
from chittyauth.clock import FakeClock
from chittyauth.config import Config, SessionConfig, replace

USER = "AB-C-PEO-1234-P-56-H-7"
OTHER = "CD-E-PEO-4321-P-65-J-8"
IDLE_S = 600

Minter = Callable[..., Awaitable[str]]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(time.time())


@pytest.fixture
def session_config() -> SessionConfig:
    """Sessions settings for the test; override in a module to change the policy."""
    return SessionConfig(idle_timeout_s=IDLE_S, heartbeat_interval_s=0.2)


@pytest.fixture
def config(config: Config, session_config: SessionConfig) -> Config:
    return replace(config, sessions=session_config)


@pytest.fixture
async def server(config: Config, clock: FakeClock) -> AsyncIterator[Server]:
    srv = Server(config, clock=clock)
    await srv.start()
    try:
        yield srv
    finally:
        await srv.stop(grace=1.0)


@pytest.fixture
def stub(channel: aio.Channel) -> sync_service_pb2_grpc.SyncServiceStub:
    return sync_service_pb2_grpc.SyncServiceStub(channel)


@pytest.fixture
def user_token(token_for: Minter) -> Minter:
    """Mints a person's token: cross_sync by default, optionally bound to a session (sid)."""

    async def mint(
        subject: str = USER, scopes: Sequence[str] = ("cross_sync",), sid: str = ""
    ) -> str:
        return await token_for(
            subject=subject, scopes=scopes, token_use="portal", session_id=sid, chitty_id=subject
        )

    return mint
