"""SyncSession, GetSession and ListSessions: devices, MCP servers, limits, paging."""

from __future__ import annotations

import grpc
import pytest
from grpc import aio

from chitty.auth.v1 import session_pb2, sync_service_pb2, sync_service_pb2_grpc
from chittyauth.app import Server
from chittyauth.config import SessionConfig
from tests.conftest import bearer
from tests.sessions.conftest import USER, Minter
from tests.sessions.helpers import audit_events, error_info, rows, session_snapshot, sync

Stub = sync_service_pb2_grpc.SyncServiceStub


async def test_sync_creates_a_session_then_updates_it(
    server: Server, stub: Stub, user_token: Minter
) -> None:
    token = await user_token()
    first = await sync(stub, token, device_id="laptop", servers=("chittymcp",))
    assert first.created
    session = first.session
    assert session.name == f"sessions/{session.session_id}"
    assert session.chitty_id == USER
    assert session.status == session_pb2.SESSION_STATUS_ACTIVE
    assert [(d.device_id, d.client_type) for d in session.devices] == [
        ("laptop", session_pb2.CLIENT_TYPE_WEB)
    ]
    assert list(session.mcp_servers) == ["chittymcp"]

    second = await sync(
        stub, token, name=session.name, device_id="phone", servers=("chittychat", "chittymcp")
    )
    assert not second.created
    assert second.session.session_id == session.session_id
    assert {d.device_id for d in second.session.devices} == {"laptop", "phone"}
    assert sorted(second.session.mcp_servers) == ["chittychat", "chittymcp"]

    # Without a name, a known device finds its session again instead of making a new one.
    third = await sync(stub, token, device_id="phone", remove=("laptop",))
    assert not third.created
    assert third.session.session_id == session.session_id
    assert [d.device_id for d in third.session.devices] == ["phone"]

    kinds = [
        kind
        for (kind,) in rows(
            server, "SELECT kind FROM changes WHERE kind LIKE 'session.%' ORDER BY seq"
        )
    ]
    assert kinds == [
        "session.created",
        "session.device_added",
        "session.server_attached",
        "session.device_added",
        "session.server_attached",
        "session.device_removed",
    ]
    assert [e.outcome for e in await audit_events(server, "session.create")] == ["success"]
    # The first call also attached a server: one record for the creation, one per update.
    assert len(await audit_events(server, "session.sync")) == 3


async def test_a_token_with_a_sid_syncs_its_own_session(
    server: Server, stub: Stub, user_token: Minter
) -> None:
    created = await sync(stub, await user_token(), device_id="laptop")
    sid = created.session.session_id
    # No cross_sync scope: the sid alone gives access to that one session.
    bound = await user_token(scopes=(), sid=sid)
    reply = await sync(stub, bound, servers=("chittyrouter",))
    assert reply.session.session_id == sid
    assert list(reply.session.mcp_servers) == ["chittyrouter"]
    got = await stub.GetSession(
        sync_service_pb2.GetSessionRequest(name=created.session.name), metadata=bearer(bound)
    )
    assert got.session.session_id == sid


async def test_creating_a_session_needs_cross_sync(stub: Stub, user_token: Minter) -> None:
    with pytest.raises(aio.AioRpcError) as caught:
        await sync(stub, await user_token(scopes=("mcp:read",)), device_id="laptop")
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_no_token_is_unauthenticated(stub: Stub) -> None:
    with pytest.raises(aio.AioRpcError) as caught:
        await stub.SyncSession(sync_service_pb2.SyncSessionRequest())
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED


@pytest.mark.parametrize(
    ("request_fields", "reason"),
    [
        ({"name": "session/abc"}, "INVALID_SESSION_NAME"),
        ({"name": "sessions/../x"}, "INVALID_SESSION_NAME"),
        ({"mcp_servers": ["Bad Server"]}, "INVALID_MCP_SERVER"),
        ({"mcp_servers": [f"s{i}" for i in range(33)]}, "INVALID_MCP_SERVER"),
        ({"remove_device_ids": ["x" * 129]}, "INVALID_DEVICE"),
        ({"device": {"device_id": "d1"}}, "INVALID_DEVICE"),  # no client type
        (
            {"device": {"device_id": "d1", "client_type": 2, "display_name": "a\nb"}},
            "INVALID_DEVICE",
        ),
        ({"device": {"device_id": "", "client_type": 2}}, "INVALID_DEVICE"),
    ],
)
async def test_bad_input_is_invalid_argument(
    server: Server, stub: Stub, user_token: Minter, request_fields: dict[str, object], reason: str
) -> None:
    token = await user_token()
    request = sync_service_pb2.SyncSessionRequest(**request_fields)  # type: ignore[arg-type]
    with pytest.raises(aio.AioRpcError) as caught:
        await stub.SyncSession(request, metadata=bearer(token))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_info(caught.value).reason == reason
    assert rows(server, "SELECT COUNT(*) FROM sessions") == [(0,)]


