"""ClientService over a real server: every RPC's success path and its refusals."""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import pytest
from google.protobuf import field_mask_pb2
from grpc import aio

from chitty.auth.v1 import (
    auth_service_pb2,
    auth_service_pb2_grpc,
    client_pb2,
    client_service_pb2,
    client_service_pb2_grpc,
)
from chittyauth.app import Server
from chittyauth.domain import ids
from tests.clients.helpers import audit_events, linked_app, reason, sql_all
from tests.conftest import bearer

Mint = Callable[..., Awaitable[str]]
pb = client_service_pb2


@pytest.fixture
def stub(channel: aio.Channel) -> client_service_pb2_grpc.ClientServiceStub:
    return client_service_pb2_grpc.ClientServiceStub(channel)


async def refused(call: Awaitable[Any]) -> aio.AioRpcError:
    with pytest.raises(aio.AioRpcError) as caught:
        await call
    return caught.value


async def test_create_confidential_client_shows_the_secret_once(
    stub: client_service_pb2_grpc.ClientServiceStub, server: Server, admin_token: str
) -> None:
    reply = await stub.CreateClient(
        pb.CreateClientRequest(client=linked_app(client_id="app-1")), metadata=bearer(admin_token)
    )
    secret = reply.client_secret
    assert secret.startswith("cs_")
    assert ids.has_valid_checksum(secret, "cs_")
    client = reply.client
    assert client.client_id == "app-1"
    assert client.secret_hint == secret[:8]
    assert client.token_endpoint_auth_method == (
        client_pb2.TOKEN_ENDPOINT_AUTH_METHOD_CLIENT_SECRET_BASIC
    )
    assert list(client.grant_types) == [
        client_pb2.GRANT_TYPE_AUTHORIZATION_CODE,
        client_pb2.GRANT_TYPE_REFRESH_TOKEN,
    ]
    assert client.create_time.seconds > 0

    got = await stub.GetClient(pb.GetClientRequest(client_id="app-1"), metadata=bearer(admin_token))
    assert got.client == client
    stored = sql_all(
        server.config.store.path,
        "SELECT secret_hash, secret_hint, source FROM oauth_clients WHERE client_id = 'app-1'",
    )
    assert stored == [(hashlib.sha256(secret.encode()).hexdigest(), secret[:8], "api")]
    [event] = await audit_events(server, "client.created")
    assert (event.actor, event.subject, event.outcome) == ("test-admin", "app-1", "success")
    assert secret not in repr(event)
    assert server.clients.authenticate("app-1", secret).client_id == "app-1"


async def test_generated_id_and_public_client_defaults(
    stub: client_service_pb2_grpc.ClientServiceStub, admin_token: str
) -> None:
    reply = await stub.CreateClient(
        pb.CreateClientRequest(client=linked_app(confidential=False)), metadata=bearer(admin_token)
    )
    assert reply.client_secret == ""
    assert reply.client.client_id.startswith("cli_")
    assert reply.client.secret_hint == ""
    assert reply.client.token_endpoint_auth_method == client_pb2.TOKEN_ENDPOINT_AUTH_METHOD_NONE


