"""ApiKeyService over a real server, the sk_live_ format, and the in-memory key registry."""

from __future__ import annotations

import base64
import re
import time
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import timestamp_pb2
from grpc import aio

from chitty.auth.v1 import (
    api_key_service_pb2,
    api_key_service_pb2_grpc,
    auth_service_pb2,
    auth_service_pb2_grpc,
    token_pb2,
)
from chittyauth.app import Server
from chittyauth.clock import FakeClock
from chittyauth.config import Config
from chittyauth.domain import ids
from chittyauth.domain.apikeys import is_well_formed, new_api_key
from tests.clients.helpers import OTHER, OWNER, audit_events, reason, running, sql_all
from tests.conftest import bearer
from tests.support.fixtures import vouching_authority, with_authority

Mint = Callable[..., Awaitable[str]]
pb = api_key_service_pb2
KEY_SHAPE = re.compile(r"sk_live_[A-Za-z0-9_-]{43}")


@pytest.fixture
async def config(config: Config, tmp_path: Path) -> AsyncIterator[Config]:
    """Keys are made for ChittyIDs only while the authority vouches for them (fail closed)."""
    async with vouching_authority(tmp_path, OWNER, OTHER) as authority:
        yield with_authority(config, authority)


@pytest.fixture
def stub(channel: aio.Channel) -> api_key_service_pb2_grpc.ApiKeyServiceStub:
    return api_key_service_pb2_grpc.ApiKeyServiceStub(channel)


@pytest.fixture
async def owner_token(token_for: Mint) -> str:
    """A person holding api_keys:generate (and mcp:read, to pass on)."""
    return await token_for(
        subject=OWNER, chitty_id=OWNER, token_use="portal",
        scopes=("api_keys:generate", "mcp:read"),
    )  # fmt: skip


async def refused(call: Awaitable[Any]) -> aio.AioRpcError:
    with pytest.raises(aio.AioRpcError) as caught:
        await call
    return caught.value


# -- the format ---------------------------------------------------------------------------


def test_key_format_is_the_historical_one() -> None:
    key = new_api_key()
    assert KEY_SHAPE.fullmatch(key)
    assert len(key) == len("sk_live_") + 43
    raw = base64.urlsafe_b64decode(key[8:] + "=")
    assert len(raw) == 32
    assert zlib.crc32(raw[:28]).to_bytes(4, "big") == raw[28:]
    assert is_well_formed(key)


def test_typos_are_caught_by_the_checksum() -> None:
    key = new_api_key()
    body = key[8:]
    flipped = body[:10] + ("A" if body[10] != "A" else "B") + body[11:]
    # The last character holds two unused bits: a different spelling of the same bytes.
    last = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    non_canonical = body[:-1] + last[last.index(body[-1]) | 1]
    for bad in (
        "sk_live_" + flipped,
        key[:-1],
        key + "A",
        "sk_test_" + body,
        "sk_live_" + "!" * 43,
        "",
    ):
        assert not is_well_formed(bad), bad
    if non_canonical != body:
        assert not is_well_formed("sk_live_" + non_canonical)


# -- CreateApiKey -------------------------------------------------------------------------


async def test_create_returns_the_key_once(
    stub: api_key_service_pb2_grpc.ApiKeyServiceStub,
    channel: aio.Channel,
    server: Server,
    owner_token: str,
) -> None:
    reply = await stub.CreateApiKey(
        pb.CreateApiKeyRequest(display_name="laptop"), metadata=bearer(owner_token)
    )
    key = reply.key
    assert KEY_SHAPE.fullmatch(key)
    meta = reply.api_key
    assert meta.chitty_id == OWNER
    assert list(meta.scopes) == ["read"]
    assert meta.key_hint == key[:12]
    assert meta.display_name == "laptop"
    assert meta.key_id.startswith("key_")
    assert not meta.HasField("expire_time")
    assert not meta.HasField("revoke_time")

    record = server.api_keys.check(key)
    assert record is not None
    assert record.key_id == meta.key_id
    assert record.status(time.time()) == "active"
    stored = sql_all(server.config.store.path, "SELECT key_hash, chitty_id FROM api_keys")
    assert stored == [(ids.secret_hash(key), OWNER)]

    # The key authenticates as its owner, with its scopes.
    auth = auth_service_pb2_grpc.AuthServiceStub(channel)
    validation = await auth.Validate(auth_service_pb2.ValidateRequest(token=key))
    assert validation.active
    assert validation.claims.chitty_id == OWNER
    assert list(validation.claims.scopes) == ["read"]

    [event] = await audit_events(server, "apikey.created")
    assert (event.actor, event.subject, event.outcome) == (OWNER, OWNER, "success")
    assert key not in repr(event)
    assert key[:12] not in repr(event)


