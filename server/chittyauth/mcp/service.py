"""The agent's side of the ChittyAuth gRPC API: its own credentials and the calls it makes.

A small adapter over the generated stubs, so the tools can move to the hand-written client in
``chitty.auth.client`` once it exists without touching the tool code.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import grpc
from google.rpc import error_details_pb2, status_pb2
from grpc import aio

from chitty.auth.v1 import (
    api_key_service_pb2,
    api_key_service_pb2_grpc,
    auth_service_pb2,
    auth_service_pb2_grpc,
    permission_service_pb2,
    permission_service_pb2_grpc,
    sync_service_pb2,
    sync_service_pb2_grpc,
)

ENV_CLIENT_ID = "CHITTYAUTH_MCP_CLIENT_ID"
ENV_CLIENT_SECRET = "CHITTYAUTH_MCP_CLIENT_SECRET"
ENV_TARGET = "CHITTYAUTH_MCP_TARGET"
DEFAULT_TARGET = "127.0.0.1:50051"
# The grpc-status-details-bin trailer carries google.rpc.Status with an ErrorInfo.
_STATUS_DETAILS_KEY = "grpc-status-details-bin"
# Refresh the agent's token this long before it expires, so no call races its expiry.
REFRESH_MARGIN_S = 60.0
CALL_TIMEOUT_S = 15.0

ResponseT = TypeVar("ResponseT")


class AgentConfigError(Exception):
    """The agent's environment is incomplete."""


@dataclass(frozen=True)
class AgentSettings:
    """Where the service is and who the agent is."""

    target: str
    client_id: str
    client_secret: str

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> AgentSettings:
        """Reads the agent's settings from the environment.

        Raises:
            AgentConfigError: the client id or secret is missing.
        """
        source = os.environ if env is None else env
        client_id = source.get(ENV_CLIENT_ID, "").strip()
        client_secret = source.get(ENV_CLIENT_SECRET, "")
        if not client_id or not client_secret:
            raise AgentConfigError(f"{ENV_CLIENT_ID} and {ENV_CLIENT_SECRET} must be set")
        target = source.get(ENV_TARGET, "").strip() or DEFAULT_TARGET
        return cls(target=target, client_id=client_id, client_secret=client_secret)


class ServiceRefusal(Exception):
    """The service refused a call: its gRPC status and ErrorInfo reason."""

    def __init__(
        self, code: str, reason: str, message: str, metadata: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(f"{code} {reason}: {message}")
        self.code = code
        self.reason = reason
        self.message = message
        self.metadata = dict(metadata or {})


def refusal_from(error: aio.AioRpcError) -> ServiceRefusal:
    """The status code, ErrorInfo reason and message of a failed call."""
    code = error.code().name
    reason, metadata = code, {}
    raw: object = None
    for item in error.trailing_metadata() or ():
        key, value = cast("tuple[str, object]", item)
        if key == _STATUS_DETAILS_KEY:
            raw = value
    if isinstance(raw, bytes):
        status = status_pb2.Status.FromString(raw)
        for detail in status.details:
            info = error_details_pb2.ErrorInfo()
            if detail.Unpack(info):
                reason, metadata = info.reason or code, dict(info.metadata)
                break
    return ServiceRefusal(code, reason, error.details() or code, metadata)


class ServiceClient:
    """One channel to ChittyAuth, the stubs the tools use and the agent's own access token."""

    def __init__(self, settings: AgentSettings, *, clock: Callable[[], float] = time.time) -> None:
        self._settings = settings
        self._clock = clock
        self._channel = aio.insecure_channel(settings.target)
        self.auth = auth_service_pb2_grpc.AuthServiceStub(self._channel)  # type: ignore[no-untyped-call]
        self.api_keys = api_key_service_pb2_grpc.ApiKeyServiceStub(self._channel)  # type: ignore[no-untyped-call]
        self.permissions = permission_service_pb2_grpc.PermissionServiceStub(self._channel)  # type: ignore[no-untyped-call]
        self.sync = sync_service_pb2_grpc.SyncServiceStub(self._channel)  # type: ignore[no-untyped-call]
        self._token = ""
        self._token_expires_at = 0.0
        self._token_lock = asyncio.Lock()

    @property
    def client_id(self) -> str:
        """The agent's OAuth client id."""
        return self._settings.client_id

    @property
    def client_secret(self) -> str:
        """The agent's client secret (for grants the agent runs as itself)."""
        return self._settings.client_secret

    async def close(self) -> None:
        """Closes the channel."""
        await self._channel.close(None)

    async def agent_token(self) -> str:
        """The agent's access token, from client_credentials, renewed before it expires.

        Raises:
            ServiceRefusal: the service refused the agent's credentials.
        """
        async with self._token_lock:
            if self._token and self._clock() < self._token_expires_at - REFRESH_MARGIN_S:
                return self._token
            reply = await self.call(
                self.auth.Exchange,
                auth_service_pb2.ExchangeRequest(
                    client_credentials=auth_service_pb2.ClientCredentialsGrant(),
                    client_id=self._settings.client_id,
                    client_secret=self._settings.client_secret,
                ),
                authenticated=False,
            )
            self._token = reply.access_token
            self._token_expires_at = reply.expire_time.ToSeconds()
            return self._token

    async def call(
        self,
        method: Callable[..., Awaitable[ResponseT]],
        request: Any,
        *,
        authenticated: bool = True,
        bearer: str = "",
    ) -> ResponseT:
        """Calls one RPC, as the agent (default), as ``bearer``, or anonymously.

        Raises:
            ServiceRefusal: any non-OK status, with its ErrorInfo reason.
        """
        metadata: tuple[tuple[str, str], ...] = ()
        if bearer:
            metadata = (("authorization", f"Bearer {bearer}"),)
        elif authenticated:
            metadata = (("authorization", f"Bearer {await self.agent_token()}"),)
        try:
            return await method(request, metadata=metadata, timeout=CALL_TIMEOUT_S)
        except aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.UNAUTHENTICATED and authenticated and not bearer:
                # Our token may have been revoked or its key retired: drop it for next time.
                self._token = ""
            raise refusal_from(error) from None


__all__ = [
    "AgentConfigError",
    "AgentSettings",
    "ServiceClient",
    "ServiceRefusal",
    "api_key_service_pb2",
    "auth_service_pb2",
    "permission_service_pb2",
    "sync_service_pb2",
]
