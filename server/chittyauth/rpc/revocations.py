"""WatchRevocations: a server stream of revocations, so verifiers refuse revoked tokens offline.

The hub subscribes once to the server's ``ChangeFeed`` for ``revocation.added`` and copies
each change into the bounded buffer of every open stream. A stream never misses or repeats an
event, by the change-log streaming shared with WatchSessions (``domain/fanout.py``):

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

Every kind the service records (``domain/revocation.py``: token, session, refresh family, API
key, client) has a ``RevocationKind``, and the snapshot and the live stream convert through one
function (``event_message``). A row of a kind this build does not know (a newer replica wrote
it) is skipped with a log line: one unknown kind must never end every verifier's stream.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncGenerator
from dataclasses import dataclass

from chitty.auth.v1 import auth_service_pb2, token_pb2
from chittyauth.clock import Clock
from chittyauth.domain import policy
from chittyauth.domain.errors import OutOfRange
from chittyauth.domain.fanout import (
    ChangeStreams,
    Heartbeat,
    Watcher,
    decode_cursor,
    encode_cursor,
)
from chittyauth.domain.principal import Principal
from chittyauth.domain.revocation import CHANGE_KIND
from chittyauth.rpc.convert import timestamp
from chittyauth.store.protocol import Change
from chittyauth.store.sqlite import SqliteReader, SqliteStore

log = logging.getLogger(__name__)

WATCH_OPERATION = "/chitty.auth.v1.AuthService/WatchRevocations"
DEFAULT_HEARTBEAT_S = 5.0

KIND_TO_PROTO: dict[str, token_pb2.RevocationKind] = {
    "jti": token_pb2.REVOCATION_KIND_TOKEN,
    "sid": token_pb2.REVOCATION_KIND_SESSION,
    "family": token_pb2.REVOCATION_KIND_REFRESH_FAMILY,
    "api_key": token_pb2.REVOCATION_KIND_API_KEY,
    "client": token_pb2.REVOCATION_KIND_CLIENT,
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
    """Raises PermissionDenied unless ``principal`` may follow revocations (its policy row)."""
    policy.admit(policy.rule_for(WATCH_OPERATION), principal)


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


def event_message(item: Revocation) -> token_pb2.RevocationEvent | None:
    """The contract's RevocationEvent for ``item`` (cursor empty for snapshot rows); None, with
    a log line, for a kind the contract has no ``RevocationKind`` for."""
    kind = KIND_TO_PROTO.get(item.kind)
    if kind is None:
        _skipped(item.kind)
        return None
    return token_pb2.RevocationEvent(
        cursor=encode_cursor(item.seq) if item.seq else "",
        kind=kind,
        value=item.value,
        expire_time=timestamp(min(item.until, _MAX_TIMESTAMP_S)),
        revoke_time=timestamp(item.revoked_at),
    )


_warned_kinds: set[str] = set()


def _skipped(kind: str) -> None:
    # Once per kind at WARNING: every new stream meets the same rows in its snapshot.
    name = kind[:64]
    level = logging.DEBUG if name in _warned_kinds else logging.WARNING
    _warned_kinds.add(name)
    log.log(
        level,
        "skipping a revocation of a kind with no RevocationKind",
        extra={"revocation_kind": name},
    )


def _from_change(change: Change) -> Revocation | None:
    if change.kind != CHANGE_KIND:
        return None
    payload = change.payload
    try:
        return Revocation(
            str(payload["kind"]),
            str(payload["value"]),
            float(payload["until"]),
            change.created_at,
            change.seq,
        )
    except (KeyError, TypeError, ValueError):
        _skipped(f"malformed change {change.seq}")
        return None


def _revocations_out_of_range(position: int, first: int) -> OutOfRange:
    return OutOfRange(
        "cursor is older than the retained change log; watch again with an empty"
        " cursor to receive every revocation in force",
        reason="CURSOR_EXPIRED",
    )


class RevocationHub(ChangeStreams):
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
        async def read_batch(position: int, limit: int) -> list[Change]:
            return await store.changes_after(position, kinds=(CHANGE_KIND,), limit=limit)

        super().__init__(
            store,
            clock,
            prefix=CHANGE_KIND,
            read_batch=read_batch,
            out_of_range=_revocations_out_of_range,
            heartbeat_interval_s=heartbeat_interval_s,
            buffer_size=buffer_size,
            replay_batch=replay_batch,
        )
        self._revocation_store = store

    async def watch(self, cursor: str) -> AsyncGenerator[Revocation | Heartbeat, None]:
        """Revocations from ``cursor`` (empty: all in force), then live, with heartbeats.

        Raises:
            InvalidRequest: the cursor is malformed or ahead of the change log.
            OutOfRange: the cursor is older than the retained change log.
        """
        after = decode_cursor(cursor) if cursor else None
        if self.closed:
            return
        watcher = Watcher(self.buffer_size, lambda change: _from_change(change) is not None)
        self.register(watcher)  # before any read: nothing committed later is missed
        try:
            # What the snapshot already sent; the replay after it may repeat some of it.
            covered: dict[tuple[str, str], float] = {}
            if after is None:
                position = await self._revocation_store.last_change_seq()
                async with self._revocation_store.read() as reader:
                    snapshot = await revocations_in_force(reader, self._clock.now())
                covered = {(r.kind, r.value): r.until for r in snapshot}
                for item in snapshot:
                    yield item
                yield Heartbeat(position, self._clock.now())
            else:
                position = after
            items = self.follow(watcher, position, replay=True)
            async with contextlib.aclosing(items):
                async for entry in items:
                    if isinstance(entry, Heartbeat):
                        covered = {}  # caught up past the snapshot's horizon
                        yield entry
                        continue
                    revocation = _from_change(entry)
                    if revocation is not None and (
                        covered.get((revocation.kind, revocation.value), 0.0) < revocation.until
                    ):
                        yield revocation
        finally:
            self.unregister(watcher)


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
                continue
            event = event_message(item)
            if event is not None:
                yield auth_service_pb2.WatchRevocationsResponse(event=event)