async def test_create_needs_a_token_and_the_generate_scope(
    stub: api_key_service_pb2_grpc.ApiKeyServiceStub, server: Server, token_for: Mint
) -> None:
    error = await refused(stub.CreateApiKey(pb.CreateApiKeyRequest()))
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    plain = await token_for(
        subject=OWNER, chitty_id=OWNER, token_use="portal", scopes=("mcp:read",)
    )
    error = await refused(stub.CreateApiKey(pb.CreateApiKeyRequest(), metadata=bearer(plain)))
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert reason(error) == "INSUFFICIENT_SCOPE"
    [event] = await audit_events(server, "apikey.created")
    assert (event.outcome, event.attributes["reason"]) == ("failure", "INSUFFICIENT_SCOPE")


async def test_scopes_are_bounded_by_the_creator(
    stub: api_key_service_pb2_grpc.ApiKeyServiceStub, owner_token: str, admin_token: str
) -> None:
    reply = await stub.CreateApiKey(
        pb.CreateApiKeyRequest(scopes=["read", "mcp:read"]), metadata=bearer(owner_token)
    )
    assert list(reply.api_key.scopes) == ["read", "mcp:read"]
    error = await refused(
        stub.CreateApiKey(
            pb.CreateApiKeyRequest(scopes=["chittyauth:admin"]), metadata=bearer(owner_token)
        )
    )
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    reply = await stub.CreateApiKey(
        pb.CreateApiKeyRequest(chitty_id=OWNER, scopes=["mcp:write"]), metadata=bearer(admin_token)
    )
    assert list(reply.api_key.scopes) == ["mcp:write"]


