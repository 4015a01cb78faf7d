"""WatchSessions: resume without gaps or doubles, retention, heartbeats, fan-out, shutdown."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import grpc
import pytest
from grpc import aio

from chitty.auth.v1 import session_pb2, sync_service_pb2, sync_service_pb2_grpc
from chittyauth.app import Server
from chittyauth.clock import FakeClock
from chittyauth.config import SessionConfig
from chittyauth.domain.watch import decode_cursor, encode_cursor
from tests.conftest import bearer
from tests.sessions.conftest import IDLE_S, USER, Minter
from tests.sessions.helpers import error_info, put_state, rows, sync

Stub = sync_service_pb2_grpc.SyncServiceStub
Response = sync_service_pb2.WatchSessionsResponse


def watch(stub: Stub, token: str, *, cursor: str = "", name: str = "") -> Any:
    return stub.WatchSessions(
        sync_service_pb2.WatchSessionsRequest(cursor=cursor, name=name), metadata=bearer(token)
    )


async def read(call: Any) -> Response:
    reply = await asyncio.wait_for(call.read(), 5)
    assert reply is not aio.EOF, "the stream ended"
    return reply  # type: ignore[no-any-return]


async def events(call: Any, count: int) -> list[session_pb2.SessionEvent]:
    """The next ``count`` events, skipping heartbeats."""
    found: list[session_pb2.SessionEvent] = []
    while len(found) < count:
        reply = await read(call)
        if reply.HasField("event"):
            found.append(reply.event)
    return found


async def heartbeat(call: Any) -> Response:
    """The next heartbeat (any events before it are returned by ``events`` instead)."""
    while True:
        reply = await read(call)
        if not reply.HasField("event"):
            return reply


def user_event_seqs(server: Server, after: int = 0) -> list[int]:
    """The sequence numbers of USER's session events in the change log, after ``after``."""
    return [
        seq
        for (seq,) in rows(
            server,
            "SELECT seq FROM changes WHERE kind LIKE 'session.%' AND seq > ?"
            " AND json_extract(payload, '$.chitty_id') = ? ORDER BY seq",
            (after, USER),
        )
    ]


async def test_reconnecting_with_the_last_cursor_misses_nothing_and_repeats_nothing(
    server: Server, stub: Stub, user_token: Minter
) -> None:
    token = await user_token()
    name = (await sync(stub, token, device_id="laptop")).session.name
    first = watch(stub, token, cursor=encode_cursor(0))
    seen = await events(first, 2)  # created, device_added: replayed from the log
    assert [e.type for e in seen] == [
        session_pb2.SESSION_EVENT_TYPE_CREATED,
        session_pb2.SESSION_EVENT_TYPE_DEVICE_ADDED,
    ]

    stop = asyncio.Event()
    written = 0

    async def keep_writing() -> None:
        nonlocal written
        while not stop.is_set():
            await put_state(stub, token, name, f"v{written}".encode(), written)
            written += 1

    writer = asyncio.create_task(keep_writing())
    try:
        seen += await events(first, 5)  # live now, while the writer runs
        first.cancel()  # disconnect after event k …
        in_gap = written + 3
        while written < in_gap:  # … while writes go on in the gap
            await asyncio.sleep(0.005)
        cursor_k = seen[-1].cursor
        second = watch(stub, token, cursor=cursor_k)
        resumed = await events(second, 10)
    finally:
        stop.set()
        await writer
    # Everything written by now must arrive, after k, in order, once.
    expected = user_event_seqs(server, after=decode_cursor(cursor_k))
    resumed += await events(second, len(expected) - len(resumed))
    second.cancel()
    got = [decode_cursor(e.cursor) for e in resumed]
    assert got == expected
    assert written >= 6
    versions = [
        e.state_version for e in resumed if e.type == session_pb2.SESSION_EVENT_TYPE_STATE_CHANGED
    ]
    assert versions == list(range(versions[0], written + 1))
    assert [decode_cursor(e.cursor) for e in seen] == user_event_seqs(server)[: len(seen)]


async def test_a_watcher_sees_only_its_owners_sessions(stub: Stub, user_token: Minter) -> None:
    mine = await user_token()
    theirs = await user_token(subject="CD-E-PEO-4321-P-65-J-8")
    call = watch(stub, mine)
    await heartbeat(call)
    await sync(stub, theirs, device_id="other")
    name = (await sync(stub, mine, device_id="laptop")).session.name
    got = await events(call, 2)
    call.cancel()
    assert {e.name for e in got} == {name}
    assert {e.chitty_id for e in got} == {USER}
    assert got[1].device.device_id == "laptop"
    assert got[1].device.client_type == session_pb2.CLIENT_TYPE_WEB


async def test_heartbeats_carry_a_resumable_cursor(
    server: Server, stub: Stub, user_token: Minter, clock: FakeClock
) -> None:
    token = await user_token()
    call = watch(stub, token)
    beat = await heartbeat(call)
    assert beat.heartbeat_time.seconds == int(clock.now())
    call.cancel()
    name = (await sync(stub, token, device_id="laptop")).session.name
    resumed = watch(stub, token, cursor=beat.cursor)
    got = await events(resumed, 2)
    resumed.cancel()
    assert [e.name for e in got] == [name, name]
    assert got[0].type == session_pb2.SESSION_EVENT_TYPE_CREATED


