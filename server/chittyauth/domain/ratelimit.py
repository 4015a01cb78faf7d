"""Token-bucket rate limits per (operation, client id) and per (operation, source address).

Each limit is "N per minute": a bucket holds at most N tokens and refills at N/60 per second;
a call takes one token from each bucket that applies, or is refused with ``RateLimited``
saying when a token will be there again. Buckets live in memory, per process; the least
recently used are evicted beyond ``max_buckets`` (an evicted bucket is simply full again),
so a flood of distinct addresses or ids cannot grow memory without bound.

The address is the caller's TRUE source address, whatever the transport: ``source_address``
decides what an ``X-Forwarded-For`` chain is worth (only hops added by trusted proxies count),
and the HTTP shim hands its caller's address to gRPC in metadata only it can vouch for
(``rpc/forwarded.py``), so transcoded calls are not all charged to 127.0.0.1.
"""

from __future__ import annotations

import ipaddress
import math
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from chittyauth.clock import Clock
from chittyauth.config import RateLimitConfig
from chittyauth.domain.errors import RateLimited

# The operations with a limit (a policy Rule's ``bucket``); ``<operation>_per_minute`` in
# ``[rate_limits]`` sets each. "exchange" is every grant, at gRPC Exchange and at HTTP /token.
OPERATIONS = (
    "authenticate", "authorize", "exchange", "register", "introspect", "revoke", "issue",
)  # fmt: skip
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
            operation: getattr(config, f"{operation}_per_minute") for operation in OPERATIONS
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


# -- the caller's true address -----------------------------------------------------------------

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_MAX_FORWARDED_HOPS = 32


def trusted_networks(cidrs: Iterable[str]) -> tuple[Network, ...]:
    """``[http] trusted_proxies`` as networks (the config has checked every entry)."""
    return tuple(ipaddress.ip_network(cidr, strict=False) for cidr in cidrs)


def source_address(direct: str, forwarded_for: Sequence[str], trusted: Sequence[Network]) -> str:
    """The address a request really comes from.

    ``X-Forwarded-For`` is believed hop by hop from the right: an entry counts only when the
    hop that appended it (first the direct peer, then each address already accepted) is a
    trusted proxy. The first untrusted address met is the caller; anything left of it was
    written by the caller and may be forged. An unparsable entry stops the walk there.

    Args:
        direct: The TCP peer's address.
        forwarded_for: Every ``X-Forwarded-For`` header value, in order.
        trusted: ``trusted_networks([http] trusted_proxies)``; empty: the header never counts.
    """
    current = direct
    if not trusted or not forwarded_for:
        return current
    hops = [hop.strip() for value in forwarded_for for hop in value.split(",")]
    for hop in reversed(hops[-_MAX_FORWARDED_HOPS:]):
        if not _is_trusted(current, trusted):
            break
        address = _address(hop)
        if address is None:
            break
        current = address
    return current


def _is_trusted(address: str, trusted: Sequence[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # a dual-stack listener reports IPv4 peers as ::ffff:a.b.c.d
    return any(ip in network for network in trusted)


def _address(hop: str) -> str | None:
    """The IP address of one ``X-Forwarded-For`` entry, normalized; None when it is none."""
    try:
        return str(ipaddress.ip_address(hop.strip("[]")))
    except ValueError:
        return None
