"""PermissionService: thin gRPC methods over the permission registry."""

from __future__ import annotations

from typing import Any

from grpc import aio

from chitty.auth.v1 import permission_pb2, permission_service_pb2, permission_service_pb2_grpc
from chittyauth.domain.permissions import GrantRow, PermissionRegistry
from chittyauth.rpc.auth import PrincipalResolver, caller
from chittyauth.rpc.context import current_call
from chittyauth.rpc.convert import seconds, timestamp

Context = aio.ServicerContext[Any, Any]


class PermissionServicer(permission_service_pb2_grpc.PermissionServiceServicer):
    """GrantPermission, CheckPermission, ListPermissions and RevokePermission."""

    def __init__(self, registry: PermissionRegistry, resolver: PrincipalResolver) -> None:
        self._registry = registry
        self._resolver = resolver

    async def GrantPermission(
        self, request: permission_service_pb2.GrantPermissionRequest, context: Context
    ) -> permission_service_pb2.GrantPermissionResponse:
        principal = caller(self._resolver)
        expires_at = seconds(request.expire_time) if request.HasField("expire_time") else None
        grant = await self._registry.grant(
            principal,
            grantee=request.grantee_chitty_id,
            permission=request.permission,
            resource=request.resource,
            expires_at=expires_at,
            grantor=request.grantor_chitty_id,
            request_id=current_call().request_id,
        )
        return permission_service_pb2.GrantPermissionResponse(grant=grant_message(grant))

    async def CheckPermission(
        self, request: permission_service_pb2.CheckPermissionRequest, context: Context
    ) -> permission_service_pb2.CheckPermissionResponse:
        principal = caller(self._resolver)
        grant = await self._registry.check(
            principal, request.chitty_id, request.permission, request.resource
        )
        response = permission_service_pb2.CheckPermissionResponse(allowed=grant is not None)
        if grant is not None:
            response.grant.CopyFrom(grant_message(grant))
        return response

    async def ListPermissions(
        self, request: permission_service_pb2.ListPermissionsRequest, context: Context
    ) -> permission_service_pb2.ListPermissionsResponse:
        principal = caller(self._resolver)
        page = await self._registry.list_grants(
            principal,
            request.chitty_id,
            page_size=request.page_size,
            page_token=request.page_token,
            include_inactive=request.include_inactive,
        )
        return permission_service_pb2.ListPermissionsResponse(
            grants=[grant_message(grant) for grant in page.grants],
            next_page_token=page.next_page_token,
        )

    async def RevokePermission(
        self, request: permission_service_pb2.RevokePermissionRequest, context: Context
    ) -> permission_service_pb2.RevokePermissionResponse:
        principal = caller(self._resolver)
        grant = await self._registry.revoke(
            principal, request.grant_id, request_id=current_call().request_id
        )
        return permission_service_pb2.RevokePermissionResponse(grant=grant_message(grant))


def grant_message(grant: GrantRow) -> permission_pb2.PermissionGrant:
    return permission_pb2.PermissionGrant(
        grant_id=grant.grant_id,
        grantor_chitty_id=grant.grantor,
        grantee_chitty_id=grant.grantee,
        permission=grant.permission,
        resource=grant.resource,
        create_time=timestamp(grant.created_at),
        expire_time=timestamp(grant.expires_at),
        revoke_time=timestamp(grant.revoked_at),
    )
