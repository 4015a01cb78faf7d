"""People and MCP servers logging in: Cloudflare Access (portal) and MCP server credentials.

Portal login: the ``Cf-Access-Jwt-Assertion`` is verified (``identity/access.py``), its email
maps to a ChittyID (minted through the authority, entity PEO, on the first login; validated
with it on every later one), and a ``portal`` token is issued for a new session. Every refusal
answers the same UNAUTHENTICATED "invalid Cloudflare Access assertion" and is audited
(action ``auth.portal``, outcome failure, attribute ``reason``). The authority being down is
UNAVAILABLE: no token, no row.

Exactly one ChittyID per email: first logins for one email are serialised in this process (so
the authority mints once), and the ``portal_identities`` unique constraints plus a re-read make
it hold across replicas too (a losing replica's minted ID is then simply unused).

MCP server login: a registered client of kind ``mcp_server`` authenticates with its secret and
gets an ``mcp_server`` token (sub = the client id; ``server_id`` and ``capabilities`` claims).
Naming a ChittyID grants nothing: a token acting for a person (``chitty_id`` claim, ``act.sub``
= the client id) needs that person's recorded consent for the client (approving it through the
authorization-code flow), carries only consented scopes, and the ChittyID is checked with the
authority (fail closed).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Protocol

from chittyauth.domain import policy
from chittyauth.domain.audit import audit_refusal
from chittyauth.domain.client_auth import MCP_LOGIN, authenticate_client, in_request
from chittyauth.domain.errors import (
    DomainError,
    InvalidClient,
    InvalidRequest,
    InvalidScope,
    Unauthenticated,
    Unavailable,
)
from chittyauth.domain.grants import checked_resources
from chittyauth.domain.tokens import IssuedToken, TokenService
from chittyauth.store import accounts as repo
from chittyauth.store import oauth as oauth_rows
from chittyauth.store.protocol import AuditRecord
from chittyauth.store.sessions import DeviceInfo
from chittyauth.store.sqlite import SqliteStore, SqliteTransaction

log = logging.getLogger(__name__)

# What a person's login token may carry; an empty request gets all of them. Admin scopes are
# never handed out by a login: they come from operator-issued credentials only.
PERSON_SCOPES = policy.PERSON_SCOPES
PORTAL_CLIENT_ID = "chittyauth-portal"
PERSON_ENTITY = "PEO"
MAX_EMAIL_CHARS = 254
MAX_CAPABILITIES = 50
MAX_CAPABILITY_CHARS = 128
_PORTAL_REFUSAL = "invalid Cloudflare Access assertion"


class Authority(Protocol):
    """What logins need of the ChittyID authority client (``identity/authority.py``)."""

    @property
    def available(self) -> bool: ...

    async def mint(
        self, entity: str, name: str | None = None, metadata: Mapping[str, Any] | None = None
    ) -> str: ...

    async def validate(self, chitty_id: str) -> Any: ...


class AccessIdentitySource(Protocol):
    """What portal login needs of the Cloudflare Access verifier (``identity/access.py``)."""

    async def verify(self, assertion: str, *, email_header: str | None = None) -> Any: ...


class SessionCreator(Protocol):
    """What logins need of the session service: a session inside the login's transaction."""

    async def join_session(
        self,
        tx: SqliteTransaction,
        *,
        chitty_id: str,
        device: DeviceInfo | None,
        now: float,
        actor: str = "",
        request_id: str = "",
    ) -> Any: ...


class McpClientSource(Protocol):
    """What MCP server login needs of the client registry (in memory)."""

    def authenticate(self, client_id: str, secret: str) -> Any: ...

    def get(self, client_id: str) -> Any: ...


@dataclass(frozen=True)
class PersonLogin:
    """A person's successful login: the token, its session and where the portal lives."""

    issued: IssuedToken
    chitty_id: str
    session_id: str
    portal_url: str = ""


