"""KeyService over a real server and channel, with real access tokens."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2
from grpc import aio

from chitty.auth.v1 import key_service_pb2, key_service_pb2_grpc, signing_key_pb2
from chittyauth.app import Server
from chittyauth.config import Config
from chittyauth.rpc.errors import STATUS_DETAILS_KEY
from tests.conftest import bearer
from tests.keys.helpers import audit_events, db_rows

NEXT = signing_key_pb2.KEY_STATE_NEXT
ACTIVE = signing_key_pb2.KEY_STATE_ACTIVE
RETIRED = signing_key_pb2.KEY_STATE_RETIRED
ES256 = signing_key_pb2.KEY_ALGORITHM_ES256
Mint = Callable[..., Awaitable[str]]
HS256 = signing_key_pb2.KEY_ALGORITHM_HS256


def reason_of(error: aio.AioRpcError) -> str:
    raw = dict(error.trailing_metadata() or ())[STATUS_DETAILS_KEY]
    info = error_details_pb2.ErrorInfo()
    assert status_pb2.Status.FromString(raw).details[0].Unpack(info)
    return str(info.reason)


@pytest.fixture
def stub(channel: aio.Channel) -> key_service_pb2_grpc.KeyServiceStub:
    return key_service_pb2_grpc.KeyServiceStub(channel)


async def test_calls_without_a_valid_token_are_unauthenticated(
    server: Server, stub: key_service_pb2_grpc.KeyServiceStub
) -> None:
    before = db_rows(server.config.store.path)
    with pytest.raises(aio.AioRpcError) as no_token:
        await stub.ListSigningKeys(key_service_pb2.ListSigningKeysRequest())
    assert no_token.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert reason_of(no_token.value) == "MISSING_CREDENTIALS"
    with pytest.raises(aio.AioRpcError) as bad_token:
        await stub.RotateSigningKey(
            key_service_pb2.RotateSigningKeyRequest(), metadata=bearer("not-a-token")
        )
    assert bad_token.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert db_rows(server.config.store.path) == before


async def test_non_admins_are_refused_and_refused_rotations_audited(
    server: Server, stub: key_service_pb2_grpc.KeyServiceStub, token_for: Mint
) -> None:
    token = await token_for(subject="user-7", scopes=["mcp:read", "mcp:write"])
    before = db_rows(server.config.store.path)
    with pytest.raises(aio.AioRpcError) as listing:
        await stub.ListSigningKeys(key_service_pb2.ListSigningKeysRequest(), metadata=bearer(token))
    assert listing.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert reason_of(listing.value) == "INSUFFICIENT_SCOPE"
    with pytest.raises(aio.AioRpcError) as rotating:
        await stub.RotateSigningKey(
            key_service_pb2.RotateSigningKeyRequest(),
            metadata=(*bearer(token), ("x-request-id", "req-denied")),
        )
    assert rotating.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert db_rows(server.config.store.path) == before
    [failure] = await audit_events(server.store, "key.rotated")
    assert (failure.actor, failure.outcome, failure.request_id) == (
        "user-7",
        "failure",
        "req-denied",
    )


@pytest.mark.parametrize("scope", ["chittyauth:admin", "keys:admin"])
async def test_admins_list_and_rotate(
    server: Server, stub: key_service_pb2_grpc.KeyServiceStub, token_for: Mint, scope: str
) -> None:
    token = await token_for(subject="ops-1", scopes=[scope])
    listed = await stub.ListSigningKeys(
        key_service_pb2.ListSigningKeysRequest(), metadata=bearer(token)
    )
    by_state = {key.state: key for key in listed.keys}
    assert set(by_state) == {ACTIVE, NEXT}
    assert {key.algorithm for key in listed.keys} == {ES256}
    assert by_state[NEXT].HasField("activate_time")
    assert not by_state[ACTIVE].HasField("retire_time")

    rotated = await stub.RotateSigningKey(
        key_service_pb2.RotateSigningKeyRequest(), metadata=bearer(token)
    )
    assert rotated.active_key.kid == by_state[NEXT].kid
    assert rotated.active_key.state == ACTIVE
    assert rotated.retired_key.kid == by_state[ACTIVE].kid
    assert rotated.retired_key.state == RETIRED
    delete_after = rotated.retired_key.delete_time.seconds - rotated.retired_key.retire_time.seconds
    assert delete_after == server.keys.max_token_lifetime_s + server.config.tokens.leeway_s
    assert rotated.next_key.state == NEXT
    assert server.keys.signer().kid == rotated.active_key.kid

    # The caller's token was signed by the key that just retired, and still works.
    relisted = await stub.ListSigningKeys(
        key_service_pb2.ListSigningKeysRequest(), metadata=bearer(token)
    )
    assert relisted.keys[0].kid == rotated.next_key.kid  # newest first
    assert {key.kid: key.state for key in relisted.keys} == {
        rotated.next_key.kid: NEXT,
        rotated.active_key.kid: ACTIVE,
        rotated.retired_key.kid: RETIRED,
    }
    [event] = await audit_events(server.store, "key.rotated")
    assert (event.actor, event.outcome) == ("ops-1", "success")


async def test_rotating_another_algorithm_and_filtering_by_it(
    server: Server, stub: key_service_pb2_grpc.KeyServiceStub, admin_token: str
) -> None:
    token = admin_token
    empty = await stub.ListSigningKeys(
        key_service_pb2.ListSigningKeysRequest(algorithm=HS256), metadata=bearer(token)
    )
    assert list(empty.keys) == []
    rotated = await stub.RotateSigningKey(
        key_service_pb2.RotateSigningKeyRequest(algorithm=HS256), metadata=bearer(token)
    )
    assert not rotated.HasField("retired_key")
    assert rotated.active_key.algorithm == HS256
    listed = await stub.ListSigningKeys(
        key_service_pb2.ListSigningKeysRequest(algorithm=HS256), metadata=bearer(token)
    )
    assert {key.kid for key in listed.keys} == {rotated.active_key.kid, rotated.next_key.kid}
    assert server.keys.signer().algorithm == "ES256"  # signing is unchanged


async def test_an_unknown_algorithm_is_invalid(
    stub: key_service_pb2_grpc.KeyServiceStub, admin_token: str
) -> None:
    token = admin_token
    for call, request in (
        (stub.ListSigningKeys, key_service_pb2.ListSigningKeysRequest(algorithm=99)),  # type: ignore[arg-type]
        (stub.RotateSigningKey, key_service_pb2.RotateSigningKeyRequest(algorithm=99)),  # type: ignore[arg-type]
    ):
        with pytest.raises(aio.AioRpcError) as caught:
            await call(request, metadata=bearer(token))  # type: ignore[operator]
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert reason_of(caught.value) == "UNSUPPORTED_ALGORITHM"


async def test_keys_survive_a_restart(config: Config) -> None:
    first = Server(config)
    await first.start()
    try:
        kids = {info.kid for info in first.keys.infos()}
        signing = first.keys.signer().kid
    finally:
        await first.stop(grace=0.5)
    second = Server(config)
    await second.start()
    try:
        assert {info.kid for info in second.keys.infos()} == kids
        assert second.keys.signer().kid == signing
    finally:
        await second.stop(grace=0.5)
