"""IssueToken: an access token for a ChittyID, issued by an admin or a `tokens:issue` client.

This is the historical ``generate_jwt``: the caller names a ChittyID rather than presenting a
token of it. Naming a ChittyID grants nothing: unless the caller is an admin, the person must
have consented to the caller's client (the consent the authorization-code flow records), and
the token carries only consented scopes that the caller also holds itself, so the right to
issue is neither a way to impersonate nor to escalate. The ChittyID is then checked with the
authority (fail closed: the authority being down means no token). The token records who issued
it in its ``act`` claim, which makes it a delegate: it can never approve an authorization
request.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from chittyauth.domain import policy
from chittyauth.domain.audit import audit_refusal
from chittyauth.domain.errors import DomainError, InvalidRequest, PermissionDenied
from chittyauth.domain.principal import Principal
from chittyauth.domain.tokens import RESERVED_CLAIMS, IssuedToken, TokenService
from chittyauth.store import oauth as oauth_rows
from chittyauth.store.protocol import AuditRecord
from chittyauth.store.sqlite import SqliteStore

ISSUE_SCOPE = "tokens:issue"
# Token uses IssueToken may mint; the others belong to a flow with a session or a client.
ISSUABLE_USES = ("user", "service")
MAX_SCOPES = 50
MAX_AUDIENCES = 10
MAX_NAME_CHARS = 256


class ChittyIdValidator(Protocol):
    """What issuing needs of the ChittyID authority (``identity/authority.py``)."""

    async def validate(self, chitty_id: str) -> Any: ...


class TokenIssuer:
    """Issues tokens for ChittyIDs on the request of a privileged caller."""

    def __init__(
        self, store: SqliteStore, tokens: TokenService, authority: ChittyIdValidator
    ) -> None:
        self._store = store
        self._tokens = tokens
        self._authority = authority

    async def issue(
        self,
        caller: Principal,
        *,
        chitty_id: str,
        ttl_s: int | None,
        extra_claims: Mapping[str, Any],
        scopes: Sequence[str],
        audiences: Sequence[str],
        token_use: str,
        request_id: str,
    ) -> IssuedToken:
        """Issues a token for ``chitty_id``; success and refusal are both audited.

        Args:
            caller: who asks; needs scope ``tokens:issue`` or admin, and (without admin) the
                person's consent to its client for the scopes asked.
            ttl_s: lifetime in seconds; None means the default of ``token_use``.
            token_use: ``user`` or ``service`` ('' means ``user``).

        Returns:
            The signed token.

        Raises:
            PermissionDenied: the caller lacks the scope, or (without admin) asks for a scope
                it does not hold (reason ``SCOPE_NOT_HELD``), or the person has not consented
                to the caller's client for the scopes asked (``CONSENT_REQUIRED``).
            InvalidRequest: malformed input, a lifetime outside (0, max], reserved extra claims
                (``RESERVED_CLAIM``), or a ChittyID the authority disowns (``INVALID_CHITTY_ID``).
            Unavailable: the authority cannot be reached; no token is issued.
        """
        use = token_use or "user"
        try:
            policy.require_scope(caller, ISSUE_SCOPE)
            _check_request(caller, chitty_id, ttl_s, scopes, audiences, use)
            reserved = sorted(set(extra_claims) & RESERVED_CLAIMS)
            if reserved:
                # Refused before the authority is asked: bad input is not an outage.
                raise InvalidRequest(
                    f"extra claims may not set reserved claims: {', '.join(reserved)}",
                    reason="RESERVED_CLAIM",
                    metadata={"claims": ",".join(reserved)[:MAX_NAME_CHARS]},
                )
            longest = self._tokens.max_lifetime()
            if ttl_s is not None and ttl_s > longest:
                raise InvalidRequest(
                    f"ttl must be at most {longest} s",
                    reason="INVALID_TTL",
                    metadata={"max_ttl_s": str(longest)},
                )
            if not policy.acts_for_person_without_consent(caller):
                await self._require_consent(caller, chitty_id, tuple(scopes))
            info = await self._authority.validate(chitty_id)
            if not info.valid:
                raise InvalidRequest(
                    "the ChittyID is not known to the ChittyID authority",
                    reason="INVALID_CHITTY_ID",
                    metadata={"chitty_id": chitty_id},
                )
            async with self._store.transaction() as tx:
                issued = await self._tokens.record(
                    tx,
                    self._tokens.mint(
                        subject=chitty_id,
                        client_id=caller.client_id or caller.subject,
                        token_use=use,
                        scopes=tuple(scopes),
                        audience=tuple(audiences),
                        chitty_id=chitty_id,
                        ttl_s=ttl_s,
                        extra_claims=extra_claims,
                        act={"sub": caller.subject},
                    ),
                )
                await tx.audit(
                    AuditRecord(
                        actor=caller.subject,
                        subject=chitty_id,
                        action="token.issued",
                        outcome="success",
                        resource=issued.jti,
                        request_id=request_id,
                        attributes={
                            "grant": "issue_token",
                            "token_use": use,
                            "ttl_s": str(int(issued.expires_at - issued.issued_at)),
                            # Claim names only: values may be anything the caller chose.
                            "extra_claims": ",".join(sorted(extra_claims)),
                        },
                    )
                )
            return issued
        except DomainError as refusal:
            await self._audit_refusal(caller, chitty_id, refusal, request_id)
            raise

    async def _require_consent(
        self, caller: Principal, chitty_id: str, scopes: tuple[str, ...]
    ) -> None:
        """Raises PermissionDenied (``CONSENT_REQUIRED``) unless ``chitty_id`` consented to the
        caller's client for every scope asked."""
        client_id = caller.client_id or caller.subject
        async with self._store.read() as reader:
            consented = await oauth_rows.consent(reader, chitty_id, client_id)
        policy.delegated_scopes(scopes, consented, client_id=client_id)

    async def _audit_refusal(
        self, caller: Principal, chitty_id: str, refusal: DomainError, request_id: str
    ) -> None:
        await audit_refusal(
            self._store, refusal, action="token.issued", actor=caller.subject,
            subject=chitty_id[:MAX_NAME_CHARS] or "unknown", request_id=request_id,
            attributes={"grant": "issue_token"},
        )  # fmt: skip


