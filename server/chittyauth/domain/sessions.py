"""Sessions and cross-device sync: the rules behind SyncService.

A session belongs to one ChittyID. It lists the devices attached to it (a device id is unique
per ChittyID and lives in one active session at a time; at most ``max_devices`` per ChittyID)
and the MCP servers it reaches, and holds one encrypted, versioned state blob per MCP server.
It ends by revocation or by expiry (idle timeout or absolute lifetime); its tokens end with it,
through ``SessionTokenRevoker.revoke_session`` in the same transaction.

Who may act on a session: its owner (token subject == the session's ChittyID) holding scope
``cross_sync``, a token whose ``sid`` is the session itself, or an admin. Anyone else is told
the session does not exist. Every change commits with its change-log entry
(``session.<event>``, never state data) and its audit record; refusals are audited too.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from contextlib import aclosing, asynccontextmanager
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from chittyauth.clock import Clock
from chittyauth.config import Config, SessionConfig, TokenConfig
from chittyauth.domain import paging, policy
from chittyauth.domain.audit import audit_refusal
from chittyauth.domain.changefeed import ChangeFeed
from chittyauth.domain.errors import (
    Aborted,
    DomainError,
    FailedPrecondition,
    InvalidRequest,
    NotFound,
    Unauthenticated,
)
from chittyauth.domain.ids import new_id
from chittyauth.domain.principal import Principal
from chittyauth.domain.sync_state import StateKeyring, key_encryption_key
from chittyauth.domain.watch import Heartbeat, SessionEventHub, WatchFilter, decode_cursor
from chittyauth.store import sessions as repo
from chittyauth.store.protocol import AuditRecord, Change
from chittyauth.store.sessions import (
    DeviceInfo,
    DeviceRecord,
    SealedState,
    SessionRecord,
)
from chittyauth.store.sqlite import SqliteStore, SqliteTransaction

__all__ = [
    "CROSS_SYNC_SCOPE",
    "SESSION_NAME_PREFIX",
    "DeviceInfo",
    "DeviceRecord",
    "SessionPage",
    "SessionPolicy",
    "SessionRecord",
    "SessionService",
    "SessionTokenRevoker",
    "StateRecord",
    "SyncResult",
    "open_session_service",
    "session_name",
]

log = logging.getLogger(__name__)

CROSS_SYNC_SCOPE = "cross_sync"
CLIENT_TYPES = frozenset({"claude_desktop", "web", "mobile"})
SESSION_NAME_PREFIX = "sessions/"
SYSTEM_ACTOR = "system"
ENDING_EVENTS = frozenset({"session.revoked", "session.expired"})

MAX_SERVERS_PER_SESSION = 64
MAX_SERVERS_PER_REQUEST = 32
MAX_REMOVALS_PER_REQUEST = 32
MAX_DISPLAY_NAME_CHARS = 200
MAX_CHITTY_ID_CHARS = 128

_PRUNE_EVERY_S = 3600.0

_SESSION_ID = re.compile(r"ses_[A-Za-z0-9_-]{1,64}")
_DEVICE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}")
_MCP_SERVER = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")


class SessionTokenRevoker(Protocol):
    """What sessions need from the token service: end every token of a session at once."""

    async def revoke_session(
        self, tx: SqliteTransaction, session_id: str, until: float
    ) -> object: ...


@dataclass(frozen=True, slots=True)
class SessionPolicy:
    """Limits and timeouts, from ``[sessions]`` and the longest token lifetime."""

    max_devices: int = 5
    device_limit_policy: Literal["refuse", "evict"] = "refuse"
    idle_timeout_s: float = 3600
    absolute_lifetime_s: float = 30 * 86400
    max_state_bytes: int = 64 * 1024
    # How long a session's revocation must be remembered: the longest a token can live.
    token_lifetime_s: float = 30 * 86400
    # Change-log entries older than this are pruned (older WatchSessions cursors: OUT_OF_RANGE).
    event_retention_s: float = 7 * 86400

    @classmethod
    def from_config(cls, sessions: SessionConfig, tokens: TokenConfig) -> SessionPolicy:
        return cls(
            max_devices=sessions.max_devices,
            device_limit_policy=sessions.device_limit_policy,
            idle_timeout_s=sessions.idle_timeout_s,
            absolute_lifetime_s=sessions.absolute_lifetime_s,
            max_state_bytes=sessions.max_state_bytes,
            # A refresh token issued in the session can mint access tokens carrying its sid
            # until the refresh token itself expires; each of those then lives its own TTL.
            token_lifetime_s=tokens.refresh_ttl_s
            + max(
                tokens.access_ttl_s,
                tokens.portal_ttl_s,
                tokens.mcp_server_ttl_s,
                tokens.service_ttl_s,
            )
            + tokens.leeway_s,
            event_retention_s=sessions.event_retention_s,
        )


@dataclass(frozen=True, slots=True)
class StateRecord:
    """One MCP server's decrypted state in one session (version 0: never written)."""

    session_id: str
    mcp_server: str
    data: bytes
    version: int
    updated_at: float | None = None
    updated_by_device_id: str = ""


