"""Delegation: a token grants only what it holds, and naming a ChittyID grants nothing.

Real server (gRPC and HTTP), real dev authority process, real clients. The attacks:

- a person's token holding only ``mcp:read`` approving ``cross_sync mcp:write`` for an app
  (gRPC Authorize, and the HTTP consent page);
- an MCP server logging in "for" any ChittyID the authority knows;
- a ``tokens:issue`` client issuing a user token for anyone, and that token approving an app.
"""

from __future__ import annotations

import base64
import sqlite3
from collections.abc import Sequence

import aiohttp
import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2
from grpc import aio
from yarl import URL

from chitty.auth.v1 import (
    auth_service_pb2,
    auth_service_pb2_grpc,
    client_pb2,
    sync_service_pb2,
    sync_service_pb2_grpc,
)
from chittyauth.app import Server
from chittyauth.rpc.errors import STATUS_DETAILS_KEY
from chittyauth.store.protocol import AuditQuery
from tests.conftest import bearer, token_minter
from tests.http_oauth.conftest import (
    ASSERTION,
    answer,
    authorize_params,
    base,
    browser,
    clock,
    consent,
    form_fields,
    pkce,
    query_of,
    server,
    start,
)
from tests.http_server.conftest import RegisteredClient, register_client
from tests.support.consent import consent_through_authorize, record_consent
from tests.support.devauthority import DevAuthority

__all__ = ["base", "browser", "clock", "server", "start"]

REDIRECT = "https://app.example/callback"
COOKIE = "chittyauth_portal"


# -- helpers -----------------------------------------------------------------------------------


def error_info(error: aio.AioRpcError) -> error_details_pb2.ErrorInfo:
    raw = dict(error.trailing_metadata() or ())[STATUS_DETAILS_KEY]
    for detail in status_pb2.Status.FromString(raw).details:
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            return info
    raise AssertionError("no ErrorInfo in the refusal")


async def refused(call: object, code: grpc.StatusCode) -> error_details_pb2.ErrorInfo:
    with pytest.raises(aio.AioRpcError) as caught:
        await call  # type: ignore[misc]
    assert caught.value.code() == code, caught.value.details()
    return error_info(caught.value)


def consents(server: Server, chitty_id: str) -> dict[str, str]:
    conn = sqlite3.connect(server.config.store.path)
    try:
        rows = conn.execute(
            "SELECT client_id, scopes FROM consents WHERE chitty_id = ?", (chitty_id,)
        ).fetchall()
    finally:
        conn.close()
    return {client: scopes for client, scopes in rows}


async def admin(server: Server) -> str:
    return await token_minter(server)(subject="ops", client_id="ops")


async def portal(
    channel: aio.Channel, authority: DevAuthority, email: str, scopes: Sequence[str] = ()
) -> auth_service_pb2.AuthenticateResponse:
    """The person's own portal token (a real Cloudflare Access login), holding ``scopes``."""
    assertion = await authority.mint_assertion(email)
    return await auth_service_pb2_grpc.AuthServiceStub(channel).Authenticate(
        auth_service_pb2.AuthenticateRequest(
            portal=auth_service_pb2.PortalCredential(assertion=assertion), scopes=scopes
        )
    )


async def linked_app(
    channel: aio.Channel, admin_token: str, scopes: Sequence[str]
) -> RegisteredClient:
    return await register_client(
        channel,
        admin_token,
        kind=client_pb2.CLIENT_KIND_LINKED_APP,
        scopes=scopes,
        redirect_uris=[REDIRECT],
        grant_types=[client_pb2.GRANT_TYPE_AUTHORIZATION_CODE],
    )


async def mcp_server_client(channel: aio.Channel, admin_token: str) -> RegisteredClient:
    """An MCP server a person can consent to (it also has the authorization-code flow)."""
    return await register_client(
        channel,
        admin_token,
        kind=client_pb2.CLIENT_KIND_MCP_SERVER,
        scopes=["mcp:read", "sessions:read"],
        redirect_uris=[REDIRECT],
        grant_types=[
            client_pb2.GRANT_TYPE_CLIENT_CREDENTIALS,
            client_pb2.GRANT_TYPE_AUTHORIZATION_CODE,
        ],
        server_id="chittychat",
        capabilities=["tools"],
    )


