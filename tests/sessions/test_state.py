"""Session state: compare-and-set writes, size limit, and encryption at rest."""

from __future__ import annotations

import asyncio
import json
import secrets
import sqlite3
from pathlib import Path

import grpc
import pytest
from grpc import aio

from chitty.auth.v1 import sync_service_pb2, sync_service_pb2_grpc
from chittyauth.app import Server
from chittyauth.clock import FakeClock
from chittyauth.config import Config, SessionConfig, replace
from chittyauth.domain.errors import FailedPrecondition
from chittyauth.domain.sync_state import key_encryption_key
from tests.conftest import bearer
from tests.sessions.conftest import Minter
from tests.sessions.helpers import audit_events, error_info, put_state, rows, sync

Stub = sync_service_pb2_grpc.SyncServiceStub


async def get_state(
    stub: Stub, token: str, name: str, server: str = "chittymcp"
) -> sync_service_pb2.GetSessionStateResponse:
    reply: sync_service_pb2.GetSessionStateResponse = await stub.GetSessionState(
        sync_service_pb2.GetSessionStateRequest(name=name, mcp_server=server),
        metadata=bearer(token),
    )
    return reply


async def new_session(stub: Stub, token: str) -> str:
    return (await sync(stub, token, device_id="laptop")).session.name


async def test_a_never_written_state_is_version_zero(stub: Stub, user_token: Minter) -> None:
    token = await user_token()
    name = await new_session(stub, token)
    state = (await get_state(stub, token, name)).state
    assert (state.version, state.data, state.mcp_server) == (0, b"", "chittymcp")


async def test_two_devices_racing_one_wins_the_other_merges_and_retries(
    server: Server, stub: Stub, user_token: Minter
) -> None:
    token = await user_token()
    name = await new_session(stub, token)
    await put_state(stub, token, name, json.dumps({"base": 1}).encode(), 0)

    async def write(device_id: str, key: str) -> sync_service_pb2.PutSessionStateResponse:
        data = json.dumps({"base": 1, key: device_id}).encode()
        return await put_state(stub, token, name, data, 1, device_id=device_id)

    outcomes = await asyncio.gather(
        write("laptop", "from_laptop"), write("phone", "from_phone"), return_exceptions=True
    )
    wins = [o for o in outcomes if isinstance(o, sync_service_pb2.PutSessionStateResponse)]
    losses = [o for o in outcomes if isinstance(o, aio.AioRpcError)]
    assert len(wins) == 1
    assert len(losses) == 1
    assert wins[0].state.version == 2
    loss = losses[0]
    assert loss.code() == grpc.StatusCode.ABORTED
    info = error_info(loss)
    assert info.reason == "VERSION_CONFLICT"
    assert info.metadata["current_version"] == "2"

    # The loser re-reads, merges its change into the winner's and retries on that version.
    loser = "phone" if wins[0].state.updated_by_device_id == "laptop" else "laptop"
    current = (await get_state(stub, token, name)).state
    merged = {**json.loads(current.data), f"from_{loser}": loser}
    retried = await put_state(
        stub, token, name, json.dumps(merged).encode(), current.version, device_id=loser
    )
    assert retried.state.version == 3
    final = json.loads((await get_state(stub, token, name)).state.data)
    assert final == {"base": 1, "from_laptop": "laptop", "from_phone": "phone"}
    conflicts = [
        e for e in await audit_events(server, "session.state.put") if e.outcome == "failure"
    ]
    assert [e.attributes["reason"] for e in conflicts] == ["VERSION_CONFLICT"]


async def test_creating_twice_with_version_zero_conflicts(stub: Stub, user_token: Minter) -> None:
    token = await user_token()
    name = await new_session(stub, token)
    await put_state(stub, token, name, b"first", 0)
    with pytest.raises(aio.AioRpcError) as caught:
        await put_state(stub, token, name, b"second", 0)
    assert caught.value.code() == grpc.StatusCode.ABORTED
    assert error_info(caught.value).metadata["current_version"] == "1"
    assert (await get_state(stub, token, name)).state.data == b"first"


