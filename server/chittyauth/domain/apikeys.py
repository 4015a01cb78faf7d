"""API keys: the historical ``sk_live_`` format, the in-memory registry, and administration.

A key is ``sk_live_`` followed by 43 base64url characters: 28 random bytes and the 4-byte
big-endian CRC32 of those bytes, encoded together without padding. The checksum lets a secret
scanner, and ``parse``, reject a mistyped or truncated key without a lookup. Only the key's
SHA-256 is stored; the key itself is shown once, at creation.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import logging
import re
import secrets
import zlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

from chittyauth.domain import chittyid, ids, policy
from chittyauth.domain.audit import audit_refusal
from chittyauth.domain.clients import MAX_SCOPE_LENGTH, TokenRevoker, check_scope_token
from chittyauth.domain.errors import (
    DomainError,
    FailedPrecondition,
    InvalidRequest,
    NotFound,
    PermissionDenied,
    Unavailable,
)
from chittyauth.domain.paging import decode_page_token, encode_page_token, page_size
from chittyauth.domain.principal import Principal
from chittyauth.store import apikeys as rows
from chittyauth.store.apikeys import ApiKeyRow
from chittyauth.store.protocol import AuditRecord, Change
from chittyauth.store.sqlite import SqliteStore, SqliteTransaction

log = logging.getLogger(__name__)

T = TypeVar("T")

ApiKeyRecord = ApiKeyRow

API_KEY_PREFIX = "sk_live_"
API_KEY_RANDOM_BYTES = 28
API_KEY_BODY_LENGTH = 43  # base64url of 28 + 4 bytes, unpadded
API_KEY_LENGTH = len(API_KEY_PREFIX) + API_KEY_BODY_LENGTH
KEY_HINT_LENGTH = 12
# The historical permission name for creating keys.
GENERATE_SCOPE = "api_keys:generate"
DEFAULT_SCOPES = ("read",)
# A caller without an admin scope may give a key these, plus scopes it holds itself.
BASIC_SCOPES = frozenset(DEFAULT_SCOPES)
MAX_KEY_SCOPES = 50
MAX_DISPLAY_NAME_LENGTH = 200
MAX_ACTIVE_KEYS_PER_OWNER = 100
MAX_KEY_ID_LENGTH = 64
# Longest lifetime a key may be given (ten years); beyond that, "never" says it better.
MAX_LIFETIME_S = 10 * 366 * 86400
# How long the revocation of a key itself is kept: as long as the revocations table keeps any.
_FOREVER = 1e18

_BODY = re.compile(r"[A-Za-z0-9_-]{43}")


# -- the key format -----------------------------------------------------------------------


def new_api_key() -> str:
    """A fresh key: ``sk_live_`` + base64url(28 random bytes + CRC32 of them)."""
    raw = secrets.token_bytes(API_KEY_RANDOM_BYTES)
    body = raw + zlib.crc32(raw).to_bytes(4, "big")
    return API_KEY_PREFIX + base64.urlsafe_b64encode(body).rstrip(b"=").decode("ascii")


def is_well_formed(key: str) -> bool:
    """True when ``key`` has the prefix, the length, canonical base64url and a good CRC32."""
    if len(key) != API_KEY_LENGTH or not key.startswith(API_KEY_PREFIX):
        return False
    body = key[len(API_KEY_PREFIX) :]
    if not _BODY.fullmatch(body):
        return False
    try:
        decoded = base64.urlsafe_b64decode(body + "=")
    except (binascii.Error, ValueError):
        return False
    # The last character carries two unused bits; only the canonical spelling is a key.
    if base64.urlsafe_b64encode(decoded).rstrip(b"=").decode("ascii") != body:
        return False
    raw, check = decoded[:API_KEY_RANDOM_BYTES], decoded[API_KEY_RANDOM_BYTES:]
    return zlib.crc32(raw).to_bytes(4, "big") == check


def key_hint(key: str) -> str:
    """The first characters of a key (``sk_live_`` and four more), to tell keys apart."""
    return key[:KEY_HINT_LENGTH]


# -- the registry -------------------------------------------------------------------------


class ApiKeyRegistry:
    """Every API key's metadata in memory, by hash: the hot path's view (no I/O per call)."""

    def __init__(self, store: SqliteStore) -> None:
        self._store = store
        self._by_hash: dict[str, ApiKeyRecord] = {}
        self._hash_by_id: dict[str, str] = {}
        self._seq: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._by_hash)

    async def load(self) -> None:
        """Reads every key's metadata from the store (at start)."""
        async with self._store.read() as reader:
            loaded = await rows.all_api_keys(reader)
        self._by_hash = {record.key_hash: record for record in loaded}
        self._hash_by_id = {record.key_id: record.key_hash for record in loaded}

    def check(self, key: str) -> ApiKeyRecord | None:
        """The key's record (revoked and expired ones included; see ``record.status``).

        A malformed key or one with a bad checksum is None without a lookup.
        """
        if not is_well_formed(key):
            return None
        return self._by_hash.get(ids.secret_hash(key))

    def get(self, key_id: str) -> ApiKeyRecord | None:
        digest = self._hash_by_id.get(key_id)
        return None if digest is None else self._by_hash.get(digest)

    def put(self, record: ApiKeyRecord, seq: int) -> None:
        """Applies a committed create or revoke (called at commit)."""
        if self._seq.get(record.key_id, 0) <= seq:
            self._by_hash[record.key_hash] = record
            self._hash_by_id[record.key_id] = record.key_hash
            self._seq[record.key_id] = seq

    async def on_changes(self, changes: Sequence[Change]) -> None:
        """Change-feed subscriber for ``apikey.``: re-reads the keys those changes name."""
        latest = {change.key: change.seq for change in changes}
        async with self._store.read() as reader:
            current = await rows.api_keys_by_id(reader, list(latest))
        for record in current:
            self.put(record, latest[record.key_id])


