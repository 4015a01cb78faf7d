"""Ending sessions: revocation, sign-out everywhere, idle and absolute expiry; tokens follow."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest
from grpc import aio

from chitty.auth.v1 import (
    auth_service_pb2,
    auth_service_pb2_grpc,
    session_pb2,
    sync_service_pb2,
    sync_service_pb2_grpc,
)
from chittyauth.app import Server
from chittyauth.clock import FakeClock
from chittyauth.config import SessionConfig
from tests.conftest import bearer
from tests.sessions.conftest import IDLE_S, USER, Minter
from tests.sessions.helpers import audit_events, error_info, put_state, rows, sync

Stub = sync_service_pb2_grpc.SyncServiceStub


async def active(channel: aio.Channel, token: str) -> bool:
    reply = await auth_service_pb2_grpc.AuthServiceStub(channel).Validate(
        auth_service_pb2.ValidateRequest(token=token)
    )
    return bool(reply.active)


async def next_event(call: Any) -> session_pb2.SessionEvent:
    """The next event of a watch stream, skipping heartbeats."""
    while True:
        reply = await asyncio.wait_for(call.read(), 5)
        assert reply is not aio.EOF
        if reply.HasField("event"):
            return reply.event  # type: ignore[no-any-return]


async def live(call: Any) -> Any:
    """Waits for the stream's first heartbeat: from then on it is registered and live."""
    while True:
        reply = await asyncio.wait_for(call.read(), 5)
        assert reply is not aio.EOF
        if not reply.HasField("event"):
            return call


async def test_revoking_a_session_ends_every_token_with_its_sid(
    server: Server, channel: aio.Channel, stub: Stub, user_token: Minter
) -> None:
    owner = await user_token()
    session = (await sync(stub, owner, device_id="laptop")).session
    in_session = [await user_token(scopes=("mcp:read",), sid=session.session_id) for _ in range(3)]
    unrelated = await user_token(sid="ses_other")
    assert all([await active(channel, t) for t in in_session])

    watch = await live(
        stub.WatchSessions(
            sync_service_pb2.WatchSessionsRequest(name=session.name), metadata=bearer(owner)
        )
    )
    await put_state(stub, owner, session.name, b"s", 0)
    assert (await next_event(watch)).type == session_pb2.SESSION_EVENT_TYPE_SERVER_ATTACHED
    assert (await next_event(watch)).type == session_pb2.SESSION_EVENT_TYPE_STATE_CHANGED

    reply = await stub.RevokeSession(
        sync_service_pb2.RevokeSessionRequest(name=session.name), metadata=bearer(in_session[0])
    )
    assert reply.session.status == session_pb2.SESSION_STATUS_REVOKED
    assert reply.session.HasField("end_time")
    assert not any([await active(channel, t) for t in in_session])
    assert await active(channel, owner)
    assert await active(channel, unrelated)

    event = await next_event(watch)
    assert event.type == session_pb2.SESSION_EVENT_TYPE_REVOKED
    assert event.name == session.name
    watch.cancel()

    # The state went with it, and the session refuses further writes.
    assert rows(server, "SELECT COUNT(*) FROM session_states") == [(0,)]
    with pytest.raises(aio.AioRpcError) as caught:
        await put_state(stub, owner, session.name, b"s2", 1)
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_info(caught.value).reason == "SESSION_ENDED"
    # Revoking again changes nothing.
    again = await stub.RevokeSession(
        sync_service_pb2.RevokeSessionRequest(name=session.name), metadata=bearer(owner)
    )
    assert again.session.end_time == reply.session.end_time
    revokes = await audit_events(server, "session.revoke")
    assert [(e.outcome, e.resource) for e in revokes] == [("success", session.name)]


async def test_revoke_all_signs_out_everywhere(
    server: Server, channel: aio.Channel, stub: Stub, user_token: Minter
) -> None:
    owner = await user_token()
    sessions = [(await sync(stub, owner, device_id=f"d{i}")).session for i in range(3)]
    tokens = [await user_token(scopes=(), sid=s.session_id) for s in sessions]
    reply = await stub.RevokeAllSessions(
        sync_service_pb2.RevokeAllSessionsRequest(), metadata=bearer(owner)
    )
    assert reply.revoked_count == 3
    assert not any([await active(channel, t) for t in tokens])
    assert rows(server, "SELECT DISTINCT status, end_reason FROM sessions") == [
        ("revoked", "revoked_all")
    ]
    assert rows(server, "SELECT COUNT(*) FROM session_devices WHERE attached = 1") == [(0,)]