async def test_only_an_admin_names_another_owner(
    stub: api_key_service_pb2_grpc.ApiKeyServiceStub,
    owner_token: str,
    admin_token: str,
    token_for: Mint,
) -> None:
    error = await refused(
        stub.CreateApiKey(pb.CreateApiKeyRequest(chitty_id=OTHER), metadata=bearer(owner_token))
    )
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert reason(error) == "NOT_OWNER"
    reply = await stub.CreateApiKey(
        pb.CreateApiKeyRequest(chitty_id=OTHER), metadata=bearer(admin_token)
    )
    assert reply.api_key.chitty_id == OTHER
    # The admin token's subject is not a ChittyID: it must name an owner.
    error = await refused(stub.CreateApiKey(pb.CreateApiKeyRequest(), metadata=bearer(admin_token)))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert reason(error) == "CHITTY_ID_REQUIRED"
    error = await refused(
        stub.CreateApiKey(
            pb.CreateApiKeyRequest(chitty_id="not-an-id"), metadata=bearer(admin_token)
        )
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert reason(error) == "INVALID_CHITTY_ID"


@pytest.mark.parametrize(
    "fields",
    [
        {"scopes": ["has space"]},
        {"scopes": [f"s{i}" for i in range(51)]},
        {"display_name": "x" * 201},
        {"display_name": "line\nbreak"},
        {"expire_time": timestamp_pb2.Timestamp(seconds=1)},
        {"expire_time": timestamp_pb2.Timestamp(seconds=int(time.time()) + 20 * 366 * 86400)},
    ],
)
async def test_bad_input_is_invalid_argument(
    stub: api_key_service_pb2_grpc.ApiKeyServiceStub, admin_token: str, fields: dict[str, Any]
) -> None:
    error = await refused(
        stub.CreateApiKey(
            pb.CreateApiKeyRequest(chitty_id=OWNER, **fields), metadata=bearer(admin_token)
        )
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_expiry_is_told_apart_from_revocation(config: Config) -> None:
    clock = FakeClock(time.time())
    async with running(config, clock) as server, aio.insecure_channel(server.grpc_target) as chan:
        async with server.store.transaction() as tx:
            issued = await server.tokens.issue(
                tx, subject=OWNER, chitty_id=OWNER, client_id="t", token_use="portal",
                scopes=("api_keys:generate",),
            )  # fmt: skip
        stub = api_key_service_pb2_grpc.ApiKeyServiceStub(chan)
        expiring = await stub.CreateApiKey(
            pb.CreateApiKeyRequest(
                expire_time=timestamp_pb2.Timestamp(seconds=int(clock.now()) + 60)
            ),
            metadata=bearer(issued.token),
        )
        revoked = await stub.CreateApiKey(pb.CreateApiKeyRequest(), metadata=bearer(issued.token))
        await stub.RevokeApiKey(
            pb.RevokeApiKeyRequest(key_id=revoked.api_key.key_id), metadata=bearer(issued.token)
        )
        assert expiring.api_key.expire_time.seconds == int(clock.now()) + 60
        clock.advance(120)

        exp_record = server.api_keys.check(expiring.key)
        rev_record = server.api_keys.check(revoked.key)
        assert exp_record is not None
        assert rev_record is not None
        assert exp_record.status(clock.now()) == "expired"
        assert rev_record.status(clock.now()) == "revoked"
        auth = auth_service_pb2_grpc.AuthServiceStub(chan)
        for key, expected in (
            (expiring.key, token_pb2.INACTIVE_REASON_EXPIRED),
            (revoked.key, token_pb2.INACTIVE_REASON_REVOKED),
        ):
            answer = await auth.Validate(auth_service_pb2.ValidateRequest(token=key))
            assert not answer.active
            assert answer.inactive_reason == expected
        # A malformed key or a bad checksum is refused without a lookup.
        assert server.api_keys.check(expiring.key[:-1] + "x") is None
        assert server.api_keys.check("sk_live_short") is None


# -- ListApiKeys --------------------------------------------------------------------------


async def test_list_own_keys_in_pages(
    stub: api_key_service_pb2_grpc.ApiKeyServiceStub, owner_token: str, admin_token: str
) -> None:
    made = []
    for i in range(5):
        reply = await stub.CreateApiKey(
            pb.CreateApiKeyRequest(display_name=f"k{i}"), metadata=bearer(owner_token)
        )
        made.append(reply.api_key.key_id)
    await stub.CreateApiKey(pb.CreateApiKeyRequest(chitty_id=OTHER), metadata=bearer(admin_token))
    await stub.RevokeApiKey(pb.RevokeApiKeyRequest(key_id=made[1]), metadata=bearer(owner_token))

    seen: list[str] = []
    token = ""
    pages = 0
    while True:
        reply = await stub.ListApiKeys(
            pb.ListApiKeysRequest(page_size=2, page_token=token, include_revoked=True),
            metadata=bearer(owner_token),
        )
        pages += 1
        seen.extend(k.key_id for k in reply.api_keys)
        for listed in reply.api_keys:
            assert listed.key_hint.startswith("sk_live_")
        token = reply.next_page_token
        if not token:
            break
    assert seen == made
    assert pages == 3

    active = await stub.ListApiKeys(pb.ListApiKeysRequest(), metadata=bearer(owner_token))
    assert [k.key_id for k in active.api_keys] == [made[0], *made[2:]]
    others = await stub.ListApiKeys(
        pb.ListApiKeysRequest(chitty_id=OTHER), metadata=bearer(admin_token)
    )
    assert [k.chitty_id for k in others.api_keys] == [OTHER]


async def test_list_refusals(
    stub: api_key_service_pb2_grpc.ApiKeyServiceStub, owner_token: str
) -> None:
    error = await refused(stub.ListApiKeys(pb.ListApiKeysRequest()))
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    error = await refused(
        stub.ListApiKeys(pb.ListApiKeysRequest(chitty_id=OTHER), metadata=bearer(owner_token))
    )
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    error = await refused(
        stub.ListApiKeys(pb.ListApiKeysRequest(page_token="%%%"), metadata=bearer(owner_token))
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert reason(error) == "INVALID_PAGE_TOKEN"


# -- RevokeApiKey -------------------------------------------------------------------------


async def test_revoke_is_immediate_idempotent_and_audited(
    stub: api_key_service_pb2_grpc.ApiKeyServiceStub, server: Server, owner_token: str
) -> None:
    created = await stub.CreateApiKey(pb.CreateApiKeyRequest(), metadata=bearer(owner_token))
    key_id = created.api_key.key_id
    first = await stub.RevokeApiKey(
        pb.RevokeApiKeyRequest(key_id=key_id), metadata=bearer(owner_token)
    )
    assert first.api_key.HasField("revoke_time")
    assert not server.tokens.validate(created.key).active
    assert server.tokens.validate(created.key).reason == "REVOKED"

    again = await stub.RevokeApiKey(
        pb.RevokeApiKeyRequest(key_id=key_id), metadata=bearer(owner_token)
    )
    assert again.api_key.revoke_time == first.api_key.revoke_time
    changes = sql_all(
        server.config.store.path,
        "SELECT kind, key FROM changes WHERE kind LIKE 'apikey.%' ORDER BY seq",
    )
    assert changes == [("apikey.created", key_id), ("apikey.revoked", key_id)]
    events = await audit_events(server, "apikey.revoked")
    assert [(e.outcome, e.attributes["already_revoked"]) for e in events] == [
        ("success", "false"),
        ("success", "true"),
    ]
    # A key obtained-token dies with the key: its client id is revoked too.
    assert f"apikey:{key_id}" in server.tokens.revocations.client


async def test_revoke_by_others_and_unknown(
    stub: api_key_service_pb2_grpc.ApiKeyServiceStub,
    owner_token: str,
    admin_token: str,
    token_for: Mint,
) -> None:
    created = await stub.CreateApiKey(pb.CreateApiKeyRequest(), metadata=bearer(owner_token))
    stranger = await token_for(
        subject=OTHER, chitty_id=OTHER, token_use="portal", scopes=("api_keys:generate",)
    )
    error = await refused(
        stub.RevokeApiKey(
            pb.RevokeApiKeyRequest(key_id=created.api_key.key_id), metadata=bearer(stranger)
        )
    )
    assert error.code() == grpc.StatusCode.NOT_FOUND
    error = await refused(
        stub.RevokeApiKey(pb.RevokeApiKeyRequest(key_id="key_nope"), metadata=bearer(owner_token))
    )
    assert error.code() == grpc.StatusCode.NOT_FOUND
    error = await refused(stub.RevokeApiKey(pb.RevokeApiKeyRequest(key_id="key_nope")))
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    reply = await stub.RevokeApiKey(
        pb.RevokeApiKeyRequest(key_id=created.api_key.key_id), metadata=bearer(admin_token)
    )
    assert reply.api_key.HasField("revoke_time")


async def test_registry_survives_a_restart(config: Config) -> None:
    async with running(config) as first:
        async with first.store.transaction() as tx:
            issued = await first.tokens.issue(
                tx, subject=OWNER, chitty_id=OWNER, client_id="t", token_use="portal",
                scopes=("api_keys:generate",),
            )  # fmt: skip
        async with aio.insecure_channel(first.grpc_target) as chan:
            stub = api_key_service_pb2_grpc.ApiKeyServiceStub(chan)
            created = await stub.CreateApiKey(
                pb.CreateApiKeyRequest(), metadata=bearer(issued.token)
            )
    async with running(config) as second:
        record = second.api_keys.check(created.key)
        assert record is not None
        assert record.chitty_id == OWNER
        assert second.tokens.validate(created.key).active


async def test_tokens_obtained_with_a_key_die_with_it(
    stub: api_key_service_pb2_grpc.ApiKeyServiceStub, server: Server, owner_token: str
) -> None:
    created = await stub.CreateApiKey(pb.CreateApiKeyRequest(), metadata=bearer(owner_token))
    obtained = await server.grants.api_key(created.key, [], [], request_id="t")
    assert server.tokens.validate(obtained.token).active
    await stub.RevokeApiKey(
        pb.RevokeApiKeyRequest(key_id=created.api_key.key_id), metadata=bearer(owner_token)
    )
    answer = server.tokens.validate(obtained.token)
    assert (answer.active, answer.reason) == (False, "REVOKED")
