"""OAuth 2.1 for linked apps and MCP clients: authorize, and the token grants that follow.

- Authorization code with PKCE S256 only, exact redirect URI match, state echoed, ``iss`` in
  the redirect (RFC 9207), ``resource`` -> ``aud`` (RFC 8707). Codes are single-use, short-lived
  and stored hashed; a replayed code revokes every token issued from it.
- Refresh tokens rotate on every use inside one transaction, one live chain per token: a
  retry inside a short grace window gets the same successor pair (kept sealed under a key only
  the parent token yields, ``domain.rotation``); a used token presented after the window, or
  once its successor was itself used, is reuse and revokes the whole family (RFC 9700 §4.14.2).
- Token exchange (RFC 8693) by the client's registered policy: only the audiences it names,
  scopes within the subject's and the client's (never admin ones), an actor that is the client
  or named by ``may_act``, and a result that dies with its subject token (``src``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlencode

from chittyauth.clock import Clock
from chittyauth.config import TokenConfig
from chittyauth.domain import ids, policy, rotation
from chittyauth.domain.audit import audit_refusal
from chittyauth.domain.client_auth import (
    TOKEN_CONFIDENTIAL,
    TOKEN_PUBLIC_ALLOWED,
    Endpoint,
    authenticate_client,
)
from chittyauth.domain.clients import ClientRecord, ClientRegistry
from chittyauth.domain.errors import (
    DomainError,
    InvalidGrant,
    InvalidRequest,
    InvalidScope,
    UnauthorizedClient,
)
from chittyauth.domain.grants import checked_resources, presented
from chittyauth.domain.principal import Principal
from chittyauth.domain.tokens import API_KEY_PREFIX, IssuedToken, TokenService, exchange_source
from chittyauth.store import oauth as rows
from chittyauth.store.protocol import AuditRecord
from chittyauth.store.sqlite import SqliteStore, SqliteTransaction

CODE_PREFIX = "ac_"
REFRESH_PREFIX = "rt_"
TOKEN_EXCHANGE_GRANT = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"
_VERIFIER = re.compile(r"^[A-Za-z0-9\-._~]{43,128}$")
_CHALLENGE = re.compile(r"^[A-Za-z0-9\-_]{43}$")
MAX_STATE = 512
MAX_CODE = 256


@dataclass(frozen=True, slots=True)
class AuthorizationRequest:
    """An OAuth authorization request (RFC 6749 §4.1.1 with PKCE and resource)."""

    response_type: str
    client_id: str
    redirect_uri: str
    scopes: tuple[str, ...]
    state: str
    code_challenge: str
    code_challenge_method: str
    resources: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Authorization:
    """The answer to an approved authorization request."""

    code: str
    redirect_url: str
    state: str
    iss: str
    expires_at: float


@dataclass(frozen=True, slots=True)
class TokenGrant:
    """What a grant issued: an access token and, where allowed, a rotated refresh token."""

    access: IssuedToken
    refresh_token: str = ""
    issued_token_type: str = ""


def pkce_s256(verifier: str) -> str:
    """base64url(SHA-256(verifier)) without padding (RFC 7636 §4.2)."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def redirect_with(redirect_uri: str, params: dict[str, str]) -> str:
    """The redirect URI with ``params`` added to its query (keeping what it already has)."""
    separator = "&" if "?" in redirect_uri else "?"
    return f"{redirect_uri}{separator}{urlencode(params)}"


class ApiKeyEnder(Protocol):
    """API key administration (``ApiKeyAdmin``): revoking a key ends it the one way."""

    async def end(
        self, tx: SqliteTransaction, key_id: str, *, actor: str, request_id: str
    ) -> bool: ...


