"""One reader of the store's change log that fans changes out to in-memory subscribers.

Revocation sets, the key ring and watch streams all follow the change log through this one
follower, by sequence number, so what one process (or replica) commits reaches every in-memory
view in order. Commits made in this process wake the follower at once; changes from other
processes are picked up by polling.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence

from chittyauth.store.protocol import Change, Store

log = logging.getLogger(__name__)

Subscriber = Callable[[Sequence[Change]], Awaitable[None] | None]


class ChangeFeed:
    """Follows ``store``'s change log from ``start_seq`` and calls subscribers per kind prefix."""

    def __init__(self, store: Store, *, poll_interval_s: float = 0.5, batch: int = 1000) -> None:
        self._store = store
        self._poll_interval_s = poll_interval_s
        self._batch = batch
        self._subscribers: list[tuple[tuple[str, ...], Subscriber]] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.position = 0

    def subscribe(self, prefixes: tuple[str, ...], subscriber: Subscriber) -> None:
        """Calls ``subscriber`` with each batch of changes whose kind starts with a prefix."""
        self._subscribers.append((prefixes, subscriber))

    async def start(self, start_seq: int) -> None:
        """Begins following after ``start_seq`` (the position the in-memory views loaded at)."""
        self.position = start_seq
        await self.poll_once()
        self._task = asyncio.create_task(self._run(), name="changefeed")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def notify(self) -> None:
        """Something was committed in this process: read the log now rather than at the poll."""
        self._wake.set()

    async def poll_once(self) -> int:
        """Delivers everything after the current position; returns how many changes."""
        delivered = 0
        while True:
            changes = await self._store.changes_after(self.position, limit=self._batch)
            if not changes:
                break
            for prefixes, subscriber in self._subscribers:
                matching = [c for c in changes if c.kind.startswith(prefixes)]
                if matching:
                    result = subscriber(matching)
                    if result is not None:
                        await result
            self.position = changes[-1].seq
            delivered += len(changes)
            if len(changes) < self._batch:
                break
        return delivered

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._poll_interval_s)
            self._wake.clear()
            try:
                await self.poll_once()
            except Exception:  # the follower must survive a failed read; it retries
                log.exception("change feed read failed")
                await asyncio.sleep(self._poll_interval_s)
