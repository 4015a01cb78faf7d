"""Machine credentials -> access tokens: client credentials and API keys.

Each success issues a token and audits it in one transaction; each failure is audited in a
transaction of its own, and the caller learns only that the credential was not accepted.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from chittyauth.domain.audit import audit_refusal
from chittyauth.domain.client_auth import (
    TOKEN_CONFIDENTIAL,
    PresentedClient,
    authenticate_client,
    in_request,
)
from chittyauth.domain.errors import (
    DomainError,
    InvalidClient,
    InvalidScope,
    InvalidTarget,
    Unauthenticated,
    UnauthorizedClient,
)
from chittyauth.domain.tokens import IssuedToken, TokenService
from chittyauth.store.protocol import AuditRecord
from chittyauth.store.sqlite import SqliteStore

MAX_RESOURCES = 10
MAX_RESOURCE_LENGTH = 2000


class ClientSource(Protocol):
    """What grants need of the client registry (in memory)."""

    def authenticate(self, client_id: str, secret: str) -> Any: ...

    def get(self, client_id: str) -> Any: ...

    def check_scopes(self, client: Any, requested: Sequence[str]) -> tuple[str, ...]: ...


def presented(client_id: str, secret: str, method: str) -> PresentedClient:
    """The credentials as presented: by ``method``, or ('') in the request's only place."""
    return PresentedClient(client_id, secret, method) if method else in_request(client_id, secret)


def checked_resources(resources: Sequence[str]) -> tuple[str, ...]:
    """RFC 8707 resource indicators: absolute URIs without fragments (or logical names)."""
    if len(resources) > MAX_RESOURCES:
        raise InvalidTarget(f"at most {MAX_RESOURCES} resources")
    for resource in resources:
        if not resource or len(resource) > MAX_RESOURCE_LENGTH or "#" in resource:
            raise InvalidTarget("a resource must be a URI without a fragment")
    return tuple(dict.fromkeys(resources))


class MachineGrants:
    """Client credentials and API key authentication."""

    def __init__(
        self,
        store: SqliteStore,
        tokens: TokenService,
        clients: ClientSource | None = None,
    ) -> None:
        self._store = store
        self._tokens = tokens
        # Set once the client registry is loaded; until then every client is refused.
        self.clients = clients

    async def client_credentials(
        self,
        client_id: str,
        client_secret: str,
        scopes: Sequence[str],
        resources: Sequence[str],
        *,
        request_id: str,
        method: str = "",
    ) -> IssuedToken:
        """A `service` token for a confidential client; scopes within its allowed ones.

        Args:
            method: how the credentials came (``client_auth``: client_secret_basic,
                client_secret_post, none); '' for the request's only place for them (gRPC).

        Raises:
            InvalidClient: unknown client, wrong secret (one message for both), or a method
                other than the registered one.
            UnauthorizedClient: the client may not use client_credentials.
            InvalidScope: a requested scope is not allowed for the client.
        """
        try:
            if self.clients is None:
                raise InvalidClient("client authentication failed")
            client = authenticate_client(
                self.clients, presented(client_id, client_secret, method), TOKEN_CONFIDENTIAL
            )
            if "client_credentials" not in client.grant_types:
                raise UnauthorizedClient("this client may not use client_credentials")
            granted = self.clients.check_scopes(client, scopes)
            audience = checked_resources(resources)
        except DomainError as refusal:
            await self._audit_failure(client_id, "token.client_credentials", refusal, request_id)
            raise
        # Signed before the write transaction: the signature is the largest share of the
        # work, and the store's write lock is held only for the row and its audit record.
        minted = self._tokens.mint(
            subject=client.client_id,
            client_id=client.client_id,
            token_use="service",
            scopes=granted,
            audience=audience,
        )
        async with self._store.transaction() as tx:
            issued = await self._tokens.record(tx, minted)
            await tx.audit(
                AuditRecord(
                    actor=client.client_id,
                    subject=client.client_id,
                    action="token.issued",
                    outcome="success",
                    resource=issued.jti,
                    request_id=request_id,
                    attributes={"grant": "client_credentials", "scope": " ".join(granted)},
                )
            )
        return issued

    async def api_key(
        self,
        key: str,
        scopes: Sequence[str],
        resources: Sequence[str],
        *,
        request_id: str,
    ) -> IssuedToken:
        """An access token for an active API key, scopes within the key's.

        Raises:
            Unauthenticated: the key is unknown, revoked or expired.
            InvalidScope: a requested scope is beyond the key's.
        """
        result = self._tokens.validate(key)
        try:
            if not result.active or result.kind != "api_key":
                raise Unauthenticated("the API key is not valid", reason="INVALID_API_KEY")
            key_scopes = tuple(str(result.claims.get("scope", "")).split())
            extra = [s for s in scopes if s not in key_scopes]
            if extra:
                raise InvalidScope(f"scope not granted to this key: {' '.join(extra)}")
            granted = tuple(scopes) or key_scopes
            audience = checked_resources(resources)
        except DomainError as refusal:
            subject = str(result.claims.get("sub", "")) if result.active else "unknown"
            await self._audit_failure(subject, "token.api_key", refusal, request_id)
            raise
        claims = result.claims
        async with self._store.transaction() as tx:
            issued = await self._tokens.record(
                tx,
                self._tokens.mint(
                    subject=str(claims["sub"]),
                    client_id=str(claims["client_id"]),
                    chitty_id=str(claims["chitty_id"]),
                    token_use="service",
                    scopes=granted,
                    audience=audience,
                ),
            )
            await tx.audit(
                AuditRecord(
                    actor=str(claims["client_id"]),
                    subject=str(claims["sub"]),
                    action="token.issued",
                    outcome="success",
                    resource=issued.jti,
                    request_id=request_id,
                    attributes={"grant": "api_key", "scope": " ".join(granted)},
                )
            )
        return issued

    async def _audit_failure(
        self, subject: str, action: str, refusal: DomainError, request_id: str
    ) -> None:
        await audit_refusal(
            self._store, refusal, action=action, actor=subject, request_id=request_id
        )
