"""WatchRevocations: a server stream of revocations, so verifiers refuse revoked tokens offline.

The hub subscribes once to the server's ``ChangeFeed`` for ``revocation.added`` and copies
each change into the bounded buffer of every open stream. A stream never misses or repeats an
event, by the same three steps as WatchSessions (``domain/watch.py``):

1. it registers its buffer first, so every change the feed delivers from then on reaches it;
2. it sends what happened before: with an empty cursor, every revocation still in force (read
   from the ``revocations`` table), with a cursor, the change log after it;
3. it drains its buffer, dropping entries at or below the last sequence already sent.

Snapshot events (empty cursor) carry no cursor of their own, because resuming in the middle of
a snapshot would skip the rest of it; the snapshot ends with a heartbeat whose cursor is the
log position it is consistent with. A client that is cut off mid-snapshot simply starts over
with an empty cursor, which is harmless: revocations are idempotent.

Who may watch: any caller whose token carries ``revocations:read``, ``introspect`` or
``chittyauth:admin``, or any ``service`` token (resource servers authenticate as machine
clients with client credentials). The stream exposes token ids, never tokens.

Revocations of kind ``client`` (a deleted OAuth client) have no ``RevocationKind`` in the
contract and are not streamed; the verifier cannot refuse those tokens offline.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from dataclasses import dataclass

from chitty.auth.v1 import auth_service_pb2, token_pb2
from chittyauth.clock import Clock
from chittyauth.domain.changefeed import ChangeFeed
from chittyauth.domain.errors import InvalidRequest, OutOfRange, PermissionDenied
from chittyauth.domain.principal import Principal
from chittyauth.domain.revocation import CHANGE_KIND
from chittyauth.domain.watch import decode_cursor, encode_cursor
from chittyauth.rpc.convert import timestamp
from chittyauth.store.protocol import Change
from chittyauth.store.sqlite import SqliteReader, SqliteStore

log = logging.getLogger(__name__)

WATCH_SCOPES = ("revocations:read", "introspect")
DEFAULT_HEARTBEAT_S = 5.0

KIND_TO_PROTO: dict[str, token_pb2.RevocationKind] = {
    "jti": token_pb2.REVOCATION_KIND_TOKEN,
    "sid": token_pb2.REVOCATION_KIND_SESSION,
    "family": token_pb2.REVOCATION_KIND_REFRESH_FAMILY,
    "api_key": token_pb2.REVOCATION_KIND_API_KEY,
}
# google.protobuf.Timestamp stops at 9999-12-31; "forever" revocations are stored as 1e18.
_MAX_TIMESTAMP_S = 253_402_300_799.0


@dataclass(frozen=True, slots=True)
class Revocation:
    """One revocation as the stream sends it; ``seq`` 0 for snapshot rows."""

    kind: str
    value: str
    until: float
    revoked_at: float
    seq: int = 0


def authorize_watcher(principal: Principal) -> None:
    """Raises PermissionDenied unless ``principal`` may follow revocations."""
    if principal.token_use == "service":
        return
    if principal.is_admin or any(principal.has_scope(s) for s in WATCH_SCOPES):
        return
    raise PermissionDenied(
        "watching revocations needs a service token or scope revocations:read or introspect",
        reason="INSUFFICIENT_SCOPE",
        metadata={"required_scopes": " ".join(WATCH_SCOPES)},
    )


async def revocations_in_force(reader: SqliteReader, now: float) -> list[Revocation]:
    """Every recorded revocation that still covers an unexpired token."""
    rows = await reader.fetchall(
        "SELECT kind, value, until, revoked_at FROM revocations WHERE until > ?"
        " ORDER BY revoked_at, kind, value",
        (now,),
    )
    return [
        Revocation(row["kind"], row["value"], float(row["until"]), float(row["revoked_at"]))
        for row in rows
    ]


def event_message(item: Revocation) -> token_pb2.RevocationEvent:
    """The contract's RevocationEvent for ``item`` (cursor empty for snapshot rows)."""
    return token_pb2.RevocationEvent(
        cursor=encode_cursor(item.seq) if item.seq else "",
        kind=KIND_TO_PROTO[item.kind],
        value=item.value,
        expire_time=timestamp(min(item.until, _MAX_TIMESTAMP_S)),
        revoke_time=timestamp(item.revoked_at),
    )


def _from_change(change: Change) -> Revocation | None:
    payload = change.payload
    kind = str(payload.get("kind", ""))
    if change.kind != CHANGE_KIND or kind not in KIND_TO_PROTO:
        return None
    return Revocation(
        kind, str(payload["value"]), float(payload["until"]), change.created_at, change.seq
    )


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """Nothing new: the stream is caught up to ``position`` at ``time``."""

    position: int
    time: float


class _Watcher:
    __slots__ = ("buffer", "limit", "overflowed", "wake")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.buffer: deque[Change] = deque()
        self.overflowed = False
        self.wake = asyncio.Event()

    def offer(self, change: Change) -> None:
        if self.overflowed:
            return  # the resync reads it from the log
        if len(self.buffer) >= self.limit:
            self.buffer.clear()  # bound memory: resync from the log instead
            self.overflowed = True
        else:
            self.buffer.append(change)
        self.wake.set()


