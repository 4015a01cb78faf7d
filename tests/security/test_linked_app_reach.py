"""A linked app approved for mcp:read reaches none of the person's own data.

The app gets its token through the real authorization-code flow (Authorize with the person's
portal token, then Exchange with PKCE); that token carries the person's ``sid``, which binds it
to the session and grants nothing. Before the policy table, the sid alone let the app read and
rewrite the session state, list and revoke the person's API keys and grants, and end the
session.
"""

from __future__ import annotations

import grpc
import pytest
from grpc import aio

from chitty.auth.v1 import (
    api_key_service_pb2,
    api_key_service_pb2_grpc,
    permission_service_pb2,
    permission_service_pb2_grpc,
    session_pb2,
    sync_service_pb2,
    sync_service_pb2_grpc,
)
from chittyauth.app import Server
from chittyauth.domain import policy
from chittyauth.store.protocol import AuditQuery
from tests.conftest import bearer
from tests.oauth.conftest import (  # the fixtures of the OAuth tests, used here too
    USER,
    App,
    admin,
    clock,
    mint,
    oauth_channel,
    oauth_config,
    oauth_server,
    pkce,
    register,
)
from tests.oauth.test_code_flow import authorize, exchange_code
from tests.security.helpers import error_info
from tests.sessions.helpers import put_state, sync

__all__ = ["admin", "clock", "mint", "oauth_channel", "oauth_config", "oauth_server"]


async def _person(
    oauth_server: Server, session_id: str, scopes: tuple[str, ...] = policy.PERSON_SCOPES
) -> str:
    async with oauth_server.store.transaction() as tx:
        issued = await oauth_server.tokens.issue(
            tx, subject=USER, chitty_id=USER, client_id="chittyauth-portal",
            token_use="portal", scopes=scopes, session_id=session_id,
        )  # fmt: skip
    return issued.token


async def _refused(call: object) -> aio.AioRpcError:
    with pytest.raises(aio.AioRpcError) as caught:
        await call  # type: ignore[misc]
    return caught.value