# -- administration -----------------------------------------------------------------------


class ChittyIdValidator(Protocol):
    """The ChittyID authority (``identity.authority.AuthorityClient``)."""

    @property
    def available(self) -> bool: ...

    async def validate(self, chitty_id: str) -> _Verdict: ...


class _Verdict(Protocol):
    @property
    def valid(self) -> bool: ...


@dataclass(frozen=True, slots=True)
class IssuedApiKey:
    """A new key's metadata and the key itself (shown once)."""

    api_key: ApiKeyRecord
    key: str = dataclasses.field(repr=False)


@dataclass(frozen=True, slots=True)
class ApiKeyPage:
    """One page of ListApiKeys."""

    api_keys: tuple[ApiKeyRecord, ...]
    next_page_token: str


class ApiKeyAdmin:
    """Create, list and revoke API keys; every change audited.

    Args:
        store: the open store.
        registry: updated at each commit so Validate sees a change at once.
        revoker: the token service; access tokens obtained with a revoked key die with it.
        authority: when given, an owner named by an admin is checked with the authority.
        allow_legacy_ids: whether legacy ``CHITTY-…`` ids pass the format pre-check.
    """

    def __init__(
        self,
        store: SqliteStore,
        registry: ApiKeyRegistry,
        *,
        revoker: TokenRevoker | None = None,
        authority: ChittyIdValidator | None = None,
        allow_legacy_ids: bool = False,
    ) -> None:
        self._store = store
        self._registry = registry
        self._revoker = revoker
        # Set by the composition root once the authority client exists; keys are created for
        # a ChittyID only while it is reachable (fail closed).
        self.authority = authority
        self._allow_legacy_ids = allow_legacy_ids

    async def create(
        self,
        caller: Principal,
        *,
        chitty_id: str = "",
        display_name: str = "",
        scopes: Sequence[str] = (),
        expire_time: float | None = None,
        request_id: str = "",
    ) -> IssuedApiKey:
        """Creates a key owned by ``chitty_id`` (the caller's own when empty).

        The caller needs ``api_keys:generate`` or admin. Only an admin may name another owner
        or give a key scopes beyond ``read`` and those the caller holds itself, so a key never
        carries more than its creator could.

        Raises:
            PermissionDenied: missing scope, another owner, or scopes beyond the caller's.
            InvalidRequest: a bad owner, name, scope or expiry.
            FailedPrecondition: the owner has too many active keys.
            Unavailable: the ChittyID authority cannot be reached (fail closed).
        """

        async def prepare() -> tuple[str, str, tuple[str, ...]]:
            policy.require_scope(caller, GENERATE_SCOPE)
            owner = self._owner(caller, chitty_id)
            key_scopes = _checked_scopes(scopes)
            if policy.kind_of(caller) is not policy.Kind.ADMIN:
                beyond = [s for s in policy.grantable(caller, key_scopes) if s not in BASIC_SCOPES]
                if beyond:
                    raise PermissionDenied(
                        "an API key cannot carry scopes its creator does not hold",
                        reason="INSUFFICIENT_SCOPE",
                        metadata={"scopes": " ".join(beyond)[:256]},
                    )
            name = display_name
            if len(name) > MAX_DISPLAY_NAME_LENGTH or (name and not name.isprintable()):
                raise InvalidRequest(
                    f"display_name must be at most {MAX_DISPLAY_NAME_LENGTH} printable characters",
                    reason="INVALID_DISPLAY_NAME",
                )
            _check_expire_time(expire_time, self._store.clock.now())
            await self._vouch(caller, owner)
            return owner, name, key_scopes

        try:
            owner, name, key_scopes = await prepare()
        except DomainError as refusal:
            await self._audit_failure(caller, "apikey.created", chitty_id, "", request_id, refusal)
            raise

        async def work(tx: SqliteTransaction) -> IssuedApiKey:
            _check_expire_time(expire_time, tx.now)
            if await rows.count_active(tx, owner, tx.now) >= MAX_ACTIVE_KEYS_PER_OWNER:
                raise FailedPrecondition(
                    f"at most {MAX_ACTIVE_KEYS_PER_OWNER} active API keys per owner;"
                    " revoke one first",
                    reason="TOO_MANY_API_KEYS",
                )
            key = new_api_key()
            record = ApiKeyRecord(
                key_id=ids.new_id("key"),
                key_hash=ids.secret_hash(key),
                chitty_id=owner,
                display_name=name,
                scopes=key_scopes,
                key_hint=key_hint(key),
                created_by=caller.subject,
                created_at=tx.now,
                expires_at=expire_time,
                revoked_at=None,
            )
            await rows.insert_api_key(tx, record)
            seq = await tx.append_change("apikey.created", record.key_id, {"key_id": record.key_id})
            await tx.audit(
                AuditRecord(
                    actor=caller.subject,
                    subject=owner,
                    action="apikey.created",
                    outcome="success",
                    resource=f"apiKeys/{record.key_id}",
                    request_id=request_id,
                    attributes={
                        "scope": " ".join(key_scopes),
                        "key_sha256_prefix": record.key_hash[:8],
                        "expires": "never" if expire_time is None else repr(expire_time),
                    },
                )
            )
            tx.on_commit(lambda: self._registry.put(record, seq))
            return IssuedApiKey(record, key)

        return await self._attempt(caller, "apikey.created", owner, "", request_id, work)

    async def list_keys(
        self,
        caller: Principal,
        *,
        chitty_id: str = "",
        size: int = 0,
        page_token: str = "",
        include_revoked: bool = False,
    ) -> ApiKeyPage:
        """``chitty_id``'s keys (the caller's own when empty; another's needs admin).

        Raises:
            PermissionDenied: another owner's keys without admin.
            InvalidRequest: a bad owner, page size or page token.
        """
        owner = self._owner(caller, chitty_id)
        limit = page_size(size)
        after = decode_page_token(page_token)
        async with self._store.read() as reader:
            found = await rows.list_api_keys(
                reader,
                chitty_id=owner,
                include_revoked=include_revoked,
                after=after,
                limit=limit + 1,
            )
        page = tuple(found[:limit])
        token = ""
        if len(found) > limit:
            token = encode_page_token(page[-1].created_at, page[-1].key_id)
        return ApiKeyPage(page, token)

    async def revoke(self, caller: Principal, key_id: str, *, request_id: str = "") -> ApiKeyRecord:
        """Revokes a key at once; revoking a revoked key changes nothing (idempotent).

        Raises:
            NotFound: no such key, or the caller is neither its owner nor an admin (the
                existence of another owner's key is not revealed).
        """

        async def work(tx: SqliteTransaction) -> ApiKeyRecord:
            existing = await rows.get_api_key(tx, key_id) if len(key_id) <= 64 else None
            if existing is None or not policy.may_reach(caller, existing.chitty_id):
                raise NotFound(
                    f"no API key {key_id[:MAX_KEY_ID_LENGTH]!r}", reason="API_KEY_NOT_FOUND"
                )
            return await self._end(tx, existing, caller.subject, request_id)

        return await self._attempt(caller, "apikey.revoked", "", key_id, request_id, work)

    async def end(self, tx: SqliteTransaction, key_id: str, *, actor: str, request_id: str) -> bool:
        """Ends the key ``key_id`` in ``tx`` for a caller already found allowed to (RFC 7009
        Revoke of the key itself); see ``_end``.

        Returns:
            True when the key was active until now; False when already revoked or unknown.
        """
        existing = await rows.get_api_key(tx, key_id) if len(key_id) <= 64 else None
        if existing is None:
            return False
        ended = await self._end(tx, existing, actor, request_id)
        return ended is not existing

    async def _end(
        self, tx: SqliteTransaction, existing: ApiKeyRecord, actor: str, request_id: str
    ) -> ApiKeyRecord:
        """The one way a key is revoked, whatever the path (RevokeApiKey, Revoke, /revoke):
        the row is marked revoked (ListApiKeys shows it), the key itself is refused (kind
        ``api_key``, also for replicas and verifiers) and so is every access token obtained
        with it (kind ``client``, ``apikey:<key_id>``). Revoking a revoked key changes nothing.
        """
        if existing.revoked:
            await tx.audit(self._revoked_record(actor, existing, request_id, again=True))
            return existing
        key_id = existing.key_id
        await rows.mark_revoked(tx, key_id, tx.now)
        record = dataclasses.replace(existing, revoked_at=tx.now)
        if self._revoker is not None:
            # Keys do not expire on their own; the tokens they obtained do.
            await self._revoker.revoke(tx, "api_key", key_id, _FOREVER)
            until = tx.now + self._revoker.max_lifetime()
            await self._revoker.revoke(
                tx, "client", f"{policy.API_KEY_CLIENT_PREFIX}{key_id}", until
            )
        seq = await tx.append_change("apikey.revoked", key_id, {"key_id": key_id})
        await tx.audit(self._revoked_record(actor, record, request_id, again=False))
        tx.on_commit(lambda: self._registry.put(record, seq))
        return record

    # -- helpers ----------------------------------------------------------------------------

    async def _vouch(self, caller: Principal, owner: str) -> None:
        """Fail closed: no key for a ChittyID while the authority is known to be down, and
        another person's ChittyID (an admin's request) is validated with it first."""
        if self.authority is None:
            return
        if not self.authority.available:
            raise Unavailable(
                "the ChittyID authority is unavailable", reason="AUTHORITY_UNAVAILABLE"
            )
        if owner != _own_chitty_id(caller):
            verdict = await self.authority.validate(owner)
            if not verdict.valid:
                raise InvalidRequest(
                    "chitty_id is not known to the ChittyID authority",
                    reason="UNKNOWN_CHITTY_ID",
                )

    def _owner(self, caller: Principal, chitty_id: str) -> str:
        own = _own_chitty_id(caller)
        if not chitty_id:
            if not own:
                raise InvalidRequest(
                    "chitty_id is required: the caller has no ChittyID of its own",
                    reason="CHITTY_ID_REQUIRED",
                )
            return own
        policy.require_owner(caller, chitty_id, what="another ChittyID's API keys")
        chittyid.check_format(chitty_id, allow_legacy=self._allow_legacy_ids)
        return chitty_id

    @staticmethod
    def _revoked_record(
        actor: str, record: ApiKeyRecord, request_id: str, *, again: bool
    ) -> AuditRecord:
        return AuditRecord(
            actor=actor,
            subject=record.chitty_id,
            action="apikey.revoked",
            outcome="success",
            resource=f"apiKeys/{record.key_id}",
            request_id=request_id,
            attributes={"already_revoked": str(again).lower()},
        )

    async def _attempt(
        self,
        caller: Principal,
        action: str,
        owner: str,
        key_id: str,
        request_id: str,
        work: Callable[[SqliteTransaction], Awaitable[T]],
    ) -> T:
        """Runs ``work`` in one transaction; a refusal rolls it back and is audited alone."""
        try:
            async with self._store.transaction() as tx:
                return await work(tx)
        except DomainError as refusal:
            await self._audit_failure(caller, action, owner, key_id, request_id, refusal)
            raise

    async def _audit_failure(
        self,
        caller: Principal,
        action: str,
        owner: str,
        key_id: str,
        request_id: str,
        refusal: DomainError,
    ) -> None:
        await audit_refusal(
            self._store, refusal, action=action, actor=caller.subject,
            subject=owner[: chittyid.MAX_CHITTY_ID_LENGTH] or caller.subject,
            resource=f"apiKeys/{key_id[:MAX_KEY_ID_LENGTH]}" if key_id else "",
            request_id=request_id,
        )  # fmt: skip


