"""LocalVerifier against a real server: offline checks, pushed revocation, failing closed."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from grpc import aio

from chitty.auth.client import AsyncAuthClient, ClientCredentials, StaticToken
from chitty.auth.client.verifier import LocalVerifier, TokenRejected, VerifierUnavailable
from chitty.auth.v1 import auth_service_pb2
from chittyauth.app import Server
from chittyauth.clock import FakeClock
from chittyauth.config import Config
from tests.client.conftest import create_service_client
from tests.clients.helpers import running

RESOURCE = "https://api.example"


class CountingInterceptor(aio.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    """Records the method of every unary call the verifier's channel makes."""

    def __init__(self) -> None:
        self.methods: list[str] = []

    async def intercept_unary_unary(
        self, continuation: Callable[..., Awaitable[Any]], details: Any, request: Any
    ) -> Any:
        method = details.method
        self.methods.append(method.decode() if isinstance(method, bytes) else method)
        return await continuation(details, request)


@pytest.fixture
async def watcher_creds(channel: aio.Channel, admin_token: str) -> ClientCredentials:
    return await create_service_client(channel, admin_token, "api-gateway", ("introspect",))


async def _mint(server: Server, **overrides: Any) -> str:
    values: dict[str, Any] = {
        "subject": "user-1",
        "client_id": "app",
        "token_use": "linked_app",
        "scopes": ("mcp:read",),
        "audience": (RESOURCE,),
        "session_id": "sess-1",
    }
    values.update(overrides)
    async with server.store.transaction() as tx:
        issued = await server.tokens.issue(tx, **values)
    return issued.token


async def _refused_within(verifier: LocalVerifier, token: str, bound_s: float) -> TokenRejected:
    """Polls until the verifier refuses ``token``; fails if that takes longer than ``bound_s``."""
    deadline = time.monotonic() + bound_s
    while True:
        try:
            await verifier.verify(token)
        except TokenRejected as refused:
            return refused
        assert time.monotonic() < deadline, "revocation not applied in time"
        await asyncio.sleep(0.02)


async def _verifier(
    server: Server, creds: ClientCredentials, counter: CountingInterceptor, **options: Any
) -> tuple[LocalVerifier, AsyncAuthClient]:
    chan = aio.insecure_channel(server.grpc_target, interceptors=[counter])
    client = AsyncAuthClient(channel=chan, credentials=creds)
    verifier = LocalVerifier(
        client, issuer=server.config.tokens.issuer, audience=RESOURCE, **options
    )
    await verifier.start()
    return verifier, client


@pytest.fixture
async def counted(
    server: Server, watcher_creds: ClientCredentials
) -> AsyncIterator[tuple[LocalVerifier, CountingInterceptor]]:
    server.revocation_hub.heartbeat_interval_s = 0.2
    counter = CountingInterceptor()
    verifier, client = await _verifier(server, watcher_creds, counter)
    yield verifier, counter
    await verifier.stop()
    await client.channel.close(None)


async def test_valid_token_is_accepted_offline(
    server: Server, counted: tuple[LocalVerifier, CountingInterceptor]
) -> None:
    verifier, counter = counted
    token = await _mint(server)
    verified = await verifier.verify(token, required_scopes=["mcp:read"])
    assert verified.subject == "user-1"
    assert verified.scopes == {"mcp:read"}
    with pytest.raises(TokenRejected) as caught:
        await verifier.verify(token, required_scopes=["mcp:write"])
    assert caught.value.error == "insufficient_scope"
    assert not any(m.endswith("/Validate") for m in counter.methods)
    assert verifier.validate_calls == 0


async def test_tampered_wrong_audience_and_foreign_tokens_are_refused(
    server: Server, counted: tuple[LocalVerifier, CountingInterceptor]
) -> None:
    verifier, _ = counted
    token = await _mint(server)
    head, body, sig = token.split(".")
    tampered = ".".join((head, body, sig[:-4] + ("AAAA" if sig[-4:] != "AAAA" else "BBBB")))
    other_audience = await _mint(server, audience=("https://elsewhere.example",))
    for bad in (tampered, other_audience, "not-a-jwt", token + "x"):
        with pytest.raises(TokenRejected) as caught:
            await verifier.verify(bad)
        assert caught.value.error == "invalid_token"


