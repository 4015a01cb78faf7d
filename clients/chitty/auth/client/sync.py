"""``AuthClient``: every ChittyAuth RPC as a typed blocking method over one channel.

The synchronous twin of ``AsyncAuthClient`` (same methods, same errors, same retries), for
scripts, CLIs and thread-based servers. Thread-safe: token refresh is single-flight.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator
from types import TracebackType
from typing import Any, TypeVar

import grpc
from google.protobuf.message import Message

from chitty.auth.client.channel import ChannelSettings, open_sync_channel, service_stubs
from chitty.auth.client.credentials import (
    ClientCredentials,
    Credentials,
    StaticToken,
    SyncClientCredentialsSource,
)
from chitty.auth.client.errors import error_from_rpc
from chitty.auth.v1 import (
    api_key_service_pb2,
    audit_service_pb2,
    auth_service_pb2,
    client_service_pb2,
    key_service_pb2,
    permission_service_pb2,
    sync_service_pb2,
)

R = TypeVar("R", bound=Message)
DEFAULT_TIMEOUT_S = 10.0


class AuthClient:
    """A blocking ChittyAuth client; arguments as for ``AsyncAuthClient``."""

    def __init__(
        self,
        target: str = "",
        credentials: Credentials | None = None,
        *,
        settings: ChannelSettings | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        channel: grpc.Channel | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if channel is None and not target:
            raise ValueError("a target or a channel is required")
        self._owns_channel = channel is None
        self.channel = channel or open_sync_channel(target, settings or ChannelSettings())
        self._timeout_s = timeout_s
        self._static = credentials.token if isinstance(credentials, StaticToken) else ""
        self.token_source: SyncClientCredentialsSource | None = None
        if isinstance(credentials, ClientCredentials):
            self.token_source = SyncClientCredentialsSource(
                credentials, self.channel, timeout_s=timeout_s, clock=clock
            )
        stubs = service_stubs(self.channel)
        self._auth, self._sync, self._client = stubs.auth, stubs.sync, stubs.client
        self._api_key, self._permission = stubs.api_key, stubs.permission
        self._key, self._audit = stubs.key, stubs.audit

    def close(self) -> None:
        """Closes the channel (when this client opened it)."""
        if self._owns_channel:
            self.channel.close()

    def __enter__(self) -> AuthClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def access_token(self) -> str:
        """The bearer token calls carry now ("" without credentials)."""
        if self.token_source is not None:
            return self.token_source.token()
        return self._static

    def _metadata(self, authenticate: bool) -> tuple[tuple[str, str], ...]:
        token = self.access_token() if authenticate else ""
        return (("authorization", f"Bearer {token}"),) if token else ()

    def _call(
        self,
        method: Any,
        request: Message,
        response_type: type[R],
        timeout: float | None,
        *,
        authenticate: bool = True,
    ) -> R:
        for attempt in range(2):
            metadata = self._metadata(authenticate)
            try:
                reply: R = method(request, timeout=timeout or self._timeout_s, metadata=metadata)
                return reply
            except grpc.RpcError as exc:
                if attempt == 0 and self._should_refetch(exc, authenticate):
                    continue
                raise error_from_rpc(exc) from exc
        raise AssertionError("unreachable")

    def _should_refetch(self, exc: grpc.RpcError, authenticate: bool) -> bool:
        if not authenticate or self.token_source is None:
            return False
        if getattr(exc, "code", lambda: None)() != grpc.StatusCode.UNAUTHENTICATED:
            return False
        self.token_source.invalidate()
        return True

    def _stream(
        self, method: Any, request: Message, response_type: type[R], timeout: float | None
    ) -> Generator[R, None, None]:
        call = method(request, timeout=timeout, metadata=self._metadata(True))
        try:
            yield from call
        except grpc.RpcError as exc:
            raise error_from_rpc(exc) from exc
        finally:
            call.cancel()

    # -- AuthService ---------------------------------------------------------

    def authenticate(
        self, request: auth_service_pb2.AuthenticateRequest, *, timeout: float | None = None
    ) -> auth_service_pb2.AuthenticateResponse:
        """AuthService.Authenticate."""
        return self._call(
            self._auth.Authenticate,
            request,
            auth_service_pb2.AuthenticateResponse,
            timeout,
            authenticate=False,
        )

    def authorize(
        self, request: auth_service_pb2.AuthorizeRequest, *, timeout: float | None = None
    ) -> auth_service_pb2.AuthorizeResponse:
        """AuthService.Authorize."""
        return self._call(
            self._auth.Authorize, request, auth_service_pb2.AuthorizeResponse, timeout
        )

    def exchange(
        self, request: auth_service_pb2.ExchangeRequest, *, timeout: float | None = None
    ) -> auth_service_pb2.ExchangeResponse:
        """AuthService.Exchange."""
        return self._call(
            self._auth.Exchange,
            request,
            auth_service_pb2.ExchangeResponse,
            timeout,
            authenticate=False,
        )

    def validate(
        self, request: auth_service_pb2.ValidateRequest, *, timeout: float | None = None
    ) -> auth_service_pb2.ValidateResponse:
        """AuthService.Validate."""
        return self._call(self._auth.Validate, request, auth_service_pb2.ValidateResponse, timeout)

    def revoke(
        self, request: auth_service_pb2.RevokeRequest, *, timeout: float | None = None
    ) -> auth_service_pb2.RevokeResponse:
        """AuthService.Revoke."""
        return self._call(self._auth.Revoke, request, auth_service_pb2.RevokeResponse, timeout)

    def get_jwks(
        self, request: auth_service_pb2.GetJwksRequest, *, timeout: float | None = None
    ) -> auth_service_pb2.GetJwksResponse:
        """AuthService.GetJwks."""
        return self._call(self._auth.GetJwks, request, auth_service_pb2.GetJwksResponse, timeout)

    def watch_revocations(
        self, request: auth_service_pb2.WatchRevocationsRequest, *, timeout: float | None = None
    ) -> Generator[auth_service_pb2.WatchRevocationsResponse, None, None]:
        """AuthService.WatchRevocations. A server stream; no default deadline."""
        return self._stream(
            self._auth.WatchRevocations, request, auth_service_pb2.WatchRevocationsResponse, timeout
        )

    def register_account(
        self, request: auth_service_pb2.RegisterAccountRequest, *, timeout: float | None = None
    ) -> auth_service_pb2.RegisterAccountResponse:
        """AuthService.RegisterAccount."""
        return self._call(
            self._auth.RegisterAccount,
            request,
            auth_service_pb2.RegisterAccountResponse,
            timeout,
            authenticate=False,
        )

    def issue_token(
        self, request: auth_service_pb2.IssueTokenRequest, *, timeout: float | None = None
    ) -> auth_service_pb2.IssueTokenResponse:
        """AuthService.IssueToken (admin or scope ``tokens:issue``)."""
        return self._call(
            self._auth.IssueToken, request, auth_service_pb2.IssueTokenResponse, timeout
        )

    # -- SyncService ---------------------------------------------------------

    def sync_session(
        self, request: sync_service_pb2.SyncSessionRequest, *, timeout: float | None = None
    ) -> sync_service_pb2.SyncSessionResponse:
        """SyncService.SyncSession."""
        return self._call(
            self._sync.SyncSession, request, sync_service_pb2.SyncSessionResponse, timeout
        )

    def get_session(
        self, request: sync_service_pb2.GetSessionRequest, *, timeout: float | None = None
    ) -> sync_service_pb2.GetSessionResponse:
        """SyncService.GetSession."""
        return self._call(
            self._sync.GetSession, request, sync_service_pb2.GetSessionResponse, timeout
        )

    def list_sessions(
        self, request: sync_service_pb2.ListSessionsRequest, *, timeout: float | None = None
    ) -> sync_service_pb2.ListSessionsResponse:
        """SyncService.ListSessions."""
        return self._call(
            self._sync.ListSessions, request, sync_service_pb2.ListSessionsResponse, timeout
        )

    def revoke_session(
        self, request: sync_service_pb2.RevokeSessionRequest, *, timeout: float | None = None
    ) -> sync_service_pb2.RevokeSessionResponse:
        """SyncService.RevokeSession."""
        return self._call(
            self._sync.RevokeSession, request, sync_service_pb2.RevokeSessionResponse, timeout
        )

    def revoke_all_sessions(
        self, request: sync_service_pb2.RevokeAllSessionsRequest, *, timeout: float | None = None
    ) -> sync_service_pb2.RevokeAllSessionsResponse:
        """SyncService.RevokeAllSessions."""
        return self._call(
            self._sync.RevokeAllSessions,
            request,
            sync_service_pb2.RevokeAllSessionsResponse,
            timeout,
        )

    def put_session_state(
        self, request: sync_service_pb2.PutSessionStateRequest, *, timeout: float | None = None
    ) -> sync_service_pb2.PutSessionStateResponse:
        """SyncService.PutSessionState."""
        return self._call(
            self._sync.PutSessionState, request, sync_service_pb2.PutSessionStateResponse, timeout
        )

    def get_session_state(
        self, request: sync_service_pb2.GetSessionStateRequest, *, timeout: float | None = None
    ) -> sync_service_pb2.GetSessionStateResponse:
        """SyncService.GetSessionState."""
        return self._call(
            self._sync.GetSessionState, request, sync_service_pb2.GetSessionStateResponse, timeout
        )

    def watch_sessions(
        self, request: sync_service_pb2.WatchSessionsRequest, *, timeout: float | None = None
    ) -> Generator[sync_service_pb2.WatchSessionsResponse, None, None]:
        """SyncService.WatchSessions. A server stream; no default deadline."""
        return self._stream(
            self._sync.WatchSessions, request, sync_service_pb2.WatchSessionsResponse, timeout
        )

    # -- ClientService -------------------------------------------------------

    def create_client(
        self, request: client_service_pb2.CreateClientRequest, *, timeout: float | None = None
    ) -> client_service_pb2.CreateClientResponse:
        """ClientService.CreateClient."""
        return self._call(
            self._client.CreateClient, request, client_service_pb2.CreateClientResponse, timeout
        )

    def get_client(
        self, request: client_service_pb2.GetClientRequest, *, timeout: float | None = None
    ) -> client_service_pb2.GetClientResponse:
        """ClientService.GetClient."""
        return self._call(
            self._client.GetClient, request, client_service_pb2.GetClientResponse, timeout
        )

    def list_clients(
        self, request: client_service_pb2.ListClientsRequest, *, timeout: float | None = None
    ) -> client_service_pb2.ListClientsResponse:
        """ClientService.ListClients."""
        return self._call(
            self._client.ListClients, request, client_service_pb2.ListClientsResponse, timeout
        )

    def update_client(
        self, request: client_service_pb2.UpdateClientRequest, *, timeout: float | None = None
    ) -> client_service_pb2.UpdateClientResponse:
        """ClientService.UpdateClient."""
        return self._call(
            self._client.UpdateClient, request, client_service_pb2.UpdateClientResponse, timeout
        )

    def delete_client(
        self, request: client_service_pb2.DeleteClientRequest, *, timeout: float | None = None
    ) -> client_service_pb2.DeleteClientResponse:
        """ClientService.DeleteClient."""
        return self._call(
            self._client.DeleteClient, request, client_service_pb2.DeleteClientResponse, timeout
        )

    def rotate_client_secret(
        self, request: client_service_pb2.RotateClientSecretRequest, *, timeout: float | None = None
    ) -> client_service_pb2.RotateClientSecretResponse:
        """ClientService.RotateClientSecret."""
        return self._call(
            self._client.RotateClientSecret,
            request,
            client_service_pb2.RotateClientSecretResponse,
            timeout,
        )

    # -- ApiKeyService -------------------------------------------------------

    def create_api_key(
        self, request: api_key_service_pb2.CreateApiKeyRequest, *, timeout: float | None = None
    ) -> api_key_service_pb2.CreateApiKeyResponse:
        """ApiKeyService.CreateApiKey."""
        return self._call(
            self._api_key.CreateApiKey, request, api_key_service_pb2.CreateApiKeyResponse, timeout
        )

    def list_api_keys(
        self, request: api_key_service_pb2.ListApiKeysRequest, *, timeout: float | None = None
    ) -> api_key_service_pb2.ListApiKeysResponse:
        """ApiKeyService.ListApiKeys."""
        return self._call(
            self._api_key.ListApiKeys, request, api_key_service_pb2.ListApiKeysResponse, timeout
        )

    def revoke_api_key(
        self, request: api_key_service_pb2.RevokeApiKeyRequest, *, timeout: float | None = None
    ) -> api_key_service_pb2.RevokeApiKeyResponse:
        """ApiKeyService.RevokeApiKey."""
        return self._call(
            self._api_key.RevokeApiKey, request, api_key_service_pb2.RevokeApiKeyResponse, timeout
        )

    # -- PermissionService ---------------------------------------------------

    def grant_permission(
        self,
        request: permission_service_pb2.GrantPermissionRequest,
        *,
        timeout: float | None = None,
    ) -> permission_service_pb2.GrantPermissionResponse:
        """PermissionService.GrantPermission."""
        return self._call(
            self._permission.GrantPermission,
            request,
            permission_service_pb2.GrantPermissionResponse,
            timeout,
        )

    def check_permission(
        self,
        request: permission_service_pb2.CheckPermissionRequest,
        *,
        timeout: float | None = None,
    ) -> permission_service_pb2.CheckPermissionResponse:
        """PermissionService.CheckPermission."""
        return self._call(
            self._permission.CheckPermission,
            request,
            permission_service_pb2.CheckPermissionResponse,
            timeout,
        )

    def list_permissions(
        self,
        request: permission_service_pb2.ListPermissionsRequest,
        *,
        timeout: float | None = None,
    ) -> permission_service_pb2.ListPermissionsResponse:
        """PermissionService.ListPermissions."""
        return self._call(
            self._permission.ListPermissions,
            request,
            permission_service_pb2.ListPermissionsResponse,
            timeout,
        )

    def revoke_permission(
        self,
        request: permission_service_pb2.RevokePermissionRequest,
        *,
        timeout: float | None = None,
    ) -> permission_service_pb2.RevokePermissionResponse:
        """PermissionService.RevokePermission."""
        return self._call(
            self._permission.RevokePermission,
            request,
            permission_service_pb2.RevokePermissionResponse,
            timeout,
        )

    # -- KeyService ----------------------------------------------------------

    def list_signing_keys(
        self, request: key_service_pb2.ListSigningKeysRequest, *, timeout: float | None = None
    ) -> key_service_pb2.ListSigningKeysResponse:
        """KeyService.ListSigningKeys."""
        return self._call(
            self._key.ListSigningKeys, request, key_service_pb2.ListSigningKeysResponse, timeout
        )

    def rotate_signing_key(
        self, request: key_service_pb2.RotateSigningKeyRequest, *, timeout: float | None = None
    ) -> key_service_pb2.RotateSigningKeyResponse:
        """KeyService.RotateSigningKey."""
        return self._call(
            self._key.RotateSigningKey, request, key_service_pb2.RotateSigningKeyResponse, timeout
        )

    # -- AuditService --------------------------------------------------------

    def list_audit_events(
        self, request: audit_service_pb2.ListAuditEventsRequest, *, timeout: float | None = None
    ) -> audit_service_pb2.ListAuditEventsResponse:
        """AuditService.ListAuditEvents."""
        return self._call(
            self._audit.ListAuditEvents, request, audit_service_pb2.ListAuditEventsResponse, timeout
        )

    def verify_audit_log(
        self, request: audit_service_pb2.VerifyAuditLogRequest, *, timeout: float | None = None
    ) -> audit_service_pb2.VerifyAuditLogResponse:
        """AuditService.VerifyAuditLog."""
        return self._call(
            self._audit.VerifyAuditLog, request, audit_service_pb2.VerifyAuditLogResponse, timeout
        )
