"""ApiKeyService: API keys owned by ChittyIDs; proto <-> ``domain.apikeys``."""

from __future__ import annotations

from typing import Any

from grpc import aio

from chitty.auth.v1 import api_key_pb2, api_key_service_pb2, api_key_service_pb2_grpc
from chittyauth.domain.apikeys import ApiKeyAdmin, ApiKeyRecord
from chittyauth.rpc.auth import PrincipalResolver, caller
from chittyauth.rpc.clients import timestamp
from chittyauth.rpc.context import current_call

Context = aio.ServicerContext[Any, Any]


def api_key_to_proto(record: ApiKeyRecord) -> api_key_pb2.ApiKey:
    """The wire form of a key's metadata (never the key or its hash)."""
    message = api_key_pb2.ApiKey(
        key_id=record.key_id,
        chitty_id=record.chitty_id,
        display_name=record.display_name,
        scopes=record.scopes,
        key_hint=record.key_hint,
        create_time=timestamp(record.created_at),
    )
    if record.expires_at is not None:
        message.expire_time.CopyFrom(timestamp(record.expires_at))
    if record.revoked_at is not None:
        message.revoke_time.CopyFrom(timestamp(record.revoked_at))
    return message


class ApiKeyServicer(api_key_service_pb2_grpc.ApiKeyServiceServicer):
    """Creating needs api_keys:generate (or admin); listing and revoking, ownership or admin."""

    def __init__(self, admin: ApiKeyAdmin, resolver: PrincipalResolver) -> None:
        self._admin = admin
        self._resolver = resolver

    async def CreateApiKey(
        self, request: api_key_service_pb2.CreateApiKeyRequest, context: Context
    ) -> api_key_service_pb2.CreateApiKeyResponse:
        principal = caller(self._resolver)
        expire_time = None
        if request.HasField("expire_time"):
            expire_time = request.expire_time.ToNanoseconds() / 1_000_000_000
        issued = await self._admin.create(
            principal,
            chitty_id=request.chitty_id,
            display_name=request.display_name,
            scopes=tuple(request.scopes),
            expire_time=expire_time,
            request_id=current_call().request_id,
        )
        return api_key_service_pb2.CreateApiKeyResponse(
            api_key=api_key_to_proto(issued.api_key), key=issued.key
        )

    async def ListApiKeys(
        self, request: api_key_service_pb2.ListApiKeysRequest, context: Context
    ) -> api_key_service_pb2.ListApiKeysResponse:
        principal = caller(self._resolver)
        page = await self._admin.list_keys(
            principal,
            chitty_id=request.chitty_id,
            size=request.page_size,
            page_token=request.page_token,
            include_revoked=request.include_revoked,
        )
        return api_key_service_pb2.ListApiKeysResponse(
            api_keys=[api_key_to_proto(record) for record in page.api_keys],
            next_page_token=page.next_page_token,
        )

    async def RevokeApiKey(
        self, request: api_key_service_pb2.RevokeApiKeyRequest, context: Context
    ) -> api_key_service_pb2.RevokeApiKeyResponse:
        principal = caller(self._resolver)
        record = await self._admin.revoke(
            principal, request.key_id, request_id=current_call().request_id
        )
        return api_key_service_pb2.RevokeApiKeyResponse(api_key=api_key_to_proto(record))
