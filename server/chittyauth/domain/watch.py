"""WatchSessions fan-out over the change log (``domain/fanout.py`` has the mechanism).

Watchers are indexed by ChittyID, so a session change costs only its owner's watchers.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, Iterable
from dataclasses import dataclass

from chittyauth.clock import Clock
from chittyauth.domain.errors import OutOfRange
from chittyauth.domain.fanout import (
    ChangeStreams,
    Heartbeat,
    Watcher,
    decode_cursor,
    encode_cursor,
)
from chittyauth.store import sessions as repo
from chittyauth.store.protocol import Change
from chittyauth.store.sqlite import SqliteStore

SESSION_KIND_PREFIX = "session."

__all__ = [
    "SESSION_KIND_PREFIX",
    "Heartbeat",
    "SessionEventHub",
    "WatchFilter",
    "decode_cursor",
    "encode_cursor",
]


@dataclass(frozen=True, slots=True)
class WatchFilter:
    """Which session events a watcher receives: one ChittyID's, optionally one session's."""

    chitty_id: str
    session_id: str = ""

    def matches(self, change: Change) -> bool:
        if not change.kind.startswith(SESSION_KIND_PREFIX):
            return False
        if change.payload.get("chitty_id") != self.chitty_id:
            return False
        return not self.session_id or change.key == self.session_id


def _session_out_of_range(position: int, first: int) -> OutOfRange:
    oldest = first - 1 if first else position
    return OutOfRange(
        "cursor is older than the retained change log; re-read the sessions and"
        " watch from the oldest cursor",
        reason="CURSOR_EXPIRED",
        metadata={"oldest_cursor": encode_cursor(oldest)},
    )


class SessionEventHub(ChangeStreams):
    """Fans ``session.*`` changes out to WatchSessions streams."""

    def __init__(
        self,
        store: SqliteStore,
        clock: Clock,
        *,
        heartbeat_interval_s: float,
        buffer_size: int = 1024,
        replay_batch: int = 500,
    ) -> None:
        async def read_batch(position: int, limit: int) -> list[Change]:
            async with store.read() as reader:
                return await repo.session_changes_after(reader, position, limit=limit)

        super().__init__(
            store,
            clock,
            prefix=SESSION_KIND_PREFIX,
            read_batch=read_batch,
            out_of_range=_session_out_of_range,
            heartbeat_interval_s=heartbeat_interval_s,
            buffer_size=buffer_size,
            replay_batch=replay_batch,
        )
        self._by_owner: dict[str, set[Watcher]] = {}
        self._owner_of: dict[Watcher, str] = {}

    @property
    def watcher_count(self) -> int:
        return len(self._owner_of)

    def register(self, watcher: Watcher, owner: str = "") -> None:
        super().register(watcher)
        self._by_owner.setdefault(owner, set()).add(watcher)
        self._owner_of[watcher] = owner

    def unregister(self, watcher: Watcher) -> None:
        super().unregister(watcher)
        owner = self._owner_of.pop(watcher, None)
        if owner is None:
            return
        watchers = self._by_owner.get(owner, set())
        watchers.discard(watcher)
        if not watchers:
            self._by_owner.pop(owner, None)

    def targets(self, change: Change) -> Iterable[Watcher]:
        owner = change.payload.get("chitty_id")
        return self._by_owner.get(owner, ()) if isinstance(owner, str) else ()

    async def watch(
        self, watch_filter: WatchFilter, *, after: int | None
    ) -> AsyncGenerator[Change | Heartbeat, None]:
        """Matching changes after ``after`` (None: from now), then live, with heartbeats.

        Raises:
            OutOfRange: ``after`` (or, after a resync, the last sent position) is older than the
                retained change log.
            InvalidRequest: ``after`` is beyond the newest change.
        """
        feed = self.feed
        if self.closed:
            return
        watcher = Watcher(self.buffer_size, watch_filter.matches)
        # Register before reading the log: from here on the feed delivers to the buffer.
        self.register(watcher, watch_filter.chitty_id)
        try:
            position = feed.position if after is None else after
            items = self.follow(watcher, position, replay=after is not None)
            async with contextlib.aclosing(items):
                async for item in items:
                    yield item
        finally:
            self.unregister(watcher)
