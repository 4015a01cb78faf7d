"""Shared fixtures: a real server on 127.0.0.1:0 with its own database file per test."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from grpc import aio

from chittyauth.app import Server
from chittyauth.config import Config, GrpcConfig, HttpConfig, StoreConfig, replace


@pytest.fixture
def config(tmp_path: Path) -> Config:
    """Local defaults on ephemeral ports and a fresh database file."""
    return replace(
        Config(),
        grpc=GrpcConfig(port=0, grace_period_s=2.0),
        http=HttpConfig(port=0),
        store=StoreConfig(path=str(tmp_path / "chittyauth.db")),
    )


@pytest.fixture
async def server(config: Config) -> AsyncIterator[Server]:
    srv = Server(config)
    await srv.start()
    try:
        yield srv
    finally:
        await srv.stop(grace=1.0)


@pytest.fixture
async def channel(server: Server) -> AsyncIterator[aio.Channel]:
    async with aio.insecure_channel(server.grpc_target) as chan:
        yield chan
