"""RFC 8693 token exchange, attacked through a real server: over gRPC (AuthService.Exchange)
and over HTTP (/token) with Authlib's OAuth 2 client.

The exchanging client is a confidential MCP server ("chittyrouter" style): it may use the
token-exchange grant and is allowed ``mcp:read`` only. Each attack names the hole it closes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from authlib.integrations.base_client import OAuthError
from authlib.integrations.httpx_client import AsyncOAuth2Client
from google.protobuf import field_mask_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc import aio

from chitty.auth.client import AsyncAuthClient, ClientCredentials
from chitty.auth.client.verifier import LocalVerifier, TokenRejected
from chitty.auth.v1 import (
    auth_service_pb2,
    auth_service_pb2_grpc,
    client_pb2,
    client_service_pb2,
    client_service_pb2_grpc,
    token_pb2,
)
from chittyauth.app import Server
from chittyauth.clients_file import ClientsFileError, load_clients_file
from chittyauth.config import Config, replace
from chittyauth.domain.policy import MAX_EXCHANGE_DEPTH
from chittyauth.rpc.errors import STATUS_DETAILS_KEY
from chittyauth.store.protocol import AuditQuery
from tests.client.conftest import create_service_client
from tests.conftest import bearer, running_server
from tests.http_server.conftest import base_url

TE_GRANT = "urn:ietf:params:oauth:grant-type:token-exchange"
AT = "urn:ietf:params:oauth:token-type:access_token"
PERSON = "AB-C-PEO-1234-P-56-H-7"
ROUTER = "chittyrouter"
ALLOWED_AUDIENCE = "https://router.example/mcp"
# Everything a person's own portal token may hold, including what the client may not have.
PERSON_SCOPES = ("mcp:read", "mcp:write", "sessions:write", "api_keys:write")

Mint = Callable[..., Awaitable[str]]


@dataclass(frozen=True)
class Exchanger:
    client_id: str
    client_secret: str


async def register_exchanger(
    channel: aio.Channel,
    admin: str,
    client_id: str = ROUTER,
    *,
    scopes: Sequence[str] = ("mcp:read",),
    **policy: Any,
) -> Exchanger:
    """A confidential MCP server with client_credentials and token exchange."""
    stub = client_service_pb2_grpc.ClientServiceStub(channel)
    reply = await stub.CreateClient(
        client_service_pb2.CreateClientRequest(
            client=client_pb2.Client(
                client_id=client_id,
                display_name=client_id,
                kind=client_pb2.CLIENT_KIND_MCP_SERVER,
                confidential=True,
                allowed_scopes=list(scopes),
                grant_types=[
                    client_pb2.GRANT_TYPE_CLIENT_CREDENTIALS,
                    client_pb2.GRANT_TYPE_TOKEN_EXCHANGE,
                ],
                **policy,
            )
        ),
        metadata=bearer(admin),
    )
    return Exchanger(reply.client.client_id, reply.client_secret)


@pytest.fixture
async def router(channel: aio.Channel, admin_token: str) -> Exchanger:
    """No exchange policy: the registration default."""
    return await register_exchanger(channel, admin_token)


@pytest.fixture
async def governed(channel: aio.Channel, admin_token: str) -> Exchanger:
    """May request ALLOWED_AUDIENCE and ``chittychat``; delegation only."""
    return await register_exchanger(
        channel,
        admin_token,
        "chittyrouter-governed",
        scopes=("mcp:read", "mcp:write"),
        exchange_audiences=[ALLOWED_AUDIENCE, "chittychat"],
    )


@pytest.fixture
async def portal_token(token_for: Mint) -> str:
    return await token_for(
        subject=PERSON, chitty_id=PERSON, client_id="chittyauth-portal", token_use="portal",
        scopes=PERSON_SCOPES, session_id="ses_person",
    )  # fmt: skip


def reason_of(error: aio.AioRpcError) -> str:
    raw = dict(error.trailing_metadata() or ())[STATUS_DETAILS_KEY]
    info = error_details_pb2.ErrorInfo()
    status_pb2.Status.FromString(raw).details[0].Unpack(info)
    return info.reason


async def grpc_exchange(
    channel: aio.Channel,
    client: Exchanger,
    subject: str,
    *,
    actor: str = "",
    audiences: Sequence[str] = (),
    resources: Sequence[str] = (),
    scopes: Sequence[str] = (),
) -> auth_service_pb2.ExchangeResponse:
    stub = auth_service_pb2_grpc.AuthServiceStub(channel)
    return await stub.Exchange(
        auth_service_pb2.ExchangeRequest(
            client_id=client.client_id,
            client_secret=client.client_secret,
            scopes=list(scopes),
            resources=list(resources),
            token_exchange=auth_service_pb2.TokenExchangeGrant(
                subject_token=subject,
                subject_token_type=AT,
                actor_token=actor,
                actor_token_type=AT if actor else "",
                audiences=list(audiences),
            ),
        )
    )


async def http_exchange(
    server: Server, client: Exchanger, subject: str, *, scope: str = "", **params: str
) -> dict[str, Any]:
    """The token-exchange grant at /token through Authlib (client_secret_basic)."""
    async with AsyncOAuth2Client(client.client_id, client.client_secret, scope=scope) as oauth:
        token = await oauth.fetch_token(
            f"{base_url(server)}/token",
            grant_type=TE_GRANT,
            subject_token=subject,
            subject_token_type=AT,
            **params,
        )
    return dict(token)


async def validate(channel: aio.Channel, token: str) -> auth_service_pb2.ValidateResponse:
    stub = auth_service_pb2_grpc.AuthServiceStub(channel)
    return await stub.Validate(auth_service_pb2.ValidateRequest(token=token))


async def introspect(server: Server, caller: ClientCredentials, token: str) -> dict[str, Any]:
    async with AsyncOAuth2Client(caller.client_id, caller.client_secret) as oauth:
        response = await oauth.introspect_token(f"{base_url(server)}/introspect", token=token)
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    return body


# -- hole: any audience, every scope of the subject -------------------------------------------


async def test_an_audience_outside_the_clients_policy_is_invalid_target(
    server: Server, router: Exchanger, portal_token: str
) -> None:
    with pytest.raises(OAuthError) as caught:
        await http_exchange(server, router, portal_token, audience="https://bank.example")
    assert caught.value.error == "invalid_target"
    with pytest.raises(OAuthError) as caught:
        await http_exchange(server, router, portal_token, resource="https://bank.example/api")
    assert caught.value.error == "invalid_target"
    [refused, _] = await server.store.list_audit_events(
        AuditQuery(action="oauth.token_exchange", limit=10)
    )
    assert refused.outcome == "failure"
    assert refused.attributes.get("reason") == "INVALID_TARGET"


async def test_another_clients_token_for_one_resource_does_not_reach_another(
    channel: aio.Channel, governed: Exchanger, token_for: Mint
) -> None:
    # A token another client obtained for resource A, which this client got hold of.
    for_a = await token_for(
        subject=PERSON, chitty_id=PERSON, client_id="some-linked-app", token_use="linked_app",
        scopes=("mcp:read",), audience=("https://a.example",),
    )  # fmt: skip
    with pytest.raises(aio.AioRpcError) as caught:
        await grpc_exchange(channel, governed, for_a, resources=["https://b.example"])
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert reason_of(caught.value) == "INVALID_TARGET"


async def test_scopes_outside_the_clients_own_never_pass(
    server: Server, channel: aio.Channel, router: Exchanger, portal_token: str
) -> None:
    # No scope asked: the intersection of the subject's and the client's, not the subject's.
    token = await http_exchange(server, router, portal_token)
    assert token["scope"] == "mcp:read"
    check = await validate(channel, token["access_token"])
    assert check.active
    assert list(check.claims.scopes) == ["mcp:read"]
    # Asking for a scope the person holds but the client may not have is refused, not dropped.
    with pytest.raises(OAuthError) as caught:
        await http_exchange(server, router, portal_token, scope="mcp:read sessions:write")
    assert caught.value.error == "invalid_scope"
    with pytest.raises(aio.AioRpcError) as grpc_caught:
        await grpc_exchange(channel, router, portal_token, scopes=["api_keys:write"])
    assert reason_of(grpc_caught.value) == "INVALID_SCOPE"


# -- hole: an admin token exchanged ------------------------------------------------------------


async def test_admin_scopes_never_pass_through_an_exchange(
    server: Server, channel: aio.Channel, admin_token: str, token_for: Mint
) -> None:
    # Even a client allowed chittyauth:admin gets no admin scope out of an exchange.
    client = await register_exchanger(
        channel, admin_token, "overreaching", scopes=("mcp:read", "chittyauth:admin")
    )
    admin_person = await token_for(
        subject=PERSON, chitty_id=PERSON, client_id="chittyauth-portal", token_use="portal",
        scopes=("mcp:read", "chittyauth:admin", "clients:admin"),
    )  # fmt: skip
    reply = await grpc_exchange(channel, client, admin_person)
    assert list(reply.scopes) == ["mcp:read"]
    check = await validate(channel, reply.access_token)
    assert "chittyauth:admin" not in check.claims.scopes
    assert check.claims.client_id == "overreaching"
    # The exchanged token is no admin: ClientService refuses it.
    stub = client_service_pb2_grpc.ClientServiceStub(channel)
    with pytest.raises(aio.AioRpcError) as caught:
        await stub.ListClients(
            client_service_pb2.ListClientsRequest(), metadata=bearer(reply.access_token)
        )
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(OAuthError) as http_caught:
        await http_exchange(server, client, admin_person, scope="chittyauth:admin")
    assert http_caught.value.error == "invalid_scope"


# -- hole: any active token as actor_token -----------------------------------------------------


async def test_an_actor_token_of_someone_else_is_refused(
    server: Server, channel: aio.Channel, router: Exchanger, portal_token: str, token_for: Mint
) -> None:
    stranger = await token_for(
        subject="intruder", client_id="intruder", token_use="service", scopes=("mcp:read",)
    )
    with pytest.raises(aio.AioRpcError) as caught:
        await grpc_exchange(channel, router, portal_token, actor=stranger)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert reason_of(caught.value) == "ACTOR_NOT_ALLOWED"
    with pytest.raises(OAuthError) as http_caught:
        await http_exchange(server, router, portal_token, actor_token=stranger, actor_token_type=AT)
    assert http_caught.value.error == "invalid_request"
    assert "actor" in str(http_caught.value.description)


# -- hole: the derived token outlives its subject ----------------------------------------------


async def test_revoking_the_subject_kills_the_derived_token(
    server: Server, channel: aio.Channel, admin_token: str, token_for: Mint
) -> None:
    # A linked app holds a person's token and exchanges it for one its backend can use.
    app = await register_exchanger(
        channel, admin_token, "linked-app", scopes=("mcp:read",),
        exchange_audiences=[ALLOWED_AUDIENCE],
    )  # fmt: skip
    subject = await token_for(
        subject=PERSON, chitty_id=PERSON, client_id="linked-app", token_use="linked_app",
        scopes=("mcp:read",),
    )  # fmt: skip
    derived = await http_exchange(server, app, subject, audience=ALLOWED_AUDIENCE)
    watcher = await create_service_client(channel, admin_token, "gateway", ("introspect",))
    assert (await validate(channel, derived["access_token"])).active
    assert (await introspect(server, watcher, derived["access_token"]))["active"] is True

    # The app revokes the person's token (RFC 7009) ...
    async with AsyncOAuth2Client(app.client_id, app.client_secret) as oauth:
        response = await oauth.revoke_token(f"{base_url(server)}/revoke", token=subject)
    assert response.status_code == 200

    # ... and what was derived from it dies with it.
    check = await validate(channel, derived["access_token"])
    assert not check.active
    assert check.inactive_reason == token_pb2.INACTIVE_REASON_REVOKED
    assert await introspect(server, watcher, derived["access_token"]) == {"active": False}


async def test_ending_the_subjects_session_kills_the_derived_token(
    server: Server, channel: aio.Channel, router: Exchanger, portal_token: str
) -> None:
    derived = await grpc_exchange(channel, router, portal_token)
    assert (await validate(channel, derived.access_token)).active
    async with server.store.transaction() as tx:
        await server.tokens.revoke_session(tx, "ses_person", time.time() + 3600)
    assert not (await validate(channel, derived.access_token)).active


async def test_a_chain_of_exchanges_dies_with_its_first_subject(
    server: Server, channel: aio.Channel, governed: Exchanger, admin_token: str, token_for: Mint
) -> None:
    subject = await token_for(
        subject=PERSON, chitty_id=PERSON, client_id="chittyrouter-governed",
        token_use="linked_app", scopes=("mcp:read",),
    )  # fmt: skip
    first = await grpc_exchange(channel, governed, subject, audiences=["chittychat"])
    chat = await register_exchanger(
        channel, admin_token, "chittychat", exchange_audiences=[ALLOWED_AUDIENCE]
    )
    second = await grpc_exchange(channel, chat, first.access_token, audiences=[ALLOWED_AUDIENCE])
    assert (await validate(channel, second.access_token)).active
    async with server.store.transaction() as tx:
        claims = server.tokens.validate(subject).claims
        await server.tokens.revoke_jti(tx, str(claims["jti"]), float(claims["exp"]) + 60)
    assert not (await validate(channel, first.access_token)).active
    assert not (await validate(channel, second.access_token)).active


# -- the intended use --------------------------------------------------------------------------


async def test_delegation_to_an_allowed_audience(
    server: Server, channel: aio.Channel, governed: Exchanger, portal_token: str
) -> None:
    token = await http_exchange(
        server, governed, portal_token, audience=ALLOWED_AUDIENCE, scope="mcp:write"
    )
    assert token["issued_token_type"] == AT
    assert token["scope"] == "mcp:write"
    check = await validate(channel, token["access_token"])
    assert check.active
    claims = check.claims
    assert claims.sub == PERSON
    assert claims.client_id == governed.client_id
    assert list(claims.aud) == [ALLOWED_AUDIENCE]
    assert claims.token_use == token_pb2.TOKEN_USE_EXCHANGE
    # Delegation only: the client is named as the actor even without an actor_token.
    assert claims.act.sub == governed.client_id
    [issued] = await server.store.list_audit_events(AuditQuery(action="token.issued", limit=10))
    assert issued.attributes["grant"] == "token_exchange"
    assert issued.attributes["subject_jti"] == server.tokens.validate(portal_token).claims["jti"]


async def test_no_audience_yields_a_token_for_the_client_itself(
    channel: aio.Channel, router: Exchanger, portal_token: str
) -> None:
    reply = await grpc_exchange(channel, router, portal_token)
    check = await validate(channel, reply.access_token)
    assert list(check.claims.aud) == [router.client_id]


async def test_scopes_are_the_intersection(
    channel: aio.Channel, governed: Exchanger, token_for: Mint
) -> None:
    subject = await token_for(
        subject=PERSON, chitty_id=PERSON, client_id="chittyauth-portal", token_use="portal",
        scopes=("mcp:write", "cross_sync", "sessions:read"),
    )  # fmt: skip
    reply = await grpc_exchange(channel, governed, subject, audiences=["chittychat"])
    # subject {mcp:write, cross_sync, sessions:read} ∩ client {mcp:read, mcp:write}
    assert list(reply.scopes) == ["mcp:write"]
    with pytest.raises(aio.AioRpcError) as caught:
        # The client may have mcp:read, but the subject does not hold it.
        await grpc_exchange(channel, governed, subject, audiences=["chittychat"],
                            scopes=["mcp:read"])  # fmt: skip
    assert reason_of(caught.value) == "INVALID_SCOPE"


async def test_the_clients_own_actor_token_and_a_nested_act(
    server: Server, channel: aio.Channel, governed: Exchanger, token_for: Mint
) -> None:
    own = await token_for(
        subject=governed.client_id, client_id=governed.client_id, token_use="service",
        scopes=("mcp:read",),
    )  # fmt: skip
    # The subject was itself issued to a party acting for the person.
    subject = await token_for(
        subject=PERSON, chitty_id=PERSON, client_id="chittymcp", token_use="exchange",
        scopes=("mcp:read",), act={"sub": "chittymcp"},
    )  # fmt: skip
    reply = await grpc_exchange(channel, governed, subject, actor=own, audiences=[ALLOWED_AUDIENCE])
    claims = server.tokens.validate(reply.access_token).claims
    assert claims["act"] == {
        "sub": governed.client_id,
        "client_id": governed.client_id,
        "act": {"sub": "chittymcp"},
    }
    assert (await validate(channel, reply.access_token)).claims.act.sub == governed.client_id


async def test_an_actor_named_by_may_act_is_accepted(
    server: Server, channel: aio.Channel, governed: Exchanger, token_for: Mint
) -> None:
    subject = await token_for(
        subject=PERSON, chitty_id=PERSON, client_id="chittyauth-portal", token_use="portal",
        scopes=("mcp:read",), may_act={"sub": "assistant-7"},
    )  # fmt: skip
    assistant = await token_for(
        subject="assistant-7", client_id="assistants", token_use="service", scopes=()
    )
    reply = await grpc_exchange(
        channel, governed, subject, actor=assistant, audiences=["chittychat"]
    )
    assert server.tokens.validate(reply.access_token).claims["act"]["sub"] == "assistant-7"
    # Someone the subject did not name is still refused.
    other = await token_for(subject="assistant-8", client_id="assistants", token_use="service")
    with pytest.raises(aio.AioRpcError) as caught:
        await grpc_exchange(channel, governed, subject, actor=other, audiences=["chittychat"])
    assert reason_of(caught.value) == "ACTOR_NOT_ALLOWED"


async def test_impersonation_only_when_the_policy_allows_it(
    server: Server, channel: aio.Channel, admin_token: str, portal_token: str, token_for: Mint
) -> None:
    imp = await register_exchanger(
        channel, admin_token, "impersonator", exchange_audiences=["chittychat"],
        exchange_may_impersonate=True,
    )  # fmt: skip
    reply = await grpc_exchange(channel, imp, portal_token, audiences=["chittychat"])
    claims = server.tokens.validate(reply.access_token).claims
    assert "act" not in claims
    assert claims["sub"] == PERSON
    assert claims["token_use"] == "exchange"
    # With an actor token it is delegation all the same.
    own = await token_for(subject="impersonator", client_id="impersonator", scopes=())
    reply = await grpc_exchange(channel, imp, portal_token, actor=own, audiences=["chittychat"])
    assert server.tokens.validate(reply.access_token).claims["act"]["sub"] == "impersonator"


async def test_a_client_without_the_grant_is_refused(
    channel: aio.Channel, admin_token: str, portal_token: str
) -> None:
    creds = await create_service_client(channel, admin_token, "plain", ("mcp:read",))
    client = Exchanger(creds.client_id, creds.client_secret)
    with pytest.raises(aio.AioRpcError) as caught:
        await grpc_exchange(channel, client, portal_token)
    assert reason_of(caught.value) == "UNAUTHORIZED_CLIENT"


async def test_the_policy_is_part_of_the_registration(
    channel: aio.Channel, admin_token: str, governed: Exchanger
) -> None:
    stub = client_service_pb2_grpc.ClientServiceStub(channel)
    got = await stub.GetClient(
        client_service_pb2.GetClientRequest(client_id=governed.client_id),
        metadata=bearer(admin_token),
    )
    assert list(got.client.exchange_audiences) == [ALLOWED_AUDIENCE, "chittychat"]
    assert got.client.exchange_may_impersonate is False
    with pytest.raises(aio.AioRpcError) as caught:
        await register_exchanger(
            channel, admin_token, "bad-policy", exchange_audiences=["https://x.example/#frag"]
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


# -- the client library's LocalVerifier --------------------------------------------------------


@pytest.fixture
async def verifier(
    server: Server, channel: aio.Channel, admin_token: str
) -> AsyncIterator[LocalVerifier]:
    creds = await create_service_client(channel, admin_token, "api-gateway", ("introspect",))
    async with AsyncAuthClient(target=server.grpc_target, credentials=creds) as client:
        local = LocalVerifier(client, issuer=server.config.tokens.issuer, audience=ALLOWED_AUDIENCE)
        await local.start()
        try:
            yield local
        finally:
            await local.stop()


async def test_the_local_verifier_refuses_a_derived_token_of_a_revoked_subject(
    server: Server, channel: aio.Channel, governed: Exchanger, portal_token: str,
    verifier: LocalVerifier,
) -> None:  # fmt: skip
    reply = await grpc_exchange(channel, governed, portal_token, audiences=[ALLOWED_AUDIENCE])
    assert (await verifier.verify(reply.access_token)).subject == PERSON
    subject_claims = server.tokens.validate(portal_token).claims
    async with server.store.transaction() as tx:
        await server.tokens.revoke_jti(
            tx, str(subject_claims["jti"]), float(subject_claims["exp"]) + 60
        )
    deadline = time.monotonic() + 2.0
    refused: TokenRejected | None = None
    while refused is None:
        try:
            await verifier.verify(reply.access_token)
        except TokenRejected as rejected:
            refused = rejected
        else:
            assert time.monotonic() < deadline, "the subject's revocation did not arrive"
            await asyncio.sleep(0.02)
    assert refused.error == "invalid_token"


# -- the policy in the registration ------------------------------------------------------------


async def test_update_client_sets_the_policy(
    channel: aio.Channel, admin_token: str, router: Exchanger, portal_token: str
) -> None:
    stub = client_service_pb2_grpc.ClientServiceStub(channel)
    with pytest.raises(aio.AioRpcError) as caught:
        await grpc_exchange(channel, router, portal_token, audiences=["chittychat"])
    assert reason_of(caught.value) == "INVALID_TARGET"
    reply = await stub.UpdateClient(
        client_service_pb2.UpdateClientRequest(
            client=client_pb2.Client(client_id=router.client_id, exchange_audiences=["chittychat"]),
            update_mask=field_mask_pb2.FieldMask(paths=["exchange_audiences"]),
        ),
        metadata=bearer(admin_token),
    )
    assert list(reply.client.exchange_audiences) == ["chittychat"]
    granted = await grpc_exchange(channel, router, portal_token, audiences=["chittychat"])
    assert list((await validate(channel, granted.access_token)).claims.aud) == ["chittychat"]


async def test_the_clients_file_declares_the_policy(config: Config, tmp_path: Path) -> None:
    clients = tmp_path / "clients.toml"
    clients.write_text(
        "[[clients]]\n"
        'client_id = "chittymcp"\n'
        'display_name = "ChittyMCP"\n'
        'kind = "mcp_server"\n'
        'allowed_scopes = ["mcp:read"]\n'
        'grant_types = ["client_credentials", "token_exchange"]\n'
        'exchange_audiences = ["chittychat", "https://router.example/mcp"]\n'
        "exchange_may_impersonate = true\n"
    )
    async with running_server(replace(config, clients_file=str(clients))) as srv:
        record = srv.clients.get("chittymcp")
        assert record is not None
        assert record.exchange_audiences == ("chittychat", "https://router.example/mcp")
        assert record.exchange_may_impersonate is True
    clients.write_text(clients.read_text().replace("= true", '= "yes"'))
    with pytest.raises(ClientsFileError, match="exchange_may_impersonate must be true or false"):
        load_clients_file(clients)


async def test_a_chain_of_exchanges_is_bounded(
    server: Server, channel: aio.Channel, admin_token: str, token_for: Mint
) -> None:
    hop = await register_exchanger(channel, admin_token, "hop", exchange_audiences=["hop"])
    token = await token_for(
        subject=PERSON, chitty_id=PERSON, client_id="hop", token_use="linked_app",
        scopes=("mcp:read",),
    )  # fmt: skip
    for _ in range(MAX_EXCHANGE_DEPTH):
        token = (await grpc_exchange(channel, hop, token, audiences=["hop"])).access_token
    claims = server.tokens.validate(token).claims
    assert len(claims["src"]["jti"]) == MAX_EXCHANGE_DEPTH
    with pytest.raises(aio.AioRpcError) as caught:
        await grpc_exchange(channel, hop, token, audiences=["hop"])
    assert reason_of(caught.value) == "EXCHANGE_CHAIN_TOO_LONG"


async def test_deleting_the_subjects_client_kills_the_derived_token(
    channel: aio.Channel, admin_token: str, governed: Exchanger, token_for: Mint
) -> None:
    app = await register_exchanger(channel, admin_token, "doomed-app")
    subject = await token_for(
        subject=PERSON, chitty_id=PERSON, client_id=app.client_id, token_use="linked_app",
        scopes=("mcp:read",),
    )  # fmt: skip
    derived = await grpc_exchange(channel, governed, subject, audiences=["chittychat"])
    assert (await validate(channel, derived.access_token)).active
    stub = client_service_pb2_grpc.ClientServiceStub(channel)
    await stub.DeleteClient(
        client_service_pb2.DeleteClientRequest(client_id=app.client_id),
        metadata=bearer(admin_token),
    )
    check = await validate(channel, derived.access_token)
    assert not check.active
    assert check.inactive_reason == token_pb2.INACTIVE_REASON_REVOKED


async def test_only_access_tokens_are_exchanged_and_issued(
    server: Server, router: Exchanger, portal_token: str
) -> None:
    with pytest.raises(OAuthError) as caught:
        await http_exchange(
            server, router, portal_token,
            requested_token_type="urn:ietf:params:oauth:token-type:refresh_token",
        )  # fmt: skip
    assert caught.value.error == "invalid_request"
    async with AsyncOAuth2Client(router.client_id, router.client_secret) as oauth:
        with pytest.raises(OAuthError) as caught:
            await oauth.fetch_token(
                f"{base_url(server)}/token", grant_type=TE_GRANT, subject_token=portal_token,
                subject_token_type="urn:ietf:params:oauth:token-type:id_token",
            )  # fmt: skip
    assert caught.value.error == "invalid_request"
