"""Token-bucket rate limits per (operation, client id) and per (operation, source address).

Each limit is "N per minute": a bucket holds at most N tokens and refills at N/60 per second;
a call takes one token from each bucket that applies, or is refused with ``RateLimited``
saying when a token will be there again. Buckets live in memory, per process; the least
recently used are evicted beyond ``max_buckets`` (an evicted bucket is simply full again),
so a flood of distinct addresses or ids cannot grow memory without bound.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass

from chittyauth.clock import Clock
from chittyauth.config import RateLimitConfig
from chittyauth.domain.errors import RateLimited

# The operations with a limit, and the config field that sets it.
OPERATIONS = ("authenticate", "authorize", "exchange", "register")
# Keys are bounded before use: a caller-supplied id must not grow a key without limit.
_MAX_KEY_CHARS = 256


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated_at: float


class RateLimiter:
    """In-memory token buckets; ``check`` is called once per limited RPC."""

    def __init__(self, config: RateLimitConfig, clock: Clock) -> None:
        self._config = config
        self._clock = clock
        self._per_minute: Mapping[str, int] = {
            "authenticate": config.authenticate_per_minute,
            "authorize": config.authorize_per_minute,
            "exchange": config.exchange_per_minute,
            "register": config.register_per_minute,
        }
        self._buckets: OrderedDict[tuple[str, str, str], _Bucket] = OrderedDict()

    @property
    def enabled(self) -> bool:
        return self._config.enabled

    def __len__(self) -> int:
        return len(self._buckets)

    def check(self, operation: str, *, client_id: str = "", address: str = "") -> None:
        """Takes one token from the client's and the address's bucket for ``operation``.

        Either bucket being empty refuses the call, and then neither is charged, so a
        refused call costs the caller nothing it could otherwise use.

        Args:
            operation: one of ``OPERATIONS``.
            client_id: the OAuth client (or account) the call names; '' for none.
            address: the caller's source address; '' when unknown.

        Raises:
            RateLimited: reason ``RATE_LIMITED`` with ``retry_after`` in seconds.
            KeyError: an unknown operation (a bug of ours).
        """
        if not self._config.enabled:
            return
        limit = self._per_minute[operation]
        if limit <= 0:
            return
        now = self._clock.now()
        keys = [
            (operation, kind, value[:_MAX_KEY_CHARS])
            for kind, value in (("client", client_id), ("address", address))
            if value
        ]
        buckets = [self._bucket(key, limit, now) for key in keys]
        short = [bucket for bucket in buckets if bucket.tokens < 1.0]
        if short:
            rate = limit / 60.0
            wait = max((1.0 - bucket.tokens) / rate for bucket in short)
            raise RateLimited(
                f"too many {operation} requests; retry later",
                retry_after=math.ceil(wait * 1000) / 1000,
                metadata={"operation": operation},
            )
        for bucket in buckets:
            bucket.tokens -= 1.0

    def _bucket(self, key: tuple[str, str, str], limit: int, now: float) -> _Bucket:
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = _Bucket(tokens=float(limit), updated_at=now)
            self._buckets[key] = bucket
            while len(self._buckets) > max(1, self._config.max_buckets):
                self._buckets.popitem(last=False)
        else:
            elapsed = max(0.0, now - bucket.updated_at)
            bucket.tokens = min(float(limit), bucket.tokens + elapsed * limit / 60.0)
            bucket.updated_at = now
            self._buckets.move_to_end(key)
        return bucket
