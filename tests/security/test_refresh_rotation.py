"""Refresh rotation attacks: one live chain per refresh token, and reuse revokes the family.

A real server (fake clock, 5 s grace window) and real clients: gRPC ``Exchange`` and HTTP
``/token`` (httpx). Every test reads the outcome the way an outsider or an operator would:
the tokens handed out, Validate, the audit log, and the committed rows of the database file.
"""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import grpc
import httpx
import pytest
from grpc import aio

from chitty.auth.v1 import auth_service_pb2 as pb
from chitty.auth.v1 import auth_service_pb2_grpc, token_pb2
from chittyauth.app import Server
from chittyauth.clock import FakeClock
from chittyauth.config import Config, TokenConfig, replace
from chittyauth.store.protocol import AuditQuery
from tests.conftest import bearer, running_server, token_minter
from tests.oauth.conftest import PORTAL_SCOPES, USER, App, pkce, register
from tests.security.conftest import base_url, basic
from tests.security.helpers import error_info

CONCURRENCY = 8
GRACE_S = 5


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(time.time())


@pytest.fixture
async def oauth_server(config: Config, clock: FakeClock) -> AsyncIterator[Server]:
    tokens = TokenConfig(refresh_grace_s=GRACE_S, code_ttl_s=60)
    async with running_server(replace(config, tokens=tokens), clock) as srv:
        yield srv


@pytest.fixture
async def oauth_channel(oauth_server: Server) -> AsyncIterator[aio.Channel]:
    async with aio.insecure_channel(oauth_server.grpc_target) as chan:
        yield chan


@pytest.fixture
async def user_token(oauth_server: Server) -> str:
    """A person signed in at the portal (the one who authorizes the app)."""
    return await token_minter(oauth_server)(
        subject=USER, chitty_id=USER, client_id="chittyauth-portal", token_use="portal",
        scopes=PORTAL_SCOPES, session_id="ses_rotation",
    )  # fmt: skip


@pytest.fixture
async def app(oauth_server: Server, oauth_channel: aio.Channel) -> App:
    """A confidential linked app with the refresh_token grant, registered by an operator."""
    admin = await token_minter(oauth_server)(
        subject="ops", client_id="ops", token_use="service", scopes=("chittyauth:admin",)
    )
    return await register(oauth_channel, admin)


@dataclass(frozen=True)
class Pair:
    """What one refresh answered: the access token and the rotated refresh token."""

    access_token: str
    refresh_token: str


async def first_pair(channel: aio.Channel, user: str, app: App) -> Pair:
    """A person authorizes the app; the app redeems the code for its first pair."""
    verifier, challenge = pkce()
    stub = auth_service_pb2_grpc.AuthServiceStub(channel)
    auth = await stub.Authorize(
        pb.AuthorizeRequest(
            response_type="code", client_id=app.client_id, redirect_uri=app.redirect_uri,
            scopes=["mcp:read", "mcp:write"], state="st", code_challenge=challenge,
            code_challenge_method="S256", resources=["https://mcp.example"],
        ),
        metadata=bearer(user),
    )  # fmt: skip
    code = parse_qs(urlsplit(auth.redirect_url).query)["code"][0]
    reply = await stub.Exchange(
        pb.ExchangeRequest(
            client_id=app.client_id, client_secret=app.client_secret,
            authorization_code=pb.AuthorizationCodeGrant(
                code=code, redirect_uri=app.redirect_uri, code_verifier=verifier
            ),
        )
    )  # fmt: skip
    return Pair(reply.access_token, reply.refresh_token)


async def grpc_refresh(
    channel: aio.Channel, app: App, token: str, scopes: tuple[str, ...] = ()
) -> Pair:
    stub = auth_service_pb2_grpc.AuthServiceStub(channel)
    reply = await stub.Exchange(
        pb.ExchangeRequest(
            client_id=app.client_id, client_secret=app.client_secret, scopes=scopes,
            refresh_token=pb.RefreshTokenGrant(refresh_token=token),
        )
    )  # fmt: skip
    return Pair(reply.access_token, reply.refresh_token)