async def test_twenty_concurrent_writers_lose_no_write(
    server: Server, stub: Stub, user_token: Minter
) -> None:
    token = await user_token()
    name = await new_session(stub, token)
    successes = 0
    refusals: list[grpc.StatusCode] = []

    async def writer(n: int) -> None:
        nonlocal successes
        while True:
            current = (await get_state(stub, token, name)).state
            items = json.loads(current.data) if current.data else []
            try:
                await put_state(
                    stub, token, name, json.dumps([*items, n]).encode(), current.version
                )
            except aio.AioRpcError as exc:
                refusals.append(exc.code())
                continue
            successes += 1
            return

    await asyncio.gather(*(writer(n) for n in range(20)))
    assert set(refusals) <= {grpc.StatusCode.ABORTED}
    conflicts = len(refusals)
    final = (await get_state(stub, token, name)).state
    assert successes == 20
    assert final.version == successes
    assert sorted(json.loads(final.data)) == list(range(20))
    sid = name.removeprefix("sessions/")
    changed = rows(
        server,
        "SELECT COUNT(*) FROM changes WHERE kind = 'session.state_changed' AND key = ?",
        (sid,),
    )
    assert changed == [(20,)]
    assert conflicts == len(
        [e for e in await audit_events(server, "session.state.put") if e.outcome == "failure"]
    )


async def test_same_version_writers_exactly_one_succeeds(stub: Stub, user_token: Minter) -> None:
    token = await user_token()
    name = await new_session(stub, token)
    outcomes = await asyncio.gather(
        *(put_state(stub, token, name, f"w{n}".encode(), 0) for n in range(20)),
        return_exceptions=True,
    )
    wins = [o for o in outcomes if isinstance(o, sync_service_pb2.PutSessionStateResponse)]
    assert len(wins) == 1
    assert all(
        isinstance(o, aio.AioRpcError) and o.code() == grpc.StatusCode.ABORTED
        for o in outcomes
        if o not in wins
    )
    final = (await get_state(stub, token, name)).state
    assert (final.version, final.data) == (1, wins[0].state.data)


async def test_state_over_the_limit_is_invalid_argument(
    server: Server, stub: Stub, user_token: Minter
) -> None:
    token = await user_token()
    name = await new_session(stub, token)
    limit = server.config.sessions.max_state_bytes
    assert limit == 64 * 1024
    with pytest.raises(aio.AioRpcError) as caught:
        await put_state(stub, token, name, b"x" * (limit + 1), 0)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    info = error_info(caught.value)
    assert info.reason == "STATE_TOO_LARGE"
    assert info.metadata["max_bytes"] == str(limit)
    assert rows(server, "SELECT COUNT(*) FROM session_states") == [(0,)]
    exact = await put_state(stub, token, name, b"x" * limit, 0)
    assert exact.state.version == 1


@pytest.mark.parametrize(
    ("mcp_server", "expected", "reason"),
    [
        ("", 0, "INVALID_MCP_SERVER"),
        ("UPPER", 0, "INVALID_MCP_SERVER"),
        ("ok", -1, "INVALID_EXPECTED_VERSION"),
    ],
)
async def test_bad_state_requests_are_invalid_argument(
    stub: Stub, user_token: Minter, mcp_server: str, expected: int, reason: str
) -> None:
    token = await user_token()
    name = await new_session(stub, token)
    with pytest.raises(aio.AioRpcError) as caught:
        await put_state(stub, token, name, b"x", expected, server=mcp_server)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_info(caught.value).reason == reason


async def test_writing_state_attaches_the_server_and_emits_its_version(
    server: Server, stub: Stub, user_token: Minter
) -> None:
    token = await user_token()
    name = await new_session(stub, token)
    await put_state(stub, token, name, b"a", 0, server="chittychat", device_id="laptop")
    session = await stub.GetSession(
        sync_service_pb2.GetSessionRequest(name=name), metadata=bearer(token)
    )
    assert list(session.session.mcp_servers) == ["chittychat"]
    payloads = [
        json.loads(p)
        for (p,) in rows(server, "SELECT payload FROM changes WHERE kind = 'session.state_changed'")
    ]
    assert payloads == [
        {
            "session_id": name.removeprefix("sessions/"),
            "chitty_id": session.session.chitty_id,
            "mcp_server": "chittychat",
            "state_version": 1,
            "device_id": "laptop",
        }
    ]