@dataclass(frozen=True, slots=True)
class SyncResult:
    """The outcome of SyncSession."""

    session: SessionRecord
    created: bool
    evicted_device_ids: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class SessionPage:
    """One page of ListSessions."""

    sessions: tuple[SessionRecord, ...]
    next_page_token: str = ""


def session_name(session_id: str) -> str:
    """The resource name ``sessions/{id}``."""
    return f"{SESSION_NAME_PREFIX}{session_id}"


@dataclass(slots=True)
class _Attempt:
    """What a refusal's audit record needs; ``subject`` is filled in once the target is known."""

    principal: Principal
    action: str
    request_id: str
    resource: str = ""
    subject: str = ""


async def open_session_service(
    store: SqliteStore,
    clock: Clock,
    config: Config,
    feed: ChangeFeed,
    *,
    revoker: SessionTokenRevoker | None,
) -> SessionService:
    """Builds the session service: loads the state keys, subscribes the watch hub to ``feed``.

    Raises:
        FailedPrecondition: the state encryption key is missing (production), malformed, or
            not the one the stored keys were sealed with; the server must not start.
    """
    keyring = StateKeyring(
        store, key_encryption_key(config.sessions, production=config.is_production)
    )
    await keyring.load()
    hub = SessionEventHub(store, clock, heartbeat_interval_s=config.sessions.heartbeat_interval_s)
    hub.attach(feed)
    policy = SessionPolicy.from_config(config.sessions, config.tokens)
    return SessionService(store, clock, keyring, hub, policy, revoker=revoker)


