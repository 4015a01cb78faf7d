"""WatchSessions fan-out: one change-feed subscriber, many cheap in-process watchers.

The hub subscribes once to the server's ``ChangeFeed`` for ``session.*`` kinds and copies each
change into the bounded buffer of every watcher whose filter matches (watchers are indexed by
ChittyID, so a change costs only its owner's watchers).

A watcher never misses or repeats an event:

1. it registers its buffer first, so every change the feed delivers from then on reaches it;
2. it replays the change log from its cursor up to the newest committed entry;
3. it then drains its buffer, dropping entries at or below the last sequence it replayed.

Everything committed before step 1 is in the log and read in step 2; everything after reaches
the buffer. A watcher that falls ``buffer_size`` events behind is **resynced from the log**:
its buffer is dropped (bounding memory), and it repeats steps 2-3 from the last event it sent.
Only if the log has been pruned past that point does the stream end, with OUT_OF_RANGE.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import logging
from collections import deque
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass

from chittyauth.clock import Clock
from chittyauth.domain.changefeed import ChangeFeed
from chittyauth.domain.errors import InvalidRequest, OutOfRange
from chittyauth.store import sessions as repo
from chittyauth.store.protocol import Change
from chittyauth.store.sqlite import SqliteStore

log = logging.getLogger(__name__)

SESSION_KIND_PREFIX = "session."
MAX_CURSOR_CHARS = 64
_CURSOR_PREFIX = "seq:"


def encode_cursor(seq: int) -> str:
    """The opaque cursor for a change-log position."""
    return base64.urlsafe_b64encode(f"{_CURSOR_PREFIX}{seq}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    """The change-log position in a cursor.

    Raises:
        InvalidRequest: the cursor is not one this service issued.
    """
    bad = InvalidRequest("cursor is not valid", reason="INVALID_CURSOR")
    if len(cursor) > MAX_CURSOR_CHARS:
        raise bad
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise bad from exc
    digits = text.removeprefix(_CURSOR_PREFIX)
    if digits == text or not digits.isdigit() or not digits.isascii():
        raise bad
    return int(digits)


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


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """Nothing new: the watcher is caught up to ``position`` at ``time``."""

    position: int
    time: float


class _Watcher:
    """One stream's bounded buffer of live changes."""

    __slots__ = ("buffer", "filter", "limit", "overflowed", "wake")

    def __init__(self, watch_filter: WatchFilter, limit: int) -> None:
        self.filter = watch_filter
        self.limit = limit
        self.buffer: deque[Change] = deque()
        self.overflowed = False
        self.wake = asyncio.Event()

    def offer(self, change: Change) -> None:
        if self.overflowed:
            return  # the resync will read it from the log
        if len(self.buffer) >= self.limit:
            # Drop everything rather than grow: the watcher resyncs from the log.
            self.buffer.clear()
            self.overflowed = True
        else:
            self.buffer.append(change)
        self.wake.set()


class SessionEventHub:
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
        self._store = store
        self._clock = clock
        self._heartbeat_interval_s = heartbeat_interval_s
        self.buffer_size = buffer_size
        self._replay_batch = replay_batch
        self._feed: ChangeFeed | None = None
        self._by_owner: dict[str, set[_Watcher]] = {}
        self._closed = False
        self.resyncs = 0

    def attach(self, feed: ChangeFeed) -> None:
        """Subscribes to the server's change feed (once, before the feed starts)."""
        self._feed = feed
        feed.subscribe((SESSION_KIND_PREFIX,), self._deliver)

    def close(self) -> None:
        """Ends every stream cleanly (at shutdown) and refuses new ones."""
        self._closed = True
        for watchers in self._by_owner.values():
            for watcher in watchers:
                watcher.wake.set()

    @property
    def watcher_count(self) -> int:
        return sum(len(watchers) for watchers in self._by_owner.values())

    async def watch(
        self, watch_filter: WatchFilter, *, after: int | None
    ) -> AsyncGenerator[Change | Heartbeat, None]:
        """Matching changes after ``after`` (None: from now), then live, with heartbeats.

        Raises:
            OutOfRange: ``after`` (or, after a resync, the last sent position) is older than the
                retained change log.
            InvalidRequest: ``after`` is beyond the newest change.
        """
        if self._feed is None:
            raise RuntimeError("SessionEventHub.attach was not called")
        if self._closed:
            return
        feed = self._feed
        watcher = _Watcher(watch_filter, self.buffer_size)
        # Register before reading the log: from here on the feed delivers to the buffer.
        owners = self._by_owner.setdefault(watch_filter.chitty_id, set())
        owners.add(watcher)
        try:
            if after is None:
                scanned, replay = feed.position, False
            else:
                scanned, replay = after, True
            while not self._closed:
                if replay:
                    watcher.buffer.clear()
                    watcher.overflowed = False
                    await self._check_retained(scanned)
                    async with contextlib.aclosing(self._replay(scanned)) as replayed:
                        async for change in replayed:
                            scanned = max(scanned, change.seq)
                            if watch_filter.matches(change):
                                yield change
                    replay = False
                async with contextlib.aclosing(self._live(watcher, scanned, feed)) as live:
                    async for item in live:
                        if isinstance(item, Change):
                            scanned = item.seq
                        yield item
                if watcher.overflowed:
                    self.resyncs += 1
                    log.info("watcher fell behind; resyncing from the change log")
                    replay = True
        finally:
            owners.discard(watcher)
            if not owners:
                self._by_owner.pop(watch_filter.chitty_id, None)

    async def _live(
        self, watcher: _Watcher, scanned: int, feed: ChangeFeed
    ) -> AsyncGenerator[Change | Heartbeat, None]:
        """Buffered changes above ``scanned`` and heartbeats, until closed or overflowed."""
        while not self._closed and not watcher.overflowed:
            if watcher.buffer:
                change = watcher.buffer.popleft()
                if change.seq > scanned:  # at or below: already sent by the replay
                    scanned = change.seq
                    yield change
                continue
            watcher.wake.clear()
            woke = False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(watcher.wake.wait(), self._heartbeat_interval_s)
                woke = True
            if not woke:
                # Buffer empty: every matching change up to the feed's position has been sent.
                yield Heartbeat(max(scanned, feed.position), self._clock.now())

    async def _replay(self, after: int) -> AsyncGenerator[Change, None]:
        """Every ``session.*`` change in the log after ``after``, in order, until caught up."""
        position = after
        while not self._closed:
            async with self._store.read() as reader:
                batch = await repo.session_changes_after(reader, position, limit=self._replay_batch)
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
        # Pruning removes the oldest entries, so the log is complete after `after` iff its
        # oldest kept entry is at most `after + 1` (or nothing newer was ever written).
        if after < last and (first == 0 or first > after + 1):
            oldest = (first - 1) if first else last
            raise OutOfRange(
                "cursor is older than the retained change log; re-read the sessions and"
                " watch from the oldest cursor",
                reason="CURSOR_EXPIRED",
                metadata={"oldest_cursor": encode_cursor(oldest)},
            )

    def _deliver(self, changes: Sequence[Change]) -> None:
        # Runs inside the change feed's poll: it must never raise, or the feed would redeliver.
        try:
            for change in changes:
                owner = change.payload.get("chitty_id")
                watchers = self._by_owner.get(owner) if isinstance(owner, str) else None
                if not watchers:
                    continue
                for watcher in watchers:
                    if watcher.filter.matches(change):
                        watcher.offer(change)
        except Exception:
            log.exception("session event fan-out failed")
