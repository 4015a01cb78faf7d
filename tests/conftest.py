"""Shared fixtures: a real server on 127.0.0.1:0 with its own database file per test."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from grpc import aio

from chittyauth.app import Server
from chittyauth.clock import Clock
from chittyauth.config import Config, GrpcConfig, HttpConfig, StoreConfig, replace
from tests.support.fixtures import dev_authority

__all__ = ["dev_authority"]


@pytest.fixture
def config(tmp_path: Path) -> Config:
    """Local defaults on ephemeral ports and a fresh database file."""
    return replace(
        Config(),
        grpc=GrpcConfig(port=0, grace_period_s=2.0),
        http=HttpConfig(port=0),
        store=StoreConfig(path=str(tmp_path / "chittyauth.db")),
    )


@contextlib.asynccontextmanager
async def running_server(config: Config, clock: Clock | None = None) -> AsyncIterator[Server]:
    """A started server, stopped (with a short grace) when the block ends."""
    srv = Server(config, clock=clock)
    await srv.start()
    try:
        yield srv
    finally:
        await srv.stop(grace=1.0)


@pytest.fixture
async def server(config: Config) -> AsyncIterator[Server]:
    async with running_server(config) as srv:
        yield srv


@pytest.fixture
async def channel(server: Server) -> AsyncIterator[aio.Channel]:
    async with aio.insecure_channel(server.grpc_target) as chan:
        yield chan


def token_minter(server: Server) -> Callable[..., Awaitable[str]]:
    """Mints real access tokens with ``server``'s own token service (for test set-up)."""

    async def mint(
        subject: str = "test-admin",
        scopes: Sequence[str] = ("chittyauth:admin",),
        token_use: str = "service",
        **claims: Any,
    ) -> str:
        async with server.store.transaction() as tx:
            issued = await server.tokens.issue(
                tx,
                subject=subject,
                client_id=claims.pop("client_id", "test-client"),
                token_use=token_use,
                scopes=scopes,
                **claims,
            )
        return issued.token

    return mint


@pytest.fixture
def token_for(server: Server) -> Callable[..., Awaitable[str]]:
    return token_minter(server)


@pytest.fixture
async def admin_token(token_for: Callable[..., Awaitable[str]]) -> str:
    return await token_for()


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    """gRPC call metadata carrying ``token``."""
    return (("authorization", f"Bearer {token}"),)