async def test_an_idle_session_expires_lazily_with_its_tokens(
    server: Server, channel: aio.Channel, stub: Stub, user_token: Minter, clock: FakeClock
) -> None:
    owner = await user_token()
    session = (await sync(stub, owner, device_id="laptop")).session
    assert session.idle_expire_time.seconds == int(session.last_activity_time.seconds + IDLE_S)
    bound = await user_token(scopes=(), sid=session.session_id)

    clock.advance(IDLE_S - 10)
    await sync(stub, owner, name=session.name)  # activity pushes the idle expiry back
    clock.advance(IDLE_S - 10)
    got = await stub.GetSession(
        sync_service_pb2.GetSessionRequest(name=session.name), metadata=bearer(owner)
    )
    assert got.session.status == session_pb2.SESSION_STATUS_ACTIVE

    clock.advance(20)
    got = await stub.GetSession(
        sync_service_pb2.GetSessionRequest(name=session.name), metadata=bearer(owner)
    )
    assert got.session.status == session_pb2.SESSION_STATUS_EXPIRED
    assert not await active(channel, bound)
    assert rows(server, "SELECT status, end_reason FROM sessions") == [("expired", "idle")]
    assert [e.actor for e in await audit_events(server, "session.expire")] == ["system"]
    kinds = [k for (k,) in rows(server, "SELECT kind FROM changes WHERE kind LIKE 'session.%'")]
    assert kinds[-1] == "session.expired"
    with pytest.raises(aio.AioRpcError) as caught:
        await sync(stub, owner, name=session.name, device_id="laptop")
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_info(caught.value).metadata["status"] == "expired"
    # The device is free again: syncing it without a name starts a new session.
    fresh = await sync(stub, owner, device_id="laptop")
    assert fresh.created


async def test_the_sweeper_expires_idle_sessions_and_the_watcher_sees_it(
    server: Server, channel: aio.Channel, stub: Stub, user_token: Minter, clock: FakeClock
) -> None:
    owner = await user_token()
    idle = (await sync(stub, owner, device_id="laptop")).session
    clock.advance(IDLE_S / 2)
    busy = (await sync(stub, owner, device_id="phone")).session
    bound = await user_token(scopes=(), sid=idle.session_id)
    watch = await live(
        stub.WatchSessions(sync_service_pb2.WatchSessionsRequest(), metadata=bearer(owner))
    )

    clock.advance(IDLE_S / 2 + 1)
    assert await server.sessions.sweep_once() == 1
    event = await next_event(watch)
    assert (event.type, event.name, event.chitty_id) == (
        session_pb2.SESSION_EVENT_TYPE_EXPIRED,
        idle.name,
        USER,
    )
    watch.cancel()
    assert not await active(channel, bound)
    statuses = dict(rows(server, "SELECT session_id, status FROM sessions"))
    assert statuses == {idle.session_id: "expired", busy.session_id: "active"}
    assert await server.sessions.sweep_once() == 0


class TestAbsoluteLifetime:
    @pytest.fixture
    def session_config(self) -> SessionConfig:
        return SessionConfig(idle_timeout_s=IDLE_S, absolute_lifetime_s=1000)

    async def test_a_busy_session_still_ends_at_its_lifetime(
        self, server: Server, stub: Stub, user_token: Minter, clock: FakeClock
    ) -> None:
        owner = await user_token()
        session = (await sync(stub, owner, device_id="laptop")).session
        for _ in range(3):
            clock.advance(300)
            await sync(stub, owner, name=session.name)
        clock.advance(101)
        with pytest.raises(aio.AioRpcError) as caught:
            await sync(stub, owner, name=session.name)
        assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert rows(server, "SELECT status, end_reason FROM sessions") == [("expired", "lifetime")]