def normalise_email(email: str) -> str:
    """Lower-cased, trimmed; InvalidRequest when longer than 254 characters."""
    email = email.strip().lower()
    if len(email) > MAX_EMAIL_CHARS:
        raise InvalidRequest("email is too long", reason="INVALID_EMAIL")
    return email


def person_scopes(requested: Sequence[str]) -> tuple[str, ...]:
    """The scopes of a person's login token: exactly those asked, all of PERSON_SCOPES if none.

    Raises:
        InvalidScope: a requested scope is not one a login can grant.
    """
    for scope in requested:
        if scope not in PERSON_SCOPES:
            raise InvalidScope(
                f"scope {scope[:128]!r} cannot be granted by a login",
                metadata={"scope": scope[:128]},
            )
    return tuple(dict.fromkeys(requested)) or PERSON_SCOPES


async def issue_person_token(
    tx: SqliteTransaction,
    tokens: TokenService,
    sessions: SessionCreator,
    *,
    chitty_id: str,
    token_use: str,
    client_id: str,
    scopes: Sequence[str],
    audience: Sequence[str],
    device: DeviceInfo | None,
    grant: str,
    request_id: str,
) -> tuple[IssuedToken, str]:
    """The person's session (joined, or new) and a token in it for ``chitty_id``, audited,
    inside ``tx``.

    Returns:
        The token and the session id (the token's ``sid``).
    """
    record = await sessions.join_session(
        tx, chitty_id=chitty_id, device=device, now=tx.now, request_id=request_id
    )
    session_id = str(record.session_id)
    issued = await tokens.record(
        tx,
        tokens.mint(
            subject=chitty_id,
            client_id=client_id,
            token_use=token_use,
            scopes=scopes,
            audience=audience,
            session_id=session_id,
            chitty_id=chitty_id,
        ),
    )
    await tx.audit(
        AuditRecord(
            actor=chitty_id,
            subject=chitty_id,
            action="token.issued",
            outcome="success",
            resource=issued.jti,
            request_id=request_id,
            attributes={"grant": grant, "scope": " ".join(issued.scopes), "sid": session_id},
        )
    )
    return issued, session_id


async def audit_failure(
    store: SqliteStore, action: str, subject: str, refusal: DomainError, request_id: str
) -> None:
    """One failure record in a transaction of its own (the refused call wrote nothing else)."""
    await audit_refusal(store, refusal, action=action, actor=subject, request_id=request_id)