def _own_chitty_id(caller: Principal) -> str:
    """The ChittyID the caller acts as (``policy.person_of``), when it is one."""
    own = policy.person_of(caller)
    if own and own == caller.chitty_id:
        return own
    try:
        chittyid.check_format(own, allow_legacy=True)
    except InvalidRequest:
        return ""
    return own


def _check_expire_time(expire_time: float | None, now: float) -> None:
    if expire_time is not None and not now < expire_time <= now + MAX_LIFETIME_S:
        raise InvalidRequest(
            "expire_time must be in the future and within ten years",
            reason="INVALID_EXPIRE_TIME",
        )


def _checked_scopes(scopes: Sequence[str]) -> tuple[str, ...]:
    unique = tuple(dict.fromkeys(scopes)) or DEFAULT_SCOPES
    if len(unique) > MAX_KEY_SCOPES:
        raise InvalidRequest(f"at most {MAX_KEY_SCOPES} scopes", reason="INVALID_SCOPES")
    for scope in unique:
        try:
            check_scope_token(scope, "scopes")
        except InvalidRequest as exc:
            raise InvalidRequest(
                f"scopes must be RFC 6749 scope tokens of at most {MAX_SCOPE_LENGTH} characters",
                reason="INVALID_SCOPES",
            ) from exc
    return unique
