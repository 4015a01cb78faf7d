"""How the client authenticates its calls: a static bearer token or client credentials.

With client credentials the client runs the ``client_credentials`` grant (AuthService.Exchange)
and refreshes the access token once ``refresh_fraction`` of its lifetime has passed, before it
expires. Refreshing is single-flight: concurrent calls that find the token stale wait for one
Exchange rather than each sending their own.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import grpc

from chitty.auth.client.errors import error_from_rpc
from chitty.auth.v1 import auth_service_pb2, auth_service_pb2_grpc

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StaticToken:
    """A bearer token the caller obtained elsewhere; sent as is on every call."""

    token: str

    def __repr__(self) -> str:
        return "StaticToken(token=***)"


@dataclass(frozen=True)
class ClientCredentials:
    """A confidential client's id and secret, exchanged for service access tokens.

    Attributes:
        client_id: the client id.
        client_secret: the client secret (never logged).
        scopes: scopes to request; empty means the client's allowed scopes.
        resources: RFC 8707 resource indicators (the tokens' audience).
        refresh_fraction: refresh once this fraction of the token's lifetime has passed.
    """

    client_id: str
    client_secret: str
    scopes: Sequence[str] = ()
    resources: Sequence[str] = ()
    refresh_fraction: float = 0.8

    def __repr__(self) -> str:
        return f"ClientCredentials(client_id={self.client_id!r}, client_secret=***)"

    def request(self) -> auth_service_pb2.ExchangeRequest:
        return auth_service_pb2.ExchangeRequest(
            client_credentials=auth_service_pb2.ClientCredentialsGrant(),
            client_id=self.client_id,
            client_secret=self.client_secret,
            scopes=list(self.scopes),
            resources=list(self.resources),
        )


Credentials = StaticToken | ClientCredentials


@dataclass(frozen=True)
class _Held:
    token: str
    refresh_at: float
    expires_at: float
    jti: str


def _held(creds: ClientCredentials, reply: auth_service_pb2.ExchangeResponse, now: float) -> _Held:
    expires_at = reply.expire_time.seconds + reply.expire_time.nanos / 1e9
    lifetime = max(0.0, expires_at - now)
    return _Held(reply.access_token, now + lifetime * creds.refresh_fraction, expires_at, reply.jti)


class AsyncClientCredentialsSource:
    """Access tokens for ``ClientCredentials`` over an asyncio channel, refreshed early."""

    def __init__(
        self,
        creds: ClientCredentials,
        channel: grpc.aio.Channel,
        *,
        timeout_s: float = 10.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._creds = creds
        self._stub = auth_service_pb2_grpc.AuthServiceStub(channel)  # type: ignore[no-untyped-call]
        self._timeout_s = timeout_s
        self._clock = clock
        self._held: _Held | None = None
        self._lock = asyncio.Lock()
        self.exchanges = 0  # how many tokens were fetched (observability, tests)

    @property
    def current_jti(self) -> str:
        return self._held.jti if self._held else ""

    def invalidate(self) -> None:
        """Forgets the held token (e.g. the server said it was revoked)."""
        self._held = None

    async def token(self) -> str:
        """A current access token, fetching or refreshing it when due.

        Raises:
            ChittyAuthError: the Exchange was refused and no unexpired token is held.
        """
        held = self._held
        if held is not None and self._clock() < held.refresh_at:
            return held.token
        async with self._lock:
            held = self._held
            now = self._clock()
            if held is not None and now < held.refresh_at:
                return held.token  # another caller refreshed while we waited
            try:
                reply = await self._stub.Exchange(self._creds.request(), timeout=self._timeout_s)
            except grpc.RpcError as exc:
                if held is not None and now < held.expires_at:
                    # Still valid: keep working on it and try again on the next call.
                    log.warning("token refresh failed; using the current token", exc_info=True)
                    return held.token
                raise error_from_rpc(exc) from exc
            self.exchanges += 1
            self._held = _held(self._creds, reply, self._clock())
            return self._held.token


class SyncClientCredentialsSource:
    """Access tokens for ``ClientCredentials`` over a blocking channel, refreshed early."""

    def __init__(
        self,
        creds: ClientCredentials,
        channel: grpc.Channel,
        *,
        timeout_s: float = 10.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._creds = creds
        self._stub = auth_service_pb2_grpc.AuthServiceStub(channel)  # type: ignore[no-untyped-call]
        self._timeout_s = timeout_s
        self._clock = clock
        self._held: _Held | None = None
        self._lock = threading.Lock()
        self.exchanges = 0

    @property
    def current_jti(self) -> str:
        return self._held.jti if self._held else ""

    def invalidate(self) -> None:
        self._held = None

    def token(self) -> str:
        """A current access token; see ``AsyncClientCredentialsSource.token``."""
        held = self._held
        if held is not None and self._clock() < held.refresh_at:
            return held.token
        with self._lock:
            held = self._held
            now = self._clock()
            if held is not None and now < held.refresh_at:
                return held.token
            try:
                reply = self._stub.Exchange(self._creds.request(), timeout=self._timeout_s)
            except grpc.RpcError as exc:
                if held is not None and now < held.expires_at:
                    log.warning("token refresh failed; using the current token", exc_info=True)
                    return held.token
                raise error_from_rpc(exc) from exc
            self.exchanges += 1
            self._held = _held(self._creds, reply, self._clock())
            return self._held.token
