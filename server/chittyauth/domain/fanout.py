"""Streams over the change log: one change-feed subscriber, many cheap in-process watchers.

WatchSessions and WatchRevocations both follow the change log this way. A hub subscribes once
to the server's ``ChangeFeed`` and copies each change into the bounded buffer of every watcher
it concerns. A watcher never misses or repeats a change:

1. it registers its buffer first, so every change the feed delivers from then on reaches it;
2. it replays the change log from its position up to the newest committed entry;
3. it then drains its buffer, dropping entries at or below the last sequence it replayed.

Everything committed before step 1 is in the log and read in step 2; everything after reaches
the buffer. A watcher that falls ``buffer_size`` changes behind is resynced from the log: its
buffer is dropped (bounding memory) and it repeats steps 2-3 from the last change it sent. Only
if the log has been pruned past that point does the stream end, with OUT_OF_RANGE.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import logging
from collections import deque
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass

from chittyauth.clock import Clock
from chittyauth.domain.changefeed import ChangeFeed
from chittyauth.domain.errors import InvalidRequest, OutOfRange
from chittyauth.store.protocol import Change, Store

log = logging.getLogger(__name__)

MAX_CURSOR_CHARS = 64
_CURSOR_PREFIX = "seq:"

# Reads up to `limit` changes of the hub's kinds after a position, in order.
ReadBatch = Callable[[int, int], Awaitable[list[Change]]]
# Builds the error for a position older than the retained log: (position, oldest kept seq).
OutOfRangeError = Callable[[int, int], OutOfRange]


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
class Heartbeat:
    """Nothing new: the stream is caught up to ``position`` at ``time``."""

    position: int
    time: float


class Watcher:
    """One stream's bounded buffer of live changes."""

    __slots__ = ("accepts", "buffer", "limit", "overflowed", "wake")

    def __init__(self, limit: int, accepts: Callable[[Change], bool] | None = None) -> None:
        self.limit = limit
        self.accepts = accepts
        self.buffer: deque[Change] = deque()
        self.overflowed = False
        self.wake = asyncio.Event()

    def offer(self, change: Change) -> None:
        if self.overflowed:
            return  # the resync reads it from the log
        if len(self.buffer) >= self.limit:
            # Drop everything rather than grow: the watcher resyncs from the log.
            self.buffer.clear()
            self.overflowed = True
        else:
            self.buffer.append(change)
        self.wake.set()


class ChangeStreams:
    """The shared part of a hub: registration, replay, live buffer, heartbeats, resync.

    A hub subclass decides which changes it follows (``prefix``, ``read_batch``), which
    watchers a change concerns (``targets``), and what it tells a watcher whose position the
    log no longer holds (``out_of_range``).
    """

    def __init__(
        self,
        store: Store,
        clock: Clock,
        *,
        prefix: str,
        read_batch: ReadBatch,
        out_of_range: OutOfRangeError,
        heartbeat_interval_s: float,
        buffer_size: int,
        replay_batch: int,
    ) -> None:
        self._store = store
        self._clock = clock
        self._prefix = prefix
        self._read_batch = read_batch
        self._out_of_range = out_of_range
        # Public so an operator (or a test) can change them on a running server.
        self.heartbeat_interval_s = heartbeat_interval_s
        self.buffer_size = buffer_size
        self._replay_batch = replay_batch
        self._feed: ChangeFeed | None = None
        self._watchers: set[Watcher] = set()
        self._closed = False
        self.resyncs = 0

    @property
    def watcher_count(self) -> int:
        return len(self._watchers)

    @property
    def feed(self) -> ChangeFeed:
        if self._feed is None:
            raise RuntimeError(f"{type(self).__name__}.attach was not called")
        return self._feed

    @property
    def closed(self) -> bool:
        return self._closed

    def attach(self, feed: ChangeFeed) -> None:
        """Subscribes to the server's change feed (once, before the feed starts)."""
        self._feed = feed
        feed.subscribe((self._prefix,), self._deliver)

    def close(self) -> None:
        """Ends every stream cleanly (at shutdown) and refuses new ones."""
        self._closed = True
        for watcher in self._watchers:
            watcher.wake.set()

    def register(self, watcher: Watcher) -> None:
        self._watchers.add(watcher)

    def unregister(self, watcher: Watcher) -> None:
        self._watchers.discard(watcher)

    def targets(self, change: Change) -> Iterable[Watcher]:
        """The watchers a change concerns (every one, unless a hub indexes them)."""
        return self._watchers

    async def follow(
        self, watcher: Watcher, position: int, *, replay: bool
    ) -> AsyncGenerator[Change | Heartbeat, None]:
        """Changes after ``position`` (replayed from the log first when ``replay``), then
        live ones, with heartbeats, until the hub closes. ``watcher`` must be registered.

        Raises:
            InvalidRequest: the position is beyond the newest change.
            OutOfRange: the position (or, after a resync, the last one sent) is no longer in
                the log.
        """
        while not self._closed:
            if replay:
                watcher.buffer.clear()
                watcher.overflowed = False
                await self.check_retained(position)
                async with contextlib.aclosing(self._replay(position)) as replayed:
                    async for change in replayed:
                        position = max(position, change.seq)
                        if watcher.accepts is None or watcher.accepts(change):
                            yield change
                replay = False
            async with contextlib.aclosing(self._live(watcher, position)) as live:
                async for item in live:
                    if isinstance(item, Change):
                        position = item.seq
                    yield item
            if watcher.overflowed:
                self.resyncs += 1
                log.info("watcher fell behind; resyncing from the change log")
                replay = True

    async def check_retained(self, position: int) -> None:
        """Raises unless the log holds every change after ``position``."""
        first = await self._store.first_change_seq()
        last = await self._store.last_change_seq()
        if position > last:
            raise InvalidRequest("cursor is ahead of the change log", reason="INVALID_CURSOR")
        # Pruning removes the oldest entries, so the log is complete after `position` iff its
        # oldest kept entry is at most `position + 1` (or nothing newer was ever written).
        if position < last and (first == 0 or first > position + 1):
            raise self._out_of_range(position, first)

    async def _live(
        self, watcher: Watcher, position: int
    ) -> AsyncGenerator[Change | Heartbeat, None]:
        """Buffered changes above ``position`` and heartbeats, until closed or overflowed."""
        feed = self.feed
        while not self._closed and not watcher.overflowed:
            if watcher.buffer:
                change = watcher.buffer.popleft()
                if change.seq > position:  # at or below: already sent by the replay
                    position = change.seq
                    yield change
                continue
            watcher.wake.clear()
            woke = False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(watcher.wake.wait(), self.heartbeat_interval_s)
                woke = True
            if not woke:
                # Buffer empty: every change up to the feed's position has been sent.
                yield Heartbeat(max(position, feed.position), self._clock.now())

    async def _replay(self, after: int) -> AsyncGenerator[Change, None]:
        position = after
        while not self._closed:
            batch = await self._read_batch(position, self._replay_batch)
            for change in batch:
                yield change
            if len(batch) < self._replay_batch:
                return
            position = batch[-1].seq

    def _deliver(self, changes: Sequence[Change]) -> None:
        # Runs inside the change feed's poll: it must never raise, or the feed would redeliver.
        try:
            for change in changes:
                for watcher in self.targets(change):
                    if watcher.accepts is None or watcher.accepts(change):
                        watcher.offer(change)
        except Exception:
            log.exception("change fan-out failed")