class SessionService:
    """Sessions, their devices, servers and state; the domain side of SyncService."""

    def __init__(
        self,
        store: SqliteStore,
        clock: Clock,
        keyring: StateKeyring,
        hub: SessionEventHub,
        policy: SessionPolicy,
        *,
        revoker: SessionTokenRevoker | None = None,
    ) -> None:
        self._store = store
        self._clock = clock
        self._keyring = keyring
        self._hub = hub
        self.policy = policy
        # None only where no token service exists (no token can carry a sid to revoke).
        self.revoker = revoker
        self.hub = hub
        self._last_prune = float("-inf")

    # -- creation (also called by portal/password login) ----------------------------------

    async def create_session(
        self,
        tx: SqliteTransaction,
        *,
        chitty_id: str,
        device: DeviceInfo | None,
        now: float,
        actor: str = "",
        request_id: str = "",
    ) -> SessionRecord:
        """Creates an active session for ``chitty_id`` inside the caller's transaction.

        Args:
            tx: the caller's write transaction (e.g. a login); everything commits with it.
            chitty_id: the owner.
            device: the device logging in, attached at once (device limit applies).
            now: service time (normally ``tx.now``).
            actor: who caused it, for the audit record (default: the owner).
            request_id: the call's request id, for the audit record.

        Returns:
            The new session; issue its tokens with ``session_id=record.session_id``.

        Raises:
            InvalidRequest: a malformed ChittyID or device.
            FailedPrecondition: the device limit is reached under the "refuse" policy
                (reason DEVICE_LIMIT).
        """
        _check_chitty_id(chitty_id)
        if device is not None:
            _check_device(device)
        record, _ = await self._create(tx, chitty_id, device, now, actor or chitty_id, request_id)
        return record

    async def join_session(
        self,
        tx: SqliteTransaction,
        *,
        chitty_id: str,
        device: DeviceInfo | None,
        now: float,
        actor: str = "",
        request_id: str = "",
    ) -> SessionRecord:
        """The session a login belongs to: the person's newest active session, with the
        device attached, or a new one when there is none (a person's devices share one
        session, so revoking it signs out all of them).

        Raises:
            InvalidRequest: a malformed ChittyID or device.
            FailedPrecondition: the device limit is reached under the "refuse" policy.
        """
        _check_chitty_id(chitty_id)
        if device is not None:
            _check_device(device)
        for record in await repo.list_sessions(
            tx, chitty_id, include_ended=False, after=None, limit=1
        ):
            if not record.is_active or self._is_due(record, now):
                break
            if device is not None:
                if device.device_id in {d.device_id for d in record.devices}:
                    await repo.refresh_device(tx, record.session_id, device, now)
                else:
                    await self._attach_device(
                        tx, record, device, now, actor or chitty_id, request_id
                    )
                    await repo.mark_updated(tx, record.session_id, now)
            await repo.touch_session(tx, record.session_id, now)
            return await _reload(tx, record.session_id)
        return await self.create_session(
            tx, chitty_id=chitty_id, device=device, now=now, actor=actor, request_id=request_id
        )

    # -- SyncSession ---------------------------------------------------------------------

    async def sync(
        self,
        principal: Principal,
        *,
        session_id: str = "",
        device: DeviceInfo | None = None,
        mcp_servers: Sequence[str] = (),
        remove_device_ids: Sequence[str] = (),
        request_id: str = "",
    ) -> SyncResult:
        """Creates the caller's session or updates it.

        The session is ``session_id``, else the caller's token's ``sid``, else the session the
        device is attached to, else a new one (which needs scope cross_sync).

        Raises:
            InvalidRequest: malformed input.
            NotFound: no such session, or not the caller's.
            FailedPrecondition: the session has ended (SESSION_ENDED), the device limit is
                reached (DEVICE_LIMIT) or too many MCP servers (SERVER_LIMIT).
            PermissionDenied: creating a session needs scope cross_sync.
        """
        if session_id:
            _check_session_id(session_id)
        if device is not None:
            _check_device(device)
        servers = _check_servers(mcp_servers)
        removals = _check_removals(remove_device_ids)
        target = session_id or principal.session_id
        async with self._attempt(principal, "session.sync", request_id, target) as attempt:
            ended: SessionRecord | None = None
            async with self._store.transaction() as tx:
                record: SessionRecord | None = None
                if target:
                    record = await self._load_for_write(tx, attempt, target)
                    if not record.is_active:
                        ended = record
                elif device is not None:
                    policy.require_scope(principal, CROSS_SYNC_SCOPE)
                    found = await repo.attached_device(
                        tx, policy.person_of(principal), device.device_id
                    )
                    if found is not None:
                        record = await self._load_for_write(tx, attempt, found.session_id)
                        # The device's old session just expired: start a new one instead.
                        record = record if record.is_active else None
                if ended is None:
                    created = record is None
                    evicted: list[str] = []
                    if record is None:
                        policy.require_scope(principal, CROSS_SYNC_SCOPE)
                        record, evicted = await self._create(
                            tx,
                            policy.person_of(principal),
                            device,
                            tx.now,
                            principal.subject,
                            request_id,
                        )
                        device = None  # attached by _create
                    attempt.resource = session_name(record.session_id)
                    evicted += await self._apply_sync(
                        tx, principal, record, device, servers, removals, request_id
                    )
                    session = await repo.get_session(tx, record.session_id)
                    assert session is not None
                    return SyncResult(session, created, tuple(evicted))
            raise _ended(ended)

    # -- reading -------------------------------------------------------------------------

    async def get(
        self, principal: Principal, session_id: str, *, request_id: str = ""
    ) -> SessionRecord:
        """One session, expired first if it is due.

        Raises:
            InvalidRequest: a malformed session id.
            NotFound: no such session, or not the caller's.
        """
        _check_session_id(session_id)
        async with self._attempt(principal, "session.get", request_id, session_id) as attempt:
            return await self._read_session(attempt, session_id)

    async def list_sessions(
        self,
        principal: Principal,
        *,
        chitty_id: str = "",
        page_size: int = 0,
        page_token: str = "",
        include_ended: bool = False,
        request_id: str = "",
    ) -> SessionPage:
        """A ChittyID's sessions, newest first (due ones are expired first).

        Raises:
            InvalidRequest: a malformed ChittyID, page size or page token.
            PermissionDenied: another ChittyID's sessions without admin, or no cross_sync.
        """
        owner = chitty_id or policy.person_of(principal)
        _check_chitty_id(owner)
        size = paging.page_size(page_size)
        scope = (owner, include_ended)
        after = paging.decode_page_token(page_token, scope)
        async with self._attempt(principal, "session.list", request_id) as attempt:
            attempt.subject = owner
            _require_owner_or_admin(principal, owner)
            await self._expire_due_of(owner)
            async with self._store.read() as reader:
                rows = await repo.list_sessions(
                    reader, owner, include_ended=include_ended, after=after, limit=size + 1
                )
        next_token = ""
        if len(rows) > size:
            last = rows[size - 1]
            next_token = paging.encode_page_token(last.created_at, last.session_id, scope)
        return SessionPage(tuple(rows[:size]), next_token)

    # -- ending --------------------------------------------------------------------------

    async def revoke(
        self, principal: Principal, session_id: str, *, request_id: str = ""
    ) -> SessionRecord:
        """Revokes a session and, with it, every token carrying its sid (idempotent).

        Raises:
            InvalidRequest: a malformed session id.
            NotFound: no such session, or not the caller's.
        """
        _check_session_id(session_id)
        async with (
            self._attempt(principal, "session.revoke", request_id, session_id) as attempt,
            self._store.transaction() as tx,
        ):
            record = await self._load_for_write(tx, attempt, session_id)
            if record.is_active:
                await self._end(tx, record, "revoked", "revoked", principal.subject, request_id)
                record = await _reload(tx, session_id)
            return record

    async def revoke_all(
        self, principal: Principal, *, chitty_id: str = "", request_id: str = ""
    ) -> int:
        """Revokes every active session of a ChittyID (sign out everywhere); returns how many.

        Raises:
            InvalidRequest: a malformed ChittyID.
            PermissionDenied: another ChittyID without admin, or no cross_sync.
        """
        owner = chitty_id or policy.person_of(principal)
        _check_chitty_id(owner)
        async with self._attempt(principal, "session.revoke_all", request_id) as attempt:
            attempt.subject = owner
            _require_owner_or_admin(principal, owner)
            revoked = 0
            async with self._store.transaction() as tx:
                for session_id in await repo.active_session_ids(tx, owner):
                    record = await _reload(tx, session_id)
                    if self._is_due(record, tx.now):
                        await self._expire(tx, record)
                        continue
                    await self._end(
                        tx, record, "revoked", "revoked_all", principal.subject, request_id
                    )
                    revoked += 1
            return revoked

    async def expire_due(self, *, batch: int = 100) -> int:
        """Expires every active session past its idle timeout or lifetime; returns how many."""
        expired = 0
        while True:
            now = self._clock.now()
            async with self._store.read() as reader:
                due = await repo.due_session_ids(
                    reader, idle_before=now - self.policy.idle_timeout_s, now=now, limit=batch
                )
            if not due:
                return expired
            before = expired
            async with self._store.transaction() as tx:
                for session_id in due:
                    record = await _reload(tx, session_id)
                    if record.is_active and self._is_due(record, tx.now):
                        await self._expire(tx, record)
                        expired += 1
            # A short batch is the last; a batch where nothing expired means the clock moved.
            if len(due) < batch or expired == before:
                return expired

    async def run_sweeper(self, *, interval_s: float | None = None) -> None:
        """Runs ``sweep_once`` forever (the server's background task; cancel to stop)."""
        # Often enough that an idle session ends within a tenth of its timeout.
        interval = interval_s or max(1.0, min(60.0, self.policy.idle_timeout_s / 10))
        while True:
            await asyncio.sleep(interval)
            try:
                await self.sweep_once()
            except Exception:  # the sweeper must outlive a failed pass; it retries
                log.exception("session sweep failed")

    async def sweep_once(self) -> int:
        """Expires due sessions and, at most hourly, prunes the change log; returns expired."""
        expired = await self.expire_due()
        now = self._clock.now()
        if now - self._last_prune >= _PRUNE_EVERY_S:
            self._last_prune = now
            pruned = await self._store.prune_changes(now - self.policy.event_retention_s)
            if pruned:
                log.info("pruned the change log", extra={"entries": pruned})
        return expired

    # -- state ---------------------------------------------------------------------------

    async def put_state(
        self,
        principal: Principal,
        *,
        session_id: str,
        mcp_server: str,
        data: bytes,
        expected_version: int,
        device_id: str = "",
        request_id: str = "",
    ) -> StateRecord:
        """Compare-and-set write of one MCP server's state; attaches the server if needed.

        Raises:
            InvalidRequest: malformed input or data over ``max_state_bytes`` (STATE_TOO_LARGE).
            NotFound: no such session, or not the caller's.
            Aborted: ``expected_version`` is stale (VERSION_CONFLICT, metadata
                ``current_version``); re-read, merge and retry.
            FailedPrecondition: the session has ended, or SERVER_LIMIT.
        """
        _check_session_id(session_id)
        _check_server(mcp_server)
        if device_id:
            _check_device_id(device_id)
        if expected_version < 0:
            raise InvalidRequest(
                "expected_version must not be negative", reason="INVALID_EXPECTED_VERSION"
            )
        limit = self.policy.max_state_bytes
        if len(data) > limit:
            raise InvalidRequest(
                f"state is {len(data)} bytes; at most {limit} are accepted",
                reason="STATE_TOO_LARGE",
                metadata={"max_bytes": str(limit), "size_bytes": str(len(data))},
            )
        async with self._attempt(principal, "session.state.put", request_id, session_id) as attempt:
            attempt.resource = f"{session_name(session_id)}/states/{mcp_server}"
            async with self._store.transaction() as tx:
                record = await self._load_for_write(tx, attempt, session_id)
                if record.is_active:
                    return await self._write_state(
                        tx, principal, record, mcp_server, data, expected_version,
                        device_id, request_id,
                    )  # fmt: skip
            raise _ended(record)

    async def get_state(
        self, principal: Principal, *, session_id: str, mcp_server: str, request_id: str = ""
    ) -> StateRecord:
        """One MCP server's state (version 0 and no data when never written).

        Raises:
            InvalidRequest: malformed input.
            NotFound: no such session, or not the caller's.
            FailedPrecondition: the session has ended (its state is gone).
        """
        _check_session_id(session_id)
        _check_server(mcp_server)
        async with self._attempt(principal, "session.state.get", request_id, session_id) as attempt:
            record = await self._read_session(attempt, session_id)
            if not record.is_active:
                raise _ended(record)
            async with self._store.read() as reader:
                sealed = await repo.get_state(reader, session_id, mcp_server)
            if sealed is None:
                return StateRecord(session_id, mcp_server, b"", 0)
            data = await self._keyring.open(
                sealed.key_id,
                sealed.sealed,
                session_id=session_id,
                mcp_server=mcp_server,
                version=sealed.version,
            )
            return StateRecord(
                session_id,
                mcp_server,
                data,
                sealed.version,
                sealed.updated_at,
                sealed.updated_by_device_id,
            )

    async def rotate_state_key(self, *, actor: str = SYSTEM_ACTOR, request_id: str = "") -> str:
        """Starts sealing new state with a fresh data key; older blobs stay readable."""
        async with self._store.transaction() as tx:
            key_id = await self._keyring.rotate(tx)
            await tx.audit(
                AuditRecord(
                    actor=actor,
                    subject=SYSTEM_ACTOR,
                    action="session.state_key.rotate",
                    outcome="success",
                    resource=key_id,
                    request_id=request_id,
                )
            )
        return key_id

    # -- WatchSessions -------------------------------------------------------------------

    async def watch(
        self,
        principal: Principal,
        *,
        session_id: str = "",
        cursor: str = "",
        request_id: str = "",
    ) -> AsyncGenerator[Change | Heartbeat, None]:
        """The caller's session events after ``cursor`` (empty: from now), live, heartbeats.

        Without ``session_id`` a cross_sync (or admin) caller watches all sessions of its
        ChittyID, and a token with only a sid watches its own session. The stream ends with
        UNAUTHENTICATED right after the event that ends the token's own session.

        Raises:
            InvalidRequest: malformed session id or cursor.
            NotFound: the named session is not the caller's.
            PermissionDenied: no session to watch without cross_sync.
            OutOfRange: the cursor is older than the retained change log (CURSOR_EXPIRED).
        """
        if session_id:
            _check_session_id(session_id)
        after = decode_cursor(cursor) if cursor else None
        async with self._attempt(principal, "session.watch", request_id, session_id) as attempt:
            if session_id:
                record = await self._read_session(attempt, session_id)
                watch_filter = WatchFilter(record.chitty_id, session_id)
            elif policy.reaches_every_session(principal):
                watch_filter = WatchFilter(policy.person_of(principal))
            elif principal.session_id:
                watch_filter = WatchFilter(policy.person_of(principal), principal.session_id)
            else:
                policy.require_scope(principal, CROSS_SYNC_SCOPE)
                return
        async with aclosing(self._hub.watch(watch_filter, after=after)) as items:
            async for item in items:
                yield item
                if (
                    isinstance(item, Change)
                    and item.kind in ENDING_EVENTS
                    and item.key == principal.session_id
                ):
                    raise Unauthenticated(
                        "the session of this token has ended", reason="SESSION_ENDED"
                    )

    # -- internals -----------------------------------------------------------------------

    async def _create(
        self,
        tx: SqliteTransaction,
        chitty_id: str,
        device: DeviceInfo | None,
        now: float,
        actor: str,
        request_id: str,
    ) -> tuple[SessionRecord, list[str]]:
        session_id = new_id("ses")
        record = SessionRecord(
            session_id=session_id,
            chitty_id=chitty_id,
            status="active",
            created_at=now,
            updated_at=now,
            last_activity_at=now,
            expires_at=now + self.policy.absolute_lifetime_s,
        )
        await repo.insert_session(tx, record)
        await self._emit(tx, "created", record)
        evicted: list[str] = []
        if device is not None:
            evicted = await self._attach_device(tx, record, device, now, actor, request_id)
        await tx.audit(
            AuditRecord(
                actor=actor,
                subject=chitty_id,
                action="session.create",
                outcome="success",
                resource=session_name(session_id),
                request_id=request_id,
                attributes={"device_id": device.device_id if device else ""},
            )
        )
        return await _reload(tx, session_id), evicted

    async def _apply_sync(
        self,
        tx: SqliteTransaction,
        principal: Principal,
        record: SessionRecord,
        device: DeviceInfo | None,
        servers: Sequence[str],
        removals: Sequence[str],
        request_id: str,
    ) -> list[str]:
        """Removes, attaches and refreshes what a SyncSession asks; returns evicted ids."""
        now = tx.now
        attached = {d.device_id: d for d in record.devices}
        removed: list[str] = []
        for device_id in removals:
            if await repo.detach_device(tx, record.session_id, device_id):
                await self._emit(tx, "device_removed", record, device=attached[device_id])
                removed.append(device_id)
        evicted: list[str] = []
        added_device = ""
        if device is not None:
            if device.device_id in attached and device.device_id not in removed:
                await repo.refresh_device(tx, record.session_id, device, now)
            else:
                evicted = await self._attach_device(
                    tx, record, device, now, principal.subject, request_id
                )
                added_device = device.device_id
        new_servers = [s for s in servers if s not in record.mcp_servers]
        if len(record.mcp_servers) + len(new_servers) > MAX_SERVERS_PER_SESSION:
            raise _server_limit()
        for server in new_servers:
            await repo.attach_server(tx, record.session_id, server, now)
            await self._emit(tx, "server_attached", record, mcp_server=server)
        await repo.touch_session(tx, record.session_id, now)
        if removed or added_device or new_servers:
            await repo.mark_updated(tx, record.session_id, now)
            await tx.audit(
                AuditRecord(
                    actor=principal.subject,
                    subject=record.chitty_id,
                    action="session.sync",
                    outcome="success",
                    resource=session_name(record.session_id),
                    request_id=request_id,
                    attributes={
                        "added_device_id": added_device,
                        "removed_device_ids": ",".join(removed),
                        "attached_servers": ",".join(new_servers),
                    },
                )
            )
        return evicted

    async def _attach_device(
        self,
        tx: SqliteTransaction,
        record: SessionRecord,
        device: DeviceInfo,
        now: float,
        actor: str,
        request_id: str,
    ) -> list[str]:
        """Attaches a device not yet in ``record``; moves or evicts as needed."""
        chitty_id = record.chitty_id
        evicted: list[str] = []
        elsewhere = await repo.attached_device(tx, chitty_id, device.device_id)
        if elsewhere is not None:
            # A device lives in one session at a time: it moves, and keeps its slot.
            other = await _reload(tx, elsewhere.session_id)
            await repo.detach_device(tx, other.session_id, device.device_id)
            await repo.mark_updated(tx, other.session_id, now)
            await self._emit(tx, "device_removed", other, device=elsewhere.device, reason="moved")
        else:
            count = await repo.count_attached_devices(tx, chitty_id)
            if count >= self.policy.max_devices:
                if self.policy.device_limit_policy != "evict":
                    raise FailedPrecondition(
                        f"at most {self.policy.max_devices} devices may be attached",
                        reason="DEVICE_LIMIT",
                        metadata={"max_devices": str(self.policy.max_devices)},
                    )
                excess = count - self.policy.max_devices + 1
                for victim in await repo.least_recent_devices(tx, chitty_id, excess):
                    await self._evict(tx, victim.session_id, victim.device, now, actor, request_id)
                    evicted.append(victim.device.device_id)
        added = DeviceRecord(device.device_id, device.display_name, device.client_type, now, now)
        await repo.attach_device(tx, record.session_id, chitty_id, added)
        await self._emit(tx, "device_added", record, device=added)
        return evicted

    async def _evict(
        self,
        tx: SqliteTransaction,
        session_id: str,
        device: DeviceRecord,
        now: float,
        actor: str,
        request_id: str,
    ) -> None:
        owner = await _reload(tx, session_id)
        await repo.detach_device(tx, session_id, device.device_id)
        await repo.mark_updated(tx, session_id, now)
        await self._emit(tx, "device_removed", owner, device=device, reason="evicted")
        await tx.audit(
            AuditRecord(
                actor=actor,
                subject=owner.chitty_id,
                action="session.device.evict",
                outcome="success",
                resource=session_name(session_id),
                request_id=request_id,
                attributes={"device_id": device.device_id, "policy": "evict"},
            )
        )

    async def _write_state(
        self,
        tx: SqliteTransaction,
        principal: Principal,
        record: SessionRecord,
        mcp_server: str,
        data: bytes,
        expected_version: int,
        device_id: str,
        request_id: str,
    ) -> StateRecord:
        now = tx.now
        version = expected_version + 1
        key_id, sealed = self._keyring.seal(
            data, session_id=record.session_id, mcp_server=mcp_server, version=version
        )
        state = SealedState(record.session_id, mcp_server, version, key_id, sealed, now, device_id)
        if not await repo.write_state_if_version(tx, state, expected_version):
            current = await repo.state_version(tx, record.session_id, mcp_server)
            raise Aborted(
                f"state version is {current}, not {expected_version}: re-read, merge and retry",
                reason="VERSION_CONFLICT",
                metadata={"current_version": str(current), "mcp_server": mcp_server},
            )
        if mcp_server not in record.mcp_servers:
            if len(record.mcp_servers) >= MAX_SERVERS_PER_SESSION:
                raise _server_limit()
            await repo.attach_server(tx, record.session_id, mcp_server, now)
            await repo.mark_updated(tx, record.session_id, now)
            await self._emit(tx, "server_attached", record, mcp_server=mcp_server)
        await repo.touch_session(tx, record.session_id, now)
        await self._emit(
            tx, "state_changed", record, mcp_server=mcp_server, state_version=version,
            device_id=device_id,
        )  # fmt: skip
        await tx.audit(
            AuditRecord(
                actor=principal.subject,
                subject=record.chitty_id,
                action="session.state.put",
                outcome="success",
                resource=f"{session_name(record.session_id)}/states/{mcp_server}",
                request_id=request_id,
                attributes={
                    "version": str(version),
                    "size_bytes": str(len(data)),
                    "key_id": key_id,
                    "device_id": device_id,
                },
            )
        )
        return StateRecord(record.session_id, mcp_server, data, version, now, device_id)

    async def _end(
        self,
        tx: SqliteTransaction,
        record: SessionRecord,
        status: Literal["revoked", "expired"],
        reason: str,
        actor: str,
        request_id: str,
    ) -> None:
        """Ends a session, its tokens and its state, with event and audit, in ``tx``."""
        if not await repo.end_session(
            tx, record.session_id, status=status, reason=reason, now=tx.now
        ):
            return
        await self._emit(tx, status, record, reason=reason)
        if self.revoker is not None:
            await self.revoker.revoke_session(
                tx, record.session_id, tx.now + self.policy.token_lifetime_s
            )
        await tx.audit(
            AuditRecord(
                actor=actor,
                subject=record.chitty_id,
                action="session.revoke" if status == "revoked" else "session.expire",
                outcome="success",
                resource=session_name(record.session_id),
                request_id=request_id,
                attributes={"reason": reason},
            )
        )

    async def _expire(self, tx: SqliteTransaction, record: SessionRecord) -> None:
        reason = "lifetime" if tx.now >= record.expires_at else "idle"
        await self._end(tx, record, "expired", reason, SYSTEM_ACTOR, "")

    async def _emit(
        self,
        tx: SqliteTransaction,
        event: str,
        record: SessionRecord,
        *,
        device: DeviceRecord | None = None,
        mcp_server: str = "",
        state_version: int = 0,
        device_id: str = "",
        reason: str = "",
    ) -> int:
        """Appends ``session.<event>``: ids, device, server and version; never state data."""
        payload: dict[str, Any] = {
            "session_id": record.session_id,
            "chitty_id": record.chitty_id,
        }
        if device is not None:
            payload["device"] = {
                "device_id": device.device_id,
                "display_name": device.display_name,
                "client_type": device.client_type,
                "added_at": device.added_at,
                "last_seen_at": device.last_seen_at,
            }
        if mcp_server:
            payload["mcp_server"] = mcp_server
        if state_version:
            payload["state_version"] = state_version
        if device_id:
            payload["device_id"] = device_id
        if reason:
            payload["reason"] = reason
        return await tx.append_change(f"session.{event}", record.session_id, payload)

    async def _load_for_write(
        self, tx: SqliteTransaction, attempt: _Attempt, session_id: str
    ) -> SessionRecord:
        """The session if the caller may see it, expired first (in ``tx``) if it is due."""
        record = self._visible(attempt, await repo.get_session(tx, session_id))
        if record.is_active and self._is_due(record, tx.now):
            await self._expire(tx, record)
            record = await _reload(tx, session_id)
        return record

    async def _read_session(self, attempt: _Attempt, session_id: str) -> SessionRecord:
        """The committed session if the caller may see it; expires it first if due."""
        async with self._store.read() as reader:
            record = self._visible(attempt, await repo.get_session(reader, session_id))
        if record.is_active and self._is_due(record, self._clock.now()):
            async with self._store.transaction() as tx:
                record = await _reload(tx, session_id)
                if record.is_active and self._is_due(record, tx.now):
                    await self._expire(tx, record)
                    record = await _reload(tx, session_id)
        return record

    async def _expire_due_of(self, chitty_id: str) -> None:
        now = self._clock.now()
        async with self._store.read() as reader:
            due = await repo.due_session_ids(
                reader,
                idle_before=now - self.policy.idle_timeout_s,
                now=now,
                chitty_id=chitty_id,
                limit=paging.MAX_PAGE_SIZE,
            )
        if not due:
            return
        async with self._store.transaction() as tx:
            for session_id in due:
                record = await _reload(tx, session_id)
                if record.is_active and self._is_due(record, tx.now):
                    await self._expire(tx, record)

    def _visible(self, attempt: _Attempt, record: SessionRecord | None) -> SessionRecord:
        if record is not None:
            attempt.subject = record.chitty_id
            if _may_access(attempt.principal, record):
                return record
        # Another user's session is indistinguishable from a missing one.
        raise NotFound("session not found", reason="SESSION_NOT_FOUND")

    def _is_due(self, record: SessionRecord, now: float) -> bool:
        return (
            now >= record.last_activity_at + self.policy.idle_timeout_s or now >= record.expires_at
        )

    @asynccontextmanager
    async def _attempt(
        self, principal: Principal, action: str, request_id: str, session_id: str = ""
    ) -> AsyncIterator[_Attempt]:
        """Audits a refusal raised inside (after the work's transaction has rolled back)."""
        attempt = _Attempt(
            principal, action, request_id, session_name(session_id) if session_id else ""
        )
        try:
            yield attempt
        except DomainError as exc:
            await self._audit_refusal(attempt, exc)
            raise

    async def _audit_refusal(self, attempt: _Attempt, exc: DomainError) -> None:
        try:
            await audit_refusal(
                self._store, exc, action=attempt.action, actor=attempt.principal.subject,
                subject=attempt.subject or attempt.principal.subject, resource=attempt.resource,
                request_id=attempt.request_id,
                attributes={"client_id": attempt.principal.client_id},
            )  # fmt: skip
        except Exception:  # the refusal itself must still reach the caller
            log.exception("cannot audit a refused session call", extra={"action": attempt.action})