class _KeyedLocks:
    """One asyncio.Lock per key, dropped when nobody holds or awaits it."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    @asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        lock, users = self._locks.get(key, (asyncio.Lock(), 0))
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users <= 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)


class PortalLogins:
    """Authenticate with a Cloudflare Access assertion -> a ``portal`` token."""

    def __init__(
        self,
        store: SqliteStore,
        tokens: TokenService,
        sessions: SessionCreator,
        authority: Authority,
        verifier: AccessIdentitySource,
        *,
        portal_url: str,
    ) -> None:
        self._store = store
        self._tokens = tokens
        self._sessions = sessions
        self._authority = authority
        self._verifier = verifier
        self._portal_url = portal_url
        self._first_logins = _KeyedLocks()

    async def login(
        self,
        assertion: str,
        email_header: str,
        *,
        scopes: Sequence[str],
        resources: Sequence[str],
        device: DeviceInfo | None,
        request_id: str,
    ) -> PersonLogin:
        """Verifies the assertion, finds or mints the ChittyID, issues a portal token.

        Raises:
            Unauthenticated: any Access check failed, or the authority disowns the ChittyID
                (one message; the reason is only in the audit log and ErrorInfo).
            Unavailable: the authority or the Access keys cannot be reached.
            InvalidScope / InvalidTarget: bad scopes or resources.
        """
        try:
            if len(email_header) > MAX_EMAIL_CHARS:
                raise Unauthenticated(_PORTAL_REFUSAL, reason="ACCESS_MALFORMED")
            granted = person_scopes(scopes)
            audience = checked_resources(resources)
            self._require_authority()
            identity = await self._verifier.verify(assertion, email_header=email_header or None)
            email = normalise_email(str(identity.email))
            existing = await self._known_chitty_id(email)
            if existing is not None:
                return await self._issue(email, existing, granted, audience, device, request_id)
            async with self._first_logins.hold(email):
                # Another first login for this email may have finished while we waited.
                async with self._store.read() as reader:
                    existing = await repo.portal_chitty_id(reader, email)
                if existing is not None:
                    return await self._issue(email, existing, granted, audience, device, request_id)
                minted = await self._authority.mint(PERSON_ENTITY, metadata={"source": "portal"})
                return await self._issue(
                    email,
                    minted,
                    granted,
                    audience,
                    device,
                    request_id,
                    first=True,
                    access_subject=str(identity.subject),
                )
        except DomainError as refusal:
            await audit_failure(self._store, "auth.portal", "unknown", refusal, request_id)
            raise

    def _require_authority(self) -> None:
        # The validation cache must not let logins through while the authority is known down.
        if not self._authority.available:
            raise Unavailable(
                "the ChittyID authority is unavailable", reason="AUTHORITY_UNAVAILABLE"
            )

    async def _known_chitty_id(self, email: str) -> str | None:
        async with self._store.read() as reader:
            chitty_id = await repo.portal_chitty_id(reader, email)
        if chitty_id is None:
            return None
        info = await self._authority.validate(chitty_id)
        if not info.valid:
            raise Unauthenticated(_PORTAL_REFUSAL, reason="CHITTY_ID_REVOKED")
        return chitty_id

    async def _issue(
        self,
        email: str,
        chitty_id: str,
        scopes: Sequence[str],
        audience: Sequence[str],
        device: DeviceInfo | None,
        request_id: str,
        *,
        first: bool = False,
        access_subject: str = "",
    ) -> PersonLogin:
        async with self._store.transaction() as tx:
            if first and not await repo.insert_portal_identity(
                tx, email, chitty_id, access_subject, tx.now
            ):
                # Another replica mapped this email first: its ChittyID wins, ours goes unused.
                log.warning("portal first login lost a race", extra={"unused": chitty_id})
                chitty_id = await repo.portal_chitty_id(tx, email) or chitty_id
                first = False
            if first:
                await tx.audit(
                    AuditRecord(
                        actor=chitty_id,
                        subject=chitty_id,
                        action="identity.portal_linked",
                        outcome="success",
                        resource=chitty_id,
                        request_id=request_id,
                        attributes={"entity": PERSON_ENTITY},
                    )
                )
            else:
                await repo.touch_portal_identity(tx, email, tx.now)
            issued, session_id = await issue_person_token(
                tx,
                self._tokens,
                self._sessions,
                chitty_id=chitty_id,
                token_use="portal",
                client_id=PORTAL_CLIENT_ID,
                scopes=scopes,
                audience=audience,
                device=device,
                grant="portal",
                request_id=request_id,
            )
        return PersonLogin(issued, chitty_id, session_id, self._portal_url)


class McpServerLogins:
    """Authenticate with an MCP server's client credentials -> an ``mcp_server`` token."""

    def __init__(
        self,
        store: SqliteStore,
        tokens: TokenService,
        clients: McpClientSource,
        authority: Authority,
    ) -> None:
        self._store = store
        self._tokens = tokens
        self._clients = clients
        self._authority = authority

    async def login(
        self,
        client_id: str,
        client_secret: str,
        *,
        chitty_id: str,
        capabilities: Sequence[str],
        scopes: Sequence[str],
        resources: Sequence[str],
        request_id: str,
        server_id: str = "",
    ) -> IssuedToken:
        """Issues an ``mcp_server`` token for a registered MCP server client.

        Args:
            server_id: when given, it must be the server id registered for the client.
            chitty_id: the person the server acts for ('' for none). The person must have
                consented to this client; the token then carries only consented scopes (none
                asked: every allowed one consented), the ``chitty_id`` claim and ``act.sub`` =
                the client id (sub stays the client id). Checked with the authority.
            capabilities: a subset of the client's registered ones; empty means all of them.

        Raises:
            InvalidClient: unknown client, wrong secret or not an MCP server (one message).
            InvalidScope: a capability or scope beyond the client's registered ones.
            PermissionDenied: reason ``CONSENT_REQUIRED`` — no consent, or a scope beyond it.
            InvalidRequest: the ChittyID is malformed or the authority disowns it.
            Unavailable: the authority cannot be reached (only when chitty_id is given).
        """
        try:
            # Both routes (gRPC, the legacy Basic route) have one place for the secret.
            client = authenticate_client(
                self._clients, in_request(client_id, client_secret), MCP_LOGIN
            )
            if client.kind != "mcp_server":
                raise InvalidClient("client authentication failed")
            if server_id and server_id != (client.server_id or client.client_id):
                raise InvalidRequest(
                    "server_id does not match the MCP server registered for this client",
                    reason="SERVER_ID_MISMATCH",
                    metadata={"field": "server_id"},
                )
            granted_caps = _subset(capabilities, client.capabilities, "capability")
            granted_scopes = _subset(scopes, client.allowed_scopes, "scope")
            audience = checked_resources(resources)
            if chitty_id:
                granted_scopes = await self._consented(client.client_id, chitty_id, scopes,
                                                       granted_scopes)  # fmt: skip
                info = await self._authority.validate(chitty_id)
                if not info.valid:
                    raise InvalidRequest("the ChittyID is not valid", reason="INVALID_CHITTY_ID")
        except DomainError as refusal:
            await audit_failure(self._store, "auth.mcp_server", client_id, refusal, request_id)
            raise
        async with self._store.transaction() as tx:
            issued = await self._tokens.record(
                tx,
                self._tokens.mint(
                    subject=client.client_id,
                    client_id=client.client_id,
                    token_use="mcp_server",
                    scopes=granted_scopes,
                    audience=audience,
                    chitty_id=chitty_id,
                    server_id=client.server_id or client.client_id,
                    capabilities=granted_caps,
                    # Acting for a person: the server is the actor, so the token is a delegate.
                    act={"sub": client.client_id} if chitty_id else None,
                ),
            )
            await tx.audit(
                AuditRecord(
                    actor=client.client_id,
                    subject=chitty_id or client.client_id,
                    action="token.issued",
                    outcome="success",
                    resource=issued.jti,
                    request_id=request_id,
                    attributes={
                        "grant": "mcp_server",
                        "server_id": client.server_id or client.client_id,
                        "capabilities": " ".join(granted_caps),
                    },
                )
            )
        return issued

    async def _consented(
        self,
        client_id: str,
        chitty_id: str,
        requested: Sequence[str],
        allowed: tuple[str, ...],
    ) -> tuple[str, ...]:
        """The scopes of a token acting for ``chitty_id``: within what the person consented to.

        Asked-for scopes must all be consented; asking for none means every allowed scope the
        person consented to.

        Raises:
            PermissionDenied: reason ``CONSENT_REQUIRED``.
        """
        async with self._store.read() as reader:
            consented = await oauth_rows.consent(reader, chitty_id, client_id)
        if not requested and consented is not None:
            allowed = tuple(s for s in allowed if s in consented)
        return policy.delegated_scopes(allowed, consented, client_id=client_id)


def _subset(requested: Sequence[str], allowed: Sequence[str], what: str) -> tuple[str, ...]:
    if len(requested) > MAX_CAPABILITIES:
        raise InvalidRequest(f"at most {MAX_CAPABILITIES} {what} values")
    permitted = set(allowed)
    for value in requested:
        if value not in permitted:
            shown = value[:MAX_CAPABILITY_CHARS]
            raise InvalidScope(
                f"{what} {shown!r} is not registered for this client", metadata={what: shown}
            )
    return tuple(dict.fromkeys(requested)) or tuple(allowed)