async def http_refresh(http: httpx.AsyncClient, server: Server, app: App, token: str) -> Pair:
    response = await http.post(
        f"{base_url(server)}/token",
        data={"grant_type": "refresh_token", "refresh_token": token},
        headers={"Authorization": basic(app.client_id, app.client_secret)},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    return Pair(body["access_token"], body["refresh_token"])


async def grpc_refusal(channel: aio.Channel, app: App, token: str) -> tuple[str, str]:
    with pytest.raises(aio.AioRpcError) as caught:
        await grpc_refresh(channel, app, token)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    reason, _ = error_info(caught.value)
    return reason, caught.value.details() or ""


async def validation(channel: aio.Channel, token: str) -> pb.ValidateResponse:
    stub = auth_service_pb2_grpc.AuthServiceStub(channel)
    return await stub.Validate(pb.ValidateRequest(token=token))


def rows(db: str, sql: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    """Committed rows, read from the database file with plain sqlite3."""
    conn = sqlite3.connect(db)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def family_of(server: Server, refresh_token: str) -> str:
    digest = hashlib.sha256(refresh_token.encode()).hexdigest()
    [(family,)] = rows(
        server.config.store.path,
        "SELECT family_id FROM refresh_tokens WHERE token_hash = ?",
        (digest,),
    )
    return str(family)


def live_refresh_hashes(server: Server, family: str, now: float) -> list[str]:
    """Refresh tokens of ``family`` that could still start a new rotation."""
    revoked = rows(
        server.config.store.path,
        "SELECT 1 FROM revocations WHERE kind = 'family' AND value = ?",
        (family,),
    )
    if revoked:
        return []
    found = rows(
        server.config.store.path,
        "SELECT token_hash FROM refresh_tokens"
        " WHERE family_id = ? AND used_at IS NULL AND expires_at > ?",
        (family, now),
    )
    return [str(h) for (h,) in found]


async def assert_one_live_chain(
    channel: aio.Channel, server: Server, clock: FakeClock, pairs: list[Pair]
) -> Pair:
    """Exactly one live refresh token in the family; every other access token is dead."""
    family = family_of(server, pairs[0].refresh_token)
    live = live_refresh_hashes(server, family, clock.now())
    assert len(live) == 1, f"{len(live)} live refresh tokens in one family"
    [chain] = [p for p in pairs if hashlib.sha256(p.refresh_token.encode()).hexdigest() in live][:1]
    for pair in pairs:
        reply = await validation(channel, pair.access_token)
        if pair.access_token == chain.access_token:
            assert reply.active
        else:
            assert not reply.active, "an access token outside the live chain is still active"
    return chain


# -- one live chain ---------------------------------------------------------------------------


async def test_concurrent_grpc_refreshes_yield_one_chain(
    oauth_channel: aio.Channel, oauth_server: Server, user_token: str, app: App, clock: FakeClock
) -> None:
    start = await first_pair(oauth_channel, user_token, app)
    pairs = await asyncio.gather(
        *(grpc_refresh(oauth_channel, app, start.refresh_token) for _ in range(CONCURRENCY))
    )
    # Every concurrent caller is answered with the one successor pair.
    assert len({p.refresh_token for p in pairs}) == 1
    assert len({p.access_token for p in pairs}) == 1
    chain = await assert_one_live_chain(oauth_channel, oauth_server, clock, list(pairs))
    # And that chain goes on.
    nxt = await grpc_refresh(oauth_channel, app, chain.refresh_token)
    assert (await validation(oauth_channel, nxt.access_token)).active


async def test_concurrent_http_refreshes_yield_one_chain(
    http: httpx.AsyncClient,
    oauth_channel: aio.Channel,
    oauth_server: Server,
    user_token: str,
    app: App,
    clock: FakeClock,
) -> None:
    start = await first_pair(oauth_channel, user_token, app)
    pairs = await asyncio.gather(
        *(http_refresh(http, oauth_server, app, start.refresh_token) for _ in range(CONCURRENCY))
    )
    assert len({p.refresh_token for p in pairs}) == 1
    assert len({p.access_token for p in pairs}) == 1
    await assert_one_live_chain(oauth_channel, oauth_server, clock, list(pairs))


async def test_concurrent_refreshes_over_both_transports_yield_one_chain(
    http: httpx.AsyncClient,
    oauth_channel: aio.Channel,
    oauth_server: Server,
    user_token: str,
    app: App,
    clock: FakeClock,
) -> None:
    start = await first_pair(oauth_channel, user_token, app)
    calls = [grpc_refresh(oauth_channel, app, start.refresh_token) for _ in range(4)]
    calls += [http_refresh(http, oauth_server, app, start.refresh_token) for _ in range(4)]
    pairs = await asyncio.gather(*calls)
    assert len({p.refresh_token for p in pairs}) == 1
    await assert_one_live_chain(oauth_channel, oauth_server, clock, list(pairs))


async def test_retry_inside_grace_gets_the_same_pair(
    http: httpx.AsyncClient,
    oauth_channel: aio.Channel,
    oauth_server: Server,
    user_token: str,
    app: App,
    clock: FakeClock,
) -> None:
    start = await first_pair(oauth_channel, user_token, app)
    first = await grpc_refresh(oauth_channel, app, start.refresh_token)
    clock.advance(2)
    # The response was lost; the client retries over gRPC and over HTTP.
    assert await grpc_refresh(oauth_channel, app, start.refresh_token) == first
    assert await http_refresh(http, oauth_server, app, start.refresh_token) == first
    assert (await validation(oauth_channel, first.access_token)).active
    # A replay inside the window never retires the successor the client holds.
    nxt = await grpc_refresh(oauth_channel, app, first.refresh_token)
    assert (await validation(oauth_channel, nxt.access_token)).active
    retries = await oauth_server.store.list_audit_events(AuditQuery(action="oauth.refresh_retry"))
    assert len(retries) == 2


async def test_retry_answer_expires_in_counts_from_now(
    http: httpx.AsyncClient,
    oauth_channel: aio.Channel,
    oauth_server: Server,
    user_token: str,
    app: App,
    clock: FakeClock,
) -> None:
    start = await first_pair(oauth_channel, user_token, app)
    await http_refresh(http, oauth_server, app, start.refresh_token)
    clock.advance(3)
    response = await http.post(
        f"{base_url(oauth_server)}/token",
        data={"grant_type": "refresh_token", "refresh_token": start.refresh_token},
        headers={"Authorization": basic(app.client_id, app.client_secret)},
    )
    assert response.status_code == 200
    ttl = oauth_server.config.tokens.access_ttl_s
    assert ttl - 4 <= response.json()["expires_in"] <= ttl - 2


async def test_retry_asking_for_another_scope_is_refused(
    oauth_channel: aio.Channel, oauth_server: Server, user_token: str, app: App, clock: FakeClock
) -> None:
    start = await first_pair(oauth_channel, user_token, app)
    first = await grpc_refresh(oauth_channel, app, start.refresh_token)
    clock.advance(1)
    with pytest.raises(aio.AioRpcError) as caught:
        await grpc_refresh(oauth_channel, app, start.refresh_token, scopes=("mcp:read",))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_info(caught.value)[0] == "INVALID_GRANT"
    # No second chain, and the first one is untouched.
    await assert_one_live_chain(oauth_channel, oauth_server, clock, [first])


# -- reuse detection --------------------------------------------------------------------------


async def assert_family_dead(channel: aio.Channel, app: App, pairs: list[Pair]) -> None:
    for pair in pairs:
        reply = await validation(channel, pair.access_token)
        assert reply.inactive_reason == token_pb2.INACTIVE_REASON_REVOKED
        reason, _ = await grpc_refusal(channel, app, pair.refresh_token)
        assert reason == "INVALID_GRANT"


async def test_parent_after_its_successor_moved_on_is_reuse(
    oauth_channel: aio.Channel, oauth_server: Server, user_token: str, app: App, clock: FakeClock
) -> None:
    start = await first_pair(oauth_channel, user_token, app)
    first = await grpc_refresh(oauth_channel, app, start.refresh_token)
    clock.advance(1)
    second = await grpc_refresh(oauth_channel, app, first.refresh_token)
    clock.advance(1)
    # Still inside the parent's grace window, but the chain has moved on: only a copy of the
    # parent can be asking now.
    reason, _ = await grpc_refusal(oauth_channel, app, start.refresh_token)
    assert reason == "INVALID_GRANT"
    await assert_family_dead(oauth_channel, app, [start, first, second])
    replays = await oauth_server.store.list_audit_events(
        AuditQuery(action="oauth.refresh_replayed")
    )
    assert len(replays) == 1
    assert (await oauth_server.store.verify_audit_log()).valid


async def test_superseded_successor_is_reuse(
    oauth_channel: aio.Channel, oauth_server: Server, user_token: str, app: App, clock: FakeClock
) -> None:
    start = await first_pair(oauth_channel, user_token, app)
    first = await grpc_refresh(oauth_channel, app, start.refresh_token)
    clock.advance(1)
    second = await grpc_refresh(oauth_channel, app, first.refresh_token)
    clock.advance(oauth_server.config.tokens.refresh_grace_s + 1)
    reason, _ = await grpc_refusal(oauth_channel, app, first.refresh_token)
    assert reason == "INVALID_GRANT"
    await assert_family_dead(oauth_channel, app, [start, first, second])


async def test_stolen_parent_replayed_in_grace_shares_the_chain_and_is_caught(
    http: httpx.AsyncClient,
    oauth_channel: aio.Channel,
    oauth_server: Server,
    user_token: str,
    app: App,
    clock: FakeClock,
) -> None:
    start = await first_pair(oauth_channel, user_token, app)
    legit = await grpc_refresh(oauth_channel, app, start.refresh_token)
    clock.advance(1)
    # The copy replayed inside the window learns nothing new and retires nothing.
    copy = await http_refresh(http, oauth_server, app, start.refresh_token)
    assert copy == legit
    # The copy's holder rotates first; once the window has passed, the legitimate client's
    # use of the superseded token is reuse and ends the family for both.
    stolen_next = await http_refresh(http, oauth_server, app, copy.refresh_token)
    clock.advance(oauth_server.config.tokens.refresh_grace_s + 1)
    reason, _ = await grpc_refusal(oauth_channel, app, legit.refresh_token)
    assert reason == "INVALID_GRANT"
    await assert_family_dead(oauth_channel, app, [legit, stolen_next])


async def test_parent_after_grace_is_reuse(
    oauth_channel: aio.Channel, oauth_server: Server, user_token: str, app: App, clock: FakeClock
) -> None:
    start = await first_pair(oauth_channel, user_token, app)
    first = await grpc_refresh(oauth_channel, app, start.refresh_token)
    clock.advance(oauth_server.config.tokens.refresh_grace_s + 1)
    reason, _ = await grpc_refusal(oauth_channel, app, start.refresh_token)
    assert reason == "INVALID_GRANT"
    await assert_family_dead(oauth_channel, app, [start, first])


# -- at rest ----------------------------------------------------------------------------------


async def test_successor_pair_is_not_stored_in_plaintext(
    oauth_channel: aio.Channel, oauth_server: Server, user_token: str, app: App, clock: FakeClock
) -> None:
    start = await first_pair(oauth_channel, user_token, app)
    first = await grpc_refresh(oauth_channel, app, start.refresh_token)
    clock.advance(1)
    assert await grpc_refresh(oauth_channel, app, start.refresh_token) == first
    db = Path(oauth_server.config.store.path)
    stored = b"".join(p.read_bytes() for p in db.parent.glob(db.name + "*"))
    for secret in (first.refresh_token, first.access_token, start.refresh_token):
        assert secret.encode() not in stored
    # Once the successor is rotated the sealed copy is wiped: the window cannot reopen.
    await grpc_refresh(oauth_channel, app, first.refresh_token)
    sealed = rows(
        oauth_server.config.store.path,
        "SELECT COUNT(*) FROM refresh_tokens WHERE family_id = ? AND issued_sealed IS NOT NULL",
        (family_of(oauth_server, start.refresh_token),),
    )
    assert sealed == [(1,)]
