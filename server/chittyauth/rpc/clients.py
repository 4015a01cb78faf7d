"""ClientService: OAuth clients and MCP servers (admin); proto <-> ``domain.clients``."""

from __future__ import annotations

from typing import Any

from google.protobuf import timestamp_pb2
from grpc import aio

from chitty.auth.v1 import client_pb2, client_service_pb2, client_service_pb2_grpc
from chittyauth.domain.clients import (
    AUTH_BASIC,
    AUTH_NONE,
    AUTH_POST,
    GRANT_AUTHORIZATION_CODE,
    GRANT_CLIENT_CREDENTIALS,
    GRANT_REFRESH_TOKEN,
    GRANT_TOKEN_EXCHANGE,
    ClientAdmin,
    ClientRecord,
    ClientSpec,
)
from chittyauth.rpc.auth import PrincipalResolver, caller
from chittyauth.rpc.context import current_call

Context = aio.ServicerContext[Any, Any]

KIND_TO_PROTO = {
    "linked_app": client_pb2.CLIENT_KIND_LINKED_APP,
    "mcp_server": client_pb2.CLIENT_KIND_MCP_SERVER,
    "service": client_pb2.CLIENT_KIND_SERVICE,
}
GRANT_TO_PROTO = {
    GRANT_AUTHORIZATION_CODE: client_pb2.GRANT_TYPE_AUTHORIZATION_CODE,
    GRANT_REFRESH_TOKEN: client_pb2.GRANT_TYPE_REFRESH_TOKEN,
    GRANT_CLIENT_CREDENTIALS: client_pb2.GRANT_TYPE_CLIENT_CREDENTIALS,
    GRANT_TOKEN_EXCHANGE: client_pb2.GRANT_TYPE_TOKEN_EXCHANGE,
}
AUTH_METHOD_TO_PROTO = {
    AUTH_BASIC: client_pb2.TOKEN_ENDPOINT_AUTH_METHOD_CLIENT_SECRET_BASIC,
    AUTH_POST: client_pb2.TOKEN_ENDPOINT_AUTH_METHOD_CLIENT_SECRET_POST,
    AUTH_NONE: client_pb2.TOKEN_ENDPOINT_AUTH_METHOD_NONE,
}
_KIND_FROM_PROTO = {value: name for name, value in KIND_TO_PROTO.items()}
_GRANT_FROM_PROTO = {value: name for name, value in GRANT_TO_PROTO.items()}
_AUTH_METHOD_FROM_PROTO = {value: name for name, value in AUTH_METHOD_TO_PROTO.items()}
# An unset or unknown enum value maps to a name the domain refuses with a clear message.
_INVALID = "unspecified"


def timestamp(seconds: float) -> timestamp_pb2.Timestamp:
    """A Timestamp for epoch seconds."""
    stamp = timestamp_pb2.Timestamp()
    stamp.FromNanoseconds(round(seconds * 1_000_000_000))
    return stamp


def client_to_proto(record: ClientRecord) -> client_pb2.Client:
    """The wire form of a client (never its secret or hash)."""
    return client_pb2.Client(
        client_id=record.client_id,
        display_name=record.display_name,
        kind=KIND_TO_PROTO[record.kind],
        confidential=record.confidential,
        redirect_uris=record.redirect_uris,
        allowed_scopes=record.allowed_scopes,
        grant_types=[GRANT_TO_PROTO[grant] for grant in record.grant_types],
        token_endpoint_auth_method=AUTH_METHOD_TO_PROTO[record.token_endpoint_auth_method],
        server_id=record.server_id,
        capabilities=record.capabilities,
        secret_hint=record.secret_hint,
        create_time=timestamp(record.create_time),
        update_time=timestamp(record.update_time),
        metadata_document_uri=record.metadata_document_uri,
        exchange_audiences=record.exchange_audiences,
        exchange_may_impersonate=record.exchange_may_impersonate,
    )


