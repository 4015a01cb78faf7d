"""A server wired to a real dev-authority subprocess (ChittyID authority + Access issuer)."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from grpc import aio

from chittyauth.app import Server
from chittyauth.clock import FakeClock
from chittyauth.config import Config, RateLimitConfig, replace
from tests.conftest import running_server, token_minter
from tests.support.devauthority import DevAuthority

ACCESS_AUDIENCE = "chittyauth-dev"


def identity_config(config: Config, authority: DevAuthority, **rate_limits: Any) -> Config:
    """``config`` pointed at the dev authority, with a fast probe and a twitchy breaker."""
    limits = {"enabled": False, "login_failure_delay_s": 0.001, **rate_limits}
    return replace(
        config,
        authority=dataclasses.replace(
            config.authority,
            url=authority.authority_url,
            breaker_failure_threshold=1,
            breaker_reset_s=0.2,
            health_probe_interval_s=0.1,
            cache_ttl_s=0.0,
        ),
        portal=dataclasses.replace(
            config.portal, team_domain=authority.base_url, audiences=(ACCESS_AUDIENCE,)
        ),
        rate_limits=RateLimitConfig(**limits),
    )


@pytest.fixture
def clock() -> FakeClock:
    # Wall time at the start: Access assertions from the dev authority carry real timestamps.
    return FakeClock(time.time())


@pytest.fixture
def id_config(config: Config, dev_authority: DevAuthority) -> Config:
    return identity_config(config, dev_authority)


@pytest.fixture
async def id_server(id_config: Config, clock: FakeClock) -> AsyncIterator[Server]:
    async with running_server(id_config, clock) as server:
        yield server


@pytest.fixture
async def id_channel(id_server: Server) -> AsyncIterator[aio.Channel]:
    async with aio.insecure_channel(id_server.grpc_target) as channel:
        yield channel


@pytest.fixture
def mint_token(id_server: Server) -> Callable[..., Awaitable[str]]:
    """A real access token from the server's own token service."""
    return token_minter(id_server)
