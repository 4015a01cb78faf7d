"""Channel construction shared by the async and sync clients: retries, TLS, mTLS, stubs.

Retries use gRPC's own retry machinery (a service config ``retryPolicy``), applied only to
idempotent methods and only for UNAVAILABLE: a read, a Validate or a Revoke can safely be
sent twice; a Create or an Exchange (which spends a code or rotates a refresh token) cannot.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import grpc

from chitty.auth.v1 import (
    api_key_service_pb2_grpc,
    audit_service_pb2_grpc,
    auth_service_pb2_grpc,
    client_service_pb2_grpc,
    key_service_pb2_grpc,
    permission_service_pb2_grpc,
    sync_service_pb2_grpc,
)

# (service, method) pairs safe to resend: reads, Validate, and RFC 7009 Revoke.
IDEMPOTENT_METHODS: tuple[tuple[str, str], ...] = (
    ("AuthService", "Validate"),
    ("AuthService", "Revoke"),
    ("AuthService", "GetJwks"),
    ("SyncService", "GetSession"),
    ("SyncService", "ListSessions"),
    ("SyncService", "GetSessionState"),
    ("ClientService", "GetClient"),
    ("ClientService", "ListClients"),
    ("ApiKeyService", "ListApiKeys"),
    ("PermissionService", "CheckPermission"),
    ("PermissionService", "ListPermissions"),
    ("KeyService", "ListSigningKeys"),
    ("AuditService", "ListAuditEvents"),
    ("AuditService", "VerifyAuditLog"),
)
PACKAGE = "chitty.auth.v1"


@dataclass(frozen=True)
class RetryPolicy:
    """gRPC retry policy for idempotent calls (gRPC caps attempts at 5)."""

    max_attempts: int = 5
    initial_backoff_s: float = 0.25
    max_backoff_s: float = 4.0
    backoff_multiplier: float = 3.0


@dataclass(frozen=True)
class TlsOptions:
    """TLS (and, with a key and certificate, mutual TLS) for the channel; PEM bytes.

    Attributes:
        root_certificates: CA bundle to trust; None means the system roots.
        private_key: client key for mTLS.
        certificate_chain: client certificate chain for mTLS.
        server_name_override: expected name in the server certificate (tests, IP targets).
    """

    root_certificates: bytes | None = None
    private_key: bytes | None = None
    certificate_chain: bytes | None = None
    server_name_override: str = ""

    def credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(
            root_certificates=self.root_certificates,
            private_key=self.private_key,
            certificate_chain=self.certificate_chain,
        )


@dataclass(frozen=True)
class ChannelSettings:
    """How the client's channel is built.

    Attributes:
        tls: None for plaintext (local development only).
        retry: retry policy for idempotent calls; None disables retries.
        extra_options: further ``grpc.*`` channel options, appended last.
    """

    tls: TlsOptions | None = None
    retry: RetryPolicy | None = field(default_factory=RetryPolicy)
    extra_options: Sequence[tuple[str, Any]] = ()


def service_config(retry: RetryPolicy | None) -> str:
    """The service config JSON with a retry policy for the idempotent methods."""
    if retry is None:
        return json.dumps({"methodConfig": []})
    return json.dumps(
        {
            "methodConfig": [
                {
                    "name": [
                        {"service": f"{PACKAGE}.{service}", "method": method}
                        for service, method in IDEMPOTENT_METHODS
                    ],
                    "retryPolicy": {
                        "maxAttempts": retry.max_attempts,
                        "initialBackoff": f"{retry.initial_backoff_s}s",
                        "maxBackoff": f"{retry.max_backoff_s}s",
                        "backoffMultiplier": retry.backoff_multiplier,
                        "retryableStatusCodes": ["UNAVAILABLE"],
                    },
                }
            ]
        }
    )


def channel_options(settings: ChannelSettings) -> list[tuple[str, Any]]:
    """The grpc channel options for ``settings``."""
    options: list[tuple[str, Any]] = [
        ("grpc.enable_retries", 1 if settings.retry is not None else 0),
        ("grpc.service_config", service_config(settings.retry)),
        # Reconnect quickly after a server restart, so the retries find it.
        ("grpc.initial_reconnect_backoff_ms", 100),
        ("grpc.min_reconnect_backoff_ms", 100),
        ("grpc.max_reconnect_backoff_ms", 2000),
        ("grpc.keepalive_time_ms", 30_000),
    ]
    if settings.tls is not None and settings.tls.server_name_override:
        options.append(("grpc.ssl_target_name_override", settings.tls.server_name_override))
    options.extend(settings.extra_options)
    return options


def open_aio_channel(target: str, settings: ChannelSettings) -> grpc.aio.Channel:
    """An asyncio channel to ``target`` built from ``settings``."""
    options = channel_options(settings)
    if settings.tls is None:
        return grpc.aio.insecure_channel(target, options=options)
    return grpc.aio.secure_channel(target, settings.tls.credentials(), options=options)


def open_sync_channel(target: str, settings: ChannelSettings) -> grpc.Channel:
    """A blocking channel to ``target`` built from ``settings``."""
    options = channel_options(settings)
    if settings.tls is None:
        return grpc.insecure_channel(target, options=options)
    return grpc.secure_channel(target, settings.tls.credentials(), options=options)


class ServiceStubs(NamedTuple):
    """A stub for every chitty.auth.v1 service on one channel."""

    auth: Any
    sync: Any
    client: Any
    api_key: Any
    permission: Any
    key: Any
    audit: Any


def service_stubs(channel: grpc.Channel | grpc.aio.Channel) -> ServiceStubs:
    """The stubs of every service on ``channel``: the generated stubs take either kind."""
    stubs = (
        auth_service_pb2_grpc.AuthServiceStub,
        sync_service_pb2_grpc.SyncServiceStub,
        client_service_pb2_grpc.ClientServiceStub,
        api_key_service_pb2_grpc.ApiKeyServiceStub,
        permission_service_pb2_grpc.PermissionServiceStub,
        key_service_pb2_grpc.KeyServiceStub,
        audit_service_pb2_grpc.AuditServiceStub,
    )
    return ServiceStubs(*(stub(channel) for stub in stubs))