def spec_from_proto(client: client_pb2.Client) -> ClientSpec:
    """The settable fields of a wire client; enums left unset become empty (= default)."""
    kind = _KIND_FROM_PROTO.get(client.kind, "") if client.kind else ""
    method = ""
    if client.token_endpoint_auth_method:
        method = _AUTH_METHOD_FROM_PROTO.get(client.token_endpoint_auth_method, _INVALID)
    return ClientSpec(
        display_name=client.display_name,
        kind=kind,
        confidential=client.confidential,
        redirect_uris=tuple(client.redirect_uris),
        allowed_scopes=tuple(client.allowed_scopes),
        grant_types=tuple(_GRANT_FROM_PROTO.get(g, _INVALID) for g in client.grant_types),
        token_endpoint_auth_method=method,
        server_id=client.server_id,
        capabilities=tuple(client.capabilities),
        metadata_document_uri=client.metadata_document_uri,
        exchange_audiences=tuple(client.exchange_audiences),
        exchange_may_impersonate=client.exchange_may_impersonate,
    )


class ClientServicer(client_service_pb2_grpc.ClientServiceServicer):
    """Every method needs an admin scope (chittyauth:admin or clients:admin)."""

    def __init__(self, admin: ClientAdmin, resolver: PrincipalResolver) -> None:
        self._admin = admin
        self._resolver = resolver

    async def CreateClient(
        self, request: client_service_pb2.CreateClientRequest, context: Context
    ) -> client_service_pb2.CreateClientResponse:
        principal = caller(self._resolver)
        issued = await self._admin.create(
            principal,
            spec_from_proto(request.client),
            client_id=request.client.client_id,
            request_id=current_call().request_id,
        )
        return client_service_pb2.CreateClientResponse(
            client=client_to_proto(issued.client), client_secret=issued.secret
        )

    async def GetClient(
        self, request: client_service_pb2.GetClientRequest, context: Context
    ) -> client_service_pb2.GetClientResponse:
        principal = caller(self._resolver)
        record = await self._admin.get(
            principal, request.client_id, request_id=current_call().request_id
        )
        return client_service_pb2.GetClientResponse(client=client_to_proto(record))

    async def ListClients(
        self, request: client_service_pb2.ListClientsRequest, context: Context
    ) -> client_service_pb2.ListClientsResponse:
        principal = caller(self._resolver)
        kind = _KIND_FROM_PROTO.get(request.kind, _INVALID) if request.kind else ""
        page = await self._admin.list_clients(
            principal,
            size=request.page_size,
            page_token=request.page_token,
            kind=kind,
            request_id=current_call().request_id,
        )
        return client_service_pb2.ListClientsResponse(
            clients=[client_to_proto(record) for record in page.clients],
            next_page_token=page.next_page_token,
        )

    async def UpdateClient(
        self, request: client_service_pb2.UpdateClientRequest, context: Context
    ) -> client_service_pb2.UpdateClientResponse:
        principal = caller(self._resolver)
        record = await self._admin.update(
            principal,
            request.client.client_id,
            spec_from_proto(request.client),
            list(request.update_mask.paths),
            request_id=current_call().request_id,
        )
        return client_service_pb2.UpdateClientResponse(client=client_to_proto(record))

    async def DeleteClient(
        self, request: client_service_pb2.DeleteClientRequest, context: Context
    ) -> client_service_pb2.DeleteClientResponse:
        principal = caller(self._resolver)
        await self._admin.delete(principal, request.client_id, request_id=current_call().request_id)
        return client_service_pb2.DeleteClientResponse()

    async def RotateClientSecret(
        self, request: client_service_pb2.RotateClientSecretRequest, context: Context
    ) -> client_service_pb2.RotateClientSecretResponse:
        principal = caller(self._resolver)
        issued = await self._admin.rotate_secret(
            principal, request.client_id, request_id=current_call().request_id
        )
        return client_service_pb2.RotateClientSecretResponse(
            client=client_to_proto(issued.client), client_secret=issued.secret
        )