def _check_request(
    caller: Principal,
    chitty_id: str,
    ttl_s: int | None,
    scopes: Sequence[str],
    audiences: Sequence[str],
    token_use: str,
) -> None:
    if not chitty_id:
        raise InvalidRequest("chitty_id is required", reason="MISSING_CHITTY_ID")
    if len(chitty_id) > MAX_NAME_CHARS:
        raise InvalidRequest("chitty_id is too long", reason="INVALID_CHITTY_ID")
    if token_use not in ISSUABLE_USES:
        raise InvalidRequest(
            "token_use must be USER or SERVICE",
            reason="TOKEN_USE_NOT_ISSUABLE",
            metadata={"token_use": token_use},
        )
    if ttl_s is not None and ttl_s <= 0:
        raise InvalidRequest("ttl must be positive", reason="INVALID_TTL")
    _check_names(scopes, MAX_SCOPES, "scopes")
    _check_names(audiences, MAX_AUDIENCES, "audiences")
    if not policy.is_admin(caller):
        missing = sorted(set(policy.grantable(caller, tuple(scopes))))
        if missing:
            raise PermissionDenied(
                "a caller without admin may only issue scopes it holds",
                reason="SCOPE_NOT_HELD",
                metadata={"scopes": " ".join(missing)[:MAX_NAME_CHARS]},
            )


def _check_names(values: Sequence[str], limit: int, what: str) -> None:
    if len(values) > limit:
        raise InvalidRequest(f"at most {limit} {what}")
    if any(not v or len(v) > MAX_NAME_CHARS or any(c.isspace() for c in v) for v in values):
        raise InvalidRequest(f"{what} must be non-empty, without spaces, at most 256 characters")