class RevocationHub:
    """Fans ``revocation.added`` changes out to WatchRevocations streams."""

    def __init__(
        self,
        store: SqliteStore,
        clock: Clock,
        *,
        heartbeat_interval_s: float = DEFAULT_HEARTBEAT_S,
        buffer_size: int = 4096,
        replay_batch: int = 1000,
    ) -> None:
        self._store = store
        self._clock = clock
        # Public so an operator (or a test) can tighten it on a running server.
        self.heartbeat_interval_s = heartbeat_interval_s
        self._buffer_size = buffer_size
        self._replay_batch = replay_batch
        self._feed: ChangeFeed | None = None
        self._watchers: set[_Watcher] = set()
        self._closed = False

    @property
    def watcher_count(self) -> int:
        return len(self._watchers)

    def attach(self, feed: ChangeFeed) -> None:
        """Subscribes to the server's change feed (once, before the feed starts)."""
        self._feed = feed
        feed.subscribe((CHANGE_KIND,), self._deliver)

    def close(self) -> None:
        """Ends every stream cleanly (at shutdown) and refuses new ones."""
        self._closed = True
        for watcher in self._watchers:
            watcher.wake.set()

    async def watch(self, cursor: str) -> AsyncGenerator[Revocation | Heartbeat, None]:
        """Revocations from ``cursor`` (empty: all in force), then live, with heartbeats.

        Raises:
            InvalidRequest: the cursor is malformed or ahead of the change log.
            OutOfRange: the cursor is older than the retained change log.
        """
        after = decode_cursor(cursor) if cursor else None
        if self._feed is None:
            raise RuntimeError("RevocationHub.attach was not called")
        if self._closed:
            return
        watcher = _Watcher(self._buffer_size)
        self._watchers.add(watcher)  # before any read: nothing committed later is missed
        try:
            if after is None:
                scanned = await self._store.last_change_seq()
                # Snapshot rows may include revocations committed after `scanned`; the replay
                # below would send them again, so remember what the snapshot covered.
                async with self._store.read() as reader:
                    snapshot = await revocations_in_force(reader, self._clock.now())
                sent = {(r.kind, r.value): r.until for r in snapshot}
                for item in snapshot:
                    yield item
                yield Heartbeat(scanned, self._clock.now())
            else:
                scanned, sent = after, {}
                await self._check_retained(after)
            replay = True
            while not self._closed:
                if replay:
                    watcher.buffer.clear()
                    watcher.overflowed = False
                    async for change in self._replay(scanned):
                        scanned = change.seq
                        replayed = _from_change(change)
                        if replayed is not None and (
                            sent.get((replayed.kind, replayed.value), 0.0) < replayed.until
                        ):
                            yield replayed
                    sent = {}  # past the snapshot's horizon: the log alone is the truth
                    replay = False
                async with contextlib.aclosing(self._live(watcher, scanned)) as live:
                    async for out in live:
                        if isinstance(out, Revocation):
                            scanned = out.seq
                        yield out
                if watcher.overflowed:
                    log.info("revocation watcher fell behind; resyncing from the change log")
                    await self._check_retained(scanned)
                    replay = True
        finally:
            self._watchers.discard(watcher)

    async def _live(
        self, watcher: _Watcher, scanned: int
    ) -> AsyncGenerator[Revocation | Heartbeat, None]:
        assert self._feed is not None
        while not self._closed and not watcher.overflowed:
            if watcher.buffer:
                change = watcher.buffer.popleft()
                if change.seq > scanned:  # at or below: the replay sent it already
                    scanned = change.seq
                    live_item = _from_change(change)
                    if live_item is not None:
                        yield live_item
                continue
            watcher.wake.clear()
            woke = False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(watcher.wake.wait(), self.heartbeat_interval_s)
                woke = True
            if not woke:
                yield Heartbeat(max(scanned, self._feed.position), self._clock.now())

    async def _replay(self, after: int) -> AsyncIterator[Change]:
        position = after
        while not self._closed:
            batch = await self._store.changes_after(
                position, kinds=(CHANGE_KIND,), limit=self._replay_batch
            )
            for change in batch:
                yield change
            if len(batch) < self._replay_batch:
                return
            position = batch[-1].seq

    async def _check_retained(self, after: int) -> None:
        first = await self._store.first_change_seq()
        last = await self._store.last_change_seq()
        if after > last:
            raise InvalidRequest("cursor is ahead of the change log", reason="INVALID_CURSOR")
        # Pruning drops the oldest entries: the log is complete after `after` iff its oldest
        # kept entry is at most `after + 1` (or nothing newer was ever written).
        if after < last and (first == 0 or first > after + 1):
            raise OutOfRange(
                "cursor is older than the retained change log; watch again with an empty"
                " cursor to receive every revocation in force",
                reason="CURSOR_EXPIRED",
            )

    def _deliver(self, changes: Sequence[Change]) -> None:
        # Runs inside the change feed's poll: it must never raise.
        for watcher in self._watchers:
            for change in changes:
                watcher.offer(change)


async def watch_revocations(
    hub: RevocationHub, principal: Principal, request: auth_service_pb2.WatchRevocationsRequest
) -> AsyncGenerator[auth_service_pb2.WatchRevocationsResponse, None]:
    """The WatchRevocations stream for an authenticated caller.

    Raises:
        PermissionDenied: the caller may not watch revocations.
        InvalidRequest, OutOfRange: see ``RevocationHub.watch``.
    """
    authorize_watcher(principal)
    items = hub.watch(request.cursor)
    async with contextlib.aclosing(items):
        async for item in items:
            if isinstance(item, Heartbeat):
                yield auth_service_pb2.WatchRevocationsResponse(
                    cursor=encode_cursor(item.position),
                    heartbeat_time=timestamp(item.time),
                )
            else:
                yield auth_service_pb2.WatchRevocationsResponse(event=event_message(item))