def basic(client: RegisteredClient) -> dict[str, str]:
    raw = base64.b64encode(f"{client.client_id}:{client.client_secret}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


def mcp_login(
    client: RegisteredClient, chitty_id: str, scopes: Sequence[str] = ()
) -> auth_service_pb2.AuthenticateRequest:
    return auth_service_pb2.AuthenticateRequest(
        mcp_server=auth_service_pb2.McpServerCredential(
            client_id=client.client_id, client_secret=client.client_secret, chitty_id=chitty_id
        ),
        scopes=scopes,
    )


def authorize_request(client_id: str, scopes: Sequence[str]) -> auth_service_pb2.AuthorizeRequest:
    return auth_service_pb2.AuthorizeRequest(
        response_type="code",
        client_id=client_id,
        redirect_uri=REDIRECT,
        scopes=list(scopes),
        state="st",
        code_challenge=pkce().challenge,
        code_challenge_method="S256",
    )


# -- the approving token grants only what it holds ---------------------------------------------


async def test_authorize_grants_only_scopes_the_approving_token_holds(
    server: Server, dev_authority: DevAuthority
) -> None:
    async with aio.insecure_channel(server.grpc_target) as channel:
        auth = auth_service_pb2_grpc.AuthServiceStub(channel)
        app = await linked_app(
            channel, await admin(server), ["mcp:read", "mcp:write", "cross_sync"]
        )
        person = await portal(channel, dev_authority, "ada@example.com", ["mcp:read"])
        assert list(person.scopes) == ["mcp:read"]

        info = await refused(
            auth.Authorize(
                authorize_request(app.client_id, ["cross_sync", "mcp:write"]),
                metadata=bearer(person.access_token),
            ),
            grpc.StatusCode.PERMISSION_DENIED,
        )
        assert info.reason == "SCOPE_NOT_HELD"
        assert info.metadata["scope"] == "cross_sync"
        # Asking for nothing means every scope the app may have: still more than the token holds.
        info = await refused(
            auth.Authorize(
                authorize_request(app.client_id, []), metadata=bearer(person.access_token)
            ),
            grpc.StatusCode.PERMISSION_DENIED,
        )
        assert info.reason == "SCOPE_NOT_HELD"
        assert info.metadata["scope"] == "mcp:write"
        assert consents(server, person.chitty_id) == {}

        granted = await auth.Authorize(
            authorize_request(app.client_id, ["mcp:read"]), metadata=bearer(person.access_token)
        )
        assert granted.code
        assert consents(server, person.chitty_id) == {app.client_id: "mcp:read"}

    refusals = await server.store.list_audit_events(AuditQuery(action="oauth.authorize"))
    assert [e.attributes.get("reason") for e in refusals if e.outcome == "failure"] == [
        "SCOPE_NOT_HELD", "SCOPE_NOT_HELD"
    ]  # fmt: skip


async def test_consent_never_grants_an_admin_scope(
    server: Server, dev_authority: DevAuthority
) -> None:
    async with aio.insecure_channel(server.grpc_target) as channel:
        auth = auth_service_pb2_grpc.AuthServiceStub(channel)
        app = await linked_app(channel, await admin(server), ["mcp:read", "clients:admin"])
        person = await portal(channel, dev_authority, "ada@example.com", ["mcp:read"])
        # A person's token that somehow holds an administrative scope still cannot pass it on.
        holder = await token_minter(server)(
            subject=person.chitty_id, chitty_id=person.chitty_id, client_id="chittyauth-portal",
            token_use="portal", scopes=("mcp:read", "clients:admin"),
        )  # fmt: skip
        info = await refused(
            auth.Authorize(
                authorize_request(app.client_id, ["clients:admin"]), metadata=bearer(holder)
            ),
            grpc.StatusCode.PERMISSION_DENIED,
        )
        assert info.reason == "SCOPE_NOT_GRANTABLE"
        assert info.metadata["scope"] == "clients:admin"
        assert consents(server, person.chitty_id) == {}


async def test_consent_page_offers_and_grants_only_scopes_the_cookie_token_holds(
    server: Server, base: str, browser: aiohttp.ClientSession, dev_authority: DevAuthority
) -> None:
    async with aio.insecure_channel(server.grpc_target) as channel:
        app = await linked_app(
            channel, await admin(server), ["mcp:read", "mcp:write", "cross_sync"]
        )
        narrow = await portal(channel, dev_authority, "ada@example.com", ["mcp:read"])
    params = authorize_params(app.client_id, pkce().challenge, scope="cross_sync mcp:write")

    # The person's session holds only mcp:read: no consent page, an invalid_scope redirect.
    browser.cookie_jar.update_cookies({COOKIE: narrow.access_token}, URL(base))
    response, page = await consent(browser, base, params)
    assert response.status == 302, page
    returned = query_of(response.headers["Location"])
    assert returned["error"] == "invalid_scope"
    assert "cross_sync" in returned["error_description"]
    assert returned["state"] == "st-123"

    # A form shown to a wider session of the same person, posted with the narrow one: refused.
    assertion = await dev_authority.mint_assertion("ada@example.com")
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as wide:
        async with wide.post(f"{base}/portal/login", headers={ASSERTION: assertion}) as login:
            assert login.status == 200
            assert (await login.json())["chitty_id"] == narrow.chitty_id
        shown, page = await consent(wide, base, params)
        assert shown.status == 200, page
        fields = form_fields(page)
    posted = await answer(browser, base, fields)
    assert posted.status == 302
    returned = query_of(posted.headers["Location"])
    assert returned["error"] == "invalid_scope"
    assert "code" not in returned
    assert consents(server, narrow.chitty_id) == {}


# -- naming a ChittyID grants nothing: MCP server logins ---------------------------------------


async def test_mcp_server_cannot_log_in_for_a_person_who_did_not_consent(
    server: Server, base: str, dev_authority: DevAuthority
) -> None:
    async with aio.insecure_channel(server.grpc_target) as channel:
        auth = auth_service_pb2_grpc.AuthServiceStub(channel)
        mcp = await mcp_server_client(channel, await admin(server))
        victim = await portal(channel, dev_authority, "victim@example.com", ["mcp:read"])

        for scopes in (["sessions:read"], []):
            info = await refused(
                auth.Authenticate(mcp_login(mcp, victim.chitty_id, scopes)),
                grpc.StatusCode.PERMISSION_DENIED,
            )
            assert info.reason == "CONSENT_REQUIRED"
        async with (
            aiohttp.ClientSession() as http,
            http.post(
                f"{base}/v1/mcp/authenticate",
                headers=basic(mcp),
                json={"chitty_id": victim.chitty_id},
            ) as response,
        ):
            body = await response.json()
            assert (response.status, body["reason"]) == (403, "CONSENT_REQUIRED")
        refusals = await server.store.list_audit_events(AuditQuery(action="auth.mcp_server"))
        assert {e.attributes.get("reason") for e in refusals} == {"CONSENT_REQUIRED"}

        # The person approves the server for mcp:read with their own token: now it may act for
        # them, within that consent, and its token names it as the actor.
        await consent_through_authorize(
            channel, victim.access_token, mcp.client_id, REDIRECT, ["mcp:read"]
        )
        issued = await auth.Authenticate(mcp_login(mcp, victim.chitty_id))
        assert list(issued.scopes) == ["mcp:read"]
        claims = (
            await auth.Validate(auth_service_pb2.ValidateRequest(token=issued.access_token))
        ).claims
        assert (claims.sub, claims.chitty_id, claims.act.sub) == (
            mcp.client_id, victim.chitty_id, mcp.client_id
        )  # fmt: skip
        info = await refused(
            auth.Authenticate(mcp_login(mcp, victim.chitty_id, ["sessions:read"])),
            grpc.StatusCode.PERMISSION_DENIED,
        )
        assert (info.reason, info.metadata["scope"]) == ("CONSENT_REQUIRED", "sessions:read")
        # The server's own token (no person) needs no consent.
        assert (await auth.Authenticate(mcp_login(mcp, ""))).access_token

        # Acting for the person is not being the person: it approves nothing.
        info = await refused(
            auth.Authorize(
                authorize_request(mcp.client_id, ["mcp:read"]), metadata=bearer(issued.access_token)
            ),
            grpc.StatusCode.PERMISSION_DENIED,
        )
        assert info.reason == "PRINCIPAL_NOT_ALLOWED"

    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{base}/v1/mcp/authenticate",
            headers=basic(mcp),
            json={"chitty_id": victim.chitty_id},
        ) as response,
    ):
        body = await response.json()
        assert response.status == 200, body
        assert body["chitty_id"] == victim.chitty_id