async def test_an_app_with_mcp_read_cannot_touch_the_session_keys_or_grants(
    oauth_server: Server, oauth_channel: aio.Channel, admin: str
) -> None:
    sessions = sync_service_pb2_grpc.SyncServiceStub(oauth_channel)
    keys = api_key_service_pb2_grpc.ApiKeyServiceStub(oauth_channel)
    grants = permission_service_pb2_grpc.PermissionServiceStub(oauth_channel)

    # The person: a session with state, an API key.
    first = await _person(oauth_server, "")
    session = (await sync(sessions, first, device_id="laptop")).session
    person = await _person(oauth_server, session.session_id)
    await put_state(sessions, person, session.name, b"secret notes", 0)
    key = await keys.CreateApiKey(
        api_key_service_pb2.CreateApiKeyRequest(),
        metadata=bearer(await _person(oauth_server, "", scopes=(policy.API_KEYS_GENERATE,))),
    )

    # The app: approved for mcp:read only, through the real code flow.
    app: App = await register(oauth_channel, admin)
    verifier, challenge = pkce()
    code = (await authorize(oauth_channel, person, app, challenge, scopes=["mcp:read"])).code
    token = (await exchange_code(oauth_channel, app, code, verifier)).access_token
    claims = oauth_server.tokens.signed_claims(token)
    assert claims is not None
    assert claims["sid"] == session.session_id  # bound to the session …
    as_app = bearer(token)

    attempts = {
        "GetSessionState": sessions.GetSessionState(
            sync_service_pb2.GetSessionStateRequest(name=session.name, mcp_server="chittymcp"),
            metadata=as_app,
        ),
        "PutSessionState": sessions.PutSessionState(
            sync_service_pb2.PutSessionStateRequest(
                name=session.name,
                mcp_server="chittymcp",
                data=b"overwritten",
                expected_version=1,
            ),
            metadata=as_app,
        ),
        "GetSession": sessions.GetSession(
            sync_service_pb2.GetSessionRequest(name=session.name), metadata=as_app
        ),
        "RevokeSession": sessions.RevokeSession(
            sync_service_pb2.RevokeSessionRequest(name=session.name), metadata=as_app
        ),
        "ListApiKeys": keys.ListApiKeys(api_key_service_pb2.ListApiKeysRequest(), metadata=as_app),
        "RevokeApiKey": keys.RevokeApiKey(
            api_key_service_pb2.RevokeApiKeyRequest(key_id=key.api_key.key_id), metadata=as_app
        ),
        "ListPermissions": grants.ListPermissions(
            permission_service_pb2.ListPermissionsRequest(), metadata=as_app
        ),
    }
    for name, call in attempts.items():
        error = await _refused(call)
        assert error.code() == grpc.StatusCode.PERMISSION_DENIED, name
        assert error_info(error)[0] == "INSUFFICIENT_SCOPE", name

    # … and nothing changed: the session is active, its state and the key intact.
    state = await sessions.GetSessionState(
        sync_service_pb2.GetSessionStateRequest(name=session.name, mcp_server="chittymcp"),
        metadata=bearer(person),
    )
    assert (state.state.version, state.state.data) == (1, b"secret notes")
    got = await sessions.GetSession(
        sync_service_pb2.GetSessionRequest(name=session.name), metadata=bearer(person)
    )
    assert got.session.status == session.status == session_pb2.SESSION_STATUS_ACTIVE
    listed = await keys.ListApiKeys(
        api_key_service_pb2.ListApiKeysRequest(), metadata=bearer(person)
    )
    assert [k.key_id for k in listed.api_keys if not k.HasField("revoke_time")] == [
        key.api_key.key_id
    ]
    # Each refusal is in the audit log, with the app as the caller's client.
    refusals = [
        e
        for e in await oauth_server.store.list_audit_events(AuditQuery(outcome="failure"))
        if e.attributes.get("client_id") == app.client_id
    ]
    assert len(refusals) == len(attempts)
    assert {e.attributes["reason"] for e in refusals} == {"INSUFFICIENT_SCOPE"}


async def test_an_app_the_person_granted_sessions_read_reads_only_its_bound_session(
    oauth_server: Server, oauth_channel: aio.Channel, admin: str
) -> None:
    sessions = sync_service_pb2_grpc.SyncServiceStub(oauth_channel)
    first = await _person(oauth_server, "")
    bound = (await sync(sessions, first, device_id="laptop")).session
    other = (await sync(sessions, first, device_id="phone")).session
    person = await _person(oauth_server, bound.session_id)
    app = await register(
        oauth_channel, admin, scopes=("mcp:read", policy.SESSIONS_READ), name="Reader"
    )
    verifier, challenge = pkce()
    code = (
        await authorize(
            oauth_channel, person, app, challenge, scopes=["mcp:read", policy.SESSIONS_READ]
        )
    ).code
    as_app = bearer((await exchange_code(oauth_channel, app, code, verifier)).access_token)

    got = await sessions.GetSession(
        sync_service_pb2.GetSessionRequest(name=bound.name), metadata=as_app
    )
    assert got.session.name == bound.name
    # Another of the person's sessions: indistinguishable from a missing one without cross_sync.
    error = await _refused(
        sessions.GetSession(sync_service_pb2.GetSessionRequest(name=other.name), metadata=as_app)
    )
    assert error.code() == grpc.StatusCode.NOT_FOUND
    # Reading is not writing.
    error = await _refused(
        sessions.RevokeSession(
            sync_service_pb2.RevokeSessionRequest(name=bound.name), metadata=as_app
        )
    )
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert error_info(error) == (
        "INSUFFICIENT_SCOPE", {"required_scopes": policy.SESSIONS_WRITE}
    )  # fmt: skip