async def test_expired_token_is_refused(config: Config) -> None:
    clock = FakeClock(time.time())
    async with running(config, clock) as srv:
        admin = await _mint(
            srv, subject="ops", client_id="ops", token_use="service",
            scopes=("chittyauth:admin",), audience=(), session_id="",
        )  # fmt: skip
        fresh = await _mint(srv, ttl_s=60)
        clock.set(time.time() - 3 * 3600)
        stale = await _mint(srv, ttl_s=60)
        clock.set(time.time())
        async with aio.insecure_channel(srv.grpc_target) as chan:
            creds = await create_service_client(chan, admin, "gw", ("introspect",))
        verifier, client = await _verifier(srv, creds, CountingInterceptor())
        try:
            assert (await verifier.verify(fresh)).subject == "user-1"  # still fresh
            with pytest.raises(TokenRejected, match="expired"):
                await verifier.verify(stale)
        finally:
            await verifier.stop()
            await client.close()


async def test_revoked_token_is_refused_within_a_second_without_validate(
    server: Server, channel: aio.Channel, counted: tuple[LocalVerifier, CountingInterceptor]
) -> None:
    verifier, counter = counted
    token, sibling = await _mint(server), await _mint(server, session_id="sess-2")
    await verifier.verify(token)
    async with AsyncAuthClient(channel=channel, credentials=StaticToken(token)) as holder:
        await holder.revoke(auth_service_pb2.RevokeRequest(token=token))
    refused = await _refused_within(verifier, token, 1.0)
    assert "revoked" in refused.description
    assert (await verifier.verify(sibling)).subject == "user-1"

    # A whole session revoked on the server reaches the verifier the same way.
    async with server.store.transaction() as tx:
        await server.tokens.revoke_session(tx, "sess-2", time.time() + 3600)
    await _refused_within(verifier, sibling, 1.0)
    assert verifier.validate_calls == 0
    assert not any(m.endswith("/Validate") for m in counter.methods)


async def test_revocations_made_before_start_are_known(
    server: Server, channel: aio.Channel, watcher_creds: ClientCredentials
) -> None:
    token = await _mint(server)
    async with AsyncAuthClient(channel=channel, credentials=StaticToken(token)) as holder:
        await holder.revoke(auth_service_pb2.RevokeRequest(token=token))
    verifier, client = await _verifier(server, watcher_creds, CountingInterceptor())
    try:
        with pytest.raises(TokenRejected, match="revoked"):
            await verifier.verify(token)
    finally:
        await verifier.stop()
        await client.close()


async def test_fails_closed_when_the_stream_is_cut(config: Config) -> None:
    async with running(config) as srv:
        srv.revocation_hub.heartbeat_interval_s = 0.1
        admin = await _mint(
            srv, subject="ops", client_id="ops", token_use="service",
            scopes=("chittyauth:admin",), audience=(), session_id="",
        )  # fmt: skip
        async with aio.insecure_channel(srv.grpc_target) as chan:
            creds = await create_service_client(chan, admin, "gw", ("introspect",))
        token = await _mint(srv)
        verifier, client = await _verifier(
            srv, creds, CountingInterceptor(), max_stream_silence_s=0.5
        )
        assert (await verifier.verify(token)).subject == "user-1"
    # The server is gone: the stream is cut and nothing is heard any more.
    try:
        await asyncio.sleep(0.7)
        assert not verifier.stream_healthy
        with pytest.raises(VerifierUnavailable):
            await verifier.verify(token)
    finally:
        await verifier.stop()
        await client.close()


async def test_falls_back_to_validate_when_the_stream_is_silent(
    server: Server, watcher_creds: ClientCredentials
) -> None:
    server.revocation_hub.heartbeat_interval_s = 0.1
    counter = CountingInterceptor()
    verifier, client = await _verifier(
        server, watcher_creds, counter, max_stream_silence_s=0.3, fallback_to_validate=True
    )
    try:
        token = await _mint(server)
        server.revocation_hub.heartbeat_interval_s = 30  # the stream goes quiet
        await asyncio.sleep(0.5)
        verified = await verifier.verify(token, required_scopes=["mcp:read"])
        assert verified.subject == "user-1"
        assert verifier.validate_calls == 1
        assert sum(m.endswith("/Validate") for m in counter.methods) == 1
    finally:
        await verifier.stop()
        await client.close()
