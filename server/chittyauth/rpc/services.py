"""The services of chitty.auth.v1 and how each is added to a grpc.aio server."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from google.protobuf.descriptor import ServiceDescriptor

from chitty.auth.v1 import (
    api_key_service_pb2,
    api_key_service_pb2_grpc,
    audit_service_pb2,
    audit_service_pb2_grpc,
    auth_service_pb2,
    auth_service_pb2_grpc,
    client_service_pb2,
    client_service_pb2_grpc,
    key_service_pb2,
    key_service_pb2_grpc,
    permission_service_pb2,
    permission_service_pb2_grpc,
    sync_service_pb2,
    sync_service_pb2_grpc,
)


@dataclass(frozen=True)
class ServiceSpec:
    """One service of the contract."""

    descriptor: ServiceDescriptor
    base: type[Any]
    add: Callable[[Any, Any], None]

    @property
    def full_name(self) -> str:
        return self.descriptor.full_name


def _spec(module: Any, grpc_module: Any, name: str) -> ServiceSpec:
    return ServiceSpec(
        descriptor=module.DESCRIPTOR.services_by_name[name],
        base=getattr(grpc_module, f"{name}Servicer"),
        add=getattr(grpc_module, f"add_{name}Servicer_to_server"),
    )


AUTH = _spec(auth_service_pb2, auth_service_pb2_grpc, "AuthService")
SYNC = _spec(sync_service_pb2, sync_service_pb2_grpc, "SyncService")
CLIENTS = _spec(client_service_pb2, client_service_pb2_grpc, "ClientService")
API_KEYS = _spec(api_key_service_pb2, api_key_service_pb2_grpc, "ApiKeyService")
PERMISSIONS = _spec(permission_service_pb2, permission_service_pb2_grpc, "PermissionService")
KEYS = _spec(key_service_pb2, key_service_pb2_grpc, "KeyService")
AUDIT = _spec(audit_service_pb2, audit_service_pb2_grpc, "AuditService")

ALL_SERVICES: tuple[ServiceSpec, ...] = (AUTH, SYNC, CLIENTS, API_KEYS, PERMISSIONS, KEYS, AUDIT)