# -- naming a ChittyID grants nothing: IssueToken ------------------------------------------------


async def test_tokens_issue_client_cannot_issue_for_a_person_or_approve_with_it(
    server: Server, base: str, browser: aiohttp.ClientSession, dev_authority: DevAuthority
) -> None:
    async with aio.insecure_channel(server.grpc_target) as channel:
        auth = auth_service_pb2_grpc.AuthServiceStub(channel)
        ops = await admin(server)
        issuer = await register_client(channel, ops, scopes=["tokens:issue"])
        evil = await linked_app(channel, ops, ["sessions:read", "cross_sync"])
        victim = await portal(channel, dev_authority, "victim@example.com", ["mcp:read"])
        machine = await auth.Exchange(
            auth_service_pb2.ExchangeRequest(
                client_id=issuer.client_id,
                client_secret=issuer.client_secret,
                client_credentials=auth_service_pb2.ClientCredentialsGrant(),
                scopes=["tokens:issue"],
            )
        )

        info = await refused(
            auth.IssueToken(
                auth_service_pb2.IssueTokenRequest(chitty_id=victim.chitty_id),
                metadata=bearer(machine.access_token),
            ),
            grpc.StatusCode.PERMISSION_DENIED,
        )
        assert (info.reason, info.metadata["client_id"]) == ("CONSENT_REQUIRED", issuer.client_id)
        async with (
            aiohttp.ClientSession() as http,
            http.post(
                f"{base}/v1/tokens/generate",
                headers={"Authorization": f"Bearer {machine.access_token}"},
                json={"chitty_id": victim.chitty_id},
            ) as response,
        ):
            body = await response.json()
            assert (response.status, body["reason"]) == (403, "CONSENT_REQUIRED")

        # Even for a person who did consent to the issuing client, the issued token acts for
        # them (a delegate): it approves no app, on any surface, and reads nothing of theirs.
        await record_consent(server, victim.chitty_id, issuer.client_id, ["tokens:issue"])
        issued = await auth.IssueToken(
            auth_service_pb2.IssueTokenRequest(chitty_id=victim.chitty_id),
            metadata=bearer(machine.access_token),
        )
        claims = (
            await auth.Validate(auth_service_pb2.ValidateRequest(token=issued.access_token))
        ).claims
        assert claims.act.sub == issuer.client_id
        info = await refused(
            auth.Authorize(
                authorize_request(evil.client_id, ["sessions:read", "cross_sync"]),
                metadata=bearer(issued.access_token),
            ),
            grpc.StatusCode.PERMISSION_DENIED,
        )
        assert info.reason == "PRINCIPAL_NOT_ALLOWED"
        info = await refused(
            sync_service_pb2_grpc.SyncServiceStub(channel).ListSessions(
                sync_service_pb2.ListSessionsRequest(), metadata=bearer(issued.access_token)
            ),
            grpc.StatusCode.PERMISSION_DENIED,
        )
        assert info.reason == "INSUFFICIENT_SCOPE"

    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{base}/v1/mcp/linked-app/oauth",
            headers={"Authorization": f"Bearer {issued.access_token}"},
            json={
                "app_id": evil.client_id, "chitty_id": victim.chitty_id,
                "redirect_uri": REDIRECT, "scopes": ["sessions:read", "cross_sync"],
                "code_challenge": pkce().challenge,
            },
        ) as response,
    ):  # fmt: skip
        body = await response.json()
        assert (response.status, body["reason"]) == (403, "PRINCIPAL_NOT_ALLOWED")
    # As the consent page's session cookie it is nobody signed in.
    browser.cookie_jar.update_cookies({COOKIE: issued.access_token}, URL(base))
    response, page = await consent(
        browser, base, authorize_params(evil.client_id, pkce().challenge, scope="cross_sync")
    )
    assert response.status == 401, page
    assert consents(server, victim.chitty_id) == {issuer.client_id: "tokens:issue"}
