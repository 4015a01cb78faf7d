"""Every kind of revocation reaches a LocalVerifier: in the snapshot of one started afterwards,
and live while it runs. One revoked API key or deleted client must not kill the stream.

Real server, real dev authority (API keys are made only while it vouches), real verifier over
gRPC; revocations are made through the public RPCs where there is one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc import aio

from chitty.auth.client import AsyncAuthClient, ClientCredentials, StaticToken
from chitty.auth.client.verifier import LocalVerifier, TokenRejected
from chitty.auth.v1 import (
    api_key_service_pb2,
    api_key_service_pb2_grpc,
    auth_service_pb2,
    auth_service_pb2_grpc,
    client_service_pb2,
    client_service_pb2_grpc,
    token_pb2,
)
from chittyauth.app import Server
from chittyauth.config import Config
from chittyauth.domain.revocation import CHANGE_KIND
from chittyauth.rpc.keys import jwks_response
from tests.clients.helpers import OWNER, admin_token
from tests.conftest import bearer
from tests.security.conftest import mint, register
from tests.support.fixtures import vouching_authority, with_authority

RESOURCE = "https://api.example"
Revoker = Callable[[Server, aio.Channel], Awaitable["Affected"]]


@pytest.fixture
async def config(config: Config, tmp_path: Path) -> AsyncIterator[Config]:
    async with vouching_authority(tmp_path, OWNER) as authority:
        yield with_authority(config, authority)


@pytest.fixture
async def channel(server: Server) -> AsyncIterator[aio.Channel]:
    server.revocation_hub.heartbeat_interval_s = 0.2
    async with aio.insecure_channel(server.grpc_target) as chan:
        yield chan


@dataclass(frozen=True)
class Affected:
    """Tokens the revocation must kill, and one of the same kind it must spare."""

    refused: tuple[str, ...]
    spared: str


@contextlib.asynccontextmanager
async def started_verifier(server: Server) -> AsyncIterator[LocalVerifier]:
    """A verifier authenticating as a service client with client credentials."""
    watcher = await register(
        server, scopes=("introspect",), grant_types=("client_credentials",), name="gateway"
    )
    creds = ClientCredentials(watcher.client_id, watcher.secret, scopes=("introspect",))
    client = AsyncAuthClient(server.grpc_target, creds)
    verifier = LocalVerifier(client, issuer=server.config.tokens.issuer, audience=RESOURCE)
    try:
        await verifier.start(ready_timeout_s=5.0)
        yield verifier
    finally:
        await verifier.stop()
        await client.close()


async def refused_within(verifier: LocalVerifier, token: str, bound_s: float) -> TokenRejected:
    deadline = time.monotonic() + bound_s
    while True:
        try:
            await verifier.verify(token)
        except TokenRejected as refused:
            return refused
        assert time.monotonic() < deadline, "the revocation did not reach the verifier in time"
        await asyncio.sleep(0.02)


# -- one revocation of each kind, through the public path where there is one -------------


async def revoke_token(server: Server, channel: aio.Channel) -> Affected:
    token = await mint(server, client_id="app", audience=(RESOURCE,))
    spared = await mint(server, client_id="app", audience=(RESOURCE,))
    await auth_service_pb2_grpc.AuthServiceStub(channel).Revoke(
        auth_service_pb2.RevokeRequest(token=token), metadata=bearer(token)
    )
    return Affected((token,), spared)


async def revoke_session(server: Server, channel: aio.Channel) -> Affected:
    token = await mint(server, client_id="app", audience=(RESOURCE,), session_id="sess-a")
    spared = await mint(server, client_id="app", audience=(RESOURCE,), session_id="sess-b")
    async with server.store.transaction() as tx:
        await server.tokens.revoke_session(tx, "sess-a", tx.now + 3600)
    return Affected((token,), spared)


async def revoke_family(server: Server, channel: aio.Channel) -> Affected:
    token = await mint(server, client_id="app", audience=(RESOURCE,), family_id="fam-a")
    spared = await mint(server, client_id="app", audience=(RESOURCE,), family_id="fam-b")
    async with server.store.transaction() as tx:
        await server.tokens.revoke_family(tx, "fam-a", tx.now + 3600)
    return Affected((token,), spared)


async def _api_key_and_token(channel: aio.Channel, owner: str) -> tuple[str, str, str]:
    """(key, key id, an access token obtained with it for RESOURCE)."""
    keys = api_key_service_pb2_grpc.ApiKeyServiceStub(channel)
    created = await keys.CreateApiKey(
        api_key_service_pb2.CreateApiKeyRequest(scopes=["mcp:read"]), metadata=bearer(owner)
    )
    obtained = await auth_service_pb2_grpc.AuthServiceStub(channel).Authenticate(
        auth_service_pb2.AuthenticateRequest(
            api_key=auth_service_pb2.ApiKeyCredential(api_key=created.key), resources=[RESOURCE]
        )
    )
    return created.key, created.api_key.key_id, obtained.access_token


async def _owner_token(server: Server) -> str:
    return await mint(
        server, subject=OWNER, chitty_id=OWNER, client_id="portal", token_use="portal",
        scopes=("api_keys:generate", "mcp:read"),
    )  # fmt: skip


async def revoke_api_key(server: Server, channel: aio.Channel) -> Affected:
    owner = await _owner_token(server)
    _, key_id, token = await _api_key_and_token(channel, owner)
    _, _, spared = await _api_key_and_token(channel, owner)
    await api_key_service_pb2_grpc.ApiKeyServiceStub(channel).RevokeApiKey(
        api_key_service_pb2.RevokeApiKeyRequest(key_id=key_id), metadata=bearer(owner)
    )
    return Affected((token,), spared)


async def revoke_api_key_with_revoke(server: Server, channel: aio.Channel) -> Affected:
    """RFC 7009 Revoke of the key itself (the key presents itself as the bearer)."""
    owner = await _owner_token(server)
    key, _, token = await _api_key_and_token(channel, owner)
    _, _, spared = await _api_key_and_token(channel, owner)
    await auth_service_pb2_grpc.AuthServiceStub(channel).Revoke(
        auth_service_pb2.RevokeRequest(token=key), metadata=bearer(key)
    )
    return Affected((token,), spared)


async def delete_client(server: Server, channel: aio.Channel) -> Affected:
    doomed = await register(server, grant_types=("client_credentials",), name="doomed")
    kept = await register(server, grant_types=("client_credentials",), name="kept")
    auth = auth_service_pb2_grpc.AuthServiceStub(channel)
    tokens = []
    for client in (doomed, kept):
        reply = await auth.Authenticate(
            auth_service_pb2.AuthenticateRequest(
                client_credentials=auth_service_pb2.ClientCredentials(
                    client_id=client.client_id, client_secret=client.secret
                ),
                resources=[RESOURCE],
            )
        )
        tokens.append(reply.access_token)
    # A token derived from one of the doomed client's (its src chain names the client).
    derived = await mint(
        server, client_id="exchanger", audience=(RESOURCE,),
        source={"client_id": [doomed.client_id]},
    )  # fmt: skip
    await client_service_pb2_grpc.ClientServiceStub(channel).DeleteClient(
        client_service_pb2.DeleteClientRequest(client_id=doomed.client_id),
        metadata=bearer(await admin_token(server)),
    )
    return Affected((tokens[0], derived), tokens[1])


KINDS: dict[str, Revoker] = {
    "token": revoke_token,
    "session": revoke_session,
    "family": revoke_family,
    "api_key": revoke_api_key,
    "api_key_by_revoke": revoke_api_key_with_revoke,
    "client": delete_client,
}


@pytest.mark.parametrize("kind", list(KINDS))
async def test_a_verifier_started_after_the_revocation_refuses_the_token(
    server: Server, channel: aio.Channel, kind: str
) -> None:
    affected = await KINDS[kind](server, channel)
    async with started_verifier(server) as verifier:
        for token in affected.refused:
            with pytest.raises(TokenRejected, match="revoked"):
                await verifier.verify(token)
        assert (await verifier.verify(affected.spared)).client_id
        assert verifier.stream_healthy


async def test_every_kind_revoked_while_the_verifier_runs_arrives_live(
    server: Server, channel: aio.Channel
) -> None:
    async with started_verifier(server) as verifier:
        connects = verifier.stream_connects
        for kind, revoke in KINDS.items():
            affected = await revoke(server, channel)
            for token in affected.refused:
                refused = await refused_within(verifier, token, 2.0)
                assert "revoked" in refused.description, kind
            assert (await verifier.verify(affected.spared)).client_id, kind
        # One stream throughout: no kind ended it.
        assert verifier.stream_connects == connects
        assert verifier.validate_calls == 0


# -- the stream itself ------------------------------------------------------------------


async def _events_until_heartbeat(
    channel: aio.Channel, token: str, cursor: str = ""
) -> tuple[list[token_pb2.RevocationEvent], str]:
    stream = auth_service_pb2_grpc.AuthServiceStub(channel).WatchRevocations(
        auth_service_pb2.WatchRevocationsRequest(cursor=cursor), metadata=bearer(token)
    )
    events: list[token_pb2.RevocationEvent] = []

    async def read() -> str:
        async for message in stream:
            if message.HasField("event"):
                events.append(message.event)
            else:
                return str(message.cursor)
        raise AssertionError("the stream ended")

    try:
        return events, await asyncio.wait_for(read(), 5)
    finally:
        stream.cancel()


async def test_the_snapshot_names_every_kind_with_its_contract_kind(
    server: Server, channel: aio.Channel
) -> None:
    for revoke in KINDS.values():
        await revoke(server, channel)
    watcher = await mint(server, token_use="service", client_id="gw", scopes=("introspect",))
    events, _ = await _events_until_heartbeat(channel, watcher)
    kinds = {event.kind for event in events}
    assert kinds == {
        token_pb2.REVOCATION_KIND_TOKEN,
        token_pb2.REVOCATION_KIND_SESSION,
        token_pb2.REVOCATION_KIND_REFRESH_FAMILY,
        token_pb2.REVOCATION_KIND_API_KEY,
        token_pb2.REVOCATION_KIND_CLIENT,
    }
    # Each API key revoked (by either path) is named both as a key and as a client.
    keys = {e.value for e in events if e.kind == token_pb2.REVOCATION_KIND_API_KEY}
    clients = {e.value for e in events if e.kind == token_pb2.REVOCATION_KIND_CLIENT}
    assert len(keys) == 2
    assert {f"apikey:{key}" for key in keys} <= clients


async def test_a_change_of_an_unknown_kind_is_skipped_not_fatal(
    server: Server, channel: aio.Channel, caplog: pytest.LogCaptureFixture
) -> None:
    """A newer replica's kind in the change log: the stream skips it and goes on."""
    watcher = await mint(server, token_use="service", client_id="gw", scopes=("introspect",))
    _, cursor = await _events_until_heartbeat(channel, watcher)
    async with server.store.transaction() as tx:
        await tx.append_change(
            CHANGE_KIND, "device:d-1", {"kind": "device", "value": "d-1", "until": tx.now + 60}
        )
        await tx.append_change(CHANGE_KIND, "broken", {"kind": "jti"})
    affected = await revoke_token(server, channel)
    with caplog.at_level(logging.DEBUG, logger="chittyauth.rpc.revocations"):
        events, _ = await _events_until_heartbeat(channel, watcher, cursor)
    assert [e.kind for e in events] == [token_pb2.REVOCATION_KIND_TOKEN]
    assert server.tokens.signed_claims(affected.refused[0])["jti"] == events[0].value  # type: ignore[index]
    assert any("skipping a revocation" in r.getMessage() for r in caplog.records)


