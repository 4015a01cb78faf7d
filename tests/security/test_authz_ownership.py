"""Own versus another person's data, for every RPC whose row says ``Owner.SELF``.

Two people, each with a session (with state), an API key and a permission grant they made.
Person A's own token, and a linked app acting for A with every per-person scope (and
cross_sync), reach A's resources; neither reaches B's: a session, a key or a grant of B's
answers NOT_FOUND (it is not revealed), and naming B's ChittyID is PERMISSION_DENIED. A test
per RPC, generated from the policy table, so a new person-data RPC needs a case here.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc import aio

from chitty.auth.v1 import (
    api_key_service_pb2,
    api_key_service_pb2_grpc,
    permission_service_pb2,
    permission_service_pb2_grpc,
    sync_service_pb2,
    sync_service_pb2_grpc,
)
from chittyauth.app import Server
from chittyauth.config import Config
from chittyauth.domain import policy
from chittyauth.domain.chittyid import mint_official
from tests.conftest import bearer, token_minter
from tests.sessions.helpers import put_state, sync
from tests.support.fixtures import vouching_authority, with_authority

A = mint_official("PEO", random.Random(21))
B = mint_official("PEO", random.Random(22))
SERVER = "chittymcp"
# Every per-person scope, and the right to make keys and grants of one's own (not to check or
# grant for others: authorizations:check / authorizations:grant).
DELEGATE_SCOPES = (*policy.PERSON_SCOPES, policy.API_KEYS_GENERATE, "grant:*")


@pytest.fixture
async def config(config: Config, tmp_path: Path) -> AsyncIterator[Config]:
    async with vouching_authority(tmp_path, A, B) as authority:
        yield with_authority(config, authority)


@dataclass
class Person:
    chitty_id: str
    token: str  # the person's own token (portal), every per-person scope
    app: str  # a linked app acting for the person with every per-person scope
    session: str  # sessions/{id}
    key_id: str
    grant_id: str


@dataclass
class World:
    a: Person
    b: Person
    sessions: sync_service_pb2_grpc.SyncServiceStub
    keys: api_key_service_pb2_grpc.ApiKeyServiceStub
    grants: permission_service_pb2_grpc.PermissionServiceStub


async def _person(server: Server, channel: aio.Channel, chitty_id: str) -> Person:
    mint = token_minter(server)
    first = await mint(
        subject=chitty_id, chitty_id=chitty_id, token_use="portal", scopes=DELEGATE_SCOPES
    )
    sessions = sync_service_pb2_grpc.SyncServiceStub(channel)
    session = (await sync(sessions, first, device_id="laptop")).session
    token = await mint(
        subject=chitty_id, chitty_id=chitty_id, token_use="portal", scopes=DELEGATE_SCOPES,
        session_id=session.session_id,
    )  # fmt: skip
    app = await mint(
        subject=chitty_id, chitty_id=chitty_id, token_use="linked_app", client_id="app-x",
        scopes=DELEGATE_SCOPES, session_id=session.session_id,
    )  # fmt: skip
    await put_state(sessions, token, session.name, b"state", 0, server=SERVER)
    key = await api_key_service_pb2_grpc.ApiKeyServiceStub(channel).CreateApiKey(
        api_key_service_pb2.CreateApiKeyRequest(), metadata=bearer(token)
    )
    grant = await permission_service_pb2_grpc.PermissionServiceStub(channel).GrantPermission(
        permission_service_pb2.GrantPermissionRequest(
            grantee_chitty_id=A if chitty_id == B else B, permission="docs:read"
        ),
        metadata=bearer(token),
    )
    return Person(chitty_id, token, app, session.name, key.api_key.key_id, grant.grant.grant_id)


@pytest.fixture
async def world(server: Server, channel: aio.Channel) -> World:
    return World(
        a=await _person(server, channel, A),
        b=await _person(server, channel, B),
        sessions=sync_service_pb2_grpc.SyncServiceStub(channel),
        keys=api_key_service_pb2_grpc.ApiKeyServiceStub(channel),
        grants=permission_service_pb2_grpc.PermissionServiceStub(channel),
    )


# For each person-data RPC: a call on ``target``'s resource made with ``token``.
Case = Callable[[World, Person, str], Awaitable[Any]]


async def _first(stream: Any) -> Any:
    async for message in stream:
        stream.cancel()
        return message
    return None


def _meta(token: str) -> Any:
    return bearer(token)


CASES: dict[str, tuple[Case, grpc.StatusCode]] = {
    "SyncSession": (
        lambda w, t, tok: w.sessions.SyncSession(
            sync_service_pb2.SyncSessionRequest(name=t.session), metadata=_meta(tok)
        ),
        grpc.StatusCode.NOT_FOUND,
    ),
    "GetSession": (
        lambda w, t, tok: w.sessions.GetSession(
            sync_service_pb2.GetSessionRequest(name=t.session), metadata=_meta(tok)
        ),
        grpc.StatusCode.NOT_FOUND,
    ),
    "ListSessions": (
        lambda w, t, tok: w.sessions.ListSessions(
            sync_service_pb2.ListSessionsRequest(chitty_id=t.chitty_id), metadata=_meta(tok)
        ),
        grpc.StatusCode.PERMISSION_DENIED,
    ),
    "GetSessionState": (
        lambda w, t, tok: w.sessions.GetSessionState(
            sync_service_pb2.GetSessionStateRequest(name=t.session, mcp_server=SERVER),
            metadata=_meta(tok),
        ),
        grpc.StatusCode.NOT_FOUND,
    ),
    "PutSessionState": (
        lambda w, t, tok: w.sessions.PutSessionState(
            sync_service_pb2.PutSessionStateRequest(
                name=t.session, mcp_server=SERVER, data=b"mine now", expected_version=1
            ),
            metadata=_meta(tok),
        ),
        grpc.StatusCode.NOT_FOUND,
    ),
    "WatchSessions": (
        lambda w, t, tok: _first(
            w.sessions.WatchSessions(
                sync_service_pb2.WatchSessionsRequest(name=t.session),
                metadata=_meta(tok),
                timeout=0.5,
            )
        ),
        grpc.StatusCode.NOT_FOUND,
    ),
    "RevokeSession": (
        lambda w, t, tok: w.sessions.RevokeSession(
            sync_service_pb2.RevokeSessionRequest(name=t.session), metadata=_meta(tok)
        ),
        grpc.StatusCode.NOT_FOUND,
    ),
    "RevokeAllSessions": (
        lambda w, t, tok: w.sessions.RevokeAllSessions(
            sync_service_pb2.RevokeAllSessionsRequest(chitty_id=t.chitty_id), metadata=_meta(tok)
        ),
        grpc.StatusCode.PERMISSION_DENIED,
    ),
    "CreateApiKey": (
        lambda w, t, tok: w.keys.CreateApiKey(
            api_key_service_pb2.CreateApiKeyRequest(chitty_id=t.chitty_id), metadata=_meta(tok)
        ),
        grpc.StatusCode.PERMISSION_DENIED,
    ),
    "ListApiKeys": (
        lambda w, t, tok: w.keys.ListApiKeys(
            api_key_service_pb2.ListApiKeysRequest(chitty_id=t.chitty_id), metadata=_meta(tok)
        ),
        grpc.StatusCode.PERMISSION_DENIED,
    ),
    "RevokeApiKey": (
        lambda w, t, tok: w.keys.RevokeApiKey(
            api_key_service_pb2.RevokeApiKeyRequest(key_id=t.key_id), metadata=_meta(tok)
        ),
        grpc.StatusCode.NOT_FOUND,
    ),
    "GrantPermission": (
        lambda w, t, tok: w.grants.GrantPermission(
            permission_service_pb2.GrantPermissionRequest(
                grantor_chitty_id=t.chitty_id,
                grantee_chitty_id=A if t.chitty_id == B else B,
                permission="docs:write",
            ),
            metadata=_meta(tok),
        ),
        grpc.StatusCode.PERMISSION_DENIED,
    ),
    "CheckPermission": (
        lambda w, t, tok: w.grants.CheckPermission(
            permission_service_pb2.CheckPermissionRequest(
                chitty_id=t.chitty_id, permission="docs:read"
            ),
            metadata=_meta(tok),
        ),
        grpc.StatusCode.PERMISSION_DENIED,
    ),
    "ListPermissions": (
        lambda w, t, tok: w.grants.ListPermissions(
            permission_service_pb2.ListPermissionsRequest(chitty_id=t.chitty_id),
            metadata=_meta(tok),
        ),
        grpc.StatusCode.PERMISSION_DENIED,
    ),
    "RevokePermission": (
        lambda w, t, tok: w.grants.RevokePermission(
            permission_service_pb2.RevokePermissionRequest(grant_id=t.grant_id),
            metadata=_meta(tok),
        ),
        grpc.StatusCode.NOT_FOUND,
    ),
}

SELF_OPERATIONS = sorted(
    op for op, rule in policy.POLICY.items() if rule.owner is policy.Owner.SELF
)


def test_every_person_data_rpc_has_a_case() -> None:
    assert sorted(op.rsplit("/", 1)[1] for op in SELF_OPERATIONS) == sorted(CASES)


@pytest.mark.parametrize("method", sorted(CASES))
@pytest.mark.parametrize("as_app", [False, True], ids=["person", "linked_app"])
async def test_own_resource_yes_another_persons_no(
    world: World, server: Server, method: str, as_app: bool
) -> None:
    call, refusal = CASES[method]
    token = world.a.app if as_app else world.a.token
    with pytest.raises(aio.AioRpcError) as caught:
        await call(world, world.b, token)
    assert caught.value.code() == refusal, caught.value.details()

    # The same call on A's own resource succeeds (a watch is admitted and waits for events).
    if method == "WatchSessions":
        with pytest.raises(aio.AioRpcError) as waited:
            await call(world, world.a, token)
        assert waited.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    else:
        await call(world, world.a, token)

    # B's data is as it was.
    state = await world.sessions.GetSessionState(
        sync_service_pb2.GetSessionStateRequest(name=world.b.session, mcp_server=SERVER),
        metadata=bearer(world.b.token),
    )
    assert state.state.data == b"state"
    keys = await world.keys.ListApiKeys(
        api_key_service_pb2.ListApiKeysRequest(), metadata=bearer(world.b.token)
    )
    assert [k.key_id for k in keys.api_keys if not k.HasField("revoke_time")] == [world.b.key_id]