async def test_mcp_server_gets_server_id_and_capabilities(
    stub: client_service_pb2_grpc.ClientServiceStub, admin_token: str
) -> None:
    client = client_pb2.Client(
        client_id="mcp-x",
        display_name="MCP X",
        kind=client_pb2.CLIENT_KIND_MCP_SERVER,
        confidential=True,
        allowed_scopes=["mcp:read"],
        capabilities=["tools"],
    )
    reply = await stub.CreateClient(
        pb.CreateClientRequest(client=client), metadata=bearer(admin_token)
    )
    assert reply.client.server_id == "mcp-x"
    assert list(reply.client.capabilities) == ["tools"]
    assert client_pb2.GRANT_TYPE_CLIENT_CREDENTIALS in reply.client.grant_types

    linked = linked_app(server_id="nope")
    error = await refused(
        stub.CreateClient(pb.CreateClientRequest(client=linked), metadata=bearer(admin_token))
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT


CALLS: list[tuple[str, Any]] = [
    ("CreateClient", pb.CreateClientRequest(client=linked_app())),
    ("GetClient", pb.GetClientRequest(client_id="x")),
    ("ListClients", pb.ListClientsRequest()),
    ("UpdateClient", pb.UpdateClientRequest(client=linked_app(client_id="x"))),
    ("DeleteClient", pb.DeleteClientRequest(client_id="x")),
    ("RotateClientSecret", pb.RotateClientSecretRequest(client_id="x")),
]


@pytest.mark.parametrize(("method", "request_message"), CALLS)
async def test_every_rpc_needs_a_token(
    stub: client_service_pb2_grpc.ClientServiceStub, method: str, request_message: Any
) -> None:
    error = await refused(getattr(stub, method)(request_message))
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    error = await refused(getattr(stub, method)(request_message, metadata=bearer("not-a-token")))
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED


@pytest.mark.parametrize(("method", "request_message"), CALLS)
async def test_every_rpc_needs_an_admin_scope(
    stub: client_service_pb2_grpc.ClientServiceStub,
    server: Server,
    token_for: Mint,
    method: str,
    request_message: Any,
) -> None:
    token = await token_for(subject="someone", scopes=("mcp:read", "api_keys:generate"))
    error = await refused(getattr(stub, method)(request_message, metadata=bearer(token)))
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert reason(error) == "INSUFFICIENT_SCOPE"
    failures = [e for e in await audit_events(server) if e.outcome == "failure"]
    assert [(e.actor, e.attributes["reason"]) for e in failures] == [
        ("someone", "INSUFFICIENT_SCOPE")
    ]


async def test_clients_admin_scope_is_enough(
    stub: client_service_pb2_grpc.ClientServiceStub, token_for: Mint
) -> None:
    token = await token_for(subject="ops", scopes=("clients:admin",))
    reply = await stub.ListClients(pb.ListClientsRequest(), metadata=bearer(token))
    assert list(reply.clients) == []


BAD_REDIRECTS = [
    "http://app.example/callback",  # http off loopback
    "https://app.example/callback#top",  # fragment
    "https://app.example/callback#",  # empty fragment
    "/callback",  # relative
    "app.example/callback",  # no scheme
    "ftp://app.example/callback",  # other scheme
    "https://user:pw@app.example/callback",  # user information
    "https://app.example/call back",  # space
    "https:///callback",  # no host
    "https://app.example:99999/callback",  # bad port
    "http://127.0.0.2/callback",  # not one of the loopback names we accept
    "https://app.example/" + "a" * 2000,  # too long
]


@pytest.mark.parametrize("uri", BAD_REDIRECTS)
async def test_bad_redirect_uris_are_refused(
    stub: client_service_pb2_grpc.ClientServiceStub, admin_token: str, uri: str
) -> None:
    request = pb.CreateClientRequest(client=linked_app(redirect_uris=[uri]))
    error = await refused(stub.CreateClient(request, metadata=bearer(admin_token)))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert reason(error) == "INVALID_REDIRECT_URI"


async def test_loopback_redirects_and_limits(
    stub: client_service_pb2_grpc.ClientServiceStub, admin_token: str
) -> None:
    uris = ["http://127.0.0.1:8765/cb", "http://[::1]/cb", "http://localhost:3000/cb"]
    reply = await stub.CreateClient(
        pb.CreateClientRequest(client=linked_app(redirect_uris=uris)), metadata=bearer(admin_token)
    )
    assert list(reply.client.redirect_uris) == uris

    eleven = [f"https://app.example/cb{i}" for i in range(11)]
    error = await refused(
        stub.CreateClient(
            pb.CreateClientRequest(client=linked_app(redirect_uris=eleven)),
            metadata=bearer(admin_token),
        )
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert reason(error) == "INVALID_REDIRECT_URI"


@pytest.mark.parametrize(
    "fields",
    [
        {"display_name": ""},
        {"kind": client_pb2.CLIENT_KIND_UNSPECIFIED},
        {"allowed_scopes": ['bad"scope']},
        {"allowed_scopes": ["has space"]},
        {"grant_types": [client_pb2.GRANT_TYPE_UNSPECIFIED]},
        {"client_id": "bad id"},
        {"client_id": "x" * 129},
        {"redirect_uris": []},  # authorization_code needs a redirect URI
        {"token_endpoint_auth_method": client_pb2.TOKEN_ENDPOINT_AUTH_METHOD_NONE},
        {"metadata_document_uri": "http://app.example/meta.json"},
    ],
)
async def test_bad_fields_are_invalid_argument(
    stub: client_service_pb2_grpc.ClientServiceStub, server: Server, admin_token: str,
    fields: dict[str, Any],
) -> None:  # fmt: skip
    request = pb.CreateClientRequest(client=linked_app(**fields))
    error = await refused(stub.CreateClient(request, metadata=bearer(admin_token)))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    [event] = await audit_events(server, "client.created")
    assert event.outcome == "failure"


async def test_public_client_cannot_use_client_credentials(
    stub: client_service_pb2_grpc.ClientServiceStub, admin_token: str
) -> None:
    client = linked_app(confidential=False, grant_types=[client_pb2.GRANT_TYPE_CLIENT_CREDENTIALS])
    error = await refused(
        stub.CreateClient(pb.CreateClientRequest(client=client), metadata=bearer(admin_token))
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "public client" in (error.details() or "")


async def test_duplicate_id_is_already_exists(
    stub: client_service_pb2_grpc.ClientServiceStub, admin_token: str
) -> None:
    request = pb.CreateClientRequest(client=linked_app(client_id="dup"))
    await stub.CreateClient(request, metadata=bearer(admin_token))
    error = await refused(stub.CreateClient(request, metadata=bearer(admin_token)))
    assert error.code() == grpc.StatusCode.ALREADY_EXISTS


async def test_unknown_client_is_not_found(
    stub: client_service_pb2_grpc.ClientServiceStub, admin_token: str
) -> None:
    for call in (
        stub.GetClient(pb.GetClientRequest(client_id="nope"), metadata=bearer(admin_token)),
        stub.DeleteClient(pb.DeleteClientRequest(client_id="nope"), metadata=bearer(admin_token)),
        stub.RotateClientSecret(
            pb.RotateClientSecretRequest(client_id="nope"), metadata=bearer(admin_token)
        ),
        stub.UpdateClient(
            pb.UpdateClientRequest(
                client=linked_app(client_id="nope"),
                update_mask=field_mask_pb2.FieldMask(paths=["display_name"]),
            ),
            metadata=bearer(admin_token),
        ),
    ):
        error = await refused(call)
        assert error.code() == grpc.StatusCode.NOT_FOUND
        assert reason(error) == "CLIENT_NOT_FOUND"


async def test_list_pages_oldest_first(
    stub: client_service_pb2_grpc.ClientServiceStub, admin_token: str
) -> None:
    created = []
    for i in range(7):
        kind = client_pb2.CLIENT_KIND_SERVICE if i % 3 == 0 else client_pb2.CLIENT_KIND_LINKED_APP
        client = linked_app(client_id=f"c{i}", kind=kind)
        if kind == client_pb2.CLIENT_KIND_SERVICE:
            client.ClearField("redirect_uris")
        await stub.CreateClient(pb.CreateClientRequest(client=client), metadata=bearer(admin_token))
        created.append(f"c{i}")

    seen: list[str] = []
    sizes = []
    token = ""
    while True:
        reply = await stub.ListClients(
            pb.ListClientsRequest(page_size=3, page_token=token), metadata=bearer(admin_token)
        )
        sizes.append(len(reply.clients))
        seen.extend(c.client_id for c in reply.clients)
        token = reply.next_page_token
        if not token:
            break
    assert sizes == [3, 3, 1]
    assert seen == created

    services = await stub.ListClients(
        pb.ListClientsRequest(kind=client_pb2.CLIENT_KIND_SERVICE), metadata=bearer(admin_token)
    )
    assert [c.client_id for c in services.clients] == ["c0", "c3", "c6"]
    everything = await stub.ListClients(pb.ListClientsRequest(), metadata=bearer(admin_token))
    assert len(everything.clients) == 7
    assert everything.next_page_token == ""


@pytest.mark.parametrize("page_token", ["garbage!", "bm90IGpzb24", "WzEsMl0", "x" * 2000])
async def test_bad_page_token_is_invalid_argument(
    stub: client_service_pb2_grpc.ClientServiceStub, admin_token: str, page_token: str
) -> None:
    error = await refused(
        stub.ListClients(pb.ListClientsRequest(page_token=page_token), metadata=bearer(admin_token))
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert reason(error) == "INVALID_PAGE_TOKEN"
    error = await refused(
        stub.ListClients(pb.ListClientsRequest(page_size=-1), metadata=bearer(admin_token))
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_update_changes_only_the_masked_fields(
    stub: client_service_pb2_grpc.ClientServiceStub, server: Server, admin_token: str
) -> None:
    created = await stub.CreateClient(
        pb.CreateClientRequest(client=linked_app(client_id="app-u")), metadata=bearer(admin_token)
    )
    wanted = linked_app(
        client_id="app-u",
        display_name="Renamed",
        allowed_scopes=["mcp:read"],  # not in the mask: must stay as it was
        redirect_uris=["https://app.example/new"],
    )
    reply = await stub.UpdateClient(
        pb.UpdateClientRequest(
            client=wanted,
            update_mask=field_mask_pb2.FieldMask(paths=["display_name", "redirectUris"]),
        ),
        metadata=bearer(admin_token),
    )
    assert reply.client.display_name == "Renamed"
    assert list(reply.client.redirect_uris) == ["https://app.example/new"]
    assert list(reply.client.allowed_scopes) == ["mcp:read", "mcp:write"]
    assert reply.client.secret_hint == created.client.secret_hint
    [event] = await audit_events(server, "client.updated")
    assert event.attributes["fields"] == "display_name,redirect_uris"
    assert server.clients.get("app-u").display_name == "Renamed"  # type: ignore[union-attr]
    # The secret is untouched by an update.
    assert server.clients.authenticate("app-u", created.client_secret).client_id == "app-u"


@pytest.mark.parametrize(
    ("paths", "expected_reason"),
    [
        (["bogus_field"], "INVALID_FIELD_MASK"),
        (["client_id"], "INVALID_FIELD_MASK"),
        (["kind"], "INVALID_FIELD_MASK"),
        (["secret_hint"], "INVALID_FIELD_MASK"),
        ([], "INVALID_FIELD_MASK"),
    ],
)
async def test_update_refuses_bad_masks(
    stub: client_service_pb2_grpc.ClientServiceStub,
    admin_token: str,
    paths: list[str],
    expected_reason: str,
) -> None:
    await stub.CreateClient(
        pb.CreateClientRequest(client=linked_app(client_id="app-m")), metadata=bearer(admin_token)
    )
    error = await refused(
        stub.UpdateClient(
            pb.UpdateClientRequest(
                client=linked_app(client_id="app-m"),
                update_mask=field_mask_pb2.FieldMask(paths=paths),
            ),
            metadata=bearer(admin_token),
        )
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert reason(error) == expected_reason


async def test_update_validates_the_new_values(
    stub: client_service_pb2_grpc.ClientServiceStub, admin_token: str
) -> None:
    await stub.CreateClient(
        pb.CreateClientRequest(client=linked_app(client_id="app-v")), metadata=bearer(admin_token)
    )
    error = await refused(
        stub.UpdateClient(
            pb.UpdateClientRequest(
                client=linked_app(client_id="app-v", redirect_uris=["http://evil.example/cb"]),
                update_mask=field_mask_pb2.FieldMask(paths=["redirect_uris"]),
            ),
            metadata=bearer(admin_token),
        )
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert reason(error) == "INVALID_REDIRECT_URI"


async def test_delete_removes_the_client_and_revokes_its_tokens(
    stub: client_service_pb2_grpc.ClientServiceStub,
    channel: aio.Channel,
    server: Server,
    admin_token: str,
    token_for: Mint,
) -> None:
    await stub.CreateClient(
        pb.CreateClientRequest(client=linked_app(client_id="gone")), metadata=bearer(admin_token)
    )
    its_token = await token_for(subject="someone", scopes=("mcp:read",), client_id="gone")
    await stub.DeleteClient(pb.DeleteClientRequest(client_id="gone"), metadata=bearer(admin_token))

    assert server.clients.get("gone") is None
    assert sql_all(server.config.store.path, "SELECT * FROM oauth_clients") == []
    error = await refused(
        stub.GetClient(pb.GetClientRequest(client_id="gone"), metadata=bearer(admin_token))
    )
    assert error.code() == grpc.StatusCode.NOT_FOUND
    auth = auth_service_pb2_grpc.AuthServiceStub(channel)
    validation = await auth.Validate(auth_service_pb2.ValidateRequest(token=its_token))
    assert not validation.active
    # Its id stays reserved while tokens issued to it could still be alive.
    error = await refused(
        stub.CreateClient(
            pb.CreateClientRequest(client=linked_app(client_id="gone")),
            metadata=bearer(admin_token),
        )
    )
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert reason(error) == "CLIENT_ID_RECENTLY_DELETED"
    [event] = await audit_events(server, "client.deleted")
    assert (event.subject, event.outcome) == ("gone", "success")


async def test_rotate_secret_replaces_the_old_one(
    stub: client_service_pb2_grpc.ClientServiceStub, server: Server, admin_token: str
) -> None:
    created = await stub.CreateClient(
        pb.CreateClientRequest(client=linked_app(client_id="rot")), metadata=bearer(admin_token)
    )
    rotated = await stub.RotateClientSecret(
        pb.RotateClientSecretRequest(client_id="rot"), metadata=bearer(admin_token)
    )
    assert rotated.client_secret.startswith("cs_")
    assert rotated.client_secret != created.client_secret
    assert rotated.client.secret_hint == rotated.client_secret[:8]
    assert server.clients.authenticate("rot", rotated.client_secret).client_id == "rot"
    with pytest.raises(Exception, match="client authentication failed"):
        server.clients.authenticate("rot", created.client_secret)
    [event] = await audit_events(server, "client.secret_rotated")
    assert rotated.client_secret not in repr(event)
    assert event.attributes["secret_sha256_prefix"] == ids.secret_hash(rotated.client_secret)[:8]

    public = await stub.CreateClient(
        pb.CreateClientRequest(client=linked_app(confidential=False)), metadata=bearer(admin_token)
    )
    error = await refused(
        stub.RotateClientSecret(
            pb.RotateClientSecretRequest(client_id=public.client.client_id),
            metadata=bearer(admin_token),
        )
    )
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert reason(error) == "PUBLIC_CLIENT"


async def test_audit_chain_stays_valid(
    stub: client_service_pb2_grpc.ClientServiceStub, server: Server, admin_token: str
) -> None:
    await stub.CreateClient(
        pb.CreateClientRequest(client=linked_app(client_id="a1")), metadata=bearer(admin_token)
    )
    await stub.RotateClientSecret(
        pb.RotateClientSecretRequest(client_id="a1"), metadata=bearer(admin_token)
    )
    await stub.DeleteClient(pb.DeleteClientRequest(client_id="a1"), metadata=bearer(admin_token))
    actions = [e.action for e in await audit_events(server) if e.action.startswith("client.")]
    assert actions == ["client.created", "client.secret_rotated", "client.deleted"]
    kinds = sql_all(
        server.config.store.path,
        "SELECT kind FROM changes WHERE kind LIKE 'client.%' ORDER BY seq",
    )
    assert [k for (k,) in kinds] == ["client.created", "client.secret_rotated", "client.deleted"]
    assert (await server.store.verify_audit_log()).valid