class NewerServer(auth_service_pb2_grpc.AuthServiceServicer):
    """Stands in for a newer ChittyAuth: its stream carries a kind this verifier predates."""

    def __init__(self, real: Server, revoked_jti: str) -> None:
        self._real = real
        self._jti = revoked_jti

    async def GetJwks(self, request: Any, context: Any) -> auth_service_pb2.GetJwksResponse:
        return jwks_response(self._real.keys)

    async def WatchRevocations(
        self, request: Any, context: Any
    ) -> AsyncIterator[auth_service_pb2.WatchRevocationsResponse]:
        far = int(time.time()) + 3600
        for kind, value in ((99, "something-new"), (token_pb2.REVOCATION_KIND_TOKEN, self._jti)):
            yield auth_service_pb2.WatchRevocationsResponse(
                event=token_pb2.RevocationEvent(
                    kind=kind,  # type: ignore[arg-type]
                    value=value,
                    expire_time={"seconds": far},  # type: ignore[arg-type]
                )
            )
        while True:
            yield auth_service_pb2.WatchRevocationsResponse(
                cursor="c1",
                heartbeat_time={"seconds": int(time.time())},  # type: ignore[arg-type]
            )
            await asyncio.sleep(0.2)


async def test_a_verifier_skips_a_kind_it_does_not_know(
    server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    revoked = await mint(server, client_id="app", audience=(RESOURCE,))
    live = await mint(server, client_id="app", audience=(RESOURCE,))
    jti = server.tokens.signed_claims(revoked)["jti"]  # type: ignore[index]
    newer = aio.server()
    auth_service_pb2_grpc.add_AuthServiceServicer_to_server(NewerServer(server, jti), newer)
    port = newer.add_insecure_port("127.0.0.1:0")
    await newer.start()
    client = AsyncAuthClient(f"127.0.0.1:{port}", StaticToken("unused"))
    verifier = LocalVerifier(client, issuer=server.config.tokens.issuer, audience=RESOURCE)
    try:
        with caplog.at_level(logging.WARNING, logger="chitty.auth.client.verifier"):
            await verifier.start(ready_timeout_s=5.0)
        with pytest.raises(TokenRejected, match="revoked"):
            await verifier.verify(revoked)
        assert (await verifier.verify(live)).client_id == "app"
        assert verifier.stream_connects == 1
        assert any("does not know" in r.getMessage() for r in caplog.records)
    finally:
        await verifier.stop()
        await client.close()
        await newer.stop(None)


async def test_watching_after_a_client_deletion_is_not_internal(
    server: Server, channel: aio.Channel
) -> None:
    await delete_client(server, channel)
    watcher = await mint(server, token_use="service", client_id="gw", scopes=("introspect",))
    try:
        events, cursor = await _events_until_heartbeat(channel, watcher)
    except grpc.RpcError as error:  # the base behaviour: INTERNAL mid-snapshot
        pytest.fail(f"the stream ended {error.code()}")
    assert cursor
    assert token_pb2.REVOCATION_KIND_CLIENT in {e.kind for e in events}