# -- rules and checks -----------------------------------------------------------------------


def _may_access(principal: Principal, record: SessionRecord) -> bool:
    return policy.may_reach_session(principal, record.chitty_id, record.session_id)


def _require_owner_or_admin(principal: Principal, chitty_id: str) -> None:
    policy.require_owner(principal, chitty_id, what="this ChittyID's sessions")
    policy.require_scope(principal, CROSS_SYNC_SCOPE)


async def _reload(tx: SqliteTransaction, session_id: str) -> SessionRecord:
    record = await repo.get_session(tx, session_id)
    assert record is not None, "sessions are never deleted"
    return record


def _ended(record: SessionRecord | None) -> FailedPrecondition:
    status = record.status if record is not None else "ended"
    return FailedPrecondition(
        f"the session has ended ({status})",
        reason="SESSION_ENDED",
        metadata={"status": status},
    )


def _server_limit() -> FailedPrecondition:
    return FailedPrecondition(
        f"a session reaches at most {MAX_SERVERS_PER_SESSION} MCP servers",
        reason="SERVER_LIMIT",
        metadata={"max_servers": str(MAX_SERVERS_PER_SESSION)},
    )


def _check_session_id(session_id: str) -> None:
    if not _SESSION_ID.fullmatch(session_id):
        raise InvalidRequest("session name is not valid", reason="INVALID_SESSION_NAME")


