"""The authorization code flow with PKCE, refresh rotation and token exchange, and its attacks."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from urllib.parse import parse_qs, urlsplit

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2
from grpc import aio

from chitty.auth.v1 import auth_service_pb2 as pb
from chitty.auth.v1 import auth_service_pb2_grpc, token_pb2
from chittyauth.app import Server
from chittyauth.clock import FakeClock
from chittyauth.rpc.errors import STATUS_DETAILS_KEY
from chittyauth.store.protocol import AuditQuery
from tests.conftest import bearer
from tests.oauth.conftest import REDIRECT, USER, App, pkce, register

TE = "urn:ietf:params:oauth:token-type:access_token"


def reason(error: aio.AioRpcError) -> str:
    raw = dict(error.trailing_metadata() or ())[STATUS_DETAILS_KEY]
    info = error_details_pb2.ErrorInfo()
    status_pb2.Status.FromString(raw).details[0].Unpack(info)
    return info.reason


async def authorize(
    channel: aio.Channel, user: str, app: App, challenge: str, **kw: object
) -> pb.AuthorizeResponse:
    fields: dict[str, object] = {
        "response_type": "code", "client_id": app.client_id, "redirect_uri": app.redirect_uri,
        "scopes": ["mcp:read"], "state": "st-123", "code_challenge": challenge,
        "code_challenge_method": "S256", "resources": ["https://mcp.example"],
    }  # fmt: skip
    fields.update(kw)
    stub = auth_service_pb2_grpc.AuthServiceStub(channel)
    return await stub.Authorize(pb.AuthorizeRequest(**fields), metadata=bearer(user))  # type: ignore[arg-type]


async def exchange_code(
    channel: aio.Channel, app: App, code: str, verifier: str, redirect: str = REDIRECT
) -> pb.ExchangeResponse:
    stub = auth_service_pb2_grpc.AuthServiceStub(channel)
    return await stub.Exchange(
        pb.ExchangeRequest(
            client_id=app.client_id,
            client_secret=app.client_secret,
            authorization_code=pb.AuthorizationCodeGrant(
                code=code, redirect_uri=redirect, code_verifier=verifier
            ),
        )
    )


async def refresh(
    channel: aio.Channel, app: App, token: str, scopes: tuple[str, ...] = ()
) -> pb.ExchangeResponse:
    stub = auth_service_pb2_grpc.AuthServiceStub(channel)
    return await stub.Exchange(
        pb.ExchangeRequest(
            client_id=app.client_id, client_secret=app.client_secret, scopes=scopes,
            refresh_token=pb.RefreshTokenGrant(refresh_token=token),
        )
    )  # fmt: skip


async def validate(channel: aio.Channel, token: str) -> pb.ValidateResponse:
    stub = auth_service_pb2_grpc.AuthServiceStub(channel)
    return await stub.Validate(pb.ValidateRequest(token=token))


async def test_full_flow(
    oauth_channel: aio.Channel, oauth_server: Server, user_token: str, app: App, clock: FakeClock
) -> None:
    verifier, challenge = pkce()
    auth = await authorize(oauth_channel, user_token, app, challenge)
    url = urlsplit(auth.redirect_url)
    assert f"{url.scheme}://{url.netloc}{url.path}" == REDIRECT
    query = parse_qs(url.query)
    assert query == {
        "code": [auth.code],
        "state": ["st-123"],
        "iss": [oauth_server.config.tokens.issuer],
    }

    tokens = await exchange_code(oauth_channel, app, auth.code, verifier)
    assert tokens.token_type == "Bearer"
    assert tokens.refresh_token.startswith("rt_")
    check = await validate(oauth_channel, tokens.access_token)
    assert check.active
    assert check.claims.sub == USER
    assert list(check.claims.aud) == ["https://mcp.example"]
    assert check.claims.sid == "ses_test"
    assert check.claims.token_use == token_pb2.TOKEN_USE_LINKED_APP
    assert list(check.claims.scopes) == ["mcp:read"]

    rotated = await refresh(oauth_channel, app, tokens.refresh_token)
    assert rotated.refresh_token != tokens.refresh_token
    assert (await validate(oauth_channel, rotated.access_token)).active

    # The old refresh token replayed after the grace window: the whole family dies.
    clock.advance(6)
    with pytest.raises(aio.AioRpcError) as caught:
        await refresh(oauth_channel, app, tokens.refresh_token)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert reason(caught.value) == "INVALID_GRANT"
    for token in (tokens.access_token, rotated.access_token):
        reply = await validate(oauth_channel, token)
        assert reply.inactive_reason == token_pb2.INACTIVE_REASON_REVOKED
    with pytest.raises(aio.AioRpcError):
        await refresh(oauth_channel, app, rotated.refresh_token)
    replays = await oauth_server.store.list_audit_events(
        AuditQuery(action="oauth.refresh_replayed")
    )
    assert len(replays) == 1
    assert (await oauth_server.store.verify_audit_log()).valid


async def test_refresh_retry_inside_grace_window_is_absorbed(
    oauth_channel: aio.Channel, user_token: str, app: App, clock: FakeClock
) -> None:
    verifier, challenge = pkce()
    auth = await authorize(oauth_channel, user_token, app, challenge)
    tokens = await exchange_code(oauth_channel, app, auth.code, verifier)
    first = await refresh(oauth_channel, app, tokens.refresh_token)
    clock.advance(1)
    retry = await refresh(oauth_channel, app, tokens.refresh_token)
    # The same successor pair: one live chain, and the successor stays usable.
    assert (retry.refresh_token, retry.access_token) == (first.refresh_token, first.access_token)
    assert (await validate(oauth_channel, retry.access_token)).active
    assert (await refresh(oauth_channel, app, first.refresh_token)).refresh_token


@pytest.mark.parametrize(
    "redirect",
    [
        REDIRECT + "/",
        REDIRECT + "?x=1",
        REDIRECT + "evil",
        "https://app.example:8443/callback",
        "http://app.example/callback",
        "https://APP.example/callback",
        "https://app.example/callback#frag",
    ],
)
async def test_redirect_uri_must_match_exactly(
    oauth_channel: aio.Channel, user_token: str, app: App, redirect: str
) -> None:
    _, challenge = pkce()
    with pytest.raises(aio.AioRpcError) as caught:
        await authorize(oauth_channel, user_token, app, challenge, redirect_uri=redirect)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert reason(caught.value) == "INVALID_REDIRECT_URI"


@pytest.mark.parametrize(
    ("challenge", "method"), [("", ""), ("x" * 43, "plain"), ("short", "S256"), ("", "S256")]
)
async def test_pkce_s256_is_required(
    oauth_channel: aio.Channel, user_token: str, app: App, challenge: str, method: str
) -> None:
    with pytest.raises(aio.AioRpcError) as caught:
        await authorize(oauth_channel, user_token, app, challenge, code_challenge_method=method)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert reason(caught.value) == "PKCE_REQUIRED"


async def test_wrong_verifier_and_wrong_redirect_at_exchange(
    oauth_channel: aio.Channel, user_token: str, app: App
) -> None:
    verifier, challenge = pkce()
    auth = await authorize(oauth_channel, user_token, app, challenge)
    with pytest.raises(aio.AioRpcError) as caught:
        await exchange_code(oauth_channel, app, auth.code, pkce()[0])
    assert reason(caught.value) == "INVALID_GRANT"
    auth2 = await authorize(oauth_channel, user_token, app, challenge)
    with pytest.raises(aio.AioRpcError) as caught:
        await exchange_code(oauth_channel, app, auth2.code, verifier, redirect=REDIRECT + "/")
    assert reason(caught.value) == "INVALID_GRANT"


async def test_code_replay_revokes_what_it_issued(
    oauth_channel: aio.Channel, oauth_server: Server, user_token: str, app: App
) -> None:
    verifier, challenge = pkce()
    auth = await authorize(oauth_channel, user_token, app, challenge)
    tokens = await exchange_code(oauth_channel, app, auth.code, verifier)
    with pytest.raises(aio.AioRpcError) as caught:
        await exchange_code(oauth_channel, app, auth.code, verifier)
    assert reason(caught.value) == "INVALID_GRANT"
    reply = await validate(oauth_channel, tokens.access_token)
    assert reply.inactive_reason == token_pb2.INACTIVE_REASON_REVOKED
    with pytest.raises(aio.AioRpcError):
        await refresh(oauth_channel, app, tokens.refresh_token)
    events = await oauth_server.store.list_audit_events(AuditQuery(action="oauth.code_replayed"))
    assert len(events) == 1


async def test_code_of_another_client_and_expired_code(
    oauth_channel: aio.Channel, user_token: str, app: App, admin: str, clock: FakeClock
) -> None:
    other = await register(oauth_channel, admin, name="Other")
    verifier, challenge = pkce()
    auth = await authorize(oauth_channel, user_token, app, challenge)
    with pytest.raises(aio.AioRpcError) as caught:
        await exchange_code(oauth_channel, other, auth.code, verifier)
    assert reason(caught.value) == "INVALID_GRANT"

    auth = await authorize(oauth_channel, user_token, app, challenge)
    clock.advance(61)
    with pytest.raises(aio.AioRpcError) as caught:
        await exchange_code(oauth_channel, app, auth.code, verifier)
    assert reason(caught.value) == "INVALID_GRANT"


async def test_wrong_client_secret(oauth_channel: aio.Channel, user_token: str, app: App) -> None:
    verifier, challenge = pkce()
    auth = await authorize(oauth_channel, user_token, app, challenge)
    wrong = App(app.client_id, app.client_secret[:-2] + "xx", app.redirect_uri)
    with pytest.raises(aio.AioRpcError) as caught:
        await exchange_code(oauth_channel, wrong, auth.code, verifier)
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert reason(caught.value) == "INVALID_CLIENT"
    # The code is still good for the real client.
    assert (await exchange_code(oauth_channel, app, auth.code, verifier)).access_token


async def test_scope_escalation_is_refused(
    oauth_channel: aio.Channel, user_token: str, app: App
) -> None:
    _, challenge = pkce()
    with pytest.raises(aio.AioRpcError) as caught:
        await authorize(oauth_channel, user_token, app, challenge, scopes=["chittyauth:admin"])
    assert reason(caught.value) == "INVALID_SCOPE"

    verifier, challenge = pkce()
    auth = await authorize(oauth_channel, user_token, app, challenge)
    tokens = await exchange_code(oauth_channel, app, auth.code, verifier)
    with pytest.raises(aio.AioRpcError) as caught:
        await refresh(oauth_channel, app, tokens.refresh_token, scopes=("mcp:read", "mcp:write"))
    assert reason(caught.value) == "INVALID_SCOPE"

    stub = auth_service_pb2_grpc.AuthServiceStub(oauth_channel)
    with pytest.raises(aio.AioRpcError) as caught:
        await stub.Exchange(
            pb.ExchangeRequest(
                client_id=app.client_id, client_secret=app.client_secret, scopes=["mcp:write"],
                token_exchange=pb.TokenExchangeGrant(
                    subject_token=tokens.access_token, subject_token_type=TE
                ),
            )
        )  # fmt: skip
    assert reason(caught.value) == "INVALID_SCOPE"


async def test_token_exchange_with_actor(
    oauth_channel: aio.Channel, user_token: str, admin: str, mint: Callable[..., Awaitable[str]]
) -> None:
    # The app may exchange for chittyrouter; its backend acts with the app's own token.
    app = await register(oauth_channel, admin, exchange_audiences=("chittyrouter",))
    verifier, challenge = pkce()
    auth = await authorize(oauth_channel, user_token, app, challenge)
    tokens = await exchange_code(oauth_channel, app, auth.code, verifier)
    actor = await mint(subject="backend", client_id=app.client_id, token_use="service",
                       scopes=("mcp:read",))  # fmt: skip
    stub = auth_service_pb2_grpc.AuthServiceStub(oauth_channel)
    reply = await stub.Exchange(
        pb.ExchangeRequest(
            client_id=app.client_id, client_secret=app.client_secret,
            token_exchange=pb.TokenExchangeGrant(
                subject_token=tokens.access_token, subject_token_type=TE,
                actor_token=actor, actor_token_type=TE, audiences=["chittyrouter"],
            ),
        )
    )  # fmt: skip
    assert reply.issued_token_type == TE
    check = await validate(oauth_channel, reply.access_token)
    assert check.active
    assert check.claims.sub == USER
    assert check.claims.act.sub == "backend"
    assert check.claims.act.client_id == app.client_id
    assert list(check.claims.aud) == ["chittyrouter"]
    assert check.claims.token_use == token_pb2.TOKEN_USE_EXCHANGE
    # An actor token of another client is not the app acting (tests/security has the rest).
    stranger = await mint(subject="chittymcp", client_id="chittymcp", token_use="mcp_server",
                          scopes=("mcp:read",))  # fmt: skip
    with pytest.raises(aio.AioRpcError) as caught:
        await stub.Exchange(
            pb.ExchangeRequest(
                client_id=app.client_id, client_secret=app.client_secret,
                token_exchange=pb.TokenExchangeGrant(
                    subject_token=tokens.access_token, subject_token_type=TE,
                    actor_token=stranger, actor_token_type=TE, audiences=["chittyrouter"],
                ),
            )
        )  # fmt: skip
    assert reason(caught.value) == "ACTOR_NOT_ALLOWED"


async def test_only_people_may_authorize(oauth_channel: aio.Channel, admin: str, app: App) -> None:
    _, challenge = pkce()
    with pytest.raises(aio.AioRpcError) as caught:
        await authorize(oauth_channel, admin, app, challenge)
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(aio.AioRpcError) as caught:
        await authorize(oauth_channel, "", app, challenge)
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_revoking_a_refresh_token_ends_its_grant(
    oauth_channel: aio.Channel, oauth_server: Server, user_token: str, app: App
) -> None:
    verifier, challenge = pkce()
    auth = await authorize(oauth_channel, user_token, app, challenge)
    tokens = await exchange_code(oauth_channel, app, auth.code, verifier)
    other_auth = await authorize(oauth_channel, user_token, app, pkce()[1])
    assert other_auth.code  # a second grant of the same user and client

    stub = auth_service_pb2_grpc.AuthServiceStub(oauth_channel)
    # The person revokes the refresh token the app holds for them.
    as_app = bearer(user_token)
    await stub.Revoke(pb.RevokeRequest(token=tokens.refresh_token), metadata=as_app)
    await stub.Revoke(pb.RevokeRequest(token=tokens.refresh_token), metadata=as_app)
    reply = await validate(oauth_channel, tokens.access_token)
    assert reply.inactive_reason == token_pb2.INACTIVE_REASON_REVOKED
    with pytest.raises(aio.AioRpcError) as caught:
        await refresh(oauth_channel, app, tokens.refresh_token)
    assert reason(caught.value) == "INVALID_GRANT"
    # A well-formed refresh token that was never issued revokes nothing, and is no error.
    await stub.Revoke(pb.RevokeRequest(token="rt_" + "A" * 43 + "_AAAAAA"), metadata=as_app)
    events = await oauth_server.store.list_audit_events(AuditQuery(action="token.revoked"))
    assert [(e.attributes["kind"], e.subject) for e in events] == [("family", USER)]