async def test_the_database_never_holds_the_plaintext(
    server: Server, stub: Stub, user_token: Minter
) -> None:
    token = await user_token()
    name = await new_session(stub, token)
    marker = f"PLAINTEXT-{secrets.token_hex(16)}".encode()
    for version in range(3):
        await put_state(stub, token, name, marker + b" v" + str(version).encode(), version)
    assert (await get_state(stub, token, name)).state.data == marker + b" v2"
    db = Path(server.config.store.path)
    files = [db, db.with_name(db.name + "-wal")]
    assert files[1].exists()
    for path in files:
        assert marker not in path.read_bytes(), path
    ((sealed, key_id),) = rows(server, "SELECT sealed, key_id FROM session_states")
    assert len(sealed) == 12 + len(marker) + 3 + 16  # nonce ‖ ciphertext ‖ GCM tag
    assert key_id.startswith("sk_")


async def test_rotated_keys_keep_old_state_readable_across_restarts(
    config: Config, clock: FakeClock, user_token: Minter, server: Server, stub: Stub
) -> None:
    token = await user_token()
    name = await new_session(stub, token)
    await put_state(stub, token, name, b"under the first key", 0, server="one")
    await put_state(stub, token, name, b"also first", 0, server="two")
    first_key = server.sessions._keyring.current_key_id
    new_key = await server.sessions.rotate_state_key(actor="test-admin")
    assert new_key != first_key
    await put_state(stub, token, name, b"under the second key", 1, server="two")
    keys = dict(rows(server, "SELECT mcp_server, key_id FROM session_states"))
    assert keys == {"one": first_key, "two": new_key}
    assert (await get_state(stub, token, name, "one")).state.data == b"under the first key"
    assert [e.resource for e in await audit_events(server, "session.state_key.rotate")] == [new_key]
    await server.stop(grace=0.5)

    again = Server(config, clock=clock)
    await again.start()
    try:
        async with aio.insecure_channel(again.grpc_target) as channel:
            stub2 = sync_service_pb2_grpc.SyncServiceStub(channel)
            one = (await get_state(stub2, token, name, "one")).state
            two = (await get_state(stub2, token, name, "two")).state
        assert (one.data, two.data, two.version) == (
            b"under the first key",
            b"under the second key",
            2,
        )
    finally:
        await again.stop(grace=0.5)


async def test_a_blob_moved_to_another_row_does_not_decrypt(
    server: Server, stub: Stub, user_token: Minter
) -> None:
    token = await user_token()
    name = await new_session(stub, token)
    await put_state(stub, token, name, b"secret of one", 0, server="one")
    await put_state(stub, token, name, b"secret of two", 0, server="two")
    conn = sqlite3.connect(server.config.store.path)
    try:
        conn.execute(
            "UPDATE session_states SET sealed ="
            " (SELECT sealed FROM session_states WHERE mcp_server = 'one')"
            " WHERE mcp_server = 'two'"
        )
        conn.commit()
    finally:
        conn.close()
    with pytest.raises(aio.AioRpcError) as caught:
        await get_state(stub, token, name, "two")
    assert caught.value.code() == grpc.StatusCode.DATA_LOSS
    assert error_info(caught.value).reason == "STATE_UNREADABLE"
    assert b"secret" not in (caught.value.details() or "").encode()


async def test_a_different_state_key_refuses_to_start(
    config: Config, clock: FakeClock, server: Server
) -> None:
    await server.stop(grace=0.5)
    changed = replace(config, sessions=SessionConfig(state_encryption_key="ab" * 32))
    other = Server(changed, clock=clock)
    with pytest.raises(FailedPrecondition) as caught:
        await other.start()
    assert caught.value.reason == "STATE_KEY_MISMATCH"
    await other.stop(grace=0.5)


def test_production_needs_a_well_formed_state_key() -> None:
    with pytest.raises(FailedPrecondition) as missing:
        key_encryption_key(SessionConfig(), production=True)
    assert missing.value.reason == "STATE_KEY_MISSING"
    with pytest.raises(FailedPrecondition) as short:
        key_encryption_key(SessionConfig(state_encryption_key="abcd"), production=True)
    assert short.value.reason == "STATE_KEY_INVALID"
    key = key_encryption_key(SessionConfig(state_encryption_key="0f" * 32), production=True)
    assert key == bytes.fromhex("0f" * 32)
