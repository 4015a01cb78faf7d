"""Who may act on a session: the owner with cross_sync, the session's own sid, or an admin."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import pytest
from grpc import aio

from chitty.auth.v1 import sync_service_pb2, sync_service_pb2_grpc
from chittyauth.app import Server
from tests.conftest import bearer
from tests.sessions.conftest import OTHER, USER, Minter
from tests.sessions.helpers import audit_events, error_info, put_state, session_snapshot, sync

Stub = sync_service_pb2_grpc.SyncServiceStub


def by_name(stub: Stub, name: str) -> dict[str, Callable[[str], Awaitable[Any]]]:
    """Every per-session RPC, bound to ``name`` and waiting for a token."""
    return {
        "GetSession": lambda t: stub.GetSession(
            sync_service_pb2.GetSessionRequest(name=name), metadata=bearer(t)
        ),
        "SyncSession": lambda t: stub.SyncSession(
            sync_service_pb2.SyncSessionRequest(name=name, mcp_servers=["chittychat"]),
            metadata=bearer(t),
        ),
        "RevokeSession": lambda t: stub.RevokeSession(
            sync_service_pb2.RevokeSessionRequest(name=name), metadata=bearer(t)
        ),
        "PutSessionState": lambda t: put_state(stub, t, name, b"intruder", 1),
        "GetSessionState": lambda t: stub.GetSessionState(
            sync_service_pb2.GetSessionStateRequest(name=name, mcp_server="chittymcp"),
            metadata=bearer(t),
        ),
        "WatchSessions": lambda t: stub.WatchSessions(
            sync_service_pb2.WatchSessionsRequest(name=name), metadata=bearer(t)
        ).read(),
    }


@pytest.fixture
async def owned(stub: Stub, user_token: Minter) -> str:
    """A session of USER with one state version written."""
    token = await user_token()
    name = (await sync(stub, token, device_id="laptop")).session.name
    await put_state(stub, token, name, b"mine", 0)
    return name


@pytest.mark.parametrize(
    "method",
    [
        "GetSession",
        "SyncSession",
        "RevokeSession",
        "PutSessionState",
        "GetSessionState",
        "WatchSessions",
    ],
)
async def test_another_users_session_does_not_exist_for_them(
    server: Server, stub: Stub, user_token: Minter, owned: str, method: str
) -> None:
    before = session_snapshot(server)
    intruders = [
        await user_token(subject=OTHER),  # another person with cross_sync
        await user_token(subject=OTHER, sid=owned.removeprefix("sessions/")),  # a forged sid
    ]
    for intruder in intruders:
        with pytest.raises(aio.AioRpcError) as caught:
            await by_name(stub, owned)[method](intruder)
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND
        assert error_info(caught.value).reason == "SESSION_NOT_FOUND"
    # A name that does not exist at all looks the same.
    with pytest.raises(aio.AioRpcError) as missing:
        await by_name(stub, "sessions/ses_doesnotexist")[method](intruders[0])
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    assert (missing.value.details(), error_info(missing.value).reason) == (
        caught.value.details(),
        "SESSION_NOT_FOUND",
    )
    assert session_snapshot(server) == before
    failures = [
        e
        for action in (
            "session.get",
            "session.sync",
            "session.revoke",
            "session.state.put",
            "session.state.get",
            "session.watch",
        )
        for e in await audit_events(server, action)
        if e.outcome == "failure"
    ]
    assert len(failures) == 3
    assert {(e.actor, e.attributes["reason"]) for e in failures} == {(OTHER, "SESSION_NOT_FOUND")}
    assert sum(e.subject == USER for e in failures) == 2  # the owner can find who tried


async def test_a_sid_without_cross_sync_reaches_only_its_own_session(
    stub: Stub, user_token: Minter, owned: str
) -> None:
    other = (await sync(stub, await user_token(), device_id="phone")).session.name
    bound = await user_token(scopes=(), sid=owned.removeprefix("sessions/"))
    state = await stub.GetSessionState(
        sync_service_pb2.GetSessionStateRequest(name=owned, mcp_server="chittymcp"),
        metadata=bearer(bound),
    )
    assert state.state.data == b"mine"
    with pytest.raises(aio.AioRpcError) as caught:
        await by_name(stub, other)["GetSession"](bound)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(aio.AioRpcError) as listing:
        await stub.ListSessions(sync_service_pb2.ListSessionsRequest(), metadata=bearer(bound))
    assert listing.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_listing_or_revoking_another_chitty_id_is_permission_denied(
    server: Server, stub: Stub, user_token: Minter, owned: str
) -> None:
    before = session_snapshot(server)
    intruder = await user_token(subject=OTHER)
    with pytest.raises(aio.AioRpcError) as listing:
        await stub.ListSessions(
            sync_service_pb2.ListSessionsRequest(chitty_id=USER), metadata=bearer(intruder)
        )
    assert listing.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert error_info(listing.value).reason == "NOT_OWNER"
    with pytest.raises(aio.AioRpcError) as revoking:
        await stub.RevokeAllSessions(
            sync_service_pb2.RevokeAllSessionsRequest(chitty_id=USER), metadata=bearer(intruder)
        )
    assert revoking.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert session_snapshot(server) == before
    refused = await audit_events(server, "session.revoke_all")
    assert [(e.outcome, e.actor, e.subject) for e in refused] == [("failure", OTHER, USER)]


async def test_an_admin_may_act_on_anyones_sessions(
    stub: Stub, admin_token: str, user_token: Minter, owned: str
) -> None:
    got = await by_name(stub, owned)["GetSession"](admin_token)
    assert got.session.chitty_id == USER
    listed = await stub.ListSessions(
        sync_service_pb2.ListSessionsRequest(chitty_id=USER), metadata=bearer(admin_token)
    )
    assert [s.name for s in listed.sessions] == [owned]
    revoked = await stub.RevokeAllSessions(
        sync_service_pb2.RevokeAllSessionsRequest(chitty_id=USER), metadata=bearer(admin_token)
    )
    assert revoked.revoked_count == 1