class TestRetention:
    @pytest.fixture
    def session_config(self) -> SessionConfig:
        return SessionConfig(idle_timeout_s=IDLE_S, event_retention_s=100, heartbeat_interval_s=0.2)

    async def test_a_cursor_older_than_the_log_is_out_of_range(
        self, server: Server, stub: Stub, user_token: Minter, clock: FakeClock
    ) -> None:
        token = await user_token()
        old = (await sync(stub, token, device_id="laptop")).session.name
        early = watch(stub, token, cursor=encode_cursor(0))
        old_events = await events(early, 2)
        early.cancel()
        clock.advance(200)
        new = (await sync(stub, token, device_id="phone")).session.name
        await server.sessions.sweep_once()  # prunes the change log past its retention
        assert user_event_seqs(server) == user_event_seqs(
            server, decode_cursor(old_events[1].cursor)
        )

        stale = watch(stub, token, cursor=old_events[0].cursor)
        with pytest.raises(aio.AioRpcError) as caught:
            await read(stale)
        assert caught.value.code() == grpc.StatusCode.OUT_OF_RANGE
        info = error_info(caught.value)
        assert info.reason == "CURSOR_EXPIRED"

        # The oldest cursor it names works, and nothing of the old session is lost after it.
        fresh = watch(stub, token, cursor=info.metadata["oldest_cursor"])
        got = await events(fresh, 2)
        fresh.cancel()
        assert [e.name for e in got] == [new, new]
        assert old != new


async def test_bad_cursors_are_invalid_argument(stub: Stub, user_token: Minter) -> None:
    token = await user_token()
    for cursor in ("not a cursor", encode_cursor(10**6), "x" * 100):
        with pytest.raises(aio.AioRpcError) as caught:
            await read(watch(stub, token, cursor=cursor))
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert error_info(caught.value).reason == "INVALID_CURSOR"


async def test_a_watcher_that_falls_behind_is_resynced_from_the_log(
    server: Server, stub: Stub, user_token: Minter
) -> None:
    token = await user_token()
    server.sessions.hub.buffer_size = 2
    call = watch(stub, token)
    await heartbeat(call)
    # One commit of 12 events overflows a 2-event buffer at once.
    servers = tuple(f"server-{i}" for i in range(10))
    await sync(stub, token, device_id="laptop", servers=servers)
    got = await events(call, 12)
    call.cancel()
    assert server.sessions.hub.resyncs >= 1
    assert [decode_cursor(e.cursor) for e in got] == user_event_seqs(server)
    assert [e.mcp_server for e in got[2:]] == list(servers)


async def test_many_watchers_share_one_subscription(
    server: Server, stub: Stub, user_token: Minter
) -> None:
    token = await user_token()
    calls = [watch(stub, token) for _ in range(50)]
    await asyncio.gather(*(heartbeat(c) for c in calls))
    assert server.sessions.hub.watcher_count == 50
    name = (await sync(stub, token, device_id="laptop")).session.name
    got = await asyncio.gather(*(events(c, 2) for c in calls))
    assert all([e.name for e in g] == [name, name] for g in got)
    for call in calls:
        call.cancel()
    for _ in range(100):
        if server.sessions.hub.watcher_count == 0:
            break
        await asyncio.sleep(0.01)
    assert server.sessions.hub.watcher_count == 0


async def test_a_sid_only_stream_ends_with_its_session(stub: Stub, user_token: Minter) -> None:
    owner = await user_token()
    session = (await sync(stub, owner, device_id="laptop")).session
    bound = await user_token(scopes=(), sid=session.session_id)
    call = watch(stub, bound)
    await heartbeat(call)
    await stub.RevokeSession(
        sync_service_pb2.RevokeSessionRequest(name=session.name), metadata=bearer(owner)
    )
    (event,) = await events(call, 1)
    assert event.type == session_pb2.SESSION_EVENT_TYPE_REVOKED
    with pytest.raises(aio.AioRpcError) as caught:
        await read(call)
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert error_info(caught.value).reason == "SESSION_ENDED"


async def test_streams_end_cleanly_on_shutdown(
    server: Server, stub: Stub, user_token: Minter
) -> None:
    token = await user_token()
    calls = [watch(stub, token) for _ in range(3)]
    await asyncio.gather(*(heartbeat(c) for c in calls))
    loop = asyncio.get_running_loop()
    started = loop.time()
    await server.stop(grace=5.0)
    for call in calls:
        with contextlib.suppress(aio.AioRpcError):
            while await asyncio.wait_for(call.read(), 5) is not aio.EOF:
                pass
        assert await call.code() == grpc.StatusCode.OK
    # The streams did not hold the drain for its whole grace period.
    assert loop.time() - started < 4.0