class OAuthFlows:
    """Authorize, and the authorization_code, refresh_token and token-exchange grants."""

    def __init__(
        self,
        store: SqliteStore,
        tokens: TokenService,
        clients: ClientRegistry,
        config: TokenConfig,
        clock: Clock,
        *,
        api_keys: ApiKeyEnder | None = None,
    ) -> None:
        self._store = store
        self._tokens = tokens
        self._clients = clients
        self._config = config
        self._clock = clock
        self._api_keys = api_keys

    # -- authorize ------------------------------------------------------------------------

    def check_request(self, request: AuthorizationRequest) -> ClientRecord:
        """Checks the client and redirect URI first: only then may errors be redirected.

        Raises:
            InvalidRequest: unknown client or unregistered redirect URI (never redirect these).
        """
        client = self._clients.get(request.client_id)
        if client is None:
            raise InvalidRequest("unknown client_id", reason="UNKNOWN_CLIENT")
        self._clients.check_redirect_uri(client, request.redirect_uri)
        return client

    def validate_request(
        self, client: ClientRecord, request: AuthorizationRequest
    ) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """Everything about a request that does not depend on the user; what the consent page
        checks before asking, and ``authorize`` checks again on approval.

        Returns:
            The scopes and resources to grant.

        Raises:
            InvalidRequest / UnauthorizedClient / InvalidScope / InvalidTarget.
        """
        if request.response_type != "code":
            raise InvalidRequest("response_type must be code", reason="UNSUPPORTED_RESPONSE_TYPE")
        if "authorization_code" not in client.grant_types:
            raise UnauthorizedClient("this client may not use the authorization code flow")
        if request.code_challenge_method != "S256":
            raise InvalidRequest(
                "PKCE with code_challenge_method S256 is required", reason="PKCE_REQUIRED"
            )
        if not _CHALLENGE.match(request.code_challenge):
            raise InvalidRequest(
                "code_challenge must be 43 base64url characters", reason="PKCE_REQUIRED"
            )
        if len(request.state) > MAX_STATE:
            raise InvalidRequest(f"state is longer than {MAX_STATE} characters")
        return (
            self._clients.check_scopes(client, request.scopes),
            checked_resources(request.resources),
        )

    def check_approval(
        self, user: Principal, client: ClientRecord, request: AuthorizationRequest
    ) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """Whether ``user`` may approve ``request``: what the consent page checks before it
        asks, and ``authorize`` again on approval.

        Only the person's own token approves (``policy.may_approve``), and it grants only
        scopes the client may have, that the token holds itself, and never an admin scope.

        Returns:
            The scopes and resources to grant.

        Raises:
            PermissionDenied: reason ``NOT_A_USER`` — not the person's own token.
            ScopeNotGrantable: ``SCOPE_NOT_HELD`` / ``SCOPE_NOT_GRANTABLE``, naming the scope.
            InvalidRequest / UnauthorizedClient / InvalidScope: the request is not acceptable.
        """
        policy.require_approver(user)
        scopes, resources = self.validate_request(client, request)
        policy.require_grantable(user, scopes)
        return scopes, resources

    async def authorize(
        self, user: Principal, request: AuthorizationRequest, *, request_id: str = ""
    ) -> Authorization:
        """Approves ``request`` for ``user`` (consent given) and returns the code.

        Raises:
            PermissionDenied: the caller is not the person's own token, or (ScopeNotGrantable)
                asks to grant a scope it does not hold or an admin scope.
            InvalidRequest / UnauthorizedClient / InvalidScope: the request is not acceptable.
        """
        client = self.check_request(request)
        try:
            scopes, resources = self.check_approval(user, client, request)
        except DomainError as refusal:
            await self._audit(user.chitty_id or user.subject, client.client_id, "oauth.authorize",
                              refusal, request_id)  # fmt: skip
            raise
        code = ids.new_secret(CODE_PREFIX)
        async with self._store.transaction() as tx:
            expires_at = tx.now + self._config.code_ttl_s
            await rows.insert_code(
                tx,
                rows.CodeRow(
                    code_hash=ids.secret_hash(code),
                    client_id=client.client_id,
                    subject=user.chitty_id,
                    chitty_id=user.chitty_id,
                    session_id=user.session_id,
                    redirect_uri=request.redirect_uri,
                    scopes=scopes,
                    resources=resources,
                    code_challenge=request.code_challenge,
                    family_id=ids.new_id("fam"),
                    created_at=tx.now,
                    expires_at=expires_at,
                ),
            )
            await rows.record_consent(tx, user.chitty_id, client.client_id, scopes)
            await tx.audit(
                AuditRecord(
                    actor=user.chitty_id,
                    subject=user.chitty_id,
                    action="oauth.authorized",
                    outcome="success",
                    resource=client.client_id,
                    request_id=request_id,
                    attributes={"scope": " ".join(scopes), "code": ids.secret_hash(code)[:12]},
                )
            )
        params = {"code": code, "iss": self._config.issuer}
        if request.state:
            params["state"] = request.state
        return Authorization(
            code=code,
            redirect_url=redirect_with(request.redirect_uri, params),
            state=request.state,
            iss=self._config.issuer,
            expires_at=expires_at,
        )

    # -- client authentication ------------------------------------------------------------

    def authenticate_client(
        self,
        client_id: str,
        client_secret: str,
        method: str = "",
        endpoint: Endpoint = TOKEN_PUBLIC_ALLOWED,
    ) -> ClientRecord:
        """A confidential client by its secret, or a public client by its id alone, presented
        by its registered method (``domain/client_auth.py``).

        Args:
            method: how the credentials came; '' for the request's only place for them.

        Raises:
            InvalidClient: one message for every failure.
        """
        return authenticate_client(
            self._clients, presented(client_id, client_secret, method), endpoint
        )

    # -- authorization_code ---------------------------------------------------------------

    async def exchange_code(
        self,
        client_id: str,
        client_secret: str,
        code: str,
        redirect_uri: str,
        code_verifier: str,
        *,
        request_id: str = "",
        method: str = "",
    ) -> TokenGrant:
        """Redeems a code once: access token (+ refresh token when the client may refresh).

        ``method``: how the client credentials came (``client_auth``); '' for gRPC.

        Raises:
            InvalidClient, InvalidGrant (bad, expired, replayed or foreign code, wrong
            redirect_uri, PKCE mismatch), UnauthorizedClient.
        """
        try:
            client = self.authenticate_client(client_id, client_secret, method)
            if "authorization_code" not in client.grant_types:
                raise UnauthorizedClient("this client may not use the authorization code flow")
            if not code or len(code) > MAX_CODE or not ids.has_valid_checksum(code, CODE_PREFIX):
                raise InvalidGrant("the authorization code is not valid")
        except DomainError as refusal:
            await self._audit(client_id[:128], client_id[:128], "oauth.code", refusal, request_id)
            raise
        code_hash = ids.secret_hash(code)
        failure: DomainError | None = None
        async with self._store.transaction() as tx:
            row = await rows.code_by_hash(tx, code_hash)
            if row is None:
                failure = InvalidGrant("the authorization code is not valid")
            elif row.client_id != client.client_id:
                failure = InvalidGrant("the authorization code was issued to another client")
            elif not await rows.mark_code_used(tx, code_hash):
                # A replay: whoever holds this code may be an attacker, so everything issued
                # from it dies (RFC 6749 §4.1.2, RFC 9700 §4.2.4).
                until = max(await rows.family_expiry(tx, row.family_id), tx.now) + 1
                until = max(until, tx.now + self._tokens.max_lifetime())
                await self._tokens.revoke_family(tx, row.family_id, until)
                await tx.audit(
                    AuditRecord(client.client_id, row.chitty_id, "oauth.code_replayed",
                                "failure", row.family_id, request_id)
                )  # fmt: skip
                failure = InvalidGrant("the authorization code was already used")
            elif tx.now > row.expires_at:
                failure = InvalidGrant("the authorization code has expired")
            elif row.redirect_uri != redirect_uri:
                failure = InvalidGrant("redirect_uri does not match the authorization request")
            elif not _VERIFIER.match(code_verifier) or not hmac.compare_digest(
                pkce_s256(code_verifier), row.code_challenge
            ):
                failure = InvalidGrant("the PKCE code_verifier does not match")
            if failure is not None:
                await tx.audit(
                    AuditRecord(client.client_id, row.chitty_id if row else "unknown",
                                "oauth.code", "failure", client.client_id, request_id,
                                {"reason": failure.message})
                )  # fmt: skip
            else:
                assert row is not None
                return await self._issue_pair(
                    tx, client, row.chitty_id, row.session_id, row.scopes, row.resources,
                    row.family_id, "authorization_code", request_id,
                )  # fmt: skip
        raise failure

    # -- refresh_token --------------------------------------------------------------------

    async def refresh(
        self,
        client_id: str,
        client_secret: str,
        refresh_token: str,
        scopes: Sequence[str],
        *,
        request_id: str = "",
        method: str = "",
    ) -> TokenGrant:
        """Rotates a refresh token: one live chain per token (see ``_answer_retry``).

        The first use gets a new pair; a retry inside the grace window gets that same pair; a
        used token presented after the window, or once its successor was used, revokes the
        family.

        ``method``: how the client credentials came (``client_auth``); '' for gRPC.

        Raises:
            InvalidClient, InvalidGrant, InvalidScope (asking for more than was granted).
        """
        try:
            client = self.authenticate_client(client_id, client_secret, method)
            if "refresh_token" not in client.grant_types:
                raise UnauthorizedClient("this client may not use refresh tokens")
            if len(refresh_token) > MAX_CODE or not ids.has_valid_checksum(
                refresh_token, REFRESH_PREFIX
            ):
                raise InvalidGrant("the refresh token is not valid")
        except DomainError as refusal:
            await self._audit(client_id[:128], client_id[:128], "oauth.refresh", refusal,
                              request_id)  # fmt: skip
            raise
        async with self._store.transaction() as tx:
            row = await rows.refresh_by_hash(tx, ids.secret_hash(refresh_token))
            failure = self._refresh_refusal(tx, client, row)
            if failure is None:
                assert row is not None
                if row.used_at is None:
                    outcome = await self._rotate(tx, client, row, refresh_token, scopes,
                                                 request_id)  # fmt: skip
                else:
                    outcome = await self._answer_retry(tx, client, row, refresh_token, scopes,
                                                       request_id)  # fmt: skip
                if isinstance(outcome, TokenGrant):
                    return outcome
                failure = outcome
            await tx.audit(
                AuditRecord(client.client_id, row.chitty_id if row else "unknown",
                            "oauth.refresh", "failure", client.client_id, request_id,
                            {"reason": failure.message})
            )  # fmt: skip
        raise failure

    def _refresh_refusal(
        self, tx: SqliteTransaction, client: ClientRecord, row: rows.RefreshRow | None
    ) -> DomainError | None:
        """Why a presented refresh token cannot be used at all (unknown, revoked, expired)."""
        if row is None or row.client_id != client.client_id:
            return InvalidGrant("the refresh token is not valid")
        if row.family_id in self._tokens.revocations.family or (
            row.session_id and row.session_id in self._tokens.revocations.sid
        ):
            return InvalidGrant("the refresh token was revoked")
        if tx.now >= row.expires_at:
            return InvalidGrant("the refresh token has expired")
        return None

    async def _rotate(
        self,
        tx: SqliteTransaction,
        client: ClientRecord,
        row: rows.RefreshRow,
        presented: str,
        scopes: Sequence[str],
        request_id: str,
    ) -> TokenGrant | DomainError:
        """The first use of a refresh token: the one successor pair of its chain."""
        extra = [s for s in scopes if s not in row.scopes]
        if extra:
            return InvalidScope(f"scope beyond the original grant: {' '.join(extra)[:200]}")
        return await self._issue_pair(
            tx, client, row.chitty_id, row.session_id, tuple(scopes) or row.scopes,
            row.resources, row.family_id, "refresh_token", request_id,
            parent_hash=row.token_hash, parent_token=presented,
        )  # fmt: skip

    async def _answer_retry(
        self,
        tx: SqliteTransaction,
        client: ClientRecord,
        row: rows.RefreshRow,
        presented: str,
        scopes: Sequence[str],
        request_id: str,
    ) -> TokenGrant | DomainError:
        """A used refresh token again: the same successor pair inside the grace window while
        that successor is still the head of the chain; anything else is reuse.

        Never a second live chain (RFC 9700 §4.14.2): a concurrent request, a client retrying
        after a lost response, and a replayed copy inside the window all get the pair the first
        request got, and a replay retires nothing the legitimate client holds. Once the window
        has passed or the chain has moved on (the successor was itself used), only a copy can be
        asking, so the whole family is revoked.
        """
        assert row.used_at is not None
        successor = await rows.refresh_by_hash(tx, row.replaced_by) if row.replaced_by else None
        in_grace = tx.now - row.used_at <= self._config.refresh_grace_s
        if successor is None or successor.used_at is not None or not in_grace:
            await self._reuse_detected(tx, client, row, request_id)
            return InvalidGrant("the refresh token was already used")
        requested = set(scopes) or set(row.scopes)
        if requested != set(successor.scopes):
            return InvalidGrant(
                "a retry of a refresh must ask for the scope the first request asked for"
            )
        pair = (
            rotation.open_sealed(presented, successor.issued_sealed)
            if successor.issued_sealed is not None
            else None
        )
        claims = self._tokens.signed_claims(pair.access_token) if pair is not None else None
        if pair is None or claims is None:
            # Not reuse (the chain is where the first request left it), but nothing to resend:
            # refused rather than starting a second chain.
            return InvalidGrant("the refresh token was already used")
        access = IssuedToken(
            token=pair.access_token,
            jti=str(claims["jti"]),
            # "Issued" by this answer, so that expires_in counts from now.
            issued_at=tx.now,
            expires_at=float(claims["exp"]),
            scopes=tuple(str(claims.get("scope", "")).split()),
            claims=claims,
        )
        await tx.audit(
            AuditRecord(client.client_id, row.chitty_id, "oauth.refresh_retry", "success",
                        access.jti, request_id, {"family": row.family_id})
        )  # fmt: skip
        return TokenGrant(access, pair.refresh_token)

    async def _reuse_detected(
        self, tx: SqliteTransaction, client: ClientRecord, row: rows.RefreshRow, request_id: str
    ) -> None:
        """Revokes the family of a superseded refresh token presented again."""
        until = max(row.expires_at, tx.now + self._tokens.max_lifetime()) + 1
        await self._tokens.revoke_family(tx, row.family_id, until)
        await rows.forget_sealed(tx, row.family_id)
        await tx.audit(
            AuditRecord(client.client_id, row.chitty_id, "oauth.refresh_replayed", "failure",
                        row.family_id, request_id)
        )  # fmt: skip

    # -- token exchange -------------------------------------------------------------------

    async def token_exchange(
        self,
        client_id: str,
        client_secret: str,
        subject_token: str,
        subject_token_type: str,
        actor_token: str,
        actor_token_type: str,
        audiences: Sequence[str],
        resources: Sequence[str],
        scopes: Sequence[str],
        *,
        requested_token_type: str = "",
        request_id: str = "",
        method: str = "",
    ) -> TokenGrant:
        """RFC 8693 by the client's exchange policy; every decision is in ``domain.policy``.

        - audiences / resources: each one the client's ``exchange_audiences`` names, else
          invalid_target; none requested: the client itself is the only audience.
        - scopes: subject token's ∩ client's allowed ∩ requested, never an admin scope.
        - actor: the actor token must identify the client or be named by the subject's
          ``may_act``; the result's ``act`` names the actor (the client itself when there is no
          actor token and the client may not impersonate) and nests the subject's ``act``.
        - the result names its subject token, session and family in ``src`` and is refused by
          Validate as soon as any of them is revoked; it never outlives the subject token.

        ``method``: how the client credentials came (``client_auth``); '' for gRPC.

        Raises:
            InvalidClient, UnauthorizedClient, InvalidRequest (token types, actor not allowed,
            chain too long), InvalidGrant (subject or actor token not active), InvalidScope,
            InvalidTarget.
        """
        try:
            client = self.authenticate_client(
                client_id, client_secret, method, endpoint=TOKEN_CONFIDENTIAL
            )
            if TOKEN_EXCHANGE_GRANT not in client.grant_types:
                raise UnauthorizedClient("this client may not use token exchange")
            if subject_token_type != ACCESS_TOKEN_TYPE:
                raise InvalidRequest("subject_token_type must be the access_token type")
            if requested_token_type not in ("", ACCESS_TOKEN_TYPE):
                raise InvalidRequest("requested_token_type must be the access_token type")
            subject = self._tokens.validate(subject_token)
            if not subject.active or subject.kind != "access_token":
                raise InvalidGrant("the subject_token is not active")
            claims = subject.claims
            actor_claims = None
            if actor_token:
                if actor_token_type != ACCESS_TOKEN_TYPE:
                    raise InvalidRequest("actor_token_type must be the access_token type")
                actor = self._tokens.validate(actor_token)
                if not actor.active or actor.kind != "access_token":
                    raise InvalidGrant("the actor_token is not active")
                actor_claims = actor.claims
                policy.check_actor(client.client_id, actor_claims, claims)
            elif actor_token_type:
                raise InvalidRequest("actor_token_type is given without an actor_token")
            granted = policy.exchange_scopes(
                str(claims.get("scope", "")).split(), client.allowed_scopes, scopes
            )
            audience = policy.exchange_audiences(
                client.client_id,
                client.exchange_audiences,
                checked_resources([*audiences, *resources]),
            )
            act = policy.exchange_act(
                client.client_id, client.exchange_may_impersonate, actor_claims,
                claims.get("act"),
            )  # fmt: skip
            source = exchange_source(claims)
            if len(source.get("jti", ())) > policy.MAX_EXCHANGE_DEPTH:
                raise InvalidRequest(
                    f"at most {policy.MAX_EXCHANGE_DEPTH} exchanges may be stacked on one token",
                    reason="EXCHANGE_CHAIN_TOO_LONG",
                )
        except DomainError as refusal:
            await self._audit(client_id[:128], client_id[:128], "oauth.token_exchange",
                              refusal, request_id)  # fmt: skip
            raise
        remaining = int(float(claims["exp"]) - self._clock.now())
        minted = self._tokens.mint(
            subject=str(claims["sub"]),
            client_id=client.client_id,
            token_use="exchange",
            scopes=granted,
            audience=audience,
            session_id=str(claims.get("sid", "")),
            chitty_id=str(claims.get("chitty_id", "")),
            ttl_s=max(1, min(remaining, self._config.access_ttl_s)),
            act=act,
            family_id=str(claims.get("fam", "")),
            source=source,
        )
        async with self._store.transaction() as tx:
            issued = await self._tokens.record(tx, minted)
            attributes = {
                "grant": "token_exchange",
                "scope": " ".join(issued.scopes),
                "audience": " ".join(audience)[:500],
                "subject_jti": str(claims.get("jti", "")),
                "actor": str(act.get("sub", "")) if act else "",
            }
            await tx.audit(
                AuditRecord(client.client_id, str(claims["sub"]), "token.issued", "success",
                            issued.jti, request_id, attributes)
            )  # fmt: skip
        return TokenGrant(issued, "", ACCESS_TOKEN_TYPE)

    # -- revocation (RFC 7009) -----------------------------------------------------------

    async def revoke(
        self,
        token: str,
        *,
        request_id: str = "",
        client_id: str = "",
        by: Principal | None = None,
    ) -> bool:
        """Revokes what ``token`` names; an unknown token is not an error (RFC 7009 §2.2).

        An access token dies alone, an API key with what it obtained, and a refresh token with
        its whole family: every refresh and access token of that grant (§2.1).

        Args:
            client_id: when set, the token must have been issued to this client (the HTTP
                endpoint's authenticated caller).
            by: when set, the bearer-authenticated caller (gRPC Revoke), who must be the
                token's client, the token itself, its person or an admin (``policy.may_revoke``).

        Returns:
            True when something was newly revoked.

        Raises:
            InvalidGrant: the token belongs to another client or person.
        """
        if not token or len(token) > self._tokens.config.max_token_bytes:
            return False
        async with self._store.transaction() as tx:
            target = await self._revocation_target(tx, token)
            if target is None:
                return False
            kind, value, until, subject, owner = target
            if by is not None:
                allowed = policy.may_revoke(by, client_id=owner, subject=subject, token_id=value)
                caller_id = by.subject
            else:
                allowed = not client_id or owner == client_id
                caller_id = client_id
            if allowed:
                actor = (caller_id or subject)[:128]
                fresh = await self._end(tx, kind, value, until, actor, request_id)
                if kind == "family":
                    await rows.forget_sealed(tx, value)
                if fresh:
                    await tx.audit(
                        AuditRecord(subject, subject, "token.revoked", "success", value,
                                    request_id, {"kind": kind})
                    )  # fmt: skip
                return fresh
            refusal = InvalidGrant("the token was not issued to this caller")
            await tx.audit(
                AuditRecord(caller_id[:128], subject, "token.revoke", "failure", value,
                            request_id, {"reason": refusal.reason})
            )  # fmt: skip
        raise refusal

    async def _end(
        self, tx: SqliteTransaction, kind: str, value: str, until: float, actor: str,
        request_id: str,
    ) -> bool:  # fmt: skip
        """Records the revocation; an API key is ended the one way ``ApiKeyAdmin`` ends it
        (its row, the key, and every token it obtained), whichever path revokes it."""
        if kind == "api_key" and self._api_keys is not None:
            return await self._api_keys.end(tx, value, actor=actor, request_id=request_id)
        return await self._tokens.revoke(tx, kind, value, until)

    async def _revocation_target(
        self, tx: SqliteTransaction, token: str
    ) -> tuple[str, str, float, str, str] | None:
        """(kind, value, until, subject, owning client) of a credential we issued, or None."""
        forever = 1e18  # API keys do not expire on their own
        if token.startswith(REFRESH_PREFIX):
            if not ids.has_valid_checksum(token, REFRESH_PREFIX):
                return None
            row = await rows.refresh_by_hash(tx, ids.secret_hash(token))
            if row is None:
                return None
            until = max(row.expires_at, tx.now + self._tokens.max_lifetime()) + 1
            return ("family", row.family_id, until, row.chitty_id, row.client_id)
        if token.startswith(API_KEY_PREFIX):
            # Revoked and expired keys too: ending one again is harmless, and an expired key's
            # tokens may still be live.
            record = self._tokens.api_keys.check(token) if self._tokens.api_keys else None
            if record is None:
                return None
            return ("api_key", record.key_id, forever, record.chitty_id,
                    f"{policy.API_KEY_CLIENT_PREFIX}{record.key_id}")  # fmt: skip
        signed = self._tokens.signed_claims(token)
        if signed is None:
            return None
        return (
            "jti",
            str(signed["jti"]),
            float(signed["exp"]) + self._tokens.config.leeway_s,
            str(signed.get("sub", "")),
            str(signed.get("client_id", "")),
        )

    # -- helpers --------------------------------------------------------------------------

    async def _issue_pair(
        self,
        tx: SqliteTransaction,
        client: ClientRecord,
        chitty_id: str,
        session_id: str,
        scopes: tuple[str, ...],
        resources: tuple[str, ...],
        family_id: str,
        grant: str,
        request_id: str,
        parent_hash: str = "",
        parent_token: str = "",
    ) -> TokenGrant:
        """An access token and, for a client that may refresh, a refresh token of ``family_id``.

        With a parent (rotation), the parent is marked used and the new pair is sealed under a
        key only the parent token yields, so a retry inside the grace window gets this same
        pair (``_answer_retry``).
        """
        access = await self._tokens.record(
            tx,
            self._tokens.mint(
                subject=chitty_id,
                client_id=client.client_id,
                token_use="linked_app",
                scopes=scopes,
                audience=resources,
                session_id=session_id,
                chitty_id=chitty_id,
                family_id=family_id,
            ),
        )
        refresh = ""
        if "refresh_token" in client.grant_types:
            refresh = ids.new_secret(REFRESH_PREFIX)
            refresh_hash = ids.secret_hash(refresh)
            if parent_hash and not await rows.mark_refresh_used(tx, parent_hash, refresh_hash):
                # Unreachable while writes are serialized; never fork the chain if they are not.
                raise InvalidGrant("the refresh token was already used")
            sealed = (
                rotation.seal(parent_token, rotation.SuccessorPair(refresh, access.token))
                if parent_token
                else None
            )
            await rows.insert_refresh(
                tx,
                rows.RefreshRow(
                    token_hash=refresh_hash,
                    family_id=family_id,
                    client_id=client.client_id,
                    subject=chitty_id,
                    chitty_id=chitty_id,
                    session_id=session_id,
                    scopes=scopes,
                    resources=resources,
                    created_at=tx.now,
                    expires_at=tx.now + self._config.refresh_ttl_s,
                    issued_sealed=sealed,
                ),
            )
        await tx.audit(
            AuditRecord(client.client_id, chitty_id, "token.issued", "success", access.jti,
                        request_id, {"grant": grant, "scope": " ".join(scopes),
                                     "family": family_id})
        )  # fmt: skip
        return TokenGrant(access, refresh)

    async def _audit(
        self, actor: str, subject_or_client: str, action: str, refusal: DomainError,
        request_id: str,
    ) -> None:  # fmt: skip
        await audit_refusal(
            self._store, refusal, action=action, actor=actor, resource=subject_or_client,
            request_id=request_id,
        )  # fmt: skip