def _check_chitty_id(chitty_id: str) -> None:
    if not chitty_id or len(chitty_id) > MAX_CHITTY_ID_CHARS or not chitty_id.isprintable():
        raise InvalidRequest("chitty_id is not valid", reason="INVALID_CHITTY_ID")


def _check_device_id(device_id: str) -> None:
    if not _DEVICE_ID.fullmatch(device_id):
        raise InvalidRequest(
            "device_id must be 1-128 characters: letters, digits and . _ : @ -",
            reason="INVALID_DEVICE",
        )


def _check_device(device: DeviceInfo) -> None:
    _check_device_id(device.device_id)
    name = device.display_name
    if len(name) > MAX_DISPLAY_NAME_CHARS or not name.isprintable():
        raise InvalidRequest(
            f"display_name must be at most {MAX_DISPLAY_NAME_CHARS} printable characters",
            reason="INVALID_DEVICE",
        )
    if device.client_type not in CLIENT_TYPES:
        raise InvalidRequest(
            "client_type must be claude_desktop, web or mobile", reason="INVALID_DEVICE"
        )


def _check_server(server: str) -> None:
    if not _MCP_SERVER.fullmatch(server):
        raise InvalidRequest(
            "mcp_server must be 1-64 characters: lowercase letters, digits and . _ -",
            reason="INVALID_MCP_SERVER",
        )


def _check_servers(servers: Sequence[str]) -> list[str]:
    if len(servers) > MAX_SERVERS_PER_REQUEST:
        raise InvalidRequest(
            f"at most {MAX_SERVERS_PER_REQUEST} mcp_servers per request",
            reason="INVALID_MCP_SERVER",
        )
    for server in servers:
        _check_server(server)
    return list(dict.fromkeys(servers))


def _check_removals(device_ids: Sequence[str]) -> list[str]:
    if len(device_ids) > MAX_REMOVALS_PER_REQUEST:
        raise InvalidRequest(
            f"at most {MAX_REMOVALS_PER_REQUEST} remove_device_ids per request",
            reason="INVALID_DEVICE",
        )
    for device_id in device_ids:
        _check_device_id(device_id)
    return list(dict.fromkeys(device_ids))
