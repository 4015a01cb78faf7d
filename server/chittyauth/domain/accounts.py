"""Password accounts: registration and login, and the bundle of identity flows.

Registration mints a ChittyID (entity PEO) through the authority, then stores the account with
an scrypt hash (per-user 16-byte salt, n=2**14, r=8, p=1, stored with its parameters). Login is
constant in what it reveals: an unknown email, a wrong password and a locked account give the
same UNAUTHENTICATED "invalid email or password" (reason ``INVALID_CREDENTIALS``) after the same
work (an unknown email hashes against a dummy) and the same failure delay, which doubles with
each consecutive failure for that email (known or not). After
``login_failures_before_lockout`` consecutive failures an account is locked for ``lockout_s``
(audited ``auth.locked``); while locked even the right password is refused, the same way.
Failures are counted in the account row by one atomic increment, and the lock is decided on the
count that increment returns, so concurrent wrong guesses each count.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import hmac
import logging
import re
import secrets
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from chittyauth.clock import Clock
from chittyauth.config import RateLimitConfig
from chittyauth.domain.errors import (
    AlreadyExists,
    DomainError,
    InvalidRequest,
    Unauthenticated,
)
from chittyauth.domain.grants import checked_resources
from chittyauth.domain.portal import (
    PERSON_ENTITY,
    Authority,
    McpServerLogins,
    PersonLogin,
    PortalLogins,
    SessionCreator,
    audit_failure,
    issue_person_token,
    normalise_email,
    person_scopes,
)
from chittyauth.domain.ratelimit import RateLimiter
from chittyauth.domain.tokens import IssuedToken, TokenService
from chittyauth.store import accounts as repo
from chittyauth.store.accounts import AccountRow
from chittyauth.store.protocol import AuditRecord
from chittyauth.store.sessions import DeviceInfo
from chittyauth.store.sqlite import SqliteStore, SqliteTransaction

log = logging.getLogger(__name__)

PASSWORD_CLIENT_ID = "chittyauth-accounts"
MIN_PASSWORD_CHARS = 12
MAX_PASSWORD_CHARS = 1024
MAX_DISPLAY_NAME_CHARS = 200
MAX_METADATA_BYTES = 4096
SCRYPT_N = 2**14
SCRYPT_R = 8
SCRYPT_P = 1
SALT_BYTES = 16
HASH_BYTES = 32
# Failure counters kept in memory for the delay (every email, known or not), bounded.
_MAX_TRACKED_EMAILS = 100_000
_LOGIN_REFUSAL = "invalid email or password"
# Deliberately loose: a local part, an @, a dotted domain; no spaces or control characters.
_EMAIL = re.compile(r"[^@\s\x00-\x1f\x7f]{1,64}@[^@\s\x00-\x1f\x7f]+\.[^@\s\x00-\x1f\x7f]+")


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    """``scrypt$n$r$p$salt$hash`` (salt and hash base64) for ``password``."""
    salt = salt if salt is not None else secrets.token_bytes(SALT_BYTES)
    digest = _scrypt(password, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
    return "$".join(
        ("scrypt", str(SCRYPT_N), str(SCRYPT_R), str(SCRYPT_P), _b64(salt), _b64(digest))
    )


def verify_password(password: str, encoded: str) -> bool:
    """Whether ``password`` matches ``encoded`` (compared in constant time)."""
    try:
        scheme, n, r, p, salt, expected = encoded.split("$")
        if scheme != "scrypt":
            return False
        digest = _scrypt(password, _unb64(salt), int(n), int(r), int(p))
        return hmac.compare_digest(digest, _unb64(expected))
    except (ValueError, TypeError):
        return False


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(
        password.encode("utf-8"), salt=salt, n=n, r=r, p=p, dklen=HASH_BYTES, maxmem=64 << 20
    )


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text.encode("ascii"), validate=True)


@functools.cache
def _dummy_hash() -> str:
    """Verified against when the email is unknown, so that answer costs one scrypt like any
    other. Made on first use: hashing at import would slow every start-up."""
    return hash_password("not-a-real-password", salt=bytes(SALT_BYTES))


@dataclass(frozen=True)
class Account:
    """A registered account (never with its hash)."""

    chitty_id: str
    email: str
    display_name: str
    created_at: float


def check_registration(email: str, password: str, display_name: str) -> tuple[str, str]:
    """The normalised email and display name, or InvalidRequest naming what is wrong."""
    email = normalise_email(email)
    if not _EMAIL.fullmatch(email):
        raise InvalidRequest("email is not a valid address", reason="INVALID_EMAIL")
    if not MIN_PASSWORD_CHARS <= len(password) <= MAX_PASSWORD_CHARS:
        raise InvalidRequest(
            f"password must be {MIN_PASSWORD_CHARS} to {MAX_PASSWORD_CHARS} characters",
            reason="WEAK_PASSWORD",
        )
    display_name = display_name.strip()
    if len(display_name) > MAX_DISPLAY_NAME_CHARS or any(c < " " for c in display_name):
        raise InvalidRequest(
            f"display_name must be at most {MAX_DISPLAY_NAME_CHARS} printable characters",
            reason="INVALID_DISPLAY_NAME",
        )
    return email, display_name


class AccountLogins:
    """RegisterAccount and Authenticate with a password."""

    def __init__(
        self,
        store: SqliteStore,
        tokens: TokenService,
        sessions: SessionCreator,
        authority: Authority,
        limits: RateLimitConfig,
        clock: Clock,
    ) -> None:
        self._store = store
        self._tokens = tokens
        self._sessions = sessions
        self._authority = authority
        self._limits = limits
        self._clock = clock
        self._failures: OrderedDict[str, int] = OrderedDict()

    async def register(
        self,
        email: str,
        password: str,
        display_name: str,
        *,
        metadata: Mapping[str, Any],
        request_id: str,
    ) -> Account:
        """Mints a ChittyID and stores a new account for it.

        Raises:
            InvalidRequest: a malformed email, a password too short or long, a bad name.
            AlreadyExists: the email has an account (reason ``EMAIL_TAKEN``).
            Unavailable: the authority cannot be reached; nothing is stored.
        """
        try:
            email, display_name = check_registration(email, password, display_name)
            if len(repr(metadata)) > MAX_METADATA_BYTES:
                raise InvalidRequest("metadata is too large", reason="METADATA_TOO_LARGE")
            async with self._store.read() as reader:
                if await repo.account_by_email(reader, email) is not None:
                    raise _taken()
            encoded = await asyncio.to_thread(hash_password, password)
            chitty_id = await self._authority.mint(
                PERSON_ENTITY, name=display_name or None, metadata={"source": "password"}
            )
            async with self._store.transaction() as tx:
                if not await repo.insert_account(
                    tx,
                    chitty_id=chitty_id,
                    email=email,
                    display_name=display_name,
                    password_hash=encoded,
                    metadata=metadata,
                    now=tx.now,
                ):
                    # Lost a race with a registration of the same email.
                    log.warning("registration lost a race", extra={"unused": chitty_id})
                    raise _taken()
                await tx.audit(
                    AuditRecord(
                        actor=chitty_id,
                        subject=chitty_id,
                        action="account.registered",
                        outcome="success",
                        resource=chitty_id,
                        request_id=request_id,
                    )
                )
                created_at = tx.now
        except DomainError as refusal:
            await audit_failure(self._store, "account.register", "unknown", refusal, request_id)
            raise
        return Account(chitty_id, email, display_name, created_at)

    async def login(
        self,
        email: str,
        password: str,
        *,
        scopes: Sequence[str],
        resources: Sequence[str],
        device: DeviceInfo | None,
        request_id: str,
    ) -> PersonLogin:
        """Checks the password and issues a ``user`` token for a new session.

        Raises:
            Unauthenticated: reason ``INVALID_CREDENTIALS`` for an unknown email, a wrong
                password or a locked account alike.
            InvalidScope / InvalidTarget: bad scopes or resources.
        """
        granted = person_scopes(scopes)
        audience = checked_resources(resources)
        key = email.strip().lower()[:MAX_PASSWORD_CHARS]
        account = None
        if len(email) <= MAX_PASSWORD_CHARS and len(password) <= MAX_PASSWORD_CHARS:
            async with self._store.read() as reader:
                account = await repo.account_by_email(reader, key)
        encoded = account.password_hash if account is not None else _dummy_hash()
        matches = await asyncio.to_thread(verify_password, password[:MAX_PASSWORD_CHARS], encoded)
        now = self._clock.now()
        locked = account is not None and account.locked_until > now
        if account is None or not matches or locked:
            await self._refuse(
                key, account, wrong_password=not matches, locked=locked, request_id=request_id
            )
        assert account is not None  # _refuse always raises
        issued = None
        async with self._store.transaction() as tx:
            # Checked again in the write: concurrent failures may have locked it meanwhile.
            if await repo.clear_login_failures(tx, account.chitty_id, tx.now):
                issued, session_id = await self._issue(
                    tx, account, granted, audience, device, request_id
                )
        if issued is None:
            await self._refuse(
                key, account, wrong_password=False, locked=True, request_id=request_id
            )
        assert issued is not None
        self._failures.pop(key, None)
        return PersonLogin(issued, account.chitty_id, session_id)

    async def _issue(
        self,
        tx: SqliteTransaction,
        account: AccountRow,
        granted: Sequence[str],
        audience: Sequence[str],
        device: DeviceInfo | None,
        request_id: str,
    ) -> tuple[IssuedToken, str]:
        return await issue_person_token(
            tx,
            self._tokens,
            self._sessions,
            chitty_id=account.chitty_id,
            token_use="user",
            client_id=PASSWORD_CLIENT_ID,
            scopes=granted,
            audience=audience,
            device=device,
            grant="password",
            request_id=request_id,
        )

    async def _refuse(
        self,
        key: str,
        account: AccountRow | None,
        *,
        wrong_password: bool,
        locked: bool,
        request_id: str,
    ) -> None:
        earlier = self._failures.pop(key, 0)
        self._failures[key] = earlier + 1
        while len(self._failures) > _MAX_TRACKED_EMAILS:
            self._failures.popitem(last=False)
        subject = account.chitty_id if account is not None else "unknown"
        async with self._store.transaction() as tx:
            if account is not None and wrong_password:
                # Every wrong password counts, during a lock too; the right one while
                # locked is refused but is no guess.
                locked = await self._count_failure(tx, account.chitty_id, request_id) or locked
            reason = "ACCOUNT_LOCKED" if locked else "INVALID_CREDENTIALS"
            await tx.audit(
                AuditRecord(
                    actor=subject,
                    subject=subject,
                    action="auth.password",
                    outcome="failure",
                    request_id=request_id,
                    attributes={"reason": reason},
                )
            )
        delay = min(
            self._limits.login_failure_delay_s * 2**earlier,
            self._limits.login_failure_delay_max_s,
        )
        if delay > 0:
            await asyncio.sleep(delay)
        raise Unauthenticated(_LOGIN_REFUSAL, reason="INVALID_CREDENTIALS")

    async def _count_failure(self, tx: SqliteTransaction, chitty_id: str, request_id: str) -> bool:
        """Counts a wrong password in the row and locks once the count reaches the threshold.

        The decision uses the count the increment returned, never one read before the
        (slow) password check, so concurrent wrong guesses each count.

        Returns:
            Whether the account was locked already when this failure was counted.
        """
        failures, locked_until = await repo.count_login_failure(tx, chitty_id, tx.now)
        if locked_until > tx.now:
            return True
        threshold = self._limits.login_failures_before_lockout
        if threshold <= 0 or failures < threshold:
            return False
        if await repo.lock_account(tx, chitty_id, tx.now + self._limits.lockout_s, tx.now):
            await tx.audit(
                AuditRecord(
                    actor=chitty_id,
                    subject=chitty_id,
                    action="auth.locked",
                    outcome="success",
                    resource=chitty_id,
                    request_id=request_id,
                    attributes={
                        "lockout_s": str(self._limits.lockout_s),
                        "failed_logins": str(failures),
                    },
                )
            )
        return False


def _taken() -> AlreadyExists:
    return AlreadyExists("an account with this email exists already", reason="EMAIL_TAKEN")


@dataclass
class IdentityFlows:
    """What AuthService needs beyond tokens and grants: people, MCP servers, rate limits."""

    portal: PortalLogins
    accounts: AccountLogins
    mcp_servers: McpServerLogins
    limiter: RateLimiter

    def limit(self, operation: str, client_id: str, address: str) -> None:
        """Charges the rate limits of ``operation``; RateLimited when over."""
        self.limiter.check(operation, client_id=client_id, address=address)