async def test_a_device_moves_between_sessions_of_its_owner(stub: Stub, user_token: Minter) -> None:
    token = await user_token()
    one = (await sync(stub, token, device_id="laptop")).session
    two = (await sync(stub, token, device_id="phone")).session
    moved = await sync(stub, token, name=two.name, device_id="laptop")
    assert {d.device_id for d in moved.session.devices} == {"laptop", "phone"}
    again = await stub.GetSession(
        sync_service_pb2.GetSessionRequest(name=one.name), metadata=bearer(token)
    )
    assert list(again.session.devices) == []


class TestDeviceLimitRefuse:
    @pytest.fixture
    def session_config(self) -> SessionConfig:
        return SessionConfig(max_devices=2, device_limit_policy="refuse")

    async def test_the_third_device_is_refused_and_nothing_changes(
        self, server: Server, stub: Stub, user_token: Minter
    ) -> None:
        token = await user_token()
        session = (await sync(stub, token, device_id="d1")).session
        await sync(stub, token, name=session.name, device_id="d2")
        before = session_snapshot(server)
        with pytest.raises(aio.AioRpcError) as caught:
            await sync(stub, token, name=session.name, device_id="d3", servers=("chittymcp",))
        assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        info = error_info(caught.value)
        assert info.reason == "DEVICE_LIMIT"
        assert info.metadata["max_devices"] == "2"
        assert session_snapshot(server) == before
        failures = await audit_events(server, "session.sync")
        assert [
            (e.outcome, e.attributes["reason"]) for e in failures if e.outcome == "failure"
        ] == [("failure", "DEVICE_LIMIT")]
        # A device already attached is only refreshed: no new slot is needed.
        refreshed = await sync(stub, token, name=session.name, device_id="d1")
        assert len(refreshed.session.devices) == 2
        # Removing one makes room.
        room = await sync(stub, token, name=session.name, device_id="d3", remove=("d2",))
        assert {d.device_id for d in room.session.devices} == {"d1", "d3"}


class TestDeviceLimitEvict:
    @pytest.fixture
    def session_config(self) -> SessionConfig:
        return SessionConfig(max_devices=2, device_limit_policy="evict")

    async def test_the_least_recently_seen_device_is_evicted_and_audited(
        self, server: Server, stub: Stub, user_token: Minter, clock: object
    ) -> None:
        token = await user_token()
        first = (await sync(stub, token, device_id="d1")).session
        server.clock.advance(1)  # type: ignore[attr-defined]
        # A second session of the same person: the limit counts devices per ChittyID.
        second = (await sync(stub, token, device_id="d2")).session
        server.clock.advance(1)  # type: ignore[attr-defined]
        await sync(stub, token, name=first.name, device_id="d1")  # d1 seen again: d2 is oldest
        server.clock.advance(1)  # type: ignore[attr-defined]
        reply = await sync(stub, token, name=first.name, device_id="d3")
        assert list(reply.evicted_device_ids) == ["d2"]
        assert {d.device_id for d in reply.session.devices} == {"d1", "d3"}
        other = await stub.GetSession(
            sync_service_pb2.GetSessionRequest(name=second.name), metadata=bearer(token)
        )
        assert list(other.session.devices) == []
        evictions = await audit_events(server, "session.device.evict")
        assert [(e.resource, e.attributes["device_id"]) for e in evictions] == [(second.name, "d2")]
        removed = rows(
            server,
            "SELECT key, payload FROM changes WHERE kind = 'session.device_removed'",
        )
        assert len(removed) == 1
        assert removed[0][0] == second.session_id
        assert '"reason":"evicted"' in removed[0][1]


async def test_list_sessions_pages_newest_first(
    server: Server, stub: Stub, user_token: Minter
) -> None:
    token = await user_token()
    names = []
    for i in range(5):
        names.append((await sync(stub, token, device_id=f"d{i}")).session.name)
        server.clock.advance(1)  # type: ignore[attr-defined]
    await stub.RevokeSession(
        sync_service_pb2.RevokeSessionRequest(name=names[0]), metadata=bearer(token)
    )
    seen: list[str] = []
    page_token = ""
    while True:
        page = await stub.ListSessions(
            sync_service_pb2.ListSessionsRequest(page_size=2, page_token=page_token),
            metadata=bearer(token),
        )
        seen += [s.name for s in page.sessions]
        page_token = page.next_page_token
        if not page_token:
            break
    assert seen == names[::-1][:4]  # the revoked one is left out
    everything = await stub.ListSessions(
        sync_service_pb2.ListSessionsRequest(include_ended=True), metadata=bearer(token)
    )
    assert [s.name for s in everything.sessions] == names[::-1]
    assert everything.sessions[-1].status == session_pb2.SESSION_STATUS_REVOKED

    with pytest.raises(aio.AioRpcError) as caught:
        await stub.ListSessions(
            sync_service_pb2.ListSessionsRequest(page_token="not-a-token"), metadata=bearer(token)
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_info(caught.value).reason == "INVALID_PAGE_TOKEN"
